"""Retention: ``[storage] retention_days`` prunes events, quarantined elements and delivered alerts stored
before the cutoff, in small steps, and gives the space back; never an event not yet evaluated, never an
alert with a delivery not sent, never rule state."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import LOCK_RULE, envelope, make_event, stored, wait_for
from daemon import Daemon, write_config
from test_detector import ScriptedEvaluator

from sentinel.clock import FixedClock
from sentinel.config import load_config
from sentinel.errors import ErrorGroup
from sentinel.model import format_timestamp
from sentinel.okta import parse_event
from sentinel.service.detector import Detector
from sentinel.store import Store
from sentinel.store.database import connect
from sentinel.store.events import ingest, last_received
from sentinel.store.retention import PRUNE_CHUNK, Pruned, prune_expired
from sentinel.store.schema import migrate

DOWN_RULE = """
id = "test-down"
title = "factor removed for {actor.alternateId}"
severity = "critical"
event_types = ["user.mfa.factor.deactivate"]
"""
RETENTION_SECONDS = 5.0


@pytest.mark.proof
def test_the_daemon_prunes_what_is_older_than_retention_and_keeps_the_rest(tmp_path: Path) -> None:
    # A retention of a few seconds (a sweep a second): "old" is what was stored before the cutoff.
    config = write_config(tmp_path, extra="""
[channels.down]
urls = ["json://127.0.0.1:9/"]
min_severity = "critical"
""")
    config.write_text(config.read_text().replace(
        'path = "state/sentinel.db"', f'path = "state/sentinel.db"\nretention_days = {RETENTION_SECONDS / 86400!r}'))
    (tmp_path / "rules" / "lock.toml").write_text(LOCK_RULE)
    (tmp_path / "rules" / "down.toml").write_text(DOWN_RULE)
    db = tmp_path / "state" / "sentinel.db"
    d = Daemon(config).start()
    try:
        # Old: an event, a lock-out (alert delivered to the log channel), a factor removal (alert whose
        # delivery to the down channel never succeeds) and a malformed element (quarantined).
        old_at = time.monotonic()
        assert d.post(envelope(make_event("old-1"), make_event("old-lock", "user.account.lock"),
                               make_event("old-down", "user.mfa.factor.deactivate"),
                               {"eventType": "user.session.start"})).status_code == 204
        assert wait_for(lambda: stored(db, "SELECT a.rule_id, d.channel, d.status FROM deliveries d "
                                           "JOIN alerts a ON a.id = d.alert_id WHERE d.channel = 'log' "
                                           "ORDER BY a.rule_id") == [("test-down", "log", "sent"),
                                                                      ("test-lock", "log", "sent")])
        assert stored(db, "SELECT count(*) FROM quarantine") == [1]
        # Recent: stored shortly before the old rows expire, so the sweep that prunes those sees these.
        time.sleep(max(0.0, old_at + RETENTION_SECONDS - 1.0 - time.monotonic()))
        assert d.post(envelope(make_event("new-1"), make_event("new-lock", "user.account.lock",
                                                               actor={"alternateId": "bob@example.com"}))
                      ).status_code == 204

        def old_gone() -> bool:  # (an alert is made a moment after its event is stored: it expires later)
            first_lock = stored(db, "SELECT event_uuids FROM alerts WHERE rule_id = 'test-lock' ORDER BY id LIMIT 1")
            return "old-1" not in stored(db) and first_lock != ['["old-lock"]']

        assert wait_for(old_gone, timeout=20)
        events = stored(db)
        alerts = stored(db, "SELECT a.rule_id, a.event_uuids, d.channel, d.status FROM alerts a "
                            "JOIN deliveries d ON d.alert_id = a.id ORDER BY a.id, d.channel")
        quarantine = stored(db, "SELECT count(*) FROM quarantine")
    finally:
        d.stop()
    assert events == ["new-1", "new-lock"]
    assert quarantine == [0]
    # The old lock-out alert went with its delivery; the one still undelivered stays, however old.
    assert [(rule, uuids, channel) for rule, uuids, channel, _ in alerts] == [
        ("test-down", '["old-down"]', "down"), ("test-down", '["old-down"]', "log"),
        ("test-lock", '["new-lock"]', "log")]
    assert alerts[0][3] == "pending"
    assert "retention: pruned 3 events, 1 quarantined elements, " in d.log()  # (the alert, then or next sweep)


NOW = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def body(size: int) -> dict[str, str]:
    return {"displayMessage": os.urandom(size // 2).hex()}


@pytest.mark.proof
def test_only_evaluated_events_and_fully_delivered_alerts_go_and_the_file_shrinks(tmp_path: Path) -> None:
    path = tmp_path / "s.db"

    async def scenario() -> tuple[list[str], list[str], int, int, int]:
        store = Store(path)
        store.start(NOW)
        clock = FixedClock(NOW)
        try:
            # 2,500 events evaluated (each makes an alert with two deliveries), then 500 not yet.
            evaluated = [parse_event(make_event(f"e-{i:04}", **body(2000))) for i in range(2500)]
            await store.ingest(evaluated, [], NOW)
            detector = Detector(store, ScriptedEvaluator(), lambda a: ["log", "page"], clock, retention=90 * DAY)
            while await detector.run_once():
                pass
            pending = [parse_event(make_event(f"p-{i:04}", **body(2000))) for i in range(500)]
            await store.ingest(pending, [], NOW)
            # Every delivery sent but two: alert 1's log delivery is dead, alert 2's still pending.
            for (delivery_id,) in await store._read(lambda c: c.execute("SELECT id FROM deliveries").fetchall()):
                if delivery_id not in (1, 3):
                    await store.mark_sent(delivery_id, NOW)
            await store.mark_dead(1, "gave up", NOW)
            pages_before = await store._read(lambda c: c.execute("PRAGMA page_count").fetchone()[0])
            clock.advance(91 * DAY)
            steps = 0
            while await detector.expire_once():
                steps += 1
            events = await store._read(lambda c: [r[0] for r in c.execute("SELECT uuid FROM events ORDER BY uuid")])
            alert_keys = await store._read(lambda c: [r[0] for r in c.execute("SELECT key FROM alerts ORDER BY key")])
            pages_after, free = await store._read(lambda c: (c.execute("PRAGMA page_count").fetchone()[0],
                                                            c.execute("PRAGMA freelist_count").fetchone()[0]))
            assert free == 0
            return events, alert_keys, steps, pages_before, pages_after
        finally:
            store.close()

    events, alert_keys, steps, before, after = asyncio.run(scenario())
    assert events == [f"p-{i:04}" for i in range(500)]  # not yet evaluated: kept, however old
    assert alert_keys == ["r:e-0000", "r:e-0001"]  # an undelivered delivery (dead or pending): kept
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT alert_id, status FROM deliveries ORDER BY id").fetchall() == [
        (1, "dead"), (1, "sent"), (2, "pending"), (2, "sent")]
    assert steps >= 2500 // PRUNE_CHUNK  # in small steps, not one long transaction
    assert after < before / 3  # the space went back to the file system


def test_retention_0_keeps_everything(tmp_path: Path) -> None:
    async def scenario() -> int:
        store = Store(tmp_path / "s.db")
        store.start(NOW)
        try:
            await store.ingest([parse_event(make_event("ancient"))], [], NOW - 9000 * DAY)
            await store.record_evaluation(["ancient"], [], lambda a: [], {}, set(), NOW)
            settings = load_config(write_retention(tmp_path, "0"))
            detector = Detector(store, ScriptedEvaluator(), lambda a: [], FixedClock(NOW),
                                retention=settings.storage.retention)
            assert await detector.expire_once() == 0
            return await store._read(lambda c: c.execute("SELECT count(*) FROM events").fetchone()[0])
        finally:
            store.close()

    assert asyncio.run(scenario()) == 1


def write_retention(folder: Path, value: str) -> Path:
    path = folder / "sentinel.toml"
    path.write_text(f"[storage]\nretention_days = {value}\n", encoding="utf-8")
    return path


def test_retention_days_defaults_to_okta_s_90_and_takes_fractions(tmp_path: Path) -> None:
    assert load_config(write_retention(tmp_path, "90")).storage.retention == 90 * DAY
    (tmp_path / "empty.toml").write_text("")
    assert load_config(tmp_path / "empty.toml").storage.retention_days == 90
    assert load_config(write_retention(tmp_path, "0.5")).storage.retention == DAY / 2
    with pytest.raises(ErrorGroup, match=r"storage\.retention_days: must be between 0 and 36500, not -1"):
        load_config(write_retention(tmp_path, "-1"))


def _vm_steps(conn: sqlite3.Connection, fn: Callable[[], object]) -> int:
    """How many SQLite VM instructions ``fn`` ran: a measure of the rows it read, not of time."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    conn.set_progress_handler(count, 1)
    try:
        fn()
    finally:
        conn.set_progress_handler(None, 0)
    return steps


