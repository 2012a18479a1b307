"""Intake's own checkpoint of the inbox, for when the detector does not keep the WAL short (issue 16).

It runs on a thread and connection of its own: SQLite's automatic checkpoint ran inside the COMMIT that
crossed the limit, and every request of that round waited for the copy (100-240 ms after a burst)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

import pytest

from sentinel.store import Store, inbox
from sentinel.store.appender import Appender, copy_and_restart
from sentinel.store.database import connect

NOW = "2026-12-02T00:00:00.000Z"
PAGES = 16
LIMIT = 32 + PAGES * (4096 + 24)  # the WAL file's bytes at PAGES pages


def new_inbox(path: Path) -> None:
    conn = connect(path)
    inbox.prepare(conn)
    conn.close()


def rows(path: Path) -> int:
    conn = connect(path)
    try:
        return int(conn.execute("SELECT count(*) FROM received").fetchone()[0])
    finally:
        conn.close()


def wal_size(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return wal.stat().st_size if wal.exists() else 0


@pytest.fixture(autouse=True)
def small_wal(monkeypatch: pytest.MonkeyPatch) -> None:
    """The RESTART that ends intake's checkpoint waits for a WAL of RESTART_MIN_FRAMES (4 MB): here, PAGES."""
    monkeypatch.setattr(inbox, "RESTART_MIN_FRAMES", PAGES)


async def append_until(appender: Appender, started: threading.Event) -> int:
    """Append until intake's checkpoint has started; returns how many were appended."""
    count = 0
    while not started.is_set():
        await appender.append(b"x" * 4000)
        count += 1
        assert count < 500, "intake never started a checkpoint"
    return count


def settle(appender: Appender) -> None:
    running = appender.checkpoint_running()
    if running is not None:
        running.result(timeout=10)


def test_with_no_detector_intake_keeps_the_wal_near_its_limit(tmp_path: Path) -> None:
    """Nothing else checkpoints: the WAL is copied and started over again and again, never creeping
    upward (the file is cut back to the limit each time), and every body is kept."""
    path = tmp_path / "s.inbox.db"
    new_inbox(path)
    appender = Appender(path, lambda: NOW, autocheckpoint_pages=PAGES)
    appender.start()
    sizes: list[int] = []

    async def append(count: int) -> None:
        for _ in range(count):
            await appender.append(b"x" * 4000)
            sizes.append(wal_size(path))

    try:
        asyncio.run(append(1200))  # ~14 MB of WAL had nothing copied it
        settle(appender)
    finally:
        appender.close()
    assert rows(path) == 1200
    assert appender.checkpoints >= 10
    # Each time a checkpoint let the WAL start over, the file was cut back to the limit: its size falls
    # to it again and again. With nothing copying the WAL, or the file never cut back, it never falls
    # (and with the file never cut back it creeps upward cycle after cycle: medians of 15, then 22-32,
    # then 31-38 LIMITs in the thirds of this run, measured).
    cut_back = [after for before, after in pairwise(sizes) if after < before]
    assert len(cut_back) >= 5 and all(after <= LIMIT for after in cut_back), cut_back[:10]
    # How far it grows while a checkpoint runs depends on the machine (peaks of 8-16 LIMITs measured
    # here): bounded far below the ~300 LIMITs it reaches with nothing copying it.
    assert max(sizes) < 100 * LIMIT, f"WAL grew to {max(sizes):,} bytes (limit {LIMIT:,})"


def test_a_commit_never_waits_for_intakes_checkpoint(tmp_path: Path) -> None:
    """A checkpoint that takes long (here: held until the test lets it go) holds no append up."""
    path = tmp_path / "s.inbox.db"
    new_inbox(path)
    started, release = threading.Event(), threading.Event()

    def slow_checkpoint(conn: sqlite3.Connection) -> object:
        started.set()
        release.wait(30)
        return copy_and_restart(conn)

    appender = Appender(path, lambda: NOW, autocheckpoint_pages=PAGES, checkpoint=slow_checkpoint)
    appender.start()

    async def append_while_it_runs(count: int) -> None:
        await asyncio.wait_for(asyncio.gather(*(appender.append(b"y" * 4000) for _ in range(count))), 10)
        for _ in range(count):
            await asyncio.wait_for(appender.append(b"z" * 4000), 10)

    try:
        before = asyncio.run(append_until(appender, started))
        asyncio.run(append_while_it_runs(50))
        assert not appender.checkpoint_running().done()  # type: ignore[union-attr]
        assert wal_size(path) > LIMIT  # nothing copied it yet: these commits did not wait for a copy
        release.set()
        settle(appender)
    finally:
        release.set()
        appender.close()
    assert rows(path) == before + 100


