"""The pure engine: ``evaluate(ruleset, event, state, now) -> (alerts, state)``. No clock, no I/O, no logging.

Windows use event time (``published``, in integer microseconds), so out-of-order delivery works. Stateful
rules keep one JSON-able group record per (rule, group) in an ``EngineState`` (``sentinel.engine_state``:
bounded, persisted by the store, counting per rule what it had to let go).

Semantics (documented in docs/rules.md):
- threshold: fires when some window of ``window`` seconds holding the new event has >= count events (or
  distinct values). The alert is keyed on that window's start; matches until ``start + hold`` (hold = the
  throttle period, else the window) fold into it (same key, count grows); later matches start afresh.
- throttle only: tumbling periods aligned to the epoch; one alert per rule, group and period.
- first seen: one alert per value tuple new for its group within the lookback (``first_seen``).
- sequence: ordered steps per group (``sentinel.rules.sequence``); absence deadlines fire on the first
  event of any type evaluated once the watermark has passed them.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sentinel.model import Alert, Event, format_timestamp
from sentinel.rules import first_seen, measures, sequence
from sentinel.rules.context import alert_context, short_event
from sentinel.rules.engine_state import (
    DROPPED_ENTRIES,
    MATCH_ERRORS,
    MICROS,
    TOO_LATE,
    VALUES_FORGOTTEN,
    EngineState,
    from_micros,
    to_micros,
)
from sentinel.rules.model import Rule, RuleSet
from sentinel.rules.threshold_entries import drop_range, forget_repeats, full_window, value_counts
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
# A measured group (threshold measures) keeps at most this many pending events, forgetting the oldest
# (counted): its when may never hold, so, unlike a count, reaching a number does not empty it.
MAX_MEASURED_ENTRIES = 2_000
# Alerted windows a group remembers so late events fold into them (only those a late event can reach).
MAX_EPISODES = 16


def evaluate(ruleset: RuleSet, event: Event, state: EngineState, now: datetime) -> tuple[list[Alert], EngineState]:
    """Run every enabled rule for ``event.event_type`` over the event; mutate and return ``state``."""
    if not ruleset.rules_for(event.event_type) and not state.deadlines:
        return [], state  # before reading the body: one no rule reads is never decoded
    data = event.data
    if type(data) is not dict:
        data = dict(data)
    # Rules on every type skip events their required field rules out (one index over their prefilters).
    rules: Sequence[Rule] = ruleset.rules_reading(event.event_type, data)
    if not rules and not state.deadlines:
        return [], state
    micros = to_micros(event.published)
    alerts: list[Alert] = []
    if state.deadlines and state.deadlines[0][0] < state.next_watermark(micros, now):
        # Absence deadlines fire on the first event of any type past them, before a sweep may run.
        state.watermark = state.next_watermark(micros, now)
        alerts.extend(sequence.fire_due(ruleset, state))
    state.observe(micros, now)
    if not rules:
        return alerts, state
    for rule in rules:
        if rule.sequence is not None:  # its steps' matchers are its condition: advance runs each once
            alerts.extend(sequence.advance(rule, event, data, micros, state))
            continue
        try:
            if not rule.matcher(data):
                continue
        except Exception:  # a loaded rule must not raise; if one does, skip it rather than stall intake
            state.tally(MATCH_ERRORS, rule.id)
            continue
        if rule.first_seen is not None:
            alert = _first_seen(rule, event, data, micros, state)
        elif rule.threshold is not None:
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
    group = _own(state.group(state_key), "periods") or {"periods": {}, "seen": micros, "expires": 0}
    periods: dict[str, dict[str, Any]] = group["periods"]
    record = periods.get(str(start))
    if record is None:
        record = {"first": micros, "last": micros, "count": 1, "uuids": [event.uuid], "samples": []}
        record["samples"].append(short_event(data, event.uuid, _published(micros)))
        periods[str(start)] = record
    else:
        _fold(record, event, data, micros)
    # Keep the periods a late event (no older than the horizon) can still fold into.
    for stale in [p for p in periods if int(p) + 2 * period < state.horizon]:
        if stale != str(start):
            del periods[stale]
    group["seen"] = max(group["seen"], micros)
    group["expires"] = max(int(p) for p in periods) + 2 * period
    state.put(state_key, group)
    return _make_alert(rule, event, data, alert_key(rule.id, group_key, start), group_key, record)


def _first_seen(rule: Rule, event: Event, data: Mapping[str, Any], micros: int,
                state: EngineState) -> Alert | None:
    spec = rule.first_seen
    assert spec is not None
    values = first_seen.values_of(spec, data)
    if values is None:
        return None  # nothing to learn
    group_key = group_key_of(rule, data)
    state_key = f"{rule.id}/{group_key}"
    learned = first_seen.learn(spec, state.group(state_key), values, micros)
    state.tally(VALUES_FORGOTTEN, rule.id, learned.forgotten)
    state.put(state_key, learned.record)  # learning happens whether or not this event alerts
    if learned.verdict is first_seen.Verdict.KNOWN or (
            learned.verdict is first_seen.Verdict.NEW_GROUP and spec.new_group == "learn"):
        return None
    record = {"first": micros, "last": micros, "count": 1, "uuids": [event.uuid],
              "samples": [short_event(data, event.uuid, _published(micros))]}
    key = alert_key(rule.id, f"{group_key}\x00{learned.value_key}", micros)
    return _make_alert(rule, event, data, key, group_key, record)


def _own(record: dict[str, Any] | None, marker: str, measured: str | None = None) -> dict[str, Any] | None:
    """The group's record if it is of this kind (a reload may turn a first-seen rule into a threshold rule
    under the same id, or change a threshold's measures: its old record then starts afresh rather than
    raising on every event or counting into the wrong measure)."""
    if record is None or marker not in record or record.get("measured") != measured:
        return None
    return record


def _distinct_value(rule: Rule, data: Mapping[str, Any]) -> str | None:
    assert rule.threshold is not None and rule.threshold.distinct is not None
    parts = []
    for path in (rule.threshold.distinct, *rule.threshold.distinct_with):
        values = path.values(data)
        text = as_text(values[0]) if values else None
        if text is None:
            return None  # an event missing any counted field is not counted
        parts.append(text[:MAX_GROUP_VALUE_CHARS])
    return " / ".join(parts)


def _episode(members: list[list[Any]], event: Event, data: Mapping[str, Any], micros: int, *,
             counts_distinct: bool) -> dict[str, Any]:
    """The record of a threshold met by ``members`` (the group's entries, oldest first) at ``event``."""
    distinct_values = list(dict.fromkeys(e[2] for e in members)) if counts_distinct else []
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
    if micros < state.horizon:
        # Older than the allowance: what it could have joined may be gone, so counting it could fire a
        # window twice or on part of its events. Stored and seen by single-event rules; counted here.
        state.tally(TOO_LATE, rule.id)
        return None
    window = threshold.window_seconds * MICROS
    hold = (rule.throttle_seconds or threshold.window_seconds) * MICROS
    distinct: Any = None  # the distinct value; with measures, what the event adds to each
    measured = threshold.signature if threshold.measures else None
    if measured is not None:
        distinct = measures.entry_values(threshold, data)
    elif threshold.distinct is not None:
        distinct = _distinct_value(rule, data)
        if distinct is None:
            return None  # nothing to count distinctly
    counts_distinct = threshold.distinct is not None
    group_key = group_key_of(rule, data)
    state_key = f"{rule.id}/{group_key}"
    group = _own(state.group(state_key), "entries", measured) or {
        "entries": [], "episodes": [], "seen": micros, "expires": 0}
    if measured is not None:
        group["measured"] = measured
    group["seen"] = max(group["seen"], micros)
    episodes = _episodes(group)
    # An episode a late event can no longer fold into is done with.
    episodes[:] = [e for e in episodes if e["start"] + hold >= state.horizon][-MAX_EPISODES:]
    for episode in episodes:
        if episode["start"] - window <= micros < episode["start"] + hold:
            _fold(episode, event, data, micros)
            if counts_distinct and distinct not in episode["distinct"]:
                episode["distinct_count"] += 1
                if len(episode["distinct"]) < MAX_DISTINCT_KEPT:
                    episode["distinct"].append(distinct)
            _set_expires(group, window, hold)
            state.put(state_key, group)
            return _make_alert(rule, event, data, alert_key(rule.id, group_key, episode["start"]), group_key,
                               episode)
    entries: list[list[Any]] = group["entries"]
    if counts_distinct:
        values = value_counts(group)
        values[distinct] = values.get(distinct, 0) + 1
    entry = [micros, event.uuid, distinct]
    bisect.insort(entries, entry, key=_by_time if measured else None)
    # Keep what a late event (no older than the horizon) could still complete a window with.
    drop_range(group, 0, bisect.bisect_left(entries, [state.horizon - window]))
    if counts_distinct and len(entries) > max(EXACT_DISTINCT_ENTRIES, 2 * threshold.count):
        state.tally(DROPPED_ENTRIES, rule.id, forget_repeats(group))
    measured_values: dict[str, float | None] = {}
    if measured is not None:
        forgotten = measures.keep_at_most(threshold, entries, entry, MAX_MEASURED_ENTRIES, state.scratch, state_key)
        state.tally(DROPPED_ENTRIES, rule.id, forgotten)
        found, measured_values, progress = measures.first_window(threshold, entries, entry, window, state.scratch,
                                                                 state_key)
    else:
        if counts_distinct and len(group["values"]) < threshold.count:
            found, held = None, len(group["values"])  # too few values in the whole group: no window to look for
        else:
            found, held = full_window(entries, micros, window, threshold.count, counts_distinct=counts_distinct)
        progress = held / threshold.count
    group["progress"] = round(min(progress, 1.0), 4)  # what eviction spares (engine_state)
    if found is None:
        _set_expires(group, window, hold)
        state.put(state_key, group)
        return None
    # The window met the count; pending events up to the end of its hold (there only when events came out
    # of order) join it too, as they would have folded into it had they come later.
    low, high = found
    start = entries[low][0]
    high = max(high, bisect.bisect_left(entries, [start + hold]))
    record = _episode(entries[low:high], event, data, micros, counts_distinct=counts_distinct)
    if measured is not None:
        record["measures"] = measured_values  # the window that met the when, as it met it
    drop_range(group, low, high)
    group["progress"] = 0.0
    bisect.insort(episodes, record, key=lambda e: e["start"])
    _set_expires(group, window, hold)
    state.put(state_key, group)
    return _make_alert(rule, event, data, alert_key(rule.id, group_key, record["start"]), group_key, record)


def _by_time(entry: list[Any]) -> tuple[int, str]:
    return entry[0], entry[1]


def _episodes(group: dict[str, Any]) -> list[dict[str, Any]]:
    """The group's alerted windows, oldest first (a record stored with one ``episode`` is read as a list)."""
    episodes: list[dict[str, Any]] | None = group.get("episodes")
    if episodes is None:
        legacy = group.pop("episode", None)
        episodes = group["episodes"] = [legacy] if legacy else []
    return episodes


def _set_expires(group: dict[str, Any], window: int, hold: int) -> None:
    """Event time after which neither a pending event nor an alerted window can take another event
    (EngineState keeps the group for the allowed lateness beyond it)."""
    ends = [e["start"] + hold + window for e in group["episodes"]]
    if group["entries"]:
        ends.append(group["entries"][-1][0] + window + hold)
    group["expires"] = max(ends, default=group["seen"] + window + hold)
