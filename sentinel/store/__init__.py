"""The store: the only SQL in Sentinel. Two SQLite files, WAL, durable group commits: the main database
(events, alerts, deliveries, rule state; one writer thread) and the inbox (deliveries as received;
appended to by intake, see appender.py, and pruned by the detector)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from sentinel.clock import Clock, SystemClock
from sentinel.model import format_timestamp
from sentinel.store import inbox, retention
from sentinel.store.appender import Appender
from sentinel.store.database import Reader, Writer, connect
from sentinel.store.schema import migrate

T = TypeVar("T")

__all__ = ["Store", "connect", "open_for_cli"]


class Store:
    """Async access to the SQLite files for the daemon: ``write`` jobs are group-committed.

    ``intake=False`` is the detector process's view: it never appends to the inbox (the intake process
    is the inbox's only writer), and it does not migrate (the intake process did, before starting it).
    """

    def __init__(self, path: Path, *, intake: bool = True, clock: Clock | None = None) -> None:
        self.path = path
        clock = clock or SystemClock()
        self.inbox_path = inbox.inbox_path(path)
        self.intake = intake
        self._writer = Writer(path)
        self._reader = Reader(path)
        self._inbox_writer = Appender(self.inbox_path, lambda: format_timestamp(clock.now())) if intake else None
        self._inbox_reader = Reader(self.inbox_path)
        # The detector's side of the inbox: deleting what it has unpacked (a lost prune is redone).
        self._inbox_pruner = Writer(self.inbox_path, durable=False)
        self.inbox_generation = ""
        self._started = False

    def start(self, now: datetime) -> list[int]:
        """Create or migrate the schema (intake side), then start the writers. Returns the migrations applied."""
        applied: list[int] = []
        if self.intake:
            conn = connect(self.path)
            try:
                retention.use_incremental_vacuum(conn)  # a new store only: before its first table
                applied = migrate(conn, format_timestamp(now))
            finally:
                conn.close()
        conn = connect(self.inbox_path)
        try:
            self.inbox_generation = inbox.prepare(conn) if self.intake else inbox.generation(conn)
        finally:
            conn.close()
        self._writer.start()
        self._inbox_pruner.start()
        if self._inbox_writer is not None:
            self._inbox_writer.start()
        self._started = True
        return applied

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in the writer thread inside a transaction; returns after its durable commit."""
        return await self._writer.run(fn)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._reader.run(fn)

    async def receive(self, body: bytes, received_at: datetime | None = None) -> None:
        """Append a delivery body to the inbox; returns after its durable commit. ``received_at``
        defaults to the clock's time when the group commit carrying it starts."""
        if self._inbox_writer is None:
            raise RuntimeError("this store does not take deliveries (intake=False)")
        await self._inbox_writer.append(body, format_timestamp(received_at) if received_at else None)

    async def prune_inbox(self, upto: int) -> int:
        """Drop (a chunk of) the inbox rows up to ``upto``, already unpacked into the main database."""
        return await self._inbox_pruner.run(lambda conn: inbox.prune(conn, upto))

    async def read_inbox(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._inbox_reader.run(fn)

    async def check_writable(self) -> None:
        """Both files take a write transaction now (for /readyz)."""
        await self.write(lambda conn: conn.execute("SELECT 1").fetchone())
        if self._inbox_writer is not None:
            await self._inbox_writer.probe()

    def healthy(self) -> bool:
        return self._writer.alive() and self._inbox_pruner.alive() and \
            (self._inbox_writer is None or self._inbox_writer.alive())

    @property
    def commits(self) -> int:
        return self._writer.commits

    def close(self) -> None:
        if self._started:
            if self._inbox_writer is not None:
                self._inbox_writer.close()
            self._inbox_pruner.stop()
            self._writer.stop()
            self._reader.stop()
            self._inbox_reader.stop()
            self._started = False


def open_for_cli(path: Path) -> sqlite3.Connection:
    """A plain connection for one-shot commands. Missing file: a clear error, not an empty new DB."""
    if not path.exists():
        raise FileNotFoundError(f"no database at {path} (has the daemon run with this config?)")
    return connect(path)
