"""Alerts, their delivery rows, and rule state, written with the events they came from.

``record_evaluation`` is one transaction: the alerts a batch of events produced, a delivery row per
alert × routed channel, the rule-state changes, and the events marked evaluated. A crash before it
commits means the batch is evaluated again from the same state; after it, never again.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sentinel.model import Alert, format_timestamp
from sentinel.store.events import mark_evaluated

# An alert that folds in many events keeps the first ones (the count keeps growing).
MAX_EVENT_UUIDS = 100
# An alert whose newest event is older than this when it is made comes from a back-fill (the System Log
# read back after an outage or at first start), not from live traffic: its deliveries wait behind live
# ones (deliveries.due_deliveries). Hooks deliver within seconds and the poller a minute or two late.
LIVE_WINDOW = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class EvaluationResult:
    evaluated: int
    new_alerts: list[int]  # ids of alerts created (their deliveries were queued)
    new_keys: list[str]
    updated_alerts: int
    silenced: list[int] = field(default_factory=list)  # ids of new alerts stored silenced (no delivery rows)


def record_evaluation(
    conn: sqlite3.Connection,
    event_uuids: Sequence[str],
    alerts: Sequence[Alert],
    route: Callable[[Alert], Sequence[str]],
    state_changes: Mapping[str, str],
    state_deleted: Iterable[str],
    at: datetime,
    silenced: Mapping[str, str] | None = None,
) -> EvaluationResult:
    """``silenced``: alert key → what silences it (``silence 7``, ``maintenance NAME``). A new silenced alert
    is stored with that and gets no delivery row, so nothing can send it, even after the silence ends; a
    later fold into a stored alert keeps what the alert was (silenced or not)."""
    now = format_timestamp(at)
    silenced = silenced or {}
    new_ids: list[int] = []
    silenced_ids: list[int] = []
    new_keys: list[str] = []
    updated = 0
    for alert in alerts:
        row = conn.execute("SELECT id, event_uuids FROM alerts WHERE key = ?", (alert.key,)).fetchone()
        if row is None:
            silenced_by = silenced.get(alert.key)
            alert_id = _insert_alert(conn, alert, now, silenced_by)
            new_ids.append(alert_id)
            new_keys.append(alert.key)
            if silenced_by is not None:
                silenced_ids.append(alert_id)
                continue
            backfilled = int(at - alert.last_seen > LIVE_WINDOW)
            conn.executemany(
                "INSERT OR IGNORE INTO deliveries (alert_id, channel, status, attempts, next_attempt_at, "
                "created_at, updated_at, backfilled) VALUES (?, ?, 'pending', 0, ?, ?, ?, ?)",
                [(alert_id, channel, now, now, now, backfilled) for channel in route(alert)],
            )
        else:
            _fold_into(conn, row[0], json.loads(row[1] or "[]"), alert, now)
            updated += 1
    if state_changes:
        conn.executemany("INSERT OR REPLACE INTO rule_state (key, value) VALUES (?, ?)", state_changes.items())
    conn.executemany("DELETE FROM rule_state WHERE key = ?", [(k,) for k in state_deleted])
    evaluated = mark_evaluated(conn, event_uuids, at)
    return EvaluationResult(evaluated=evaluated, new_alerts=new_ids, new_keys=new_keys, updated_alerts=updated,
                            silenced=silenced_ids)


def _insert_alert(conn: sqlite3.Connection, alert: Alert, now: str, silenced_by: str | None = None) -> int:
    cursor = conn.execute(
        "INSERT INTO alerts (key, rule_id, severity, severity_rank, title, summary, group_key, first_seen, "
        "last_seen, count, event_uuids, context, created_at, updated_at, silenced_by, resolve_after) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (alert.key, alert.rule_id, alert.severity.label, int(alert.severity), alert.title, alert.summary,
         alert.group_key, format_timestamp(alert.first_seen), format_timestamp(alert.last_seen), alert.count,
         json.dumps(list(alert.event_uuids[:MAX_EVENT_UUIDS])), _dump(alert.context.as_dict()), now, now,
         silenced_by, alert.resolve_after),
    )
    return int(cursor.lastrowid or 0)


def _fold_into(conn: sqlite3.Connection, alert_id: int, known: list[str], alert: Alert, now: str) -> None:
    """A later emission of the same alert key: keep the widest time span and the largest count.

    The message context follows the version with the largest count, so a message sent (or retried) after
    the alert grew states its distinct values and samples, not those of its first version.
    """
    merged = known + [u for u in alert.event_uuids if u not in set(known)]
    reopen(conn, alert_id, now)
    conn.execute(
        "UPDATE alerts SET context = CASE WHEN ? >= count THEN ? ELSE context END, count = max(count, ?), "
        "first_seen = min(first_seen, ?), last_seen = max(last_seen, ?), event_uuids = ?, updated_at = ? "
        "WHERE id = ?",
        (alert.count, _dump(alert.context.as_dict()), alert.count, format_timestamp(alert.first_seen),
         format_timestamp(alert.last_seen), json.dumps(merged[:MAX_EVENT_UUIDS]), now, alert_id),
    )


def reopen(conn: sqlite3.Connection, alert_id: int, now: str) -> None:
    """An alert resolved by resolve_after that fires again (a fold): open again, its channels triggered again
    with the same dedup key, which PagerDuty opens as a fresh incident (the old one is resolved)."""
    cursor = conn.execute("UPDATE alerts SET resolved_at = NULL WHERE id = ? AND resolved_at IS NOT NULL",
                          (alert_id,))
    if cursor.rowcount:
        conn.execute(
            "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = ?, created_at = ?, "
            "updated_at = ?, sent_at = NULL, last_error = NULL WHERE alert_id = ? AND kind = 'alert' "
            "AND status = 'sent'", (now, now, now, alert_id))


def load_rule_state(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    return [(k, v) for k, v in conn.execute("SELECT key, value FROM rule_state")]


def rule_state_of(conn: sqlite3.Connection, rule_id: str) -> list[tuple[str, str]]:
    """The (group key, JSON) rows of one rule, by group key (state keys are ``rule/group``; ids hold no '/')."""
    rows = conn.execute("SELECT key, value FROM rule_state WHERE key >= ? AND key < ? ORDER BY key",
                        (f"{rule_id}/", f"{rule_id}0"))  # '0' sorts right after '/'
    return [(k.partition("/")[2], v) for k, v in rows]


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))
