"""The daemon watching itself every few seconds: the gauges that come from the store, the store's
write check while it fails, and the feed's silence (the pure decision is sentinel/service/monitor.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from sentinel.clock import Clock
from sentinel.config import Settings
from sentinel.delivery.routing import route
from sentinel.model import Alert, parse_timestamp
from sentinel.service.detector_runner import DetectorRunner
from sentinel.service.dispatchers import Dispatchers
from sentinel.service.health import Health
from sentinel.service.metrics import Metrics
from sentinel.service.monitor import feed_alert, poll_alert
from sentinel.service.poller import PollStatus
from sentinel.service.waiting import wait_for_any
from sentinel.store import MonitorSnapshot, Store

log = logging.getLogger("sentinel.service")
MONITOR_INTERVAL_SECONDS = 5.0


class Monitor:
    def __init__(self, settings: Settings, store: Store, metrics: Metrics, health: Health,
                 detector: DetectorRunner, dispatchers: Dispatchers, clock: Clock) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.health = health
        self.detector = detector
        self.dispatchers = dispatchers
        self.clock = clock
        self._unpacked_upto = 0
        self._silent_since: datetime | None = None
        self.poll_status: PollStatus | None = None  # the System Log poller's, when it runs
        self._poll_behind_since: datetime | None = None

    def use(self, settings: Settings) -> None:
        """A reloaded config: its silence limit and channels from the next pass."""
        self.settings = settings

    async def load(self) -> None:
        """Where the inbox's unpacking stands (the backlog is counted from there)."""
        self._unpacked_upto = await self.store.unpacked_upto()

    def unpacked(self, upto: int) -> None:
        """The detector reported inbox rows up to ``upto`` in the main database."""
        self._unpacked_upto = max(self._unpacked_upto, upto)

    async def inbox_waiting(self) -> int:
        """Deliveries in the inbox the detector has not unpacked yet (the System Log poller's pace)."""
        return await self.store.inbox_waiting(self._unpacked_upto)

    async def queues(self) -> MonitorSnapshot:
        """The queues' state now (for the triage page's health view)."""
        return await self.store.monitor_snapshot(list(self.dispatchers.channels), self._unpacked_upto)

    def _route(self, alert: Alert) -> Sequence[str]:
        return route(alert, self.settings.channels)

    async def run(self, stop: asyncio.Event) -> None:
        """Refresh the gauges that come from the store, and watch the feed for silence."""
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception as e:  # monitoring must never take the daemon down
                log.warning("monitor: %s", e)
            await wait_for_any(MONITOR_INTERVAL_SECONDS, stop)

    async def run_once(self) -> None:
        now = self.clock.now()
        if not self.health.store_check_ok:  # keep sentinel_ready{check="store"} current without /readyz
            await self.health.check_store()
        queues = await self.queues()
        self.metrics.events_pending.set(queues.pending_events)
        self.metrics.inbox_pending.set(queues.inbox_waiting)
        self.metrics.detector_up.set(1 if self.detector.running() else 0)
        self.metrics.detector_restarts.set(self.detector.restarts)
        # The oldest of either queue: an event waits first in the inbox, then as a pending event.
        oldest = min((t for t in (queues.oldest_pending, queues.oldest_in_inbox) if t), default=None)
        last = max((t for t in (queues.last_received, queues.last_in_inbox) if t), default=None)
        self.metrics.oldest_pending_age.set((now - parse_timestamp(oldest)).total_seconds() if oldest else 0)
        for channel, count in queues.dead_deliveries.items():
            self.metrics.dead_deliveries.labels(channel).set(count)
        if last is not None:
            self.metrics.last_event_time.set(parse_timestamp(last).timestamp())
        await self._watch_feed(parse_timestamp(last) if last else None, now)
        await self._resolve_quiet(now)
        await self._watch_poll(now)

    def _resolving_channels(self) -> list[str]:
        """Channels that take a resolve: a PagerDuty URL among theirs, or send_resolved = true."""
        return [name for name, c in self.settings.channels.items()
                if c.send_resolved or any(u.reveal().lower().startswith("pagerduty") for u in c.urls)]

    async def _resolve_quiet(self, now: datetime) -> None:
        resolved = await self.store.resolve_quiet(now, self._resolving_channels())
        if resolved:
            log.info("resolve_after: %d alert group(s) quiet long enough, resolved (alerts %s)", len(resolved),
                     ", ".join(map(str, resolved[:10])))
            self.dispatchers.wake()

    async def _watch_feed(self, last: datetime | None, now: datetime) -> None:
        minutes = self.settings.monitor.feed_silence_minutes
        if minutes <= 0:
            return
        alert, self._silent_since = feed_alert(last, self._silent_since, now, timedelta(minutes=minutes))
        if alert is not None:
            log.warning("%s", alert.title)
            await self.store.record_evaluation([], [alert], self._route, {}, set(), now)
            self.dispatchers.wake()

    async def _watch_poll(self, now: datetime) -> None:
        """The poller failing or lagging past ``[okta.api] max_lag_seconds``: an alert, and one when it recovers."""
        status, api = self.poll_status, self.settings.okta_api
        if status is None or api is None:
            return
        alert, self._poll_behind_since = poll_alert(status.current_until, status.last_error,
                                                    self._poll_behind_since, now,
                                                    timedelta(seconds=api.max_lag_seconds))
        if alert is not None:
            log.warning("%s", alert.title)
            await self.store.record_evaluation([], [alert], self._route, {}, set(), now)
            self.dispatchers.wake()
