"""The outbox: retries across outages, isolation between channels, restarts, dead-lettering."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from helpers_capture import Captured, CaptureServer, sample_alert

from sentinel.clock import FixedClock, SystemClock
from sentinel.config import ChannelSettings
from sentinel.delivery.apprise_channel import AppriseChannel, Channel, RetryPolicy
from sentinel.delivery.routing import route
from sentinel.model import Alert, Severity
from sentinel.service.dispatch import Dispatcher, start_dispatchers
from sentinel.service.metrics import Metrics
from sentinel.store import Store
from sentinel.store.alerts import record_evaluation
from sentinel.store.deliveries import deliveries_for_alert, list_deliveries, redeliver

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
ONE_TRY = RetryPolicy(attempts=1, timeout=5)


@pytest.fixture
def server() -> Iterator[CaptureServer]:
    srv = CaptureServer().start()
    yield srv
    srv.stop()


def channel(server: CaptureServer, name: str) -> AppriseChannel:
    return AppriseChannel(name, [f"json://127.0.0.1:{server.port}/{name}"], policy=ONE_TRY)


def fixed_backoff(attempts: int) -> timedelta:
    return timedelta(minutes=1)


async def open_store(path: Path, clock: FixedClock | SystemClock) -> Store:
    store = Store(path)
    store.start(clock.now())
    return store


async def add_alert(store: Store, alert: Alert, channels: list[str], at: datetime) -> int:
    result = await store.write(lambda c: record_evaluation(c, [], [alert], lambda a: channels, {}, [], at))
    return result.new_alerts[0]


def test_outage_then_recovery_delivers_once_and_other_channels_are_unaffected(
        tmp_path: Path, server: CaptureServer) -> None:
    async def scenario() -> None:
        clock = FixedClock(T0)
        store = await open_store(tmp_path / "s.db", clock)
        flaky, steady = channel(server, "flaky"), channel(server, "steady")
        d_flaky = Dispatcher(flaky, store, clock, backoff=fixed_backoff)
        d_steady = Dispatcher(steady, store, clock, backoff=fixed_backoff)
        alert_id = await add_alert(store, sample_alert(), ["flaky", "steady"], clock.now())
        server.fail("/flaky", 3)
        for _ in range(3):  # three failed attempts, each due a minute after the last
            assert await d_flaky.run_once() == 1
            assert await d_flaky.run_once() == 0  # not due again yet
            clock.advance(timedelta(minutes=1))
        assert await d_steady.run_once() == 1
        rows = {r["channel"]: r for r in await store.read(lambda c: deliveries_for_alert(c, alert_id))}
        assert rows["flaky"]["status"] == "pending" and rows["flaky"]["attempts"] == 3
        assert "failure" in rows["flaky"]["last_error"] and "500" in rows["flaky"]["last_error"]
        assert rows["steady"]["status"] == "sent"
        assert await d_flaky.run_once() == 1  # recovered
        assert await d_flaky.run_once() == 0
        clock.advance(timedelta(hours=1))
        assert await d_flaky.run_once() == 0 and await d_steady.run_once() == 0  # sent is never sent again
        rows = {r["channel"]: r for r in await store.read(lambda c: deliveries_for_alert(c, alert_id))}
        assert rows["flaky"]["status"] == "sent" and rows["flaky"]["attempts"] == 4
        assert rows["flaky"]["last_error"] is None
        store.close()

    asyncio.run(scenario())
    assert len(server.to("/flaky")) == 4  # 3 failures + 1 success
    assert len(server.to("/steady")) == 1
    assert server.to("/flaky")[-1].json()["title"] == "[CRITICAL] Super administrator granted"


def test_a_slow_channel_does_not_delay_the_others(tmp_path: Path, server: CaptureServer) -> None:
    release_slow = threading.Event()  # the slow channel's request hangs until the fast one has been delivered

    def hold_slow(req: Captured) -> None:
        if req.path.startswith("/slow"):
            release_slow.wait(10)

    server.on_request = hold_slow

    async def scenario() -> dict[str, tuple[str, int]]:
        clock = SystemClock()
        store = await open_store(tmp_path / "s.db", clock)
        channels: dict[str, Channel] = {"slow": channel(server, "slow"), "fast": channel(server, "fast")}
        stop = asyncio.Event()
        dispatchers, tasks = start_dispatchers(channels, store, clock, stop, budget=timedelta(hours=24),
                                               fallback=None)
        alert_id = await add_alert(store, sample_alert(), ["slow", "fast"], clock.now())
        for d in dispatchers:
            d.wake()
        while not (server.to("/fast") and server.to("/slow")):
            await asyncio.sleep(0.02)
        # The fast delivery is through while the slow one is still in flight: not attempted, not recorded.
        while_slow_hangs = {r["channel"]: (r["status"], r["attempts"])
                            for r in await store.read(lambda c: deliveries_for_alert(c, alert_id))}
        release_slow.set()
        stop.set()
        await asyncio.gather(*tasks)
        store.close()
        return while_slow_hangs

    rows = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert rows["slow"] == ("pending", 0)


def test_restart_with_pending_deliveries_delivers_each_once(tmp_path: Path, server: CaptureServer) -> None:
    async def first_run() -> None:
        clock = FixedClock(T0)
        store = await open_store(tmp_path / "s.db", clock)
        for i in range(3):
            await add_alert(store, sample_alert(key=f"k{i}", title=f"alert {i}"), ["hook"], clock.now())
        store.close()  # "crash" before any dispatcher ran

    async def later_run(expected: int) -> list[str]:
        clock = FixedClock(T0 + timedelta(minutes=5))
        store = await open_store(tmp_path / "s.db", clock)
        dispatcher = Dispatcher(channel(server, "hook"), store, clock)
        assert await dispatcher.run_once() == expected
        assert await dispatcher.run_once() == 0
        statuses = [r["status"] for r in await store.read(lambda c: list_deliveries(c))]
        store.close()
        return statuses

    asyncio.run(first_run())
    assert asyncio.run(later_run(3)) == ["sent"] * 3
    assert asyncio.run(later_run(0)) == ["sent"] * 3  # a third start sends nothing more
    titles = sorted(r.json()["title"] for r in server.to("/hook"))
    assert titles == ["[CRITICAL] alert 0", "[CRITICAL] alert 1", "[CRITICAL] alert 2"]


def test_dead_letter_after_budget_reported_on_fallback_and_redeliverable(
        tmp_path: Path, server: CaptureServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sentinel.dispatch")
    server.fail("/pager", 10_000)

    async def scenario() -> None:
        clock = FixedClock(T0)
        metrics = Metrics()
        store = await open_store(tmp_path / "s.db", clock)
        pager = Dispatcher(channel(server, "pager"), store, clock, budget=timedelta(hours=24),
                           fallback="fallback", metrics=metrics, backoff=lambda n: timedelta(hours=5))
        fallback = Dispatcher(channel(server, "fallback"), store, clock, fallback="fallback", metrics=metrics)
        alert_id = await add_alert(store, sample_alert(), ["pager"], clock.now())
        for hour in (0, 5, 10, 15, 20):
            clock.advance(timedelta(hours=hour) - (clock.now() - T0))
            assert await pager.run_once() == 1
        assert await fallback.run_once() == 0  # nothing dead yet
        clock.advance(timedelta(hours=5))  # 25 h after the alert: budget spent on this failure
        assert await pager.run_once() == 1
        rows = {r["channel"]: r for r in await store.read(lambda c: deliveries_for_alert(c, alert_id))}
        assert rows["pager"]["status"] == "dead" and rows["pager"]["attempts"] == 6
        assert rows["fallback"]["status"] == "pending"
        assert metrics.registry.get_sample_value("sentinel_dead_deliveries", {"channel": "pager"}) == 1
        assert await fallback.run_once() == 1
        clock.advance(timedelta(days=3))
        assert await pager.run_once() == 0  # dead stays dead
        # An operator re-queues it; the channel has recovered.
        server.fail("/pager", 0)
        assert await store.write(lambda c: redeliver(c, clock.now(), all_dead=True)) == 1
        assert await pager.run_once() == 1
        rows = {r["channel"]: r for r in await store.read(lambda c: deliveries_for_alert(c, alert_id))}
        assert rows["pager"]["status"] == "sent" and rows["fallback"]["status"] == "sent"
        store.close()

    asyncio.run(scenario())
    (report,) = server.to("/fallback")
    assert report.json()["title"] == "[CRITICAL] Undelivered to pager: Super administrator granted"
    assert "alert 1 to pager is dead (retry budget spent after 6 attempts)" in caplog.text
    assert "reported on fallback" in caplog.text


def test_a_fallback_that_already_got_the_alert_still_gets_the_dead_report(
        tmp_path: Path, server: CaptureServer) -> None:
    server.fail("/pager", 10_000)
    settings = {"pager": ChannelSettings("pager", min_severity=Severity.CRITICAL),
                "fallback": ChannelSettings("fallback", min_severity=Severity.HIGH)}

    async def scenario() -> None:
        clock = FixedClock(T0)
        store = await open_store(tmp_path / "s.db", clock)
        pager = Dispatcher(channel(server, "pager"), store, clock, budget=timedelta(hours=1),
                           fallback="fallback", backoff=lambda n: timedelta(hours=2))
        fallback = Dispatcher(channel(server, "fallback"), store, clock, fallback="fallback")
        result = await store.write(lambda c: record_evaluation(
            c, [], [sample_alert()], lambda a: route(a, settings), {}, [], clock.now()))
        (alert_id,) = result.new_alerts
        assert await fallback.run_once() == 1  # a critical alert: the fallback admits it like any channel
        assert await pager.run_once() == 1
        clock.advance(timedelta(hours=2))
        assert await pager.run_once() == 1  # budget spent: dead
        assert await fallback.run_once() == 1  # the report, although the alert itself was sent before
        rows = {r["channel"]: r for r in await store.read(lambda c: deliveries_for_alert(c, alert_id))}
        assert rows["pager"]["status"] == "dead" and rows["fallback"]["status"] == "sent"
        clock.advance(timedelta(days=1))
        assert await fallback.run_once() == 0
        store.close()

    asyncio.run(scenario())
    titles = [r.json()["title"] for r in server.to("/fallback")]
    assert titles == ["[CRITICAL] Super administrator granted",
                      "[CRITICAL] Undelivered to pager: Super administrator granted"]


def test_run_waits_for_the_back_off_then_retries_and_idles_at_the_poll_interval(
        tmp_path: Path, server: CaptureServer) -> None:
    """The run loop's waits, on a FixedClock: after a failure it waits exactly until the retry is due (not a
    whole poll interval), retries, and once nothing is due waits the poll interval."""
    server.fail("/hook", 1)
    clock = FixedClock(T0)
    waits: list[float] = []

    async def pause(stop: asyncio.Event, wake: asyncio.Event, seconds: float) -> None:
        waits.append(seconds)
        clock.advance(timedelta(seconds=seconds))  # the time passes, instantly
        if len(waits) == 2:
            stop.set()

    async def scenario() -> list[str]:
        store = await open_store(tmp_path / "s.db", clock)
        dispatcher = Dispatcher(channel(server, "hook"), store, clock, backoff=fixed_backoff, poll_seconds=300,
                                pause=pause)
        await add_alert(store, sample_alert(), ["hook"], clock.now())
        await asyncio.wait_for(dispatcher.run(asyncio.Event()), timeout=30)
        statuses = [r["status"] for r in await store.read(lambda c: list_deliveries(c))]
        store.close()
        return statuses

    assert asyncio.run(scenario()) == ["sent"]
    assert waits == [60.0, 300.0]  # the one-minute back-off, then the poll interval
    assert len(server.to("/hook")) == 2
