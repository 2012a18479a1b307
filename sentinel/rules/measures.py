"""The named measures of a threshold window and the search for a window whose ``when`` holds.

A measured threshold group keeps its matching events as entries ``[micros, uuid, [value per measure]]``
(JSON-able: the state is saved as is), where a measure's value is what the event adds to it: 1 for
``count``/``span``/``first``/``last``, the text of the counted fields for ``distinct``/``max_per``, the
number for ``sum``, or None when the event does not count for it (``where`` fails, a field is missing).

Which windows: the window of ``window`` seconds ending at each entry's time, i.e. what an evaluation at
each event would see had the events come in order. A late event changes the windows ending at it and up to
``window`` after it; those are the ones checked, oldest first, in one pass that adds entries on the right
and removes them on the left, so the cost is linear in the entries the windows hold.
"""

from __future__ import annotations

import bisect
import hashlib
from collections import deque
from collections.abc import Mapping
from typing import Any

from sentinel.rules.measure_expr import Expr
from sentinel.rules.model import Measure, Threshold
from sentinel.rules.values import as_number, as_text

MICROS = 1_000_000
# A counted value longer than this is kept as a digest: a measure counts values, never shows them, and a
# group keeps up to 2000 events, each with a value per measure.
MAX_VALUE_CHARS = 48
_ONE_EACH = ("count", "span", "first", "last")


def signature(measures: tuple[Measure, ...]) -> str:
    """Names and kinds of the measures: a group record kept under another list starts afresh (its entries'
    values would land in the wrong measures). Made at load (``Threshold.signature``)."""
    return ";".join(f"{m.name}:{m.text}" for m in measures)


def entry_values(threshold: Threshold, data: Mapping[str, Any]) -> list[Any]:
    """What the event adds to each measure (None: it does not count for that one)."""
    out: list[Any] = []
    for measure in threshold.measures:
        if measure.where is not None and not measure.where(data):
            out.append(None)
        elif measure.kind in _ONE_EACH:
            out.append(1)
        elif measure.kind == "sum":
            values = measure.fields[0].values(data)
            number = as_number(values[0]) if values else None
            out.append(number if number is not None and abs(number) < 1e15 else None)
        else:
            out.append(_joined(measure, data))
    return out


