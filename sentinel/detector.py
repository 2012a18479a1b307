"""The detector loop: pending events → engine → alerts, deliveries and state in one transaction."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Protocol

from sentinel.clock import Clock
from sentinel.errors import StoreError
from sentinel.metrics import Metrics
from sentinel.model import Alert, Event
from sentinel.store import Store
from sentinel.store.alerts import load_rule_state, record_evaluation
from sentinel.store.events import events_by_uuid, pending_uuids

log = logging.getLogger("sentinel.detector")
BATCH_SIZE = 500
# Parsed events kept for the detector (a few MB); under a backlog the rest are read from the store.
PARSED_CACHE_LIMIT = 5_000
IDLE_POLL_SECONDS = 1.0
RETRY_AFTER_FAILURE_SECONDS = 2.0


class Evaluator(Protocol):
    """What the detector needs from the rule engine (see ``sentinel.evaluator``)."""

    def evaluate(self, event: Event, now: datetime) -> list[Alert]: ...

    def take_changes(self) -> tuple[dict[str, str], set[str]]: ...

    def restore(self, rows: Iterable[tuple[str, str]]) -> None: ...

    @property
    def group_count(self) -> int: ...

    @property
    def dropped_groups(self) -> int: ...


class Detector:
    def __init__(self, store: Store, evaluator: Evaluator, route: Callable[[Alert], Sequence[str]],
                 clock: Clock, metrics: Metrics, on_alerts: Callable[[list[int]], None] | None = None) -> None:
        self.store = store
        self.evaluator = evaluator
        self.route = route
        self.clock = clock
        self.metrics = metrics
        self.on_alerts = on_alerts
        self._wake = asyncio.Event()
        self._parsed: OrderedDict[str, Event] = OrderedDict()

    def wake(self) -> None:
        self._wake.set()

    def offer(self, events: Iterable[Event]) -> None:
        """Events just committed by intake, already parsed. Bounded: past the limit the oldest are
        dropped and simply read back from the store when their turn comes."""
        parsed = self._parsed
        for event in events:
            parsed[event.uuid] = event
        while len(parsed) > PARSED_CACHE_LIMIT:
            parsed.popitem(last=False)
        self._wake.set()

    def swap(self, evaluator: Evaluator, route: Callable[[Alert], Sequence[str]]) -> None:
        """Take a new rule set between batches (reload). Its state is carried over by the caller."""
        self.evaluator = evaluator
        self.route = route

    async def load_state(self) -> None:
        self.evaluator.restore(await self.store.read(load_rule_state))

    async def run_once(self) -> int:
        """Evaluate one batch. Returns how many events were evaluated."""
        uuids = await self.store.read(lambda conn: pending_uuids(conn, BATCH_SIZE))
        if not uuids:
            return 0
        # The store decides what is pending and in which order; parsed events handed over by intake
        # only save reading and parsing them again.
        missing = [u for u in uuids if u not in self._parsed]
        fetched = await self.store.read(lambda conn: events_by_uuid(conn, missing)) if missing else {}
        events = [e for e in (self._parsed.pop(u, None) or fetched.get(u) for u in uuids) if e is not None]
        started = self.clock.monotonic()
        evaluator, route = self.evaluator, self.route
        now = self.clock.now()
        alerts: list[Alert] = []
        for event in events:
            try:
                alerts.extend(evaluator.evaluate(event, now))
            except Exception:
                # One event must never stop detection for all the others (a poison pill): it is
                # marked evaluated, and the log names it so `sentinel replay` can reproduce the bug.
                self.metrics.evaluation_errors.inc()
                log.exception("detector: evaluating event %s (%s) failed; skipped", event.uuid, event.event_type)
        changes, deleted = evaluator.take_changes()
        uuids = [e.uuid for e in events]
        try:
            result = await self.store.write(
                lambda conn: record_evaluation(conn, uuids, alerts, route, changes, deleted, now))
        except StoreError:
            # The in-memory state ran ahead of what was stored: go back to the stored state.
            await self.load_state()
            raise
        except Exception:
            # Not the store failing but something in these alerts that cannot be recorded: keep
            # detection going, record the events and state without them, and say so loudly.
            self.metrics.evaluation_errors.inc()
            log.exception("detector: recording %d alerts for events %s failed; alerts dropped",
                          len(alerts), ", ".join(uuids[:10]))
            alerts = []
            try:
                result = await self.store.write(
                    lambda conn: record_evaluation(conn, uuids, [], route, changes, deleted, now))
            except Exception:
                await self.load_state()
                raise
        self.metrics.evaluation_seconds.observe(self.clock.monotonic() - started)
        self.metrics.events_evaluated.inc(result.evaluated)
        self.metrics.rule_state_groups.set(evaluator.group_count)
        self.metrics.rule_state_dropped.set(evaluator.dropped_groups)
        if result.new_alerts:
            new_keys = set(result.new_keys)
            for alert in {a.key: a for a in alerts if a.key in new_keys}.values():
                self.metrics.alerts.labels(alert.rule_id, alert.severity.label).inc()
            log.info("evaluated %d events: %d new alerts, %d updated", result.evaluated,
                     len(result.new_alerts), result.updated_alerts)
            if self.on_alerts is not None:
                self.on_alerts(result.new_alerts)
        return len(events)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; a batch in progress is finished first."""
        while not stop.is_set():
            try:
                evaluated = await self.run_once()
            except StoreError as e:
                log.error("detector: %s; retrying in %.0f s", e, RETRY_AFTER_FAILURE_SECONDS)
                await _wait(stop, RETRY_AFTER_FAILURE_SECONDS)
                continue
            except Exception:
                log.exception("detector: unexpected error; retrying")
                await _wait(stop, RETRY_AFTER_FAILURE_SECONDS)
                continue
            if evaluated == 0:
                self._wake.clear()
                waiter = asyncio.ensure_future(self._wake.wait())
                stopper = asyncio.ensure_future(stop.wait())
                await asyncio.wait({waiter, stopper}, timeout=IDLE_POLL_SECONDS,
                                   return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass
