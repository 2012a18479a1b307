"""resolve_after in the store: alert groups quiet for their rule's resolve_after are resolved, and a 'resolve'
delivery is queued for each given channel that was sent the group's alert.

A group is (rule id, group key), or the alert alone when its rule does not group: the same identity as the
PagerDuty dedup key (sentinel.render.message.dedup_key), so a resolve closes exactly the incident its
triggers opened. Quiet is measured in wall-clock time since the group's last alert or fold (``updated_at``,
the store's time), not in event time: on call cares about the activity they see stop."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from datetime import datetime, timedelta

from sentinel.model import format_timestamp, parse_timestamp


def resolve_quiet(conn: sqlite3.Connection, now: datetime, channels: Collection[str], limit: int = 200) -> list[int]:
    """Resolve the quiet groups; returns the ids of the alerts that carry a resolve (one per group)."""
    stamp = format_timestamp(now)
    rows = conn.execute(
        "SELECT rule_id, group_key, CASE WHEN group_key = '' THEN key ELSE '' END, max(updated_at), "
        "max(resolve_after), max(id) FROM alerts WHERE resolve_after IS NOT NULL AND resolved_at IS NULL "
        "AND silenced_by IS NULL GROUP BY 1, 2, 3 LIMIT ?", (limit,)).fetchall()
    carried: list[int] = []
    for rule_id, group_key, own_key, last, after, newest in rows:
        # The whole group, resolved or not, silenced or not: any alert of it counts as activity.
        where = "rule_id = ? AND key = ?" if own_key else "rule_id = ? AND group_key = ?"
        joined = "a.rule_id = ? AND a.key = ?" if own_key else "a.rule_id = ? AND a.group_key = ?"
        args = (rule_id, own_key or group_key)
        latest = conn.execute(f"SELECT max(updated_at) FROM alerts WHERE {where}", args).fetchone()[0] or last
        if parse_timestamp(latest) + timedelta(seconds=int(after)) > now:
            continue
        conn.execute(f"UPDATE alerts SET resolved_at = ? WHERE {where} AND resolved_at IS NULL", (stamp, *args))
        names = list(channels)
        if names:
            marks = ",".join("?" * len(names))
            conn.execute(
                "INSERT INTO deliveries (alert_id, channel, kind, status, attempts, next_attempt_at, created_at, "
                f"updated_at) SELECT DISTINCT ?, d.channel, 'resolve', 'pending', 0, ?, ?, ? FROM deliveries d "
                f"JOIN alerts a ON a.id = d.alert_id WHERE {joined} "
                f"AND d.kind = 'alert' AND d.status = 'sent' AND d.channel IN ({marks}) "
                "ON CONFLICT (alert_id, channel, kind) DO UPDATE SET status = 'pending', attempts = 0, "
                "next_attempt_at = excluded.next_attempt_at, created_at = excluded.created_at, "
                "updated_at = excluded.updated_at, sent_at = NULL, last_error = NULL",
                (newest, stamp, stamp, stamp, *args, *names))
        carried.append(int(newest))
    return carried
