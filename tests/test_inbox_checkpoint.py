"""The detector's checkpoint of the inbox lets the WAL start over while intake keeps appending (issue 16).

Under steady appends a PASSIVE checkpoint never copies the frame committed while it ran, so SQLite never
starts the WAL over: it grows until intake's own checkpoint copies it (store/appender.py). A
RESTART after the PASSIVE copy (``inbox.checkpoint(restart=True)``) closes that gap."""

from __future__ import annotations

import os
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

    # The reader lets go 50 ms after the first RESTART try (the PASSIVE copy and its sync come first).
    release = threading.Timer(0.05, done_reading)
    recording = Recording(checker)
    execute = recording.execute

    def release_after_the_first_restart(sql: str, *args: Any) -> sqlite3.Cursor:
        if "RESTART" in sql and not release.is_alive() and not release.finished.is_set():
            release.start()
        return execute(sql, *args)

    recording.execute = release_after_the_first_restart  # type: ignore[method-assign]
    try:
        assert inbox.checkpoint(recording, restart=True) is True  # type: ignore[arg-type]
    finally:
        release.join()
    restarts = [sql for sql in recording.statements if "RESTART" in sql]
    assert len(restarts) >= 5  # tried again and again, the lock given back between tries
    assert checker.execute("PRAGMA busy_timeout").fetchone()[0] == 2000
    assert frames_after_one_more_append(writer) < 10  # started over


def test_a_passive_copy_that_stops_short_of_the_end_syncs_the_database_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite syncs the database file after a checkpoint only when the copy reached the WAL's last frame.
    Short of it (a reader's snapshot, or intake's commit meanwhile), the copied pages stayed dirty until
    the RESTART, whose own sync then wrote them all while holding intake off: the copy is synced here."""
    path = tmp_path / "i.db"
    writer, checker = setup(path)
    synced: list[str] = []
    real = os.fdatasync

    def watched(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fdatasync", watched)
    reader = connect(path, readonly=True)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM received").fetchone()  # a snapshot at the WAL's current end
    writer.execute("BEGIN IMMEDIATE")
    inbox.receive(writer, BODY, "2026-12-02T00:00:01Z")
    writer.execute("COMMIT")
    _, frames, copied = checker.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    assert 0 < copied < frames  # the case: a copy short of the end (SQLite leaves the file unsynced)
    writer.execute("BEGIN IMMEDIATE")
    inbox.receive(writer, BODY, "2026-12-02T00:00:02Z")
    writer.execute("COMMIT")
    assert inbox.checkpoint(checker, restart=False) is False
    assert synced == [str(path)]
    reader.execute("COMMIT")


def test_syncing_an_in_memory_database_does_nothing() -> None:
    inbox.sync_database_file(sqlite3.connect(":memory:"))  # no file to open (os.open("") would raise)


def test_a_restart_not_due_waits_for_its_turn_unless_the_wal_is_long(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Starting the WAL over holds intake off, so the detector does it once a second (``due``), but at
    intake's maximum rate the WAL grew past intake's own threshold between two turns, and intake copied
    it on the request path: past ``RESTART_NOW_FRAMES``, the next copy starts it over."""
    assert inbox.RESTART_MIN_FRAMES < inbox.RESTART_NOW_FRAMES < inbox.INTAKE_CHECKPOINT_FRAMES
    writer, checker = setup(tmp_path / "i.db")  # 2 pages a row: over 2 x RESTART_MIN_FRAMES frames
    monkeypatch.setattr(inbox, "RESTART_NOW_FRAMES", 4 * inbox.RESTART_MIN_FRAMES)  # more than that
    writer.execute("BEGIN IMMEDIATE")
    inbox.receive(writer, BODY, "2026-12-02T00:00:01Z")  # intake's commit in flight during the copy
    assert inbox.checkpoint(checker, restart=True, due=False) is False
    writer.execute("COMMIT")
    assert frames_after_one_more_append(writer) > 2 * inbox.RESTART_MIN_FRAMES  # not started over
    monkeypatch.setattr(inbox, "RESTART_NOW_FRAMES", inbox.RESTART_MIN_FRAMES)  # less than that
    assert inbox.checkpoint(checker, restart=True, due=False) is True
    assert frames_after_one_more_append(writer) < 10  # started over
