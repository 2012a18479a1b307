"""The detector's decoding fast paths (issue 16) against the general paths they stand in for: Okta's
canonical timestamps, and events whose body is decoded only when something reads it."""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from conftest import THRESHOLD_RULES, envelope, make_event
from hypothesis import given, settings
from hypothesis import strategies as st
from test_okta_parse import MUTATION_BYTES

from sentinel import okta
from sentinel.clock import FixedClock
from sentinel.errors import PayloadError
from sentinel.model import (
    Alert,
    Severity,
    _parse_timestamp_generally,
    format_timestamp,
    parse_timestamp,
    stored_okta_time,
)
from sentinel.okta import decode_json, event_quickly, parse_delivery, parse_delivery_with_json, parse_event
from sentinel.rules import load_rules
from sentinel.rules.evaluator import RuleEvaluator
from sentinel.rules.replay_input import ReadReport, read_events
from sentinel.service.silencing import Silencer
from sentinel.silences import Silence
from sentinel.store import Store


def _timestamp_outcome(parse: object, text: str) -> object:
    try:
        moment = parse(text)  # type: ignore[operator]
    except ValueError:
        return "ValueError"
    assert isinstance(moment, datetime)
    return moment, moment.tzinfo


ODD_TIMESTAMPS = [
    "2024-01-01T12:34:56.789Z", "2024-02-29T23:59:59.999Z", "2023-02-29T00:00:00.000Z", "0001-01-01T00:00:00.000Z",
    "9999-12-31T23:59:59.999Z", "0000-01-01T00:00:00.000Z", "2024-13-01T00:00:00.000Z", "2024-01-01T24:00:00.000Z",
    "2024-01-01T12:34:60.000Z", "2024-01-01 12:34:56.789Z", "2024-01-01t12:34:56.789Z", "2024-01-01T12:34:56,789Z",
    "20240101T123456.1234567Z", "2011-W01-2T00:05:23.283Z", " 2024-01-01T12:34:56.78Z", "2024-01-01T12:34:56.78 Z",
    "2024-01-01T12:34:56.789z", "2024-01-01T12:34:56.789+", "２０２４-01-01T12:34:56.789Z", "2024-01-01T12:34:5٦.789Z",
    "+024-01-01T12:34:56.789Z", "2024-1-01T12:34:56.7890Z", "2024-01-01T12:34:56.789\x00", "2024-01-01T12:34:56.789ZZ",
    "2024-01-01T12:34:56Z", "2024-01-01T12:34:56.789000Z", "2024-01-01T12:34:56.7890001Z",
    "2024-01-01T12:34:56.789+00Z", "2024-01-01T12:34:56+01:00Z", "20240101T123456.123456789Z",
    "2024-01-01T12:34:56.789000z",
]


@pytest.mark.parametrize("text", ODD_TIMESTAMPS)
def test_timestamp_fast_path_agrees_with_the_general_one(text: str) -> None:
    assert _timestamp_outcome(parse_timestamp, text) == _timestamp_outcome(_parse_timestamp_generally, text)


def test_the_canonical_form_takes_the_fast_path_and_reads_as_utc() -> None:
    moment = parse_timestamp("2024-01-01T12:34:56.789Z")
    assert moment == _parse_timestamp_generally("2024-01-01T12:34:56.789Z")
    assert moment.utcoffset() is not None and moment.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(["2024-05-01T10:00:00.000Z", "2024-05-01T10:00:00.000000Z"]),
       st.lists(st.tuples(st.integers(min_value=0, max_value=26),
                          st.sampled_from([*"0123456789-:.TZ +tz\u0660\uff10W,", ""])), min_size=1, max_size=4))
def test_timestamp_fast_path_agrees_on_mutated_canonical_timestamps(canonical: str,
                                                                    changes: list[tuple[int, str]]) -> None:
    chars = list(canonical)
    for at, char in changes:
        chars[at % len(chars)] = char
    text = "".join(chars)
    assert _timestamp_outcome(parse_timestamp, text) == _timestamp_outcome(_parse_timestamp_generally, text)


def _stored_outcome(text: str) -> object:
    """What the store writes for an event published at ``text`` (None: the text does not parse)."""
    try:
        return format_timestamp(parse_timestamp(text))
    except ValueError:
        return None


def _agrees_when_parsed(text: str) -> None:
    stored = _stored_outcome(text)
    if stored is not None:  # stored_okta_time is asked only of a text that parsed
        assert stored_okta_time(text) in (None, stored), text


@pytest.mark.parametrize("text", ODD_TIMESTAMPS)
def test_the_stored_time_sliced_from_okta_s_text_is_the_formatted_one(text: str) -> None:
    _agrees_when_parsed(text)


