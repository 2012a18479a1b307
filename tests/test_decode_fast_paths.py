"""The detector's decoding fast paths (issue 16) against the general paths they stand in for: Okta's
canonical timestamps, and events whose body is decoded only when something reads it."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel.model import _parse_timestamp_generally, parse_timestamp


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
    "2024-01-01T12:34:56Z", "2024-01-01T12:34:56.789000Z",
]


@pytest.mark.parametrize("text", ODD_TIMESTAMPS)
def test_timestamp_fast_path_agrees_with_the_general_one(text: str) -> None:
    assert _timestamp_outcome(parse_timestamp, text) == _timestamp_outcome(_parse_timestamp_generally, text)


def test_the_canonical_form_takes_the_fast_path_and_reads_as_utc() -> None:
    moment = parse_timestamp("2024-01-01T12:34:56.789Z")
    assert moment == _parse_timestamp_generally("2024-01-01T12:34:56.789Z")
    assert moment.utcoffset() is not None and moment.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(st.integers(min_value=0, max_value=23),
                          st.sampled_from([*"0123456789-:.TZ +tz\u0660\uff10W,", ""])), min_size=1, max_size=4))
def test_timestamp_fast_path_agrees_on_mutated_canonical_timestamps(changes: list[tuple[int, str]]) -> None:
    chars = list("2024-05-01T10:00:00.000Z")
    for at, char in changes:
        chars[at] = char
    text = "".join(chars)
    assert _timestamp_outcome(parse_timestamp, text) == _timestamp_outcome(_parse_timestamp_generally, text)
