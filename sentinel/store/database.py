"""Opening the SQLite file, and the one writer thread that groups commits across requests.

Every write is a job ``fn(conn) -> T`` submitted to one thread that owns the write connection. The
thread takes every job waiting, runs each inside its own SAVEPOINT of one transaction and commits
once (WAL, ``synchronous=FULL``), so concurrent requests share one fsync without giving up
durability. A job that raises is rolled back alone; a commit that fails fails every job in it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sentinel import private_files
from sentinel.errors import RecordRejected, SentinelError, StoreError

T = TypeVar("T")
log = logging.getLogger("sentinel.store")

# Okta waits ~3 s; a write stuck behind a lock must give up in time for a 503 that Okta retries.
BUSY_TIMEOUT_MS = 2000
MAX_JOBS_PER_COMMIT = 256
# The writer waits for another process's write lock (the daemon's dispatcher records and the detector's
# batches share the main file) by trying again this often, not with SQLite's busy handler: that one sleeps
# 1, 2, 5, 10, 15, 20, 25 ... ms between tries, so a lock held 6 ms cost a waiter 8 ms and one held 35 ms
# cost 53 ms (measured beside a back-fill: a dispatcher's record 9 ms at p99, 55 ms at most).
BEGIN_RETRY_SECONDS = 0.0005
WAL_FRAME_HEADER = 24  # bytes before each page in a WAL file
WAL_HEADER = 32


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection with Sentinel's settings. ``isolation_level=None``: we issue BEGIN/COMMIT ourselves."""
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
    else:
        private_files.create_file(path)  # 0600; SQLite's -wal and -shm files take the same mode
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys=ON")
    if not readonly:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
    return conn


def wal_file_bytes(conn: sqlite3.Connection, pages: int) -> int:
    """How long a WAL file of ``pages`` frames is (sqlite.org/fileformat2.html#walformat: a 32-byte header,
    then each page after a 24-byte frame header)."""
    return WAL_HEADER + pages * (int(conn.execute("PRAGMA page_size").fetchone()[0]) + WAL_FRAME_HEADER)


def describe(error: BaseException) -> str:
    """A short, secret-free reason for a store failure (SQLite messages carry no payload data)."""
    if isinstance(error, sqlite3.Error):
        return f"{error.__class__.__name__}: {error}"
    return error.__class__.__name__


def as_sentinel_error(error: sqlite3.Error, what: str) -> SentinelError:
    """A SQLite error as Sentinel's own, saying what failed. The store failing (locked, I/O, full,
    corrupt) is a :class:`StoreError`; SQLite refusing one record (a constraint, a value it cannot hold)
    is :class:`RecordRejected`."""
    rejected = (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.ProgrammingError, sqlite3.InterfaceError,
                sqlite3.NotSupportedError)
    kind = RecordRejected if isinstance(error, rejected) else StoreError
    return kind(f"{what}: {describe(error)}")


class _Job:
    __slots__ = ("fn", "future", "loop", "what")

    def __init__(self, fn: Callable[[sqlite3.Connection], Any], loop: asyncio.AbstractEventLoop,
                 what: str) -> None:
        self.fn = fn
        self.what = what
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()