@settings(max_examples=500, deadline=None)
@given(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)))
def test_every_okta_time_is_sliced_to_its_stored_text(moment: datetime) -> None:
    text = moment.strftime("%Y-%m-%dT%H:%M:%S.").rjust(20, "0") + f"{moment.microsecond // 1000:03d}Z"
    assert stored_okta_time(text) == _stored_outcome(text) is not None


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(st.integers(min_value=0, max_value=23),
                          st.sampled_from([*"0123456789-:.TZ +tz\u0660\uff10W,", ""])), min_size=1, max_size=4))
def test_the_stored_time_agrees_on_mutated_okta_times(changes: list[tuple[int, str]]) -> None:
    chars = list("2024-05-01T10:00:00.000Z")
    for at, char in changes:
        chars[at] = char
    _agrees_when_parsed("".join(chars))


def test_an_unpacked_event_carries_its_stored_time_and_a_copy_with_another_time_does_not(tmp_path: Path) -> None:
    body = json.dumps(envelope(make_event("t-1", published="2024-05-01T10:00:00.123Z"))).encode()
    (event,) = parse_delivery(body).events
    assert event.stored_published == "2024-05-01T10:00:00.123000Z" == format_timestamp(event.published)
    later = replace(event, uuid="t-2", published=event.published + timedelta(hours=1))
    assert later.stored_published is None

    async def store_both() -> None:
        store = Store(tmp_path / "sentinel.db")
        store.start(datetime.now(UTC))
        try:
            await store.ingest([event, later], [], datetime.now(UTC))
        finally:
            store.close()

    asyncio.run(store_both())
    with sqlite3.connect(tmp_path / "sentinel.db") as db:
        stored = dict(db.execute("SELECT uuid, published FROM events"))
    assert stored == {"t-1": "2024-05-01T10:00:00.123000Z", "t-2": "2024-05-01T11:00:00.123000Z"}


# --- events whose body is decoded on first read, against the json.loads path -----------------------------

def _delivery_outcome(parse: object, body: bytes) -> object:
    """Everything a parse yields, typed (json.dumps tells 1 from 1.0, keeps key order and NaN)."""
    try:
        delivery = parse(body)  # type: ignore[operator]
    except PayloadError as e:
        return f"error at {e.location}: {e.message}"
    return ([(e.uuid, e.event_type, e.published, json.dumps(e.data, ensure_ascii=False), e.source is not None)
             for e in delivery.events],
            [(q.path, q.reason, q.raw) for q in delivery.quarantined])


KEYS = '"uuid":"k-1","eventType":"user.session.start","published":"2024-05-01T10:00:00.000Z"'
ODD_ELEMENTS = [
    "{" + KEYS + "}",
    "{" + KEYS + ',"uuid":"k-2"}',  # duplicate keys: the last wins in both
    "{" + KEYS + ',"uuid":5}', '{"uuid":5,' + KEYS + "}", "{" + KEYS + ',"eventType":null}',
    "{" + KEYS + ',"published":"2024-05-01 10:00:00.000000000"}', "{" + KEYS + ',"published":"2024-05-01"}',
    "{" + KEYS + ',"published":"2024-02-30T10:00:00.000Z"}', "{" + KEYS + ',"published":"x"}',
    '{"uu\\u0069d":"k-1","eventType":"t","published":"2024-05-01T10:00:00.000Z"}',  # an escaped key
    '{"uuid":"k-\\u00e9","eventType":"t\\ud83d\\ude00","published":"2024-05-01T10:00:00.000Z"}',
    "{" + KEYS + ',"uuid":"   "}', "{" + KEYS + ',"uuid":""}', "{" + KEYS + ',"uuid":"' + "u" * 129 + '"}',
    "{" + KEYS + ',"uuid":"' + "u" * 128 + '"}', "{" + KEYS + ',"eventType":"' + "t" * 257 + '"}',
    "{" + KEYS + ',"published":"' + " " * 41 + '"}', '{"uuid":"k-1","eventType":"t"}', "[]", "null", '"k-1"', "1",
    "{" + KEYS + ',"x":NaN}', "{" + KEYS + ',"x":1e999}', "{" + KEYS + ',"x":-1e999}', "{" + KEYS + ',"x":"\\ud800"}',
    "{" + KEYS + ',"x":"\\ud83d\\ude00"}', "{" + KEYS + ',"x\\udc00":1}',
    "{" + KEYS + ',"x":' + "9" * 4300 + "}", "{" + KEYS + ',"x":' + "9" * 4301 + "}",
    "{" + KEYS + ',"x":-' + "9" * 5000 + "}", "{" + KEYS + ',"x":"' + "9" * 5000 + '"}',
    "{" + KEYS + ',"x":' + "[" * 250 + "]" * 250 + "}", "{" + KEYS + ',"x":' + "[" * 300 + "]" * 300 + "}",
    "{" + KEYS + ',"x":' + "[" * 900 + "]" * 900 + "}", "{" + KEYS + ',"x":' + "[" * 5000 + "]" * 5000 + "}",
    "{" + KEYS + ',"x":{"a":1,"a":[2]},"y":[1,2.5,null,true,"\\u00e9",-0.0,18446744073709551616]}',
]


