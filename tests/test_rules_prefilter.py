"""The prefilter of rules on every event type (sentinel/rules/prefilter.py): derived only from what the
condition requires, and it rules out an event only when the rule could not match it."""

from __future__ import annotations

from typing import Any

import pytest

from sentinel.rules.prefilter import Prefilter, required_text, without_implied_event_type

SEL = {"selection": {"displayMessage": "Max sign in attempts exceeded"}}


@pytest.mark.parametrize(("event_types", "detection", "condition", "expected"), [
    (("*",), SEL, "selection", Prefilter(("displayMessage",), "equals", frozenset({"max sign in attempts exceeded"}))),
    (("user.session.start",), SEL, "selection", None),  # indexed already
    (("*",), {"s": {"a.b": ["X", "Y"]}, "f": {"c": "z"}}, "s and not f",
     Prefilter(("a", "b"), "equals", frozenset("xy"))),
    (("*",), {"s": {"a": "x"}, "t": {"b": "y"}}, "s or t", None),
    (("*",), {"s": {"a": "x"}}, "not s", None),
    (("*",), {"s": [{"a": "x"}, {"b": "y"}]}, "s", None),  # a list of tables is an OR
    (("*",), {"s": {"a|json.b": "x"}}, "s", None),  # decoders and selectors: the general walk
    (("*",), {"s": {"target[type=User].id": "x"}}, "s", None),
    (("*",), {"s": {"a": {"equals": "x", "case_sensitive": True}}}, "s", None),
    (("*",), {"s": {"a": {"equals": "x", "ignore_case": False}}}, "s", None),
    (("*",), {"s": {"a": {"equals": "x", "not": True}}}, "s", None),
    (("*",), {"s": {"a": 5}}, "s", None),
    (("*",), {"s": {"a": {"regex": "x"}}}, "s", None),
    (("*",), {"s": {"a": {"contains": "Admin"}, "b": "x"}}, "s", Prefilter(("b",), "equals", frozenset({"x"}))),
    (("*",), {"s": {"a": {"contains": "Admin"}}}, "s", Prefilter(("a",), "contains", frozenset({"admin"}))),
    (("*",), {"s_1": {"a": "x"}, "s_2": {"b": "y"}}, "all of s_*", Prefilter(("a",), "equals", frozenset({"x"}))),
    (("*",), {"s_1": {"a": "x"}, "s_2": {"b": "y"}}, "1 of s_*", None),
])
def test_prefilter_is_what_the_condition_requires(event_types, detection, condition, expected):
    assert required_text(event_types, detection, condition) == expected


EQUALS = Prefilter(("displayMessage",), "equals", frozenset({"max sign in attempts exceeded"}))
CONTAINS = Prefilter(("debugContext", "debugData", "requestUri"), "contains", frozenset({"/admin"}))


@pytest.mark.parametrize(("prefilter", "data", "expected"), [
    (EQUALS, {"displayMessage": "Max sign in attempts exceeded"}, True),
    (EQUALS, {"displayMessage": "MAX SIGN IN ATTEMPTS EXCEEDED"}, True),
    (EQUALS, {"displayMessage": "User login to Okta"}, False),
    (EQUALS, {}, False),
    (EQUALS, {"displayMessage": None}, False),
    (EQUALS, {"displayMessage": ["Max sign in attempts exceeded"]}, True),  # arrays: evaluate
    (EQUALS, {"displayMessage": 7}, True),  # lenient comparisons: evaluate
    (CONTAINS, {"debugContext": {"debugData": {"requestUri": "/ADMIN/users"}}}, True),
    (CONTAINS, {"debugContext": {"debugData": {"requestUri": "/idp/idx"}}}, False),
    (CONTAINS, {"debugContext": "text"}, False),  # walking into text reaches nothing
    (CONTAINS, {"debugContext": [{"debugData": {"requestUri": "/x"}}]}, True),  # array on the way: evaluate
])
def test_admits_rules_out_only_what_cannot_match(prefilter, data: dict[str, Any], expected):
    assert prefilter.admits(data) is expected


@pytest.mark.parametrize(("selection", "event_types", "expected"), [
    ({"eventType": "user.session.start", "a": "x"}, ("user.session.start",), {"a": "x"}),
    ({"eventType": ["a.b", "c.d"], "a": "x"}, ("a.b", "c.d"), {"a": "x"}),
    ({"eventType": "a.b"}, ("a.b",), None),  # always holds for the events the rule reads
    ({"eventType": "a.b", "a": "x"}, ("a.b", "c.d"), {"eventType": "a.b", "a": "x"}),  # does not cover c.d
    ({"eventType": "a.b", "a": "x"}, ("*",), {"eventType": "a.b", "a": "x"}),
    ({"eventType": "a.b", "a": "x"}, ("a.*",), {"eventType": "a.b", "a": "x"}),
    ({"eventType": {"equals": "a.b", "not": True}}, ("a.b",), {"eventType": {"equals": "a.b", "not": True}}),
    ({"eventType": {"equals": "A.B", "case_sensitive": True}}, ("a.b",),
     {"eventType": {"equals": "A.B", "case_sensitive": True}}),
    ([{"eventType": "a.b", "a": "x"}, {"b": "y"}], ("a.b",), [{"a": "x"}, {"b": "y"}]),
    ([{"eventType": "a.b"}, {"b": "y"}], ("a.b",), None),
])
def test_an_event_type_test_the_index_guarantees_is_not_run(selection, event_types, expected):
    assert without_implied_event_type(selection, event_types) == expected
