"""Parsing delivery bodies (pure): good events kept, bad ones quarantined with their JSON path."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from conftest import DATA, envelope, make_event
from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel.errors import PayloadError
from sentinel.okta import (
    _load,
    check_delivery,
    decode_json,
    parse_delivery,
    parse_delivery_with_json,
    verification_answer,
)
from sentinel.rules.testing import event_from_dict


def test_verification_answer() -> None:
    assert verification_answer("abc") == {"verification": "abc"}


def test_okta_docs_sample_parses() -> None:
    delivery = parse_delivery((DATA / "envelope.json").read_bytes())
    assert [e.event_type for e in delivery.events] == ["user.session.start"]
    assert delivery.events[0].published == datetime(2023, 3, 26, 21, 5, 32, 159000, tzinfo=UTC)
    assert delivery.quarantined == ()


def test_unknown_keys_are_kept_verbatim() -> None:
    event = make_event("k-1", device=None, insertionTimestamp=None, futureField={"x": 1})
    parsed = parse_delivery(json.dumps(envelope(event)).encode()).events[0]
    assert parsed.data == event


def test_duplicate_uuid_inside_one_batch_is_kept_once() -> None:
    delivery = parse_delivery(json.dumps(envelope(make_event("a"), make_event("a"))).encode())
    assert [e.uuid for e in delivery.events] == ["a"]


@pytest.mark.parametrize(("event", "path", "reason"), [
    ({"uuid": "", "eventType": "x", "published": "2024-01-01T00:00:00Z"}, "data.events[0].uuid", "must not be empty"),
    ({"uuid": "u" * 129, "eventType": "x", "published": "2024-01-01T00:00:00Z"}, "data.events[0].uuid",
     "longer than 128 characters"),
    ({"uuid": "a", "eventType": ["x"], "published": "2024-01-01T00:00:00Z"}, "data.events[0].eventType",
     "must be a string, not an array"),
    ({"uuid": "a", "eventType": "x"}, "data.events[0].published", "missing"),
    ({"uuid": "a", "eventType": "x", "published": "2024-13-01T00:00:00Z"}, "data.events[0].published",
     "not an ISO-8601 timestamp"),
    (None, "data.events[0]", "must be an object, not null"),
])
def test_bad_event_is_quarantined(event: object, path: str, reason: str) -> None:
    delivery = parse_delivery(json.dumps({"data": {"events": [event]}}).encode())
    assert delivery.events == ()
    (q,) = delivery.quarantined
    assert (q.path, q.reason) == (path, reason)
    assert json.loads(q.raw) == event


@pytest.mark.parametrize("number", ["1" * 5000, "-" + "9" * 4301])
def test_an_integer_too_long_for_python_is_valid_json_and_quarantines_its_element(number: str) -> None:
    """json.loads refuses more than 4,300 digits (ValueError), msgspec does not: the one definition of a
    valid body takes them, and only the element holding one is quarantined, kept as delivered."""
    bad = json.dumps(make_event("long", n=0)).replace('"n": 0', f'"n": {number}')
    body = ('{"eventId": ' + number + ', "data": {"events": [' + bad + ", " + json.dumps(make_event("ok"))
            + "]}}").encode()
    assert check_delivery(body) == 2
    delivery = parse_delivery(body)
    assert [e.uuid for e in delivery.events] == ["ok"]
    (q,) = delivery.quarantined
    assert (q.path, q.reason, q.raw) == ("data.events[0]", "contains an integer of more than 4300 digits", bad)
    top = ('{"data": {"events": ' + number + "}}").encode()
    assert _checked(top) == _reference(top) == "error at data.events"


def test_panther_timestamp_form_is_accepted() -> None:
    event = make_event("p", published="2020-11-25 21:27:03.496000000")
    parsed = parse_delivery(json.dumps({"data": {"events": [event]}}).encode()).events[0]
    assert parsed.published == datetime(2020, 11, 25, 21, 27, 3, 496000, tzinfo=UTC)


def test_deep_nesting_is_a_payload_error_not_a_crash() -> None:
    with pytest.raises(PayloadError) as info:
        parse_delivery(b"[" * 200_000 + b"]" * 200_000)
    assert info.value.location == "$"


# --- check_delivery's fast path (msgspec) against the reference parse (json.loads) ----------------------

def _reference(body: bytes) -> int | str:
    """What check_delivery answered before the fast path: the element count, or the error's location."""
    try:
        return len(_load(body)[2])
    except PayloadError as e:
        return f"error at {e.location}"


