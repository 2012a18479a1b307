"""The store for one-shot commands (``sentinel alerts``, ``events``, ``redeliver``...): a plain connection,
one call at a time, beside a daemon that may be running (WAL lets both read; a write waits its turn)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from sentinel.errors import StoreError
from sentinel.silences import Silence
from sentinel.store import deliveries, events, silences
from sentinel.store.database import as_sentinel_error, connect

T = TypeVar("T")


class CliStore:
    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn

    def _run(self, what: str, fn: Callable[[sqlite3.Connection], T], *, write: bool = False) -> T:
        conn = self._conn
        try:
            if not write:
                return fn(conn)
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                raise StoreError(f"{self.path}: nothing stored yet (the daemon has not created the tables)") from e
            raise as_sentinel_error(e, f"{self.path}: {what}") from e
        except sqlite3.Error as e:
            raise as_sentinel_error(e, f"{self.path}: {what}") from e

    def list_alerts(self, since: datetime | None = None, rule: str | None = None,
                    limit: int = 100) -> list[dict[str, Any]]:
        return self._run("listing alerts", lambda c: deliveries.list_alerts(c, since, rule, limit))

    def get_alert(self, alert_id: int) -> dict[str, Any] | None:
        return self._run("reading an alert", lambda c: deliveries.get_alert(c, alert_id))

    def deliveries_for_alert(self, alert_id: int) -> list[dict[str, Any]]:
        return self._run("reading deliveries", lambda c: deliveries.deliveries_for_alert(c, alert_id))

    def list_deliveries(self, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        return self._run("listing deliveries", lambda c: deliveries.list_deliveries(c, status, limit))

    def redeliver(self, at: datetime, delivery_id: int | None = None, all_dead: bool = False) -> int:
        """Queue a delivery (or every dead one) again, due now; the running daemon sends it."""
        return self._run("queueing deliveries again",
                         lambda c: deliveries.redeliver(c, at, delivery_id, all_dead), write=True)

    def list_events(self, last: int, event_type: str | None = None) -> list[dict[str, Any]]:
        return self._run("listing events", lambda c: events.list_events(c, last, event_type))

    def list_quarantine(self, last: int) -> list[dict[str, Any]]:
        return self._run("listing quarantine", lambda c: events.list_quarantine(c, last))

    def add_silence(self, silence: Silence) -> int:
        """Store a new silence; returns its id. The running detector reads it within a few seconds."""
        return self._run("adding a silence", lambda c: silences.add_silence(c, silence), write=True)

    def list_silences(self, now: datetime, include_expired_for: timedelta = timedelta(days=7)) -> list[Silence]:
        return self._run("listing silences", lambda c: silences.list_silences(c, now, include_expired_for))

    def active_silences(self, now: datetime) -> list[Silence]:
        return self._run("reading silences", lambda c: silences.active_silences(c, now))

    def get_silence(self, silence_id: int) -> Silence | None:
        return self._run("reading a silence", lambda c: silences.get_silence(c, silence_id))

    def expire_silence(self, silence_id: int, at: datetime) -> bool:
        return self._run("expiring a silence", lambda c: silences.expire_silence(c, silence_id, at), write=True)

    def close(self) -> None:
        self._conn.close()


def open_for_cli(path: Path) -> CliStore:
    """The store for a one-shot command. Missing file: a clear error, not an empty new DB."""
    if not path.exists():
        raise FileNotFoundError(f"no database at {path} (has the daemon run with this config?)")
    try:
        return CliStore(path, connect(path))
    except sqlite3.Error as e:
        raise as_sentinel_error(e, f"opening {path}") from e
