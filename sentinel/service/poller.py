"""The System Log poller: the daemon's main process reading Okta's ``/api/v1/logs`` the way Okta documents it
(docs/okta-system-log-api.md §1.2, §5.11), into the inbox beside the hook deliveries.

- One polling request (no ``until``, ascending, ``limit=1000``), then its ``rel="next"`` links verbatim.
- Each page goes into the inbox in parts (``PAGE_PART_EVENTS``), the next link committed with the last
  part (store/poll_cursor.py): a restart never skips a page, and reads again at most the page it was
  storing. The detector unpacks each part like a hook delivery and dedupes on ``uuid``, so an event seen
  twice (by the hook and the poller, or in a page read again) is stored and alerted once.
- Caught up (an empty page, next equal to self, or a short page): sleep ``poll_interval_seconds``.
- First start: from ``backfill_hours`` ago. A cursor Okta refuses (400): a bounded read from the newest
  polled ``published`` minus ``CURSOR_OVERLAP``, then polling again from where that read ended (logged).
- Only the event types the rules read (``rules/sources.py``), re-read before each request: a change of
  rules starts a new polling request from the newest polled ``published`` minus the overlap.
- Here, not in the detector process: this process holds the API credential.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sentinel.clock import Clock
from sentinel.config import OktaApiSettings
from sentinel.errors import StoreError
from sentinel.model import format_timestamp, parse_timestamp
from sentinel.okta_api import ApiError, AuthFailed, CursorRejected, LogPage
from sentinel.service.metrics import Metrics
from sentinel.service.waiting import wait_for_any
from sentinel.store import PollCursor, Store

log = logging.getLogger("sentinel.poller")
PAGE_LIMIT = 1000  # Okta's maximum
# A refused cursor or a change of rules reads again from this long before the newest polled event: events
# reach the log out of `published` order (persistence order), and a duplicate costs nothing (uuid).
CURSOR_OVERLAP = timedelta(minutes=15)
RETENTION = timedelta(days=90)  # Okta returns nothing older
# After a 401/403 (a credential or a permission an admin must fix): retry this slowly.
AUTH_RETRY_SECONDS = 300.0
STORE_RETRY_SECONDS = 5.0
# Pacing (issue 16): the next page is read once the detector has at most this many deliveries of the inbox
# left to unpack, so a back-fill never queues thousands of events ahead of the hooks' live deliveries
# (measured: live alerts 8-13 s late behind 20 pages read at once). None left, not one: a hook's delivery
# that arrives while a page waits queues behind it (live p99 beside a back-fill 175-267 -> 143-144 ms, the
# back-fill 15-20% longer at the smoke size, where the rate limit does not pace it). Waiting at most
# DETECTOR_WAIT_SECONDS a page, so a stopped detector cannot stop polling.
MAX_DELIVERIES_AHEAD = 0
DETECTOR_WAIT_SECONDS = 30.0
DETECTOR_CHECK_SECONDS = 0.1
# A page goes into the inbox in parts of this many events, the next part once the detector has unpacked
# the last: a hook's delivery that arrives meanwhile waits for one part (a few ms of the detector), not for
# a whole page (a 1,000-event page kept a live alert 100-140 ms in the inbox). The cursor moves with the
# last part; a restart before it reads the page again, and the detector drops what it stored on ``uuid``.
PAGE_PART_EVENTS = 100
PART_CHECK_SECONDS = 0.005


class LogClient(Protocol):
    """What the poller uses of ``sentinel.okta_api.SystemLogClient``."""

    def first_url(self, since: datetime, until: datetime | None = None,
                  event_types: Sequence[str] | None = None, limit: int = 1000) -> str: ...

    async def get_page(self, url: str) -> LogPage: ...

    async def aclose(self) -> None: ...


@dataclass
class PollStatus:
    """What ``/readyz`` and the self-monitoring read. ``current_until``: everything up to this time has
    been read (the newest polled ``published``, the moment the poller last caught up, or its start)."""

    started_at: datetime
    current_until: datetime
    last_success: datetime | None = None
    last_error: str | None = None  # safe to log (ApiError's text); /readyz shows only ``error_kind``
    error_kind: str | None = None
    failing_since: datetime | None = None

    def lag_seconds(self, now: datetime) -> float:
        return max(0.0, (now - self.current_until).total_seconds())

    def readiness(self, now: datetime) -> dict[str, Any]:
        """Terse, for the unauthenticated ``/readyz``: no error text (it is in the log)."""
        return {"status": "failing" if self.failing_since else "ok",
                "last_success": format_timestamp(self.last_success) if self.last_success else None,
                "lag_seconds": round(self.lag_seconds(now), 3), "last_error": self.error_kind}


class Poller:
    def __init__(self, settings: OktaApiSettings, client: LogClient, store: Store, metrics: Metrics, clock: Clock,
                 event_types: tuple[str, ...] | None, wake_detector: Callable[[], None],
                 detector_backlog: Callable[[], Awaitable[int]] | None = None) -> None:
        """``detector_backlog``: how many inbox deliveries the detector has yet to unpack (pacing)."""
        self.settings = settings
        self.source = settings.base_url
        self._client = client
        self._store = store
        self._metrics = metrics
        self._clock = clock
        self.event_types = requestable_types(event_types)
        self._wake_detector = wake_detector
        self._detector_backlog = detector_backlog
        now = clock.now()
        self.status = PollStatus(started_at=now, current_until=now)
        self._cursor: PollCursor | None = None
        self._stop = asyncio.Event()  # run's, once it runs (a page's parts stop waiting on it)

    def use_event_types(self, event_types: tuple[str, ...] | None) -> None:
        """Reloaded rules: the next request uses their types (``rules.sources.polled_event_types``)."""
        self.event_types = requestable_types(event_types)

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop``; every failure is logged, counted and retried (never raises)."""
        # The lag counts from here, not from when the daemon was composed (its start can take seconds).
        self._stop = stop
        started = self._clock.now()
        self.status.started_at = started
        self.status.current_until = max(self.status.current_until, started)
        try:
            await self._run(stop)
        finally:
            await self._client.aclose()

    async def _run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self._keep_pace(stop)
                caught_up = await self.step()
            except AuthFailed as e:
                self._failed(e, "auth_failed")
                await wait_for_any(max(AUTH_RETRY_SECONDS, self.settings.poll_interval_seconds), stop)
                continue
            except ApiError as e:
                self._failed(e, "api_error")
                await wait_for_any(self.settings.poll_interval_seconds, stop)
                continue
            except StoreError as e:
                self._failed(e, "store_error")
                await wait_for_any(STORE_RETRY_SECONDS, stop)
                continue
            except Exception as e:  # a bug: logged with its trace, and polling goes on
                log.exception("poller: unexpected failure")
                self._failed(e, "internal_error", logged=True)
                await wait_for_any(self.settings.poll_interval_seconds, stop)
                continue
            if caught_up:
                await wait_for_any(self.settings.poll_interval_seconds, stop)

    async def _keep_pace(self, stop: asyncio.Event, check_seconds: float = DETECTOR_CHECK_SECONDS) -> bool:
        """Wait (a while at most) until the detector has nearly caught up with the inbox. Returns False if
        it did not in ``DETECTOR_WAIT_SECONDS`` (or ``stop`` was set)."""
        if self._detector_backlog is None:
            return True
        deadline = self._clock.monotonic() + DETECTOR_WAIT_SECONDS
        while await self._detector_backlog() > MAX_DELIVERIES_AHEAD:
            if self._clock.monotonic() >= deadline:
                return False
            await wait_for_any(check_seconds, stop)
            if stop.is_set():
                return False
        return True

    async def step(self) -> bool:
        """One request (and its page stored with the next cursor). Returns True when caught up."""
        cursor = await self._current_cursor()
        try:
            page = await self._client.get_page(cursor.next_url)
        except CursorRejected as e:
            await self._read_around_refused_cursor(cursor, e)
            return False
        now = self._clock.now()
        covered = newest_published(page.published, cursor.covered_until, now)
        if page.next_url is not None:
            following = dataclasses.replace(cursor, next_url=page.next_url, covered_until=covered)
        else:  # the end of a bounded read: polling again from where it ended
            resume = cursor.resume_url or self._client.first_url(
                (covered or now) - CURSOR_OVERLAP, event_types=cursor.event_types, limit=PAGE_LIMIT)
            following = dataclasses.replace(cursor, next_url=resume, resume_url=None, covered_until=covered)
        if page.count:
            parts = page.parts(PAGE_PART_EVENTS)
            pacing = True
            for number, part in enumerate(parts, 1):
                if number > 1 and pacing:
                    # A detector that did not catch up in time (stopped, restarting) gets the rest at once:
                    # a page waits DETECTOR_WAIT_SECONDS at most, not once a part.
                    pacing = await self._keep_pace(self._stop, PART_CHECK_SECONDS)
                await self._store.record_polled_page(part, following if number == len(parts) else cursor, now)
                self._wake_detector()
        elif following != cursor:
            await self._store.record_polled_page(None, following, now)
        self._cursor = following
        caught_up = not page.count or page.next_url == page.self_url or \
            (page.count < PAGE_LIMIT and cursor.resume_url is None)
        self._succeeded(now, page.count, covered, caught_up)
        return caught_up

    async def _current_cursor(self) -> PollCursor:
        """The stored cursor (or the first one: ``backfill_hours`` back), restarted if the rules' types changed."""
        cursor = self._cursor or await self._store.poll_cursor(self.source)
        types = self.event_types
        now = self._clock.now()
        if cursor is None:
            since = now - timedelta(hours=self.settings.backfill_hours)
            cursor = PollCursor(self.source, self._client.first_url(since, event_types=types, limit=PAGE_LIMIT),
                                None, types, since)
            log.info("poller: first start, reading from %s", format_timestamp(since))
        elif cursor.event_types != types:
            since = _clamp((cursor.covered_until or now) - CURSOR_OVERLAP, now)
            log.info("poller: the rules read other event types now (%s); polling again from %s",
                     "every type" if types is None else f"{len(types)} types", format_timestamp(since))
            cursor = PollCursor(self.source, self._client.first_url(since, event_types=types, limit=PAGE_LIMIT),
                                None, types, cursor.covered_until)
        else:
            return cursor
        await self._store.record_polled_page(None, cursor, now)
        self._cursor = cursor
        return cursor

    async def _read_around_refused_cursor(self, cursor: PollCursor, error: CursorRejected) -> None:
        """Okta no longer honours the cursor: read the gap with bounded requests (``published`` from the
        newest polled event minus the overlap, until now), then poll from now: never a silent gap."""
        now = self._clock.now()
        wanted = (cursor.covered_until or self.status.started_at) - CURSOR_OVERLAP
        since = _clamp(wanted, now)
        if since > wanted:
            log.error("poller: events from %s to %s are past Okta's retention and cannot be read",
                      format_timestamp(wanted), format_timestamp(since))
        bounded = self._client.first_url(since, now, event_types=cursor.event_types, limit=PAGE_LIMIT)
        resume = self._client.first_url(now, event_types=cursor.event_types, limit=PAGE_LIMIT)
        log.warning("poller: Okta refused the stored cursor (%s); reading %s to %s with bounded requests, "
                    "then polling from %s", error, format_timestamp(since), format_timestamp(now),
                    format_timestamp(now))
        self._metrics.poll_errors.inc()
        following = dataclasses.replace(cursor, next_url=bounded, resume_url=resume)
        await self._store.record_polled_page(None, following, now)
        self._cursor = following

    def _succeeded(self, now: datetime, events: int, covered: datetime | None, caught_up: bool) -> None:
        status = self.status
        if status.failing_since is not None:
            log.info("poller: requests succeed again")
        status.last_success, status.failing_since, status.last_error, status.error_kind = now, None, None, None
        marks = [status.current_until] + ([covered] if covered else []) + ([now] if caught_up else [])
        status.current_until = max(marks)
        self._metrics.poll_events.inc(events)
        self._metrics.poll_lag.set(status.lag_seconds(now))

    def _failed(self, error: Exception, kind: str, logged: bool = False) -> None:
        status = self.status
        now = self._clock.now()
        text = str(error) or type(error).__name__
        if not logged and (status.error_kind != kind or status.last_error != text):
            # Logged once per distinct failure, not on every retry (AuthFailed says what to fix).
            log.error("poller: %s", text)
        status.last_error, status.error_kind = text, kind
        status.failing_since = status.failing_since or now
        self._metrics.poll_errors.inc()
        self._metrics.poll_lag.set(status.lag_seconds(now))


def requestable_types(types: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """The rules' types as the client asks for them (``eventType eq``, and ``sw`` for a prefix such as
    ``iam.role.*``); no type at all means every type (events are still stored, for rules to come)."""
    if not types:
        return None
    return types


def newest_published(published_values: Iterable[Any], before: datetime | None, now: datetime) -> datetime | None:
    """The newest of a page's events' ``published`` values (``LogPage.published``), never past ``now``
    (hostile input: what does not parse is skipped, the detector quarantines it; a time in the future must
    not hide a lag)."""
    newest = before
    for value in published_values:
        try:
            published = parse_timestamp(value)
        except (ValueError, TypeError, AttributeError):
            continue
        published = min(published, now)
        if newest is None or published > newest:
            newest = published
    return newest


def _clamp(since: datetime, now: datetime) -> datetime:
    """Okta keeps 90 days (and refuses a ``since`` past 180): never ask for more."""
    return max(since, now - RETENTION + timedelta(minutes=1))