def _checked(body: bytes) -> int | str:
    try:
        return check_delivery(body)
    except PayloadError as e:
        return f"error at {e.location}"


ODD_VALUES = ["01", "1.", "-", "1e", "+1", ".5", "0x1", '"\\x"', '"\\u12G4"', '"\\u12"', "tru", "nul", "truex",
              "[1,]", '{"a":1,}', '{"a" 1}', "[1 2]", '"\\U0041"', '"\t"', '"\x01"', "NaN", "Infinity", "1e999",
              "123456789012345678901234567890", '"\\ud800"', '{"\\udc00":1}', '"\\ud83d\\ude00"', '"\\u0000"',
              '"\x7f"', '"é"', "[1,\x0c2]", "[1,\xa02]", '{"a":1,"a":2}', "-0", "1" * 4300, "1" * 5000,
              "-" + "1" * 5000, "[" + "9" * 5000 + "]"]


@pytest.mark.parametrize("value", ODD_VALUES)
def test_fast_check_agrees_with_json_loads_on_odd_values(value: str) -> None:
    body = ('{"data":{"events":[{"x":' + value + '}]}}').encode("utf-8")
    assert _checked(body) == _reference(body)


@pytest.mark.parametrize("body", [
    b'{"data":{"events":[{"a":"\xff"}]}}',  # bad UTF-8 inside a string msgspec only skips
    b'{"data":{"events":[{"a":"\xed\xa0\x80"}]}}',  # a raw surrogate: json lets it through
    b'\xef\xbb\xbf{"data":{"events":[]}}',  # a BOM
    '{"data":{"events":[1]}}'.encode("utf-16"),
    b'{"data": null}', b'{"data":{"events":{}}}', b"[]", b'{"data":{"events":[]}} x',
    b'{"data":{"events":[]},"data":{"events":[1,2]}}',  # duplicate keys: the last wins in both
    b'{"data":{"events":[' + b"[" * 5000 + b"]" * 5000 + b"]}}",
])
def test_fast_check_agrees_with_json_loads_on_odd_bodies(body: bytes) -> None:
    assert _checked(body) == _reference(body)


MUTATION_BYTES = st.sampled_from([b"", b"{", b"}", b"[", b"]", b",", b":", b'"', b"\\", b"\\u", b"d800", b"0",
                                  b"-", b"e", b".", b" ", b"\t", b"\x00", b"\x1f", b"\xff", b"\xc3\xa9",
                                  b"\xed\xa0\x80", b"null", b"true", b"NaN"])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=3), MUTATION_BYTES),
                min_size=1, max_size=4))
def test_fast_check_is_never_more_lenient_than_json_loads(mutations: list[tuple[int, int, bytes]]) -> None:
    body = bytearray(json.dumps({"data": {"events": [make_event("m-1"), {"n": [1, 2.5, None, "é"]}]}},
                                ensure_ascii=False).encode("utf-8"))
    for at, cut, insert in mutations:
        at %= len(body) + 1
        body[at:at + cut] = insert
    assert _checked(bytes(body)) == _reference(bytes(body))


def test_each_event_keeps_its_text_as_delivered() -> None:
    first = json.dumps(make_event("t-1", displayMessage="caf\u00e9"), ensure_ascii=False, indent=2)
    second = json.dumps(make_event("t-2"))
    body = ('{"data": {"events": [ ' + first + ' ,\n' + second + ']}}').encode("utf-8")
    events = parse_delivery(body).events
    assert [e.source for e in events] == [first, second]
    assert [json.loads(e.source or "") for e in events] == [e.data for e in events]


def test_bodies_only_json_loads_takes_keep_no_text_and_are_serialised_as_before() -> None:
    nan = parse_delivery(b'{"data":{"events":[' + json.dumps(make_event("nan", n=float("nan"))).encode() + b"]}}")
    assert [(e.uuid, e.source) for e in nan.events] == [("nan", None)]  # msgspec refuses NaN
    body = {"data": {"events": [make_event("ok"), make_event("lone", x="\ud800")]}}  # a lone \ud800 escape
    lone = parse_delivery(json.dumps(body).encode())
    assert [(e.uuid, e.source) for e in lone.events] == [("ok", None)]
    assert [q.path for q in lone.quarantined] == ["data.events[1]"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=3), MUTATION_BYTES),
                min_size=1, max_size=4))
