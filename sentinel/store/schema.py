"""The schema as numbered migrations, applied and recorded by sqlite-utils' ``Migrations`` (set
``sentinel``, table ``_sqlite_migrations``; each step and its record in one transaction).

Stores made before that kept their own ``migrations`` table (version, name, applied_at): on first open
its records are copied into sqlite-utils' table, with their times, and it is dropped, in one transaction,
so no step runs twice (docs/architecture.md, "Store")."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import sqlite_utils
from sqlite_utils import Migrations

from sentinel.store import retention


def _v1_events(db: sqlite_utils.Database) -> None:
    db.table("events").create(
        {"uuid": str, "event_type": str, "published": str, "received_at": str, "evaluated_at": str,
         "body": str},
        pk="uuid", not_null={"event_type", "published", "received_at", "body"},
    )
    # The detector's queue: pending events in event-time order, cheap to find.
    db.execute("CREATE INDEX events_pending ON events(published) WHERE evaluated_at IS NULL")
    db.table("events").create_index(["event_type", "published"], index_name="events_type_published")
    db.table("events").create_index(["received_at"], index_name="events_received")
    db.table("quarantine").create(
        {"id": int, "received_at": str, "path": str, "reason": str, "body": str},
        pk="id", not_null={"received_at", "path", "reason", "body"},
    )


def _v2_alerts(db: sqlite_utils.Database) -> None:
    db.table("alerts").create(
        {"id": int, "key": str, "rule_id": str, "severity": str, "severity_rank": int, "title": str,
         "summary": str, "group_key": str, "first_seen": str, "last_seen": str, "count": int,
         "event_uuids": str, "context": str, "created_at": str, "updated_at": str},
        pk="id", not_null={"key", "rule_id", "severity", "severity_rank", "title", "first_seen", "last_seen",
                           "count", "created_at", "updated_at"},
    )
    db.table("alerts").create_index(["key"], unique=True, index_name="alerts_key")
    db.table("alerts").create_index(["rule_id", "created_at"], index_name="alerts_rule")
    db.table("alerts").create_index(["created_at"], index_name="alerts_created")
    db.table("deliveries").create(
        {"id": int, "alert_id": int, "channel": str, "status": str, "attempts": int, "last_error": str,
         "next_attempt_at": str, "created_at": str, "updated_at": str, "sent_at": str},
        pk="id", not_null={"alert_id", "channel", "status", "attempts", "next_attempt_at", "created_at",
                           "updated_at"},
        foreign_keys=[("alert_id", "alerts", "id")], defaults={"attempts": 0},
    )
    db.table("deliveries").create_index(["alert_id", "channel"], unique=True, index_name="deliveries_alert_channel")
    db.table("deliveries").create_index(["channel", "status", "next_attempt_at"], index_name="deliveries_due")
    db.table("rule_state").create({"key": str, "value": str}, pk="key", not_null={"value"})


def _v3_pending_order(db: sqlite_utils.Database) -> None:
    # The detector reads pending events ORDER BY published, uuid: with uuid in the index, a burst of
    # events stamped the same millisecond no longer forces a sort on every batch.
    db.execute("DROP INDEX events_pending")
    db.execute("CREATE INDEX events_pending ON events(published, uuid) WHERE evaluated_at IS NULL")


def _v4_inbox_cursor(db: sqlite_utils.Database) -> None:
    # How far the inbox (a file of its own, see sentinel/store/inbox.py) has been unpacked into events.
    db.execute("CREATE TABLE inbox_cursor (generation TEXT PRIMARY KEY, last_id INTEGER NOT NULL)")


def _v5_on_call(db: sqlite_utils.Database) -> None:
    # Silences (sentinel/silences.py); what silenced an alert (a silence or a maintenance window); when its
    # group was resolved (resolve_after). Deliveries gain a kind: 'alert', or 'resolve' (the resolve_after
    # notice, a second row for the same alert and channel), and the status 'digested' (storm control).
    db.table("silences").create(
        {"id": int, "rule": str, "matchers": str, "starts_at": str, "ends_at": str, "author": str,
         "comment": str, "created_at": str, "expired_at": str},
        pk="id", not_null={"rule", "matchers", "starts_at", "ends_at", "author", "comment", "created_at"},
    )
    db.table("silences").create_index(["ends_at"], index_name="silences_ends")
    db.execute("ALTER TABLE alerts ADD COLUMN silenced_by TEXT")
    db.execute("ALTER TABLE alerts ADD COLUMN resolved_at TEXT")
    db.execute("ALTER TABLE deliveries ADD COLUMN kind TEXT NOT NULL DEFAULT 'alert'")
    db.execute("DROP INDEX deliveries_alert_channel")
    db.execute("CREATE UNIQUE INDEX deliveries_alert_channel ON deliveries(alert_id, channel, kind)")


def _v6_storm_digests(db: sqlite_utils.Database) -> None:
    # Storm control (sentinel/store/storm.py): a delivery held back is 'digested' into the digest alert
    # (rule sentinel-storm-digest) whose own delivery carries it.
    db.execute("ALTER TABLE deliveries ADD COLUMN digest_id INTEGER REFERENCES alerts(id)")
    db.execute("CREATE INDEX deliveries_digest ON deliveries(digest_id) WHERE digest_id IS NOT NULL")
    db.execute("CREATE INDEX deliveries_sent ON deliveries(channel, sent_at) WHERE sent_at IS NOT NULL")


def _v7_resolve_after(db: sqlite_utils.Database) -> None:
    # The rule's resolve_after (seconds) kept with each alert: the daemon resolves quiet groups from the store.
    db.execute("ALTER TABLE alerts ADD COLUMN resolve_after INTEGER")
    db.execute("CREATE INDEX alerts_to_resolve ON alerts(rule_id, group_key) "
               "WHERE resolve_after IS NOT NULL AND resolved_at IS NULL")


def _v8_acknowledgements(db: sqlite_utils.Database) -> None:
    # Who acknowledged an alert on the triage page, and when (sentinel/store/triage.py).
    db.table("acknowledgements").create(
        {"alert_id": int, "acknowledged_by": str, "acknowledged_at": str},
        pk="alert_id", not_null={"acknowledged_by", "acknowledged_at"},
        foreign_keys=[("alert_id", "alerts", "id")],
    )


def _v9_no_received_index(db: sqlite_utils.Database) -> None:
    # Events are stored in received order, so rowid order is received order: retention and the newest
    # received_at read it from the table itself. The index cost every insert about a microsecond
    # (docs/benchmarks.md, "Detector pace").
    db.execute("DROP INDEX IF EXISTS events_received")


def _v10_backfilled_deliveries(db: sqlite_utils.Database) -> None:
    # Live alerts go out before back-filled ones (issue 16): the dispatchers read due deliveries in
    # (backfilled, next_attempt_at) order from this index instead of (next_attempt_at) alone.
    db.execute("ALTER TABLE deliveries ADD COLUMN backfilled INTEGER NOT NULL DEFAULT 0")
    db.execute("DROP INDEX deliveries_due")
    db.execute("CREATE INDEX deliveries_due ON deliveries(channel, status, backfilled, next_attempt_at)")


MIGRATIONS: tuple[tuple[int, str, Callable[[sqlite_utils.Database], None]], ...] = (
    (1, "events and quarantine", _v1_events),
    (2, "alerts, deliveries, rule state", _v2_alerts),
    (3, "pending events indexed in evaluation order", _v3_pending_order),
    (4, "inbox cursor", _v4_inbox_cursor),
    (5, "silences; alerts silenced and resolved", _v5_on_call),
    (6, "storm digests", _v6_storm_digests),
    (7, "resolve_after kept with alerts", _v7_resolve_after),
    (8, "acknowledgements", _v8_acknowledgements),
    (9, "events found in received order by rowid, not an index", _v9_no_received_index),
    (10, "back-filled alerts' deliveries after live ones", _v10_backfilled_deliveries),
)


# A new store's page size. Events are ~1-3 KB of text each: with 4 KB pages most hold one event and
# half a page is written (and stored) for nothing; 16 KB pages hold several, about halving the bytes
# each event costs the WAL, the checkpoint and the disk (docs/benchmarks.md, "Detector pace"). A store
# made before keeps its 4 KB pages (SQLite changes a page size only by rewriting the file: VACUUM,
# outside WAL mode, with the daemon stopped).
PAGE_SIZE = 16_384


def prepare_new_store(conn: sqlite3.Connection) -> bool:
    """A new, empty file: its page size and incremental auto-vacuum, which only an empty file can take.
    Before :func:`migrate`; outside a transaction. Returns True when the file was new."""
    return retention.use_incremental_vacuum(conn, PAGE_SIZE)


MIGRATION_SET = "sentinel"
LEGACY_TABLE = "migrations"


def _name(version: int, name: str) -> str:
    """A step's name in sqlite-utils' table: the version first, so it stays readable and sortable."""
    return f"{version}: {name}"


def _migrations() -> Migrations:
    migrations = Migrations(MIGRATION_SET)
    for version, name, step in MIGRATIONS:
        migrations(name=_name(version, name))(step)
    return migrations


def migrate(conn: sqlite3.Connection, now: str) -> list[int]:
    """Apply every migration not yet recorded, each in its own transaction. Returns what was applied.
    ``now`` stamps the records adopted from a legacy ``migrations`` table that lack a time."""
    db = sqlite_utils.Database(conn)
    migrations = _migrations()
    _adopt_legacy_records(db, migrations, now)
    pending = {m.name for m in migrations.pending(db)}
    migrations.apply(db)
    return [version for version, name, _ in MIGRATIONS if _name(version, name) in pending]


def _adopt_legacy_records(db: sqlite_utils.Database, migrations: Migrations, now: str) -> None:
    """Our own ``migrations`` table (stores made before sqlite-utils' Migrations were used): its records
    move into sqlite-utils' table, so the steps they name are never run again."""
    if not db.table(LEGACY_TABLE).exists():
        return
    names = {version: _name(version, name) for version, name, _ in MIGRATIONS}
    with db.atomic():
        migrations.ensure_migrations_table(db)
        recorded = {m.name for m in migrations.applied(db)}
        for row in db.execute(f"SELECT version, applied_at FROM {LEGACY_TABLE} ORDER BY version").fetchall():
            version, applied_at = int(row[0]), row[1]
            name = names.get(version)
            if name is None:  # made by a newer Sentinel: refuse rather than guess its schema
                raise sqlite3.DatabaseError(f"the store has migration {version}, unknown to this version")
            if name not in recorded:
                db.table(Migrations.migrations_table).insert(
                    {"migration_set": MIGRATION_SET, "name": name, "applied_at": applied_at or now})
        db.execute(f"DROP TABLE {LEGACY_TABLE}")


def current_version(conn: sqlite3.Connection) -> int:
    """The highest migration applied (0: none)."""
    applied = _migrations().applied(sqlite_utils.Database(conn))
    return max((int(m.name.split(":", 1)[0]) for m in applied), default=0)