@pytest.mark.parametrize("element", ODD_ELEMENTS)
def test_an_element_decoded_on_first_read_parses_as_json_loads_parses_it(element: str) -> None:
    body = ('{"data":{"events":[' + element + "," + json.dumps(make_event("other")) + "]}}").encode()
    assert _delivery_outcome(parse_delivery, body) == _delivery_outcome(parse_delivery_with_json, body)


@pytest.mark.parametrize("body", [
    b'\xef\xbb\xbf{"data":{"events":[{' + KEYS.encode() + b"}]}}",  # a BOM: json.loads's path only
    '{"data":{"events":[{'.encode("utf-16") + KEYS.encode("utf-16")[2:] + "}]}}".encode("utf-16")[2:],
    b'{"data":{"events":[{' + KEYS.encode() + b',"x":"\xed\xa0\x80"}]}}',  # a raw surrogate
    b'{"data":{"events":[{' + KEYS.encode() + b',"x":"\xff"}]}}',
])
def test_bodies_only_json_loads_reads_parse_as_before(body: bytes) -> None:
    assert _delivery_outcome(parse_delivery, body) == _delivery_outcome(parse_delivery_with_json, body)


@pytest.mark.parametrize(("extra", "later"), [
    ("", True), (',"x":' + "[" * 120 + "]" * 120, True), (',"x":"' + "9" * 4300 + '"', True),
    (',"x":' + "[" * 300 + "]" * 300, True),  # read deeper in the stack, it is decoded on a fresh one (below)
    (',"x":"' + "9" * 4301 + '"', False),  # digits enough for an integer Python will not read: looked at now
    (',"x":1e999', True),  # msgspec's decode refuses it, so decode_json's json.loads reads it (inf), as before
])
def test_which_events_are_left_to_decode_later(extra: str, later: bool) -> None:
    (event,) = parse_delivery(('{"data":{"events":[{' + KEYS + extra + "}]}}").encode()).events
    assert (event.decode is not None) is later
    assert event.source is not None


def _stack_depth() -> int:
    frame: FrameType | None = sys._getframe(1)
    depth = 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1
    return depth


def test_a_body_nested_near_the_recursion_limit_is_read_deeper_in_the_stack(decodes: list[str]) -> None:
    # Unpacked here with a little room to spare, read 200 frames deeper, where decoding it meets the limit.
    nesting = sys.getrecursionlimit() - _stack_depth() - 50
    body = '{"data":{"events":[{' + KEYS + ',"x":' + "[" * nesting + "]" * nesting + "}]}}"
    (event,) = parse_delivery(body.encode()).events
    assert event.decode is not None  # left for later, not decoded now

    def read(frames: int) -> Any:
        return read(frames - 1) if frames else event.data

    value, levels = read(200)["x"], 1
    while value:
        value, levels = value[0], levels + 1
    assert levels == nesting
    assert len(decodes) > 1  # the read met the limit once, then decoded on a fresh stack


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every body the detector's fast path decodes, as it decodes it."""
    seen: list[str] = []

    def counting(document: bytes | str) -> Any:
        seen.append(document if isinstance(document, str) else document.decode())
        return decode_json(document)

    monkeypatch.setattr(okta, "decode_json", counting)
    return seen


def test_an_events_body_is_decoded_only_when_read_and_not_kept(decodes: list[str]) -> None:
    sample = make_event("lazy-1", x=[1, {"y": "\u00e9"}])
    (event,) = parse_delivery(json.dumps(envelope(sample)).encode()).events
    assert decodes == []
    assert event.data == sample
    assert decodes == [event.source]
    assert event.data == sample  # decoded again: kept, it would live as long as the detector's batch
    assert decodes == [event.source, event.source]
    copied = replace(event, uuid="lazy-2")  # a copy holds the decoded body
    assert (copied.data, copied.source, len(decodes)) == (sample, event.source, 3)


def test_an_event_no_rule_reads_is_never_decoded(decodes: list[str], tmp_path: Path) -> None:
    (tmp_path / "rules.toml").write_text(THRESHOLD_RULES, encoding="utf-8")  # rules on user.session.start only
    evaluator = RuleEvaluator(load_rules([tmp_path]), 1000)
    unread, read = parse_delivery(json.dumps(envelope(
        make_event("nobody-reads", "user.lifecycle.nobody_reads_this"),
        make_event("read", "user.session.start", outcome={"result": "FAILURE"}))).encode()).events
    assert evaluator.evaluate(unread, unread.published) == []
    assert decodes == []
    evaluator.evaluate(read, read.published)
    assert decodes == [read.source]


