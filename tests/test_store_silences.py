"""Silences in a real SQLite store: added, listed (expired ones for a while), expired, read back active;
through both the daemon's Store and the one-shot commands' CliStore."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sentinel.silences import Silence
from sentinel.store import Store, open_for_cli

NOW = datetime(2026, 3, 1, 3, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def make(rule: str = "okta-*", starts: datetime = NOW, ends: datetime = NOW + HOUR) -> Silence:
    return Silence(None, rule, (("actor.alternateId", "jane@example.com"), ("client.ipAddress", "203.0.113.7")),
                   starts, ends, "alice", "deploy tonight", NOW)


def started_store(path: Path) -> Store:
    store = Store(path)
    store.start(NOW)
    return store


def test_cli_store_round_trips_a_silence(tmp_path: Path) -> None:
    started_store(tmp_path / "s.db").close()  # the daemon created the tables
    cli = open_for_cli(tmp_path / "s.db")
    try:
        first = cli.add_silence(make())
        second = cli.add_silence(make("okta-user-account-locked", NOW + HOUR, NOW + 2 * HOUR))
        assert (first, second) == (1, 2)
        assert cli.get_silence(first) == Silence(first, "okta-*", make().matchers, NOW, NOW + HOUR, "alice",
                                                 "deploy tonight", NOW, None)
        assert [s.id for s in cli.active_silences(NOW)] == [first]  # the second has not started
        assert [s.id for s in cli.active_silences(NOW + HOUR)] == [second]  # the first has ended
        assert [s.id for s in cli.list_silences(NOW)] == [second, first]  # future ones too, newest first
    finally:
        cli.close()


def test_expired_silences_stay_listed_for_a_while(tmp_path: Path) -> None:
    started_store(tmp_path / "s.db").close()
    cli = open_for_cli(tmp_path / "s.db")
    try:
        sid = cli.add_silence(make(ends=NOW + 30 * 24 * HOUR))
        assert cli.expire_silence(sid, NOW + HOUR)
        assert not cli.expire_silence(sid, NOW + 2 * HOUR)  # already expired
        assert not cli.expire_silence(999, NOW)
        assert cli.active_silences(NOW + HOUR) == []
        assert [s.id for s in cli.active_silences(NOW + HOUR - timedelta(seconds=1))] == [sid]
        listed = cli.list_silences(NOW + 2 * HOUR)
        assert [(s.id, s.expired_at) for s in listed] == [(sid, NOW + HOUR)]
        assert cli.list_silences(NOW + HOUR + timedelta(days=7, seconds=1)) == []
        assert len(cli.list_silences(NOW + 2 * HOUR, include_expired_for=timedelta(minutes=30))) == 0
    finally:
        cli.close()


def test_a_silence_that_ended_cannot_be_expired(tmp_path: Path) -> None:
    started_store(tmp_path / "s.db").close()
    cli = open_for_cli(tmp_path / "s.db")
    try:
        sid = cli.add_silence(make())
        assert not cli.expire_silence(sid, NOW + 2 * HOUR)
        assert cli.get_silence(sid).expired_at is None  # type: ignore[union-attr]
    finally:
        cli.close()


def test_the_daemon_store_reads_what_the_cli_added(tmp_path: Path) -> None:
    store = started_store(tmp_path / "s.db")

    async def scenario() -> None:
        cli = open_for_cli(tmp_path / "s.db")
        try:
            sid = cli.add_silence(make())
        finally:
            cli.close()
        assert [s.id for s in await store.active_silences(NOW)] == [sid]
        other = await store.add_silence(make("okta-password-spraying"))
        assert await store.expire_silence(other, NOW)
        assert [s.id for s in await store.active_silences(NOW)] == [sid]
        assert [s.id for s in await store.list_silences(NOW)] == [other, sid]
        assert (await store.get_silence(other)).expired_at == NOW  # type: ignore[union-attr]

    try:
        asyncio.run(scenario())
    finally:
        store.close()


def test_upgrade_to_version_5_keeps_deliveries_one_per_alert_channel_and_kind(tmp_path: Path) -> None:
    import sqlite3

    import sqlite_utils

    from sentinel.store.database import connect
    from sentinel.store.schema import MIGRATIONS, migrate

    conn = connect(tmp_path / "u.db")
    db = sqlite_utils.Database(conn)
    db.table("migrations").create({"version": int, "name": str, "applied_at": str}, pk="version")
    for version, name, step in MIGRATIONS[:4]:  # a store made by the previous version
        step(db)
        db.table("migrations").insert({"version": version, "name": name, "applied_at": "old"})
    conn.execute("INSERT INTO alerts (id, key, rule_id, severity, severity_rank, title, first_seen, last_seen, "
                 "count, created_at, updated_at) VALUES (1, 'k', 'r', 'high', 3, 't', 'a', 'a', 1, 'a', 'a')")
    conn.execute("INSERT INTO deliveries (alert_id, channel, status, attempts, next_attempt_at, created_at, "
                 "updated_at) VALUES (1, 'slack', 'sent', 1, 'a', 'a', 'a')")
    conn.commit()
    assert migrate(conn, "now") == [v for v, _, _ in MIGRATIONS[4:]]
    rows = conn.execute("SELECT channel, kind, status FROM deliveries").fetchall()
    assert rows == [("slack", "alert", "sent")]
    conn.execute("INSERT INTO deliveries (alert_id, channel, kind, status, attempts, next_attempt_at, created_at, "
                 "updated_at) VALUES (1, 'slack', 'resolve', 'pending', 0, 'a', 'a', 'a')")
    try:
        conn.execute("INSERT INTO deliveries (alert_id, channel, status, attempts, next_attempt_at, created_at, "
                     "updated_at) VALUES (1, 'slack', 'pending', 0, 'a', 'a', 'a')")
        raise AssertionError("a second alert row for the same alert and channel was accepted")
    except sqlite3.IntegrityError:
        pass
