"""PagerDuty incidents: one per alert group, never one per rule. Alerts the real engine made from the default
pack's sample events, and a real daemon whose PagerDuty channel posts to a local capture server."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import envelope, wait_for
from daemon import Daemon, write_config
from helpers_capture import CaptureServer

from sentinel.model import Alert, format_timestamp, parse_timestamp
from sentinel.render.message import pagerduty_message
from sentinel.rules import load_rules
from sentinel.rules.engine import EngineState, evaluate
from sentinel.rules.testing import event_from_dict

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "rules" / "data"
HELPDESK = json.loads((DATA / "privilege-grant-helpdesk.json").read_text(encoding="utf-8"))
SUPERADMIN = json.loads((DATA / "privilege-grant-superadmin.json").read_text(encoding="utf-8"))
SPRAY = json.loads((DATA / "password-spray-10-users.json").read_text(encoding="utf-8"))
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def engine_alerts(events: list[dict[str, Any]]) -> list[Alert]:
    """Every alert (re-emissions included) the real engine raises over the default pack, in event order."""
    ruleset, state, alerts = load_rules([REPO / "rules"]), EngineState(), []
    for event in sorted((event_from_dict(e) for e in events), key=lambda e: e.published):
        raised, state = evaluate(ruleset, event, state, NOW)
        alerts.extend(raised)
    return alerts


def test_two_grants_to_two_users_get_two_dedup_keys() -> None:
    alerts = engine_alerts([HELPDESK, SUPERADMIN])
    assert {a.severity.label for a in alerts} == {"high", "critical"}  # Help Desk, then Super administrator
    assert {a.rule_id for a in alerts} == {"okta-admin-privilege-granted-user"}  # one rule, no group_by
    assert len({pagerduty_message(a).dedup_key for a in alerts}) == 2


def test_the_same_alert_keeps_its_dedup_key() -> None:
    # The same grant seen again (a re-delivery evaluated anew) is the same alert: the same incident.
    (first,) = engine_alerts([SUPERADMIN])
    (again,) = engine_alerts([SUPERADMIN])
    assert first.key == again.key and pagerduty_message(first).dedup_key == pagerduty_message(again).dedup_key
    # A spray re-emits its alert as more users fail: every emission folds into one incident.
    last = SPRAY[-1]
    more = [{**last, "uuid": f"spray-more-{i}", "actor": {**last["actor"], "alternateId": f"late{i}@example.com"},
             "published": format_timestamp(parse_timestamp(last["published"]) + timedelta(seconds=10 + i))}
            for i in range(2)]
    spray = [a for a in engine_alerts(SPRAY + more) if a.rule_id == "okta-password-spraying"]
    assert len(spray) > 1 and len({a.key for a in spray}) == 1
    assert len({pagerduty_message(a).dedup_key for a in spray}) == 1


@pytest.fixture
def capture() -> Iterator[CaptureServer]:
    srv = CaptureServer().start()
    yield srv
    srv.stop()


def test_the_daemon_opens_one_pagerduty_incident_per_grant(tmp_path: Path, capture: CaptureServer) -> None:
    config = write_config(tmp_path, rules=str(REPO / "rules"), extra="""
[channels.pager]
urls = ["pagerduty://${PD_ROUTING_KEY}@${PD_API_KEY}"]
min_severity = "high"
""")
    daemon = Daemon(config, env={"SENTINEL_E2E_CAPTURE_BASE": capture.base, "PD_ROUTING_KEY": "routingKEY0123",
                                 "PD_API_KEY": "apiKEY0123"},
                    command=[sys.executable, str(REPO / "tests" / "e2e_launch.py")]).start()
    try:
        assert daemon.post(envelope(HELPDESK)).status_code == 204
        assert daemon.post(envelope(SUPERADMIN)).status_code == 204
        wait_for(lambda: len(capture.to("/v2/enqueue")) >= 2, detail=daemon.log)
    finally:
        daemon.stop()
    bodies = [r.json() for r in capture.to("/v2/enqueue")]
    assert len(bodies) == 2
    assert {b["payload"]["severity"] for b in bodies} == {"error", "critical"}  # high, critical
    assert all(b["event_action"] == "trigger" for b in bodies)
    assert len({b["dedup_key"] for b in bodies}) == 2, bodies
