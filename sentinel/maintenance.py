"""Maintenance windows (``[[maintenance]]`` in sentinel.toml): when alerts of some rules are expected noise.

A window is recurring (``weekdays`` + ``times`` such as ``"22:00-02:00"`` in an IANA ``timezone``) or one-off
(``start``/``end``, RFC 3339). Alerts made while a window is open, of its ``rules`` (ids or globs) and, if it
has ``match``, with those field values, are handled like silenced ones (sentinel.silences.window_silence).

The time logic is pure (``now`` is passed in) and works in UTC: local times are turned into instants with
zoneinfo, never compared as wall-clock times (two aware datetimes sharing a tzinfo compare their wall times,
ignoring DST folds). A recurring window belongs to the weekday it starts on: ``fri 22:00-02:00`` is open
Saturday 01:00 and not Friday 01:00. Across DST changes, times are wall-clock times in the zone: a start or
end in a skipped hour (spring forward) is shifted forward by the gap (02:30 → 03:30); one in a repeated hour
(fall back) is its first occurrence.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
KEYS = frozenset({"name", "rules", "match", "weekdays", "times", "timezone", "start", "end"})
_TIMES = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
MAX_ONE_OFF = timedelta(days=366)


@dataclass(frozen=True)
class Window:
    name: str
    rules: tuple[str, ...]  # rule ids or fnmatch globs
    matchers: tuple[tuple[str, str], ...] = ()  # (field path, value), as a silence's
    # Recurring: the weekdays a window starts on (0 = Monday), its local start and end (end <= start: the
    # next day), the zone. One-off: start and end instants.
    weekdays: frozenset[int] = frozenset()
    start_time: time | None = None
    end_time: time | None = None  # time(0) with end_next_day for "24:00"
    timezone: str = "UTC"
    start: datetime | None = None
    end: datetime | None = None

    @property
    def recurring(self) -> bool:
        return self.start_time is not None

    def span_starting(self, day: date) -> tuple[datetime, datetime] | None:
        """The recurring window's occurrence that starts on local ``day`` (UTC instants), if it starts then."""
        if self.start_time is None or self.end_time is None or day.weekday() not in self.weekdays:
            return None
        zone = ZoneInfo(self.timezone)
        end_day = day + timedelta(days=1) if self.end_time <= self.start_time else day
        opens = _instant(day, self.start_time, zone)
        closes = _instant(end_day, self.end_time, zone)
        return opens, closes

    def open_at(self, now: datetime) -> bool:
        """Whether alerts made at ``now`` (aware) fall inside this window."""
        instant = now.astimezone(UTC)
        if not self.recurring:
            return self.start is not None and self.end is not None and self.start <= instant < self.end
        today = instant.astimezone(ZoneInfo(self.timezone)).date()
        for day in (today - timedelta(days=1), today):  # a window that started yesterday may still be open
            span = self.span_starting(day)
            if span is not None and span[0] <= instant < span[1]:
                return True
        return False


