"""Field paths, selections and the condition expression: parsing, semantics, and never raising."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel.rules import load_rules
from sentinel.rules.condition_parser import parse_condition
from sentinel.rules.conditions import compile_selection
from sentinel.rules.engine import EngineState, evaluate
from sentinel.rules.field_paths import ConditionError, FieldPath
from sentinel.rules.testing import event_from_dict

DATA = Path(__file__).parent / "data" / "rules"
GRANT = json.loads((DATA / "privilege-grant-roletargets.json").read_text())


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("actor.alternateId", ["admin.user@example.com"]),
        ("target.type", ["User", "ROLE_ASSIGNED", "ROLE"]),  # any element of an array
        ("target[type=ROLE].displayName", ["Help Desk Administrator"]),  # element filter
        ("target[type=URL Pattern].id", []),
        ("target[0].alternateId", ["jonathan_smith@example.com"]),  # position
        ("target[-1].id", ["HelpDeskAdmin"]),
        ("target[9].id", []),
        ("client.ipAddress", []),  # null is missing
        ("no.such.field", []),
        ("actor.alternateId.deeper", []),  # walking into a string
    ],
)
def test_paths(path, expected):
    assert list(FieldPath.parse(path).values(GRANT)) == expected


def test_decoding_packed_strings():
    event = {
        "debugContext": {
            "debugData": {
                "behaviors": "{New Geo-Location=NEGATIVE, New Device=POSITIVE}",
                "threatDetections": '{"Password Spray":"HIGH","Login Failures":"MEDIUM"}',
                "logOnlySecurityData": '{"risk":{"level":"LOW"},"behaviors":{"New IP":"POSITIVE"}}',
            }
        }
    }
    assert FieldPath.parse("debugContext.debugData.behaviors|kv.New Device").values(event) == ["POSITIVE"]
    assert FieldPath.parse("debugContext.debugData.threatDetections|json.Password Spray").values(event) == ["HIGH"]
    assert FieldPath.parse("debugContext.debugData.logOnlySecurityData|json.behaviors.New IP").values(event) == [
        "POSITIVE"
    ]
    assert list(FieldPath.parse("debugContext.debugData.behaviors|json.x").values(event)) == []


def test_dots_inside_a_filter_value_do_not_split_the_path():
    event = {"target": [{"alternateId": "a.b@x.com", "id": "1"}, {"alternateId": "c@x.com", "id": "2"}]}
    assert FieldPath.parse("target[alternateId=a.b@x.com].id").values(event) == ["1"]


@pytest.mark.parametrize("bad", ["", "a..b", "a[b]", "a|rot13", "a[=x]", "target[type=User"])
def test_bad_paths_are_rejected(bad):
    with pytest.raises(ConditionError):
        FieldPath.parse(bad)


def test_selection_table_is_and_list_is_or():
    both = compile_selection({"eventType": "user.session.start", "outcome.result": "FAILURE"})
    either = compile_selection([{"eventType": "a"}, {"eventType": "b"}])
    assert both({"eventType": "user.session.start", "outcome": {"result": "FAILURE"}})
    assert not both({"eventType": "user.session.start", "outcome": {"result": "SUCCESS"}})
    assert either({"eventType": "b"}) and not either({"eventType": "c"})


def test_negation_exists_all_and_field_comparison():
    not_system = compile_selection({"actor.alternateId": {"contains": "system@okta.com", "not": True}})
    assert not_system({"actor": {"alternateId": "jane@example.com"}})
    assert not_system({})  # a negated test on a missing field matches
    assert not not_system({"actor": {"alternateId": "system@okta.com"}})

    has_hash = compile_selection({"debugContext.debugData.dtHash": {"exists": True}})
    no_ua = compile_selection({"client.userAgent.rawUserAgent": {"exists": False}})
    assert has_hash({"debugContext": {"debugData": {"dtHash": "abc"}}})
    assert not has_hash({"debugContext": {"debugData": {"dtHash": None}}})
    assert no_ua({"client": {}})

    all_roles = compile_selection({"target.displayName": {"equals": ["A", "B"], "all": True}})
    assert all_roles({"target": [{"displayName": "A"}, {"displayName": "B"}]})
    assert not all_roles({"target": [{"displayName": "A"}]})

    self_grant = compile_selection({"actor.alternateId": {"equals_field": "target[type=User].alternateId"}})
    assert self_grant({"actor": {"alternateId": "a@x"}, "target": [{"type": "User", "alternateId": "a@x"}]})
    assert not self_grant({"actor": {"alternateId": "a@x"}, "target": [{"type": "User", "alternateId": "b@x"}]})
    assert not self_grant({"actor": {"alternateId": "a@x"}})


NOT_EVIL_ADMIN = """
id = "not-evil-admin"
title = "grant by {actor.alternateId}"
severity = "low"
event_types = ["user.account.privilege.grant"]
condition = "grant"

