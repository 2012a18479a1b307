"""The detector's checkpoint of the inbox lets the WAL start over while intake keeps appending (issue 16).

Under steady appends a PASSIVE checkpoint never copies the frame committed while it ran, so SQLite never
starts the WAL over: it grows until intake's own automatic checkpoint copies it on the request path. A
RESTART after the PASSIVE copy (``inbox.checkpoint(restart=True)``) closes that gap."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from sentinel.store import inbox
from sentinel.store.database import connect

BODY = b"x" * 8000  # two pages a row


def setup(path: Path) -> tuple[sqlite3.Connection, sqlite3.Connection]:
    writer = connect(path)  # intake's side
    writer.execute("PRAGMA wal_autocheckpoint=0")  # as if intake's fallback threshold were not reached
    inbox.prepare(writer)
    writer.execute("BEGIN IMMEDIATE")
    for _ in range(inbox.RESTART_MIN_FRAMES):  # past the threshold
        inbox.receive(writer, BODY, "2026-12-02T00:00:00Z")
    writer.execute("COMMIT")
    return writer, connect(path)  # and the detector's


def frames_after_one_more_append(writer: sqlite3.Connection) -> int:
    writer.execute("BEGIN IMMEDIATE")
    inbox.receive(writer, b"{}", "2026-12-02T00:00:01Z")
    writer.execute("COMMIT")
    return int(writer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])


def test_passive_alone_leaves_the_wal_growing_when_an_append_commits_meanwhile(tmp_path: Path) -> None:
    writer, checker = setup(tmp_path / "i.db")
    writer.execute("BEGIN IMMEDIATE")
    inbox.receive(writer, BODY, "2026-12-02T00:00:00Z")  # intake's commit in flight during the checkpoint
    assert inbox.checkpoint(checker, restart=False) is False
    writer.execute("COMMIT")
    assert frames_after_one_more_append(writer) > inbox.RESTART_MIN_FRAMES  # not started over


def test_a_restart_after_the_passive_copy_starts_the_wal_over(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inbox, "RESTART_BUSY_MS", 5000)  # no timing in the test: wait for the commit
    writer, checker = setup(tmp_path / "i.db")
    writer.execute("BEGIN IMMEDIATE")
    inbox.receive(writer, BODY, "2026-12-02T00:00:00Z")
    restarted: list[bool] = []
    thread = threading.Thread(target=lambda: restarted.append(inbox.checkpoint(checker, restart=True)))
    thread.start()
    time.sleep(0.05)  # the checkpoint waits for intake's commit, which then goes through
    writer.execute("COMMIT")
    thread.join(10)
    assert restarted == [True]
    assert frames_after_one_more_append(writer) < 10  # started over: only the last append's frames
    assert checker.execute("PRAGMA busy_timeout").fetchone()[0] == 2000  # the detector's usual wait again



class Recording:
    """The detector's connection, remembering the statements it ran."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn, self.statements = conn, []  # type: ignore[var-annotated]

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        self.statements.append(sql)
        return self.conn.execute(sql, *args)


def test_no_restart_when_a_reader_kept_the_passive_copy_back(tmp_path: Path) -> None:
    """A RESTART would then copy what is left while holding intake off (1.7 s stalls during a backlog)."""
    writer, checker = setup(tmp_path / "i.db")
    reader = connect(tmp_path / "i.db")  # e.g. the monitor counting a long backlog
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM received").fetchone()
    writer.execute("BEGIN IMMEDIATE")
    for _ in range(inbox.RESTART_MAX_LEFT_FRAMES):  # two pages a row: past what a RESTART may copy
        inbox.receive(writer, BODY, "2026-12-02T00:00:01Z")
    writer.execute("COMMIT")
    recording = Recording(checker)
    assert inbox.checkpoint(recording, restart=True) is False  # type: ignore[arg-type]
    assert not any("RESTART" in sql for sql in recording.statements)
    reader.execute("COMMIT")
    recording.statements.clear()
    assert inbox.checkpoint(recording, restart=True) is True  # type: ignore[arg-type]
    assert any("RESTART" in sql for sql in recording.statements)


def test_a_restart_that_meets_a_reader_gives_the_lock_back_and_tries_again_often(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A RESTART holds intake off while it waits for a reader of the WAL (the detector's own, unpacking):
    it must not wait in SQLite's busy handler (sleeps of 1, 2, 5, 10 ms ... with the lock held: RESTARTs of
    12-19 ms every second while draining a backlog), but try again every half millisecond."""
    monkeypatch.setattr(inbox, "RESTART_BUSY_MS", 5000)  # no timing in the test: until the reader is done
    writer, checker = setup(tmp_path / "i.db")
    reader = connect(tmp_path / "i.db")
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM received").fetchone()  # a snapshot that reads from the WAL

    def done_reading() -> None:
        reader.execute("COMMIT")

    release = threading.Timer(0.05, done_reading)
    release.start()
    recording = Recording(checker)
    try:
        assert inbox.checkpoint(recording, restart=True) is True  # type: ignore[arg-type]
    finally:
        release.join()
    restarts = [sql for sql in recording.statements if "RESTART" in sql]
    assert len(restarts) >= 5  # tried again and again, the lock given back between tries
    assert checker.execute("PRAGMA busy_timeout").fetchone()[0] == 2000
    assert frames_after_one_more_append(writer) < 10  # started over
