"""Storm control in the store: how many alerts a channel sent lately, and holding a delivery back in the
channel's open digest (an alert of rule ``sentinel-storm-digest`` whose own delivery, due when the storm
window ends, carries everything held). Nothing is dropped: a held delivery keeps its row, status 'digested',
``digest_id`` naming the digest alert."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta

from sentinel.model import format_timestamp, parse_timestamp
from sentinel.render.digest import HeldAlert

DIGEST_RULE = "sentinel-storm-digest"


def sent_since(conn: sqlite3.Connection, channel: str, since: datetime) -> int:
    """Alerts (not digests, not resolve notes) this channel sent since ``since``."""
    row = conn.execute(
        "SELECT count(*) FROM deliveries d JOIN alerts a ON a.id = d.alert_id WHERE d.channel = ? "
        "AND d.sent_at >= ? AND d.kind = 'alert' AND a.rule_id != ?",
        (channel, format_timestamp(since), DIGEST_RULE)).fetchone()
    return int(row[0])


def hold_for_digest(conn: sqlite3.Connection, delivery_id: int, channel: str, at: datetime,
                    window: timedelta) -> int | None:
    """Hold a pending delivery back in the channel's open digest (opening one, sent at ``at + window``, if
    none is pending). Returns the digest alert's id; None if the delivery was no longer pending."""
    now = format_timestamp(at)
    row = conn.execute(
        "SELECT d.alert_id FROM deliveries d JOIN alerts a ON a.id = d.alert_id WHERE d.channel = ? "
        "AND d.status = 'pending' AND a.rule_id = ? ORDER BY d.id DESC LIMIT 1", (channel, DIGEST_RULE)).fetchone()
    if row is not None:
        digest_id = int(row[0])
    else:
        cursor = conn.execute(
            "INSERT INTO alerts (key, rule_id, severity, severity_rank, title, summary, group_key, first_seen, "
            "last_seen, count, event_uuids, context, created_at, updated_at) "
            "VALUES (?, ?, 'info', 0, ?, '', ?, ?, ?, 0, '[]', '{}', ?, ?)",
            (f"{DIGEST_RULE}:{channel}:{now}", DIGEST_RULE, f"Alert storm on {channel}", channel, now, now,
             now, now))
        digest_id = int(cursor.lastrowid or 0)
        conn.execute(
            "INSERT INTO deliveries (alert_id, channel, status, attempts, next_attempt_at, created_at, updated_at) "
            "VALUES (?, ?, 'pending', 0, ?, ?, ?)", (digest_id, channel, format_timestamp(at + window), now, now))
    held = conn.execute(
        "UPDATE deliveries SET status = 'digested', digest_id = ?, updated_at = ? WHERE id = ? AND status = 'pending'",
        (digest_id, now, delivery_id))
    if held.rowcount != 1:
        return None
    # The digest's severity is the highest it holds (for channels that show it); its count, how many.
    conn.execute(
        "UPDATE alerts SET count = count + 1, last_seen = ?, updated_at = ?, "
        "severity_rank = max(severity_rank, (SELECT a.severity_rank FROM deliveries d JOIN alerts a "
        "ON a.id = d.alert_id WHERE d.id = ?)) WHERE id = ?", (now, now, delivery_id, digest_id))
    conn.execute(
        "UPDATE alerts SET severity = CASE severity_rank WHEN 0 THEN 'info' WHEN 1 THEN 'low' WHEN 2 THEN 'medium' "
        "WHEN 3 THEN 'high' ELSE 'critical' END WHERE id = ?", (digest_id,))
    return digest_id


def digest_contents(conn: sqlite3.Connection, digest_id: int) -> list[HeldAlert]:
    """The alerts a digest holds, oldest first."""
    rows = conn.execute(
        "SELECT a.id, a.rule_id, a.severity, a.title, a.created_at FROM deliveries d JOIN alerts a "
        "ON a.id = d.alert_id WHERE d.digest_id = ? ORDER BY a.id", (digest_id,)).fetchall()
    return [HeldAlert(int(r[0]), r[1], r[2], r[3], parse_timestamp(r[4])) for r in rows]
