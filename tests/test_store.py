"""The store in process: group commits, a failing job rolled back alone, migrations that upgrade."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import make_event

from sentinel.okta import parse_event
from sentinel.store import Store
from sentinel.store.database import connect
from sentinel.store.events import ingest, last_received, pending_events
from sentinel.store.schema import MIGRATIONS, PAGE_SIZE, current_version, migrate

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_concurrent_writes_share_commits_and_all_land(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    store.start(NOW)

    async def scenario() -> None:
        async def one(i: int) -> None:
            event = parse_event(make_event(f"g-{i}"))
            await store.ingest([event], [], NOW)

        await asyncio.gather(*(one(i) for i in range(300)))

    try:
        asyncio.run(scenario())
        assert store.commits < 300  # grouped: several jobs per fsync
    finally:
        store.close()
    conn = sqlite3.connect(tmp_path / "s.db")
    assert conn.execute("SELECT count(*) FROM events").fetchone() == (300,)


def test_a_failing_job_is_rolled_back_alone(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    store.start(NOW)

    def bad(conn: sqlite3.Connection) -> None:
        ingest(conn, [parse_event(make_event("half"))], [], NOW)
        raise ValueError("bug after a write")

    async def scenario() -> None:
        good = store.ingest([parse_event(make_event("ok"))], [], NOW)
        results = await asyncio.gather(store._write(bad), good, return_exceptions=True)
        assert isinstance(results[0], ValueError)

    try:
        asyncio.run(scenario())
        assert store.healthy()
    finally:
        store.close()
    conn = sqlite3.connect(tmp_path / "s.db")
    assert [r[0] for r in conn.execute("SELECT uuid FROM events")] == ["ok"]


def test_migrations_are_recorded_and_not_repeated(tmp_path: Path) -> None:
    conn = connect(tmp_path / "m.db")
    assert migrate(conn, "t0") == [v for v, _, _ in MIGRATIONS]
    assert migrate(conn, "t1") == []
    assert current_version(conn) == MIGRATIONS[-1][0]


def test_upgrade_from_version_2_keeps_data_and_pending_order(tmp_path: Path) -> None:
    conn = connect(tmp_path / "u.db")
    import sqlite_utils

    db = sqlite_utils.Database(conn)
    db.table("migrations").create({"version": int, "name": str, "applied_at": str}, pk="version")
    for version, name, step in MIGRATIONS[:2]:
        step(db)
        db.table("migrations").insert({"version": version, "name": name, "applied_at": "old"})
    events = [parse_event(make_event(u, published="2024-01-01T00:00:00Z")) for u in ("b", "a", "c")]
    conn.execute("BEGIN")
    ingest(conn, events, [], NOW)
    conn.execute("COMMIT")
    assert migrate(conn, "new") == [v for v, _, _ in MIGRATIONS[2:]]
    assert [e.uuid for e in pending_events(conn, 10)] == ["a", "b", "c"]
    plan = " ".join(str(r) for r in conn.execute(
        "EXPLAIN QUERY PLAN SELECT uuid FROM events WHERE evaluated_at IS NULL ORDER BY published, uuid"))
    assert "TEMP B-TREE" not in plan.upper()
    # Migration 9: no index on received_at any more (each insert paid for it); what used it reads the
    # table in rowid order instead (tests/test_retention.py).
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' "
                                          "AND tbl_name = 'events' AND sql IS NOT NULL")}
    assert indexes == {"events_pending", "events_type_published"}
    assert last_received(conn) == "2026-01-01T00:00:00.000000Z"


def test_cli_refuses_a_missing_database(tmp_path: Path) -> None:
    from sentinel.store import open_for_cli

    with pytest.raises(FileNotFoundError):
        open_for_cli(tmp_path / "absent.db")
    assert not (tmp_path / "absent.db").exists()


def test_an_event_is_stored_as_delivered_when_its_text_is_known(tmp_path: Path) -> None:
    conn = connect(tmp_path / "s.db")
    migrate(conn, "t0")
    delivered = '{ "uuid": "as-sent",  "eventType": "user.session.start", "published": "2026-01-01T00:00:00Z",' \
                ' "n": 1e2, "x": "\\u00e9" }'
    parsed = parse_event(json.loads(delivered), source=delivered)
    ingest(conn, [parsed, parse_event(make_event("no-text"))], [], NOW)
    bodies = dict(conn.execute("SELECT uuid, body FROM events").fetchall())
    assert bodies["as-sent"] == delivered  # not serialised again
    assert json.loads(bodies["no-text"]) == make_event("no-text")
    assert [e.data for e in pending_events(conn, 10) if e.uuid == "as-sent"] == [json.loads(delivered)]


def test_sqlite_errors_leave_the_store_as_sentinel_errors_saying_what_failed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No sqlite3 error reaches a caller: the store failing is a StoreError, one record refused is a
    RecordRejected, each naming the operation."""
    from sentinel.errors import RecordRejected, StoreError
    from sentinel.store import database

    monkeypatch.setattr(database, "BUSY_TIMEOUT_MS", 50)
    path = tmp_path / "s.db"
    store = Store(path)
    store.start(NOW)
    holder = sqlite3.connect(path, isolation_level=None)

    async def scenario() -> list[BaseException]:
        await store.ingest([parse_event(make_event("a"))], [], NOW)
        holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock past our busy timeout
        try:
            (locked,) = await asyncio.gather(store.mark_sent(1, NOW), return_exceptions=True)
        finally:
            holder.execute("ROLLBACK")
        (refused,) = await asyncio.gather(store._write(  # a NOT NULL constraint: this record's problem
            lambda c: c.execute("INSERT INTO events (uuid) VALUES ('x')"), "storing a bad row"),
            return_exceptions=True)
        holder.execute("DROP TABLE deliveries")
        (missing,) = await asyncio.gather(store.next_due("log"), return_exceptions=True)
        outcomes = [locked, refused, missing]
        assert all(isinstance(o, BaseException) for o in outcomes), outcomes
        return [o for o in outcomes if isinstance(o, BaseException)]

    try:
        locked, refused, missing = asyncio.run(scenario())
    finally:
        store.close()
        holder.close()
    assert isinstance(locked, StoreError) and "database is locked" in str(locked)
    assert "marking delivery 1 sent" in str(locked)
    assert isinstance(refused, RecordRejected) and "storing a bad row: IntegrityError" in str(refused)
    assert isinstance(missing, StoreError) and "reading the next due delivery" in str(missing)
    assert "no such table" in str(missing)


