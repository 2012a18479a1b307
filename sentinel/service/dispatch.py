"""Dispatchers: one task per channel drains that channel's due deliveries from the outbox.

A slow or dead channel only delays its own deliveries: each channel has its own task, and intake
never waits on any of them. Short retries (seconds) happen inside ``Channel.send`` (tenacity);
longer ones are rows with ``next_attempt_at``, so they survive restarts. Once a delivery has been
failing for longer than the retry budget it is marked dead, logged, counted and queued on the
fallback channel (when one is configured). The order is: send, then record; a crash between the two
re-sends after restart (at least once), but a delivery recorded as sent is never sent again.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

from sentinel.clock import Clock
from sentinel.delivery.apprise_channel import Channel
from sentinel.delivery.redact import REDACTOR
from sentinel.model import Alert, DeliveryOutcome
from sentinel.store import Store
from sentinel.store.deliveries import DueDelivery, due_deliveries, mark_dead, mark_sent, next_due, schedule_retry

log = logging.getLogger("sentinel.dispatch")

POLL_SECONDS = 5.0
FAILURE_PAUSE_SECONDS = 2.0
Pause = Callable[[asyncio.Event, asyncio.Event, float], Awaitable[None]]  # (stop, wake, seconds)


def default_backoff(attempts: int) -> timedelta:
    """Time to the next durable attempt: 30 s doubling to 1 h, with ±20 % jitter so channels spread out."""
    base = min(3600.0, 30.0 * 2 ** max(0, attempts - 1))
    return timedelta(seconds=base * random.uniform(0.8, 1.2))  # noqa: S311 - jitter, not a secret


class Dispatcher:
    def __init__(self, channel: Channel, store: Store, clock: Clock, *, budget: timedelta = timedelta(hours=24),
                 fallback: str | None = None, metrics: Any = None,
                 backoff: Callable[[int], timedelta] = default_backoff, batch: int = 20,
                 poll_seconds: float = POLL_SECONDS, pause: Pause | None = None) -> None:
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
        self.poll_seconds = poll_seconds
        self.pause = pause or _wait
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
        due = await self.store.read(lambda c: due_deliveries(c, self.name, now, self.batch))
        for delivery in due:
            try:
                outcome = await self.channel.send(self._message(delivery))
            except Exception as e:  # a channel bug is this delivery's failed attempt, not a jammed queue
                log.exception("delivery %d: channel %s raised", delivery.id, self.name)
                outcome = DeliveryOutcome(ok=False, detail=f"{self.name}: error {type(e).__name__}")
            await self._record(delivery, outcome)
        return len(due)

    def _message(self, delivery: DueDelivery) -> Alert:
        if self.is_fallback and delivery.dead_channels:
            # The fallback channel reports what could not be delivered elsewhere.
            undelivered = ", ".join(delivery.dead_channels)
            return replace(delivery.alert, title=f"Undelivered to {undelivered}: {delivery.alert.title}")
        return delivery.alert

    async def _record(self, delivery: DueDelivery, outcome: DeliveryOutcome) -> None:
        at = self.clock.now()
        detail = REDACTOR(outcome.detail)
        if outcome.ok:
            await self.store.write(lambda c: mark_sent(c, delivery.id, at, detail))
            self._count("sent")
            log.info("delivery %d: alert %d sent to %s", delivery.id, delivery.alert_id, self.name)
            return
        expired = at - delivery.created_at >= self.budget
        if expired or not outcome.retryable:
            await self.store.write(lambda c: mark_dead(c, delivery.id, detail, at, self.fallback))
            self._count("dead")
            if self.metrics is not None:
                self.metrics.dead_deliveries.labels(channel=self.name).inc()
            reason = "retry budget spent" if expired else "permanent failure"
            log.error("delivery %d: alert %d to %s is dead (%s after %d attempts): %s%s", delivery.id,
                      delivery.alert_id, self.name, reason, delivery.attempts + 1, detail,
                      f"; reported on {self.fallback}" if self.fallback else "")
            return
        next_at = at + self.backoff(delivery.attempts + 1)
        await self.store.write(lambda c: schedule_retry(c, delivery.id, detail, next_at, at))
        self._count("retry")
        log.warning("delivery %d: alert %d to %s failed (attempt %d), next try %s: %s", delivery.id,
                    delivery.alert_id, self.name, delivery.attempts + 1, next_at.isoformat(), detail)

    def _count(self, status: str) -> None:
        if self.metrics is not None:
            self.metrics.deliveries.labels(channel=self.name, status=status).inc()

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set. Never raises: a store or channel error pauses, then retries."""
        while not stop.is_set():
            self._wake.clear()
            try:
                if await self.run_once():
                    continue
                upcoming = await self.store.read(lambda c: next_due(c, self.name))
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
    waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())}
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


def start_dispatchers(channels: dict[str, Channel], store: Store, clock: Clock, stop: asyncio.Event, *,
                      budget: timedelta, fallback: str | None, metrics: Any = None,
                      ) -> tuple[list[Dispatcher], list[asyncio.Task[None]]]:
    """One dispatcher task per channel. Call ``d.wake()`` on each when new deliveries are committed."""
    dispatchers = [Dispatcher(ch, store, clock, budget=budget,
                              fallback=fallback if fallback in channels else None, metrics=metrics)
                   for ch in channels.values()]
    tasks = [asyncio.create_task(d.run(stop), name=f"dispatch-{d.name}") for d in dispatchers]
    return dispatchers, tasks
