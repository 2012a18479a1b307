"""Parsing delivery bodies (pure): good events kept, bad ones quarantined with their JSON path."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from conftest import DATA, envelope, make_event

from sentinel.errors import PayloadError
from sentinel.okta import parse_delivery, verification_answer


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


def test_panther_timestamp_form_is_accepted() -> None:
    event = make_event("p", published="2020-11-25 21:27:03.496000000")
    parsed = parse_delivery(json.dumps({"data": {"events": [event]}}).encode()).events[0]
    assert parsed.published == datetime(2020, 11, 25, 21, 27, 3, 496000, tzinfo=UTC)


def test_deep_nesting_is_a_payload_error_not_a_crash() -> None:
    with pytest.raises(PayloadError) as info:
        parse_delivery(b"[" * 200_000 + b"]" * 200_000)
    assert info.value.location == "$"