def test_cli_says_a_store_without_tables_has_nothing_stored(tmp_path: Path) -> None:
    from sentinel.errors import StoreError
    from sentinel.store import open_for_cli

    sqlite3.connect(tmp_path / "empty.db").close()
    store = open_for_cli(tmp_path / "empty.db")
    try:
        with pytest.raises(StoreError, match="nothing stored yet"):
            store.list_events(10)
    finally:
        store.close()


def _old_migrate(conn: sqlite3.Connection, now: str) -> None:
    """How stores were migrated before sqlite-utils' Migrations: our own ``migrations`` table (kept here
    verbatim, to make such a store)."""
    import sqlite_utils

    db = sqlite_utils.Database(conn)
    db.table("migrations").create({"version": int, "name": str, "applied_at": str}, pk="version", if_not_exists=True)
    done = {row["version"] for row in db.table("migrations").rows}
    for version, name, step in MIGRATIONS:
        if version in done:
            continue
        with db.atomic():
            step(db)
            db.table("migrations").insert({"version": version, "name": name, "applied_at": now})


def test_a_store_made_with_our_old_migrations_table_opens_upgraded_without_loss_or_rerun(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = connect(path)
    _old_migrate(conn, "2026-01-01T00:00:00.000000Z")
    conn.execute("BEGIN")
    ingest(conn, [parse_event(make_event(u)) for u in ("a", "b")], [], NOW)
    conn.execute("COMMIT")
    conn.close()

    store = Store(path)
    assert store.start(NOW) == []  # nothing run again (a step run twice would fail: its tables exist)
    try:
        assert sorted(asyncio.run(store.pending_uuids(10))) == ["a", "b"]
    finally:
        store.close()
    conn = sqlite3.connect(path)
    records = conn.execute("SELECT migration_set, name, applied_at FROM _sqlite_migrations ORDER BY id").fetchall()
    assert records == [("sentinel", f"{v}: {name}", "2026-01-01T00:00:00.000000Z") for v, name, _ in MIGRATIONS]
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'migrations'").fetchone() == (0,)
    assert current_version(conn) == MIGRATIONS[-1][0]
    assert migrate(conn, "later") == []


def test_events_read_back_are_the_objects_they_were_stored_as(tmp_path: Path) -> None:
    """Read back with msgspec, or json.loads for what msgspec refuses (NaN, which the json.loads path of
    parse_delivery keeps): the same values and types as stored, in the same key order."""
    from sentinel.okta import parse_delivery

    body = (b'{"data":{"events":[' + json.dumps(make_event("rb-1", n=[1, 1.0, 2**70, None, "caf\u00e9"])).encode()
            + b"," + json.dumps(make_event("rb-2", x=float("nan"))).encode() + b"]}}")
    stored = parse_delivery(body).events
    conn = connect(tmp_path / "s.db")
    migrate(conn, "2026-01-01T00:00:00.000000Z")
    ingest(conn, stored, (), datetime.now(UTC))
    back = {e.uuid: e for e in pending_events(conn, 10)}
    assert [json.dumps(back[e.uuid].data) for e in stored] == [json.dumps(e.data) for e in stored]


def test_a_new_store_has_16_kb_pages_and_one_made_before_keeps_its_own(tmp_path: Path) -> None:
    # Events of 1-3 KB fill 16 KB pages several at a time; 4 KB pages held one each, half empty.
    old = tmp_path / "old.db"
    conn = connect(old)  # a store made before: 4 KB pages, already migrated
    migrate(conn, "t0")
    conn.close()
    for path, page_size in ((tmp_path / "new.db", PAGE_SIZE), (old, 4096)):
        store = Store(path)
        store.start(NOW)
        try:
            asyncio.run(store.ingest([parse_event(make_event("e-1"))], [], NOW))
        finally:
            store.close()
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA page_size").fetchone() == (page_size,)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("SELECT uuid FROM events").fetchall() == [("e-1",)]
        conn.close()
    conn = sqlite3.connect(tmp_path / "new.db")
    assert conn.execute("PRAGMA auto_vacuum").fetchone() == (2,)  # incremental: retention gives pages back