def test_an_event_text_always_parses_back_to_its_data(mutations: list[tuple[int, int, bytes]]) -> None:
    body = bytearray(json.dumps({"data": {"events": [make_event("m-1", x=[1, 2.5, None, "\u00e9"]),
                                                      make_event("m-2", y={"z": 1e300})]}},
                                ensure_ascii=False).encode("utf-8"))
    for at, cut, insert in mutations:
        at %= len(body) + 1
        body[at:at + cut] = insert
    try:
        events = parse_delivery(bytes(body)).events
    except PayloadError:
        return
    for event in events:
        if event.source is not None:
            assert json.loads(event.source) == event.data


@pytest.mark.parametrize(("event", "reason"), [
    ({"uuid": "   ", "eventType": "x", "published": "2024-01-01T00:00:00Z"}, "event.uuid: must not be empty"),
    ({"uuid": "u" * 129, "eventType": "x", "published": "2024-01-01T00:00:00Z"},
     "event.uuid: longer than 128 characters"),
    ({"uuid": "a", "eventType": "x", "published": "2024-13-01T00:00:00Z"},
     "event.published: not an ISO-8601 timestamp"),
])
def test_a_rule_test_event_is_checked_as_intake_checks_one(event: dict[str, object], reason: str) -> None:
    # One event validation: what intake would quarantine, a rule's inline test cannot use either.
    (q,) = parse_delivery(json.dumps({"data": {"events": [event]}}).encode()).quarantined
    assert reason.endswith(q.reason)
    with pytest.raises(ValueError, match=re.escape(reason)):
        event_from_dict(event)


# --- parse_delivery's fast path (msgspec per element) against the json.loads path -----------------------

def _outcome(parse: object, body: bytes) -> object:
    """Everything a parse yields, typed: json.dumps tells 1 from 1.0 and keeps key order (and NaN)."""
    try:
        delivery = parse(body)  # type: ignore[operator]
    except PayloadError as e:
        return f"error at {e.location}: {e.message}"
    return ([(e.uuid, e.event_type, e.published, json.dumps(e.data, ensure_ascii=False),
              json.dumps(json.loads(e.source), ensure_ascii=False) if e.source is not None else None)
             for e in delivery.events],
            [(q.path, q.reason, q.raw) for q in delivery.quarantined])


def _same_either_way(body: bytes) -> None:
    assert _outcome(parse_delivery, body) == _outcome(parse_delivery_with_json, body)


def test_the_docs_sample_parses_the_same_either_way() -> None:
    _same_either_way((DATA / "envelope.json").read_bytes())


@pytest.mark.parametrize("value", [*ODD_VALUES, "9223372036854775807", "9223372036854775808", "-9223372036854775809",
                                   "18446744073709551616", '"1234567890123456789012"', "1.0", "1e300", "-0.0",
                                   '{"a":[1,{"b":null}]}', r'"caf\u00e9 \ud83d\ude00"'])
def test_fast_parse_agrees_with_json_loads_on_odd_values(value: str) -> None:
    event = json.dumps(make_event("odd-1"))[:-1] + ', "x": ' + value + "}"
    _same_either_way(('{"data":{"events":[' + event + "," + json.dumps(make_event("odd-2")) + "]}}").encode())


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=3), MUTATION_BYTES),
                min_size=1, max_size=4))
def test_fast_parse_agrees_with_json_loads_on_mutated_bodies(mutations: list[tuple[int, int, bytes]]) -> None:
    body = bytearray(json.dumps({"data": {"events": [make_event("m-1", x=[1, 2.5, None, "\u00e9"]),
                                                      make_event("m-1"), {"n": 1}]}},
                                ensure_ascii=False).encode("utf-8"))
    for at, cut, insert in mutations:
        at %= len(body) + 1
        body[at:at + cut] = insert
    _same_either_way(bytes(body))


@pytest.mark.parametrize("value", [*ODD_VALUES, "18446744073709551616", "1.0", "-0.0", '{"a":1,"a":[2]}'])
def test_decode_json_reads_what_json_loads_reads(value: str) -> None:
    """The decode replay shares with the detector: msgspec when it can, json.loads for the rest."""
    def outcome(decode: object) -> str:
        try:
            return json.dumps(decode(value.encode("utf-8", "surrogatepass")))  # type: ignore[operator]
        except ValueError as e:
            return type(e).__name__
        except RecursionError:
            return "RecursionError"
    assert outcome(decode_json) == outcome(json.loads)
