"""``SystemLogClient``: one page of ``GET /api/v1/logs`` at a time, the way Okta documents it.

Polling requests (no ``until``, ascending) and bounded ones (``since`` + ``until``); the ``rel="next"`` link
handed back verbatim; rate limits read from ``X-Rate-Limit-*`` and the response's ``Date``; 429, 5xx and
network errors retried with tenacity; 401/403 → :class:`AuthFailed`, 400 on a cursor →
:class:`CursorRejected`. Never more than one request in flight.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from sentinel.clock import Clock, SystemClock
from sentinel.config import OktaApiSettings
from sentinel.okta_api.credentials import ApiCredentials

LOGS_PATH = "/api/v1/logs"
MAX_LIMIT = 1000
# Event types go into a filter expression: only the characters Okta's catalog uses, so none can break out.
_EVENT_TYPE = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")


@dataclass(frozen=True)
class LogPage:
    events: list[dict[str, Any]]  # the JSON array as parsed
    body: bytes  # the raw response body (the loop stores what it got)
    next_url: str | None  # the rel="next" Link, verbatim
    self_url: str  # the URL requested
    status: int


def okta_time(moment: datetime) -> str:
    """``2026-11-28T10:00:00.000Z``: the ISO 8601 form Okta's examples use."""
    if moment.tzinfo is None:
        raise ValueError("a timezone-aware datetime is required")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_type_filter(event_types: Sequence[str]) -> str:
    """``eventType eq "a" or eventType eq "b"``; ValueError on an empty list or a malformed type."""
    if not event_types:
        raise ValueError("an event-type filter needs at least one type (None polls every type)")
    bad = [t for t in event_types if not _EVENT_TYPE.match(t)]
    if bad:
        raise ValueError(f"not an Okta event type: {bad[0]!r}")
    return " or ".join(f'eventType eq "{t}"' for t in dict.fromkeys(event_types))


class SystemLogClient:
    def __init__(self, settings: OktaApiSettings, credentials: ApiCredentials, *,
                 clock: Clock | None = None, on_response: Callable[[int], None] | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._settings = settings
        self._credentials = credentials
        self._clock = clock or SystemClock()
        self._on_response = on_response
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"SystemLogClient({self._settings.base_url!r}, {self._credentials.describe()})"

    @property
    def logs_url(self) -> str:
        return self._settings.base_url + LOGS_PATH

    def first_url(self, since: datetime, until: datetime | None = None,
                  event_types: Sequence[str] | None = None, limit: int = MAX_LIMIT) -> str:
        """Polling request when until is None (ascending, no until), else a bounded request."""
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, not {limit}")
        params = {"since": okta_time(since)}
        if until is None:
            params["sortOrder"] = "ASCENDING"
        else:
            if until <= since:
                raise ValueError("until must be after since")
            params["until"] = okta_time(until)
        params["limit"] = str(limit)
        if event_types is not None:
            params["filter"] = event_type_filter(event_types)
        return f"{self.logs_url}?{urlencode(params, quote_via=quote)}"

    async def get_page(self, url: str) -> LogPage:
        """One page; waits for rate limits, retries 429/5xx/network with tenacity backoff+jitter (forever
        for polling is wrong: give up after a bounded time and raise ApiError); raises AuthFailed /
        CursorRejected without retrying. on_response(status) is called for every HTTP response (metrics)."""
        raise NotImplementedError

    async def aclose(self) -> None:
        pass
