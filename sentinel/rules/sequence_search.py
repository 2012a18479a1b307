"""The search for a complete sequence among a group's per-step events (``sentinel.rules.sequence``). Pure.

Each present step's events are sorted by time; a step's *runs* are its ``count`` consecutive events. A
complete sequence takes one run per step, each strictly after the previous step's run's last event and at
most ``within`` after it, the whole at most ``window`` from first to last event. For each run the search
keeps one chain ending there, the one starting latest (it leaves most room for the window; the earliest such
in time order on a tie), and answers with the chain whose last run ends earliest.

Chains are kept in time order, and both their last and their first times never decrease along it (true of a
first step's runs; a later run's best chain is that of the latest chain ending before it, whose first time
is the largest). So a run's best chain is found by bisection, not by a pass over every earlier chain.

Given the step and position of the event just inserted, only chains holding that event are searched: a step
whose run holds it, and for the other steps only the runs a chain through it can reach in time. After every
insertion the engine searches, and a complete sequence is spent at once, so a new complete sequence holds the
new event: the answer is the one a search of everything would give (tests hold the two to it).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from operator import itemgetter
from typing import Any

from sentinel.rules.engine_state import MICROS
from sentinel.rules.model import Sequence

Entry = list[Any]  # [micros, uuid, actor, ip]
_TIME = itemgetter(0)
_UNBOUNDED = float("inf")


def find(sequence: Sequence, steps: list[list[Entry]], step: int | None = None,
         position: int = 0) -> list[tuple[int, int]] | None:
    """(first, last) index of each present step's run in the earliest-ending complete sequence, or None.

    With ``step``: only sequences whose run at that step holds ``steps[step][position]``."""
    present = sequence.present
    counts = [s.count for s in present]
    if any(len(events) < count for count, events in zip(counts, steps, strict=True)):
        return None
    window = sequence.window_seconds * MICROS if sequence.window_seconds is not None else None
    ranges = _reachable(sequence, steps, counts, window, step, position) if step is not None else None
    if step is not None and ranges is None:
        return None
    # Per step, the chains ending at each of its runs with a chain before it: last times, first times,
    # (first, last) indexes of the run, and the index of the chain it extends in the previous step's lists.
    lasts: list[int] = []
    firsts: list[int] = []
    chains: list[list[tuple[tuple[int, int], int]]] = []
    for index, (spec, events, count) in enumerate(zip(present, steps, counts, strict=True)):
        low, high = 0, len(events) - count  # the runs that start at low..high
        if ranges is not None and index < len(ranges):
            low, high = ranges[index]
        runs: list[tuple[tuple[int, int], int]] = []
        if index == 0:
            span = (spec.within_seconds or sequence.window_seconds or 0) * MICROS
            new_lasts, new_firsts = [], []
            for start in range(low, high + 1):
                begins, ends = events[start][0], events[start + count - 1][0]
                if count == 1 or ends - begins <= span:
                    new_lasts.append(ends)
                    new_firsts.append(begins)
                    runs.append(((start, start + count - 1), -1))
        else:
            within = spec.within_seconds * MICROS if spec.within_seconds is not None else None
            # Only runs starting after the earliest chain and ending before the latest chain's reach.
            reach = min(lasts[-1] + within if within is not None else _UNBOUNDED,
                        firsts[-1] + window if window is not None else _UNBOUNDED)
            low = max(low, bisect_right(events, lasts[0], key=_TIME))
            if reach != _UNBOUNDED:
                high = min(high, bisect_right(events, reach, key=_TIME) - count)
            new_lasts, new_firsts = [], []
            for start in range(low, high + 1):
                begins, ends = events[start][0], events[start + count - 1][0]
                before = bisect_left(lasts, begins)  # chains ending strictly before the run begins
                if not before:
                    continue
                earliest = bisect_left(lasts, ends - within) if within is not None else 0
                if window is not None:
                    earliest = max(earliest, bisect_left(firsts, ends - window))
                if earliest >= before:
                    continue
                first = firsts[before - 1]
                chosen = max(earliest, bisect_left(firsts, first))
                new_lasts.append(ends)
                new_firsts.append(first)
                runs.append(((start, start + count - 1), chosen))
        if not runs:
            return None
        lasts, firsts = new_lasts, new_firsts
        chains.append(runs)
    found: list[tuple[int, int]] = []
    link = 0  # the first chain of the last step ends earliest
    for runs in reversed(chains):
        run, link = runs[link]
        found.append(run)
    found.reverse()
    return found


def _reachable(sequence: Sequence, steps: list[list[Entry]], counts: list[int], window: int | None,
               step: int, position: int) -> list[tuple[int, int]] | None:
    """For steps 0..``step``, the start indexes (low, high) of the runs a chain holding the event at
    ``steps[step][position]`` can use (a superset); None if there are none."""
    count = counts[step]
    ranges = [(max(0, position - count + 1), min(position, len(steps[step]) - count))]
    for index in range(step - 1, -1, -1):
        low, high = ranges[-1]
        if low > high:
            return None
        later, later_count = steps[index + 1], counts[index + 1]
        ends_first = later[low + later_count - 1][0]
        before = later[high][0]  # a chain must end before the latest run begins
        within = sequence.present[index + 1].within_seconds
        earliest = -_UNBOUNDED
        if within is not None:
            earliest = ends_first - within * MICROS
        if window is not None:  # a chain's last event is at or after its first
            earliest = max(earliest, ends_first - window)
        events, count = steps[index], counts[index]
        first_end = bisect_left(events, earliest, key=_TIME) if earliest != -_UNBOUNDED else 0
        ranges.append((max(0, first_end - count + 1), min(bisect_left(events, before, key=_TIME) - count,
                                                          len(events) - count)))
    low, high = ranges[-1]
    if low > high:
        return None
    ranges.reverse()
    return ranges
