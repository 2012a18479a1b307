"""What the fake Okta's ``GET /api/v1/logs`` answers: the request semantics of docs/okta-system-log-api.md §1.

- **Polling request** (no ``until``, ``sortOrder`` ASCENDING or absent): ``since`` applies to persistence time,
  events come in persistence order (each ``add()`` is one commit, sorted by ``published`` then ``uuid``), and
  there is always a ``rel="next"`` link; when nothing new is there, next equals self.
- **Bounded request** (``until`` given, or DESCENDING): ``since`` <= ``published`` < ``until``, ordered by
  ``published`` then ``uuid``; the last page has no next link.
- ``after`` is an opaque, signed cursor; cursors issued before ``expire_cursors()`` are "too old" (400).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_SINCE_AGE = timedelta(days=180)
DEFAULT_WINDOW = timedelta(days=7)
# The subset of Okta's SCIM filter the poller sends: eventType eq "X" or eventType sw "prefix." (joined by or).
_TERM = r'eventType\s+(?:eq|sw)\s+"(?:[^"\\]+)"'
_FILTER = re.compile(rf"\s*{_TERM}(?:\s+or\s+{_TERM})*\s*")
_TERMS = re.compile(r'eventType\s+(eq|sw)\s+"([^"\\]+)"')


class BadRequest(Exception):
    """A 400 with Okta's error body."""

    def __init__(self, code: str, summary: str) -> None:
        super().__init__(summary)
        self.code, self.summary = code, summary

    def body(self) -> dict[str, Any]:
        return {"errorCode": self.code, "errorSummary": self.summary, "errorLink": self.code,
                "errorId": "oae" + secrets.token_hex(8), "errorCauses": []}


