"""The outbox: retries across outages, isolation between channels, restarts, dead-lettering."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import make_event
from helpers_capture import Captured, CaptureServer, sample_alert

from sentinel.clock import FixedClock, SystemClock
from sentinel.config import ChannelSettings
from sentinel.delivery.apprise_channel import AppriseChannel, Channel, RetryPolicy
from sentinel.delivery.routing import route
from sentinel.errors import StoreError
from sentinel.model import Alert, Severity
from sentinel.okta import parse_event
from sentinel.service.dispatch import Dispatcher, start_dispatchers
from sentinel.service.metrics import Metrics
from sentinel.store import Store, database

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
    result = await store.record_evaluation([], [alert], lambda a: channels, {}, [], at)
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
        rows = {r["channel"]: r for r in await store.deliveries_for_alert(alert_id)}
        assert rows["flaky"]["status"] == "pending" and rows["flaky"]["attempts"] == 3
        assert "failure" in rows["flaky"]["last_error"] and "500" in rows["flaky"]["last_error"]
        assert rows["steady"]["status"] == "sent"
        assert await d_flaky.run_once() == 1  # recovered
        assert await d_flaky.run_once() == 0
        clock.advance(timedelta(hours=1))
        assert await d_flaky.run_once() == 0 and await d_steady.run_once() == 0  # sent is never sent again
        rows = {r["channel"]: r for r in await store.deliveries_for_alert(alert_id)}
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
                            for r in await store.deliveries_for_alert(alert_id)}
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
        statuses = [r["status"] for r in await store.list_deliveries()]
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
        rows = {r["channel"]: r for r in await store.deliveries_for_alert(alert_id)}
        assert rows["pager"]["status"] == "dead" and rows["pager"]["attempts"] == 6
        assert rows["fallback"]["status"] == "pending"
        assert metrics.registry.get_sample_value("sentinel_dead_deliveries", {"channel": "pager"}) == 1
        assert await fallback.run_once() == 1
        clock.advance(timedelta(days=3))
        assert await pager.run_once() == 0  # dead stays dead
        # An operator re-queues it; the channel has recovered.
        server.fail("/pager", 0)
        assert await store.redeliver(clock.now(), all_dead=True) == 1
        assert await pager.run_once() == 1
        rows = {r["channel"]: r for r in await store.deliveries_for_alert(alert_id)}
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
        result = await store.record_evaluation([], [sample_alert()], lambda a: route(a, settings), {}, [],
                                               clock.now())
        (alert_id,) = result.new_alerts
        assert await fallback.run_once() == 1  # a critical alert: the fallback admits it like any channel
        assert await pager.run_once() == 1
        clock.advance(timedelta(hours=2))
        assert await pager.run_once() == 1  # budget spent: dead
        assert await fallback.run_once() == 1  # the report, although the alert itself was sent before
        rows = {r["channel"]: r for r in await store.deliveries_for_alert(alert_id)}
        assert rows["pager"]["status"] == "dead" and rows["fallback"]["status"] == "sent"
        clock.advance(timedelta(days=1))
        assert await fallback.run_once() == 0
        store.close()

    asyncio.run(scenario())
    titles = [r.json()["title"] for r in server.to("/fallback")]
    assert titles == ["[CRITICAL] Super administrator granted",
                      "[CRITICAL] Undelivered to pager: Super administrator granted"]


@pytest.mark.proof
def test_a_sent_mark_that_meets_the_detectors_lock_is_retried_and_the_alert_never_sent_twice(
        tmp_path: Path, server: CaptureServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two processes write the main database: the detector (events, alerts) and the daemon's dispatchers
    (delivery status). Here the detector writes all along, and holds the write lock for longer than the
    dispatcher's (shortened) busy timeout just as each send lands, so every "sent" first fails to be
    recorded. It is retried until it lands: each alert goes out exactly once, and nothing the detector
    wrote meanwhile is lost."""
    monkeypatch.setattr(database, "BUSY_TIMEOUT_MS", 20)
    path = tmp_path / "s.db"
    clock = SystemClock()
    stop_detector = threading.Event()
    committed: list[str] = []
    detector_ready = threading.Event()

    def detector_writing() -> None:  # the detector process's view of the store, in a thread of its own
        async def run() -> None:
            store = Store(path, intake=False)
            store.start(clock.now())
            detector_ready.set()
            try:
                batch_no = 0
                while not stop_detector.is_set():
                    batch = [parse_event(make_event(f"e-{batch_no}-{i}")) for i in range(200)]
                    batch_no += 1
                    try:
                        await store.ingest(batch, [], clock.now())
                    except StoreError:  # the lock, from its side: the detector retries its batch later
                        continue
                    committed.extend(e.uuid for e in batch)
            finally:
                store.close()

        asyncio.run(run())

    def hold_the_lock_as_the_send_lands(_: Captured) -> None:
        # A long detector transaction that starts just before the channel answers.
        taken = threading.Event()

        def hold() -> None:
            conn = sqlite3.connect(path, isolation_level=None, timeout=5)
            conn.execute("BEGIN IMMEDIATE")
            taken.set()
            time.sleep(0.3)
            conn.execute("COMMIT")
            conn.close()

        threading.Thread(target=hold, daemon=True).start()
        assert taken.wait(5)

    async def scenario() -> list[dict[str, object]]:
        store = await open_store(path, clock)
        for i in range(3):
            await add_alert(store, sample_alert(key=f"k{i}", title=f"alert {i}"), ["hook"], clock.now())
        worker = threading.Thread(target=detector_writing)
        worker.start()
        assert detector_ready.wait(5)
        server.on_request = hold_the_lock_as_the_send_lands
        stop = asyncio.Event()
        dispatcher = Dispatcher(channel(server, "hook"), store, clock, poll_seconds=0.1)
        task = asyncio.create_task(dispatcher.run(stop))
        deadline = time.monotonic() + 8
        rows = await store.list_deliveries()
        while any(r["status"] != "sent" for r in rows) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            rows = await store.list_deliveries()
        await asyncio.sleep(0.5)  # room for a resend, if one were coming
        stop.set()
        await task
        stop_detector.set()
        worker.join()
        store.close()
        return rows

    rows = asyncio.run(scenario())
    assert sorted(r.json()["title"] for r in server.to("/hook")) == [f"[CRITICAL] alert {i}" for i in range(3)]
    assert [r["status"] for r in rows] == ["sent"] * 3
    assert committed  # the detector did write all along
    conn = sqlite3.connect(path)
    stored = {row[0] for row in conn.execute("SELECT uuid FROM events")}
    assert set(committed) <= stored


