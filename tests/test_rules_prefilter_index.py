"""The shared index over the prefilters of rules on every event type (sentinel/rules/prefilter_index.py): it
admits exactly the rules each rule's own ``Prefilter.admits`` admits, on hostile and edge-case events, and
the rule set runs what the per-rule prefilters ran, in the same order."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel.rules import RuleSet, load_rules
from sentinel.rules.prefilter import Prefilter, required_text
from sentinel.rules.prefilter_index import PrefilterIndex

SIGMA = Path(__file__).resolve().parent.parent / "rules" / "sigma"


def _p(path: str, operator: str, *texts: str) -> Prefilter:
    return Prefilter(tuple(path.split(".")), operator, frozenset(t.casefold() for t in texts))


# Several rules per field, both operators on one field, overlapping values and needles, unicode that folds
# to something longer (ß → ss) or other (K, the Kelvin sign → k; ς → σ), one- and three-key paths.
PREFILTERS = {
    "locked": _p("displayMessage", "equals", "Max sign in attempts exceeded"),
    "locked_too": _p("displayMessage", "equals", "max sign in attempts exceeded", "User login to Okta"),
    "street": _p("displayMessage", "equals", "Straße"),
    "kelvin": _p("displayMessage", "equals", "k"),
    "sigma": _p("displayMessage", "equals", "όσος"),
    "msg_has": _p("displayMessage", "contains", "login"),
    "legacy": _p("legacyEventType", "equals", "core.user_auth.login_failed"),
    "admin": _p("debugContext.debugData.requestUri", "contains", "admin"),
    "admin_long": _p("debugContext.debugData.requestUri", "contains", "administrator", "/reports/"),
    "reports": _p("debugContext.debugData.requestUri", "contains", "/reports/password-health/"),
    "uri_is": _p("debugContext.debugData.requestUri", "equals", "/admin"),
    "proxy": _p("securityContext.isProxy", "equals", "true"),
    "empty_needle": _p("client.device", "contains", ""),
    # Equality only (texts of other lengths are ruled out unfolded), with operands that fold to other lengths.
    "title": _p("title", "equals", "Straße", "\u01c5"),
    "name": _p("actor.displayName", "equals", "Straße", "ﬁx", "k"),
}
INDEX = PrefilterIndex(PREFILTERS.items())

TEXTS = ["Max sign in attempts exceeded", "MAX SIGN IN ATTEMPTS EXCEEDED", "max sign in attempts exceeded ",
         "User login to Okta", "user LOGIN", "STRASSE", "straße", "Straẞe", "\u212a", "K", "k", "ΌΣΟΣ", "όσος",
         "όσοσ", "", "core.user_auth.LOGIN_FAILED", "/ADMIN/users", "/Administrator", "/reports/Password-Health/x",
         "/admin", "/idp/idx", "true", "TRUE", "x" * 300, "ﬁ", "\x00admin\udc80", "STRAßE", "strasse", "FIX",
         "ﬁX", "\u01c4", "\u01c6", "dž", "ſtrasse"]
SCALARS = [None, True, False, 0, 1, -2.5, float("nan"), {}, {"a": "admin"}, [], ["Max sign in attempts exceeded"],
           [None], [["admin"]]]


def _expected(data: dict[str, Any]) -> set[str]:
    return {key for key, prefilter in PREFILTERS.items() if prefilter.admits(data)}


def _events() -> list[dict[str, Any]]:
    values: list[Any] = [*TEXTS, *SCALARS]
    events: list[dict[str, Any]] = [{}, {"displayMessage": None}, {"debugContext": "text"},
                                    {"debugContext": None}, {"debugContext": {"debugData": "text"}},
                                    {"debugContext": [{"debugData": {"requestUri": "/x"}}]},
                                    {"debugContext": {"debugData": [{"requestUri": "/x"}]}},
                                    {"debugContext": {"debugData": None}}, {"securityContext": 5}]
    for value in values:
        events.append({"displayMessage": value, "legacyEventType": value})
        events.append({"debugContext": {"debugData": {"requestUri": value}}, "securityContext": {"isProxy": value}})
        events.append({"title": value, "actor": {"displayName": value}})
        events.append({"client": {"device": value}, "displayMessage": "user login to okta",
                       "debugContext": {"debugData": {"requestUri": value}}})
    return events


@pytest.mark.parametrize("data", _events(), ids=lambda d: repr(d)[:60])
def test_the_index_admits_what_each_rules_prefilter_admits(data):
    assert INDEX.admitted(data) == _expected(data)


_VALUE = st.one_of(st.sampled_from(TEXTS), st.sampled_from(SCALARS[:7]), st.text(max_size=12),
                   st.builds(str.upper, st.sampled_from(TEXTS)))
_NODE = st.recursive(_VALUE, lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.dictionaries(st.sampled_from(["debugData", "requestUri", "isProxy", "device", "x"]), inner, max_size=3)),
    max_leaves=8)
_EVENT = st.dictionaries(
    st.sampled_from(["displayMessage", "legacyEventType", "debugContext", "securityContext", "client", "title",
                     "actor", "displayName", "other"]),
    _NODE, max_size=5)


@settings(max_examples=400, deadline=None)
@given(_EVENT)
def test_the_index_agrees_with_the_prefilters_on_generated_events(data):
    assert INDEX.admitted(data) == _expected(data)


def test_an_empty_index_admits_nothing_and_says_so():
    empty = PrefilterIndex([])
    assert not empty and empty.fields == 0
    assert not empty.admitted({"displayMessage": "x"})
    assert INDEX.fields == 7  # one read per field, however many rules test it


@pytest.mark.parametrize("detection", [
    {"s": {"securityContext.isProxy": "true", "debugContext.debugData.requestUri": {"contains": "admin"}}},
    {"s": {"debugContext.debugData.requestUri": {"contains": "admin"}, "securityContext.isProxy": "TRUE"}},
    {"s": {"n": "42"}, "t": {"debugContext.debugData.requestUri": {"contains": "admin"}}},
])
def test_an_equality_on_a_boolean_or_number_is_the_last_choice(detection):
    """A field whose operand reads as true/false or a number mostly holds JSON booleans or numbers, which a
    prefilter must let through: the substring test on a text field rules out more."""
    condition = "s" if len(detection) == 1 else "s and t"
    assert required_text(("*",), detection, condition) == _p("debugContext.debugData.requestUri", "contains",
                                                              "admin")


def test_the_rule_set_runs_what_the_per_rule_prefilters_ran_in_order():
    rules = [dataclasses.replace(r, enabled=True) for r in load_rules([SIGMA]).rules]
    ruleset = RuleSet(rules)
    assert sum(r.prefilter is not None for r in rules) >= 4
    for data in [*_events(), {"displayMessage": "Max sign in attempts exceeded"},
                 {"legacyEventType": "CORE.USER_AUTH.LOGIN_FAILED"},
                 {"debugContext": {"debugData": {"requestUri": "/Admin/x"}}}]:
        for event_type in ("user.session.start", "policy.evaluate_sign_on", "no.rule.reads.this"):
            before = [r for r in ruleset.rules_for(event_type) if r.prefilter is None or r.prefilter.admits(data)]
            assert list(ruleset.rules_reading(event_type, data)) == before


def test_a_kept_answer_is_the_answer_and_the_cache_stays_bounded(monkeypatch):
    monkeypatch.setattr("sentinel.rules.prefilter_index.ANSWERS_KEPT", 3)
    index = PrefilterIndex(PREFILTERS.items())
    events = [{"displayMessage": text, "debugContext": {"debugData": {"requestUri": text}}} for text in TEXTS]
    for _ in range(2):  # the second round reads kept answers (or answers again what the bound let go)
        for data in events:
            assert index.admitted(data) == _expected(data)
    kept = [probe.answers for probe in index.probes]
    assert all(len(answers) <= 3 for answers in kept)
    assert not any("x" * 300 in answers for answers in kept)  # long texts are answered, never kept
