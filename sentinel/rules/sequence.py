"""Sequence rules in the pure engine: ordered steps joined on group fields, in event time.

A group's record keeps, per step, the newest matching events (at most ``MAX_STEP_EVENTS``, sorted by
``published``), so an event that arrives late still takes its place. After each new event the steps
are searched for a complete sequence holding it (``sentinel.rules.sequence_search``: only when every step
holds enough events); the search takes, for each step, runs of ``count`` consecutive events, each run
strictly after the previous step's last event and at most ``within`` after it, the whole at most ``window``
from first to last event. A record kept under other counts or times (a reloaded rule, or a record saved
before it noted them under ``timing``) is searched whole once.

A completed sequence fires; one ending in an absence step instead records a deadline (its last
present event + the absence step's ``within``). An event of the absent step inside that time cancels
it; once the state's watermark (event time, see engine_state) passes the deadline, the next event of
any type evaluated fires it (:func:`fire_due`). The engine has no clock of its own.

Events at or before the end of a group's last completed sequence are not used again, so duplicates
and stragglers never fire a second alert.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
from collections.abc import Mapping
from operator import itemgetter
from typing import Any

from sentinel.model import Alert, Event, format_timestamp, parse_timestamp
from sentinel.rules.context import alert_context, brief_event, short_event
from sentinel.rules.engine_state import MATCH_ERRORS, MICROS, EngineState, from_micros
from sentinel.rules.model import Rule, RuleSet, Sequence, SequenceStep
from sentinel.rules.sequence_search import find
from sentinel.rules.sequence_spec import MAX_STEP_EVENTS
from sentinel.rules.values import as_text

MAX_PENDING = 8  # absence deadlines waiting per group (a flood of completed prefixes keeps the newest)
MAX_ALERT_UUIDS = 100
MAX_SAMPLES = 5
MAX_GROUP_VALUE_CHARS = 256

Entry = list[Any]  # [micros, uuid, actor, ip]
PENDING_KEYS = frozenset({"deadline", "first", "last", "chosen", "brief", "type", "uuid", "published"})


def advance(rule: Rule, event: Event, data: Mapping[str, Any], micros: int, state: EngineState) -> list[Alert]:
    """Feed one event of the rule's types to the sequences of the groups whose steps it matches (the steps'
    matchers are the rule's condition: each runs once)."""
    sequence = rule.sequence
    assert sequence is not None
    try:
        groups = _groups_of(rule, sequence, data)
    except Exception:  # a loaded rule must not raise; if one does, skip it rather than stall intake
        state.tally(MATCH_ERRORS, rule.id)
        return []
    alerts = []
    for group_key, indexes in groups.items():
        alert = _advance_group(rule, sequence, event, data, micros, state, group_key, indexes)
        if alert is not None:
            alerts.append(alert)
    return alerts


def fire_due(ruleset: RuleSet, state: EngineState) -> list[Alert]:
    """Fire every absence deadline the watermark has passed (deadlines of rules gone or changed are
    dropped). ``state.deadlines`` is a heap of (deadline, state key); entries may be stale."""
    alerts = []
    while state.deadlines and state.deadlines[0][0] < state.watermark:
        deadline, state_key = heapq.heappop(state.deadlines)
        group = state.group(state_key)
        pending_list = group.get("pending") if group is not None else None
        if group is None or not isinstance(pending_list, list):
            continue
        due = [p for p in pending_list if isinstance(p, dict) and p.get("deadline") == deadline]
        if not due:
            continue
        group["pending"] = [p for p in pending_list if p not in due]
        rule = ruleset.enabled_rule(state_key.partition("/")[0])
        sequence = rule.sequence if rule is not None else None
        if rule is not None and sequence is not None and sequence.absence is not None and _usable(group, sequence):
            for pending in due:
                alerts.append(_fire(rule, group, pending, pending["brief"], _stored_event(pending)))
            _refresh(sequence, group)
        state.put(state_key, group)
    return alerts


def _usable(group: dict[str, Any], sequence: Sequence) -> bool:
    """Whether a stored record has this sequence's shape (a reloaded rule may have other steps, and a
    restored row is only known to be JSON)."""
    steps, pending = group.get("steps"), group.get("pending")
    return (isinstance(steps, list) and len(steps) == len(sequence.present) and all(isinstance(e, list) for e in steps)
            and isinstance(group.get("absent"), list) and isinstance(pending, list)
            and all(isinstance(p, dict) and p.keys() >= PENDING_KEYS and isinstance(p["deadline"], int)
                    and isinstance(p["last"], int) and len(p["chosen"]) == len(sequence.present) for p in pending)
            and isinstance(group.get("done"), int) and isinstance(group.get("key"), str))


