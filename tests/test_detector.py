"""The detector loop, in process: a poison-pill event or an unrecordable alert never stops detection."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from conftest import make_event

from sentinel.clock import FixedClock
from sentinel.detector import Detector
from sentinel.metrics import Metrics
from sentinel.model import Alert, Event, Severity
from sentinel.okta import parse_event
from sentinel.store import Store
from sentinel.store.events import ingest

NOW = datetime(2026, 1, 1, tzinfo=UTC)


class ScriptedEvaluator:
    """Alerts on every event; raises on the uuids it is told to, or makes an unrecordable alert."""

    group_count = 0
    dropped_groups = 0

    def __init__(self, raise_on: set[str] = frozenset(), bad_alert_on: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.raise_on = raise_on
        self.bad_alert_on = bad_alert_on

    def evaluate(self, event: Event, now: datetime) -> list[Alert]:
        if event.uuid in self.raise_on:
            raise RuntimeError("rule bug")
        key = None if event.uuid in self.bad_alert_on else f"r:{event.uuid}"
        return [Alert(key=key, rule_id="r", severity=Severity.LOW, title="t", summary="", group_key="",  # type: ignore[arg-type]
                      first_seen=event.published, last_seen=event.published, count=1, event_uuids=(event.uuid,))]

    def take_changes(self) -> tuple[dict[str, str], set[str]]:
        return {}, set()

    def restore(self, rows: Iterable[tuple[str, str]]) -> None:
        return None


def run(tmp_path: Path, evaluator: ScriptedEvaluator, uuids: list[str]) -> tuple[list[tuple[str, int]], Metrics]:
    metrics = Metrics()

    async def scenario() -> None:
        store = Store(tmp_path / "s.db")
        store.start(NOW)
        try:
            events = [parse_event(make_event(u)) for u in uuids]
            await store.write(lambda c: ingest(c, events, [], NOW))
            detector = Detector(store, evaluator, lambda a: ["log"], FixedClock(NOW), metrics)
            assert await detector.run_once() == len(uuids)
            assert await detector.run_once() == 0  # nothing left pending: no retry loop on the bad event
        finally:
            store.close()

    asyncio.run(scenario())
    conn = sqlite3.connect(tmp_path / "s.db")
    evaluated = conn.execute("SELECT uuid, evaluated_at IS NOT NULL FROM events ORDER BY uuid").fetchall()
    assert all(flag for _, flag in evaluated)
    alerts = [row[0] for row in conn.execute("SELECT key FROM alerts ORDER BY key")]
    return [(k, 1) for k in alerts], metrics


def test_an_event_whose_evaluation_raises_is_skipped_not_retried_forever(tmp_path: Path) -> None:
    alerts, metrics = run(tmp_path, ScriptedEvaluator(raise_on={"b"}), ["a", "b", "c"])
    assert alerts == [("r:a", 1), ("r:c", 1)]
    assert metrics.evaluation_errors._value.get() == 1


def test_an_unrecordable_alert_does_not_block_the_batch(tmp_path: Path) -> None:
    alerts, metrics = run(tmp_path, ScriptedEvaluator(bad_alert_on={"b"}), ["a", "b"])
    assert alerts == []  # the batch's alerts are dropped (and logged), the events are not stuck
    assert metrics.evaluation_errors._value.get() == 1


class Recorder(ScriptedEvaluator):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str]] = []

    def evaluate(self, event: Event, now: datetime) -> list[Alert]:
        self.seen.append((event.uuid, str(event.data.get("displayMessage"))))
        return []


def test_handed_over_events_are_used_and_the_store_decides_what_is_pending(tmp_path: Path) -> None:
    recorder = Recorder()

    async def scenario() -> None:
        store = Store(tmp_path / "s.db")
        store.start(NOW)
        try:
            stored_events = [parse_event(make_event(u, displayMessage="from store")) for u in ("a", "b")]
            await store.write(lambda c: ingest(c, stored_events, [], NOW))
            detector = Detector(store, recorder, lambda a: [], FixedClock(NOW), Metrics())
            # Intake hands over "a" already parsed; "b" was not handed over (e.g. stored before a restart).
            detector.offer([parse_event(make_event("a", displayMessage="handed over"))])
            # A late hand-over of an event that is not pending (never stored) is ignored.
            detector.offer([parse_event(make_event("ghost", displayMessage="handed over"))])
            assert await detector.run_once() == 2
            # A late hand-over of an already evaluated event does not evaluate it again.
            detector.offer([parse_event(make_event("a", displayMessage="late"))])
            assert await detector.run_once() == 0
        finally:
            store.close()

    asyncio.run(scenario())
    assert recorder.seen == [("a", "handed over"), ("b", "from store")]