def test_a_checkpoint_that_fails_is_logged_and_intake_goes_on(tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "s.inbox.db"
    new_inbox(path)
    calls: list[int] = []

    def failing_checkpoint(conn: sqlite3.Connection) -> object:
        calls.append(1)
        raise sqlite3.OperationalError("disk I/O error")

    # 256 pages (~1 MB): tried again every 1/8 of that (~8 appends), not after each of the ~135 commits
    # past the limit.
    appender = Appender(path, lambda: NOW, autocheckpoint_pages=256, checkpoint=failing_checkpoint)
    appender.start()

    async def append(count: int) -> None:
        for _ in range(count):
            await appender.append(b"x" * 4000)

    caplog.set_level(logging.WARNING, logger="sentinel.store")
    try:
        asyncio.run(append(200))
        settle(appender)
    finally:
        appender.close()
    assert rows(path) == 200
    assert 2 <= len(calls) <= 30, len(calls)
    assert "intake could not checkpoint the inbox: OperationalError: disk I/O error" in caplog.text


def test_closing_waits_for_a_checkpoint_in_flight(tmp_path: Path) -> None:
    path = tmp_path / "s.inbox.db"
    new_inbox(path)
    started, finished = threading.Event(), threading.Event()

    def checkpoint(conn: sqlite3.Connection) -> object:
        started.set()
        result = copy_and_restart(conn)
        threading.Event().wait(0.2)
        finished.set()
        return result

    appender = Appender(path, lambda: NOW, autocheckpoint_pages=PAGES, checkpoint=checkpoint)
    appender.start()

    asyncio.run(append_until(appender, started))
    appender.close()
    assert finished.is_set()


def test_intake_checkpoints_only_once_the_wal_is_past_its_limit(tmp_path: Path) -> None:
    """A WAL the detector keeps short is left to it: intake copies nothing into the file."""
    path = tmp_path / "s.inbox.db"
    new_inbox(path)
    appender = Appender(path, lambda: NOW, autocheckpoint_pages=PAGES)
    appender.start()

    async def append(count: int) -> None:
        for _ in range(count):
            await appender.append(b"x" * 4000)

    try:
        asyncio.run(append(40))  # no detector: intake checkpoints
        settle(appender)
        assert appender.checkpoints >= 1
        detector = connect(path)
        detector.execute("PRAGMA wal_checkpoint(RESTART)")  # what the detector's checkpoints achieve
        detector.close()
        checkpoints, size = appender.checkpoints, path.stat().st_size
        asyncio.run(append(2))  # a few pages: in the WAL only, no checkpoint from intake
        settle(appender)
        assert path.stat().st_size == size and appender.checkpoints == checkpoints
        asyncio.run(append(30))  # past the limit again: intake checkpoints into the file
        settle(appender)
        assert path.stat().st_size > size and appender.checkpoints > checkpoints
    finally:
        appender.close()


def test_the_detectors_prune_cuts_a_long_wal_back_when_its_commit_starts_it_over(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The WAL starts over in whichever writer's commit comes first after a copy reached its end: when that
    is the detector's prune, not intake's append, the file must be cut back too, or its size no longer
    says how long the WAL is (intake's check above) and the disk keeps the burst's high-water mark."""
    monkeypatch.setattr(inbox, "INTAKE_CHECKPOINT_FRAMES", PAGES)
    store = Store(tmp_path / "s.db")
    store.start(datetime(2026, 12, 2, tzinfo=UTC))
    try:
        intake = connect(store.inbox_path)
        intake.execute("PRAGMA wal_autocheckpoint=0")
        intake.execute("BEGIN IMMEDIATE")
        for _ in range(100):  # 200 pages, far past the limit
            inbox.receive(intake, b"x" * 8000, NOW)
        intake.execute("COMMIT")
        _, frames, copied = intake.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert frames == copied and wal_size(store.inbox_path) > 10 * LIMIT  # all copied: the WAL may start over
        intake.close()
        assert asyncio.run(store.prune_inbox(10)) > 0  # the first commit since: the detector's
        assert wal_size(store.inbox_path) <= LIMIT
    finally:
        store.close()