[detection.grant]
"actor.alternateId" = { startswith = "admin", endswith = "@evil.example", not = true }
"""


def test_not_negates_the_whole_table_of_operators(tmp_path):
    """docs/rules.md: the operators of one table must all hold and ``not`` negates that test, so
    ``{ startswith = A, endswith = B, not = true }`` is ``not (A and B)``, not ``not A and not B``."""
    (tmp_path / "rule.toml").write_text(NOT_EVIL_ADMIN)
    ruleset = load_rules([tmp_path])

    def alerts_for(actor: str | None) -> int:
        data = json.loads(json.dumps(GRANT))  # the real event, only its actor changed
        if actor is None:
            del data["actor"]["alternateId"]
        else:
            data["actor"]["alternateId"] = actor
        event = event_from_dict(data)
        return len(evaluate(ruleset, event, EngineState(), event.published)[0])

    assert GRANT["actor"]["alternateId"] == "admin.user@example.com"  # starts with "admin" only
    assert alerts_for("admin.user@example.com") == 1
    assert alerts_for("mallory@evil.example") == 1  # ends with "@evil.example" only
    assert alerts_for("jane@example.com") == 1  # neither
    assert alerts_for(None) == 1  # a negated test on a missing field matches
    assert alerts_for("admin@evil.example") == 0  # both: the only case the negated table excludes


def test_unknown_operator_names_the_key():
    with pytest.raises(ConditionError) as caught:
        compile_selection({"outcome.result": {"contians": "x"}})
    assert caught.value.key == '"outcome.result".contians'
    assert "unknown operator 'contians'" in caught.value.message


def matched(*names: str) -> dict[str, bool]:
    """An "event" for the selection stubs below, which match when their name is a key of it."""
    return dict.fromkeys(names, True)


def test_condition_grammar():
    names = ["selection", "filter_a", "filter_b", "extra"]
    sel = {n: (lambda v, n=n: n in v) for n in names}
    tree = parse_condition("selection and not 1 of filter_*", names).compile(sel)
    assert tree(matched("selection"))
    assert not tree(matched("selection", "filter_b"))
    grouped = parse_condition("(selection or extra) and not (filter_a and filter_b)", names).compile(sel)
    assert grouped(matched("extra", "filter_a"))
    assert not grouped(matched("extra", "filter_a", "filter_b"))
    assert parse_condition("all of them", names).compile(sel)(matched(*names))
    assert not parse_condition("all of filter_*", names).compile(sel)(matched("filter_a"))
    assert parse_condition("NOT selection", names).compile(sel)(matched())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("selection and", "ends too early"),
        ("selection filter_a", "unexpected 'filter_a'"),
        ("(selection", "missing ')'"),
        ("nosuch", "unknown selection 'nosuch'"),
        ("1 of nope_*", "matches no selection"),
        ("selection && filter_a", "unexpected '&& filter_a'"),
        ("", "non-empty"),
    ],
)
def test_condition_errors(text, message):
    with pytest.raises(ConditionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_condition(text, ["selection", "filter_a"])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
hostile_events = st.dictionaries(
    st.sampled_from(["actor", "target", "client", "debugContext", "outcome", "eventType", "x"]), json_values
)
SELECTION = compile_selection(
    {
        "target[type=User].alternateId": {"regex": "^a", "ignore_case": True},
        "target[0].id": {"cidr": "10.0.0.0/8", "not": True},
        "debugContext.debugData.behaviors|kv.New IP": {"equals": "POSITIVE", "not": True},
        "debugContext.debugData.threatDetections|json.x": {"gt": 1, "not": True},
        "actor.alternateId": {"equals_field": "target.alternateId", "not": True},
        "client.zone": {"glob": "*", "not": True},
    }
)


@settings(max_examples=300, deadline=None)
@given(hostile_events)
@pytest.mark.proof
def test_matching_never_raises_on_hostile_events(event):
    assert SELECTION(event) in (True, False)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
def test_combined_matchers_are_tried_in_order_and_stop_as_soon_as_the_answer_is_known(size: int) -> None:
    """all_of and any_of are unrolled for two or three parts (issue 16): the same answers, order and
    short-circuit as all() and any() over the parts, whatever the outcomes."""
    from itertools import product

    from sentinel.rules.conditions import all_of, any_of

    for outcomes in product([False, True], repeat=size):
        for combine, reference in ((all_of, all), (any_of, any)):
            called: list[int] = []

            def part(i: int) -> Callable[[Mapping[str, Any]], bool]:
                def match(data: Mapping[str, Any]) -> bool:
                    called.append(i)
                    return outcomes[i]
                return match

            got = combine([part(i) for i in range(size)])({})
            expected_calls: list[int] = []

            def expected_part(i: int) -> bool:
                expected_calls.append(i)
                return outcomes[i]

            assert got is reference(expected_part(i) for i in range(size))
            assert called == expected_calls, (combine.__name__, outcomes)


@given(st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=4),
       st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), st.sampled_from(["x", "y"])))
@settings(max_examples=200, deadline=None)
def test_a_selection_and_conditions_over_several_tests_hold_as_their_definition_says(
        keys: list[str], event: dict[str, str]) -> None:
    table = {k: "x" for k in keys}
    assert compile_selection(table)(event) is all(event.get(k) == "x" for k in table)
    assert compile_selection([{k: "x"} for k in keys])(event) is any(event.get(k) == "x" for k in keys)
    names = sorted(set(keys))
    selections = {n: compile_selection({n: "x"}) for n in names}
    for op, reference in (("and", all), ("or", any)):
        matcher = parse_condition(f" {op} ".join(names), names).compile(selections)
        assert matcher(event) is reference(event.get(n) == "x" for n in names)
        negated = parse_condition(f"not ({f' {op} '.join(names)})", names).compile(selections)
        assert negated(event) is not reference(event.get(n) == "x" for n in names)
