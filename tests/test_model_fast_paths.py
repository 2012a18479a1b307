"""Two foundations made cheaper for the detector (issue 16), held to what they stood for: the store's
timestamp text for UTC times, and an event decoded when read built through its slots."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel.model import LATER, Event, format_timestamp, parse_timestamp
from sentinel.okta import decode_json


def _defined(moment: datetime) -> str:
    """format_timestamp as it was written before the fast path (isoformat of the UTC time)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
       st.sampled_from([UTC, timezone(timedelta(0)), timezone(timedelta(hours=5, minutes=30)),
                        timezone(timedelta(hours=-8))]))
@settings(max_examples=500, deadline=None)
def test_the_store_text_of_a_time_is_what_isoformat_of_its_utc_time_gives(moment: datetime, zone: timezone) -> None:
    aware = moment.replace(tzinfo=zone)
    text = format_timestamp(aware)
    assert text == _defined(aware)
    assert len(text) == 27 and parse_timestamp(text) == aware  # fixed width, and it reads back


def test_years_before_1000_and_whole_seconds_keep_the_fixed_width() -> None:
    for moment in (datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC), datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC),
                   datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)):
        assert format_timestamp(moment) == _defined(moment)
    assert format_timestamp(datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC)) == "0999-01-02T03:04:05.000000Z"


def test_an_event_decoded_when_read_is_the_event_its_fields_make() -> None:
    source = '{"uuid": "u-1", "eventType": "user.session.start", "outcome": {"result": "FAILURE"}}'
    published = datetime(2026, 12, 2, 12, 0, 0, 123000, tzinfo=UTC)
    made = Event.later("u-1", "user.session.start", published, source, decode_json)
    built = Event("u-1", "user.session.start", published, LATER, source, decode_json)
    for field in fields(Event):
        if field.name != "data":  # the property decodes it: compared below
            assert getattr(made, field.name) is getattr(built, field.name), field.name
    assert made == built and hash(made) == hash(built) and repr(made) == repr(built)
    assert made.data == built.data == decode_json(source)
    assert made.data is not made.data  # decoded at each read, not kept
