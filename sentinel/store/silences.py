"""Silences in the store: added by `sentinel silence add` (or the triage page), read by the detector.

An expired silence keeps its row (``expired_at`` set) so the team sees what was muted, and by whom; it is
listed for a while after it ended (``include_expired_for``)."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta
from typing import Any

from sentinel.model import format_timestamp, parse_timestamp
from sentinel.silences import Silence

_COLUMNS = ("id", "rule", "matchers", "starts_at", "ends_at", "author", "comment", "created_at", "expired_at")
# Past this, a silence's end is stored as this (a silence "for ever" still has an end that sorts as text).
_FAR_FUTURE = "9999-12-31T00:00:00.000000Z"


def _from_row(row: tuple[Any, ...]) -> Silence:
    record = dict(zip(_COLUMNS, row, strict=True))
    matchers = json.loads(record["matchers"] or "[]")
    return Silence(
        id=int(record["id"]), rule=record["rule"],
        matchers=tuple((str(path), str(value)) for path, value in matchers),
        starts_at=parse_timestamp(record["starts_at"]), ends_at=parse_timestamp(record["ends_at"]),
        author=record["author"], comment=record["comment"], created_at=parse_timestamp(record["created_at"]),
        expired_at=parse_timestamp(record["expired_at"]) if record["expired_at"] else None,
    )


def add_silence(conn: sqlite3.Connection, silence: Silence) -> int:
    cursor = conn.execute(
        f"INSERT INTO silences ({', '.join(_COLUMNS[1:])}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (silence.rule, json.dumps([list(m) for m in silence.matchers], ensure_ascii=False),
         format_timestamp(silence.starts_at), min(format_timestamp(silence.ends_at), _FAR_FUTURE),
         silence.author, silence.comment, format_timestamp(silence.created_at),
         format_timestamp(silence.expired_at) if silence.expired_at else None))
    return int(cursor.lastrowid or 0)


def list_silences(conn: sqlite3.Connection, now: datetime,
                  include_expired_for: timedelta = timedelta(days=7)) -> list[Silence]:
    """Active and future silences, and those that ended less than ``include_expired_for`` ago; newest first."""
    cutoff = format_timestamp(now - include_expired_for)
    rows = conn.execute(
        f"SELECT {', '.join(_COLUMNS)} FROM silences WHERE ends_at >= ? AND (expired_at IS NULL OR expired_at >= ?) "
        "ORDER BY id DESC", (cutoff, cutoff)).fetchall()
    return [_from_row(row) for row in rows]


def active_silences(conn: sqlite3.Connection, now: datetime) -> list[Silence]:
    """The silences in force at ``now``, oldest first (the first match names what silenced an alert)."""
    stamp = format_timestamp(now)
    rows = conn.execute(
        f"SELECT {', '.join(_COLUMNS)} FROM silences WHERE starts_at <= ? AND ends_at > ? "
        "AND (expired_at IS NULL OR expired_at > ?) ORDER BY id", (stamp, stamp, stamp)).fetchall()
    return [_from_row(row) for row in rows]


def get_silence(conn: sqlite3.Connection, silence_id: int) -> Silence | None:
    row = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM silences WHERE id = ?", (silence_id,)).fetchone()
    return _from_row(row) if row else None


def expire_silence(conn: sqlite3.Connection, silence_id: int, at: datetime) -> bool:
    """End a silence now; False if there is none with that id or it had already ended."""
    stamp = format_timestamp(at)
    cursor = conn.execute(
        "UPDATE silences SET expired_at = ? WHERE id = ? AND expired_at IS NULL AND ends_at > ?",
        (stamp, silence_id, stamp))
    return cursor.rowcount == 1