def test_a_stop_while_a_sent_mark_waits_for_the_lock_still_records_it(
        tmp_path: Path, server: CaptureServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reload or stop cancels the dispatchers; one whose "sent" is still waiting for the store is given
    time to record it, so the next dispatcher (after a reload, or a restart) does not send it again."""
    monkeypatch.setattr(database, "BUSY_TIMEOUT_MS", 20)
    path = tmp_path / "s.db"
    clock = SystemClock()
    held = threading.Event()

    def hold_the_lock_as_the_send_lands(_: Captured) -> None:
        def hold() -> None:
            conn = sqlite3.connect(path, isolation_level=None, timeout=5)
            conn.execute("BEGIN IMMEDIATE")
            held.set()
            time.sleep(0.5)
            conn.execute("COMMIT")
            conn.close()

        threading.Thread(target=hold, daemon=True).start()
        assert held.wait(5)

    async def scenario() -> list[dict[str, object]]:
        store = await open_store(path, clock)
        await add_alert(store, sample_alert(), ["hook"], clock.now())
        server.on_request = hold_the_lock_as_the_send_lands
        stop = asyncio.Event()
        task = asyncio.create_task(Dispatcher(channel(server, "hook"), store, clock).run(stop))
        while not held.is_set():
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # the send is answered; its "sent" waits for the lock
        task.cancel()  # what _stop_dispatchers does to a dispatcher still busy after its grace
        await asyncio.gather(task, return_exceptions=True)
        server.on_request = None
        again = Dispatcher(channel(server, "hook"), store, clock)  # the dispatcher after a reload
        assert await again.run_once() == 0
        rows = await store.list_deliveries()
        store.close()
        return rows

    rows = asyncio.run(scenario())
    assert len(server.to("/hook")) == 1
    assert [r["status"] for r in rows] == ["sent"]
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
        statuses = [r["status"] for r in await store.list_deliveries()]
        store.close()
        return statuses

    assert asyncio.run(scenario()) == ["sent"]
    assert waits == [60.0, 300.0]  # the one-minute back-off, then the poll interval
    assert len(server.to("/hook")) == 2
