"""Run a rule's inline tests through the real engine, each test with only that rule and fresh state."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sentinel.errors import PayloadError
from sentinel.model import Alert, Event
from sentinel.okta import parse_event
from sentinel.rules.engine import EngineState, evaluate
from sentinel.rules.model import Rule, RuleSet, RuleTest


@dataclass(frozen=True, slots=True)
class TestResult:
    rule_id: str
    test: RuleTest
    passed: bool
    detail: str  # what happened, for the failure line


def event_from_dict(data: Mapping[str, Any]) -> Event:
    """An Event from a LogEvent dict, checked as intake checks one (:func:`sentinel.okta.parse_event`);
    ValueError names the first missing or bad key field."""
    try:
        return parse_event(dict(data), "event")
    except PayloadError as error:
        raise ValueError(str(error)) from None


def raised_alerts(rule: Rule, test: RuleTest) -> list[Alert]:
    """The alerts a test's events raise under ``rule`` alone, from fresh state, in ``published`` order:
    the latest version of each alert (its count grown by later events), in the order first raised.

    Raises ValueError naming the first unusable test event.
    """
    ruleset = RuleSet([_enabled(rule)])
    state = EngineState()
    events = sorted((event_from_dict(e) for e in test.events), key=lambda e: e.published)
    keys: dict[str, Alert] = {}
    for event in events:
        alerts, state = evaluate(ruleset, event, state, event.published)
        for alert in alerts:
            keys[alert.key] = alert
    return list(keys.values())


def run_test(rule: Rule, test: RuleTest) -> TestResult:
    try:
        keys = {alert.key: alert for alert in raised_alerts(rule, test)}
    except ValueError as error:
        return TestResult(rule.id, test, False, f"bad test event: {error}")
    count = len(keys)
    if isinstance(test.expect, bool):
        passed = (count > 0) == test.expect
        wanted = "an alert" if test.expect else "no alert"
    else:
        passed = count == test.expect
        wanted = f"{test.expect} alert(s)"
    detail = f"expected {wanted}, got {count}"
    if passed and test.expect_severity is not None and keys:
        severities = {a.severity for a in keys.values()}
        if severities != {test.expect_severity}:
            passed = False
            got = ", ".join(sorted(s.label for s in severities))
            detail = f"expected severity {test.expect_severity.label}, got {got}"
    return TestResult(rule.id, test, passed, detail)


def run_tests(ruleset: RuleSet) -> list[TestResult]:
    """Every inline test of every rule (disabled rules included: their tests still document them)."""
    return [run_test(rule, test) for rule in ruleset.rules for test in rule.tests]


def _enabled(rule: Rule) -> Rule:
    if rule.enabled:
        return rule
    from dataclasses import replace

    return replace(rule, enabled=True)
