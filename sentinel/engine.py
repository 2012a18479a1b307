"""The pure engine: ``evaluate(ruleset, event, state, now) -> (alerts, state)``. No clock, no I/O, no logging.

Windows use event time (``published``, in integer microseconds), so out-of-order delivery works. Stateful
rules keep one JSON-able group record per (rule, group); the store persists changed records through
``EngineState.take_changes`` and reloads them with ``EngineState.restore``.

Semantics (documented in docs/rules.md):
- threshold: fires when some window of ``window`` seconds holding the new event has >= count events (or
  distinct values). The alert is keyed on that window's start; matches until ``start + hold`` (hold = the
  throttle period, else the window) fold into it (same key, count grows); later matches start afresh.
- throttle only: tumbling periods aligned to the epoch; one alert per rule, group and period.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sentinel.model import Alert, Event, format_timestamp
from sentinel.operators import as_text
from sentinel.rule_context import alert_context, short_event
from sentinel.rule_model import Rule, RuleSet

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROS = 1_000_000
DEFAULT_MAX_GROUPS = 100_000
MAX_ENTRIES_PER_GROUP = 2_000
MAX_ALERT_UUIDS = 100
MAX_SAMPLES = 5
MAX_DISTINCT_KEPT = 100
MAX_GROUP_VALUE_CHARS = 256
SWEEP_EVERY = 1024
# An event stamped further than this past ``now`` does not move the watermark (a bad clock must not
# expire everyone's windows).
FUTURE_SKEW = timedelta(minutes=10)


def to_micros(moment: datetime) -> int:
    if moment.tzinfo is None:  # Okta's timestamps are UTC; never compare naive with aware
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // timedelta(microseconds=1)


def from_micros(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


class EngineState:
    """Per-(rule, group) records for stateful rules, bounded in number, with change tracking."""

    def __init__(self, max_groups: int = DEFAULT_MAX_GROUPS) -> None:
        if max_groups < 1:
            raise ValueError("max_groups must be at least 1")
        self.max_groups = max_groups
        self.groups: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.watermark = 0  # the latest plausible event time seen, microseconds
        self.evicted_groups = 0  # dropped because the cap was reached (live windows lost)
        self.expired_groups = 0  # removed because their windows ended
        self.dropped_entries = 0  # events forgotten because one group held too many
        self.match_errors = 0  # a rule raised while matching (a bug; the event is skipped for it)
        self._changed: set[str] = set()
        self._deleted: set[str] = set()
        self._since_sweep = 0

    @property
    def group_count(self) -> int:
        return len(self.groups)

    @property
    def dropped_groups(self) -> int:
        """Live groups thrown away because ``max_groups`` was reached (their windows were lost)."""
        return self.evicted_groups

    def take_changes(self) -> tuple[dict[str, str], set[str]]:
        """Group key → JSON text for groups changed since the last call, and keys deleted since then."""
        changed = {k: json.dumps(self.groups[k], separators=(",", ":")) for k in self._changed if k in self.groups}
        deleted = self._deleted - changed.keys()
        self._changed, self._deleted = set(), set()
        return changed, deleted

    @classmethod
    def restore(cls, rows: Iterable[tuple[str, str]], max_groups: int = DEFAULT_MAX_GROUPS) -> EngineState:
        """Rebuild from the store's (key, JSON) rows; unreadable rows are skipped (and counted)."""
        state = cls(max_groups)
        records = []
        for key, text in rows:
            try:
                record = json.loads(text)
            except ValueError:
                state.match_errors += 1
                continue
            if isinstance(record, dict) and isinstance(record.get("seen"), int):
                records.append((record["seen"], key, record))
        for seen, key, record in sorted(records, key=lambda r: r[0])[-max_groups:]:
            state.groups[key] = record
            state.watermark = max(state.watermark, seen)
        return state

    def group(self, key: str) -> dict[str, Any] | None:
        record = self.groups.get(key)
        if record is not None:
            self.groups.move_to_end(key)
        return record

    def put(self, key: str, record: dict[str, Any]) -> None:
        if key not in self.groups and len(self.groups) >= self.max_groups:
            oldest, _ = self.groups.popitem(last=False)
            self._deleted.add(oldest)
            self._changed.discard(oldest)
            self.evicted_groups += 1
        self.groups[key] = record
        self.groups.move_to_end(key)
        self._changed.add(key)

    def observe(self, micros: int, now: datetime) -> None:
        self.watermark = max(self.watermark, min(micros, to_micros(now + FUTURE_SKEW)))
        self._since_sweep += 1
        # A sweep scans every group: spacing sweeps by the group count keeps its cost per event constant.
        if self._since_sweep >= max(SWEEP_EVERY, len(self.groups) // 8):
            self.sweep()

    def sweep(self) -> None:
        """Remove every group whose windows ended before the watermark."""
        self._since_sweep = 0
        expired = [k for k, record in self.groups.items() if record.get("expires", 0) < self.watermark]
        for key in expired:
            del self.groups[key]
            self._deleted.add(key)
            self._changed.discard(key)
        self.expired_groups += len(expired)


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
            state.match_errors += 1
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
    bisect.insort(entries, [micros, event.uuid, distinct])
    if episode is not None and micros >= episode["start"] + hold:
        # The episode is over: what it consumed is gone, and it must not swallow later windows.
        del entries[: bisect.bisect_left(entries, [episode["start"] + hold])]
        group["episode"] = episode = None
    newest = entries[-1][0]
    del entries[: bisect.bisect_left(entries, [newest - window])]
    if len(entries) > MAX_ENTRIES_PER_GROUP:
        state.dropped_entries += len(entries) - MAX_ENTRIES_PER_GROUP
        del entries[: len(entries) - MAX_ENTRIES_PER_GROUP]
    found = _qualifying_window(entries, micros, window, threshold.count, distinct is not None)
    group["expires"] = newest + window + hold
    if found is None:
        state.put(state_key, group)
        return None
    first, last = found
    members = entries[first:last]
    distinct_values = list(dict.fromkeys(e[2] for e in members))
    record = {
        "start": members[0][0],
        "first": members[0][0],
        "last": members[-1][0],
        "count": len(members),
        "uuids": [e[1] for e in members][:MAX_ALERT_UUIDS],
        "samples": [short_event(data, event.uuid, _published(micros))],
        "distinct": distinct_values[:MAX_DISTINCT_KEPT] if distinct is not None else [],
        "distinct_count": len(distinct_values) if distinct is not None else 0,
    }
    del entries[first:last]
    if episode is None or record["start"] >= episode["start"]:
        group["episode"] = record
    group["expires"] = max(group["expires"], record["start"] + hold + window)
    state.put(state_key, group)
    return _make_alert(rule, event, data, alert_key(rule.id, group_key, record["start"]), group_key, record)


def _qualifying_window(
    entries: list[list[Any]], micros: int, window: int, needed: int, distinct: bool
) -> tuple[int, int] | None:
    """The first [start, start + window] span holding ``micros`` with ``needed`` entries or distinct values.

    Returns (first, last) indexes into the sorted ``entries`` (last exclusive), or None.
    """
    if len(entries) < needed:
        return None
    first = bisect.bisect_left(entries, [micros - window])
    if not distinct:
        for start in range(first, len(entries)):
            begin = entries[start][0]
            if begin > micros:
                break
            end = bisect.bisect_right(entries, [begin + window, "\uffff"])
            if end - start >= needed:
                return start, end
        return None
    # Distinct values in a sliding window: one pass, two pointers, a counter per value.
    counts: Counter[Any] = Counter()
    end = first
    for start in range(first, len(entries)):
        begin = entries[start][0]
        if begin > micros:
            break
        while end < len(entries) and entries[end][0] <= begin + window:
            counts[entries[end][2]] += 1
            end += 1
        if len(counts) >= needed:
            return start, end
        value = entries[start][2]
        counts[value] -= 1
        if not counts[value]:
            del counts[value]
    return None
