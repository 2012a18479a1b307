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



class IntakeDuringCopies:
    """The detector's connection, with intake appending ``rows`` bodies (two frames each) right after
    each of its first ``copies`` PASSIVE copies, as intake did while a copy and its sync ran (70-400 ms
    at its maximum rate). Remembers every checkpoint's (kind, busy, frames, copied).

    With ``hold_back``, a reader's snapshot keeps each copy one append short of the WAL's end, as intake's
    commits during a copy do: a copy that reaches the end lets intake's next commit start the WAL over."""

    def __init__(self, conn: sqlite3.Connection, writer: sqlite3.Connection, rows: int, copies: int,
                 hold_back: bool = True) -> None:
        self.conn, self.writer, self.rows, self.copies = conn, writer, rows, copies
        self.checkpoints: list[tuple[str, int, int, int]] = []
        self.path = Path(conn.execute("PRAGMA database_list").fetchone()[2])
        self.reader: sqlite3.Connection | None = None
        if hold_back:
            self._hold_back()

    def _hold_back(self) -> None:
        self.reader = connect(self.path, readonly=True)
        self.reader.execute("BEGIN")
        self.reader.execute("SELECT count(*) FROM received").fetchone()
        self._append(1)

    def _append(self, rows: int) -> None:
        self.writer.execute("BEGIN IMMEDIATE")
        for _ in range(rows):
            inbox.receive(self.writer, BODY, "2026-12-02T00:00:01Z")
        self.writer.execute("COMMIT")

    def execute(self, sql: str, *args: Any) -> Any:
        cursor = self.conn.execute(sql, *args)
        if "wal_checkpoint" not in sql:
            return cursor
        row = cursor.fetchone()
        self.checkpoints.append(("RESTART" if "RESTART" in sql else "PASSIVE", *row))
        if "PASSIVE" in sql:
            if self.reader is not None:
                self.reader.execute("COMMIT")
                self.reader = None
            if self.copies > 0:
                self.copies -= 1
                self._append(self.rows)
                if self.copies > 0:
                    self._hold_back()
        return FetchedRow(row)

    def passive(self) -> list[tuple[str, int, int, int]]:
        return [c for c in self.checkpoints if c[0] == "PASSIVE"]


class FetchedRow:
    def __init__(self, row: tuple[int, int, int]) -> None:
        self.row = row

    def fetchone(self) -> tuple[int, int, int]:
        return self.row


def test_a_restart_copies_only_what_was_appended_since_the_last_copy(tmp_path: Path) -> None:
    """At intake's maximum rate a copy and its sync took long enough for intake to append megabytes,
    which the RESTART then copied and synced while holding intake off (33-210 ms, measured): copies
    off the lock catch up with the WAL's end first."""
    writer, checker = setup(tmp_path / "i.db")
    detector = IntakeDuringCopies(checker, writer, rows=1000, copies=1)  # 2,000 frames, 8 MB
    assert inbox.checkpoint(detector, restart=True) is True  # type: ignore[arg-type]
    assert [kind for kind, *_ in detector.checkpoints][-1] == "RESTART"
    passive = detector.passive()
    assert passive[1][2] - passive[0][2] > 2000  # the case: the first copy missed 2,000 frames
    _, _, restart_frames, _ = detector.checkpoints[-1]
    assert restart_frames - passive[-1][3] <= inbox.CATCH_UP_FRAMES  # left for the RESTART to copy
    assert frames_after_one_more_append(writer) < 10  # started over


def test_catching_up_with_an_intake_that_keeps_appending_stops_and_restarts_anyway(tmp_path: Path) -> None:
    """The WAL must still start over when every copy finds more appended behind it: a bounded number of
    copies, then the RESTART, which copies the last copy's worth."""
    writer, checker = setup(tmp_path / "i.db")
    detector = IntakeDuringCopies(checker, writer, rows=100, copies=1 + inbox.CATCH_UP_COPIES)
    assert inbox.checkpoint(detector, restart=True) is True  # type: ignore[arg-type]
    kinds = [kind for kind, *_ in detector.checkpoints]
    assert kinds == ["PASSIVE"] * (1 + inbox.CATCH_UP_COPIES) + ["RESTART"]
    assert frames_after_one_more_append(writer) < 10  # started over


def test_no_restart_while_intake_outpaces_the_copies_unless_the_wal_is_past_its_bound(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When every copy finds megabytes more behind it (intake at its maximum rate, the detector's core
    busy), a RESTART would copy as much holding intake off (109 ms measured): not this time. Unless the
    WAL is past ``RESTART_ANYWAY_FRAMES``: it must not grow without a bound."""
    writer, checker = setup(tmp_path / "i.db")
    rows = inbox.CATCH_UP_MAX_LEFT_FRAMES // 2 + 10  # just over CATCH_UP_MAX_LEFT_FRAMES behind each copy
    detector = IntakeDuringCopies(checker, writer, rows=rows, copies=1 + inbox.CATCH_UP_COPIES)
    assert inbox.checkpoint(detector, restart=True) is False  # type: ignore[arg-type]
    assert [kind for kind, *_ in detector.checkpoints] == ["PASSIVE"] * (1 + inbox.CATCH_UP_COPIES)
    monkeypatch.setattr(inbox, "RESTART_ANYWAY_FRAMES", inbox.RESTART_MIN_FRAMES)  # now past its bound
    detector = IntakeDuringCopies(checker, writer, rows=rows, copies=1 + inbox.CATCH_UP_COPIES)
    assert inbox.checkpoint(detector, restart=True) is True  # type: ignore[arg-type]
    assert [kind for kind, *_ in detector.checkpoints][-1] == "RESTART"
    assert frames_after_one_more_append(writer) < 10  # started over


def test_a_copy_that_reached_the_end_lets_intake_start_the_wal_over_with_no_restart(tmp_path: Path) -> None:
    """Then nothing is left for a RESTART to do: SQLite started the WAL over in intake's next commit."""
    writer, checker = setup(tmp_path / "i.db")
    detector = IntakeDuringCopies(checker, writer, rows=10, copies=1, hold_back=False)
    assert inbox.checkpoint(detector, restart=True) is True  # type: ignore[arg-type]
    assert [kind for kind, *_ in detector.checkpoints] == ["PASSIVE", "PASSIVE"]
    assert frames_after_one_more_append(writer) < 30  # started over: the 10 appends and one more


def test_a_copy_that_meets_the_other_checkpoint_running_is_not_taken_for_a_wal_started_over(
        tmp_path: Path) -> None:
    """Intake's fallback checkpoint and the detector's can meet: SQLite then answers the second's PASSIVE
    with (1, -1, -1) (seen in a diagnostic log). That is not a WAL started over, and no RESTART follows."""
    writer, checker = setup(tmp_path / "i.db")
    detector = IntakeDuringCopies(checker, writer, rows=100, copies=1)
    real = detector.execute
    passives = 0

    def other_checkpoint_running_at_the_second_copy(sql: str, *args: Any) -> Any:
        nonlocal passives
        if "PASSIVE" in sql:
            passives += 1
            if passives == 2:
                return FetchedRow((1, -1, -1))
        return real(sql, *args)

    detector.execute = other_checkpoint_running_at_the_second_copy  # type: ignore[method-assign]
    assert inbox.checkpoint(detector, restart=True) is False  # type: ignore[arg-type]
    assert "RESTART" not in [kind for kind, *_ in detector.checkpoints]
