"""Proof (real daemon, slow): resolve_after end to end. A rule with resolve_after fires through /hooks/okta, the
daemon's PagerDuty channel (Apprise's real plugin, pointed at a local capture server by tests/e2e_launch.py)
triggers, and once the group is quiet the daemon's monitor resolves it with the same dedup_key; a channel with
send_resolved = true gets the note; `sentinel alerts` shows the alert resolved."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import envelope, make_event, wait_for
from daemon import Daemon, write_config
from helpers_capture import CaptureServer

from sentinel.cli import main

REPO = Path(__file__).resolve().parent.parent
RULE = """
id = "proof-lockout"
title = "Locked {actor.alternateId}"
severity = "high"
event_types = ["user.account.lock"]
group_by = ["actor.alternateId"]
resolve_after = "2s"
"""


@pytest.fixture
def capture() -> Iterator[CaptureServer]:
    srv = CaptureServer().start()
    yield srv
    srv.stop()


def test_the_daemon_triggers_then_resolves_a_quiet_group_with_the_same_dedup_key(
        tmp_path: Path, capture: CaptureServer) -> None:
    config = write_config(tmp_path, extra=f"""
[channels.pager]
urls = ["pagerduty://${{PD_ROUTING_KEY}}@${{PD_API_KEY}}"]
min_severity = "high"
[channels.chat]
urls = ["json://127.0.0.1:{capture.port}/chat"]
send_resolved = true
""")
    (tmp_path / "rules" / "lock.toml").write_text(RULE, encoding="utf-8")
    daemon = Daemon(config, env={"SENTINEL_E2E_CAPTURE_BASE": capture.base, "PD_ROUTING_KEY": "routingKEY0123",
                                 "PD_API_KEY": "apiKEY0123"},
                    command=[sys.executable, str(REPO / "tests" / "e2e_launch.py")]).start()
    try:
        assert daemon.post(envelope(make_event("lock-1", "user.account.lock"))).status_code == 204
        wait_for(lambda: len(capture.to("/v2/enqueue")) >= 2, timeout=30, detail=daemon.log)
        wait_for(lambda: len(capture.to("/chat")) >= 2, timeout=30, detail=daemon.log)
        rows = [json.loads(line) for line in CliRunner().invoke(
            main, ["alerts", "--json", "--config", str(config)]).output.splitlines()]
    finally:
        daemon.stop()
    bodies = [r.json() for r in capture.to("/v2/enqueue")]
    assert [b["event_action"] for b in bodies] == ["trigger", "resolve"]
    assert bodies[0]["dedup_key"] == bodies[1]["dedup_key"] == "proof-lockout:actor.alternateId=alice@example.com"
    notes = [r.json()["title"] for r in capture.to("/chat")]
    assert notes[1] == "[RESOLVED] Locked alice@example.com"
    assert [r["status"] for r in rows] == ["resolved"]


def test_the_daemon_sends_a_storm_digest_past_a_channels_limit(tmp_path: Path, capture: CaptureServer) -> None:
    config = write_config(tmp_path, extra=f"""
[channels.chat]
urls = ["json://127.0.0.1:{capture.port}/chat"]
storm_limit = 2
storm_window = "3s"
""")
    (tmp_path / "rules" / "lock.toml").write_text(RULE, encoding="utf-8")
    daemon = Daemon(config).start()
    try:
        users = [make_event(f"lock-{i}", "user.account.lock", actor={
            "id": f"00u{i}", "type": "User", "alternateId": f"user{i}@example.com", "displayName": f"U{i}"})
            for i in range(6)]
        assert daemon.post(envelope(*users)).status_code == 204
        wait_for(lambda: any("Alert storm" in r.json()["title"] for r in capture.to("/chat")), timeout=30,
                 detail=daemon.log)
        digested = CliRunner().invoke(main, ["deliveries", "--status", "digested", "--config", str(config)]).output
    finally:
        daemon.stop()
    titles = [r.json()["title"] for r in capture.to("/chat")]
    assert len(titles) == 3 and titles[-1] == "[HIGH] Alert storm on chat: 4 alerts in 1 rules", titles
    assert digested.count("chat") == 4


def test_the_daemons_detector_process_silences_alerts_in_a_maintenance_window(
        tmp_path: Path, capture: CaptureServer) -> None:
    config = write_config(tmp_path, extra=f"""
[channels.chat]
urls = ["json://127.0.0.1:{capture.port}/chat"]

[[maintenance]]
name = "all day"
rules = ["proof-*"]
match = {{ "actor.alternateId" = "ALICE@example.com" }}
times = "00:00-24:00"
timezone = "Europe/Paris"
""")
    (tmp_path / "rules" / "lock.toml").write_text(RULE, encoding="utf-8")
    daemon = Daemon(config).start()
    try:
        bob = make_event("lock-bob", "user.account.lock", actor={"id": "00u2", "type": "User",
                                                                  "alternateId": "bob@example.com"})
        assert daemon.post(envelope(make_event("lock-alice", "user.account.lock"), bob)).status_code == 204
        wait_for(lambda: len(capture.to("/chat")) == 1, timeout=30, detail=daemon.log)  # bob's
        rows = {r["title"]: r for r in map(json.loads, CliRunner().invoke(
            main, ["alerts", "--json", "--config", str(config)]).output.splitlines())}
    finally:
        daemon.stop()
    assert rows["Locked alice@example.com"]["status"] == "silenced"
    assert rows["Locked alice@example.com"]["silenced_by"] == "maintenance all day"
    assert rows["Locked bob@example.com"]["status"] == "open"
    assert [r.json()["title"] for r in capture.to("/chat")] == ["[HIGH] Locked bob@example.com"]
