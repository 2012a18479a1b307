"""The daemon's dispatchers, one task per configured channel (sentinel/service/dispatch.py): started,
woken when alerts are committed, stopped, and restarted with the channels of a reloaded config."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from sentinel.clock import Clock
from sentinel.config import ChannelSettings, DeliverySettings
from sentinel.delivery.apprise_channel import Channel
from sentinel.service.dispatch import Dispatcher, StormPolicy, start_dispatchers
from sentinel.service.metrics import Metrics
from sentinel.store import Store

DISPATCH_STOP_GRACE_SECONDS = 5.0


class Dispatchers:
    def __init__(self, channels: dict[str, Channel], delivery: DeliverySettings, store: Store, clock: Clock,
                 metrics: Metrics, channel_settings: Mapping[str, ChannelSettings] | None = None) -> None:
        self.channels = channels
        self._delivery = delivery
        self._channel_settings = channel_settings or {}
        self._store = store
        self._clock = clock
        self._metrics = metrics
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.dispatchers: list[Dispatcher] = []
        self.ui_url: str | None = None  # the triage page ([ui] listen), linked from storm digests

    def use(self, channels: dict[str, Channel], delivery: DeliverySettings,
            channel_settings: Mapping[str, ChannelSettings] | None = None) -> None:
        """The channels to send through from the next ``start``."""
        self.channels = channels
        self._delivery = delivery
        self._channel_settings = channel_settings or {}

    def running(self) -> bool:
        return bool(self._tasks)

    def start(self) -> None:
        """One task per channel; pending deliveries left by a previous run are picked up at once."""
        self._stop = asyncio.Event()
        # A fallback that names no channel gets no report rows: nothing would ever send them.
        fallback = self._delivery.fallback_channel
        self.dispatchers, self._tasks = start_dispatchers(
            self.channels, self._store, self._clock, self._stop, budget=self._delivery.retry_budget,
            fallback=fallback if fallback in self.channels else None, metrics=self._metrics,
            # A log channel is a record, not a person's inbox: never storm-controlled.
            storms={name: StormPolicy(c.storm_limit, c.storm_window) for name, c in self._channel_settings.items()
                    if c.kind != "log"},
            send_resolved=[name for name, c in self._channel_settings.items() if c.send_resolved], ui_url=self.ui_url)

    def wake(self) -> None:
        """New deliveries are committed."""
        for dispatcher in self.dispatchers:
            dispatcher.wake()

    async def stop(self) -> None:
        """Let sends in flight finish for a moment, then cancel them: a cancelled delivery stays
        pending in the store and is sent again later, so stopping never waits on a slow channel."""
        self._stop.set()
        if self._tasks:
            _, slow = await asyncio.wait(self._tasks, timeout=DISPATCH_STOP_GRACE_SECONDS)
            for task in slow:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
