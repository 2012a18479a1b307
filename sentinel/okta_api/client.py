"""``SystemLogClient``: one page of ``GET /api/v1/logs`` at a time, the way Okta documents it.

Polling requests (no ``until``, ascending) and bounded ones (``since`` + ``until``); the ``rel="next"`` link
handed back verbatim; rate limits read from ``X-Rate-Limit-*`` and the response's ``Date``; 429, 5xx and
network errors retried with tenacity; 401/403 → :class:`AuthFailed`, 400 on a cursor →
:class:`CursorRejected`. Never more than one request in flight, across processes too when given a
``request_lock`` file: the daemon's poller and a ``sentinel backfill`` beside it take turns (flock).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import httpx
import msgspec
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential_jitter

from sentinel import __version__
from sentinel.clock import Clock, SystemClock
from sentinel.config import OktaApiSettings
from sentinel.okta_api.credentials import ApiCredentials
from sentinel.okta_api.errors import ApiError, AuthFailed, CursorRejected, RetryableError
from sentinel.okta_api.oauth import TokenSource
from sentinel.okta_api.okta_errors import describe_error
from sentinel.okta_api.rate_limit import RateBudget, RateLimit
from sentinel.rules.sources import filter_expression

log = logging.getLogger("sentinel.okta_api")

LOGS_PATH = "/api/v1/logs"
MAX_LIMIT = 1000
# Okta ends a query after 30 s (a 500); wait a little longer than that for the answer.
TIMEOUT = httpx.Timeout(40.0, connect=10.0)
# Retrying a failing request stops after this long; the caller sees an ApiError (and can show it).
GIVE_UP_AFTER = 300.0
_BACKOFF = wait_exponential_jitter(initial=1, max=60, jitter=1)
# Event types go into a filter expression: only the characters Okta's catalog uses, so none can break out.
_EVENT_TYPE = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")


@dataclass(frozen=True)
class LogPage:
    """One answered request. The events are not decoded here: the detector decodes them once, where it
    unpacks them, and a 2-3 MB page decoded by ``json.loads`` held the daemon's event loop (intake, the
    dispatchers) for 20-40 ms a page. ``events`` decodes the body for whoever wants the dicts."""

    body: bytes  # the raw response body (the loop stores what it got)
    next_url: str | None  # the rel="next" Link, verbatim
    self_url: str  # the URL requested
    status: int
    published: tuple[Any, ...]  # each element's ``published`` as sent (None where missing or not an object)
    # Each element's JSON text as sent, when the body could be split without decoding it (None: a body only
    # json.loads reads, such as UTF-16 or NaN; it is kept whole).
    elements: tuple[bytes, ...] | None

    @property
    def count(self) -> int:
        return len(self.published)

    @property
    def events(self) -> list[dict[str, Any]]:
        """The JSON array as parsed (decoded at each read)."""
        events: list[dict[str, Any]] = json.loads(self.body)
        return events

    def parts(self, size: int) -> list[bytes]:
        """The page as JSON arrays of at most ``size`` elements each, in order, each element's text as sent;
        the whole body as one part when it could not be split."""
        if self.elements is None or len(self.elements) <= size:
            return [self.body]
        return [b"[" + b",".join(self.elements[i:i + size]) + b"]" for i in range(0, len(self.elements), size)]


class _Published(msgspec.Struct):
    published: Any = None


# A page's elements skipped over (checked as JSON, not decoded), then each one's ``published`` alone.
_ELEMENTS = msgspec.json.Decoder(list[msgspec.Raw])
_PUBLISHED = msgspec.json.Decoder(_Published)


def _published(element: msgspec.Raw) -> Any:
    try:
        return _PUBLISHED.decode(element).published
    except (msgspec.DecodeError, RecursionError):  # not an object (ValidationError is a DecodeError)
        return None


def split_page(body: bytes) -> tuple[tuple[Any, ...], tuple[bytes, ...] | None] | None:
    """Each element's ``published`` and JSON text, for a page body that is a JSON array; None when it is not.
    msgspec splits a UTF-8 body; json.loads has the last word on any other (it reads UTF-16, NaN, lone
    surrogate escapes), whose elements are then not split."""
    try:
        if not body.isascii():
            body.decode("utf-8")  # msgspec does not check the UTF-8 of what it skips; json.loads refuses it
        elements = _ELEMENTS.decode(body)
    except (UnicodeDecodeError, msgspec.DecodeError, RecursionError):
        try:
            events = json.loads(body)
        except (ValueError, RecursionError):
            return None
        if not isinstance(events, list):
            return None
        return tuple(e.get("published") if isinstance(e, dict) else None for e in events), None
    return tuple(_published(e) for e in elements), tuple(bytes(e) for e in elements)


def okta_time(moment: datetime) -> str:
    """``2026-11-28T10:00:00.000Z``: the ISO 8601 form Okta's examples use."""
    if moment.tzinfo is None:
        raise ValueError("a timezone-aware datetime is required")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_type_filter(event_types: Sequence[str]) -> str:
    """``eventType eq "a" or eventType sw "b."`` (a rule's prefix ``b.*`` as Okta's starts-with); ValueError
    on an empty list or a malformed type."""
    if not event_types:
        raise ValueError("an event-type filter needs at least one type (None polls every type)")
    bad = [t for t in event_types if not _EVENT_TYPE.match(t.removesuffix(".*")) or t.startswith(".")]
    if bad:
        raise ValueError(f"not an Okta event type: {bad[0]!r}")
    return filter_expression(list(dict.fromkeys(event_types)))


