"""The outbox: delivery rows (one per alert × channel) and the alerts they carry.

Domain functions over a ``sqlite3`` connection. Writers run inside the store's writer transaction;
every state change is guarded by ``status = 'pending'`` so a delivery recorded as sent (or dead)
is never changed back by a late attempt, and so never sent again unless ``redeliver`` asks for it.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sentinel.alert_context import AlertContext
from sentinel.model import Alert, Severity, format_timestamp, parse_timestamp

ERROR_LIMIT = 1000


@dataclass(frozen=True)
class DueDelivery:
    id: int
    alert_id: int
    channel: str
    attempts: int
    created_at: datetime
    alert: Alert
    dead_channels: tuple[str, ...]  # other channels that gave up on this alert (for the fallback report)
    kind: str = "alert"  # or "resolve": the resolve_after notice for the alert's group
    backfilled: bool = False  # the alert came from a back-fill (alerts.LIVE_WINDOW): live ones go first


_ALERT_COLUMNS = ("key", "rule_id", "severity", "title", "summary", "group_key", "first_seen", "last_seen",
                  "count", "event_uuids", "context", "resolve_after")


def alert_from_row(row: dict[str, Any]) -> Alert:
    """An ``alerts`` row back to an Alert (the rendering context included)."""
    context = row.get("context")
    uuids = row.get("event_uuids")
    return Alert(
        key=row["key"], rule_id=row["rule_id"], severity=Severity.parse(row["severity"]), title=row["title"],
        summary=row.get("summary") or "", group_key=row.get("group_key") or "",
        first_seen=parse_timestamp(row["first_seen"]), last_seen=parse_timestamp(row["last_seen"]),
        count=int(row["count"]),
        event_uuids=tuple(json.loads(uuids) if isinstance(uuids, str) else uuids or ()),
        context=AlertContext.from_dict(json.loads(context) if isinstance(context, str) else context),
        resolve_after=row.get("resolve_after"),
    )


def due_deliveries(conn: sqlite3.Connection, channel: str, now: datetime, limit: int = 20) -> list[DueDelivery]:
    """Pending deliveries of ``channel`` whose next attempt is due: those of live alerts first, then those
    of back-filled ones (alerts.LIVE_WINDOW), each oldest first, so a back-fill's thousands of alerts
    never hold up an alert about what is happening now."""
    cols = ", ".join(f"a.{c}" for c in _ALERT_COLUMNS)
    rows = conn.execute(
        f"SELECT d.id, d.alert_id, d.channel, d.attempts, d.created_at, {cols}, "
        "(SELECT group_concat(x.channel) FROM deliveries x WHERE x.alert_id = d.alert_id AND x.status = 'dead'), "
        "d.kind, d.backfilled "
        "FROM deliveries d JOIN alerts a ON a.id = d.alert_id "
        "WHERE d.channel = ? AND d.status = 'pending' AND d.next_attempt_at <= ? "
        "ORDER BY d.backfilled, d.next_attempt_at, d.id LIMIT ?",
        (channel, format_timestamp(now), limit),
    ).fetchall()
    due = []
    for row in rows:
        end = 5 + len(_ALERT_COLUMNS)
        alert = alert_from_row(dict(zip(_ALERT_COLUMNS, row[5:end], strict=True)))
        dead = tuple(c for c in (row[end] or "").split(",") if c and c != channel)
        due.append(DueDelivery(row[0], row[1], row[2], row[3], parse_timestamp(row[4]), alert, dead, row[end + 1],
                               bool(row[end + 2])))
    return due


def next_due(conn: sqlite3.Connection, channel: str) -> datetime | None:
    row = conn.execute("SELECT min(next_attempt_at) FROM deliveries WHERE channel = ? AND status = 'pending'",
                       (channel,)).fetchone()
    return parse_timestamp(row[0]) if row and row[0] else None


def mark_sent(conn: sqlite3.Connection, delivery_id: int, at: datetime, detail: str = "") -> bool:
    now = format_timestamp(at)
    cur = conn.execute(
        "UPDATE deliveries SET status = 'sent', attempts = attempts + 1, sent_at = ?, updated_at = ?, "
        "last_error = NULL WHERE id = ? AND status = 'pending'", (now, now, delivery_id))
    return cur.rowcount == 1


def schedule_retry(conn: sqlite3.Connection, delivery_id: int, error: str, next_attempt: datetime,
                   at: datetime) -> bool:
    cur = conn.execute(
        "UPDATE deliveries SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?, updated_at = ? "
        "WHERE id = ? AND status = 'pending'",
        (error[:ERROR_LIMIT], format_timestamp(next_attempt), format_timestamp(at), delivery_id))
    return cur.rowcount == 1


def mark_dead(conn: sqlite3.Connection, delivery_id: int, error: str, at: datetime,
              fallback: str | None = None) -> bool:
    """Give up on a delivery; with a fallback channel, queue the alert there to report it.

    The fallback may already have sent this alert as an ordinary one (it is routed like any channel):
    that row is queued again, so the report still goes out. A fallback row still pending will carry the
    report when it is sent; one that is dead stays dead."""
    now = format_timestamp(at)
    cur = conn.execute(
        "UPDATE deliveries SET status = 'dead', attempts = attempts + 1, last_error = ?, updated_at = ? "
        "WHERE id = ? AND status = 'pending'", (error[:ERROR_LIMIT], now, delivery_id))
    if cur.rowcount != 1:
        return False
    if fallback:
        conn.execute(
            "INSERT INTO deliveries (alert_id, channel, kind, status, attempts, next_attempt_at, created_at, "
            "updated_at) SELECT alert_id, ?, kind, 'pending', 0, ?, ?, ? FROM deliveries WHERE id = ? AND channel != ? "
            "ON CONFLICT (alert_id, channel, kind) DO UPDATE SET status = 'pending', attempts = 0, "
            "next_attempt_at = excluded.next_attempt_at, created_at = excluded.created_at, "
            "updated_at = excluded.updated_at, sent_at = NULL, last_error = NULL WHERE status = 'sent'",
            (fallback, now, now, now, delivery_id, fallback))
    return True


def redeliver(conn: sqlite3.Connection, at: datetime, delivery_id: int | None = None,
              all_dead: bool = False) -> int:
    """Queue a delivery (or every dead one) again, due now. Its retry budget starts again from now."""
    now = format_timestamp(at)
    sql = ("UPDATE deliveries SET status = 'pending', next_attempt_at = ?, created_at = ?, updated_at = ?, "
           "sent_at = NULL WHERE ")
    if all_dead:
        cur = conn.execute(sql + "status = 'dead'", (now, now, now))
    elif delivery_id is not None:
        cur = conn.execute(sql + "id = ?", (now, now, now, delivery_id))
    else:
        return 0
    return cur.rowcount


_DELIVERY_COLUMNS = ("id", "alert_id", "channel", "status", "attempts", "last_error", "next_attempt_at",
                     "created_at", "sent_at", "kind", "digest_id")


def list_deliveries(conn: sqlite3.Connection, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    cols = ", ".join(f"d.{c}" for c in _DELIVERY_COLUMNS)
    where, args = ("WHERE d.status = ?", [status]) if status else ("", [])
    rows = conn.execute(
        f"SELECT {cols}, a.rule_id, a.title FROM deliveries d JOIN alerts a ON a.id = d.alert_id {where} "
        "ORDER BY d.id DESC LIMIT ?", (*args, limit)).fetchall()
    return [dict(zip((*_DELIVERY_COLUMNS, "rule_id", "title"), r, strict=True)) for r in rows]


def deliveries_for_alert(conn: sqlite3.Connection, alert_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(f"SELECT {', '.join(_DELIVERY_COLUMNS)} FROM deliveries WHERE alert_id = ? ORDER BY id",
                        (alert_id,)).fetchall()
    return [dict(zip(_DELIVERY_COLUMNS, r, strict=True)) for r in rows]


_LIST_COLUMNS = ("id", "created_at", "rule_id", "severity", "title", "group_key", "count", "first_seen",
                 "last_seen", "silenced_by", "resolved_at")
# An alert's status, as `sentinel alerts` shows it: silenced (a silence or maintenance window covered it when
# it was made: never sent), resolved (resolve_after: its group went quiet), else open.
_STATUS = ("CASE WHEN silenced_by IS NOT NULL THEN 'silenced' WHEN resolved_at IS NOT NULL THEN 'resolved' "
           "ELSE 'open' END")


def list_alerts(conn: sqlite3.Connection, since: datetime | None = None, rule: str | None = None,
                limit: int = 100) -> list[dict[str, Any]]:
    clauses, args = [], []
    if since is not None:
        clauses.append("created_at >= ?")
        args.append(format_timestamp(since))
    if rule:
        clauses.append("rule_id = ?")
        args.append(rule)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = conn.execute(f"SELECT {', '.join(_LIST_COLUMNS)}, {_STATUS} FROM alerts {where} ORDER BY id DESC LIMIT ?",
                        (*args, limit)).fetchall()
    return [dict(zip((*_LIST_COLUMNS, "status"), r, strict=True)) for r in rows]


def get_alert(conn: sqlite3.Connection, alert_id: int) -> dict[str, Any] | None:
    cols = ("id", "created_at", *_ALERT_COLUMNS, "silenced_by", "resolved_at", "status")
    row = conn.execute(f"SELECT {', '.join(cols[:-1])}, {_STATUS} FROM alerts WHERE id = ?", (alert_id,)).fetchone()
    if row is None:
        return None
    record = dict(zip(cols, row, strict=True))
    for key in ("event_uuids", "context"):
        record[key] = json.loads(record[key]) if isinstance(record[key], str) else record[key]
    return record


def dead_count(conn: sqlite3.Connection, channel: str) -> int:
    row = conn.execute("SELECT count(*) FROM deliveries WHERE channel = ? AND status = 'dead'", (channel,))
    return int(row.fetchone()[0])
