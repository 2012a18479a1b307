"""The inbox: Okta delivery bodies exactly as received, stored by intake before it answers.

Intake only appends here (one row per delivery, one group-committed fsync for many requests); the
detector unpacks rows into events later, in id order, then deletes them and checkpoints the file. The
inbox is a SQLite file of its own, so intake's commits never wait for the detector's (SQLite has one
writer per file).

What has been unpacked is recorded in the *main* database, in the same transaction as the events
(``inbox_cursor``), so a delivery is unpacked exactly once whatever crashes when. The cursor is keyed
by the inbox's generation (a random id made with the file): a deleted and recreated inbox restarts
its ids, and must not be mistaken for one already unpacked. Ids are AUTOINCREMENT, never reused
after pruning, for the same reason.
"""

from __future__ import annotations

import os
import sqlite3
import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from sentinel.model import format_timestamp
from sentinel.okta import Delivery
from sentinel.store import poll_cursor
from sentinel.store.database import BUSY_TIMEOUT_MS, is_busy
from sentinel.store.events import IngestResult, store_delivery

# Per unpacking pass: enough to amortise a commit, small enough to keep a transaction short.
UNPACK_MAX_ROWS = 500
UNPACK_MAX_BYTES = 1024 * 1024  # about as many events as the detector evaluates in one batch
PRUNE_CHUNK = 100  # 100 rows of 10-event bodies: ~4 ms holding the lock intake appends under (1,000: ~70 ms)
RESTART_MIN_FRAMES = 1024  # 4 MB of WAL: below it, a RESTART's stall buys little
RESTART_BUSY_MS = 50  # how long a RESTART waits for intake's commit in flight before giving up till next time
# ... trying again this often. Not SQLite's busy handler: a RESTART that has the write lock holds intake off
# while it waits for the detector's readers, and the handler sleeps 1, 2, 5, 10 ms between looks, on top of
# the RESTART's own copy and fsync (10-15 ms once a second while draining a backlog, measured). Tried without
# waiting, a RESTART that meets a reader copies what it can, gives the lock back and is tried again.
RESTART_RETRY_SECONDS = 0.0005
RESTART_MAX_LEFT_FRAMES = 256  # 1 MB: what a RESTART may have to copy itself while it holds intake off
# A copy and its sync took 70-400 ms at intake's maximum rate, long enough for intake to append 10 MB
# meanwhile, which the RESTART then copied and synced while holding intake off (33-210 ms, measured). So
# before a RESTART, more copies (each synced) catch up with the WAL's end, off the lock, until one finds
# this few frames appended since the one before it, or after this many; the RESTART is left with what
# was appended during the last one (a few ms, or one sync's worth while the disk is busy).
CATCH_UP_FRAMES = 64
CATCH_UP_COPIES = 4
# A last copy that still found more than this appended behind the one before: intake outpaces the copies
# (the detector's core busy too), and a RESTART now would copy as much holding intake off (9,309 frames:
# 109 ms, measured). Not this time, unless the WAL is past RESTART_ANYWAY_FRAMES (its bound).
CATCH_UP_MAX_LEFT_FRAMES = 2048  # 8 MB
# Past this many pages of WAL since it last started over, intake checkpoints too, on a thread of its own
# (sentinel/store/appender.py): the detector is down, or does not keep up.
INTAKE_CHECKPOINT_FRAMES = 16_384  # 64 MB
# Past this many, the detector starts the WAL over at its next copy, not at its once-a-second turn: at
# intake's maximum rate the WAL grew past intake's threshold between turns, and intake then copied it (on
# the request path then: stalls of 100-240 ms). At that rate a RESTART still often finds intake's commits
# in its way for all of RESTART_BUSY_MS (measured): this makes it rarer, not impossible.
RESTART_NOW_FRAMES = INTAKE_CHECKPOINT_FRAMES // 2
RESTART_ANYWAY_FRAMES = 2 * INTAKE_CHECKPOINT_FRAMES  # 128 MB: see CATCH_UP_MAX_LEFT_FRAMES


def inbox_path(db_path: Path) -> Path:
    """``state/sentinel.db`` -> ``state/sentinel.inbox.db``."""
    return db_path.with_name(f"{db_path.stem}.inbox{db_path.suffix or '.db'}")


