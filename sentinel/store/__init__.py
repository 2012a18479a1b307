"""The store: the only SQL in Sentinel. One writer thread, one reader thread, WAL, durable commits."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from sentinel.model import format_timestamp
from sentinel.store.database import Reader, Writer, connect
from sentinel.store.schema import migrate

T = TypeVar("T")

__all__ = ["Store", "connect", "open_for_cli"]


class Store:
    """Async access to the SQLite file for the daemon: ``write`` jobs are group-committed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer = Writer(path)
        self._reader = Reader(path)
        self._started = False

    def start(self, now: datetime) -> list[int]:
        """Create or migrate the schema, then start the writer. Returns the migrations applied."""
        conn = connect(self.path)
        try:
            applied = migrate(conn, format_timestamp(now))
        finally:
            conn.close()
        self._writer.start()
        self._started = True
        return applied

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in the writer thread inside a transaction; returns after its durable commit."""
        return await self._writer.run(fn)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._reader.run(fn)

    def healthy(self) -> bool:
        return self._writer.alive()

    @property
    def commits(self) -> int:
        return self._writer.commits

    def close(self) -> None:
        if self._started:
            self._writer.stop()
            self._reader.stop()
            self._started = False


def open_for_cli(path: Path) -> sqlite3.Connection:
    """A plain connection for one-shot commands. Missing file: a clear error, not an empty new DB."""
    if not path.exists():
        raise FileNotFoundError(f"no database at {path} (has the daemon run with this config?)")
    return connect(path)
