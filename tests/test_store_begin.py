"""The store's writers wait for another process's write lock by trying again every half millisecond, not
with SQLite's busy handler (1, 2, 5, 10, 15, 20, 25 ms ... between tries), whose sleeps kept a dispatcher's
record waiting up to 55 ms for a lock held a fraction of that (issue 16)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from sentinel.store import database
from sentinel.store.database import BUSY_TIMEOUT_MS, Writer, begin_immediate, connect


def held_for(path: Path, seconds: float) -> threading.Thread:
    """Another connection (as the other process would) holds the write lock for ``seconds``."""
    other = connect(path)
    other.execute("BEGIN IMMEDIATE")
    def release() -> None:
        other.execute("COMMIT")
        other.close()

    holding = threading.Timer(seconds, release)
    holding.start()
    return holding


def begins_while_locked(path: Path, durable: bool) -> list[str]:
    """The BEGIN IMMEDIATEs a writer runs for one job while another connection holds the lock for 50 ms;
    the job must go through."""
    connect(path).execute("CREATE TABLE t (x)")
    writer = Writer(path, durable=durable)
    writer.start()
    attempts: list[str] = []
    assert writer._conn is not None
    writer._conn.set_trace_callback(lambda sql: attempts.append(sql) if sql == "BEGIN IMMEDIATE" else None)
    holding = held_for(path, 0.05)
    try:
        asyncio.run(writer.run(lambda conn: conn.execute("INSERT INTO t VALUES (1)")))
    finally:
        holding.join()
        writer.stop()
    assert connect(path).execute("SELECT count(*) FROM t").fetchone() == (1,)
    return attempts


def test_a_writer_waiting_for_the_lock_tries_again_often_and_its_job_goes_through(tmp_path: Path) -> None:
    # SQLite's own busy handler makes one attempt and sleeps inside it; tries every 0.5 ms make many.
    assert len(begins_while_locked(tmp_path / "s.db", durable=True)) >= 10


def test_begin_gives_up_after_its_timeout_and_the_busy_timeout_is_restored(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    connect(path).execute("CREATE TABLE t (x)")
    conn = connect(path)
    holding = held_for(path, 0.3)
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            begin_immediate(conn, timeout_ms=50)
        assert not conn.in_transaction
        assert conn.execute("PRAGMA busy_timeout").fetchone() == (BUSY_TIMEOUT_MS,)
    finally:
        holding.join()
    begin_immediate(conn)  # free again: at once
    assert conn.in_transaction
    conn.execute("ROLLBACK")


def test_an_error_other_than_a_lock_is_not_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = connect(tmp_path / "s.db")
    conn.execute("BEGIN")  # BEGIN inside a transaction: an error at once, not a lock to wait for
    slept: list[float] = []
    monkeypatch.setattr(database, "time", type("Clock", (), {"sleep": staticmethod(slept.append),
                                                              "monotonic": staticmethod(lambda: 0.0)}))
    with pytest.raises(sqlite3.OperationalError, match="within a transaction"):
        begin_immediate(conn)
    assert slept == []
    assert conn.execute("PRAGMA busy_timeout").fetchone() == (BUSY_TIMEOUT_MS,)


def test_the_background_pruner_leaves_the_waiting_to_sqlite_so_intake_gets_the_inbox_first(tmp_path: Path) -> None:
    # One attempt, SQLite's backing-off wait inside it.
    assert begins_while_locked(tmp_path / "s.db", durable=False) == ["BEGIN IMMEDIATE"]