def prepare(conn: sqlite3.Connection) -> str:
    """Create the inbox tables if missing; return the inbox's generation id."""
    conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute("CREATE TABLE IF NOT EXISTS received (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                 "received_at TEXT NOT NULL, body BLOB NOT NULL)")
    conn.execute(poll_cursor.CREATE_TABLE)
    conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('generation', ?)", (uuid.uuid4().hex,))
    return generation(conn)


def generation(conn: sqlite3.Connection) -> str:
    return str(conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])


INSERT_RECEIVED = "INSERT INTO received (received_at, body) VALUES (?, ?)"


def receive(conn: sqlite3.Connection, body: bytes, received_at: str) -> int:
    """Append one delivery body; returns its id. (Intake appends many at once: store/appender.py.)"""
    cursor = conn.execute(INSERT_RECEIVED, (received_at, body))
    return int(cursor.lastrowid or 0)


def waiting(conn: sqlite3.Connection, after: int, max_rows: int = UNPACK_MAX_ROWS,
            max_bytes: int = UNPACK_MAX_BYTES) -> list[tuple[int, str, bytes]]:
    """The next deliveries after id ``after``, oldest first: at most ``max_rows``, and no more than
    ``max_bytes`` of bodies unless a single one is larger."""
    rows: list[tuple[int, str, bytes]] = []
    size = 0
    for row_id, received_at, body in conn.execute(
            "SELECT id, received_at, body FROM received WHERE id > ? ORDER BY id LIMIT ?", (after, max_rows)):
        if rows and size + len(body) > max_bytes:
            break
        rows.append((row_id, received_at, bytes(body)))
        size += len(body)
    return rows


def backlog(conn: sqlite3.Connection, after: int) -> tuple[int, str | None]:
    """How many deliveries wait to be unpacked, and the ``received_at`` of the oldest."""
    count, oldest = conn.execute("SELECT count(*), min(received_at) FROM received WHERE id > ?",
                                 (after,)).fetchone()
    return int(count), oldest


def waiting_count(conn: sqlite3.Connection, after: int, most: int) -> int:
    """:func:`backlog`'s count, up to ``most`` (it reads no more rows than that)."""
    return int(conn.execute("SELECT count(*) FROM (SELECT 1 FROM received WHERE id > ? LIMIT ?)",
                            (after, most)).fetchone()[0])


def last_received(conn: sqlite3.Connection) -> str | None:
    row = conn.execute("SELECT received_at FROM received ORDER BY id DESC LIMIT 1").fetchone()
    return str(row[0]) if row else None


def prune(conn: sqlite3.Connection, upto: int, chunk: int = PRUNE_CHUNK) -> int:
    """Delete up to ``chunk`` deliveries already unpacked (their events are in the main database). In
    chunks, so that intake, which appends to the same file, never waits long for the lock."""
    first = conn.execute("SELECT min(id) FROM received").fetchone()[0]
    if first is None or first > upto:
        return 0
    return conn.execute("DELETE FROM received WHERE id <= ?", (min(upto, first + chunk - 1),)).rowcount


