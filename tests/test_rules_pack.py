"""The shipped rule pack: it loads cleanly, every inline test passes, every rule has a matching and a
non-matching case, and it agrees with Panther's public test cases except where docs/rules.md says why."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import rule_by_id
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sentinel.model import Event, Severity
from sentinel.rules import RuleSet, lint, load_rules
from sentinel.rules.engine import EngineState, evaluate
from sentinel.rules.testing import event_from_dict, run_tests

ROOT = Path(__file__).resolve().parent.parent
PACK = ROOT / "rules"
PANTHER = Path(__file__).parent / "data" / "panther-okta-cases.jsonl"
T0 = datetime(2026, 1, 1, tzinfo=UTC)

REQUIRED_DETECTIONS = {
    "okta-user-reported-suspicious-activity", "okta-org-rate-limit-warning", "okta-org-rate-limit-violation",
    "okta-admin-privilege-granted-user", "okta-admin-privilege-granted-group", "okta-oauth-app-privilege-granted",
    "okta-custom-admin-role-changed", "okta-mfa-factors-reset-all", "okta-api-token-created",
    "okta-policy-deactivated-or-deleted", "okta-identity-provider-changed", "okta-fastpass-phishing-blocked",
    "okta-user-account-locked", "okta-password-spraying", "okta-brute-force-user",
    "okta-admin-console-new-country", "okta-session-roaming",
    "okta-mfa-push-fatigue", "okta-mfa-reset-then-admin-grant",
    # fed by the System Log poller (issue 13)
    "okta-threatinsight-threat-detected", "okta-impersonation-session-started", "okta-network-zone-changed",
    "okta-event-hook-delivery-failed",
}
# Rules reading types no event hook can deliver: without [okta.api] they see nothing (or, for
# okta-mfa-push-exhaustion, not the pushes sent), and lint says so.
POLL_FED = {"okta-threatinsight-threat-detected", "okta-impersonation-session-started", "okta-network-zone-changed",
            "okta-event-hook-delivery-failed", "okta-threatinsight-attack-started", "okta-mfa-factor-disabled-org-wide",
            "okta-admin-console-new-country", "okta-mfa-push-exhaustion"}


@pytest.fixture(scope="module")
def pack() -> RuleSet:
    # The hand-written pack. rules/sigma (imported Sigma rules: no runbooks, Sigma's own tags, some event types
    # only the System Log poller delivers) is checked by tests/test_sigma_import.py.
    return load_rules(sorted(p for p in PACK.iterdir() if p.suffix == ".toml"))


def test_pack_has_the_required_detections(pack):
    assert {r.id for r in pack} >= REQUIRED_DETECTIONS


def test_pack_lints_clean(pack):
    assert lint(pack, polling=True) == []  # every rule has tests, known tags, ...; the poller brings every type
    # Without the poller the only warnings are the poll-fed rules' types, each saying it needs polling.
    without = lint(pack)
    assert without and all("needs System Log polling" in warning for warning in without)
    assert {warning.split(": ")[1] for warning in without} == POLL_FED


def test_every_shipped_rule_documents_itself(pack):
    for rule in pack:
        assert rule.references, rule.id
        assert rule.runbook, rule.id
        assert rule.description, rule.id
        assert any(t.startswith("attack.t") for t in rule.tags), rule.id


def test_every_inline_test_passes(pack):
    failures = [f"{r.rule_id}: {r.test.name}: {r.detail}" for r in run_tests(pack) if not r.passed]
    assert failures == []


def test_every_rule_has_a_matching_and_a_non_matching_case(pack):
    for rule in pack:
        expectations = {bool(test.expect) for test in rule.tests}
        assert expectations == {True, False}, rule.id


def panther_cases() -> list[dict[str, Any]]:
    lines = PANTHER.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("#") and "Apache-2.0" in lines[0]
    return [json.loads(line) for line in lines[1:] if line.strip()]


@pytest.mark.parametrize("case", panther_cases(), ids=lambda c: f"{c['sentinel_rule_id']}:{c['test_name']}")
def test_panther_cases(pack, case):
    """``expected`` means "this event matches / counts toward the rule", also for threshold rules."""
    rule = rule_by_id(pack, case["sentinel_rule_id"])
    assert rule is not None
    event = case["event"]
    assert rule.matches(event.get("eventType", ""), event) is case["sentinel_expected"]
    if case["sentinel_expected"] != case["panther_expected"]:
        assert case["difference"], "a deliberate difference must say why"
    if "sentinel_severity" in case:
        assert rule.severity_for(event) is Severity.parse(case["sentinel_severity"])


def test_panther_differences_are_documented():
    docs = (ROOT / "docs" / "rules.md").read_text(encoding="utf-8")
    for case in panther_cases():
        if case["difference"]:
            assert case["panther_rule_id"] in docs


def test_single_panther_events_alert_end_to_end(pack):
    """Cases with a usable published time go through the real engine too (non-threshold rules)."""
    checked = 0
    for case in panther_cases():
        rule = rule_by_id(pack, case["sentinel_rule_id"])
        if rule is None or rule.threshold is not None or not case["event"].get("published"):
            continue
        data = dict(case["event"], uuid=case["event"].get("uuid") or "panther-case")
        event = event_from_dict(data)
        alerts, _ = evaluate(RuleSet([rule]), event, EngineState(), event.published)
        assert bool(alerts) is case["sentinel_expected"], case["test_name"]
        checked += 1
    assert checked >= 15


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=25,
)
okta_keys = st.sampled_from(
    ["actor", "target", "client", "debugContext", "outcome", "displayMessage", "securityContext", "transaction"]
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
@pytest.mark.proof
def test_pack_never_raises_on_hostile_events(pack, data):
    rule = data.draw(st.sampled_from(pack.rules))
    event_type = rule.event_types[0].replace("*", "update")
    body = data.draw(st.dictionaries(okta_keys, json_values))
    body["debugContext"] = data.draw(st.one_of(json_values, st.fixed_dictionaries({"debugData": json_values})))
    body["outcome"] = data.draw(st.one_of(json_values, st.just({"result": "FAILURE"})))
    body["eventType"] = event_type
    state = EngineState()
    for index in range(3):
        event = Event(f"h{index}", event_type, T0 + timedelta(seconds=index), dict(body))
        _, state = evaluate(pack, event, state, event.published)
    assert state.match_errors == 0
    for text in state.take_changes()[0].values():
        json.loads(text)
