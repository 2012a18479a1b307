"""Connection limits for the HTTP listeners, which uvicorn does not have: a deadline for a request's
headers, a cap on their size, and a cap on open connections.

uvicorn serves HTTP/1.1 with httptools here (``uvicorn[standard]``; ``http="auto"`` picks it). It arms
its keep-alive timer only after a response, so a client that connects and sends nothing, or trickles a
header a byte at a time, holds its connection forever; and httptools buffers an unfinished header
without limit (re-copying it on every read). Each such connection holds a file descriptor, and once
the descriptors run out the store, the detector's pipe and the alert channels fail with them.

So every connection that owes the server a request's headers, from the moment it is accepted or its
previous response was sent, is watched: it has HEADER_TIMEOUT_SECONDS to complete them and may send at
most MAX_HEADER_BYTES before they are complete (431, then closed). At most ``max_connections`` are
open (below RLIMIT_NOFILE, see connection_cap): one more evicts the connection that has owed its
headers longest (a client that is not sending a request), or, if every connection is busy with a
request, is closed at once. uvicorn's ``limit_concurrency`` is not used: it still accepts every
connection and answers 503 only once the headers are in, which bounds neither. Connections not yet
accepted wait in the kernel's listen backlog (uvicorn's default, 2048) and hold no descriptor.

Deadlines are met by one sweep every SWEEP_SECONDS over the watched connections, oldest first, not a
timer per connection; a request costs a few dictionary operations.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections.abc import Callable
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("sentinel.http")

HEADER_TIMEOUT_SECONDS = 5.0  # Okta's whole delivery must be answered within 3 s
MAX_HEADER_BYTES = 64 * 1024  # request line and headers; Okta sends well under 4 KiB
MAX_CONNECTIONS = 1024
# Descriptors kept for everything else: SQLite files, the detector's pipe, alert channels' sockets,
# the metrics listener, logs. The unit's LimitNOFILE= is MAX_CONNECTIONS + RESERVED_FDS or more.
RESERVED_FDS = 256
SWEEP_SECONDS = 0.5
CAP_WARNING_EVERY_SECONDS = 60.0

_HEADERS_TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                      b"content-length: 0\r\nconnection: close\r\n\r\n")


def connection_cap(limit: int = MAX_CONNECTIONS, reserved: int = RESERVED_FDS) -> int:
    """Connections allowed open: ``limit``, or fewer if the process's descriptor limit is lower."""
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return limit
    if soft == resource.RLIM_INFINITY:
        return limit
    return max(1, min(limit, soft - reserved))


class ConnectionGuard:
    """The limits, shared by every connection of the listeners it guards."""

    def __init__(self, max_connections: int, *, header_timeout: float = HEADER_TIMEOUT_SECONDS,
                 max_header_bytes: int = MAX_HEADER_BYTES, sweep_every: float = SWEEP_SECONDS,
                 on_close: Callable[[str], None] = lambda reason: None) -> None:
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.max_header_bytes = max_header_bytes
        self.sweep_every = sweep_every
        self.on_close = on_close
        self.open: set[GuardedHttpProtocol] = set()
        # Connections owing their headers -> deadline; insertion order is deadline order.
        self.waiting: dict[GuardedHttpProtocol, float] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._cap_warned_at: float | None = None

    def protocol(self) -> type[GuardedHttpProtocol]:
        """The protocol class to give uvicorn (``Config(http=...)``), bound to this guard."""
        class BoundProtocol(GuardedHttpProtocol):
            pass

        BoundProtocol.guard = self
        return BoundProtocol

    def opened(self, conn: GuardedHttpProtocol) -> None:
        self.open.add(conn)
        if len(self.open) > self.max_connections:
            self._warn_cap(conn.loop)
            oldest = next(iter(self.waiting), None)
            if oldest is None:  # every other connection is in a request: this one waits its turn
                self.close(conn, "refused")
                return
            self.close(oldest, "evicted")
        self.wait_for_headers(conn)

    def wait_for_headers(self, conn: GuardedHttpProtocol) -> None:
        """From now, ``conn`` owes a request's headers (kept from earlier if it already did)."""
        if conn in self.waiting:
            return
        loop = conn.loop
        self.waiting[conn] = loop.time() + self.header_timeout
        if self._timer is None:
            self._timer = loop.call_later(self.sweep_every, self._sweep, loop)

    def headers_done(self, conn: GuardedHttpProtocol) -> None:
        self.waiting.pop(conn, None)

    def closed(self, conn: GuardedHttpProtocol) -> None:
        self.open.discard(conn)
        self.waiting.pop(conn, None)

    def close(self, conn: GuardedHttpProtocol, reason: str, answer: bytes = b"") -> None:
        self.closed(conn)
        self.on_close(reason)
        transport = conn.transport
        if not transport.is_closing():
            if answer:
                transport.write(answer)
            transport.close()

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        late = []
        for conn, deadline in self.waiting.items():
            if deadline > now:
                break
            late.append(conn)
        for conn in late:
            self.close(conn, "header_timeout")
        self._timer = loop.call_later(self.sweep_every, self._sweep, loop) if self.waiting else None

    def _warn_cap(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        if self._cap_warned_at is None or now - self._cap_warned_at >= CAP_WARNING_EVERY_SECONDS:
            self._cap_warned_at = now
            log.warning("%d connections open, the most allowed: closing the one longest without a request "
                        "(a flood of connections, or LimitNOFILE= too low)", self.max_connections)


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, telling its ConnectionGuard when it owes a request's headers, and
    refusing a header block past the cap before the parser buffers it."""

    guard: ClassVar[ConnectionGuard]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # True while the bytes read next are the start or the rest of a header block.
        self.in_headers = True
        self.header_bytes = 0  # of the current header block, in earlier reads
        self.header_tail = b""  # the last bytes of the previous read, for an end split across reads

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.guard.opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.closed(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        owed = self.in_headers  # every byte of this read is a header byte, up to the blank line
        if owed and self.header_bytes + len(data) > self.guard.max_header_bytes and self._past_cap(data):
            self.guard.close(self, "header_too_large", _HEADERS_TOO_LARGE)
            return
        super().data_received(data)
        if self.in_headers:  # the headers are still not complete
            # A block that began inside this read, after the end of the previous request: its share of the
            # read is not known, so it counts from the next read (at most one read more than the cap).
            self.header_bytes = self.header_bytes + len(data) if owed else 0
            self.header_tail = data[-3:]

    def _past_cap(self, data: bytes) -> bool:
        """Would the header block end past the cap (or not end) in this read?"""
        tail = self.header_tail
        end = (tail + data).find(b"\r\n\r\n")
        return end < 0 or self.header_bytes - len(tail) + end + 4 > self.guard.max_header_bytes

    def _unsupported_upgrade_warning(self) -> None:
        # Sentinel serves no WebSocket (``ws="none"``): an Upgrade header is ignored and the request answered
        # as any other. uvicorn would log two warnings per such request, one advising to install a library.
        log.debug("ignored an Upgrade request header")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.in_headers = True
        self.guard.wait_for_headers(self)

    def on_headers_complete(self) -> None:
        self.in_headers = False
        self.header_bytes = 0
        self.header_tail = b""
        self.guard.headers_done(self)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        cycle = self.cycle
        if cycle is not None and cycle.response_complete and not self.pipeline:  # a body answered already
            self.in_headers = True

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)  # the next request's headers are already in
        super().on_response_complete()
        if not pipelined and not self.transport.is_closing():
            self.guard.wait_for_headers(self)  # the deadline covers the idle time before the next request
            if not self.cycle.more_body:
                self.in_headers = True