def checkpoint(conn: sqlite3.Connection, restart: bool = False, due: bool = True) -> bool:
    """Copy the inbox's WAL into its file without blocking intake (PASSIVE). Intake leaves this to the
    detector unless the WAL grows long (sentinel/store/appender.py); outside a transaction.

    ``restart``: then, if due (or the WAL holds ``RESTART_NOW_FRAMES`` or more), the WAL holds
    ``RESTART_MIN_FRAMES`` or more and the PASSIVE copy left at most ``RESTART_MAX_LEFT_FRAMES``, more
    PASSIVE copies catch up with what intake appended meanwhile (``CATCH_UP_FRAMES``; no RESTART this
    time if they cannot, ``CATCH_UP_MAX_LEFT_FRAMES``), then a RESTART checkpoint (it holds intake off
    for the few frames appended since the last copy and one fsync, tried for at most ``RESTART_BUSY_MS``
    while intake's commit in flight or a reader is in the way), so that intake's next commit starts the
    WAL over. Under steady appends a PASSIVE copy never catches up with the last frame, and the WAL only
    grows till intake's own checkpoint (store/appender.py) copies it. Returns whether the WAL was restarted
    (or started over by itself meanwhile)."""
    frames, copied = _copy(conn)
    if not restart or not (due or frames >= RESTART_NOW_FRAMES) or frames < RESTART_MIN_FRAMES \
            or frames - copied > RESTART_MAX_LEFT_FRAMES:
        # Not its turn, a short WAL, or too much left to copy (a reader kept the PASSIVE copy back: the
        # RESTART would copy it while holding intake off, 1.7 s stalls measured during a backlog). Next time.
        return False
    for _ in range(CATCH_UP_COPIES):
        seen = frames
        frames, copied = _copy(conn, copied)
        if frames < 0:
            return False  # the other checkpoint (intake's or the detector's) is running: (-1, -1) then
        if frames < seen:
            # Started over meanwhile: a copy reached the WAL's end and intake's next commit started it
            # over (SQLite does when nothing is left to copy), or intake's own checkpoint did.
            return True
        if frames - copied > RESTART_MAX_LEFT_FRAMES:
            return False  # a reader in the way now: as above
        if frames - seen <= CATCH_UP_FRAMES:
            break
    else:
        if frames - seen > CATCH_UP_MAX_LEFT_FRAMES and frames < RESTART_ANYWAY_FRAMES:
            return False
    conn.execute("PRAGMA busy_timeout=0")
    try:
        deadline = time.monotonic() + RESTART_BUSY_MS / 1000
        while True:
            try:
                busy, _, _ = conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
            except sqlite3.OperationalError as e:
                if not is_busy(e):
                    raise
                busy = 1
            if not busy or time.monotonic() >= deadline:
                return not busy
            time.sleep(RESTART_RETRY_SECONDS)
    finally:
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")


def _copy(conn: sqlite3.Connection, copied_before: int = 0) -> tuple[int, int]:
    """A PASSIVE copy, synced if it copied more than ``copied_before`` frames in all: (frames in the WAL
    as it began, frames copied in all)."""
    _, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    # Synced whenever anything was copied: ``copied == frames`` does not say SQLite synced it, since the
    # counts are the copy's own view of the WAL and SQLite compares with its end as it is after the copy.
    if copied > copied_before:
        sync_database_file(conn)
    return frames, copied


def sync_database_file(conn: sqlite3.Connection) -> None:
    """fdatasync the connection's database file. SQLite syncs it after a checkpoint only when the copy
    reached the WAL's last frame, which under intake's steady appends a PASSIVE copy never does: the
    pages it copied stayed dirty until the RESTART, whose own sync then wrote a second's worth of them
    while holding intake off (12-30 ms measured, once a second while draining a backlog). Synced here,
    with intake not held, the RESTART's sync has only its own few frames left."""
    path = conn.execute("PRAGMA database_list").fetchone()[2]
    if not path:  # an in-memory database: nothing to sync
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


def unpacked_upto(main: sqlite3.Connection, inbox_generation: str) -> int:
    """The last inbox id unpacked into the main database, for this inbox generation (0: none)."""
    row = main.execute("SELECT last_id FROM inbox_cursor WHERE generation = ?", (inbox_generation,)).fetchone()
    return int(row[0]) if row else 0


def set_unpacked_upto(main: sqlite3.Connection, inbox_generation: str, last_id: int) -> None:
    main.execute("INSERT INTO inbox_cursor (generation, last_id) VALUES (?, ?) "
                 "ON CONFLICT (generation) DO UPDATE SET last_id = max(last_id, excluded.last_id)",
                 (inbox_generation, last_id))


def record_unpacked(main: sqlite3.Connection, inbox_generation: str, last_id: int,
                    deliveries: Sequence[tuple[str, Delivery]], evaluated_at: datetime | None = None,
                    ) -> list[IngestResult]:
    """Store the events and quarantined elements of unpacked deliveries and move the cursor past them,
    in one transaction of the main database (the caller's job); ``evaluated_at``: see events.ingest."""
    # received_at is the inbox's stored text already (format_timestamp's): stored as it is.
    evaluated = format_timestamp(evaluated_at) if evaluated_at is not None else None
    results = [store_delivery(main, d.events, d.quarantined, received_at, evaluated) for received_at, d in deliveries]
    set_unpacked_upto(main, inbox_generation, last_id)
    return results
