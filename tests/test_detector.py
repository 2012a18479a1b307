"""The detector loop, in process: unpacking the inbox exactly once, and a poison-pill event or an
unrecordable alert never stops detection."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import make_event, spray_rule
from prometheus_client import generate_latest

from sentinel.clock import FixedClock
from sentinel.errors import StoreError
from sentinel.model import Alert, Event, Severity
from sentinel.okta import Delivery, parse_event
from sentinel.rules import RuleSet, engine, load_rules
from sentinel.rules.evaluator import RuleEvaluator
from sentinel.service import unpacking as unpacking_module
from sentinel.service.detector import Detector, DetectorReport, apply_report
from sentinel.service.metrics import Metrics
from sentinel.store import Store
from sentinel.store.inbox import inbox_path

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

    def take_rule_counts(self) -> dict[tuple[str, str], int]:
        return {}

    def restore(self, rows: Iterable[tuple[str, str]]) -> None:
        return None


def run(tmp_path: Path, evaluator: ScriptedEvaluator, uuids: list[str]) -> tuple[list[tuple[str, int]], Metrics]:
    metrics = Metrics()

    async def scenario() -> None:
        store = Store(tmp_path / "s.db")
        store.start(NOW)
        try:
            events = [parse_event(make_event(u)) for u in uuids]
            await store.ingest(events, [], NOW)
            detector = Detector(store, evaluator, lambda a: ["log"], FixedClock(NOW),
                                on_report=lambda r: apply_report(metrics, r))
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
    assert metrics.registry.get_sample_value("sentinel_evaluation_errors_total") == 1


def test_an_unrecordable_alert_does_not_block_the_batch(tmp_path: Path) -> None:
    alerts, metrics = run(tmp_path, ScriptedEvaluator(bad_alert_on={"b"}), ["a", "b"])
    assert alerts == []  # the batch's alerts are dropped (and logged), the events are not stuck
    assert metrics.registry.get_sample_value("sentinel_evaluation_errors_total") == 1


class Recorder(ScriptedEvaluator):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str]] = []

    def evaluate(self, event: Event, now: datetime) -> list[Alert]:
        self.seen.append((event.uuid, str(event.data.get("displayMessage"))))
        return []


def test_unpacked_events_are_handed_over_and_the_store_decides_what_is_pending(tmp_path: Path) -> None:
    recorder = Recorder()

    async def scenario() -> None:
        store = Store(tmp_path / "s.db")
        store.start(NOW)
        try:
            # "b" was stored as an event before (e.g. by an earlier run): it is read back from the store.
            stored_events = [parse_event(make_event("b", displayMessage="from store"))]
            await store.ingest(stored_events, [], NOW)
            detector = Detector(store, recorder, lambda a: [], FixedClock(NOW))
            await detector.load_state()
            await store.receive(delivery(make_event("a", displayMessage="unpacked")), NOW)
            assert await detector.unpack_once() == 1
            # Unpacked "a" is evaluated as parsed by the unpacking, not read back.
            detector._parsed["a"] = parse_event(make_event("a", displayMessage="handed over"))
            assert await detector.run_once() == 2
            # A late hand-over of an already evaluated event does not evaluate it again.
            detector._offer([parse_event(make_event("a", displayMessage="late"))])
            assert await detector.run_once() == 0
        finally:
            store.close()

    asyncio.run(scenario())
    assert recorder.seen == [("a", "handed over"), ("b", "from store")]


def delivery(*events: dict[str, object], extra: list[object] | None = None) -> bytes:
    return json.dumps({"eventType": "com.okta.event_hook", "data": {"events": [*events, *(extra or [])]}}).encode()


def unpack_all(tmp_path: Path, bodies: list[bytes], *, restart_after: int | None = None) -> list[DetectorReport]:
    """Store bodies in the inbox and unpack them, optionally with a new Store/Detector (a restart)
    after the first ``restart_after`` bodies were unpacked."""
    reports: list[DetectorReport] = []

    async def scenario() -> None:
        store = Store(tmp_path / "s.db")
        store.start(NOW)
        detector = Detector(store, Recorder(), lambda a: [], FixedClock(NOW), on_report=reports.append)
        await detector.load_state()
        try:
            for i, body in enumerate(bodies):
                await store.receive(body, NOW)
                if restart_after is not None and i + 1 == restart_after:
                    while await detector.unpack_once():
                        pass
                    store.close()
                    store = Store(tmp_path / "s.db")
                    store.start(NOW)
                    detector = Detector(store, Recorder(), lambda a: [], FixedClock(NOW), on_report=reports.append)
                    await detector.load_state()
            while await detector.unpack_once():
                pass
            while await detector.run_once():
                pass
        finally:
            store.close()

    asyncio.run(scenario())
    return reports


def counts(reports: list[DetectorReport]) -> tuple[int, int, int]:
    return (sum(r.received for r in reports), sum(r.duplicate for r in reports), sum(r.quarantined for r in reports))


def test_unpacking_stores_events_quarantines_bad_elements_and_ignores_redeliveries(tmp_path: Path) -> None:
    first = delivery(make_event("a"), make_event("b"), extra=[{"uuid": "no-type"}, 42])
    reports = unpack_all(tmp_path, [first, first, delivery(make_event("b"), make_event("c"))])
    assert counts(reports) == (3, 3, 4)  # a, b, c new; a, b, b again; 2 bad elements, twice
    conn = sqlite3.connect(tmp_path / "s.db")
    assert [r[0] for r in conn.execute("SELECT uuid FROM events WHERE evaluated_at IS NOT NULL ORDER BY uuid")] \
        == ["a", "b", "c"]
    # One record per delivery, however many bad elements: their paths, reasons and texts together.
    assert conn.execute("SELECT path, reason, body FROM quarantine ORDER BY id").fetchall() == [
        ("data.events[2].eventType, data.events[3]",
         "data.events[2].eventType: missing; data.events[3]: must be an object, not a number",
         '[{"uuid": "no-type"},42]')] * 2


def test_each_delivery_is_unpacked_once_across_a_restart(tmp_path: Path) -> None:
    bodies = [delivery(make_event(f"e{i}")) for i in range(6)]
    reports = unpack_all(tmp_path, bodies, restart_after=3)
    assert counts(reports) == (6, 0, 0)  # a restart does not unpack the first three again
    assert max(r.unpacked_upto or 0 for r in reports) == 6


def test_a_recreated_inbox_is_not_mistaken_for_one_already_unpacked(tmp_path: Path) -> None:
    unpack_all(tmp_path, [delivery(make_event(f"old{i}")) for i in range(5)])
    inbox_file = inbox_path(tmp_path / "s.db")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{inbox_file}{suffix}").unlink(missing_ok=True)
    # The new inbox numbers its rows from 1 again; the cursor of the old one (5) must not hide them.
    reports = unpack_all(tmp_path, [delivery(make_event("new1")), delivery(make_event("new2"))])
    assert counts(reports) == (2, 0, 0)


def test_a_stored_body_that_cannot_be_parsed_is_quarantined_whole_not_retried(tmp_path: Path) -> None:
    reports = unpack_all(tmp_path, [b"{not json", delivery(make_event("after"))])
    assert counts(reports) == (1, 0, 1)
    conn = sqlite3.connect(tmp_path / "s.db")
    assert conn.execute("SELECT path, body FROM quarantine").fetchone() == ("delivery 1: $", "{not json")


def test_a_delivery_whose_unpacking_raises_anything_is_quarantined_whole_not_retried(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not only a PayloadError: a bug or a limit nobody foresaw must not hold back every later delivery."""
    real: Callable[[bytes], Delivery] = getattr(unpacking_module, "parse_delivery")  # not exported

    def buggy(body: bytes) -> Delivery:
        if b"boom" in body:
            raise ZeroDivisionError("division by zero")
        return real(body)

    monkeypatch.setattr(unpacking_module, "parse_delivery", buggy)
    reports = unpack_all(tmp_path, [delivery(make_event("boom")), delivery(make_event("after"))])
    assert counts(reports) == (1, 0, 1)
    conn = sqlite3.connect(tmp_path / "s.db")
    assert conn.execute("SELECT path, reason FROM quarantine").fetchall() == \
        [("delivery 1: $", "cannot be unpacked: ZeroDivisionError: division by zero")]
    assert [r[0] for r in conn.execute("SELECT uuid FROM events")] == ["after"]


