"""The detector's side of silences: which new alerts a silence or an open maintenance window covers.

Decided once, when the detector makes an alert (wall-clock time), so a silenced alert is stored with what
silenced it and no delivery row: nothing can send it, even after the silence ends. The active silences are
read again at most every ``SILENCE_REFRESH_SECONDS`` (`sentinel silence add` writes from another process);
the matching itself is pure (sentinel.silences)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sentinel.clock import Clock
from sentinel.errors import StoreError
from sentinel.model import Alert, Event
from sentinel.silences import Silence, silencing
from sentinel.store import Store

log = logging.getLogger("sentinel.detector")
# A silence added while the daemon runs takes effect within this, well inside the 5 s the contract promises.
SILENCE_REFRESH_SECONDS = 2.0


class Silencer:
    def __init__(self, store: Store, clock: Clock,
                 maintenance: Callable[[datetime], Sequence[Silence]] | None = None) -> None:
        self.store = store
        self.clock = clock
        # The [[maintenance]] windows open at a time, as silences (from the current settings: reloads apply).
        self.maintenance = maintenance
        self._silences: list[Silence] = []
        self._silences_read = float("-inf")

    async def _silences_at(self, now: datetime) -> list[Silence]:
        """The silences in force (re-read from the store every few seconds) and the open maintenance windows."""
        if self.clock.monotonic() - self._silences_read >= SILENCE_REFRESH_SECONDS:
            try:
                self._silences = await self.store.active_silences(now)
            except StoreError as e:  # keep the last ones read: alerts go on being silenced as they were
                log.warning("silences: reading them failed (%s); using the last ones read", e)
            self._silences_read = self.clock.monotonic()
        windows = self.maintenance(now) if self.maintenance is not None else ()
        return [*self._silences, *windows]

    async def silenced(self, alerts: Sequence[Alert], events: Sequence[Event], now: datetime) -> dict[str, str]:
        """Alert key → what silences it (the first active silence or open window covering it); matchers are
        tested on the alert's events (this batch's, and those of earlier batches a threshold alert carries,
        read back)."""
        if not alerts:
            return {}
        silences = await self._silences_at(now)
        if not silences:
            return {}
        known = {e.uuid: e for e in events}
        wanted = {u for a in alerts for u in a.event_uuids if u not in known}
        if wanted and any(s.matchers for s in silences):
            known.update(await self.store.events_by_uuid(sorted(wanted)))
        # Each event's body read once: Event.data decodes it at each read, and a threshold alert comes again
        # with each event it folds in, carrying up to 100 event uuids.
        bodies: dict[str, Mapping[str, Any]] = {}

        def body(uuid: str) -> Mapping[str, Any]:
            found = bodies.get(uuid)
            if found is None:
                found = bodies[uuid] = known[uuid].data
            return found

        silenced: dict[str, str] = {}
        for alert in alerts:
            data = [body(u) for u in alert.event_uuids if u in known]
            found = silencing(silences, alert, data, now)
            if found is not None:
                silenced[alert.key] = found.label
        return silenced