def _store_with(path: Path, stored: list[tuple[str, datetime]]) -> sqlite3.Connection:
    conn = connect(path)
    migrate(conn, "t0")
    conn.execute("BEGIN")
    for start in range(0, len(stored), 500):
        chunk = stored[start:start + 500]
        for uuid, at in chunk:
            ingest(conn, [parse_event(make_event(uuid))], [], at, evaluated_at=at)
    conn.execute("COMMIT")
    return conn


def test_events_go_oldest_stored_first_and_a_sweep_with_nothing_expired_reads_a_bounded_window(
        tmp_path: Path) -> None:
    # No index on received_at (migration 9): retention walks the table in stored (rowid) order. Whatever
    # the table's size, a step with nothing expired reads at most a chunk of rows, and so does reading
    # when the newest event was stored (the monitor, every few seconds).
    sizes = (PRUNE_CHUNK * 2, PRUNE_CHUNK * 20)
    idle_steps, newest_steps = [], []
    for size in sizes:
        conn = _store_with(tmp_path / f"{size}.db", [(f"e-{i:05}", NOW + i * timedelta(seconds=1))
                                                     for i in range(size)])
        assert last_received(conn) == format_timestamp(NOW + (size - 1) * timedelta(seconds=1))
        assert prune_expired(conn, NOW).total == 0
        idle_steps.append(_vm_steps(conn, lambda: prune_expired(conn, NOW)))
        newest_steps.append(_vm_steps(conn, lambda: last_received(conn)))
        # Expired: the first 10 stored, and only they, oldest first, a chunk at a time.
        assert prune_expired(conn, NOW + 10 * timedelta(seconds=1), chunk=4) == Pruned(events=4)
        assert prune_expired(conn, NOW + 10 * timedelta(seconds=1)) == Pruned(events=6)
        assert conn.execute("SELECT min(uuid), count(*) FROM events").fetchone() == ("e-00010", size - 10)
        conn.close()
    assert 0 < idle_steps[1] < idle_steps[0] * 2, idle_steps  # 10x the rows, about the same work
    assert 0 < newest_steps[1] < newest_steps[0] * 2, newest_steps
