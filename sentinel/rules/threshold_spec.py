"""A rule's ``[threshold]`` and ``[throttle]`` tables (the loader's; sequences and first-seen have theirs)."""

from __future__ import annotations

from sentinel.rules.durations import parse_duration
from sentinel.rules.field_paths import ConditionError, FieldPath
from sentinel.rules.model import Threshold
from sentinel.rules.problems import Problems

THRESHOLD_KEYS = ("count", "window", "distinct")
MAX_DISTINCT_FIELDS = 4
THROTTLE_KEYS = ("period",)


def parse_threshold(spec: object, key: str, problems: Problems) -> Threshold | None:
    """A rule's ``[threshold]`` table, or None (absent, or wrong: the problems say why)."""
    if spec is None:
        return None
    if not isinstance(spec, dict):
        problems.add(key, "must be a table with count and window")
        return None
    for extra in (k for k in spec if k not in THRESHOLD_KEYS):
        problems.add(f"{key}.{extra}", f"unknown field (known: {', '.join(THRESHOLD_KEYS)})")
    count = spec.get("count")
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 100_000:
        problems.add(key + ".count", "must be a whole number from 1 to 100000")
        count = None
    try:
        window = parse_duration(spec.get("window"))
    except ValueError as error:
        problems.add(key + ".window", str(error))
        window = None
    distinct: list[FieldPath] = []
    raw = spec.get("distinct")
    texts = raw if isinstance(raw, list) else [] if raw is None else [raw]
    if isinstance(raw, list) and not 1 <= len(raw) <= MAX_DISTINCT_FIELDS:
        problems.add(key + ".distinct", f"a list of 1 to {MAX_DISTINCT_FIELDS} field paths")
    for position, text in enumerate(texts):
        try:
            distinct.append(FieldPath.parse(text))
        except ConditionError as error:
            problems.add(key + (f".distinct[{position}]" if isinstance(raw, list) else ".distinct"), error.message)
    if count is None or window is None:
        return None
    return Threshold(count, window, distinct[0] if distinct else None, tuple(distinct[1:]))


def parse_throttle(spec: object, key: str, problems: Problems) -> int | None:
    """A rule's ``[throttle]`` period in seconds, or None."""
    if spec is None:
        return None
    if not isinstance(spec, dict):
        problems.add(key, "must be a table with period")
        return None
    for extra in (k for k in spec if k not in THROTTLE_KEYS):
        problems.add(f"{key}.{extra}", "unknown field (known: period)")
    try:
        return parse_duration(spec.get("period"))
    except ValueError as error:
        problems.add(key + ".period", str(error))
        return None