def request_lock_path(store_path: Path) -> Path:
    """The lock file every System Log client of one store takes turns on (beside the store, as private)."""
    return store_path.with_name(store_path.name + ".okta-api.lock")


class SystemLogClient:
    """``give_up_after``: seconds of retrying (429, 5xx, network) before ``get_page`` raises ApiError; 0
    makes exactly one attempt (``sentinel check --probe``)."""

    def __init__(self, settings: OktaApiSettings, credentials: ApiCredentials, *,
                 clock: Clock | None = None, on_response: Callable[[int], None] | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 give_up_after: float = GIVE_UP_AFTER, request_lock: Path | None = None) -> None:
        self._settings = settings
        self._request_lock = request_lock
        self._credentials = credentials
        self._clock = clock or SystemClock()
        self._on_response = on_response or (lambda status: None)
        self._sleep = sleep
        self._give_up_after = give_up_after
        origin = urlsplit(settings.base_url)
        self._origin = (origin.scheme, origin.netloc.lower())
        self._tokens = TokenSource(settings, credentials, self._clock) if credentials.kind != "ssws" else None
        self._budget = RateBudget(settings.rate_limit_share, self._clock)
        # One request at a time, token requests included.
        self._lock = asyncio.Lock()
        # trust_env: HTTPS_PROXY / NO_PROXY and SSL_CERT_FILE apply, as for the channels (requests).
        self._http = httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False,
                                       headers={"User-Agent": f"sentinel/{__version__}",
                                                "Accept": "application/json"})

    def __repr__(self) -> str:
        return f"SystemLogClient({self._settings.base_url!r}, {self._credentials.describe()})"

    @property
    def logs_url(self) -> str:
        return self._settings.base_url + LOGS_PATH

    @property
    def rate_limit(self) -> RateLimit | None:
        """The rate-limit headers of the last response (None before any, or when it had none)."""
        return self._budget.last

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
        if not self._ours(url):
            # A stored cursor from another org or address: the caller starts afresh, as for an expired one.
            raise CursorRejected("the URL is not this org's System Log (was [okta.api] base_url changed?)")
        async with self._lock:
            started = self._clock.monotonic()

            def stop(state: RetryCallState) -> bool:
                return self._clock.monotonic() - started + state.upcoming_sleep > self._give_up_after

            retrying = AsyncRetrying(retry=retry_if_exception_type(RetryableError), wait=_retry_wait, stop=stop,
                                     sleep=self._sleep, reraise=True, before_sleep=_log_retry)
            try:
                async for attempt in retrying:
                    with attempt:
                        return await self._attempt(url)
            except RetryableError as e:
                waited = self._clock.monotonic() - started
                raise ApiError(f"gave up after {attempt.retry_state.attempt_number} attempts in {waited:.0f} s: {e}",
                               e.status) from None
        raise AssertionError("unreachable: tenacity either returns or raises")

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- one attempt ------------------------------------------------------------------------------------
    async def _attempt(self, url: str) -> LogPage:
        wait = self._budget.wait_before_next()
        if wait > 0:
            log.info("System Log: Sentinel's share of the rate limit is used; waiting %.0f s for the reset", wait)
            await self._sleep(wait)
        response = await self._get(url)
        if response.status_code == 401 and self._tokens is not None:
            # The access token may have been revoked or expired early: one more try with a fresh one.
            self._tokens.invalidate()
            response = await self._get(url)
        return self._page(url, response)

    async def _get(self, url: str) -> httpx.Response:
        async with self._one_in_flight():
            return await self._get_now(url)

    @contextlib.asynccontextmanager
    async def _one_in_flight(self) -> AsyncIterator[None]:
        """The org's concurrency limit counts every request: with ``request_lock``, other processes' clients
        of the same store (a ``sentinel backfill`` beside the daemon) wait for this request, and it for
        theirs. An flock is released when its file is closed, however the process ends."""
        if self._request_lock is None:
            yield
            return
        fd = os.open(self._request_lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    async def _get_now(self, url: str) -> httpx.Response:
        if self._tokens is not None:
            authorization = await self._tokens.authorization(self._http, self._on_response)
        else:
            authorization = f"SSWS {self._credentials.secret.reveal()}"
        try:
            response = await self._http.get(url, headers={"Authorization": authorization})
        except httpx.HTTPError as e:
            raise RetryableError(f"System Log request failed: {e.__class__.__name__}") from None
        self._on_response(response.status_code)
        self._budget.record(RateLimit.from_headers(response.headers, self._clock.now()))
        return response

    def _page(self, url: str, response: httpx.Response) -> LogPage:
        status = response.status_code
        if status == 200:
            return self._parse(url, response)
        problem = describe_error(response)
        if status in (401, 403):
            raise AuthFailed(f"Okta refused the System Log request ({problem})", self._auth_hint(status), status)
        if status == 400 and "after" in parse_qs(urlsplit(url).query):
            raise CursorRejected(f"Okta no longer accepts the cursor ({problem})", status)
        if status == 429:
            rate = RateLimit.from_headers(response.headers, self._clock.now())
            raise RetryableError(f"rate limited ({problem})", status, self._budget.wait_after_429(rate))
        if status >= 500:
            raise RetryableError(f"Okta failed ({problem})", status)
        raise ApiError(f"System Log request refused ({problem})", status)

    def _parse(self, url: str, response: httpx.Response) -> LogPage:
        body = response.content
        split = split_page(body)
        if split is None:
            try:
                json.loads(body)
            except (ValueError, RecursionError):
                raise ApiError("the System Log answered 200 with a body that is not JSON", 200) from None
            raise ApiError("the System Log answered 200 with a body that is not a JSON array", 200)
        next_url = response.links.get("next", {}).get("url")
        if next_url is not None and not self._ours(next_url):
            # Following it would send the credential elsewhere.
            raise ApiError("the System Log's next link points outside the org's /api/v1/logs", 200)
        return LogPage(body, next_url, url, 200, *split)

    def _ours(self, url: str) -> bool:
        split = urlsplit(url)
        # Host names are case-insensitive; the path must be the System Log's, nothing else gets the credential.
        return ((split.scheme, split.netloc.lower()) == self._origin and split.path == LOGS_PATH
                and not split.fragment)

    def _auth_hint(self, status: int) -> str:
        if self._tokens is None and status == 401:
            return ("the API token is wrong, revoked, or expired (unused for 30 days, or its admin was "
                    "deactivated): create one under Security > API > Tokens and set it in "
                    f"{self._credentials.source}")
        if self._tokens is None:
            return ("the API token's admin has no role that may read the System Log: create the token as an admin "
                    "with the Read-only Administrator role (or higher)")
        if status == 401:
            return "a fresh access token was refused: check the service app is active and its token is for this org"
        return ("grant the service app the okta.logs.read scope and assign it an admin role that covers it "
                "(Read-only Administrator)")


def _retry_wait(state: RetryCallState) -> float:
    """A 429 waits for the reset Okta named; 5xx and network errors back off exponentially with jitter."""
    error = state.outcome.exception() if state.outcome is not None else None
    if isinstance(error, RetryableError) and error.wait is not None:
        return error.wait
    return float(_BACKOFF(state))


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    log.warning("System Log request: %s; retrying in %.1f s", error, state.upcoming_sleep)
