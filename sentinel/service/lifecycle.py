"""The daemon's start and stop: the parts the CLI composed, brought up and down in order.

Start: store (migrations) → monitor's inbox position → detector (state loaded) → dispatchers → monitor →
System Log poller (if configured).
Stop: the poller (a page in flight is not stored; its cursor neither), finish the current batch, stop the
loops, close the store; pending work stays stored.
"""

from __future__ import annotations

import asyncio
import logging

from sentinel.clock import Clock
from sentinel.service import systemd
from sentinel.service.detector_runner import DetectorRunner
from sentinel.service.dispatchers import Dispatchers
from sentinel.service.health import Health
from sentinel.service.monitor_loop import Monitor
from sentinel.service.poller import Poller
from sentinel.store import Store

log = logging.getLogger("sentinel.service")


class Lifecycle:
    def __init__(self, store: Store, health: Health, detector: DetectorRunner, dispatchers: Dispatchers,
                 monitor: Monitor, clock: Clock, poller: Poller | None = None) -> None:
        self._store = store
        self._health = health
        self._detector = detector
        self._dispatchers = dispatchers
        self._monitor = monitor
        self._clock = clock
        self._stop = asyncio.Event()
        self._monitor_task: asyncio.Task[None] | None = None
        self._poller = poller
        self._poller_stop = asyncio.Event()
        self._poller_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        applied = self._store.start(self._clock.now())
        if applied:
            log.info("store %s: applied migrations %s", self._store.path, applied)
        self._health.store_ok = True
        await self._monitor.load()
        self._health.rule_count = await self._detector.start()
        self._health.rules_loaded = True
        self._dispatchers.start()
        self._monitor_task = asyncio.create_task(self._monitor.run(self._stop), name="monitor")
        if self._poller is not None:
            self._poller_task = asyncio.create_task(self._poller.run(self._poller_stop), name="poller")

    def healthy(self) -> bool:
        """For the systemd watchdog: the loop runs (we are called from it), the writer threads live, and
        the detector runs (or is about to be restarted)."""
        monitor_ok = self._monitor_task is None or not self._monitor_task.done()
        poller_ok = self._poller_task is None or not self._poller_task.done()
        return self._store.healthy() and self._detector.healthy() and monitor_ok and poller_ok

    async def stop(self) -> None:
        """Finish the current batch, stop the loops, close the store; pending work stays stored."""
        systemd.stopping("finishing the current batch")
        self._stop.set()
        if self._poller_task is not None:
            # Cancelled mid-request or mid-commit: a page's last part and its cursor commit together or not at all.
            self._poller_stop.set()
            self._poller_task.cancel()
            await asyncio.gather(self._poller_task, return_exceptions=True)
            self._poller_task = None
        await self._dispatchers.stop()
        await self._detector.stop()
        if self._monitor_task is not None:
            await asyncio.gather(self._monitor_task, return_exceptions=True)
            self._monitor_task = None
        self._store.close()
