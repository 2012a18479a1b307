"""Where the System Log poller stands: one ``poll_cursor`` row per source (the API's base URL) in the
*inbox* database, written in the same transaction as the (last part of the) page of events it was read after.

The poller's events go into the inbox like a hook delivery (the detector unpacks, dedupes on uuid and
evaluates them the same way), so the page's last part and the cursor that follows it commit together: a
crash before that commit reads the page again (its earlier parts' events come twice and are dropped on
uuid; the old cursor is stored); after it, nothing is read again.

- ``next_url``: the ``rel="next"`` link to request next, verbatim.
- ``resume_url``: while a bounded catch-up read runs (after Okta refused a cursor), the polling request to
  continue with once it has no next page; None otherwise.
- ``event_types``: the ``eventType`` filter the URLs carry (None: every type), to notice a change of rules.
- ``covered_until``: the newest ``published`` polled so far (or where the first read began): a refused
  cursor restarts from there, minus an overlap.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime

from sentinel.model import format_timestamp, parse_timestamp

CREATE_TABLE = ("CREATE TABLE IF NOT EXISTS poll_cursor (source TEXT PRIMARY KEY, next_url TEXT NOT NULL, "
                "resume_url TEXT, event_types TEXT, covered_until TEXT, updated_at TEXT NOT NULL)")


@dataclass(frozen=True, slots=True)
class PollCursor:
    source: str
    next_url: str
    resume_url: str | None = None
    event_types: tuple[str, ...] | None = None
    covered_until: datetime | None = None


def read(conn: sqlite3.Connection, source: str) -> PollCursor | None:
    row = conn.execute("SELECT next_url, resume_url, event_types, covered_until FROM poll_cursor WHERE source = ?",
                       (source,)).fetchone()
    if row is None:
        return None
    next_url, resume_url, types, covered = row
    return PollCursor(source, str(next_url), resume_url,
                      tuple(json.loads(types)) if types is not None else None,
                      parse_timestamp(covered) if covered else None)


def write(conn: sqlite3.Connection, cursor: PollCursor, updated_at: str) -> None:
    conn.execute(
        "INSERT INTO poll_cursor (source, next_url, resume_url, event_types, covered_until, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (source) DO UPDATE SET next_url = excluded.next_url, "
        "resume_url = excluded.resume_url, event_types = excluded.event_types, "
        "covered_until = excluded.covered_until, updated_at = excluded.updated_at",
        (cursor.source, cursor.next_url, cursor.resume_url,
         json.dumps(list(cursor.event_types)) if cursor.event_types is not None else None,
         format_timestamp(cursor.covered_until) if cursor.covered_until else None, updated_at))


def as_delivery(page_body: bytes) -> bytes:
    """A System Log page (a JSON array, as received) as the inbox's delivery body: the array unchanged,
    inside the envelope an Event Hook delivery has, so the detector's one unpacking path reads both."""
    return b'{"data":{"events":' + page_body + b"}}"
