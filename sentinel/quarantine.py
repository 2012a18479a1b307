"""One quarantine record per delivery: its bad elements kept together, their paths and reasons grouped.

A body of 500,000 bad elements is one row and one log line, not 500,000 of each. Elements that fail
the same way are one group, their indexes written as ranges: ``data.events[0-2,5].uuid: missing``.
Reasons come from a fixed vocabulary (sentinel/okta.py), so a delivery has a handful of groups at most.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from sentinel.okta import Quarantined

_ELEMENT = re.compile(r"data\.events\[(\d+)\](.*)", re.DOTALL)
LOG_GROUPS = 3  # groups named in a log line; the record keeps them all
LOG_PATH_CHARS = 120


@dataclass(frozen=True, slots=True)
class QuarantineRecord:
    """What the store keeps for one delivery's quarantined elements."""

    path: str  # every path, grouped: "data.events[0-2,5].uuid, data.events[3]"
    reason: str  # the reason; with several groups, "path: reason; path: reason"
    body: str  # the element as delivered, or a JSON array of the elements
    elements: int


@dataclass(frozen=True, slots=True)
class _Group:
    path: str
    reason: str
    count: int


def record(quarantined: Sequence[Quarantined]) -> QuarantineRecord | None:
    """One record for a delivery's quarantined elements (None if there are none)."""
    if not quarantined:
        return None
    groups = _groups(quarantined)
    reason = groups[0].reason if len(groups) == 1 else "; ".join(f"{g.path}: {g.reason}" for g in groups)
    body = quarantined[0].raw if len(quarantined) == 1 else "[" + ",".join(q.raw for q in quarantined) + "]"
    return QuarantineRecord(path=", ".join(g.path for g in groups), reason=reason, body=body,
                            elements=len(quarantined))


def summary(quarantined: Sequence[Quarantined]) -> str:
    """For the delivery's one log line: the first few groups, each path cut short."""
    groups = _groups(quarantined)
    parts = [f"{_cut(g.path)}: {g.reason}" + (f" ({g.count:,} elements)" if g.count > 1 else "")
             for g in groups[:LOG_GROUPS]]
    if len(groups) > LOG_GROUPS:
        parts.append(f"and {len(groups) - LOG_GROUPS} more (see `sentinel quarantine`)")
    return "; ".join(parts)


def _groups(quarantined: Sequence[Quarantined]) -> list[_Group]:
    indexes: dict[tuple[str, str], list[int]] = {}  # (path after the index, reason) -> indexes, in order
    whole: list[_Group] = []
    for q in quarantined:
        match = _ELEMENT.fullmatch(q.path)
        if match is None:  # not an element (a delivery quarantined whole): a group of its own
            whole.append(_Group(q.path, q.reason, 1))
            continue
        indexes.setdefault((match.group(2), q.reason), []).append(int(match.group(1)))
    grouped = [_Group(f"data.events[{index_ranges(found)}]{rest}", reason, len(found))
               for (rest, reason), found in indexes.items()]
    return whole + grouped


def index_ranges(indexes: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``0-2,5``."""
    parts: list[str] = []
    start = previous = indexes[0]
    for index in [*indexes[1:], None]:
        if index is not None and index == previous + 1:
            previous = index
            continue
        parts.append(str(start) if start == previous else f"{start}-{previous}")
        if index is not None:
            start = previous = index
    return ",".join(parts)


def _cut(text: str) -> str:
    return text if len(text) <= LOG_PATH_CHARS else text[:LOG_PATH_CHARS] + "…"
