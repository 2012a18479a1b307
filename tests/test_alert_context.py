"""The engine → render contract is a typed value: misspelt fields fail type checking, and what the engine
writes survives the store's JSON round trip unchanged."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from conftest import rule_by_id

from sentinel.alert_context import AlertContext
from sentinel.model import Alert
from sentinel.render import message as render
from sentinel.rules import load_rules
from sentinel.rules.engine import EngineState, evaluate
from sentinel.rules.model import RuleSet
from sentinel.rules.testing import event_from_dict, raised_alerts
from sentinel.store import Store

REPO = Path(__file__).resolve().parent.parent
PACK = load_rules([REPO / "rules"])


def test_a_misspelt_context_field_is_a_type_error(tmp_path: Path) -> None:
    snippet = tmp_path / "reads_context.py"
    snippet.write_text(
        "from sentinel.model import Alert\n\n\n"
        "def fine(alert: Alert) -> object:\n"
        "    return alert.context.group_by, alert.context.event_uuid, alert.context.distinct_values\n\n\n"
        "def misspelt(alert: Alert) -> object:\n"
        "    return alert.context.group_fields\n\n\n"
        "def as_a_dict(alert: Alert) -> object:\n"
        '    return alert.context["uuid"]\n'
    )
    result = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-error-summary", str(snippet)],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 2, result.stdout + result.stderr
    assert '"AlertContext" has no attribute "group_fields"' in errors[0]
    assert '"AlertContext" is not indexable' in errors[1]  # not a dict: no key can be misspelt


def test_every_pack_alert_context_survives_the_store_json_round_trip() -> None:
    alerts = [a for rule in PACK.rules for test in rule.tests for a in raised_alerts(rule, test)]
    assert len({a.rule_id for a in alerts}) == len(PACK.rules)
    for alert in alerts:
        stored = json.loads(json.dumps(alert.context.as_dict()))
        assert AlertContext.from_dict(stored) == alert.context, alert.rule_id


def test_the_stored_alert_read_back_for_delivery_has_the_engine_context(tmp_path: Path) -> None:
    rule = rule_by_id(PACK, "okta-password-spraying")
    assert rule is not None
    (alert,) = raised_alerts(rule, next(t for t in rule.tests if t.expect == 1))
    now = datetime.now(UTC)

    async def run() -> AlertContext:
        store = Store(tmp_path / "sentinel.db")
        store.start(now)
        try:
            await store.record_evaluation([], [alert], lambda _: ["log"], {}, [], now)
            (due,) = await store.due_deliveries("log", now)
            return due.alert.context
        finally:
            store.close()

    context = asyncio.run(run())
    assert context == alert.context
    assert context.distinct_count == 10 and context.event_uuid == alert.context.event_uuid


def test_a_stored_context_of_any_shape_reads_back_without_error() -> None:
    assert AlertContext.from_dict(None) == AlertContext()
    odd = AlertContext.from_dict({"actor": "x", "targets": "y", "samples": [1, {"uuid": 2}], "window_seconds": "60",
                                  "distinct_count": float("inf"), "references": "https://a", "tags": [None, "t"]})
    assert odd.actor.alternate_id == "x" and odd.targets == () and odd.window_seconds is None
    assert [s.uuid for s in odd.samples] == ["2"] and odd.distinct_count is None
    assert odd.references == ("https://a",) and odd.tags == ("t",)


def test_an_alert_that_grew_is_delivered_with_the_context_of_its_latest_version(tmp_path: Path) -> None:
    """Six more users join a spray after it was stored: the message states 16 distinct users, not 10."""
    rule = rule_by_id(PACK, "okta-password-spraying")
    assert rule is not None
    spray = next(t for t in rule.tests if t.expect == 1)
    later = [{**spray.events[-1], "uuid": f"later-{i}", "published": f"2026-01-01T10:1{i}:00Z",
              "actor": {"alternateId": f"late{i}@example.com"}} for i in range(6)]
    events = sorted((event_from_dict(e) for e in (*spray.events, *later)), key=lambda e: e.published)
    ruleset, state = RuleSet([rule]), EngineState()
    now = datetime.now(UTC)

    async def run() -> Alert:
        store = Store(tmp_path / "sentinel.db")
        store.start(now)
        try:
            nonlocal state
            for event in events:  # one detector batch per event: each emission is recorded as it comes
                alerts, state = evaluate(ruleset, event, state, event.published)
                await store.record_evaluation([event.uuid], alerts, lambda _: ["log"], {}, [], now)
            (due,) = await store.due_deliveries("log", now)
            return due.alert
        finally:
            store.close()

    alert = asyncio.run(run())
    assert alert.count == 16 and alert.context.distinct_count == 16
    assert alert.context.event_uuid == "later-5" and alert.context.actor.alternate_id == "late5@example.com"
    assert "16 distinct actor.alternateId (first 10 shown)" in render.email_message(alert).text