def _instant(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The UTC instant of a local wall-clock time (fold=0, PEP 495): a repeated time is its first occurrence;
    a skipped one reads with the offset before the change, i.e. shifted forward by the gap (02:30 on a spring-
    forward night of one hour is 03:30 summer time)."""
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


def parse_times(text: object) -> tuple[time, time]:
    """``"22:00-02:00"`` → (22:00, 02:00); ``24:00`` as an end means midnight. ValueError when malformed."""
    found = _TIMES.match(text) if isinstance(text, str) else None
    if not found:
        raise ValueError(f"must be 'HH:MM-HH:MM' such as '22:00-02:00', not {text!r}")
    h1, m1, h2, m2 = (int(g) for g in found.groups())
    if not (0 <= h1 <= 23 and 0 <= m1 <= 59 and ((0 <= h2 <= 23 and 0 <= m2 <= 59) or (h2, m2) == (24, 0))):
        raise ValueError(f"{text!r} is not a time of day range (00:00 to 24:00)")
    start, end = time(h1, m1), time(0, 0) if h2 == 24 else time(h2, m2)
    if start == end and h2 != 24:
        raise ValueError(f"{text!r} starts and ends at the same time (use '00:00-24:00' for the whole day)")
    return start, end


def _instant_of(value: Any) -> datetime:
    """An RFC 3339 time with an offset: a TOML offset date-time or a string."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ValueError(f"must be an RFC 3339 time such as 2026-03-01T22:00:00Z, not {value!r}") from None
    else:
        raise ValueError(f"must be an RFC 3339 time such as 2026-03-01T22:00:00Z, not {type(value).__name__}")
    if moment.tzinfo is None:
        raise ValueError(f"{value!s} has no UTC offset (add Z or +01:00: a time without one is ambiguous)")
    return moment.astimezone(UTC)


def parse_windows(value: Any) -> tuple[list[Window], list[tuple[str, str]]]:
    """The ``maintenance`` array of tables → windows, and (key path, message) for every problem found."""
    problems: list[tuple[str, str]] = []
    windows: list[Window] = []
    if not isinstance(value, list):
        return [], [("maintenance", "must be an array of tables: write [[maintenance]]")]
    names: set[str] = set()
    for index, table in enumerate(value):
        where = f"maintenance[{index}]"
        if not isinstance(table, dict):
            problems.append((where, "must be a table"))
            continue
        window = _window(table, where, problems)
        if window is not None:
            if window.name in names:
                problems.append((f"{where}.name", f"{window.name!r} is used by another window"))
            names.add(window.name)
            windows.append(window)
    return windows, problems


def _window(table: Mapping[str, Any], where: str, problems: list[tuple[str, str]]) -> Window | None:
    count = len(problems)
    for key in table:
        if key not in KEYS:
            problems.append((f"{where}.{key}", f"unknown key (allowed: {', '.join(sorted(KEYS))})"))
    name = table.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append((f"{where}.name", "each window needs a name (it is shown on the alerts it silences)"))
    rules = table.get("rules")
    if not isinstance(rules, list) or not rules or not all(isinstance(r, str) and r.strip() for r in rules):
        problems.append((f"{where}.rules", "must be a non-empty array of rule ids or globs such as 'okta-*'"))
        rules = []
    match = table.get("match", {})
    matchers: list[tuple[str, str]] = []
    if not isinstance(match, dict):
        problems.append((f"{where}.match", "must be a table of field path = value"))
    else:
        for path, expected in _flatten(match):
            if isinstance(expected, bool):
                matchers.append((path, "true" if expected else "false"))
            elif isinstance(expected, str | int | float) and str(expected):
                matchers.append((path, str(expected)))
            else:
                problems.append((f"{where}.match.{path}", "must be a text, number or boolean value"))
    recurring = any(k in table for k in ("weekdays", "times", "timezone"))
    one_off = any(k in table for k in ("start", "end"))
    fields: dict[str, Any] = {}
    if recurring and one_off:
        problems.append((where, "either weekdays/times/timezone (recurring) or start/end (one-off), not both"))
    elif recurring:
        fields = _recurring(table, where, problems)
    elif one_off:
        fields = _one_off(table, where, problems)
    else:
        problems.append((where, "needs times (with weekdays and timezone) or start and end"))
    if len(problems) > count:
        return None
    return Window(name=str(name).strip(), rules=tuple(r.strip() for r in rules), matchers=tuple(matchers), **fields)


def _flatten(table: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """``match.actor.alternateId = "x"`` (TOML dotted keys: nested tables) and ``match = {"actor.alternateId"
    = "x"}`` (a quoted key) both mean the field path ``actor.alternateId``."""
    pairs: list[tuple[str, Any]] = []
    for key, value in table.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        pairs.extend(_flatten(value, path) if isinstance(value, dict) and len(pairs) < 64 else [(path, value)])
    return pairs


def _recurring(table: Mapping[str, Any], where: str, problems: list[tuple[str, str]]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    days = table.get("weekdays", list(WEEKDAYS))
    if not isinstance(days, list) or not days or not all(isinstance(d, str) for d in days):
        problems.append((f"{where}.weekdays", f"must be an array of {', '.join(WEEKDAYS)}"))
    else:
        unknown = [d for d in days if d.strip().lower()[:3] not in WEEKDAYS or len(d.strip()) < 3]
        if unknown:
            problems.append((f"{where}.weekdays", f"unknown weekday {unknown[0]!r} (use {', '.join(WEEKDAYS)})"))
        else:
            fields["weekdays"] = frozenset(WEEKDAYS.index(d.strip().lower()[:3]) for d in days)
    try:
        fields["start_time"], fields["end_time"] = parse_times(table.get("times"))
    except ValueError as e:
        problems.append((f"{where}.times", str(e)))
    zone = table.get("timezone", "UTC")
    try:
        ZoneInfo(zone)
        fields["timezone"] = zone
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        problems.append((f"{where}.timezone", f"unknown time zone {zone!r} (use an IANA name such as "
                                              "'Europe/Paris')"))
    return fields


def _one_off(table: Mapping[str, Any], where: str, problems: list[tuple[str, str]]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key in ("start", "end"):
        if key not in table:
            problems.append((f"{where}.{key}", "a one-off window needs both start and end"))
            continue
        try:
            fields[key] = _instant_of(table[key])
        except ValueError as e:
            problems.append((f"{where}.{key}", str(e)))
    start, end = fields.get("start"), fields.get("end")
    if start is not None and end is not None:
        if end <= start:
            problems.append((f"{where}.end", "is not after start"))
        elif end - start > MAX_ONE_OFF:
            problems.append((f"{where}.end", f"a one-off window lasts at most {MAX_ONE_OFF.days} days"))
    return fields


def open_windows(windows: Sequence[Window], now: datetime) -> list[Window]:
    return [w for w in windows if w.open_at(now)]