# --- sentinel replay's documents: the same fast path, against decoding them whole ---------------------------

def _replay_outcome(document: bytes) -> object:
    try:
        event = parse_event(decode_json(document))
    except (PayloadError, ValueError, RecursionError) as e:
        return type(e).__name__
    return event.uuid, event.event_type, event.published, json.dumps(event.data, ensure_ascii=False)


@pytest.mark.parametrize("document", ODD_ELEMENTS)
def test_replays_fast_path_reads_an_event_as_decoding_it_whole_does(document: str) -> None:
    event = event_quickly(document.encode("utf-8", "surrogatepass"))
    if event is not None:
        assert _replay_outcome(document.encode()) == (event.uuid, event.event_type, event.published,
                                                       json.dumps(event.data, ensure_ascii=False))


def test_replays_fast_path_takes_plain_events_and_leaves_the_rest() -> None:
    assert event_quickly(json.dumps(make_event("plain")).encode()) is not None
    for other in ['{"uuid":5,' + KEYS[1:] + "}", "[" + json.dumps(make_event("in-a-list")) + "]",
                  "{" + KEYS + ',"x":NaN}', "{" + KEYS + ',"x":' + "9" * 4301 + "}", "\ufeff{" + KEYS + "}"]:
        assert event_quickly(other.encode()) is None, other


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=3), MUTATION_BYTES),
                min_size=1, max_size=4))
def test_replays_fast_path_agrees_on_mutated_events(mutations: list[tuple[int, int, bytes]]) -> None:
    document = bytearray(json.dumps(make_event("m-1", x=[1, 2.5, None, "\u00e9"]), ensure_ascii=False).encode())
    for at, cut, insert in mutations:
        at %= len(document) + 1
        document[at:at + cut] = insert
    event = event_quickly(bytes(document))
    if event is not None:
        assert _replay_outcome(bytes(document)) == (event.uuid, event.event_type, event.published,
                                                     json.dumps(event.data, ensure_ascii=False))


def test_replay_reads_json_lines_through_the_fast_path_as_before() -> None:
    """Plain events take the fast path; a hook body (even one with an event's key fields) and an events row
    are still read whole, as before."""
    plain, inner = make_event("plain-1"), make_event("inner-1")
    both = make_event("both-1") | {"data": {"events": [make_event("inside-both-1")]}}
    row = {"uuid": "row-1", "event_type": "user.session.start", "published": "2024-05-01T10:00:00.000Z",
           "body": make_event("row-1")}
    lines = [json.dumps(plain), json.dumps(envelope(inner)), json.dumps(both), json.dumps(row), "not json"]
    problems: list[str] = []
    report = ReadReport(on_problem=problems.append)
    events = list(read_events(io.BytesIO("\n".join(lines).encode()), "x.jsonl", report))
    assert [(e.uuid, e.data) for e in events] == [("plain-1", plain), ("inner-1", inner),
                                                  ("inside-both-1", both["data"]["events"][0]), ("row-1", row["body"])]
    assert events[0].decode is not None  # the fast path's event, decoded when read
    assert (report.events, report.skipped, len(problems)) == (4, 1, 1)


def test_the_silencer_reads_each_events_body_once(decodes: list[str], tmp_path: Path) -> None:
    """A threshold alert comes again with each event it folds in, carrying the uuids of up to 100 events:
    with bodies decoded at each read, the silencer must read each one once, not once per alert."""
    events = parse_delivery(json.dumps(envelope(*[make_event(f"s-{i}") for i in range(20)])).encode()).events
    now = datetime(2026, 1, 1, tzinfo=UTC)
    alerts = [Alert(f"k-{n}", "brute", Severity.HIGH, "t", "s", "g", now, now, n + 1,
                    tuple(e.uuid for e in events[:n + 1])) for n in range(20)]
    window = Silence(None, "brute", (("actor.alternateId", "alice@example.com"),), now, now + timedelta(hours=1),
                     "sentinel.toml", "maintenance test", now)

    async def scenario() -> dict[str, str]:
        store = Store(tmp_path / "s.db")
        store.start(now)
        try:
            return await Silencer(store, FixedClock(now), lambda _: [window]).silenced(alerts, events, now)
        finally:
            store.close()

    assert asyncio.run(scenario()) == {a.key: "maintenance test" for a in alerts}
    assert sorted(decodes) == sorted(e.source or "" for e in events)