class Writer:
    """The single thread that owns the write connection."""

    def __init__(self, path: Path, *, durable: bool = True, secure_delete: str | None = None,
                 wal_limit_pages: int | None = None) -> None:
        """``secure_delete``: this connection's ``PRAGMA secure_delete`` (None: the SQLite build's default).
        ``wal_limit_pages``: a WAL longer than this many pages is cut back to it when this connection's
        commit starts it over (``PRAGMA journal_size_limit``; None: never cut back)."""
        self._path = path
        self._durable = durable
        self._secure_delete = secure_delete
        self._wal_limit_pages = wal_limit_pages
        self._jobs: queue.SimpleQueue[list[_Job] | None] = queue.SimpleQueue()
        # Jobs submitted during one turn of an event loop, handed to the thread together at its end:
        # one thread wake-up (and GIL hand-over) per turn instead of one per request.
        self._gathering: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
        self._thread = threading.Thread(target=self._run, name="sentinel-writer", daemon=True)
        self._conn: sqlite3.Connection | None = None
        self.commits = 0

    def start(self) -> None:
        self._conn = connect(self._path)
        if not self._durable:  # for work that may be lost and redone (pruning): no fsync per commit
            self._conn.execute("PRAGMA synchronous=NORMAL")
            # nor a checkpoint after a commit: whoever owns the file decides when (inbox.checkpoint)
            self._conn.execute("PRAGMA wal_autocheckpoint=0")
        if self._secure_delete is not None:
            self._conn.execute(f"PRAGMA secure_delete={self._secure_delete}")
        if self._wal_limit_pages is not None:
            self._conn.execute(f"PRAGMA journal_size_limit={wal_file_bytes(self._conn, self._wal_limit_pages)}")
        self._thread.start()

    async def run(self, fn: Callable[[sqlite3.Connection], T], what: str = "write") -> T:
        """Run ``fn`` in the writer thread, in the next group commit; return once that is durable.
        ``what`` names the job in a :class:`StoreError`."""
        loop = asyncio.get_running_loop()
        job = _Job(fn, loop, what)
        gathering = self._gathering.get(loop)
        if gathering is None:
            gathering = self._gathering[loop] = []
            loop.call_soon(self._hand_over, loop)
        gathering.append(job)
        return await job.future  # type: ignore[no-any-return]

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        self._jobs.put(self._gathering.pop(loop))

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        """Finish every job already submitted, then close the connection."""
        if self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join()

    def _run(self) -> None:
        conn = self._conn
        assert conn is not None
        stopping = False
        while not stopping:
            first = self._jobs.get()
            if first is None:
                break
            batch = list(first)
            while len(batch) < MAX_JOBS_PER_COMMIT:
                try:
                    nxt = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stopping = True
                    break
                batch.extend(nxt)
            try:
                _settle(self._commit(conn, batch))
            except Exception:  # the writer must outlive any one bad batch
                log.exception("store writer: unexpected error")
                _settle([(job, None, StoreError("writer error")) for job in batch])
        conn.close()

    def _commit(self, conn: sqlite3.Connection, batch: list[_Job]) -> list[tuple[_Job, Any, BaseException | None]]:
        """Run the batch in one transaction. Returns each job's result or error, to be handed back
        only after the commit (a result must never be seen before it is durable)."""
        results: list[tuple[_Job, Any, BaseException | None]] = []
        try:
            if self._durable:
                begin_immediate(conn)
            else:  # background work (pruning): SQLite's backing-off wait leaves the lock to intake
                conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            return self._failed(batch, e)
        try:
            for job in batch:
                # A caller that gave up (timeout, client gone) cancelled its future: skip its job.
                if job.future.cancelled():
                    continue
                conn.execute("SAVEPOINT job")
                try:
                    value = job.fn(conn)
                except Exception as e:  # a failed job is rolled back alone
                    if not conn.in_transaction:  # SQLite gave up the whole transaction (disk full, I/O)
                        raise
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    results.append((job, None, as_sentinel_error(e, job.what) if isinstance(e, sqlite3.Error) else e))
                else:
                    conn.execute("RELEASE job")
                    results.append((job, value, None))
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            return self._failed(batch, e)
        self.commits += 1
        return results

    @staticmethod
    def _failed(batch: list[_Job], error: BaseException) -> list[tuple[_Job, Any, BaseException | None]]:
        log.error("store commit failed (%d jobs): %s", len(batch), describe(error))
        return [(job, None, StoreError(f"could not persist: {describe(error)} ({job.what})")) for job in batch]


def is_busy(error: sqlite3.Error) -> bool:
    """Whether ``error`` is another connection holding a lock (try again), not a failure."""
    return getattr(error, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) \
        or "locked" in str(error)


def begin_immediate(conn: sqlite3.Connection, timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
    """``BEGIN IMMEDIATE``, waiting up to ``timeout_ms`` for another connection's write lock by trying again
    every ``BEGIN_RETRY_SECONDS`` (blocking: for a writer's own thread). The connection's busy timeout,
    which still applies to everything else, is restored after."""
    conn.execute("PRAGMA busy_timeout=0")
    try:
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as e:
                if not is_busy(e) or time.monotonic() >= deadline:
                    raise
            time.sleep(BEGIN_RETRY_SECONDS)
    finally:
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")


def _settle(results: list[tuple[_Job, Any, BaseException | None]]) -> None:
    """Hand results back with one wake-up per event loop for the whole commit, not one per job."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Job, Any, BaseException | None]]] = {}
    for item in results:
        by_loop.setdefault(item[0].loop, []).append(item)
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, items)
        except RuntimeError:  # that loop is closed: nobody waits any more
            pass


def _resolve(items: list[tuple[_Job, Any, BaseException | None]]) -> None:
    for job, value, error in items:
        if job.future.done():  # cancelled meanwhile
            continue
        if error is None:
            job.future.set_result(value)
        else:
            job.future.set_exception(error)


class Reader:
    """One thread with its own read connection (WAL lets it read while the writer commits)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="sentinel-reader")
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = connect(self._path)
        return self._conn

    async def run(self, fn: Callable[[sqlite3.Connection], T], what: str = "read") -> T:
        def call() -> T:
            try:
                return fn(self._connection())
            except sqlite3.Error as e:
                raise as_sentinel_error(e, what) from e

        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    def stop(self) -> None:
        def close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        self._pool.submit(close).result()
        self._pool.shutdown(wait=True)
