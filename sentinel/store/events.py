"""Events and quarantine: ingest (duplicate-safe on ``uuid``), the pending queue, listing."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from sentinel.model import Event, format_timestamp, parse_timestamp
from sentinel.okta import Quarantined
from sentinel.quarantine import record

_INSERT_EVENT = ("INSERT OR IGNORE INTO events (uuid, event_type, published, received_at, evaluated_at, body) "
                 "VALUES (?, ?, ?, ?, ?, ?)")


@dataclass(frozen=True, slots=True)
class IngestResult:
    new: int
    duplicate: int
    quarantined: int

    @property
    def all_new(self) -> bool:
        return self.duplicate == 0


def ingest(conn: sqlite3.Connection, events: Sequence[Event], quarantined: Sequence[Quarantined],
           received_at: datetime, evaluated_at: datetime | None = None) -> IngestResult:
    """Store events (``INSERT OR IGNORE`` on uuid, so Okta's re-deliveries add nothing) and the quarantined
    elements of one delivery, as one quarantine record (sentinel/quarantine.py). ``evaluated_at``: the
    events were evaluated before being stored (in the same transaction as their alerts), not pending."""
    return store_delivery(conn, events, quarantined, format_timestamp(received_at),
                          format_timestamp(evaluated_at) if evaluated_at is not None else None)


def store_delivery(conn: sqlite3.Connection, events: Sequence[Event], quarantined: Sequence[Quarantined],
                   received: str, evaluated: str | None) -> IngestResult:
    """:func:`ingest` with the times as stored text already (the inbox keeps ``received_at`` so)."""
    before = conn.total_changes
    conn.executemany(_INSERT_EVENT, [(e.uuid, e.event_type, e.stored_published or format_timestamp(e.published),
                                      received, evaluated,
                                      e.source if e.source is not None else
                                      json.dumps(e.data, ensure_ascii=False, separators=(",", ":")))
                                     for e in events])
    new = conn.total_changes - before
    kept = record(quarantined)
    if kept is not None:
        conn.execute("INSERT INTO quarantine (received_at, path, reason, body) VALUES (?, ?, ?, ?)",
                     (received, kept.path, kept.reason, kept.body))
    return IngestResult(new=new, duplicate=len(events) - new, quarantined=len(quarantined))


# Reading an event back (a backlog past the detector's cache, a restart): msgspec builds the same objects
# as json.loads in about half its time; a body it refuses (NaN, stored by the json.loads path) is read by
# json.loads as before.
_BODY = msgspec.json.Decoder()


def _event_from_row(uuid: str, event_type: str, published: str, body: str) -> Event:
    try:
        data = _BODY.decode(body)
    except (msgspec.DecodeError, RecursionError):
        data = json.loads(body)
    return Event(uuid=uuid, event_type=event_type, published=parse_timestamp(published), data=data)


def pending_uuids(conn: sqlite3.Connection, limit: int) -> list[str]:
    """The uuids of events not yet evaluated, oldest ``published`` first (Okta does not deliver in
    order). Answered from the ``events_pending`` index alone: no event body is read."""
    rows = conn.execute("SELECT uuid FROM events WHERE evaluated_at IS NULL ORDER BY published, uuid LIMIT ?",
                        (limit,)).fetchall()
    return [row[0] for row in rows]


def events_by_uuid(conn: sqlite3.Connection, uuids: Sequence[str]) -> dict[str, Event]:
    found: dict[str, Event] = {}
    for start in range(0, len(uuids), 500):
        chunk = uuids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        for row in conn.execute(f"SELECT uuid, event_type, published, body FROM events WHERE uuid IN ({marks})",
                                chunk):
            found[row[0]] = _event_from_row(*row)
    return found


def stored_uuids(conn: sqlite3.Connection, uuids: Sequence[str]) -> set[str]:
    """Which of ``uuids`` are stored already (the primary key's index alone)."""
    found: set[str] = set()
    for start in range(0, len(uuids), 500):
        chunk = uuids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        found.update(row[0] for row in conn.execute(f"SELECT uuid FROM events WHERE uuid IN ({marks})", chunk))
    return found


def pending_events(conn: sqlite3.Connection, limit: int) -> list[Event]:
    """Events not yet evaluated, oldest ``published`` first."""
    uuids = pending_uuids(conn, limit)
    found = events_by_uuid(conn, uuids)
    return [found[u] for u in uuids if u in found]


def mark_evaluated(conn: sqlite3.Connection, uuids: Sequence[str], at: datetime) -> int:
    """Mark events evaluated; only still-pending ones count, so a repeat is harmless."""
    stamp = format_timestamp(at)
    before = conn.total_changes
    conn.executemany("UPDATE events SET evaluated_at = ? WHERE uuid = ? AND evaluated_at IS NULL",
                     [(stamp, u) for u in uuids])
    return conn.total_changes - before


def pending_summary(conn: sqlite3.Connection) -> tuple[int, str | None]:
    """How many events wait for evaluation, and the ``received_at`` of the oldest."""
    count, oldest = conn.execute(
        "SELECT count(*), min(received_at) FROM events WHERE evaluated_at IS NULL").fetchone()
    return int(count), oldest


def last_received(conn: sqlite3.Connection) -> str | None:
    """When the newest event was stored: the last row's (rowid order is stored order; no index needed)."""
    row = conn.execute("SELECT received_at FROM events ORDER BY rowid DESC LIMIT 1").fetchone()
    return row[0] if row else None


def list_events(conn: sqlite3.Connection, last: int, event_type: str | None = None) -> list[dict[str, Any]]:
    """The newest ``last`` events by ``published`` (newest last), optionally of one type or prefix."""
    where, args = "", []
    if event_type:
        if event_type.endswith("*"):
            where, args = "WHERE event_type LIKE ? ESCAPE '\\'", [_like_prefix(event_type[:-1])]
        else:
            where, args = "WHERE event_type = ?", [event_type]
    rows = conn.execute(
        f"SELECT uuid, event_type, published, received_at, evaluated_at, body FROM events {where} "
        "ORDER BY published DESC, uuid DESC LIMIT ?", (*args, last)).fetchall()
    return [
        {"uuid": r[0], "event_type": r[1], "published": r[2], "received_at": r[3], "evaluated_at": r[4],
         "body": json.loads(r[5])}
        for r in reversed(rows)
    ]


def list_quarantine(conn: sqlite3.Connection, last: int) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT id, received_at, path, reason, body FROM quarantine ORDER BY id DESC LIMIT ?",
                        (last,)).fetchall()
    return [{"id": r[0], "received_at": r[1], "path": r[2], "reason": r[3], "body": r[4]} for r in reversed(rows)]


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
