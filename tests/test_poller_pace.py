"""The System Log poller keeps pace with the detector (issue 16): it reads the next page only once the
detector has (nearly) unpacked the inbox, so a back-fill cannot queue its pages ahead of live hooks."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fake_okta import FakeOkta
from test_fake_okta import events_at
from test_poller import START, TOKEN, TYPES, Rig, typed

from sentinel.clock import FixedClock
from sentinel.service import poller as poller_module


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture
def fake(clock: FixedClock) -> Iterator[FakeOkta]:
    server = FakeOkta(api_token=TOKEN, clock=lambda: clock.now().timestamp(), rate_limit=1000).start()
    yield server
    server.stop()


def test_the_next_page_waits_until_the_detector_has_caught_up(tmp_path: Path, clock: FixedClock,
                                                              fake: FakeOkta, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(poller_module, "DETECTOR_CHECK_SECONDS", 0.001)
    rig = Rig(tmp_path, fake, clock)
    fake.add(typed(events_at(START - timedelta(hours=3), 2500), TYPES[0]))
    backlog = [5]  # deliveries the detector has yet to unpack
    asked = 0

    async def detector_backlog() -> int:
        nonlocal asked
        asked += 1
        return backlog[0]

    rig.poller._detector_backlog = detector_backlog

    async def scenario() -> list[int]:
        stop = asyncio.Event()
        task = asyncio.create_task(rig.poller._run(stop))
        requests = []
        while asked < 50:  # the detector stays behind: no page is read
            await asyncio.sleep(0.001)
        requests.append(len(rig.log_requests()))
        backlog[0] = poller_module.MAX_DELIVERIES_AHEAD + 1  # still behind: still no page
        await asyncio.sleep(0.05)
        requests.append(len(rig.log_requests()))
        backlog[0] = poller_module.MAX_DELIVERIES_AHEAD  # caught up: the poller goes on
        while len(rig.log_requests()) < 3:
            await asyncio.sleep(0.001)
        requests.append(len(rig.log_requests()))
        stop.set()
        await task
        return requests

    try:
        requests = rig.run(scenario())
    finally:
        rig.close()
    assert requests[0] == 0
    assert requests[1] == 0
    assert requests[2] >= 3


def test_a_detector_that_never_catches_up_delays_each_page_but_does_not_stop_polling(
        tmp_path: Path, clock: FixedClock, fake: FakeOkta, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(poller_module, "DETECTOR_CHECK_SECONDS", 0.001)
    monkeypatch.setattr(poller_module, "DETECTOR_WAIT_SECONDS", 0.0)  # the bound, reached at once
    rig = Rig(tmp_path, fake, clock)
    fake.add(typed(events_at(START - timedelta(hours=3), 1500), TYPES[0]))

    async def stuck() -> int:
        return 10**6

    rig.poller._detector_backlog = stuck

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(rig.poller._run(stop))
        while len(rig.polled_uuids()) < 1500:
            await asyncio.sleep(0.01)
        stop.set()
        await task

    try:
        rig.run(asyncio.wait_for(scenario(), 30))
    finally:
        rig.close()


def test_the_store_counts_the_deliveries_left_to_unpack_up_to_a_cap(tmp_path: Path) -> None:
    from sentinel.store import Store

    async def scenario() -> tuple[int, int, int]:
        store = Store(tmp_path / "s.db")
        store.start(START)
        for _ in range(5):
            await store.receive(b'{"data": {"events": []}}')
        counts = (await store.inbox_waiting(0), await store.inbox_waiting(0, most=3), await store.inbox_waiting(5))
        store.close()
        return counts

    assert asyncio.run(scenario()) == (5, 3, 0)


def test_a_page_goes_into_the_inbox_in_parts_each_after_the_detector_caught_up_and_the_cursor_with_the_last(
        tmp_path: Path, clock: FixedClock, fake: FakeOkta, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 250-event page: three inbox rows of 100, 100 and 50 events in the page's order, each stored once the
    detector has unpacked the one before, the stored cursor unchanged until the last part."""
    rig = Rig(tmp_path, fake, clock)
    events = typed(events_at(START - timedelta(hours=3), 250), TYPES[0])
    fake.add(events)
    seen: list[tuple[int, str | None]] = []  # (inbox rows, the stored cursor's next link) at each question
    backlog = [1, 0]  # behind once at each part's question, then caught up

    async def detector_backlog() -> int:
        cursor = await rig.store.poll_cursor(rig.poller.source)
        seen.append((len(rig.inbox_rows()), cursor.next_url if cursor else None))
        backlog.append(backlog.pop(0))
        return backlog[-1]

    rig.poller._detector_backlog = detector_backlog
    monkeypatch.setattr(poller_module, "DETECTOR_CHECK_SECONDS", 0.001)
    monkeypatch.setattr(poller_module, "PART_CHECK_SECONDS", 0.001)
    try:
        first = rig.run(rig.poller._current_cursor()).next_url
        rig.step()
        rows = rig.inbox_rows()
        stored = rig.run(rig.store.poll_cursor(rig.poller.source))
    finally:
        rig.close()
    assert [len(r) for r in rows] == [100, 100, 50]
    assert [u for r in rows for u in r] == [e["uuid"] for e in events]
    # Asked before the second and the third part (behind, then caught up each time): the stored cursor was
    # still the first one then; it moved with the last part.
    assert [n for n, _ in seen] == [1, 1, 2, 2]
    assert {url for _, url in seen} == {first}
    assert stored is not None and stored.next_url != first


def test_a_detector_that_does_not_catch_up_in_time_gets_the_rest_of_the_page_at_once(
        tmp_path: Path, clock: FixedClock, fake: FakeOkta, monkeypatch: pytest.MonkeyPatch) -> None:
    """A page waits DETECTOR_WAIT_SECONDS at most for a stopped detector, not that long once a part."""
    monkeypatch.setattr(poller_module, "PART_CHECK_SECONDS", 0.001)
    monkeypatch.setattr(poller_module, "DETECTOR_WAIT_SECONDS", 0.0)  # the bound, reached at once
    rig = Rig(tmp_path, fake, clock)
    fake.add(typed(events_at(START - timedelta(hours=3), 350), TYPES[0]))
    asked = 0

    async def stuck() -> int:
        nonlocal asked
        asked += 1
        return 10**6

    rig.poller._detector_backlog = stuck
    try:
        rig.step()
        rows = rig.inbox_rows()
    finally:
        rig.close()
    assert [len(r) for r in rows] == [100, 100, 100, 50]
    assert asked == 1  # asked before the second part only
