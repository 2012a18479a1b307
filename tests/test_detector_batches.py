"""A long batch (a System Log page of 1,000 events) evaluated as unpacked is stored in short transactions,
capped by events and alerts, so the live path's commits never wait long for the main database's lock; and
nothing is lost or repeated when the batch's last transaction never happens (issue 16, point 3)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import make_event

from sentinel.clock import FixedClock
from sentinel.errors import StoreError
from sentinel.model import Alert, Event, Severity
from sentinel.service import detector_batches
from sentinel.service.detector import Detector, DetectorReport
from sentinel.store import Store

NOW = datetime(2026, 1, 1, tzinfo=UTC)
PAGE = 1_200


class CountingEvaluator:
    """Counts the events it saw in its rule state (so state stored apart from its events would show as a
    wrong count after a restart) and alerts on every event whose number is even."""

    group_count = 0
    dropped_groups = 0

    def __init__(self) -> None:
        self.count = 0
        self.seen: list[str] = []
        self._changed = False

    def evaluate(self, event: Event, now: datetime) -> list[Alert]:
        self.count += 1
        self._changed = True
        self.seen.append(event.uuid)
        if int(event.uuid.rsplit("-", 1)[1]) % 2:
            return []
        return [Alert(key=f"r:{event.uuid}", rule_id="r", severity=Severity.LOW, title="t", summary="",
                      group_key="", first_seen=event.published, last_seen=event.published, count=1,
                      event_uuids=(event.uuid,))]

    def take_changes(self) -> tuple[dict[str, str], set[str]]:
        changed, self._changed = self._changed, False
        return ({"count": str(self.count)} if changed else {}), set()

    def take_rule_counts(self) -> dict[tuple[str, str], int]:
        return {}

    def restore(self, rows: Iterable[tuple[str, str]]) -> None:
        self.count = int(dict(rows).get("count", "0"))


def page_body(count: int) -> bytes:
    """One inbox delivery as the poller stores a page: ``count`` events, published in reverse of their
    order in the page (the queue's order is published's), and one element quarantined."""
    events: list[Any] = [make_event(f"e-{i:05d}", published=f"2026-01-01T00:{59 - i // 60 % 60:02d}:"
                                    f"{59 - i % 60:02d}.000Z") for i in range(count)]
    events.append({"uuid": 1})  # quarantined
    return json.dumps({"eventType": "com.okta.event_hook", "data": {"events": events}}).encode()


def stored(db: Path) -> dict[str, Any]:
    conn = sqlite3.connect(db)
    try:
        return {
            "events": conn.execute("SELECT count(*), count(evaluated_at) FROM events").fetchone(),
            "alerts": conn.execute("SELECT count(*), count(DISTINCT key) FROM alerts").fetchone()[0:2],
            "deliveries": conn.execute("SELECT count(*) FROM deliveries").fetchone()[0],
            "state": conn.execute("SELECT value FROM rule_state WHERE key = 'count'").fetchone(),
            "quarantine": conn.execute("SELECT count(*) FROM quarantine").fetchone()[0],
        }
    finally:
        conn.close()


def test_a_long_batch_is_stored_in_short_transactions_with_the_same_result(tmp_path: Path) -> None:
    evaluator = CountingEvaluator()
    reports: list[DetectorReport] = []
    parts: list[tuple[int, int]] = []  # (events, alerts) of each transaction stored ahead

    async def scenario() -> int:
        store = Store(tmp_path / "s.db")
        store.start(NOW)
        record_ahead = store.record_evaluated_ahead

        async def counted(evaluated: Any, alerts: Any, *args: Any, **kwargs: Any) -> Any:
            parts.append((sum(len(events) for _, events in evaluated), len(alerts)))
            return await record_ahead(evaluated, alerts, *args, **kwargs)

        store.record_evaluated_ahead = counted  # type: ignore[method-assign,assignment]
        try:
            detector = Detector(store, evaluator, lambda a: ["log", "slack"], FixedClock(NOW),
                                on_report=reports.append)
            await detector.load_state()
            await store.receive(page_body(PAGE), NOW)
            before = store.commits
            assert await detector.unpack_once(evaluate=True) == 1
            return store.commits - before
        finally:
            store.close()

    commits = asyncio.run(scenario())
    # Every event once, evaluated; an alert for each even one, with a delivery row per channel; the state
    # counts every event once; the page's one quarantined element recorded once.
    assert stored(tmp_path / "s.db") == {"events": (PAGE, PAGE), "alerts": (PAGE // 2, PAGE // 2),
                                         "deliveries": PAGE, "state": (str(PAGE),), "quarantine": 1}
    assert evaluator.seen == sorted(evaluator.seen, reverse=True)  # the queue's order: published
    # In parts: none above the caps, the last with the cursor; so more than one commit.
    assert parts and all(events <= detector_batches.MAX_EVENTS_PER_COMMIT and
                         alerts <= detector_batches.MAX_ALERTS_PER_COMMIT for events, alerts in parts)
    assert sum(events for events, _ in parts) < PAGE
    assert commits == len(parts) + 1
    # Counted as one batch: the events stored ahead are new, not duplicates of themselves.
    assert sum(r.received for r in reports) == PAGE
    assert sum(r.duplicate for r in reports) == 0
    assert sum(r.quarantined for r in reports) == 1
    assert sum(r.evaluated for r in reports) == PAGE
    assert sum(len(r.alerts) for r in reports) == PAGE // 2
    assert [r.unpacked_upto for r in reports if r.unpacked_upto is not None] == [1]  # only once all is stored


def test_a_short_batch_with_few_alerts_stays_one_transaction(tmp_path: Path) -> None:
    async def scenario() -> int:
        store = Store(tmp_path / "s.db")
        store.start(NOW)
        try:
            detector = Detector(store, CountingEvaluator(), lambda a: ["log"], FixedClock(NOW))
            for start in range(0, 60, 10):  # six hook deliveries, 30 alerts
                await store.receive(json.dumps({"data": {"events": [
                    make_event(f"h-{i:05d}") for i in range(start, start + 10)]}}).encode(), NOW)
            before = store.commits
            assert await detector.unpack_once(evaluate=True) == 6
            return store.commits - before
        finally:
            store.close()

    assert asyncio.run(scenario()) == 1
    assert stored(tmp_path / "s.db")["events"] == (60, 60)


@pytest.mark.parametrize("fail", ["last transaction", "a later part"])
def test_a_batch_cut_short_after_parts_were_stored_is_finished_without_loss_or_repeats(
        tmp_path: Path, fail: str) -> None:
    """The detector stops (here: the store fails) after some parts were stored and before the cursor moved;
    a new detector unpacks the page again: the parts' events are duplicates, evaluated and alerted once."""
    first, second = CountingEvaluator(), CountingEvaluator()

    async def scenario() -> None:
        store = Store(tmp_path / "s.db")
        store.start(NOW)
        try:
            detector = Detector(store, first, lambda a: ["log"], FixedClock(NOW))
            await store.receive(page_body(PAGE), NOW)
            if fail == "last transaction":
                async def refused(*args: Any, **kwargs: Any) -> Any:
                    raise StoreError("could not persist: disk full")
                store.record_unpacked_evaluated = refused  # type: ignore[method-assign]
            else:
                record_ahead, calls = store.record_evaluated_ahead, []

                async def third_refused(*args: Any, **kwargs: Any) -> Any:
                    calls.append(1)
                    if len(calls) == 3:
                        raise StoreError("could not persist: disk full")
                    return await record_ahead(*args, **kwargs)
                store.record_evaluated_ahead = third_refused  # type: ignore[method-assign]
            with pytest.raises(StoreError):
                await detector.unpack_once(evaluate=True)
        finally:
            store.close()
        partial = stored(tmp_path / "s.db")
        assert 0 < partial["events"][0] < PAGE and partial["quarantine"] == 0
        store = Store(tmp_path / "s.db")  # a restart: state and cursor as stored
        store.start(NOW)
        try:
            detector = Detector(store, second, lambda a: ["log"], FixedClock(NOW))
            await detector.load_state()
            assert await detector.unpack_once(evaluate=True) == 1
            assert await detector.unpack_once(evaluate=True) == 0
        finally:
            store.close()

    asyncio.run(scenario())
    assert stored(tmp_path / "s.db") == {"events": (PAGE, PAGE), "alerts": (PAGE // 2, PAGE // 2),
                                         "deliveries": PAGE // 2, "state": (str(PAGE),), "quarantine": 1}
    # The second detector evaluated only what the first had not stored: together, each event once.
    assert 0 < len(second.seen) < PAGE
    assert len(set(second.seen)) == len(second.seen)
    stored_ahead = PAGE - len(second.seen)
    assert set(first.seen[:stored_ahead]).isdisjoint(second.seen)
    assert set(first.seen[:stored_ahead]) | set(second.seen) == {f"e-{i:05d}" for i in range(PAGE)}
