"""Shared bits for the proof tests (crash, hostile input): read-only store queries and process memory."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


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


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return check()


def rss_kib(pid: int) -> int:
    """Resident set size of a process in KiB, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")
