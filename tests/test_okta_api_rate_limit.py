"""Okta's rate-limit headers read defensively, and the waits they imply (pure: a fixed clock, no server)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from sentinel.clock import FixedClock
from sentinel.okta_api.rate_limit import MAX_RESET_WAIT, MIN_429_WAIT, RateBudget, RateLimit

AT = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)


def headers(limit: str = "50", remaining: str = "10", reset: float | str = AT.timestamp() + 42,
            date: datetime | None = AT) -> dict[str, str]:
    found = {"x-rate-limit-limit": limit, "x-rate-limit-remaining": remaining, "x-rate-limit-reset": str(reset)}
    if date is not None:
        found["date"] = format_datetime(date, usegmt=True)
    return found


def test_reset_is_counted_on_oktas_clock_not_ours():
    # This machine's clock is 5 minutes fast: the wait still comes from Reset − Date.
    rate = RateLimit.from_headers(headers(reset=int(AT.timestamp()) + 42), AT + timedelta(minutes=5))
    assert rate == RateLimit(50, 10, 42.0)


def test_without_a_date_the_local_time_stands_in():
    rate = RateLimit.from_headers(headers(reset=int(AT.timestamp()) + 30, date=None), AT + timedelta(seconds=10))
    assert rate is not None and rate.reset_in == 20.0


@pytest.mark.parametrize("broken", [
    {"x-rate-limit-limit": "50"},
    headers(limit="fifty"),
    headers(reset="soon"),
    headers(remaining=""),
])
def test_missing_or_garbled_headers_give_no_rate_limit(broken):
    assert RateLimit.from_headers(broken, AT) is None


def test_a_reset_far_away_or_past_is_bounded():
    far = RateLimit.from_headers(headers(reset=int(AT.timestamp()) + 10**9), AT)
    past = RateLimit.from_headers(headers(reset=int(AT.timestamp()) - 100), AT)
    assert far is not None and far.reset_in == MAX_RESET_WAIT
    assert past is not None and past.reset_in == 0.0
    assert RateBudget(0.5, FixedClock(AT)).wait_after_429(past) == MIN_429_WAIT
    assert RateBudget(0.5, FixedClock(AT)).wait_after_429(None) == MIN_429_WAIT


@pytest.mark.parametrize(("limit", "share", "allowed"), [(50, 0.5, 25), (3, 0.5, 1), (1, 0.1, 1), (120, 1.0, 120),
                                                         (20, 0.33, 6)])
def test_the_share_of_the_bucket(limit, share, allowed):
    assert RateBudget(share, FixedClock(AT)).allowed(limit) == allowed


def test_waits_once_the_share_is_used_until_the_reset_only():
    clock = FixedClock(AT)
    budget = RateBudget(0.5, clock)
    assert budget.wait_before_next() == 0.0, "nothing known yet"
    budget.record(RateLimit(10, 6, 40.0))  # 4 of 10 used: a fifth is still ours
    assert budget.wait_before_next() == 0.0
    budget.record(RateLimit(10, 5, 40.0))  # 5 used (by anyone): half the bucket
    assert budget.wait_before_next() == 40.0
    clock.advance(timedelta(seconds=15))
    assert budget.wait_before_next() == 25.0
    clock.advance(timedelta(seconds=25))
    assert budget.wait_before_next() == 0.0, "the window has reset"
    budget.record(None)  # a response without headers keeps what was known
    assert budget.last == RateLimit(10, 5, 40.0)


def test_a_concurrency_429_state_never_blocks_by_itself():
    budget = RateBudget(0.5, FixedClock(AT))
    budget.record(RateLimit(0, 0, 1.0))
    assert budget.last is not None and budget.last.concurrency and budget.wait_before_next() == 0.0
