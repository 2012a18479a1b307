"""Intake's writer for the inbox: group commits whose INSERTs run on the event loop and whose COMMIT (the
fsync) runs in a thread.

A writer thread that ran every INSERT (``database.Writer``) cost intake about as much as parsing the
body: a thread hand-over per request, and the GIL bouncing between the thread and the event loop on
every SQLite call. Here a round is: ``BEGIN IMMEDIATE`` on the loop without waiting (a busy file is
retried a few milliseconds later, never blocking the loop), one ``executemany`` for every delivery
that arrived meanwhile, then the COMMIT in a thread while new deliveries queue for the next round.
An append returns only after its round's COMMIT is durable. One round at a time: the connection
is used by the loop or by the thread, never both.

The detector keeps the inbox's WAL short (inbox.checkpoint). Past ``WAL_AUTOCHECKPOINT_PAGES`` (it is
down, or behind after a burst) intake copies the WAL into the file itself, but on a thread and
connection of its own, as the detector does: the copy (PASSIVE) never blocks a commit, and only the
RESTART after it holds intake off, for the few frames appended meanwhile. SQLite's automatic checkpoint
runs inside the COMMIT that crosses the limit, and held every request of that round 100-240 ms at the
end of a maximum-rate burst (issue 16, docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeAlias

from sentinel.errors import StoreError
from sentinel.store import inbox
from sentinel.store.database import BUSY_TIMEOUT_MS, connect, describe, is_busy, wal_file_bytes

log = logging.getLogger("sentinel.store")
BUSY_RETRY_SECONDS = 0.002
MAX_APPENDS_PER_ROUND = 1024
WAL_AUTOCHECKPOINT_PAGES = inbox.INTAKE_CHECKPOINT_FRAMES  # the detector checkpoints; past this, intake too
# While a checkpoint cannot copy everything (a reader holds an old snapshot), the WAL grows on: intake
# tries again each time it has grown by this part of the limit, not after every commit.
RETRY_GROWTH_PART = 8
# A write that must commit with a body in the same transaction (the poller's cursor: store/poll_cursor.py).
AlsoWrite: TypeAlias = Callable[[sqlite3.Connection, str], None]


class Appender:
    def __init__(self, path: Path, now: Callable[[], str], autocheckpoint_pages: int = WAL_AUTOCHECKPOINT_PAGES,
                 *, checkpoint_in_commit: bool = False,
                 checkpoint: Callable[[sqlite3.Connection], object] | None = None) -> None:
        """``now``: the time as stored text, read once per round for the deliveries that came without one.
        ``autocheckpoint_pages``: past this many pages of WAL, intake checkpoints it (``checkpoint``, on a
        thread of its own), or with ``checkpoint_in_commit`` SQLite does in the COMMIT (its default way:
        the benchmarks' durable baseline)."""
        self._path = path
        self._now = now
        self._autocheckpoint_pages = autocheckpoint_pages
        self._checkpoint_in_commit = checkpoint_in_commit
        self._checkpoint = checkpoint or copy_and_restart
        self._wal_path = f"{path}-wal"
        self._wal_limit = 0  # bytes of WAL file, set in start() from the page size
        self._wal_seen = 0  # the WAL file's size after the last commit
        self._checked_at = 0  # its size when intake last started a checkpoint (0: since it was cut back)
        self._checkpointer = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="sentinel-inbox-checkpoint")
        self._checkpointer_conn: sqlite3.Connection | None = None
        self._checkpointing: concurrent.futures.Future[None] | None = None
        self.checkpoints = 0
        self._conn: sqlite3.Connection | None = None
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="sentinel-inbox")
        self._appends: list[tuple[str | None, bytes | None, asyncio.Future[None]]] = []
        self._also: dict[asyncio.Future[None], AlsoWrite] = {}
        self._probes: list[asyncio.Future[None]] = []  # /readyz: "can a round commit now?"
        self._round: asyncio.Future[None] | None = None  # the round in progress, if any
        self._scheduled = False
        self._busy_since: float | None = None
        self.commits = 0
        self.appended = 0
        self._closed = False

    def start(self) -> None:
        self._conn = connect(self._path)
        # BEGIN must never wait on the event loop: a busy file is retried by _round_start instead.
        self._conn.execute("PRAGMA busy_timeout=0")
        # Copying the WAL back into the file (a checkpoint) costs as much again as writing it: the
        # detector does it, on its own core (Detector.prune_once). Intake only once the WAL holds
        # WAL_AUTOCHECKPOINT_PAGES since it last started over: after the commit, see _check_wal.
        pages = int(self._autocheckpoint_pages)
        if self._checkpoint_in_commit:
            self._conn.execute(f"PRAGMA wal_autocheckpoint={pages}")
            return
        self._conn.execute("PRAGMA wal_autocheckpoint=0")
        self._wal_limit = wal_file_bytes(self._conn, pages)
        # A WAL that grew past the limit is cut back to it when a commit of ours starts it over, so
        # that the file's size says how long the WAL is whenever it is past the limit (_check_wal).
        self._conn.execute(f"PRAGMA journal_size_limit={self._wal_limit}")

    async def append(self, body: bytes | None, received_at: str | None = None, also: AlsoWrite | None = None) -> None:
        """Store one delivery body; returns once it is durable. Without ``received_at``, the body is
        stamped with the time its round starts (one clock reading for all, milliseconds after arrival).
        ``also(conn, now)`` runs in the same transaction (the poller's cursor); ``body`` None: only that."""
        future = self._next_round_future()
        self._appends.append((received_at, body, future))
        if also is not None:
            self._also[future] = also
        await future

    async def probe(self) -> None:
        """Returns once a round (BEGIN IMMEDIATE ... COMMIT) has gone through: the inbox is writable."""
        future: asyncio.Future[None] = self._next_round_future()
        self._probes.append(future)
        await future

    def alive(self) -> bool:
        return self._conn is not None and not self._closed

    def _next_round_future(self) -> asyncio.Future[None]:
        if self._conn is None or self._closed:
            raise StoreError("the inbox is closed")
        loop = asyncio.get_running_loop()
        if not self._scheduled and self._round is None:
            self._scheduled = True
            loop.call_soon(self._round_start)
        return loop.create_future()

    def _round_start(self) -> None:
        """On the loop: open the transaction and insert what waits, then hand the COMMIT to the thread."""
        self._scheduled = False
        conn = self._conn
        if conn is None or self._round is not None or not (self._appends or self._probes):
            return
        loop = asyncio.get_running_loop()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            # Locked by another connection: try again shortly; give up (503) after the busy timeout.
            now = loop.time()
            self._busy_since = self._busy_since or now
            if is_busy(e) and now - self._busy_since < BUSY_TIMEOUT_MS / 1000:
                self._scheduled = True
                loop.call_later(BUSY_RETRY_SECONDS, self._round_start)
                return
            self._busy_since = None
            self._fail(self._take_all(), e)
            return
        self._busy_since = None
        appends = [a for a in self._appends[:MAX_APPENDS_PER_ROUND] if not a[2].cancelled()]
        for _, _, gone in self._appends[:MAX_APPENDS_PER_ROUND]:
            if gone.cancelled():
                self._also.pop(gone, None)
        self._appends = self._appends[MAX_APPENDS_PER_ROUND:]
        waiting = [future for _, _, future in appends] + self._probes
        self._probes = []
        try:
            stamp_now = self._now()
            conn.executemany(inbox.INSERT_RECEIVED,
                             [(stamp or stamp_now, body) for stamp, body, _ in appends if body is not None])
            for _, _, future in appends:
                also = self._also.pop(future, None)
                if also is not None:
                    also(conn, stamp_now)
        except Exception as e:  # sqlite3.Error, or a bug in an ``also``: the round fails whole
            for _, _, future in appends:
                self._also.pop(future, None)
            _rollback(conn)
            self._fail(waiting, e)
            self._next_if_waiting(loop)
            return
        self._round = loop.create_future()
        commit = loop.run_in_executor(self._thread, self._commit, conn)
        bodies = sum(1 for _, body, _ in appends if body is not None)
        commit.add_done_callback(lambda done: self._round_end(done, waiting, bodies))

    def _commit(self, conn: sqlite3.Connection) -> None:
        """In the thread: the COMMIT (the fsync)."""
        try:
            conn.execute("COMMIT")  # with checkpoint_in_commit, SQLite's automatic checkpoint too
        except sqlite3.Error:
            _rollback(conn)
            raise
        if not self._checkpoint_in_commit:
            self._check_wal()

    def _check_wal(self) -> None:
        """In the commit thread, after a COMMIT: start a checkpoint on intake's own thread if the WAL
        is past the limit and none is running. The WAL file's size is the WAL's length only while it
        is past the limit: below it, a restarted WAL reuses the file from its start (journal_size_limit)."""
        try:
            size = os.stat(self._wal_path).st_size
        except OSError:
            return  # no WAL file (yet): nothing to copy
        if size < self._wal_seen:
            self._checked_at = 0  # the WAL started over and was cut back: a new one to watch
        self._wal_seen = size
        if size <= self._wal_limit or size < self._checked_at + self._wal_limit // RETRY_GROWTH_PART:
            return
        if self._checkpointing is not None and not self._checkpointing.done():
            return
        self._checked_at = size
        self._checkpointing = self._checkpointer.submit(self._checkpoint_wal)

    def _checkpoint_wal(self) -> None:
        """On intake's checkpoint thread: copy the WAL into the file, then have the next commit start it over."""
        try:
            if self._checkpointer_conn is None:
                self._checkpointer_conn = connect(self._path)
            self._checkpoint(self._checkpointer_conn)
            self.checkpoints += 1
        except Exception as e:  # sqlite3.Error, OSError: the WAL grows on and the next check tries again
            log.warning("intake could not checkpoint the inbox: %s", describe(e))

    def checkpoint_running(self) -> concurrent.futures.Future[None] | None:
        """The checkpoint intake started last, if any (done or not): for tests and for close()."""
        return self._checkpointing

    def _round_end(self, done: asyncio.Future[None], waiting: list[asyncio.Future[None]], appended: int) -> None:
        """On the loop: the COMMIT is done (or failed): answer everyone in the round, start the next."""
        loop = asyncio.get_running_loop()
        assert self._round is not None
        self._round.set_result(None)
        self._round = None
        error = done.exception() if not done.cancelled() else StoreError("inbox writer stopped")
        if error is not None:
            self._fail(waiting, error)
        else:
            self.commits += 1
            self.appended += appended
            for future in waiting:
                if not future.done():
                    future.set_result(None)
        self._next_if_waiting(loop)

    def _next_if_waiting(self, loop: asyncio.AbstractEventLoop) -> None:
        if (self._appends or self._probes) and not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._round_start)

    def _take_all(self) -> list[asyncio.Future[None]]:
        waiting = [future for _, _, future in self._appends] + self._probes
        self._appends, self._probes = [], []
        self._also.clear()
        return waiting

    @staticmethod
    def _fail(waiting: list[asyncio.Future[None]], error: BaseException) -> None:
        log.error("inbox commit failed (%d waiting): %s", len(waiting), describe(error))
        for future in waiting:
            if not future.done():
                future.set_exception(StoreError(f"could not persist: {describe(error)}"))

    def close(self) -> None:
        """Close once intake has stopped: a COMMIT in flight is waited for (its callers were answered
        or are gone); nothing new is accepted."""
        self._closed = True
        self._thread.shutdown(wait=True)
        self._checkpointer.shutdown(wait=True)  # no new one once the commits have stopped
        if self._checkpointer_conn is not None:
            self._checkpointer_conn.close()
            self._checkpointer_conn = None
        if self._conn is not None:
            _rollback(self._conn)  # a round whose COMMIT never ran: its callers got no answer
            self._conn.close()
            self._conn = None


def copy_and_restart(conn: sqlite3.Connection) -> bool:
    """The detector's checkpoint (inbox.checkpoint): a PASSIVE copy, which never holds intake off, but
    which under steady appends never reaches the WAL's last frame (so SQLite would never start the WAL
    over), then a RESTART that holds intake off while it copies the few frames appended meanwhile."""
    return inbox.checkpoint(conn, restart=True)


def _rollback(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass
