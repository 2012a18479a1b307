"""Proof: events crafted to make regexes, long strings and decoders slow do not stall the engine.

The shipped pack is loaded together with rules written to be as hostile as a rule author can make them:
catastrophic-backtracking regexes (which RE2 runs in linear time, or refuses at load with a clear error),
glob/contains/endswith on megabyte values, ``|json`` / ``|kv`` decoders on huge and deeply nested text,
and group_by / distinct / templates over huge values. Crafted events go through the real ``evaluate``.

The guard is pytest-timeout on each test (no wall-clock assertions): a regex or decoder that went
exponential would blow far past it. ``EngineState.match_errors`` counts a matcher that raised (the engine
swallows it so one rule cannot stall the detector), so it must stay 0: matching never raises.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sentinel.errors import SentinelError
from sentinel.model import Event
from sentinel.rules import RuleSet, load_rules
from sentinel.rules.engine import EngineState, evaluate

REPO = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
MB = 1_000_000

HOSTILE_RULES = r'''
[[rules]]
id = "hostile-regex"
title = "regex {displayMessage} {debugContext.debugData.behaviors|kv.New IP} {target.alternateId}"
summary = "{debugContext.debugData.threatDetections|json.a} {actor.alternateId} {client.userAgent.rawUserAgent}"
severity = "low"
event_types = ["*"]
condition = "1 of sel_*"

[rules.detection.sel_nested]
displayMessage = { regex = ["(a+)+$", "(.*a){20}", "(x+x+)+y", "^(a|aa)+$", '(\w+\s?)*$', "((a*)*b)", "(.*){1000}z"] }

[rules.detection.sel_ignore_case]
"actor.alternateId" = { regex = ["(a|a)*!", "^([a-z0-9]+\\.?)+@"], ignore_case = true }

[rules.detection.sel_glob]
displayMessage = { glob = ["*a*a*a*a*a*a*a*a*a*a*a*a*b", "?*?*?*?*?*?*?*!"] }

[rules.detection.sel_contains]
"client.userAgent.rawUserAgent" = { contains = ["aaaaaaaaaaaaaaaaaaab", "zz"], all = true, ignore_case = true }

[rules.detection.sel_ends]
displayMessage = { endswith = ["aaaab", "AAAAB"], startswith = "b", ignore_case = true }

[rules.detection.sel_json]
"debugContext.debugData.threatDetections|json.a.b.c" = { exists = true }

[rules.detection.sel_kv]
"debugContext.debugData.behaviors|kv.New IP|kv.x" = { regex = "(P+)+OSITIVE$" }

[rules.detection.sel_field]
"actor.alternateId" = { equals_field = "target.alternateId", ignore_case = true }

[rules.detection.sel_filter]
"target[type=User].alternateId" = { endswith = "a!", not = true }

[rules.detection.sel_number]
"debugContext.debugData.warningPercent" = { gt = 80 }

[rules.detection.sel_cidr]
"client.ipAddress" = { cidr = ["10.0.0.0/8", "2001:db8::/32"] }

[[rules]]
id = "hostile-group"
title = "group {actor.alternateId}"
severity = "low"
event_types = ["*"]
group_by = ["actor.alternateId", "displayMessage", "debugContext.debugData.behaviors|kv", "target.alternateId"]

[rules.threshold]
count = 2
window = "1h"
distinct = "client.userAgent.rawUserAgent"

[[rules]]
id = "hostile-throttle"
title = "throttle {debugContext.debugData.threatDetections}"
severity = "low"
event_types = ["*"]
group_by = ["debugContext.debugData.threatDetections|json"]

[rules.throttle]
period = "1h"
'''


@pytest.fixture(scope="module")
def ruleset(tmp_path_factory: pytest.TempPathFactory) -> RuleSet:
    folder = tmp_path_factory.mktemp("hostile-rules")
    (folder / "hostile.toml").write_text(HOSTILE_RULES, encoding="utf-8")
    return load_rules([REPO / "rules", folder])


def test_pathological_regexes_are_accepted_by_re2(ruleset: RuleSet) -> None:
    """RE2 has no backtracking: these patterns load and (below) run in linear time."""
    ids = {rule.id for rule in ruleset.rules}
    assert {"hostile-regex", "hostile-group", "hostile-throttle"} <= ids
    assert len(ids) >= 18  # the shipped pack came along


@pytest.mark.parametrize("pattern,reason", [
    (r"(a)\1", "backreference"),
    (r"(?=a)b", "look-ahead"),
    (r"(?<!a)b", "look-behind"),
    (r"(.*a){1001}", "repetition above RE2's limit"),
    (r"((((.*a){100}){100}){100})", "program over the memory cap"),
    (r"(a", "syntax"),
    ("a" * 5000, "pattern over the length cap"),
])
def test_regexes_re2_cannot_run_are_rejected_at_load_with_a_clear_error(tmp_path: Path, pattern: str,
                                                                        reason: str) -> None:
    rule = tmp_path / "bad.toml"
    rule.write_text(f'id = "bad-regex"\ntitle = "t"\nseverity = "low"\nevent_types = ["*"]\ncondition = "sel"\n'
                    f'[detection.sel]\ndisplayMessage = {{ regex = \'{pattern}\' }}\n', encoding="utf-8")
    with pytest.raises(SentinelError) as caught:
        load_rules([tmp_path])
    message = str(caught.value)
    # One line naming the file, the key path down to the field, and what is wrong with the pattern.
    assert "bad.toml" in message, reason
    assert "detection.sel.displayMessage" in message, (reason, message)
    assert "regex" in message or "pattern" in message, (reason, message)
    assert "Traceback" not in message


def nested_kv(depth: int) -> str:
    return "{" + "a={" * depth + "x=1" + "}" * depth + "}"


def crafted_events() -> list[tuple[str, dict[str, Any]]]:
    a_mb = "a" * MB
    return [
        ("megabyte of a then !", {"displayMessage": a_mb + "!", "actor": {"alternateId": a_mb + "!"}}),
        ("megabyte of a then b", {"displayMessage": a_mb + "b", "actor": {"alternateId": a_mb}}),
        ("megabyte of x", {"displayMessage": "x" * MB + "y", "client": {"userAgent": {"rawUserAgent": "a" * MB}}}),
        ("word soup", {"displayMessage": "ab " * (MB // 3) + "!"}),
        ("dotted local part", {"actor": {"alternateId": "a." * (MB // 2) + "!"}}),
        ("megabyte of unicode", {"displayMessage": "é" * MB, "actor": {"alternateId": "İ" * MB}}),
        ("combining marks", {"displayMessage": "a" + "\u0301" * MB}),
        ("2 MB over the cap", {"displayMessage": "a" * (2 * MB) + "b"}),
        ("huge json text", {"debugContext": {"debugData": {
            "threatDetections": '{"a":' * 200_000 + "1" + "}" * 200_000}}}),
        ("deep json under the decode cap", {"debugContext": {"debugData": {
            "threatDetections": "[" * 30_000 + "]" * 30_000}}}),
        ("deep json object under the cap", {"debugContext": {"debugData": {
            "threatDetections": '{"a":' * 10_000 + "1" + "}" * 10_000}}}),
        ("json near the cap, wide", {"debugContext": {"debugData": {
            "threatDetections": json.dumps({"a": {"b": {"c": list(range(12_000))}}})}}}),
        ("huge kv text", {"debugContext": {"debugData": {"behaviors": "{" + "New IP=POSITIVE, " * 100_000 + "}"}}}),
        ("deep kv under the decode cap", {"debugContext": {"debugData": {"behaviors": nested_kv(15_000)}}}),
        ("kv nested on the path", {"debugContext": {"debugData": {"behaviors": "{New IP={x=" + "P" * 60_000 + "!}}"}}}),
        ("kv of brackets", {"debugContext": {"debugData": {"behaviors": "{" + "[" * 60_000 + "}"}}}),
        ("huge group values", {"actor": {"alternateId": "g" * MB}, "displayMessage": "h" * MB,
                               "client": {"userAgent": {"rawUserAgent": "u" * MB}}}),
        ("wide target", {"target": [{"type": "User", "alternateId": "t" * 1000 + str(i)} for i in range(100_000)],
                         "actor": {"alternateId": "t" * 1000 + "99999"}}),
        ("deep event data", {"deep": _deep(900), "actor": _deep(900), "target": [_deep(900)]}),
        ("numbers as text", {"debugContext": {"debugData": {"warningPercent": "9" * 10_000}}}),
        ("huge number", {"debugContext": {"debugData": {"warningPercent": 10**4000}}}),
        ("float edge cases", {"debugContext": {"debugData": {"warningPercent": float("nan")}},
                              "client": {"ipAddress": "1" * MB}}),
    ]


def _deep(depth: int) -> Any:
    node: Any = "leaf"
    for i in range(depth):
        node = {"a": node} if i % 2 else [node]
    return node


# Types the shipped pack reads (brute force, spraying, admin grants), and one only the "*" rules see.
EVENT_TYPES = ["user.session.start", "user.account.privilege.grant", "debug.only"]


def run(ruleset: RuleSet, bodies: list[dict[str, Any]], event_type: str) -> EngineState:
    """Each body three times (thresholds, folds), in the published order, through one state."""
    state = EngineState()
    for index in range(3):
        for n, body in enumerate(bodies):
            published = T0 + timedelta(seconds=index * 10 + n)
            event = Event(f"e{index}-{n}", event_type, published, {**body, "eventType": event_type})
            alerts, state = evaluate(ruleset, event, state, published)
            for alert in alerts:
                assert isinstance(alert.title, str)
                assert len(alert.title) < 10_000  # templates cut values; a megabyte never reaches a message
    for text in state.take_changes()[0].values():
        json.loads(text)  # the state stays storable
    return state


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name,body", crafted_events(), ids=[name for name, _ in crafted_events()])
@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_crafted_events_do_not_stall_or_break_the_engine(ruleset: RuleSet, name: str, body: dict[str, Any],
                                                         event_type: str) -> None:
    state = run(ruleset, [body], event_type)
    assert state.match_errors == 0, f"{name}: a matcher raised"


# -- arbitrary JSON in every field the rules read -----------------------------------------------------------

KEYS = ["actor", "alternateId", "displayName", "id", "type", "client", "ipAddress", "userAgent", "rawUserAgent",
        "geographicalContext", "city", "country", "debugContext", "debugData", "privilegeGranted", "behaviors",
        "threatDetections", "threatSuspected", "networkConnection", "rateLimitScopeType", "warningPercent",
        "threshold", "timeSpan", "timeUnit", "suspiciousActivityEventIp", "outcome", "result", "reason", "target",
        "detailEntry", "policyType", "displayMessage", "securityContext", "a", "b", "c", "x", "New IP", "User",
        "ROLE", "SUPER_ADMIN", "URL Pattern"]
scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.sampled_from([*KEYS, "POSITIVE", "FAILURE"])
           | st.text(max_size=30) | st.sampled_from(["{New IP={x=POSITIVE}}", '{"a":{"b":{"c":1}}}', "[[[]]]",
                                                     "10.1.2.3", "2001:db8::1", "1e999", "-0", "NaN", "true"]))
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner,
                                                                max_size=5),
    max_leaves=40,
)
events = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=10)


@pytest.mark.timeout(120)
@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(events, min_size=1, max_size=4),
       st.sampled_from([*EVENT_TYPES, "iam.role.create", "user.account.lock", "group.privilege.grant",
                        "system.org.rate_limit.warning", "user.authentication.auth_via_mfa"]))
def test_matching_never_raises_on_generated_events(ruleset: RuleSet, bodies: list[dict[str, Any]],
                                                   event_type: str) -> None:
    state = run(ruleset, bodies, event_type)
    assert state.match_errors == 0
