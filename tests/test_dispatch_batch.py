"""The outbox under a burst (issue 16, point 3): live alerts go out before a back-fill's, and a failed write
leaves every delivery pending, without giving up "never lost, never recorded sent unsent"."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from helpers_capture import sample_alert

from sentinel.clock import FixedClock
from sentinel.delivery.log_channel import LogChannel
from sentinel.model import Alert, DeliveryOutcome
from sentinel.service.dispatch import Dispatcher, LiveFirst
from sentinel.store import Store

AT = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def alerts(count: int, prefix: str, last_seen: datetime) -> list[Alert]:
    return [sample_alert(key=f"{prefix}-{i}", title=f"{prefix} {i}", first_seen=last_seen, last_seen=last_seen)
            for i in range(count)]


async def queued(path: Path, *batches: list[Alert], channel: str = "log") -> Store:
    """A store holding ``batches`` of new alerts, each batch recorded at AT (one transaction each)."""
    store = Store(path)
    store.start(AT)
    for batch in batches:
        await store.record_evaluation([], batch, lambda a: [channel], {}, [], AT)
    return store


async def drain(dispatcher: Dispatcher) -> int:
    turns = 0
    while await dispatcher.run_once():
        turns += 1
    return turns


def written_keys(path: Path) -> list[str]:
    return [json.loads(line)["alert_key"] for line in path.read_text(encoding="utf-8").splitlines()]


def test_a_failed_write_leaves_every_delivery_of_the_batch_pending_for_a_retry(tmp_path: Path) -> None:
    unwritable = tmp_path / "a-folder"
    unwritable.mkdir()  # writing "to" a folder fails with IsADirectoryError

    async def scenario() -> list[dict[str, object]]:
        store = await queued(tmp_path / "s.db", alerts(20, "k", AT))
        dispatcher = Dispatcher(LogChannel("log", unwritable), store, FixedClock(AT),
                                backoff=lambda attempts: timedelta(minutes=1))
        assert await dispatcher.run_once() == 20
        rows = await store.list_deliveries()
        store.close()
        return rows

    rows = asyncio.run(scenario())
    assert [(r["status"], r["attempts"]) for r in rows] == [("pending", 1)] * 20
    assert {r["next_attempt_at"] for r in rows} == {"2026-11-26T12:01:00.000000Z"}


class OneAtATime:
    """A channel that sends one alert at a time (as an Apprise one does) and remembers the order."""

    kind = "apprise"
    name = "chat"

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, alert: Alert) -> DeliveryOutcome:
        self.sent.append(alert.key)
        return DeliveryOutcome(ok=True, detail="ok")


def test_live_alerts_are_sent_before_a_backfills_even_when_queued_after_them(tmp_path: Path) -> None:
    backfilled = alerts(30, "old", AT - timedelta(hours=20))  # a day of System Log read back at first start
    live = alerts(2, "now", AT - timedelta(seconds=3))

    async def scenario() -> tuple[list[str], list[str]]:
        store = await queued(tmp_path / "s.db", backfilled, live, channel="chat")
        first = [d.alert.key for d in await store.due_deliveries("chat", AT, limit=3)]
        channel = OneAtATime()
        dispatcher = Dispatcher(channel, store, FixedClock(AT), batch=5)  # type: ignore[arg-type]
        await drain(dispatcher)
        store.close()
        return first, channel.sent

    first, sent = asyncio.run(scenario())
    assert first == ["now-0", "now-1", "old-0"]
    assert sent[:2] == ["now-0", "now-1"]  # not behind the 30 queued before them
    assert sent[2:] == [f"old-{i}" for i in range(30)]  # the back-fill itself keeps its order


def test_a_channel_with_only_backfilled_alerts_due_waits_while_another_sends_live_ones(tmp_path: Path) -> None:
    out = tmp_path / "alerts.jsonl"
    gate = LiveFirst()

    async def scenario() -> tuple[bool, int]:
        store = await queued(tmp_path / "s.db", alerts(10, "old", AT - timedelta(hours=20)))
        dispatcher = Dispatcher(LogChannel("log", out), store, FixedClock(AT), live=gate)
        with gate.sending("chat"):  # the chat channel is sending live alerts
            task = asyncio.create_task(dispatcher.run_once())
            await asyncio.sleep(0.05)
            waited = not out.exists() and not task.done()
        attempted = await task  # released as soon as the live sends are done
        store.close()
        return waited, attempted

    waited, attempted = asyncio.run(scenario())
    assert waited
    assert attempted == 10 and len(written_keys(out)) == 10


def test_a_live_alert_committed_during_a_backfills_batch_goes_out_after_the_send_in_flight(tmp_path: Path) -> None:
    """The detector commits a live alert (and wakes the dispatcher) while the channel works through a batch
    of back-filled ones: it is the next one sent, not the one after the batch."""
    backfilled = alerts(30, "old", AT - timedelta(hours=20))
    live = alerts(1, "now", AT - timedelta(seconds=1))

    async def scenario() -> list[str]:
        store = await queued(tmp_path / "s.db", backfilled, channel="chat")

        class CommitsALiveAlertMidBatch(OneAtATime):
            async def send(self, alert: Alert) -> DeliveryOutcome:
                outcome = await super().send(alert)
                if len(self.sent) == 3:  # the detector commits a live alert, then wakes the dispatchers
                    await store.record_evaluation([], live, lambda a: ["chat"], {}, [], AT)
                    dispatcher.wake()
                return outcome

        channel = CommitsALiveAlertMidBatch()
        dispatcher = Dispatcher(channel, store, FixedClock(AT), batch=20)  # type: ignore[arg-type]
        stop = asyncio.Event()
        task = asyncio.create_task(dispatcher.run(stop))
        while len(channel.sent) < 31:
            await asyncio.sleep(0.01)
        stop.set()
        dispatcher.wake()
        await task
        store.close()
        return channel.sent

    sent = asyncio.run(scenario())
    assert sent[:4] == ["old-0", "old-1", "old-2", "now-0"]  # not behind old-3 .. old-19
    assert sorted(sent) == sorted(["now-0"] + [f"old-{i}" for i in range(30)])
    assert [k for k in sent if k.startswith("old")] == [f"old-{i}" for i in range(30)]  # nothing sent twice
