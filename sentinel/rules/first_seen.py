"""First seen (new terms): a ``[first_seen]`` table, and the per-group history that decides what is new.

A group's history is one JSON-able record in ``EngineState`` (so the store saves it in the same transaction
as threshold state): ``{"fields": [...], "values": {value key: [first, last, count]}, "seen", "expires"}``,
times in event-time microseconds. Pure: no clock, no I/O, no logging (the engine tallies what is dropped).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from json.encoder import encode_basestring
from typing import Any

from sentinel.rules.durations import MAX_LOOKBACK_SECONDS, parse_duration
from sentinel.rules.engine_state import MICROS
from sentinel.rules.field_paths import ConditionError, FieldPath
from sentinel.rules.model import FirstSeen
from sentinel.rules.problems import Problems
from sentinel.rules.values import as_text

FIRST_SEEN_KEYS = ("fields", "lookback", "new_group", "max_values")
NEW_GROUP_CHOICES = ("learn", "alert")
MAX_FIELDS = 8
MAX_VALUES_LIMIT = 10_000
MAX_VALUE_CHARS = 256
# A value is forgotten this long after its lookback ended (relative to the group's newest event), not at
# once: a late event published inside the lookback must still find the value that taught it.
PRUNE_SLACK = 86_400 * MICROS


class Verdict(enum.Enum):
    KNOWN = "known"  # seen for this group within the lookback (either side of the event's time)
    NEW = "new"  # not seen, and the group has history at the event's time: alert
    NEW_GROUP = "new_group"  # not seen, and the group has no history at the event's time: new_group decides


@dataclass(frozen=True, slots=True)
class Learned:
    record: dict[str, Any]  # the group's record, to put back into the state
    verdict: Verdict
    value_key: str
    forgotten: int  # values dropped to keep the group within max_values


def parse_first_seen(spec: object, key: str, problems: Problems) -> FirstSeen | None:
    """The ``[first_seen]`` table of a rule (None if absent or invalid; every problem is added)."""
    if spec is None:
        return None
    if not isinstance(spec, dict):
        problems.add(key, "must be a table with fields and lookback")
        return None
    before = len(problems.errors)
    for extra in (k for k in spec if k not in FIRST_SEEN_KEYS):
        problems.add(f"{key}.{extra}", f"unknown field (known: {', '.join(FIRST_SEEN_KEYS)})")
    raw_fields = spec.get("fields")
    fields: list[FieldPath] = []
    if not isinstance(raw_fields, list) or not raw_fields or not all(isinstance(f, str) for f in raw_fields):
        problems.add(key + ".fields", "is required: a non-empty list of field paths")
    elif len(raw_fields) > MAX_FIELDS:
        problems.add(key + ".fields", f"at most {MAX_FIELDS} fields")
    else:
        for position, text in enumerate(raw_fields):
            try:
                fields.append(FieldPath.parse(text))
            except ConditionError as error:
                problems.add(f"{key}.fields[{position}]", error.message)
    lookback = 0
    if "lookback" not in spec:
        problems.add(key + ".lookback", "is required (how long a value stays known, e.g. '30d'; at most 90 days)")
    else:
        try:
            lookback = parse_duration(spec["lookback"], MAX_LOOKBACK_SECONDS)
        except ValueError as error:
            problems.add(key + ".lookback", str(error))
    new_group = spec.get("new_group", "learn")
    if new_group not in NEW_GROUP_CHOICES:
        problems.add(key + ".new_group", f"must be \"learn\" or \"alert\", got {new_group!r}")
    max_values = spec.get("max_values", 1000)
    if not isinstance(max_values, int) or isinstance(max_values, bool) or not 1 <= max_values <= MAX_VALUES_LIMIT:
        problems.add(key + ".max_values", f"must be a whole number from 1 to {MAX_VALUES_LIMIT}")
    if len(problems.errors) > before:
        return None
    return FirstSeen(tuple(fields), lookback, str(new_group), int(max_values))


def values_of(spec: FirstSeen, data: Mapping[str, Any]) -> list[str] | None:
    """The event's value tuple (the first value of each field, as text); None if a field is missing or empty:
    such an event neither learns nor alerts."""
    values = []
    for path in spec.fields:
        found = path.values(data)
        text = as_text(found[0]) if found else None
        if text is None or text == "":
            return None
        values.append(text[:MAX_VALUE_CHARS])
    return values


def value_key(values: list[str]) -> str:
    """``json.dumps(values, ensure_ascii=False, separators=(",", ":"))``, built from json's own string encoder
    (json.dumps with options builds an encoder per call: most of a first-seen rule's cost per event)."""
    return "[" + ",".join(map(encode_basestring, values)) + "]"


def learn(spec: FirstSeen, record: dict[str, Any] | None, values: list[str], micros: int) -> Learned:
    """Learn ``values`` seen at ``micros`` into the group's ``record`` and say whether they were new.

    Known means seen within the lookback of this event's time, before or after it: an event that arrives
    late finds what earlier- and later-published events taught, so it is never new twice.
    """
    lookback = spec.lookback_seconds * MICROS
    fields = [path.text for path in spec.fields]
    if record is None or record.get("fields") != fields or not isinstance(record.get("values"), dict):
        record = {"fields": fields, "values": {}, "seen": micros, "expires": 0}  # fresh, or the fields changed
    known: dict[str, list[int]] = record["values"]
    key = value_key(values)
    record["seen"] = max(record["seen"], micros)
    record["expires"] = max(record.get("expires", 0), micros + lookback)
    entry = known.get(key)
    if entry is not None and entry[0] - lookback <= micros <= entry[1] + lookback:
        entry[0], entry[1], entry[2] = min(entry[0], micros), max(entry[1], micros), entry[2] + 1
        return Learned(record, Verdict.KNOWN, key, 0)
    has_history = any(first <= micros and micros - lookback <= last for first, last, _ in known.values())
    known[key] = [micros, micros, 1]  # new, or known once but not within the lookback: first seen again
    forgotten = _prune(known, record["seen"] - lookback - PRUNE_SLACK, spec.max_values)
    return Learned(record, Verdict.NEW if has_history else Verdict.NEW_GROUP, key, forgotten)


def _prune(known: dict[str, list[int]], cutoff: int, max_values: int) -> int:
    """Drop values last seen before ``cutoff`` (expired; not counted), then the least recently seen ones
    past ``max_values``. Returns how many went for the bound."""
    for stale in [k for k, (_, last, _) in known.items() if last < cutoff]:
        del known[stale]
    excess = max(len(known) - max_values, 0)
    for _ in range(excess):  # one at a time: a new value over the bound costs one pass, not a sort
        del known[min(known, key=lambda k: known[k][1])]
    return excess


@dataclass(frozen=True, slots=True)
class HistoryRow:
    group: str
    values: dict[str, str]  # field path → value
    first_micros: int
    last_micros: int
    count: int


def history_rows(group: str, record: Mapping[str, Any]) -> Iterator[HistoryRow]:
    """What a first-seen group record holds, most recently seen first; nothing for another kind of record."""
    fields, known = record.get("fields"), record.get("values")
    if not isinstance(fields, list) or not isinstance(known, dict):
        return
    rows = []
    for key, entry in known.items():
        try:
            values = json.loads(key)
            first, last, count = (int(n) for n in entry)
        except (TypeError, ValueError):
            continue
        if isinstance(values, list) and len(values) == len(fields):
            rows.append(HistoryRow(group, {str(f): str(v) for f, v in zip(fields, values, strict=True)},
                                   first, last, count))
    yield from sorted(rows, key=lambda row: (-row.last_micros, row.first_micros))
