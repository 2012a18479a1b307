"""Dispatchers: one task per channel drains that channel's due deliveries from the outbox.

A slow or dead channel only delays its own deliveries: each channel has its own task, and intake
never waits on any of them. Short retries (seconds) happen inside ``Channel.send`` (tenacity);
longer ones are rows with ``next_attempt_at``, so they survive restarts. Once a delivery has been
failing for longer than the retry budget it is marked dead, logged, counted and queued on the
fallback channel (when one is configured). The order is: send, then record; a crash between the two
re-sends after restart (at least once), but a delivery recorded as sent is never sent again. Recording
an attempt's outcome is retried until the store takes it (the detector process writes the same file and
may hold its lock longer than our busy timeout): a "sent" lost to a lock timeout would send the alert again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sentinel import redaction
from sentinel.clock import Clock
from sentinel.delivery.apprise_channel import Channel
from sentinel.errors import StoreError
from sentinel.model import Alert, DeliveryOutcome, Severity
from sentinel.render.digest import digest_alert
from sentinel.service.waiting import wait_for_any
from sentinel.store import DueDelivery, Store
from sentinel.store.storm import DIGEST_RULE

log = logging.getLogger("sentinel.dispatch")

POLL_SECONDS = 5.0
FAILURE_PAUSE_SECONDS = 2.0
# Recording an outcome the store refused: again after 50 ms, doubling to 2 s, until it lands.
RECORD_RETRY_FIRST_SECONDS = 0.05
RECORD_RETRY_MAX_SECONDS = 2.0
# A stop or reload waits this long for an outcome still being recorded (within systemd's TimeoutStopSec).
RECORD_ON_STOP_SECONDS = 10.0
Pause = Callable[[asyncio.Event, asyncio.Event, float], Awaitable[None]]  # (stop, wake, seconds)


@dataclass(frozen=True)
class StormPolicy:
    """A channel's storm control: past ``limit`` alerts sent within ``window``, the rest wait in one digest
    sent when the window ends (critical alerts, digests, resolve notes and fallback reports never wait)."""

    limit: int
    window: timedelta


def default_backoff(attempts: int) -> timedelta:
    """Time to the next durable attempt: 30 s doubling to 1 h, with ±20 % jitter so channels spread out."""
    base = min(3600.0, 30.0 * 2 ** max(0, attempts - 1))
    return timedelta(seconds=base * random.uniform(0.8, 1.2))  # noqa: S311 - jitter, not a secret


class LiveFirst:
    """Live alerts before a back-fill's across channels: a dispatcher with only back-filled deliveries due
    waits while another channel sends live ones (they share the daemon's CPU: a log channel writing a
    back-fill's thousands of alerts slowed a chat channel's live alerts by seconds). Bounded wait: a
    channel that keeps receiving live alerts cannot hold a back-fill back for more than ``MAX_WAIT``."""

    MAX_WAIT_SECONDS = 1.0

    def __init__(self) -> None:
        self._sending: dict[str, int] = {}
        self._idle = asyncio.Event()
        self._idle.set()

    @contextlib.contextmanager
    def sending(self, channel: str) -> Iterator[None]:
        self._sending[channel] = self._sending.get(channel, 0) + 1
        self._idle.clear()
        try:
            yield
        finally:
            self._sending[channel] -= 1
            if not self._sending[channel]:
                del self._sending[channel]
            if not self._sending:
                self._idle.set()

    async def wait_for_others(self, channel: str) -> bool:
        """Wait while other channels send live alerts; True if it waited."""
        if not any(name != channel for name in self._sending):
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), self.MAX_WAIT_SECONDS)
        return True


class Dispatcher:
    def __init__(self, channel: Channel, store: Store, clock: Clock, *, budget: timedelta = timedelta(hours=24),
                 fallback: str | None = None, metrics: Any = None,
                 backoff: Callable[[int], timedelta] = default_backoff, batch: int = 20,
                 poll_seconds: float = POLL_SECONDS, pause: Pause | None = None,
                 storm: StormPolicy | None = None, ui_url: str | None = None, send_resolved: bool = False,
                 live: LiveFirst | None = None) -> None:
        """``pause(stop, wake, seconds)`` is the wait between turns of ``run`` (the event loop's time by
        default); tests give one that moves their FixedClock instead of sleeping."""
        self.channel = channel
        self.store = store
        self.clock = clock
        self.budget = budget
        self.is_fallback = fallback == channel.name
        self.fallback = None if self.is_fallback else fallback
        self.metrics = metrics
        self.backoff = backoff
        self.batch = batch
        self.live = live or LiveFirst()  # shared by the daemon's dispatchers (start_dispatchers)
        self.poll_seconds = poll_seconds
        self.pause = pause or _wait
        self.storm = storm if storm is not None and storm.limit > 0 else None
        self.ui_url = ui_url  # the triage page's base URL, for the digest's link
        self.send_resolved = send_resolved  # resolve notes to non-PagerDuty destinations too
        self._wake = asyncio.Event()

    @property
    def name(self) -> str:
        return self.channel.name

    def wake(self) -> None:
        """New deliveries may be waiting (called by the detector after it commits alerts)."""
        self._wake.set()

    async def run_once(self) -> int:
        """Attempt every due delivery of this channel once. Returns how many were attempted."""
        now = self.clock.now()
        limit = self.batch
        due = await self.store.due_deliveries(self.name, now, limit)
        if due and due[0].backfilled and await self.live.wait_for_others(self.name):
            now = self.clock.now()  # once per batch: a back-fill waits at most LiveFirst.MAX_WAIT_SECONDS
            due = await self.store.due_deliveries(self.name, now, limit)
        live = [d for d in due if not d.backfilled]  # first (the store's order too); a back-fill's after
        attempted = 0
        if live:
            with self.live.sending(self.name):
                attempted = await self._attempt(live, now)
        backfilled = [d for d in due if d.backfilled]
        return attempted + (await self._attempt(backfilled, now, yield_to_new=True) if backfilled else 0)

    async def _attempt(self, due: list[DueDelivery], now: datetime, yield_to_new: bool = False) -> int:
        """Send (or hold) each delivery, in order. ``yield_to_new`` (a back-fill's batch): stop early once
        new alerts are committed (``wake``), so that a live one waits for one send, not the rest of the batch
        (measured: a live alert 95-150 ms late behind 20 back-filled Apprise sends). Returns how many were
        attempted: at least one of a non-empty ``due``, so a back-fill always moves on."""
        room = await self._storm_room(now)
        for attempted, delivery in enumerate(due):
            if yield_to_new and attempted and self._wake.is_set():
                return attempted  # ``run`` turns again at once, live deliveries first
            if room is not None and self._may_wait(delivery):
                if room <= 0:
                    await self._hold(delivery, now)
                    continue
                room -= 1
            # Each send is recorded before the next one starts, one at a time, in every channel: a crash
            # then resends at most the one in flight (tests/test_proof_crash.py holds this). Overlapping
            # sends and records (1cc5325), or writing 500 to the log channel before recording them
            # (c5536e8), let one kill resend a whole batch; with an ordinary day's back-fill (1.5 alerts a
            # hundred events) one at a time keeps up.
            await self._record(delivery, await self._send_one(delivery))
        return len(due)

    async def _send_one(self, delivery: DueDelivery) -> DeliveryOutcome:
        try:
            if delivery.kind == "resolve":
                return await self.channel.resolve(delivery.alert, self.send_resolved)
            return await self.channel.send(await self._message(delivery))
        except Exception as e:  # a channel bug is this delivery's failed attempt, not a jammed queue
            log.exception("delivery %d: channel %s raised", delivery.id, self.name)
            return DeliveryOutcome(ok=False, detail=f"{self.name}: error {type(e).__name__}")

    async def _storm_room(self, now: datetime) -> int | None:
        """How many more alerts this channel may send now before a storm digest takes the rest (None: no
        storm control)."""
        if self.storm is None:
            return None
        return self.storm.limit - await self.store.sent_since(self.name, now - self.storm.window)

    def _may_wait(self, delivery: DueDelivery) -> bool:
        """Whether storm control may hold this delivery back: never a critical alert, a digest, a resolve
        note or a fallback report of a dead delivery."""
        alert = delivery.alert
        return (alert.severity < Severity.CRITICAL and alert.rule_id != DIGEST_RULE and delivery.kind == "alert"
                and not (self.is_fallback and delivery.dead_channels))

    async def _hold(self, delivery: DueDelivery, at: datetime) -> None:
        assert self.storm is not None
        window = self.storm.window
        await self._until_recorded(delivery, "digested",
                                   lambda: self._held(self.store.hold_for_digest(delivery.id, self.name, at, window)))
        self._count("digested")
        log.info("delivery %d: alert %d to %s held back in the storm digest", delivery.id, delivery.alert_id,
                 self.name)

    @staticmethod
    async def _held(holding: Awaitable[int | None]) -> bool:
        return await holding is not None

    async def _message(self, delivery: DueDelivery) -> Alert:
        if delivery.alert.rule_id == DIGEST_RULE:
            held = await self.store.digest_contents(delivery.alert_id)
            window = self.storm.window if self.storm is not None else timedelta(0)
            return digest_alert(delivery.alert, held, self.name, window, self.ui_url)
        if self.is_fallback and delivery.dead_channels:
            # The fallback channel reports what could not be delivered elsewhere.
            undelivered = ", ".join(delivery.dead_channels)
            return replace(delivery.alert, title=f"Undelivered to {undelivered}: {delivery.alert.title}")
        return delivery.alert

    async def _record(self, delivery: DueDelivery, outcome: DeliveryOutcome) -> None:
        at = self.clock.now()
        detail = redaction.redact(outcome.detail)
        if outcome.ok:
            await self._until_recorded(delivery, "sent", lambda: self.store.mark_sent(delivery.id, at, detail))
            self._count("sent")
            log.info("delivery %d: alert %d sent to %s", delivery.id, delivery.alert_id, self.name)
            return
        expired = at - delivery.created_at >= self.budget
        if expired or not outcome.retryable:
            await self._until_recorded(delivery, "dead",
                                       lambda: self.store.mark_dead(delivery.id, detail, at, self.fallback))
            self._count("dead")
            if self.metrics is not None:
                self.metrics.dead_deliveries.labels(channel=self.name).inc()
            reason = "retry budget spent" if expired else "permanent failure"
            log.error("delivery %d: alert %d to %s is dead (%s after %d attempts): %s%s", delivery.id,
                      delivery.alert_id, self.name, reason, delivery.attempts + 1, detail,
                      f"; reported on {self.fallback}" if self.fallback else "")
            return
        next_at = at + self.backoff(delivery.attempts + 1)
        await self._until_recorded(delivery, "to retry",
                                   lambda: self.store.schedule_retry(delivery.id, detail, next_at, at))
        self._count("retry")
        log.warning("delivery %d: alert %d to %s failed (attempt %d), next try %s: %s", delivery.id,
                    delivery.alert_id, self.name, delivery.attempts + 1, next_at.isoformat(), detail)

    async def _until_recorded(self, delivery: DueDelivery, outcome: str,
                              record: Callable[[], Awaitable[object]]) -> None:
        """The attempt happened: its record must land, or the delivery would be attempted (sent) again.
        A store failure (locked by the detector's commit, disk full) is waited out, however long. A stop
        or reload that cancels us meanwhile still gives the record ``RECORD_ON_STOP_SECONDS`` to land;
        only a store failing for longer than that can have the delivery sent again (at least once)."""
        recording = asyncio.ensure_future(self._record_until_stored(delivery, outcome, record))
        try:
            await asyncio.shield(recording)
        except asyncio.CancelledError:
            done, _ = await asyncio.wait({recording}, timeout=RECORD_ON_STOP_SECONDS)
            if not done:
                recording.cancel()
                log.error("delivery %d: stopping before it could be recorded %s; it may be sent again",
                          delivery.id, outcome)
            raise

    @staticmethod
    async def _record_until_stored(delivery: DueDelivery, outcome: str,
                                   record: Callable[[], Awaitable[object]]) -> None:
        pause = RECORD_RETRY_FIRST_SECONDS
        failures = 0
        while True:
            try:
                await record()
            except StoreError as e:
                failures += 1
                if failures == 1 or pause >= RECORD_RETRY_MAX_SECONDS:
                    log.warning("delivery %d: recording it %s failed (%s); trying again", delivery.id, outcome, e)
                await asyncio.sleep(pause)
                pause = min(RECORD_RETRY_MAX_SECONDS, pause * 2)
                continue
            if failures:
                log.info("delivery %d: recorded %s after %d failed tries", delivery.id, outcome, failures)
            return

    def _count(self, status: str, n: int = 1) -> None:
        if self.metrics is not None:
            self.metrics.deliveries.labels(channel=self.name, status=status).inc(n)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set. Never raises: a store or channel error pauses, then retries."""
        while not stop.is_set():
            self._wake.clear()
            try:
                if await self.run_once():
                    continue
                upcoming = await self.store.next_due(self.name)
            except Exception:
                log.exception("dispatcher %s: unexpected error; retrying shortly", self.name)
                await self.pause(stop, self._wake, FAILURE_PAUSE_SECONDS)
                continue
            pause = self.poll_seconds
            if upcoming is not None:
                pause = max(0.0, min(pause, (upcoming - self.clock.now()).total_seconds()))
            await self.pause(stop, self._wake, pause)


async def _wait(stop: asyncio.Event, wake: asyncio.Event, seconds: float) -> None:
    """Sleep up to ``seconds``, ending early when stopped or woken."""
    await wait_for_any(seconds, stop, wake)


def start_dispatchers(channels: dict[str, Channel], store: Store, clock: Clock, stop: asyncio.Event, *,
                      budget: timedelta, fallback: str | None, metrics: Any = None,
                      storms: Mapping[str, StormPolicy] | None = None, ui_url: str | None = None,
                      send_resolved: Collection[str] = (),
                      ) -> tuple[list[Dispatcher], list[asyncio.Task[None]]]:
    """One dispatcher task per channel. Call ``d.wake()`` on each when new deliveries are committed."""
    storms = storms or {}
    live = LiveFirst()
    dispatchers = [Dispatcher(ch, store, clock, budget=budget,
                              fallback=fallback if fallback in channels else None, metrics=metrics,
                              storm=storms.get(name), ui_url=ui_url, send_resolved=name in send_resolved, live=live)
                   for name, ch in channels.items()]
    tasks = [asyncio.create_task(d.run(stop), name=f"dispatch-{d.name}") for d in dispatchers]
    return dispatchers, tasks
