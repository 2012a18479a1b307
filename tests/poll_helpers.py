"""What the real-daemon poller tests share: a fake Okta beside the daemon, a config with ``[okta.api]``, and
rules on poll-only event types."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from conftest import LOCK_RULE
from daemon import Daemon, write_config
from fake_okta import FakeOkta
from test_fake_okta import events_at

API_TOKEN = "00daemonPollerTokenSSWSxyz"
THREAT_TYPE = "security.threat.detected"  # not hook-eligible: only the poller can bring it
# An alert per ThreatInsight detection.
THREAT_RULE = f"""
id = "test-threat"
title = "threat from {{client.ipAddress}}"
severity = "high"
event_types = ["{THREAT_TYPE}"]
"""


def now() -> datetime:
    return datetime.now(UTC)


def threats(count: int, start: datetime | None = None, step: timedelta = timedelta(milliseconds=10)) \
        -> list[dict[str, Any]]:
    events = events_at(start or now() - timedelta(minutes=5), count, step)
    for event in events:
        event["eventType"] = THREAT_TYPE
    return events


def lock_event(uuid: str) -> dict[str, Any]:
    (event,) = events_at(now() - timedelta(minutes=1), 1)
    event.update(uuid=uuid, eventType="user.account.lock")
    return event


def poll_config(folder: Path, fake: FakeOkta, api: str = "", rules: tuple[str, ...] = (THREAT_RULE, LOCK_RULE)) \
        -> Path:
    config = write_config(folder, extra=f"""
[okta.api]
base_url = "{fake.base}"
poll_interval_seconds = 1
backfill_hours = 1
{api}
""")
    for i, text in enumerate(rules):
        (folder / "rules" / f"rule{i}.toml").write_text(text)
    return config


def poll_daemon(config: Path, token: str | None = API_TOKEN, env: dict[str, str] | None = None) -> Daemon:
    extra = {"SENTINEL_OKTA_API_TOKEN": token} if token else {}
    return Daemon(config, env={**extra, **(env or {})})


@contextmanager
def fake_okta(**kwargs: Any) -> Iterator[FakeOkta]:
    kwargs.setdefault("api_token", API_TOKEN)
    kwargs.setdefault("rate_limit", 1000)
    server = FakeOkta(**kwargs).start()
    try:
        yield server
    finally:
        server.stop()


def alerts(folder: Path) -> list[dict[str, Any]]:
    path = folder / "state" / "alerts.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def readyz(daemon: Daemon) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{daemon.url}/readyz", timeout=5).json()
    return body


def metric(daemon: Daemon, name: str, labels: str = "") -> float:
    text = httpx.get(f"{daemon.url}/metrics", timeout=5).text
    wanted = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.split()[-1])
    return 0.0


def event_count(db: Path, sql: str = "SELECT count(*) FROM events") -> int:
    if not db.exists():
        return 0
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute(sql).fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()
