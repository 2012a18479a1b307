"""The detector loop: inbox → events (unpacking), then pending events → engine → alerts, deliveries and
state in one transaction.

It reports what it did as a :class:`DetectorReport` instead of touching metrics or dispatchers itself,
so it can run in a process of its own (``sentinel.detector_process``) as well as in the daemon's.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Protocol

from sentinel.clock import Clock
from sentinel.errors import RecordRejected, StoreError
from sentinel.model import Alert, Event, format_timestamp
from sentinel.okta import Delivery
from sentinel.service.detector_batches import credit_ahead, evaluate_in_parts
from sentinel.service.detector_report import DetectorReport, apply_report
from sentinel.service.rule_state_log import RuleStateLog
from sentinel.service.silencing import Silencer
from sentinel.service.unpack_log import log_unpacked
from sentinel.service.unpacking import quarantined_whole, unpack_body
from sentinel.service.waiting import wait_for_any
from sentinel.silences import Silence
from sentinel.store import EvaluationResult, IngestResult, Pruned, Store

__all__ = ["Detector", "DetectorReport", "Evaluator", "apply_report", "sweep_interval"]

log = logging.getLogger("sentinel.detector")
BATCH_SIZE = 500
# The pending queue's order, (published, uuid), as a C getter rather than a lambda per event.
QUEUE_ORDER = attrgetter("published", "uuid")
FUSED = True  # evaluate deliveries as they are unpacked when nothing is pending (see unpack_once)
# Parsed events kept for the detector (a few MB); under a backlog the rest are read from the store.
PARSED_CACHE_LIMIT = 5_000
IDLE_POLL_SECONDS = 1.0
PRUNE_INTERVAL_SECONDS = 1.0
INBOX_COPY_INTERVAL_SECONDS = 0.2  # while a backlog is pruned (see prune_once)
RETRY_AFTER_FAILURE_SECONDS = 2.0
INTAKE_BUSY_SECONDS = 0.1  # intake woke the detector this recently: it is receiving (for yield_seconds)
# Retention sweeps: a hundredth of the retention apart (a short one in tests), at least once a second,
# at most ten minutes apart.
SWEEP_MIN_SECONDS = 1.0
SWEEP_MAX_SECONDS = 600.0


def sweep_interval(retention_period: timedelta) -> float:
    return min(SWEEP_MAX_SECONDS, max(SWEEP_MIN_SECONDS, retention_period.total_seconds() / 100))


# The store failing (disk full, I/O, locked): the only reason to try a delivery again. Anything else
# about one delivery (RecordRejected, or a bug) is that delivery's problem, and it is quarantined.
STORE_FAILURES = (StoreError,)


class Evaluator(Protocol):
    """What the detector needs from the rule engine (see ``sentinel.evaluator``)."""

    def evaluate(self, event: Event, now: datetime) -> list[Alert]: ...

    def take_changes(self) -> tuple[dict[str, str], set[str]]: ...

    def take_rule_counts(self) -> dict[tuple[str, str], int]: ...

    def restore(self, rows: Iterable[tuple[str, str]]) -> None: ...

    @property
    def group_count(self) -> int: ...

    @property
    def dropped_groups(self) -> int: ...


class Detector:
    """Also the main database's housekeeper: it writes events and alerts, so it prunes them too
    (``retention``: None keeps everything), from the same writer thread, between its batches."""

    def __init__(self, store: Store, evaluator: Evaluator, route: Callable[[Alert], Sequence[str]],
                 clock: Clock, on_report: Callable[[DetectorReport], None] | None = None,
                 retention: timedelta | None = None,
                 maintenance: Callable[[datetime], Sequence[Silence]] | None = None) -> None:
        self.store = store
        self.silencer = Silencer(store, clock, maintenance)
        self.evaluator = evaluator
        self.route = route
        self.clock = clock
        self.on_report = on_report
        self.retention = retention
        self._next_sweep = float("-inf")  # the first sweep comes with the first pass
        self._swept = Pruned()
        self._reclaimed = 0
        self._wake = asyncio.Event()
        self._parsed: OrderedDict[str, Event] = OrderedDict()
        self._unpacked_upto = 0
        self._pruned_upto = 0
        self._last_prune = float("-inf")
        self._last_checkpoint = float("-inf")
        self._last_restart = float("-inf")
        self._rule_state_log = RuleStateLog(log)
        # Pacing ([detector] settings, issue 16): see inbox.checkpoint, and the pause in run().
        self.checkpoint_restart = False
        self.yield_seconds = 0.0
        self._woken_at = float("-inf")

    def wake(self) -> None:
        self._wake.set()
        self._woken_at = self.clock.monotonic()

    def _offer(self, events: Iterable[Event]) -> None:
        """Events just unpacked, already parsed. Bounded: past the limit the oldest are dropped and
        simply read back from the store when their turn comes."""
        parsed = self._parsed
        for event in events:
            parsed[event.uuid] = event
        while len(parsed) > PARSED_CACHE_LIMIT:
            parsed.popitem(last=False)

    def swap(self, evaluator: Evaluator, route: Callable[[Alert], Sequence[str]]) -> None:
        """Take a new rule set between batches (reload). Its state is carried over by the caller."""
        self.evaluator = evaluator
        self.route = route

    async def load_state(self) -> None:
        self.evaluator.restore(await self.store.load_rule_state())
        self._unpacked_upto = await self.store.unpacked_upto()

    def _report(self, report: DetectorReport) -> None:
        if report and self.on_report is not None:
            self.on_report(report)

    async def unpack_once(self, evaluate: bool = False) -> int:
        """Move one batch of deliveries from the inbox into events. Returns how many deliveries.

        ``evaluate``: nothing is pending (the caller just emptied the queue), so the batch's new events
        are evaluated first and stored already evaluated, with their alerts and state, in one transaction
        (each event written once instead of pending and then marked: issue 16). If the store refuses that
        transaction the batch goes the pending way, after the engine's state is reloaded."""
        after = self._unpacked_upto
        rows = await self.store.waiting_deliveries(after)
        if not rows:
            return 0
        deliveries = [(received_at, unpack_body(row_id, body)) for row_id, received_at, body in rows]
        last_id = rows[-1][0]
        if evaluate:
            try:
                await self._unpack_evaluated(rows, deliveries, last_id)
                return len(rows)
            except STORE_FAILURES:
                raise
            except Exception:
                log.warning("detector: storing %d deliveries already evaluated failed; stored pending instead",
                            len(rows), exc_info=True)
                await self.load_state()  # the engine ran ahead of what was stored
        try:
            results = await self.store.record_unpacked(last_id, deliveries)
        except STORE_FAILURES:
            raise
        except Exception:
            # Not the store failing but something in one delivery it refuses: store them one at a time,
            # so that only that one is quarantined whole, instead of the batch being retried forever.
            results = [await self._record_alone(row, deliveries, i) for i, row in enumerate(rows)]
        self._unpacked_upto = last_id
        report = DetectorReport(unpacked_upto=last_id)
        self._count_unpacked(report, rows, deliveries, results, offer=True)
        self._report(report)
        return len(rows)

    async def _unpack_evaluated(self, rows: list[tuple[int, str, bytes]], deliveries: list[tuple[str, Delivery]],
                                last_id: int) -> None:
        stored = await self.store.stored_uuids([e.uuid for _, d in deliveries for e in d.events])
        fresh: list[Event] = []
        first_in: dict[str, int] = {}
        for index, (_, delivery) in enumerate(deliveries):
            for event in delivery.events:
                if event.uuid not in stored:  # what INSERT OR IGNORE will take: the first copy of each
                    stored.add(event.uuid)
                    fresh.append(event)
                    first_in[event.uuid] = index
        fresh.sort(key=QUEUE_ORDER)
        now = self.clock.now()
        # A long batch (a System Log page) stores parts ahead, in short transactions: detector_batches.
        last = await evaluate_in_parts(self, fresh, deliveries, first_in, now)
        report = last.report
        report.unpacked_upto = last_id
        silenced = await self.silencer.silenced(last.alerts, last.events, now)
        try:
            results, evaluation = await self.store.record_unpacked_evaluated(
                last_id, deliveries, len(last.events), last.alerts, self.route, last.changes, last.deleted, now,
                silenced)
        except StoreError:
            self._report(report)
            await self.load_state()
            raise
        self._unpacked_upto = last_id
        report.evaluation_seconds.append(self.clock.monotonic() - last.started)
        self._evaluated(report, evaluation, last.alerts, silenced)
        results = credit_ahead(deliveries, results, last.ahead, first_in)
        self._count_unpacked(report, rows, deliveries, results, offer=False)
        self._report(report)

    def _count_unpacked(self, report: DetectorReport, rows: list[tuple[int, str, bytes]],
                        deliveries: list[tuple[str, Delivery]], results: list[IngestResult], offer: bool) -> None:
        for (_, delivery), result in zip(deliveries, results, strict=True):
            report.received += result.new
            report.duplicate += result.duplicate
            report.quarantined += result.quarantined
            if offer and result.all_new:
                # The detector evaluates exactly what was stored; with a duplicate in the batch the
                # stored copy may differ from this one, so it is read back instead.
                self._offer(delivery.events)
        log_unpacked(log, rows, deliveries, results, self.clock.now())

    async def _record_alone(self, row: tuple[int, str, bytes],
                            deliveries: list[tuple[str, Delivery]], index: int) -> IngestResult:
        """Store one delivery in a transaction of its own; if the store refuses it (not a store failure),
        store it quarantined whole instead. ``deliveries[index]`` is replaced by what was stored."""
        row_id, received_at, body = row
        delivery = deliveries[index][1]
        try:
            (result,) = await self.store.record_unpacked(row_id, [(received_at, delivery)])
            self._unpacked_upto = row_id  # committed: a store failure later in the batch must not redo it
            return result
        except STORE_FAILURES:
            raise
        except Exception as e:
            log.exception("okta delivery %d: its events cannot be stored; quarantined whole", row_id)
            whole = quarantined_whole(row_id, body, "$", f"cannot be stored: {type(e).__name__}: {e}")
        deliveries[index] = (received_at, whole)
        (result,) = await self.store.record_unpacked(row_id, [(received_at, whole)])
        self._unpacked_upto = row_id
        return result

    async def prune_once(self) -> int:
        """Delete a chunk of unpacked deliveries from the inbox (once a second, or chunk after chunk while
        some remain) and checkpoint its WAL. The detector does both, on its own core: intake only appends."""
        now = self.clock.monotonic()
        if self._unpacked_upto <= self._pruned_upto or now - self._last_prune < PRUNE_INTERVAL_SECONDS:
            return 0
        self._last_prune = now
        upto = self._unpacked_upto
        try:
            deleted = await self.store.prune_inbox(upto)
            # A copy every INBOX_COPY_INTERVAL_SECONDS while chunks remain, and once the last is deleted
            # (after every chunk, it copied and synced the same freed pages again each time). Each copy is
            # synced: five small syncs a second held intake's own fsyncs back less than one large one.
            # The WAL is started over (which holds intake off) once a second, or sooner when it is long.
            if deleted == 0 or now - self._last_checkpoint >= INBOX_COPY_INTERVAL_SECONDS:
                due = deleted == 0 or now - self._last_restart >= PRUNE_INTERVAL_SECONDS
                self._last_checkpoint = now
                if due:
                    self._last_restart = now
                await self.store.checkpoint_inbox(self.checkpoint_restart, due)
        except (StoreError, RecordRejected) as e:  # housekeeping: try again later
            log.warning("inbox: pruning failed: %s", e)
            return 0
        if deleted == 0:
            self._pruned_upto = upto
        else:
            self._last_prune = float("-inf")  # more to delete: the next chunk at the next pass
        return deleted

    async def expire_once(self) -> int:
        """One step of a retention sweep: a chunk of expired rows, or once none is left, a chunk of free
        pages given back. Returns what it did (0: nothing to do, or not time for a sweep yet)."""
        if self.retention is None or self.clock.monotonic() < self._next_sweep:
            return 0
        cutoff = self.clock.now() - self.retention
        try:
            pruned = await self.store.prune_expired(cutoff)
            reclaimed = 0 if pruned.total else await self.store.reclaim_space()
        except (StoreError, RecordRejected) as e:  # housekeeping: the next sweep tries again
            log.warning("retention: pruning failed: %s", e)
            self._next_sweep = self.clock.monotonic() + sweep_interval(self.retention)
            return 0
        if pruned.total or reclaimed:
            self._swept += pruned
            self._reclaimed += reclaimed
            return pruned.total + reclaimed
        swept = self._swept
        if swept.total or self._reclaimed:
            log.log(logging.INFO if swept.total else logging.DEBUG,
                    "retention: pruned %d events, %d quarantined elements, %d alerts (%d deliveries) stored "
                    "before %s; %d pages given back", swept.events, swept.quarantine, swept.alerts,
                    swept.deliveries, format_timestamp(cutoff), self._reclaimed)
        self._swept, self._reclaimed = Pruned(), 0
        self._next_sweep = self.clock.monotonic() + sweep_interval(self.retention)
        return 0

    async def run_once(self) -> int:
        """Evaluate one batch. Returns how many events were evaluated."""
        self._rule_state_log.flush(self.clock.monotonic())  # what the interval held back, even when idle
        uuids = await self.store.pending_uuids(BATCH_SIZE)
        if not uuids:
            return 0
        # The store decides what is pending and in which order; parsed events handed over by the
        # unpacking only save reading and parsing them again.
        missing = [u for u in uuids if u not in self._parsed]
        fetched = await self.store.events_by_uuid(missing) if missing else {}
        events = [e for e in (self._parsed.pop(u, None) or fetched.get(u) for u in uuids) if e is not None]
        started = self.clock.monotonic()
        route = self.route
        now = self.clock.now()
        report = DetectorReport()
        alerts, changes, deleted = self._evaluate(events, now, report)
        uuids = [e.uuid for e in events]
        silenced = await self.silencer.silenced(alerts, events, now)
        try:
            result = await self.store.record_evaluation(uuids, alerts, route, changes, deleted, now, silenced)
        except StoreError:
            # The in-memory state ran ahead of what was stored: go back to the stored state.
            self._report(report)
            await self.load_state()
            raise
        except Exception:
            # Not the store failing but something in these alerts that cannot be recorded: keep
            # detection going, record the events and state without them, and say so loudly.
            report.errors += 1
            log.exception("detector: recording %d alerts for events %s failed; alerts dropped",
                          len(alerts), ", ".join(uuids[:10]))
            alerts = []
            try:
                result = await self.store.record_evaluation(uuids, [], route, changes, deleted, now)
            except Exception:
                self._report(report)
                await self.load_state()
                raise
        report.evaluation_seconds.append(self.clock.monotonic() - started)
        self._evaluated(report, result, alerts, silenced)
        self._report(report)
        return len(events)

    def _evaluate(self, events: Sequence[Event], now: datetime,
                  report: DetectorReport) -> tuple[list[Alert], dict[str, str], set[str]]:
        """The engine over ``events``: their alerts and the rule-state changes to store with them."""
        evaluator = self.evaluator
        alerts: list[Alert] = []
        for event in events:
            try:
                alerts.extend(evaluator.evaluate(event, now))
            except Exception:
                # One event must never stop detection for all the others (a poison pill): it is
                # marked evaluated, and the log names it so `sentinel replay` can reproduce the bug.
                report.errors += 1
                log.exception("detector: evaluating event %s (%s) failed; skipped", event.uuid, event.event_type)
        changes, deleted = evaluator.take_changes()
        report.rule_state_counts = evaluator.take_rule_counts()
        self._rule_state_log.add(report.rule_state_counts, self.clock.monotonic())
        return alerts, changes, deleted

    def _evaluated(self, report: DetectorReport, result: EvaluationResult, alerts: Sequence[Alert],
                   silenced: Mapping[str, str]) -> None:
        report.evaluated = result.evaluated
        report.groups = self.evaluator.group_count
        report.dropped = self.evaluator.dropped_groups
        if result.new_alerts:
            new_keys = set(result.new_keys)
            made = {a.key: a for a in alerts if a.key in new_keys}.values()
            report.alerts = [(a.rule_id, a.severity.label) for a in made]
            report.silenced = [(a.rule_id, a.severity.label) for a in made if a.key in silenced]
            report.new_alert_ids = list(result.new_alerts)
            log.info("evaluated %d events: %d new alerts (%d silenced), %d updated", result.evaluated,
                     len(result.new_alerts), len(result.silenced), result.updated_alerts)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; a batch in progress is finished first."""
        while not stop.is_set():
            # Cleared before the pass, not after: a wake that arrives during it is not lost.
            self._wake.clear()
            try:
                # Evaluate what is pending before unpacking more: under a backlog, unpacking ahead
                # would push parsed events out of the cache and make them be read back.
                evaluated = await self.run_once()
                # Fewer than a batch evaluated: the queue is empty, so the next deliveries can be
                # evaluated as they are stored.
                unpacked = await self.unpack_once(evaluate=FUSED) if evaluated < BATCH_SIZE else 0
                pruned = await self.prune_once() + await self.expire_once()
            except StoreError as e:
                log.error("detector: %s; retrying in %.0f s", e, RETRY_AFTER_FAILURE_SECONDS)
                await wait_for_any(RETRY_AFTER_FAILURE_SECONDS, stop)
                continue
            except Exception:
                log.exception("detector: unexpected error; retrying")
                await wait_for_any(RETRY_AFTER_FAILURE_SECONDS, stop)
                continue
            if unpacked == 0 and evaluated == 0 and pruned == 0:
                await wait_for_any(IDLE_POLL_SECONDS, self._wake, stop)
            elif self.yield_seconds and self.clock.monotonic() - self._woken_at < INTAKE_BUSY_SECONDS:
                await asyncio.sleep(self.yield_seconds)  # intake is receiving: leave it the disk for a moment

