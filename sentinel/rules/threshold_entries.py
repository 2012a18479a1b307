"""A count or distinct-count threshold group's pending entries ``[micros, uuid, value]``, oldest first: the
search for a full window holding a new event, and keeping the per-value counts in step as entries go."""

from __future__ import annotations

import bisect
from typing import Any


def full_window(entries: list[list[Any]], micros: int, window: int, count: int, *,
                 counts_distinct: bool) -> tuple[tuple[int, int] | None, int]:
    """The earliest window of ``window`` micros holding the event at ``micros`` with ``count`` entries (or
    distinct values) as a slice (low, high) of ``entries``, and the most any such window holds.

    Only windows holding the new event need checking: any other was checked when its last entry came."""
    low = bisect.bisect_left(entries, [micros - window])
    high = bisect.bisect_left(entries, [micros + window + 1])
    reach = len({entry[2] for entry in entries[low:high]}) if counts_distinct else high - low
    if reach < count:
        return None, reach  # not even the two windows' span together holds enough
    best = 0
    seen: dict[Any, int] = {}
    end = low
    for first in range(low, high):
        start = entries[first][0]
        if start > micros:
            break
        while end < high and entries[end][0] <= start + window:
            seen[entries[end][2]] = seen.get(entries[end][2], 0) + 1
            end += 1
        held = len(seen) if counts_distinct else end - first
        if start + window >= micros:
            best = max(best, held)
            if held >= count:
                return (first, end), held
        left = seen.pop(entries[first][2]) - 1
        if left:
            seen[entries[first][2]] = left
    return None, best


def value_counts(group: dict[str, Any]) -> dict[str, int]:
    """How often each value occurs among a distinct-count group's pending entries (kept in step with
    them, so a check costs no pass over the entries; rebuilt for records stored without it)."""
    values: dict[str, int] | None = group.get("values")
    if values is None:
        values = group["values"] = {}
        for entry in group["entries"]:
            if entry[2] is not None:
                values[entry[2]] = values.get(entry[2], 0) + 1
    return values


def drop_range(group: dict[str, Any], low: int, high: int) -> None:
    entries = group["entries"]
    values = group.get("values")
    if values is not None:
        for entry in entries[low:high]:
            left = values.pop(entry[2], 0) - 1
            if left > 0:
                values[entry[2]] = left
    del entries[low:high]


def forget_repeats(group: dict[str, Any]) -> int:
    """Keep only the newest entry of each value (all a distinct count needs). Returns how many went."""
    entries = group["entries"]
    newest: dict[str, list[Any]] = {}
    for entry in entries:  # in time order: a later entry of a value replaces the earlier one
        newest[entry[2]] = entry
    forgotten = len(entries) - len(newest)
    entries[:] = sorted(newest.values())
    group["values"] = dict.fromkeys(newest, 1)
    return forgotten
