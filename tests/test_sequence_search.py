"""The sequence search (sentinel/rules/sequence_search.py) answers what the search it replaced answered: the
earlier search (a pass over every earlier chain for every run, after every insertion) is kept here as the
reference, and both run on generated groups: the whole search on any group, the search from the inserted
event on groups built the way the engine builds them (insert, search, spend what a complete sequence used)."""

from __future__ import annotations

import bisect
import random
from typing import Any

import pytest

from sentinel.rules.engine_state import MICROS
from sentinel.rules.model import Sequence, SequenceStep
from sentinel.rules.sequence_search import find
from sentinel.rules.sequence_spec import MAX_STEP_EVENTS


def reference_search(sequence: Sequence, steps: list[list[list[Any]]]) -> list[tuple[int, int]] | None:
    """The search before sequence_search.py, verbatim (sentinel/rules/sequence.py at 0ecfc45)."""
    present = sequence.present
    if any(len(events) < step.count for step, events in zip(present, steps, strict=True)):
        return None
    window = sequence.window_seconds * MICROS if sequence.window_seconds is not None else None
    first_step, first_events = present[0], steps[0]
    span = (first_step.within_seconds or sequence.window_seconds or 0) * MICROS
    candidates: list[tuple[int, int, list[tuple[int, int]]]] = []
    for end in range(first_step.count - 1, len(first_events)):
        start = end - first_step.count + 1
        if first_step.count == 1 or first_events[end][0] - first_events[start][0] <= span:
            candidates.append((first_events[end][0], first_events[start][0], [(start, end)]))
    for step, events in zip(present[1:], steps[1:], strict=True):
        within = step.within_seconds * MICROS if step.within_seconds is not None else None
        following = []
        for end in range(step.count - 1, len(events)):
            start = end - step.count + 1
            begins, ends = events[start][0], events[end][0]
            best = None
            for last, first, runs in candidates:
                if last < begins and (within is None or ends - last <= within) and (
                        window is None or ends - first <= window) and (best is None or first > best[1]):
                    best = (last, first, runs)
            if best is not None:
                following.append((ends, best[1], [*best[2], (start, end)]))
        if not following:
            return None
        candidates = following
    return min(candidates, key=lambda c: c[0])[2]


def _sequence(rng: random.Random) -> Sequence:
    window = rng.choice([None, None, rng.randint(1, 40)])
    steps = []
    for index in range(rng.randint(2, 4)):
        within = rng.choice([None, rng.randint(0, 20)]) if window is not None else rng.randint(1, 20)
        count = rng.choice([1, 1, 2, 3])
        if index == 0:
            within = rng.randint(1, 20) if count > 1 and window is None else rng.choice([None, rng.randint(0, 20)])
        steps.append(SequenceStep(f"s{index}", lambda data: True, count, within))
    return Sequence(tuple(steps), window)


def _entry(rng: random.Random, n: int, spread: int, unit: int) -> list[Any]:
    return [rng.randint(0, spread) * unit, f"u{n:05}", None, None]  # few distinct times: many ties


@pytest.mark.parametrize("seed", range(300))
def test_the_whole_search_answers_what_the_reference_answers(seed):
    rng = random.Random(seed)
    sequence = _sequence(rng)
    spread = rng.choice([10, 40, 200])
    # Whole seconds, or a spread of microseconds (bounds a microsecond off then show; every within is longer)
    unit = rng.choice([MICROS, MICROS, 1])
    n = 0
    steps = []
    for _ in sequence.present:
        entries = []
        for _ in range(rng.randint(0, 12)):
            n += 1
            entries.append(_entry(rng, n, spread, unit))
        steps.append(sorted(entries, key=lambda e: (e[0], e[1])))
    assert find(sequence, steps) == reference_search(sequence, steps)


@pytest.mark.parametrize("seed", range(200))
def test_the_search_from_the_inserted_event_answers_what_the_reference_answers(seed):
    """Built as the engine builds a group: events in any order (late ones too), each inserted in time order
    into one step, the newest MAX_STEP_EVENTS kept, a complete sequence spending every event up to its end."""
    rng = random.Random(seed)
    sequence = _sequence(rng)
    steps: list[list[list[Any]]] = [[] for _ in sequence.present]
    done = clock = 0
    unit = rng.choice([MICROS, MICROS // 4, 1])  # a within ends between two events; times a microsecond apart
    for n in range(400):
        clock += rng.randint(0, 3)
        micros = max(clock - rng.choice([0, 0, 0, 5, 30]), 0) * unit
        entry: list[Any] = [micros, f"u{n:05}", None, None]
        if micros <= done:
            continue
        index = rng.randrange(len(steps))
        events = steps[index]
        position = bisect.bisect_right(events, (entry[0], entry[1]), key=lambda e: (e[0], e[1]))
        events.insert(position, entry)
        if len(events) > MAX_STEP_EVENTS:
            del events[0]
            position -= 1
        expected = reference_search(sequence, steps)
        found = find(sequence, steps, index, position) if position >= 0 else None
        assert found == expected, (n, index, position)
        if found is not None:
            last = steps[-1][found[-1][1]][0]
            done = max(done, last)
            for entries in steps:
                del entries[:bisect.bisect_right(entries, last, key=lambda e: e[0])]


def test_generated_groups_do_complete_sequences():
    """The generator is not vacuous: across seeds, the incremental test meets many complete sequences."""
    total = 0
    for seed in range(20):
        rng = random.Random(seed)
        sequence = _sequence(rng)
        steps = [[[t * MICROS, f"u{t}-{i}", None, None] for t in range(0, 60, 1 + i)] for i in
                 range(len(sequence.present))]
        total += reference_search(sequence, steps) is not None
    assert total >= 5
