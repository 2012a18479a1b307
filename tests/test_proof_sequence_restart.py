"""Proof: sequence state survives SIGKILL between steps, and the alert still fires exactly once.

The real daemon runs the shipped pack (plus one absence rule written here). The pack's own test events for
``okta-mfa-push-fatigue`` (rules/data) are sent in two parts with ``kill -9`` in between: two denials, kill,
restart, the third denial and the accept. Sending everything again must not raise a second alert. Then an
absence rule's first step is sent, the daemon killed, and after a restart an unrelated event past the
deadline fires it once.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from conftest import envelope, make_event
from daemon import Daemon, write_config
from proof_helpers import query, settled, wait_until

from sentinel.model import format_timestamp

REPO = Path(__file__).resolve().parent.parent
ABSENCE_RULE = """
id = "proof-lock-not-unlocked"
title = "{target[type=User].alternateId} locked and not unlocked"
severity = "medium"
event_types = ["user.account.lock", "user.account.unlock_by_admin"]
group_by = ["actor.alternateId"]
[detection.locked]
eventType = "user.account.lock"
[detection.unlocked]
eventType = "user.account.unlock_by_admin"
[sequence]
[[sequence.steps]]
selection = "locked"
[[sequence.steps]]
selection = "unlocked"
absent = true
within = "10m"
"""


def recent(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pack's test events moved to an hour ago (keeping their spacing), within retention."""
    start = min(datetime.fromisoformat(e["published"]) for e in events)
    base = datetime.now(UTC) - timedelta(hours=1)
    return [dict(e, published=format_timestamp(base + (datetime.fromisoformat(e["published"]) - start)))
            for e in events]


def alerts(db: Path, rule_id: str) -> list[tuple[str, list[str], int]]:
    rows = query(db, "SELECT key, event_uuids, count FROM alerts WHERE rule_id = ?", (rule_id,))
    return [(key, json.loads(uuids), count) for key, uuids, count in rows]


def post_and_settle(daemon: Daemon, db: Path, *events: dict[str, Any]) -> None:
    response = daemon.post(envelope(*events))
    assert response.status_code in (200, 204), response.text
    wait_until(lambda: settled(db), timeout=30, detail=daemon.log)


def test_a_sequence_split_by_kill_9_fires_once(tmp_path):
    shutil.copytree(REPO / "rules", tmp_path / "rules")
    (tmp_path / "rules" / "proof-absence.toml").write_text(ABSENCE_RULE, encoding="utf-8")
    config = write_config(tmp_path)
    db = tmp_path / "state" / "sentinel.db"
    pushes = recent(json.loads((REPO / "rules/data/mfa-push-fatigue-oie.json").read_text(encoding="utf-8")))
    daemon = Daemon(config).start()
    try:
        post_and_settle(daemon, db, *pushes[:2])
        assert query(db, "SELECT count(*) FROM rule_state WHERE key LIKE 'okta-mfa-push-fatigue/%'") == [(1,)]
        daemon.kill()
        daemon.start()
        assert alerts(db, "okta-mfa-push-fatigue") == []
        post_and_settle(daemon, db, *pushes[2:])
        [(_, uuids, count)] = alerts(db, "okta-mfa-push-fatigue")
        assert uuids == [e["uuid"] for e in pushes] and count == 4
        post_and_settle(daemon, db, *pushes)  # Okta redelivers: nothing new
        assert len(alerts(db, "okta-mfa-push-fatigue")) == 1

        base = datetime.now(UTC) - timedelta(minutes=30)
        lock = make_event("lock-1", "user.account.lock", format_timestamp(base),
                          target=[{"type": "User", "alternateId": "alice@example.com"}])
        post_and_settle(daemon, db, lock)
        daemon.kill()
        daemon.start()
        before = make_event("later-1", published=format_timestamp(base + timedelta(minutes=5)))
        post_and_settle(daemon, db, before)
        assert alerts(db, "proof-lock-not-unlocked") == []
        after = make_event("later-2", published=format_timestamp(base + timedelta(minutes=11)))
        post_and_settle(daemon, db, after)
        [(_, uuids, _)] = alerts(db, "proof-lock-not-unlocked")
        assert uuids == ["lock-1"]
        daemon.kill()
        daemon.start()
        post_and_settle(daemon, db, make_event("later-3", published=format_timestamp(base + timedelta(minutes=20))))
        assert len(alerts(db, "proof-lock-not-unlocked")) == 1
    finally:
        daemon.stop()