def _joined(measure: Measure, data: Mapping[str, Any]) -> str | None:
    parts = []
    for path in measure.fields:
        values = path.values(data)
        text = as_text(values[0]) if values else None
        if text is None:
            return None  # an event missing any of the fields is not counted
        parts.append(text)
    joined = " / ".join(parts)
    if len(joined) <= MAX_VALUE_CHARS:
        return joined
    return "#" + hashlib.blake2b(joined.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


class _Tally:
    """The measures of a sliding run of entries: add on the right, remove on the left."""

    def __init__(self, measures: tuple[Measure, ...]) -> None:
        self.measures = measures
        self.totals = [0.0] * len(measures)  # count, sum; for per_value: values in the band
        self.counts: list[dict[str, int]] = [{} for _ in measures]  # distinct, max_per: events per value
        self.sizes: list[dict[int, int]] = [{} for _ in measures]  # max_per: how many values have n events
        self.times: list[deque[int]] = [deque() for _ in measures]  # span, first, last: event times

    def add(self, entry: list[Any], sign: int) -> None:
        for index, (measure, value) in enumerate(zip(self.measures, entry[2], strict=False)):
            if value is None:
                continue
            kind = measure.kind
            if kind == "count":
                self.totals[index] += sign
            elif kind == "sum":
                self.totals[index] += sign * float(value)
            elif kind in ("span", "first", "last"):
                if sign > 0:
                    self.times[index].append(entry[0])
                else:
                    self.times[index].popleft()
            else:
                self._count(index, measure, value, sign)

    def _count(self, index: int, measure: Measure, value: str, sign: int) -> None:
        counts = self.counts[index]
        before = counts.get(value, 0)
        after = before + sign
        if after:
            counts[value] = after
        else:
            counts.pop(value, None)
        band = measure.per_value
        if band is not None:
            self.totals[index] += (band[0] <= after <= band[1]) - (band[0] <= before <= band[1])
        if measure.kind == "max_per":
            sizes = self.sizes[index]
            if before:
                sizes[before] -= 1
                if not sizes[before]:
                    del sizes[before]
            if after:
                sizes[after] = sizes.get(after, 0) + 1

    def values(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for index, measure in enumerate(self.measures):
            kind = measure.kind
            if kind in ("count", "sum") or measure.per_value is not None:
                out[measure.name] = self.totals[index]
            elif kind == "distinct":
                out[measure.name] = float(len(self.counts[index]))
            elif kind == "max_per":
                out[measure.name] = float(max(self.sizes[index], default=0))
            else:
                times = self.times[index]
                if kind == "span":
                    out[measure.name] = (times[-1] - times[0]) / MICROS if times else 0.0
                else:  # first, last: event time in seconds; undefined while no event counts
                    out[measure.name] = (times[0] if kind == "first" else times[-1]) / MICROS if times else None
        return out


class _Running:
    """The tally of the window ending at a group's newest entry, kept between events (EngineState.scratch)
    so an event that comes in order costs the entries it adds and evicts, not a pass over the window."""

    def __init__(self, threshold: Threshold, tally: _Tally, entries: list[list[Any]], low: int) -> None:
        self.threshold, self.tally, self.size = threshold, tally, len(entries) - low
        self.first, self.last = _identity(entries[low]), _identity(entries[-1])

    def follows(self, threshold: Threshold, entries: list[list[Any]], new: list[Any]) -> bool:
        """Whether ``new`` was appended after exactly the entries this tally ended with (no entry of its
        window inserted, dropped or fired since: their identities would not line up)."""
        return (threshold is self.threshold and len(entries) > self.size and entries[-1] is new
                and _identity(entries[-2]) == self.last and _identity(entries[-1 - self.size]) == self.first)


def keep_at_most(threshold: Threshold, entries: list[list[Any]], new: list[Any], limit: int,
                 scratch: dict[str, Any], key: str) -> int:
    """Forget the oldest entries past ``limit`` (returns how many), taking them out of the running tally
    too, so a flood that keeps a group at its bound still goes the cheap way."""
    excess = len(entries) - limit
    if excess <= 0:
        return 0
    running = scratch.get(key)
    if isinstance(running, _Running) and running.follows(threshold, entries, new):
        start = len(entries) - 1 - running.size  # the running window's first entry
        for entry in entries[start:excess]:
            running.tally.add(entry, -1)
            running.size -= 1
        del entries[:excess]
        if running.size:
            running.first = _identity(entries[-1 - running.size])
        else:
            del scratch[key]
    else:
        del entries[:excess]
    return excess


def _identity(entry: list[Any]) -> tuple[int, str]:
    return entry[0], entry[1]


def first_window(threshold: Threshold, entries: list[list[Any]], new: list[Any], window: int,
                 scratch: dict[str, Any], key: str) -> tuple[tuple[int, int] | None, dict[str, float | None], float]:
    """The oldest window ending at an entry between the ``new`` entry's time and ``window`` after it whose
    ``when`` holds: its slice (low, high) of ``entries`` and its measures; else None, the last window's
    measures, and the share of ``when``'s top-level ``and`` parts the closest window met (its progress, for
    eviction). ``scratch[key]`` keeps the newest window's tally for the next event of the group."""
    when = threshold.when
    assert when is not None
    running = scratch.pop(key, None)
    if isinstance(running, _Running) and running.follows(threshold, entries, new):
        return _next(running, entries, window, scratch, key)
    micros = new[0]
    first_end = bisect.bisect_left(entries, [micros])
    last_end = bisect.bisect_left(entries, [micros + window + 1])
    tally = _Tally(threshold.measures)
    low = bisect.bisect_left(entries, [entries[first_end][0] - window]) if first_end < len(entries) else first_end
    for entry in entries[low:first_end]:
        tally.add(entry, 1)
    values: dict[str, float | None] = {}
    progress = 0.0
    for end in range(first_end, last_end):
        tally.add(entries[end], 1)
        if end + 1 < last_end and entries[end + 1][0] == entries[end][0]:
            continue  # a window ends after every entry of its last moment
        while entries[low][0] < entries[end][0] - window:
            tally.add(entries[low], -1)
            low += 1
        values = tally.values()
        met = _met(when, values)
        if met == 1.0:
            return (low, end + 1), values, 1.0
        progress = max(progress, met)
    if last_end == len(entries) and last_end > first_end:
        scratch[key] = _Running(threshold, tally, entries, low)
    return None, values, progress


def _next(running: _Running, entries: list[list[Any]], window: int, scratch: dict[str, Any], key: str
          ) -> tuple[tuple[int, int] | None, dict[str, float | None], float]:
    """The window ending at the entry just appended, from the tally of the one before it."""
    when = running.threshold.when
    assert when is not None
    tally, new = running.tally, entries[-1]
    tally.add(new, 1)
    low = len(entries) - 1 - running.size
    while entries[low][0] < new[0] - window:
        tally.add(entries[low], -1)
        low += 1
    values = tally.values()
    met = _met(when, values)
    if met == 1.0:
        return (low, len(entries)), values, 1.0  # the window fires: its entries go, and the tally with them
    scratch[key] = _Running(running.threshold, tally, entries, low)
    return None, values, met


def _met(when: Expr, values: Mapping[str, float | None]) -> float:
    """1.0 if ``when`` holds; else the share of its top-level ``and`` parts that hold, just under 1 (the
    group's progress toward firing, which eviction spares)."""
    parts = when.children if when.op == "and" else (when,)
    held = sum(1 for part in parts if part.evaluate(values) is True)
    return 1.0 if held == len(parts) else held / len(parts) * 0.99


def shown(threshold: Threshold, values: Mapping[str, Any]) -> list[tuple[str, float | None]]:
    """The measures and the when's compound arithmetic (``failures / users``) with their values, in that
    order: what the alert states."""
    out: list[tuple[str, float | None]] = []
    numbers = {k: float(v) for k, v in values.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    for measure in threshold.measures:
        out.append((measure.name, numbers.get(measure.name)))
    if threshold.when is not None:
        for expr in threshold.when.arithmetic():
            value = expr.evaluate(numbers)
            out.append((expr.text(), value if isinstance(value, float) else None))
    return list(dict(out).items())