def _groups_of(rule: Rule, sequence: Sequence, data: Mapping[str, Any]) -> dict[str, list[int]]:
    """Group key → the steps this event matches in that group (steps with their own group_by may put
    one event in several groups). An event missing a join field joins nothing for that step."""
    groups: dict[str, list[int]] = {}
    for index, step in enumerate(sequence.steps):
        if not step.matcher(data):
            continue
        key = _group_key(rule, step, data)
        if key is not None:
            groups.setdefault(key, []).append(index)
    return groups


def _group_key(rule: Rule, step: SequenceStep, data: Mapping[str, Any]) -> str | None:
    parts = []
    for label, path in zip(rule.group_by, step.group_by or rule.group_by, strict=True):
        values = path.values(data)
        text = as_text(values[0]) if values else None
        if not text:
            return None
        parts.append(f"{label.text}={text[:MAX_GROUP_VALUE_CHARS]}")
    return "; ".join(parts)


def _advance_group(rule: Rule, sequence: Sequence, event: Event, data: Mapping[str, Any], micros: int,
                   state: EngineState, group_key: str, indexes: list[int]) -> Alert | None:
    state_key = f"{rule.id}/{group_key}"
    present = sequence.present
    stored = state.group(state_key)
    if stored is not None and _usable(stored, sequence):
        group = stored
    else:  # new, or stored by an earlier version of the rule: start afresh
        group = {"key": group_key, "steps": [[] for _ in present], "absent": [], "pending": [], "done": 0,
                 "seen": micros, "expires": 0, "timing": sequence.timing}
    group["seen"] = max(group["seen"], micros)
    entry: Entry = [micros, event.uuid, *_who_where(data, event.uuid)]
    inserted: list[tuple[int, int]] = []  # (step, position) of each insertion (-1: it went at once, as oldest)
    for index in indexes:
        if index < len(present):
            if micros > group["done"]:
                position = _insert(group["steps"][index], entry)
                if position is not None:
                    inserted.append((index, position))
        else:  # the absence step: cancel the deadlines it falls before, remember it for later prefixes
            _insert(group["absent"], entry)
            group["pending"] = [p for p in group["pending"] if not p["last"] < micros <= p["deadline"]]
    alert = None
    found = None
    if len(inserted) == 1 and group.get("timing") == sequence.timing:
        step, position = inserted[0]  # only a sequence holding the new event can be complete
        found = find(sequence, group["steps"], step, position) if position >= 0 else None
    elif inserted:  # one event in several steps, or a record kept under other counts or times
        found = find(sequence, group["steps"])
        group["timing"] = sequence.timing
    if found is not None:
        alert = _complete(rule, sequence, group, found, event, data, state, state_key)
    _refresh(sequence, group)
    state.put(state_key, group)
    return alert


def _who_where(data: Mapping[str, Any], uuid: str) -> tuple[str | None, str | None]:
    sample = short_event(data, uuid, "")
    return sample["actor"], sample["ip"]


_TIME_AND_UUID = itemgetter(0, 1)


def _insert(entries: list[Entry], entry: Entry) -> int | None:
    """Insert in time order unless already there (a duplicate delivery: None); keep the newest only.
    Returns where it went (-1 if it was the oldest of too many and went at once)."""
    uuid = entry[1]
    for kept in entries:
        if kept[1] == uuid:
            return None
    position = bisect.bisect_right(entries, (entry[0], uuid), key=_TIME_AND_UUID)
    entries.insert(position, entry)
    if len(entries) > MAX_STEP_EVENTS:
        del entries[0]
        position -= 1
    return position


def _complete(rule: Rule, sequence: Sequence, group: dict[str, Any], runs: list[tuple[int, int]],
              event: Event, data: Mapping[str, Any], state: EngineState, state_key: str) -> Alert | None:
    chosen = [group["steps"][i][start:end + 1] for i, (start, end) in enumerate(runs)]
    first, last = chosen[0][0][0], chosen[-1][-1][0]
    group["done"] = max(group["done"], last)
    for entries in group["steps"]:  # what the sequence used, and everything before it, is spent
        del entries[:bisect.bisect_right(entries, last, key=lambda e: e[0])]
    pending = {"first": first, "last": last, "chosen": chosen, "brief": brief_event(data),
               "type": event.event_type, "uuid": event.uuid, "published": format_timestamp(event.published)}
    absence = sequence.absence
    if absence is None:
        return _fire(rule, group, pending, data, event)
    assert absence.within_seconds is not None
    deadline = last + absence.within_seconds * MICROS
    if any(last < e[0] <= deadline for e in group["absent"]):
        return None  # the absent step already happened (it arrived before the prefix completed)
    pending["deadline"] = deadline
    group["pending"] = [*group["pending"], pending][-MAX_PENDING:]
    heapq.heappush(state.deadlines, (deadline, state_key))
    return None


