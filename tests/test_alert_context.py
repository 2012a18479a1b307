"""The engine → render contract is a typed value: misspelt fields fail type checking, and what the engine
writes survives the store's JSON round trip unchanged."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from sentinel.alert_context import AlertContext
from sentinel.rule_tests import raised_alerts
from sentinel.rules import load_rules
from sentinel.store import Store
from sentinel.store.alerts import record_evaluation
from sentinel.store.deliveries import due_deliveries

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
    rule = PACK.get("okta-password-spraying")
    assert rule is not None
    (alert,) = raised_alerts(rule, next(t for t in rule.tests if t.expect == 1))
    now = datetime.now(UTC)

    async def run() -> AlertContext:
        store = Store(tmp_path / "sentinel.db")
        store.start(now)
        try:
            await store.write(lambda c: record_evaluation(c, [], [alert], lambda _: ["log"], {}, [], now))
            (due,) = await store.read(lambda c: due_deliveries(c, "log", now))
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
