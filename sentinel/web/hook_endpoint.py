"""``/hooks/okta``: Okta's verification GET and its event deliveries, as a plain ASGI endpoint.

Order on POST: declared size (413) → auth, constant time (401) → content type (415) → body read with
the cap enforced while reading (413), within BODY_READ_TIMEOUT_SECONDS (408) → parse (400) → durable
store of the body in the inbox (503 on failure) → 204. Splitting the body into events, checking each
one and evaluating them happen after the answer, in the detector (see sentinel/store/inbox.py).

Plain ASGI rather than a Starlette route because this is the one hot path: Starlette's routing,
Request and Response objects cost about 12 µs a request, a tenth of all intake's CPU for a 1-event
delivery (docs/benchmarks.md). The other endpoints stay Starlette routes (sentinel/web/app.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from starlette.types import Receive, Scope, Send

from sentinel.clock import Clock
from sentinel.errors import PayloadError, StoreError
from sentinel.okta import VERIFICATION_HEADER, check_delivery, valid_challenge, verification_answer
from sentinel.service.intake import Intake
from sentinel.service.metrics import Metrics

log = logging.getLogger("sentinel.intake")
PATH = "/hooks/okta"
BODY_READ_TIMEOUT_SECONDS = 10.0
_VERIFICATION = VERIFICATION_HEADER.encode("latin-1")
_JSON_HEADERS = [(b"content-type", b"application/json")]


class _TooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


class BodyDeadlines:
    """``with deadlines:`` raises TimeoutError in the task that takes longer than ``seconds`` inside it.

    The same as ``asyncio.timeout(seconds)``, but one timer sweeps every watched task once in a while
    (``sweep_every``), instead of a timer armed and cancelled per request (~6 µs each): a deadline is
    met to within ``sweep_every``. Deadlines are read from ``clock.monotonic()`` (the event loop's clock when
    none is given), so tests move time with a FixedClock instead of waiting for it.
    """

    def __init__(self, seconds: float, sweep_every: float = 1.0, clock: Clock | None = None) -> None:
        self.seconds = seconds
        self.sweep_every = sweep_every
        self.clock = clock
        self._deadlines: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None

    def __enter__(self) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("BodyDeadlines is used inside a task")
        loop = task.get_loop()
        self._deadlines[task] = self._now(loop) + self.seconds
        if self._timer is None:
            self._timer = loop.call_later(self.sweep_every, self._sweep, loop)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, _: Any) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._deadlines.pop(task, None)
        if task in self._expired:
            self._expired.discard(task)
            if task.uncancel() == 0 and kind is asyncio.CancelledError:
                raise TimeoutError from error  # cancelled by _sweep, and by nobody else

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = self._now(loop)
        for task, deadline in list(self._deadlines.items()):
            if deadline <= now:
                del self._deadlines[task]
                self._expired.add(task)
                task.cancel()
        self._timer = loop.call_later(self.sweep_every, self._sweep, loop) if self._deadlines else None

    def _now(self, loop: asyncio.AbstractEventLoop) -> float:
        return loop.time() if self.clock is None else self.clock.monotonic()


class OktaHookEndpoint:
    def __init__(self, intake: Intake, metrics: Metrics, clock: Clock) -> None:
        self.intake = intake
        self.auth_header = intake.auth_header
        self.max_body = intake.max_body
        self.authorized = intake.authorized
        self.metrics = metrics
        self.clock = clock
        self.deadlines = BodyDeadlines(BODY_READ_TIMEOUT_SECONDS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method == "POST":
            await self.delivery(scope, receive, send)
        elif method in ("GET", "HEAD"):
            await self.verification(scope, send)
        else:
            await send({"type": "http.response.start", "status": 405,
                        "headers": [(b"allow", b"GET, HEAD, POST"), (b"content-type", b"text/plain; charset=utf-8")]})
            await send({"type": "http.response.body", "body": b"Method Not Allowed"})

    async def verification(self, scope: Scope, send: Send) -> None:
        if not self.authorized(self.header(scope, self.auth_header)):
            return await self.reject("auth", 401, "missing or wrong authentication header", scope, send)
        raw = self.header(scope, _VERIFICATION)
        challenge = raw.decode("latin-1") if raw is not None else None
        if not valid_challenge(challenge):
            return await self.reject("no_challenge", 400, f"missing or oversized {VERIFICATION_HEADER} header",
                                     scope, send)
        log.info("answered Okta verification challenge")
        await _send_json(send, 200, verification_answer(challenge or ""))

    async def delivery(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = self.clock.monotonic()
        declared = presented = content_type = None
        auth_header = self.auth_header
        for name, value in scope["headers"]:  # the first of each, as Starlette's Headers.get
            if name == b"content-length":
                declared = value if declared is None else declared
            elif name == auth_header:
                presented = value if presented is None else presented
            elif name == b"content-type":
                content_type = value if content_type is None else content_type
        if declared is not None and not declared.isdigit():
            return await self.reject("bad_length", 400, "Content-Length is not a number", scope, send)
        # (httptools refuses an overflowing Content-Length itself; the length test is for h11, and int()
        # refuses more than 4,300 digits.)
        if declared is not None and (len(declared) > 18 or int(declared) > self.max_body):
            return await self.reject("too_large", 413, f"body larger than {self.max_body} bytes", scope, send)
        if not self.authorized(presented):
            return await self.reject("auth", 401, "missing or wrong authentication header", scope, send)
        media_type = (content_type or b"").split(b";")[0].strip().lower()
        if media_type != b"application/json" and not media_type.endswith(b"+json"):
            return await self.reject("content_type", 415, "Content-Type must be application/json", scope, send)
        try:
            body = await self.read_body(receive)
        except _TooLarge:
            return await self.reject("too_large", 413, f"body larger than {self.max_body} bytes", scope, send)
        except TimeoutError:
            return await self.reject("slow_body", 408, "body not received in time", scope, send)
        except _Disconnected:
            self.metrics.requests_rejected.labels("disconnect").inc()
            return await _send_empty(send, 400)
        try:
            elements = check_delivery(body)
        except PayloadError as e:
            return await self.reject("bad_payload", 400, str(e), scope, send, e.location)
        if elements:
            try:
                await self.intake.store_delivery(body)
            except StoreError as e:
                log.error("store failed: %s", e)
                return await self.reject("store", 503, "could not store the delivery; retry", scope, send)
        elapsed = self.clock.monotonic() - started
        self.metrics.ingest_seconds.observe(elapsed)
        # Per-delivery counts (new, duplicate, quarantined) are logged when the detector unpacks it.
        log.debug("okta delivery stored: %d elements, %d bytes, %.1f ms", elements, len(body), elapsed * 1000)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def read_body(self, receive: Receive) -> bytes:
        """The whole body, or _TooLarge past the cap (counted while reading: a chunked body declares
        no size), TimeoutError past the deadline, _Disconnected if the client went away."""
        with self.deadlines:
            chunks: list[bytes] = []
            size = 0
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise _Disconnected
                chunk: bytes = message.get("body", b"")
                size += len(chunk)
                if size > self.max_body:
                    raise _TooLarge
                if not message.get("more_body", False):
                    if not chunks:
                        return chunk  # the usual case: the whole body in one message
                    chunks.append(chunk)
                    return b"".join(chunks)
                chunks.append(chunk)

    @staticmethod
    def header(scope: Scope, name: bytes) -> bytes | None:
        for key, value in scope["headers"]:
            if key == name:
                return bytes(value)
        return None

    async def reject(self, reason: str, status: int, message: str, scope: Scope, send: Send,
                     path: str | None = None) -> None:
        self.metrics.requests_rejected.labels(reason).inc()
        client = scope.get("client")
        log.warning("rejected %s %s from %s: %d %s", scope["method"], PATH, client[0] if client else "?", status,
                    reason)
        body: dict[str, Any] = {"error": message}
        if path:
            body["path"] = path
        await _send_json(send, status, body)


async def _send_json(send: Send, status: int, content: Any) -> None:
    """As Starlette's JSONResponse renders it."""
    body = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-length", str(len(body)).encode("latin-1")), *_JSON_HEADERS]})
    await send({"type": "http.response.body", "body": body})


async def _send_empty(send: Send, status: int) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})