def _stored_event(pending: Mapping[str, Any]) -> Event:
    return Event(uuid=pending["uuid"], event_type=pending["type"], published=parse_timestamp(pending["published"]),
                 data=pending["brief"])


def _fire(rule: Rule, group: dict[str, Any], pending: Mapping[str, Any], data: Mapping[str, Any],
          event: Event) -> Alert:
    """The alert of a completed sequence; with throttle, sequences starting within the period of the
    group's last alert fold into it (same key, count grows), as threshold episodes do."""
    sequence = rule.sequence
    assert sequence is not None
    chosen: list[list[Entry]] = pending["chosen"]
    uuids = [e[1] for entries in chosen for e in entries]
    steps = [{"step": i + 1, "name": step.name, "uuids": [e[1] for e in entries][:MAX_ALERT_UUIDS],
              "first": _iso(entries[0][0]), "last": _iso(entries[-1][0]), "count": len(entries)}
             for i, (step, entries) in enumerate(zip(sequence.present, chosen, strict=True))]
    if sequence.absence is not None:
        steps.append({"step": len(steps) + 1, "name": sequence.absence.name, "uuids": [], "count": 0,
                      "absent": True, "first": _iso(pending["last"]), "last": _iso(pending["deadline"])})
    record = {"first": pending["first"], "last": pending["last"], "count": len(uuids),
              "uuids": uuids[:MAX_ALERT_UUIDS], "steps": steps,
              "samples": [{"uuid": e[1], "published": _iso(e[0]), "actor": e[2], "ip": e[3]}
                          for e in _samples([e for entries in chosen for e in entries])]}
    episode = group.get("episode")
    hold = (rule.throttle_seconds or 0) * MICROS
    if episode is not None and episode["start"] <= record["first"] < episode["start"] + hold:
        episode["count"] += record["count"]
        episode["uuids"] = (episode["uuids"] + [u for u in uuids if u not in episode["uuids"]])[:MAX_ALERT_UUIDS]
        episode["last"] = max(episode["last"], record["last"])
        record.update(first=episode["start"], last=episode["last"], count=episode["count"], uuids=episode["uuids"])
    else:
        group["episode"] = episode = {"start": record["first"], "last": record["last"], "count": record["count"],
                                      "uuids": list(record["uuids"])}
    group_key = str(group["key"])
    key = _alert_key(rule.id, group_key, episode["start"])
    context = alert_context(rule, data, event.event_type, event.uuid, format_timestamp(event.published),
                            group_key, record)
    return Alert(key=key, rule_id=rule.id, severity=rule.severity_for(data), title=rule.title.render(data),
                 summary=rule.summary.render(data), group_key=group_key, first_seen=from_micros(record["first"]),
                 last_seen=from_micros(record["last"]), count=record["count"], event_uuids=tuple(record["uuids"]),
                 context=context, channels=rule.channels)


def _samples(events: list[Entry]) -> list[Entry]:
    """The events a message lists: all of a short sequence, else the first ones and the last."""
    return events if len(events) <= MAX_SAMPLES else [*events[:MAX_SAMPLES - 1], events[-1]]


def _alert_key(rule_id: str, group_key: str, start: int) -> str:
    digest = hashlib.sha256(f"{group_key}\x00seq\x00{start}".encode()).hexdigest()[:32]
    return f"{rule_id}:{digest}"


def _iso(micros: int) -> str:
    return format_timestamp(from_micros(micros))


def _refresh(sequence: Sequence, group: dict[str, Any]) -> None:
    """Set what the shared sweep and eviction read: ``expires`` (event-time micros after which nothing
    in the group can still matter) and ``progress`` (how many steps hold enough events)."""
    newest = 0
    for entries in group["steps"]:
        if entries and entries[-1][0] > newest:
            newest = entries[-1][0]
    absent = group["absent"]
    if absent and absent[-1][0] > newest:
        newest = absent[-1][0]
    expires = max(newest + sequence.horizon_seconds * MICROS, group["seen"])
    pending = group["pending"]
    for waiting in pending:
        expires = max(expires, waiting["deadline"])
    group["expires"] = expires
    if pending:
        group["progress"] = 1.0
        return
    ready = 0
    for step, entries in zip(sequence.present, group["steps"], strict=True):
        if len(entries) >= step.count:
            ready += 1
    group["progress"] = round(ready / (len(sequence.present) + 1), 4)
