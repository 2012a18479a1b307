"""The schema as numbered migrations, each recorded in the ``migrations`` table when applied."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import sqlite_utils


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


MIGRATIONS: tuple[tuple[int, str, Callable[[sqlite_utils.Database], None]], ...] = (
    (1, "events and quarantine", _v1_events),
    (2, "alerts, deliveries, rule state", _v2_alerts),
    (3, "pending events indexed in evaluation order", _v3_pending_order),
    (4, "inbox cursor", _v4_inbox_cursor),
)


def migrate(conn: sqlite3.Connection, now: str) -> list[int]:
    """Apply every migration not yet recorded, each in its own transaction. Returns what was applied."""
    db = sqlite_utils.Database(conn)
    db.table("migrations").create({"version": int, "name": str, "applied_at": str}, pk="version", if_not_exists=True)
    done = {row["version"] for row in db.table("migrations").rows}
    applied = []
    for version, name, step in MIGRATIONS:
        if version in done:
            continue
        with db.atomic():
            step(db)
            db.table("migrations").insert({"version": version, "name": name, "applied_at": now})
        applied.append(version)
    return applied


def current_version(conn: sqlite3.Connection) -> int:
    try:
        row = conn.execute("SELECT max(version) FROM migrations").fetchone()
    except sqlite3.OperationalError:
        return 0
    return int(row[0] or 0)
