"""The pure engine: ``evaluate(ruleset, event, state, now) -> (alerts, state)``. No clock, no I/O, no logging.

Windows use event time (``published``, in integer microseconds), so out-of-order delivery works. Stateful
rules keep one JSON-able group record per (rule, group) in an ``EngineState`` (``sentinel.engine_state``:
bounded, persisted by the store, counting per rule what it had to let go).

Semantics (documented in docs/rules.md):
- threshold: fires when some window of ``window`` seconds holding the new event has >= count events (or
  distinct values). The alert is keyed on that window's start; matches until ``start + hold`` (hold = the
  throttle period, else the window) fold into it (same key, count grows); later matches start afresh.
- throttle only: tumbling periods aligned to the epoch; one alert per rule, group and period.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sentinel.model import Alert, Event, format_timestamp
from sentinel.rules.context import alert_context, short_event
from sentinel.rules.engine_state import DROPPED_ENTRIES, MATCH_ERRORS, MICROS, EngineState, from_micros, to_micros
from sentinel.rules.model import Rule, RuleSet
from sentinel.rules.values import as_text

__all__ = ["EngineState", "alert_key", "evaluate", "group_key_of"]

# A distinct-count group keeps every matching event until it holds this many (or twice its count, if
# more); then only the newest event of each value: the distinct count is exact, the event count of a
# flood of repeats is not. A plain count needs no cap: a group never holds more than ``count`` events.
EXACT_DISTINCT_ENTRIES = 2_000
MAX_ALERT_UUIDS = 100
MAX_SAMPLES = 5
MAX_DISTINCT_KEPT = 100
MAX_GROUP_VALUE_CHARS = 256


def evaluate(ruleset: RuleSet, event: Event, state: EngineState, now: datetime) -> tuple[list[Alert], EngineState]:
    """Run every enabled rule for ``event.event_type`` over the event; mutate and return ``state``."""
    rules = ruleset.rules_for(event.event_type)
    if not rules:
        return [], state
    data = event.data if type(event.data) is dict else dict(event.data)
    micros = to_micros(event.published)
    state.observe(micros, now)
    alerts: list[Alert] = []
    for rule in rules:
        try:
            if not rule.matcher(data):
                continue
        except Exception:  # a loaded rule must not raise; if one does, skip it rather than stall intake
            state.tally(MATCH_ERRORS, rule.id)
            continue
        if rule.threshold is not None:
            alert = _threshold(rule, event, data, micros, state)
        elif rule.throttle_seconds is not None:
            alert = _throttle(rule, event, data, micros, state)
        else:
            alert = _single(rule, event, data, micros)
        if alert is not None:
            alerts.append(alert)
    return alerts, state


def group_key_of(rule: Rule, data: Mapping[str, Any]) -> str:
    parts = []
    for path in rule.group_by:
        values = path.values(data)
        text = as_text(values[0]) if values else None
        parts.append(f"{path.text}={(text or '?')[:MAX_GROUP_VALUE_CHARS]}")
    return "; ".join(parts)


def alert_key(rule_id: str, group_key: str, start: int) -> str:
    digest = hashlib.sha256(f"{group_key}\x00{start}".encode()).hexdigest()[:32]
    return f"{rule_id}:{digest}"


def _published(micros: int) -> str:
    return format_timestamp(from_micros(micros))


def _make_alert(
    rule: Rule, event: Event, data: Mapping[str, Any], key: str, group_key: str, record: Mapping[str, Any]
) -> Alert:
    context = alert_context(rule, data, event.event_type, event.uuid, format_timestamp(event.published),
                            group_key, record)
    return Alert(
        key=key,
        rule_id=rule.id,
        severity=rule.severity_for(data),
        title=rule.title.render(data),
        summary=rule.summary.render(data),
        group_key=group_key,
        first_seen=from_micros(record["first"]),
        last_seen=from_micros(record["last"]),
        count=record["count"],
        event_uuids=tuple(record["uuids"]),
        context=context,
        channels=rule.channels,
        resolve_after=rule.resolve_after_seconds,
    )


def _single(rule: Rule, event: Event, data: Mapping[str, Any], micros: int) -> Alert:
    record = {
        "first": micros,
        "last": micros,
        "count": 1,
        "uuids": [event.uuid],
        "samples": [short_event(data, event.uuid, _published(micros))],
    }
    group_key = group_key_of(rule, data) if rule.group_by else ""
    return _make_alert(rule, event, data, f"{rule.id}:{event.uuid}", group_key, record)


def _fold(record: dict[str, Any], event: Event, data: Mapping[str, Any], micros: int) -> None:
    record["count"] += 1
    record["first"] = min(record["first"], micros)
    record["last"] = max(record["last"], micros)
    if len(record["uuids"]) < MAX_ALERT_UUIDS and event.uuid not in record["uuids"]:
        record["uuids"].append(event.uuid)
    if len(record["samples"]) < MAX_SAMPLES:
        record["samples"].append(short_event(data, event.uuid, _published(micros)))


def _throttle(rule: Rule, event: Event, data: Mapping[str, Any], micros: int, state: EngineState) -> Alert:
    period = (rule.throttle_seconds or 1) * MICROS
    group_key = group_key_of(rule, data)
    state_key = f"{rule.id}/{group_key}"
    start = micros - micros % period
    group = state.group(state_key) or {"periods": {}, "seen": micros, "expires": 0}
    periods: dict[str, dict[str, Any]] = group["periods"]
    record = periods.get(str(start))
    if record is None:
        record = {"first": micros, "last": micros, "count": 1, "uuids": [event.uuid], "samples": []}
        record["samples"].append(short_event(data, event.uuid, _published(micros)))
        periods[str(start)] = record
    else:
        _fold(record, event, data, micros)
    # Keep the current and previous periods only: older ones can no longer be folded into usefully.
    for stale in [p for p in periods if int(p) + 2 * period < state.watermark]:
        if stale != str(start):
            del periods[stale]
    group["seen"] = max(group["seen"], micros)
    group["expires"] = max(int(p) for p in periods) + 2 * period
    state.put(state_key, group)
    return _make_alert(rule, event, data, alert_key(rule.id, group_key, start), group_key, record)


def _distinct_value(rule: Rule, data: Mapping[str, Any]) -> str | None:
    assert rule.threshold is not None and rule.threshold.distinct is not None
    values = rule.threshold.distinct.values(data)
    text = as_text(values[0]) if values else None
    return None if text is None else text[:MAX_GROUP_VALUE_CHARS]


def _episode(members: list[list[Any]], event: Event, data: Mapping[str, Any], micros: int, *,
             counts_distinct: bool) -> dict[str, Any]:
    """The record of a threshold met by ``members`` (the group's entries, oldest first) at ``event``."""
    distinct_values = list(dict.fromkeys(e[2] for e in members))
    return {
        "start": members[0][0],
        "first": members[0][0],
        "last": members[-1][0],
        "count": len(members),
        "uuids": [e[1] for e in members][:MAX_ALERT_UUIDS],
        "samples": [short_event(data, event.uuid, _published(micros))],
        "distinct": distinct_values[:MAX_DISTINCT_KEPT] if counts_distinct else [],
        "distinct_count": len(distinct_values) if counts_distinct else 0,
    }


def _threshold(rule: Rule, event: Event, data: Mapping[str, Any], micros: int, state: EngineState) -> Alert | None:
    threshold = rule.threshold
    assert threshold is not None
    window = threshold.window_seconds * MICROS
    hold = (rule.throttle_seconds or threshold.window_seconds) * MICROS
    distinct = None
    if threshold.distinct is not None:
        distinct = _distinct_value(rule, data)
        if distinct is None:
            return None  # nothing to count distinctly
    group_key = group_key_of(rule, data)
    state_key = f"{rule.id}/{group_key}"
    group = state.group(state_key) or {"entries": [], "episode": None, "seen": micros, "expires": 0}
    group["seen"] = max(group["seen"], micros)
    episode = group["episode"]
    if episode is not None and episode["start"] - window <= micros < episode["start"] + hold:
        _fold(episode, event, data, micros)
        if distinct is not None and distinct not in episode["distinct"]:
            episode["distinct_count"] += 1
            if len(episode["distinct"]) < MAX_DISTINCT_KEPT:
                episode["distinct"].append(distinct)
        group["expires"] = max(group["expires"], episode["start"] + hold + window)
        state.put(state_key, group)
        return _make_alert(rule, event, data, alert_key(rule.id, group_key, episode["start"]), group_key, episode)
    entries: list[list[Any]] = group["entries"]
    values = None
    if distinct is not None:
        values = _value_counts(group)
        values[distinct] = values.get(distinct, 0) + 1
    bisect.insort(entries, [micros, event.uuid, distinct])
    if episode is not None and micros >= episode["start"] + hold:
        # The episode is over: what it consumed is gone, and it must not swallow later windows.
        _drop_oldest(group, bisect.bisect_left(entries, [episode["start"] + hold]))
        group["episode"] = episode = None
    newest = entries[-1][0]
    _drop_oldest(group, bisect.bisect_left(entries, [newest - window]))
    if values is not None and len(entries) > max(EXACT_DISTINCT_ENTRIES, 2 * threshold.count):
        state.tally(DROPPED_ENTRIES, rule.id, _forget_repeats(group))
    group["expires"] = newest + window + hold
    # Every entry now lies within one window of the newest, so the window that starts at the oldest
    # holds them all: the threshold is met when they reach the count (a new event too late to be kept
    # cannot complete a window).
    held = len(group["values"]) if values is not None else len(entries)
    group["progress"] = round(min(held / threshold.count, 1.0), 4)  # what eviction spares (engine_state)
    if held < threshold.count or entries[0][0] > micros:
        state.put(state_key, group)
        return None
    record = _episode(entries[:], event, data, micros, counts_distinct=distinct is not None)
    _drop_oldest(group, len(entries))
    group["progress"] = 0.0
    if episode is None or record["start"] >= episode["start"]:
        group["episode"] = record
    group["expires"] = max(group["expires"], record["start"] + hold + window)
    state.put(state_key, group)
    return _make_alert(rule, event, data, alert_key(rule.id, group_key, record["start"]), group_key, record)


def _value_counts(group: dict[str, Any]) -> dict[str, int]:
    """How often each value occurs among a distinct-count group's pending entries (kept in step with
    them, so a check costs no pass over the entries; rebuilt for records stored without it)."""
    values: dict[str, int] | None = group.get("values")
    if values is None:
        values = group["values"] = {}
        for entry in group["entries"]:
            if entry[2] is not None:
                values[entry[2]] = values.get(entry[2], 0) + 1
    return values


def _drop_oldest(group: dict[str, Any], how_many: int) -> None:
    entries = group["entries"]
    values = group.get("values")
    if values is not None:
        for entry in entries[:how_many]:
            left = values.pop(entry[2], 0) - 1
            if left > 0:
                values[entry[2]] = left
    del entries[:how_many]


def _forget_repeats(group: dict[str, Any]) -> int:
    """Keep only the newest entry of each value (all a distinct count needs). Returns how many went."""
    entries = group["entries"]
    newest: dict[str, list[Any]] = {}
    for entry in entries:  # in time order: a later entry of a value replaces the earlier one
        newest[entry[2]] = entry
    forgotten = len(entries) - len(newest)
    entries[:] = sorted(newest.values())
    group["values"] = dict.fromkeys(newest, 1)
    return forgotten
