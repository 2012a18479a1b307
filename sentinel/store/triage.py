"""What the triage page reads (sentinel/web/ui): alerts filtered and counted, acknowledgements, per-rule and
per-channel figures. Domain functions over a ``sqlite3`` connection, like the other store modules."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sentinel.model import Severity, format_timestamp

# An alert's status on the page: "silenced" (a silence or maintenance window covered it: never sent), else
# from its deliveries: one dead makes it "dead", then one pending "pending"; "sent" when they all went out
# (alone or in a storm digest); "unrouted" when no channel took it. "acknowledged" filters on the ack.
STATUSES = ("silenced", "pending", "sent", "dead", "unrouted", "acknowledged")
_STATUS = (
    "CASE WHEN a.silenced_by IS NOT NULL THEN 'silenced' "
    "WHEN EXISTS (SELECT 1 FROM deliveries d WHERE d.alert_id = a.id AND d.status = 'dead') THEN 'dead' "
    "WHEN EXISTS (SELECT 1 FROM deliveries d WHERE d.alert_id = a.id AND d.status = 'pending') THEN 'pending' "
    "WHEN EXISTS (SELECT 1 FROM deliveries d WHERE d.alert_id = a.id AND d.status IN ('sent', 'digested')) "
    "THEN 'sent' ELSE 'unrouted' END"
)
_ROW = ("id", "created_at", "rule_id", "severity", "title", "group_key", "count", "first_seen", "last_seen",
        "silenced_by", "resolved_at", "status", "acknowledged_by", "acknowledged_at")


@dataclass(frozen=True, slots=True)
class AlertFilter:
    """The alerts page's filters; None: any. Times compare with the alert's creation."""

    rule: str | None = None
    severity: Severity | None = None  # this severity and above
    status: str | None = None  # one of STATUSES
    since: datetime | None = None
    until: datetime | None = None


def list_alerts(conn: sqlite3.Connection, where: AlertFilter, limit: int) -> list[dict[str, Any]]:
    """Alerts newest first, each with its status and acknowledgement."""
    clauses: list[str] = []
    args: list[Any] = []
    if where.rule:
        clauses.append("rule_id = ?")
        args.append(where.rule)
    if where.severity is not None:
        clauses.append("severity_rank >= ?")
        args.append(int(where.severity))
    if where.since is not None:
        clauses.append("created_at >= ?")
        args.append(format_timestamp(where.since))
    if where.until is not None:
        clauses.append("created_at < ?")
        args.append(format_timestamp(where.until))
    if where.status == "acknowledged":
        clauses.append("acknowledged_at IS NOT NULL")
    elif where.status:
        clauses.append("status = ?")
        args.append(where.status)
    filtered = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = conn.execute(
        f"SELECT {', '.join(_ROW)} FROM (SELECT a.id, a.created_at, a.rule_id, a.severity, a.severity_rank, "
        "a.title, a.group_key, a.count, a.first_seen, a.last_seen, a.silenced_by, a.resolved_at, "
        f"{_STATUS} AS status, k.acknowledged_by, "
        "k.acknowledged_at FROM alerts a LEFT JOIN acknowledgements k ON k.alert_id = a.id) "
        f"{filtered} ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
    return [dict(zip(_ROW, row, strict=True)) for row in rows]


def alert_status(conn: sqlite3.Connection, alert_id: int) -> dict[str, Any]:
    """One alert's status and acknowledgement (who, when)."""
    row = conn.execute(
        f"SELECT {_STATUS}, k.acknowledged_by, k.acknowledged_at FROM alerts a "
        "LEFT JOIN acknowledgements k ON k.alert_id = a.id WHERE a.id = ?", (alert_id,)).fetchone()
    if row is None:
        return {}
    return {"status": row[0], "acknowledged_by": row[1], "acknowledged_at": row[2]}


def acknowledge(conn: sqlite3.Connection, alert_id: int, by: str, at: datetime) -> bool:
    """Record who acknowledged an alert, and when; the first acknowledgement stands. False: no such alert,
    or already acknowledged."""
    cur = conn.execute(
        "INSERT OR IGNORE INTO acknowledgements (alert_id, acknowledged_by, acknowledged_at) "
        "SELECT id, ?, ? FROM alerts WHERE id = ?", (by, format_timestamp(at), alert_id))
    return cur.rowcount == 1


def counts_by_rule(conn: sqlite3.Connection, since: datetime) -> dict[str, int]:
    """Alerts created since then, per rule, most first."""
    rows = conn.execute("SELECT rule_id, count(*) AS n FROM alerts WHERE created_at >= ? GROUP BY rule_id "
                        "ORDER BY n DESC, rule_id", (format_timestamp(since),)).fetchall()
    return {rule: int(n) for rule, n in rows}


def rule_activity(conn: sqlite3.Connection, since: datetime) -> dict[str, tuple[str, int]]:
    """Per rule that ever fired: (when it last fired, how many alerts since ``since``)."""
    rows = conn.execute("SELECT rule_id, max(created_at), sum(created_at >= ?) FROM alerts GROUP BY rule_id",
                        (format_timestamp(since),)).fetchall()
    return {rule: (last, int(n or 0)) for rule, last, n in rows}


def deliveries_by_channel(conn: sqlite3.Connection) -> dict[str, dict[str, int]]:
    """Pending and dead deliveries per channel (channels with neither are absent)."""
    counts: dict[str, dict[str, int]] = {}
    for channel, status, n in conn.execute(
            "SELECT channel, status, count(*) FROM deliveries WHERE status IN ('pending', 'dead') "
            "GROUP BY channel, status"):
        counts.setdefault(channel, {"pending": 0, "dead": 0})[status] = int(n)
    return counts