def test_a_delivery_the_store_refuses_is_quarantined_whole_and_the_rest_of_its_batch_stored(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a store failure (that is retried) but rows SQLite will not take: only that delivery is set aside."""
    real: Callable[[bytes], Delivery] = getattr(unpacking_module, "parse_delivery")  # not exported

    def unstorable(body: bytes) -> Delivery:
        parsed = real(body)
        if b"refused" not in body:
            return parsed
        # A lone surrogate cannot be bound as UTF-8 (the parser quarantines those; this stands for any
        # such row it might let through).
        return Delivery(events=(dataclasses.replace(parsed.events[0], uuid="refused-\ud800", source=None),),
                        quarantined=())

    monkeypatch.setattr(unpacking_module, "parse_delivery", unstorable)
    bodies = [delivery(make_event("before")), delivery(make_event("refused")), delivery(make_event("after"))]
    reports = unpack_all(tmp_path, bodies)
    assert counts(reports) == (2, 0, 1)
    conn = sqlite3.connect(tmp_path / "s.db")
    ((path, reason, body),) = conn.execute("SELECT path, reason, body FROM quarantine").fetchall()
    assert (path, reason.split(":")[0]) == ("delivery 2: $", "cannot be stored")
    assert "UnicodeEncodeError" in reason and json.loads(body)["data"]["events"][0]["uuid"] == "refused"
    assert [r[0] for r in conn.execute("SELECT uuid FROM events ORDER BY uuid")] == ["after", "before"]


def test_a_store_failure_is_retried_not_quarantined(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[int], int]:
        store = Store(tmp_path / "s.db")
        store.start(NOW)
        try:
            detector = Detector(store, Recorder(), lambda a: [], FixedClock(NOW))
            await detector.load_state()
            await store.receive(delivery(make_event("x")), NOW)
            real_write = store._write

            async def failing(fn, what="write"):
                raise StoreError("could not persist: disk I/O error")

            store._write = failing  # type: ignore[method-assign]
            with pytest.raises(StoreError):
                await detector.unpack_once()
            store._write = real_write  # type: ignore[method-assign]
            return [await detector.unpack_once(), await detector.unpack_once()], \
                await store._read(lambda c: c.execute("SELECT count(*) FROM quarantine").fetchone()[0])
        finally:
            store.close()

    assert asyncio.run(scenario()) == ([1, 0], 0)


def test_pruning_drops_only_unpacked_deliveries(tmp_path: Path) -> None:
    async def scenario() -> list[int]:
        store = Store(tmp_path / "s.db")
        store.start(NOW)
        try:
            for i in range(4):
                await store.receive(delivery(make_event(f"p{i}")), NOW)
            assert await store.prune_inbox(2) == 2
            return await store._read_inbox(lambda c: [r[0] for r in c.execute("SELECT id FROM received")])
        finally:
            store.close()

    assert asyncio.run(scenario()) == [3, 4]


def test_pruning_the_inbox_does_not_write_out_what_it_deletes(tmp_path: Path) -> None:
    # With secure_delete on (some SQLite builds' default), each deleted body was overwritten with zeros:
    # as many bytes written to the WAL (and copied again by the checkpoint) as intake had appended.
    big = [make_event(f"b{i}", displayMessage="x" * 20_000) for i in range(50)]

    async def scenario() -> tuple[int, int]:
        store = Store(tmp_path / "s.db")
        store.start(NOW)
        try:
            for event in big:
                await store.receive(delivery(event), NOW)
            await store.checkpoint_inbox()  # the WAL starts over with the pruner's first write
            while await store.prune_inbox(len(big)):
                pass
            remaining = await store._read_inbox(lambda c: c.execute("SELECT count(*) FROM received").fetchone()[0])
            # (busy, frames in the WAL, frames checkpointed): the frames are the pages pruning wrote.
            frames = await store._read_inbox(lambda c: c.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])
            page_size = await store._read_inbox(lambda c: c.execute("PRAGMA page_size").fetchone()[0])
            return remaining, frames * page_size
        finally:
            store.close()

    remaining, written = asyncio.run(scenario())
    assert remaining == 0
    assert written < len(big) * 20_000 / 4, written  # the bodies were 1 MB: a fraction of that is written



def failure(uuid: str, ip: str, user: str = "alice@example.com", at: datetime = NOW) -> Event:
    return parse_event(make_event(uuid, published=at.isoformat().replace("+00:00", "Z"), client={"ipAddress": ip},
                                  actor={"alternateId": user, "type": "User"}, outcome={"result": "FAILURE"}))


def test_what_rule_state_lets_go_is_logged_once_per_rule_and_interval_and_exported(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real rules and engine, max_groups 5: every kind the state counts reaches the metrics with its rule,
    and the log has one line per rule and kind per minute, with the count since the last one."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "spray.toml").write_text(spray_rule("spray"))
    evaluator = RuleEvaluator(load_rules([tmp_path / "rules"]), max_groups=5)
    monkeypatch.setattr(engine, "EXACT_DISTINCT_ENTRIES", 10)  # forget repeats after 10, not 2000
    metrics, clock = Metrics(), FixedClock(NOW)
    caplog.set_level(logging.INFO, logger="sentinel.detector")

    def lines(what: str) -> list[str]:
        return [m for r in caplog.records if (m := r.getMessage()).startswith("rule spray: ") and what in m]

    async def scenario() -> None:
        store = Store(tmp_path / "s.db")
        store.start(NOW)
        detector = Detector(store, evaluator, lambda a: ["log"], clock, on_report=lambda r: apply_report(metrics, r))
        await detector.load_state()

        async def evaluate(events: list[Event]) -> None:
            await store.ingest(events, [], NOW)
            assert await detector.run_once() == len(events)

        try:
            for batch in range(3):  # 30 groups into 5: 25 evicted, in three passes 20 s apart
                if batch:
                    clock.advance(timedelta(seconds=20))
                await evaluate([failure(f"b{batch}-{i}", f"10.0.{batch}.{i}") for i in range(10)])
            assert lines("evicted") == ["rule spray: 5 live groups evicted: rule state is full ([rules] max_groups); "
                                        "their windows were lost, so alerts may be missed"]  # 20 more wait
            await evaluate([failure(f"r{i}", "10.0.2.9", user="bob@example.com") for i in range(12)])  # repeats
            clock.advance(timedelta(seconds=21))
            await detector.run_once()  # an idle pass logs what the interval held back
            assert lines("evicted")[1:] == ["rule spray: 20 live groups evicted in the last 61 s: rule state is full "
                                            "([rules] max_groups); their windows were lost, so alerts may be missed"]
            clock.advance(timedelta(hours=3))
            await evaluate([failure("late", "10.9.9.9", at=clock.now())])  # the oldest group's windows ended
            detector.swap(evaluator.successor(RuleSet([replace(r, matcher=lambda data: 1 / 0)
                                                       for r in evaluator.ruleset]), 5), lambda a: ["log"])
            await evaluate([failure("boom", "10.0.0.1")])
        finally:
            store.close()

    asyncio.run(scenario())
    assert len(lines("evicted")) == 2
    assert [lines(what) for what in ("expired", "forgotten", "skipped")] == [
        ["rule spray: 1 groups expired: their windows ended"],
        ["rule spray: 9 pending events forgotten: repeats of a value filled a distinct-count group; the distinct "
         "count is intact, the alert's count is lower"],
        ["rule spray: 1 events skipped: the rule raised while matching (a bug; `sentinel replay` reproduces it)"]]
    exposed = generate_latest(metrics.registry).decode()
    for name, count in [("groups_evicted", 25), ("groups_expired", 1), ("entries_dropped", 9), ("match_errors", 1)]:
        assert f'sentinel_rule_{name}_total{{rule="spray"}} {count}.0' in exposed, name
    assert "sentinel_rule_state_groups_dropped 25.0" in exposed  # the gauge it always had


class OrderRecorder(ScriptedEvaluator):
    """Alerts on every event (ScriptedEvaluator) and records the order it saw them in."""

    def __init__(self) -> None:
        super().__init__()
        self.order: list[str] = []

    def evaluate(self, event: Event, now: datetime) -> list[Alert]:
        self.order.append(event.uuid)
        return super().evaluate(event, now)


@pytest.mark.parametrize("fused", [False, True])
def test_evaluating_as_unpacked_stores_and_alerts_exactly_as_the_pending_way(tmp_path: Path, fused: bool) -> None:
    """unpack_once(evaluate=True) (nothing pending) must leave the store as unpack_once + run_once do:
    the same events, all evaluated, each alert once, in the pending queue's order (published, uuid);
    duplicates inside the batch and events stored before count as duplicates and are not evaluated."""
    recorder = OrderRecorder()
    bodies = [delivery(make_event("c", published="2026-01-01T00:00:03.000Z"),
                       make_event("a", published="2026-01-01T00:00:01.000Z")),
              delivery(make_event("b", published="2026-01-01T00:00:01.000Z"), make_event("old")),
              delivery(make_event("a", published="2026-01-01T00:00:01.000Z"), extra=[{"uuid": 1}])]

    async def scenario() -> tuple[list[DetectorReport], list[tuple[object, ...]]]:
        store = Store(tmp_path / "s.db")
        store.start(NOW)
        reports: list[DetectorReport] = []
        try:
            await store.ingest([parse_event(make_event("old"))], [], NOW)
            detector = Detector(store, recorder, lambda a: ["log"], FixedClock(NOW), on_report=reports.append)
            await detector.load_state()
            assert await detector.run_once() == 1  # "old": stored and pending before
            recorder.order.clear()
            reports.clear()
            for body in bodies:
                await store.receive(body, NOW)
            assert await detector.unpack_once(evaluate=fused) == 3
            while await detector.run_once():
                pass
        finally:
            store.close()
        conn = sqlite3.connect(tmp_path / "s.db")
        rows = conn.execute("SELECT uuid, evaluated_at IS NOT NULL FROM events ORDER BY uuid").fetchall()
        rows += conn.execute("SELECT key, count FROM alerts ORDER BY key").fetchall()
        rows += conn.execute("SELECT count(*) FROM deliveries").fetchall()
        conn.close()
        return reports, rows

    reports, rows = asyncio.run(scenario())
    assert recorder.order == ["a", "b", "c"]
    assert rows == [("a", 1), ("b", 1), ("c", 1), ("old", 1), ("r:a", 1), ("r:b", 1), ("r:c", 1), ("r:old", 1), (4,)]
    assert sum(r.received for r in reports) == 3
    assert sum(r.duplicate for r in reports) == 2
    assert sum(r.quarantined for r in reports) == 1
    assert sum(r.evaluated for r in reports) == 3
    assert len([a for r in reports for a in r.alerts]) == 3


def test_a_pruned_backlog_is_copied_five_times_a_second_and_due_to_start_over_once(tmp_path: Path) -> None:
    """While chunks of a backlog are pruned, the inbox's WAL is copied (and synced) every 0.2 s: one
    copy a second made one large sync that held intake's own fsyncs back (issue 16). Starting the WAL
    over holds intake off, so that stays at most once a second, and once the last chunk is gone."""
    clock = FixedClock(NOW)

    async def scenario() -> list[tuple[float, bool]]:
        store = Store(tmp_path / "s.db")
        store.start(NOW)
        try:
            detector = Detector(store, Recorder(), lambda a: [], clock)
            detector.checkpoint_restart = True
            await detector.load_state()
            for i in range(350):  # 100 rows a chunk: four chunks, the last short
                await store.receive(delivery(make_event(f"c{i}")), NOW)
            while await detector.unpack_once():
                pass
            copies: list[tuple[float, bool]] = []
            real = store.checkpoint_inbox

            async def watched(restart: bool = False, due: bool = True) -> bool:
                assert restart  # as configured: whether it happens is for ``due`` and the WAL's length
                copies.append((round(clock.monotonic(), 1), due))
                return await real(restart, due)

            store.checkpoint_inbox = watched  # type: ignore[method-assign]
            for _ in range(8):
                await detector.prune_once()
                clock.advance(timedelta(seconds=0.1))
            assert await store._read_inbox(lambda c: c.execute("SELECT count(*) FROM received").fetchone()[0]) == 0
            return copies
        finally:
            store.close()

    assert asyncio.run(scenario()) == [(0.0, True), (0.2, False), (0.4, True)]
