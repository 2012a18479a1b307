"""The engine's event time in integer microseconds, and the watermark's bound on future stamps.

Both are computed for every event (issue 16 made them cheaper: integer arithmetic on the timedelta, and
the bound reckoned once per ``now`` instead of once per event); these hold them to their definitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel.rules.engine_state import EPOCH, FUTURE_SKEW, EngineState, to_micros

ONE = timedelta(microseconds=1)
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
       st.one_of(st.none(), st.integers(-23 * 60, 23 * 60).map(lambda m: timezone(timedelta(minutes=m)))))
@settings(max_examples=500, deadline=None)
def test_event_time_in_microseconds_is_exact_before_and_after_the_epoch_in_any_zone(
        moment: datetime, zone: timezone | None) -> None:
    moment = moment.replace(tzinfo=zone)
    aware = moment if zone is not None else moment.replace(tzinfo=UTC)  # naive times are UTC, as Okta's
    assert to_micros(moment) == (aware - EPOCH) // ONE
    assert EPOCH + to_micros(moment) * ONE == aware


def test_an_event_stamped_past_now_and_the_skew_moves_the_watermark_only_that_far() -> None:
    state = EngineState()
    far = to_micros(NOW + timedelta(days=1))
    state.observe(far, NOW)
    assert state.watermark == to_micros(NOW + FUTURE_SKEW)
    state.observe(far, NOW)  # the same now again
    assert state.watermark == to_micros(NOW + FUTURE_SKEW)


def test_the_bound_follows_each_new_now() -> None:
    state = EngineState()
    far = to_micros(NOW + timedelta(days=1))
    for minutes in (0, 5, 30, 31):
        now = NOW + timedelta(minutes=minutes)
        assert state.next_watermark(far, now) == to_micros(now + FUTURE_SKEW)
        state.observe(far, now)
        assert state.watermark == to_micros(now + FUTURE_SKEW)
    # An equal now in another object gives the same bound; an earlier now never moves the watermark back.
    assert state.next_watermark(far, NOW + timedelta(minutes=31)) == state.watermark
    assert state.next_watermark(far, NOW) == state.watermark
    assert EngineState().next_watermark(to_micros(NOW), NOW) == to_micros(NOW)
