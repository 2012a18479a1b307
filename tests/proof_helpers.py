"""Shared bits for the proof tests (crash, hostile input): read-only store queries and process memory."""

from __future__ import annotations

import inspect
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from sentinel.store.inbox import inbox_path


def query(db: Path, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows from the daemon's store through a separate read-only connection (WAL lets us read while it writes)."""
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return list(conn.execute(sql, args))
    finally:
        conn.close()


def scalar(db: Path, sql: str, args: tuple[Any, ...] = ()) -> Any:
    rows = query(db, sql, args)
    return rows[0][0] if rows else None


def inbox_received(db: Path) -> int:
    """How many deliveries intake has ever stored in the inbox beside ``db`` (ids are never reused)."""
    return int(scalar(inbox_of(db), "SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'received'")
               or 0)


def inbox_backlog(db: Path) -> int:
    """Deliveries stored by intake but not yet unpacked into events by the detector."""
    generation = scalar(inbox_of(db), "SELECT value FROM meta WHERE key = 'generation'")
    if generation is None:
        return 0
    cursor = scalar(db, "SELECT last_id FROM inbox_cursor WHERE generation = ?", (generation,)) or 0
    return int(scalar(inbox_of(db), "SELECT count(*) FROM received WHERE id > ?", (cursor,)) or 0)


def settled(db: Path) -> bool:
    """The detector has caught up: every stored delivery unpacked, every event evaluated."""
    return inbox_backlog(db) == 0 and scalar(db, "SELECT count(*) FROM events WHERE evaluated_at IS NULL") == 0


def inbox_of(db: Path) -> Path:
    return inbox_path(db)


class WaitTimeout(AssertionError):
    """What a test waited for did not come in time (an AssertionError, so pytest shows it as a failure)."""


def _describe(check: Callable[[], object]) -> str:
    try:
        return inspect.getsource(check).strip()
    except (OSError, TypeError):
        return repr(check)


def wait_until(check: Callable[[], object], timeout: float, interval: float = 0.1,
               detail: Callable[[], str] | None = None) -> Literal[True]:
    """Poll until ``check()`` is true; raise WaitTimeout naming the check (and ``detail()``) if it never is.

    Returns True so that ``assert wait_until(...)`` still reads as an assertion; it never returns False."""
    deadline = time.monotonic() + timeout
    while True:
        last = check()
        if last:
            return True
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    message = f"waited {timeout:g} s for: {_describe(check)} (last value {last!r})"
    if detail is not None:
        message += "\n" + detail()
    raise WaitTimeout(message)


def rss_kib(pid: int) -> int:
    """Resident set size of a process in KiB, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")
