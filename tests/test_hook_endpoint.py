"""The body-read deadline of /hooks/okta (one sweeping timer instead of asyncio.timeout per request).

Time is a FixedClock moved by the test; only the sweep's cadence is real (a few ms), and every wait is for
an effect (a task done, the timer gone), bounded by ``asyncio.wait_for``, never a sleep that hopes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from sentinel.clock import FixedClock
from sentinel.web.hook_endpoint import BodyDeadlines


def _clock() -> FixedClock:
    return FixedClock(datetime(2024, 5, 1, tzinfo=UTC))


async def _read(deadlines: BodyDeadlines, until: asyncio.Event | None = None) -> str:
    """A body read that lasts until ``until`` is set (forever without one... or not at all when it is set)."""
    with deadlines:
        await asyncio.sleep(0)
        if until is not None:
            await until.wait()
        return "read"


def test_only_the_task_past_its_deadline_times_out() -> None:
    async def scenario() -> tuple[BaseException | str, str, str]:
        clock = _clock()
        deadlines = BodyDeadlines(10, sweep_every=0.01, clock=clock)
        never, later = asyncio.Event(), asyncio.Event()
        slow = asyncio.create_task(_read(deadlines, never))       # deadline t = 10
        await asyncio.sleep(0)
        clock.advance(timedelta(seconds=5))
        in_time = asyncio.create_task(_read(deadlines, later))    # deadline t = 15
        quick = await _read(deadlines)
        await asyncio.sleep(0)
        clock.advance(timedelta(seconds=6))                       # t = 11: only the first is late
        slow_result: BaseException | str
        try:
            slow_result = await slow
        except TimeoutError as e:
            slow_result = e
        assert not in_time.done()  # the sweep that cancelled the late read left this one alone
        later.set()
        return slow_result, quick, await in_time

    slow, quick, in_time = asyncio.run(asyncio.wait_for(scenario(), 5))
    assert isinstance(slow, TimeoutError)
    assert (quick, in_time) == ("read", "read")


def test_a_timed_out_task_carries_on_uncancelled() -> None:
    async def scenario() -> str:
        clock = _clock()
        deadlines = BodyDeadlines(10, sweep_every=0.01, clock=clock)
        with pytest.raises(TimeoutError), deadlines:
            clock.advance(timedelta(seconds=11))  # past the deadline of t = 10
            await asyncio.Event().wait()
        task = asyncio.current_task()
        assert task is not None and task.cancelling() == 0
        await asyncio.sleep(0)  # a second, pending cancellation would land here
        return await _read(deadlines)

    assert asyncio.run(asyncio.wait_for(scenario(), 5)) == "read"


def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    async def scenario() -> None:
        deadlines = BodyDeadlines(10, sweep_every=0.01, clock=_clock())
        task = asyncio.create_task(_read(deadlines, asyncio.Event()))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not deadlines._deadlines  # nothing left watched

    asyncio.run(asyncio.wait_for(scenario(), 5))


def test_the_timer_stops_when_nothing_is_watched() -> None:
    async def scenario() -> None:
        deadlines = BodyDeadlines(1, sweep_every=0.01, clock=_clock())
        assert await _read(deadlines) == "read"
        assert deadlines._timer is not None  # armed by the read, cleared by the next sweep
        while deadlines._timer is not None:
            await asyncio.sleep(0.01)

    asyncio.run(asyncio.wait_for(scenario(), 5))


def test_the_event_loop_clock_is_the_default() -> None:
    async def scenario() -> None:
        deadlines = BodyDeadlines(0.05, sweep_every=0.01)
        with pytest.raises(TimeoutError):
            await _read(deadlines, asyncio.Event())

    asyncio.run(asyncio.wait_for(scenario(), 5))
