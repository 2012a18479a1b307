"""The body-read deadline of /hooks/okta (one sweeping timer instead of asyncio.timeout per request)."""

from __future__ import annotations

import asyncio

import pytest

from sentinel.web.hook_endpoint import BodyDeadlines


async def _read(deadlines: BodyDeadlines, seconds: float) -> str:
    with deadlines:
        await asyncio.sleep(seconds)
        return "read"


def test_only_the_task_past_its_deadline_times_out() -> None:
    async def scenario() -> list[str | BaseException]:
        deadlines = BodyDeadlines(0.2, sweep_every=0.02)
        return await asyncio.gather(_read(deadlines, 5), _read(deadlines, 0.01), _read(deadlines, 0.1),
                                    return_exceptions=True)

    slow, quick, in_time = asyncio.run(asyncio.wait_for(scenario(), 3))
    assert isinstance(slow, TimeoutError)
    assert (quick, in_time) == ("read", "read")


def test_a_timed_out_task_carries_on_uncancelled() -> None:
    async def scenario() -> str:
        deadlines = BodyDeadlines(0.05, sweep_every=0.01)
        with pytest.raises(TimeoutError):
            await _read(deadlines, 5)
        task = asyncio.current_task()
        assert task is not None and task.cancelling() == 0
        await asyncio.sleep(0.01)  # not cancelled again
        return await _read(deadlines, 0.01)

    assert asyncio.run(asyncio.wait_for(scenario(), 3)) == "read"


def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    async def scenario() -> None:
        deadlines = BodyDeadlines(10, sweep_every=0.01)
        task = asyncio.create_task(_read(deadlines, 5))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not deadlines._deadlines  # nothing left watched

    asyncio.run(asyncio.wait_for(scenario(), 3))


def test_the_timer_stops_when_nothing_is_watched() -> None:
    async def scenario() -> None:
        deadlines = BodyDeadlines(1, sweep_every=0.01)
        assert await _read(deadlines, 0.001) == "read"
        await asyncio.sleep(0.05)
        assert deadlines._timer is None

    asyncio.run(asyncio.wait_for(scenario(), 3))