def parse_time(value: str, name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest("E0000001", f"Api validation failed: {name} is not an ISO 8601 timestamp") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Stored:
    seq: int
    published: datetime
    uuid: str
    persisted: datetime
    event: dict[str, Any]

    @property
    def key(self) -> tuple[datetime, str]:
        return (self.published, self.uuid)


@dataclass(frozen=True)
class Page:
    events: list[dict[str, Any]]
    self_url: str
    next_url: str | None


@dataclass
class EventLog:
    """The org's System Log in memory, and the paging over it."""

    stored: list[Stored] = field(default_factory=list)
    epoch: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    _key: bytes = field(default_factory=lambda: secrets.token_bytes(32))

    def add(self, events: list[dict[str, Any]], persisted: datetime | None = None) -> None:
        """One commit: ``persisted`` defaults to each event's ``published`` (history is persisted as it
        happened); pass a later time for a late event, which a polling request still returns."""
        batch = sorted(events, key=lambda e: (parse_time(e["published"], "published"), e["uuid"]))
        with self.lock:
            for event in batch:
                published = parse_time(event["published"], "published")
                self.stored.append(Stored(len(self.stored), published, event["uuid"],
                                          persisted or published, event))

    def expire_cursors(self) -> None:
        with self.lock:
            self.epoch += 1

    def page(self, base: str, params: dict[str, str], now: datetime) -> Page:
        limit = _limit(params.get("limit"))
        types = _filter(params.get("filter"))
        order = params.get("sortOrder", "ASCENDING")
        if order not in ("ASCENDING", "DESCENDING"):
            raise BadRequest("E0000001", "Api validation failed: sortOrder")
        until = parse_time(params["until"], "until") if "until" in params else None
        since = parse_time(params["since"], "since") if "since" in params else (until or now) - DEFAULT_WINDOW
        if since < now - MAX_SINCE_AGE:
            raise BadRequest("E0000053", "The since parameter is over 180 days prior to the current day.")
        cursor = self._open(params["after"]) if "after" in params else None
        polling = until is None and order == "ASCENDING"
        with self.lock:
            snapshot = list(self.stored)
        if polling:
            events, position = _poll(snapshot, since, types, limit, cursor)
            return self._links(base, params, events, {"k": "poll", "p": position})
        return self._bounded(base, params, snapshot, since, until or now, order, types, limit, cursor)

    def _bounded(self, base: str, params: dict[str, str], snapshot: list[Stored], since: datetime,
                 until: datetime, order: str, types: TypeFilter | None, limit: int,
                 cursor: dict[str, Any] | None) -> Page:
        if cursor is not None and cursor.get("k") != "bounded":
            raise BadRequest("E0000001", "Api validation failed: after")
        descending = order == "DESCENDING"
        rows = sorted((s for s in snapshot if since <= s.published < until
                       and (types is None or s.event.get("eventType") in types)),
                      key=lambda s: s.key, reverse=descending)
        if cursor is not None:
            last = (datetime.fromisoformat(cursor["t"]), str(cursor["u"]))
            rows = [s for s in rows if (s.key < last if descending else s.key > last)]
        taken = rows[:limit]
        if len(rows) <= limit or not taken:
            return Page([s.event for s in taken], _url(base, params), None)
        tail = taken[-1]
        return self._links(base, params, taken, {"k": "bounded", "t": tail.published.isoformat(), "u": tail.uuid})

    def _links(self, base: str, params: dict[str, str], rows: list[Stored], position: dict[str, Any]) -> Page:
        after = self._seal(position)
        return Page([r.event for r in rows], _url(base, params), _url(base, {**params, "after": after}))

    def _seal(self, position: dict[str, Any]) -> str:
        raw = json.dumps({**position, "e": self.epoch}, sort_keys=True, separators=(",", ":")).encode()
        mac = hmac.new(self._key, raw, hashlib.sha256).digest()[:12]
        return base64.urlsafe_b64encode(mac + raw).decode().rstrip("=")

    def _open(self, after: str) -> dict[str, Any]:
        try:
            blob = base64.urlsafe_b64decode(after + "=" * (-len(after) % 4))
            mac, raw = blob[:12], blob[12:]
            ok = hmac.compare_digest(mac, hmac.new(self._key, raw, hashlib.sha256).digest()[:12])
            cursor: dict[str, Any] = json.loads(raw) if ok else {}
        except ValueError:
            cursor = {}
        if not cursor:
            raise BadRequest("E0000001", "Api validation failed: after is not a cursor this server issued")
        if cursor.get("e") != self.epoch:
            raise BadRequest("E0000053", "The after cursor is too old; start a new query with since.")
        return cursor


def _poll(snapshot: list[Stored], since: datetime, types: TypeFilter | None, limit: int,
          cursor: dict[str, Any] | None) -> tuple[list[Stored], int]:
    if cursor is not None and cursor.get("k") != "poll":
        raise BadRequest("E0000001", "Api validation failed: after")
    start = int(cursor["p"]) if cursor else 0
    taken: list[Stored] = []
    for stored in snapshot[start:]:
        if stored.persisted < since or (types is not None and stored.event.get("eventType") not in types):
            continue
        if len(taken) == limit:
            return taken, taken[-1].seq + 1 if taken else start
        taken.append(stored)
    # Everything committed so far was scanned: the next page starts after it.
    return taken, max(start, len(snapshot))


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 0 <= int(raw) <= MAX_LIMIT:
        raise BadRequest("E0000001", f"Api validation failed: limit must be an integer between 0 and {MAX_LIMIT}")
    return int(raw)


@dataclass(frozen=True)
class TypeFilter:
    """The event types a filter selects: exact names (``eq``) and prefixes (``sw``)."""

    exact: frozenset[str]
    prefixes: tuple[str, ...]

    def __contains__(self, event_type: object) -> bool:
        return isinstance(event_type, str) and (event_type in self.exact or event_type.startswith(self.prefixes))


def _filter(raw: str | None) -> TypeFilter | None:
    if raw is None:
        return None
    if not _FILTER.fullmatch(raw):
        raise BadRequest("E0000031", "Invalid search criteria.")
    terms = [(m.group(1), m.group(2)) for m in _TERMS.finditer(raw)]
    return TypeFilter(frozenset(v for op, v in terms if op == "eq"), tuple(v for op, v in terms if op == "sw"))


def _url(base: str, params: dict[str, str]) -> str:
    """Canonical form of a request URL, so that a next link can equal the self link character for character."""
    return f"{base}/api/v1/logs?{urlencode(params)}" if params else f"{base}/api/v1/logs"
