"""Retention: rows older than ``[storage] retention_days`` leave the main database in small steps, and
the file gives the space back.

Each step is one short write job (at most ``PRUNE_CHUNK`` rows a table, or ``RECLAIM_PAGES`` pages),
so neither the detector's batches nor the dispatchers' status updates wait long for the lock. Age is
counted from when Sentinel stored a row (``received_at``; an alert's last ``updated_at``), not from the
event's ``published``: an Okta re-delivery (minutes later at most) can never bring back an event that
was pruned, and be evaluated twice. Never pruned, however old:

- events not yet evaluated: the detector still needs them;
- alerts with a delivery that is not sent (pending, or dead and waiting for ``sentinel redeliver``);
- rule state: the engine drops a group itself once its window has closed (``take_changes``).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime

from sentinel.model import format_timestamp

PRUNE_CHUNK = 500  # ~1 MB of events: a few milliseconds of write lock
RECLAIM_PAGES = 256  # 1 MB back to the file system per step (~10 ms)
AUTO_VACUUM_INCREMENTAL = 2


@dataclass(frozen=True, slots=True)
class Pruned:
    events: int = 0
    quarantine: int = 0
    alerts: int = 0
    deliveries: int = 0

    @property
    def total(self) -> int:
        return self.events + self.quarantine + self.alerts + self.deliveries

    def __add__(self, other: Pruned) -> Pruned:
        return Pruned(self.events + other.events, self.quarantine + other.quarantine,
                      self.alerts + other.alerts, self.deliveries + other.deliveries)


def prune_expired(conn: sqlite3.Connection, cutoff: datetime, chunk: int = PRUNE_CHUNK) -> Pruned:
    """Delete up to ``chunk`` expired events, quarantined elements and alerts (with their deliveries),
    oldest first. Run inside the writer's transaction."""
    stamp = format_timestamp(cutoff)
    # Rowid order is the order events were stored (received_at order, bar a clock stepped back): the
    # oldest ``chunk`` evaluated events are the window, and those of them past the cutoff go. A window
    # with nothing expired ends the sweep after reading ``chunk`` rows, not the whole table.
    events = conn.execute(
        "DELETE FROM events WHERE rowid IN (SELECT id FROM (SELECT rowid AS id, received_at FROM events "
        "WHERE evaluated_at IS NOT NULL ORDER BY rowid LIMIT ?) WHERE received_at < ?)", (chunk, stamp)).rowcount
    quarantine = conn.execute(
        "DELETE FROM quarantine WHERE id IN (SELECT id FROM quarantine WHERE received_at < ? ORDER BY id LIMIT ?)",
        (stamp, chunk)).rowcount
    # created_at <= updated_at: the condition on created_at only lets the alerts_created index find them.
    alert_ids = [row[0] for row in conn.execute(
        "SELECT id FROM alerts a WHERE created_at < ? AND updated_at < ? AND NOT EXISTS "
        "(SELECT 1 FROM deliveries d WHERE d.alert_id = a.id AND d.status NOT IN ('sent', 'digested')) "
        "ORDER BY created_at LIMIT ?",
        (stamp, stamp, chunk))]
    deliveries = alerts = 0
    if alert_ids:
        marks = ",".join("?" * len(alert_ids))
        deliveries = conn.execute(f"DELETE FROM deliveries WHERE alert_id IN ({marks})", alert_ids).rowcount
        conn.execute(f"DELETE FROM acknowledgements WHERE alert_id IN ({marks})", alert_ids)
        alerts = conn.execute(f"DELETE FROM alerts WHERE id IN ({marks})", alert_ids).rowcount
    return Pruned(events=events, quarantine=quarantine, alerts=alerts, deliveries=deliveries)


def reclaim_space(conn: sqlite3.Connection, pages: int = RECLAIM_PAGES) -> int:
    """Give up to ``pages`` free pages back to the file system; returns how many. 0 for a store made
    before auto_vacuum was turned on: SQLite reuses its free pages for new rows instead, so the file
    stops growing without shrinking (``VACUUM`` with the daemon stopped shrinks it)."""
    if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != AUTO_VACUUM_INCREMENTAL:
        return 0
    count = min(int(conn.execute("PRAGMA freelist_count").fetchone()[0]), pages)
    for _ in range(count):
        # Python's sqlite3 steps a statement that yields no columns once, and incremental_vacuum frees
        # one page per step: one page per call, whatever the argument.
        conn.execute("PRAGMA incremental_vacuum(1)")
    return count


def use_incremental_vacuum(conn: sqlite3.Connection, page_size: int | None = None) -> bool:
    """A new, empty database: make it able to give freed pages back (``reclaim_space``), and give it
    ``page_size`` if set. SQLite allows both only before the first table exists, and a page size only
    outside WAL mode; the VACUUM they need is instant on an empty file. Outside a transaction. Returns
    True when the file was new."""
    if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
        return False
    wal = conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    if page_size is not None:
        conn.execute("PRAGMA journal_mode=DELETE")
        conn.execute(f"PRAGMA page_size={int(page_size)}")
    conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
    conn.execute("VACUUM")
    if page_size is not None and wal:
        conn.execute("PRAGMA journal_mode=WAL")
    return True
