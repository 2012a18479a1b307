"""Silences, pure: which alerts a silence covers (rule id or glob, field matchers on the alert's events, the
same field paths and case rules as the rule language) and when it is in force. Alerts come from the engine
running the shipped rule pack on events shaped as Okta sends them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import make_event

from sentinel.model import Alert
from sentinel.okta import parse_event
from sentinel.rules import load_rules
from sentinel.rules.engine import EngineState, evaluate
from sentinel.silences import Silence, matches, silencing, validate

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 3, 1, 3, 0, tzinfo=UTC)
PACK = load_rules([ROOT / "rules"])


def lockout(who: str = "jane@example.com", **fields: Any) -> tuple[Alert, dict[str, Any]]:
    """The alert the shipped pack raises for a user.account.lock event, and that event."""
    data = make_event("u-1", "user.account.lock", "2026-03-01T02:59:00.000Z",
                      actor={"id": "00u9", "type": "User", "alternateId": who, "displayName": "Jane"}, **fields)
    alerts, _ = evaluate(PACK, parse_event(data), EngineState(), NOW)
    assert [a.rule_id for a in alerts] == ["okta-user-account-locked"]
    return alerts[0], data


def silence(rule: str = "okta-user-account-locked", *matchers: tuple[str, str], starts: datetime = NOW,
            ends: datetime = NOW + timedelta(hours=1), expired: datetime | None = None, sid: int = 1) -> Silence:
    return Silence(sid, rule, tuple(matchers), starts, ends, "oncall", "known noise", NOW, expired)


def test_a_silence_on_the_rule_covers_its_alerts() -> None:
    alert, data = lockout()
    assert silencing([silence()], alert, [data], NOW) == silence()


@pytest.mark.parametrize(("rule", "covered"), [
    ("okta-*", True), ("okta-user-*", True), ("okta-user-account-locke?", True), ("*", True),
    ("okta-brute-force-user", False), ("okta-user-account", False), ("OKTA-*", False),
])
def test_the_rule_is_an_id_or_a_glob(rule: str, covered: bool) -> None:
    alert, data = lockout()
    assert (silencing([silence(rule)], alert, [data], NOW) is not None) is covered


@pytest.mark.parametrize(("matchers", "covered"), [
    ((("actor.alternateId", "jane@example.com"),), True),
    ((("actor.alternateId", "JANE@Example.COM"),), True),  # text folds case, as rules do by default
    ((("actor.alternateId", "john@example.com"),), False),
    ((("actor.alternateId", "jane@example.com"), ("client.ipAddress", "203.0.113.7")), True),
    ((("actor.alternateId", "jane@example.com"), ("client.ipAddress", "198.51.100.1")), False),  # all must hold
    ((("target[type=AppInstance].alternateId", "Salesforce"),), True),  # selectors, as in rules
    ((("target.alternateId", "salesforce"),), True),  # an array matches if any element does
    ((("debugContext.debugData.behaviors|kv", "x"),), False),
    ((("no.such.field", "x"),), False),  # a missing field never matches
    ((("securityContext.isProxy", "true"),), True),  # a boolean compared as text
])
def test_matchers_use_the_rules_field_paths(matchers: tuple[tuple[str, str], ...], covered: bool) -> None:
    alert, data = lockout(target=[{"type": "AppInstance", "alternateId": "Salesforce"}],
                          securityContext={"isProxy": True})
    assert (silencing([silence("okta-*", *matchers)], alert, [data], NOW) is not None) is covered


def test_all_matchers_must_hold_on_one_event() -> None:
    alert, jane = lockout("jane@example.com")
    _, john = lockout("john@example.com", client={"ipAddress": "198.51.100.1"})
    both = silence("okta-*", ("actor.alternateId", "jane@example.com"), ("client.ipAddress", "198.51.100.1"))
    assert not matches(both, alert, [jane, john])  # each holds on some event, never both on one
    john_there = silence("okta-*", ("actor.alternateId", "john@example.com"), ("client.ipAddress", "198.51.100.1"))
    assert matches(john_there, alert, [jane, john])


def test_matchers_without_events_match_nothing() -> None:
    alert, _ = lockout()
    assert not matches(silence("okta-*", ("actor.alternateId", "jane@example.com")), alert, [])
    assert matches(silence("okta-*"), alert, [])


def test_hostile_event_values_never_raise() -> None:
    alert, _ = lockout()
    hostile: dict[str, Any] = {"actor": [{"alternateId": ["a" * 100_000, None, {"x": 1}]}] * 300,
                               "client": "not an object", "target": {"alternateId": 7}}
    assert not matches(silence("*", ("actor.alternateId", "jane@example.com")), alert, [hostile])
    assert matches(silence("*", ("target.alternateId", "7")), alert, [hostile])


@pytest.mark.parametrize(("starts", "ends", "expired", "at", "active"), [
    (NOW, NOW + timedelta(hours=1), None, NOW, True),  # from its start
    (NOW, NOW + timedelta(hours=1), None, NOW - timedelta(microseconds=1), False),  # not before
    (NOW, NOW + timedelta(hours=1), None, NOW + timedelta(hours=1), False),  # not at its end
    (NOW, NOW + timedelta(hours=1), NOW + timedelta(minutes=5), NOW + timedelta(minutes=4), True),
    (NOW, NOW + timedelta(hours=1), NOW + timedelta(minutes=5), NOW + timedelta(minutes=5), False),  # expired
    (NOW, NOW + timedelta(hours=1), NOW + timedelta(hours=2), NOW + timedelta(hours=1), False),
])
def test_a_silence_is_active_from_its_start_until_its_end_or_expiry(
        starts: datetime, ends: datetime, expired: datetime | None, at: datetime, active: bool) -> None:
    alert, data = lockout()
    quiet = silence(starts=starts, ends=ends, expired=expired)
    assert quiet.active(at) is active
    assert (silencing([quiet], alert, [data], at) is not None) is active


def test_the_first_active_covering_silence_is_named() -> None:
    alert, data = lockout()
    ended = silence(sid=1, ends=NOW)
    other_rule = silence("okta-password-spraying", sid=2)
    glob, exact = silence("okta-*", sid=3), silence(sid=4)
    assert silencing([ended, other_rule, glob, exact], alert, [data], NOW) == glob
    assert silencing([ended, other_rule], alert, [data], NOW) is None


def test_validate_names_every_problem() -> None:
    assert validate("okta-*", [("actor.alternateId", "x")], NOW, NOW + timedelta(hours=1), "me", "why") == []
    problems = validate(" ", [("actor..x", "v"), ("actor.id", "")], NOW, NOW, "", " ")
    assert len(problems) == 6, problems
    assert any("actor..x" in p for p in problems) and any("ends before" in p for p in problems)
    assert validate("r", [], NOW.replace(tzinfo=None), NOW.replace(tzinfo=None) + timedelta(1), "me", "c") == [
        "start and end need a time zone"]


def test_an_open_maintenance_window_silences_like_a_silence_naming_the_window() -> None:
    from sentinel.maintenance import parse_windows
    from sentinel.silences import window_silence

    (nightly,), _ = parse_windows([{"name": "nightly", "rules": ["okta-brute-*", "okta-user-*"],
                                    "match": {"actor.alternateId": "JANE@example.com"},
                                    "times": "02:00-04:00", "timezone": "UTC"}])
    alert, data = lockout()
    _, john = lockout("john@example.com")
    assert [s.rule for s in window_silence(nightly, NOW)] == ["okta-brute-*", "okta-user-*"]
    found = silencing(window_silence(nightly, NOW), alert, [data], NOW)
    assert found is not None and found.label == "maintenance nightly" and found.id is None
    assert silencing(window_silence(nightly, NOW), alert, [john], NOW) is None  # the match must hold
    assert window_silence(nightly, NOW + timedelta(hours=1)) == []  # 04:00: closed
