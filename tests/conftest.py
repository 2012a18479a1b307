"""Shared fixtures and helpers.

How the suite is split (pytest -m):
- ``make test`` (``-m "not proof" -n 2 --dist loadfile``): the unit tests, and a smoke subset of the tests
  that start the real daemon (tests/daemon.py ``Daemon``), at least one per feature area: intake
  (test_intake_http: requests that must store nothing share one module-scoped daemon, ``shared_daemon``),
  detector (test_detector_process), dispatch (test_e2e_delivery, test_pagerduty_dedup), CLI (test_cli_serve,
  test_demo_replay), reload and lifecycle (test_lifecycle), health (test_readiness, test_intake_http).
- ``make proof`` (``-m proof``): every test in a ``test_proof_*.py`` file (marked below), and the other
  real-daemon or slow tests, each marked ``@pytest.mark.proof`` where it is defined. CI runs both.
Waits for background effects (``wait_for``, proof_helpers ``wait_until``) raise when the effect does not come;
timing logic (watchdog, body deadlines, dispatch back-off) is tested with an injected clock, not by sleeping.
Tests run in parallel workers: each takes a free port and its own tmp_path, nothing shared on disk.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from daemon import Daemon, write_config
from proof_helpers import WaitTimeout, inbox_backlog, inbox_received, settled, wait_until

from sentinel.rules.model import Rule

__all__ = ["WaitTimeout", "inbox_backlog", "inbox_received", "settled"]

DATA = Path(__file__).parent / "data"
# Two threshold rules as a [[rules]] family: brute force on one user (3 failures in 10 minutes) and a spray
# from one IP (3 distinct users in 10 minutes).
THRESHOLD_RULES = """
[[rules]]
id = "brute"
title = "Brute force on {actor.alternateId}"
severity = "high"
event_types = ["user.session.start"]
condition = "failed"
group_by = ["actor.alternateId"]
[rules.detection.failed]
"outcome.result" = "FAILURE"
[rules.threshold]
count = 3
window = "10m"

[[rules]]
id = "spray"
title = "Spray from {client.ipAddress}"
severity = "high"
event_types = ["user.session.start"]
condition = "failed"
group_by = ["client.ipAddress"]
[rules.detection.failed]
"outcome.result" = "FAILURE"
[rules.threshold]
count = 3
window = "10m"
distinct = "actor.alternateId"
"""


def rule_by_id(rules: Iterable[Rule], rule_id: str) -> Rule | None:
    """The rule with this id, if loaded (a lookup only tests need: the daemon goes by event type)."""
    return next((rule for rule in rules if rule.id == rule_id), None)



def spray_rule(rule_id: str) -> str:
    """A distinct-count rule: three users failing from one IP within an hour."""
    return f"""
id = "{rule_id}"
title = "Spray from {{client.ipAddress}}"
severity = "high"
event_types = ["user.session.start"]
condition = "failed"
group_by = ["client.ipAddress"]

[detection.failed]
"outcome.result" = "FAILURE"

[threshold]
count = 3
distinct = "actor.alternateId"
window = "1h"
"""


def make_event(uuid: str, event_type: str = "user.session.start", published: str = "2024-05-01T10:00:00.000Z",
               **fields: Any) -> dict[str, Any]:
    event = {
        "uuid": uuid, "eventType": event_type, "published": published, "version": "0", "severity": "INFO",
        "displayMessage": "User login to Okta",
        "actor": {"id": "00u1", "type": "User", "alternateId": "alice@example.com", "displayName": "Alice"},
        "client": {"ipAddress": "203.0.113.7", "userAgent": {"rawUserAgent": "curl/8"}},
        "outcome": {"result": "SUCCESS"}, "target": [],
    }
    event.update(fields)
    return event


def envelope(*events: dict[str, Any]) -> dict[str, Any]:
    return {"eventType": "com.okta.event_hook", "eventTypeVersion": "1.0", "cloudEventsVersion": "0.1",
            "source": "https://example.okta.com/api/v1/eventHooks/who0", "eventId": "e-1",
            "eventTime": "2024-05-01T10:00:01.000Z", "contentType": "application/json",
            "data": {"events": list(events)}}


def wait_for(predicate: Callable[[], object], timeout: float = 15.0,
             detail: Callable[[], str] | None = None) -> Literal[True]:
    """Poll until ``predicate()`` is true, for effects of background loops (detector, dispatchers); raise
    WaitTimeout naming what it waited for (and ``detail()``, e.g. the daemon's log) when it never is."""
    return wait_until(predicate, timeout, interval=0.05, detail=detail)


def stored(db: Path, sql: str = "SELECT uuid FROM events ORDER BY uuid") -> list[Any]:
    """Rows of the main database, once the detector has unpacked what intake stored in the inbox
    (intake answers as soon as the delivery is durable in the inbox; events appear milliseconds later)."""
    if not db.exists():
        return []
    wait_for(lambda: inbox_backlog(db) == 0)
    conn = sqlite3.connect(db)
    try:
        return [row[0] if len(row) == 1 else row for row in conn.execute(sql)]
    finally:
        conn.close()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon(write_config(tmp_path)).start()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def shared_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One daemon for a module's requests that must store nothing (refused, malformed, read-only): each
    test still asserts that nothing is stored, which a shared daemon makes stricter, not weaker."""
    d = Daemon(write_config(tmp_path_factory.mktemp("shared"))).start()
    yield d
    d.stop()


# A one-rule pack (an alert per account lock-out), for tests that need an alert from the real daemon.
LOCK_RULE = """
id = "test-lock"
title = "locked {actor.alternateId}"
severity = "high"
event_types = ["user.account.lock"]

[[tests]]
name = "lock"
event = { eventType = "user.account.lock" }
expect = true

[[tests]]
name = "other"
event = { eventType = "user.session.start" }
expect = false
"""


def alert_rules(folder: Path) -> list[str]:
    path = folder / "state" / "alerts.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["rule_id"] for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def ruled(tmp_path: Path) -> Iterator[Daemon]:
    config = write_config(tmp_path)
    (tmp_path / "rules" / "lock.toml").write_text(LOCK_RULE)
    d = Daemon(config).start()
    yield d
    d.stop()


@pytest.fixture
def envelope_sample() -> dict[str, Any]:
    sample: dict[str, Any] = json.loads((DATA / "envelope.json").read_text(encoding="utf-8"))
    return sample


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test in a ``test_proof_*.py`` file is a slow proof: ``make proof`` runs them, ``make test`` not."""
    for item in items:
        if item.path.name.startswith("test_proof_"):
            item.add_marker(pytest.mark.proof)
