"""The one duration syntax: a rule's ``window`` and ``period``, and ``--since 30m`` on the command line."""

from __future__ import annotations

import re

MAX_WINDOW_SECONDS = 7 * 86_400
MAX_LOOKBACK_SECONDS = 90 * 86_400  # a first-seen ``lookback`` (history, not a window held in full)
_DURATION = re.compile(r"(\d+)\s*([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def duration_seconds(value: object) -> int:
    """``90``, ``"30s"``, ``"10m"``, ``"1h30m"``, ``"1d"`` → seconds; ValueError otherwise (no bounds)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip() and _DURATION.sub("", value).strip() == "":
        return sum(int(n) * _UNITS[u] for n, u in _DURATION.findall(value))
    raise ValueError(f"not a duration: {value!r} (use seconds or text like '10m', '1h', '1d')")


def parse_duration(value: object, max_seconds: int = MAX_WINDOW_SECONDS) -> int:
    """A rule's window or period: a duration of 1 second to 7 days (or ``max_seconds``), in seconds;
    ValueError otherwise."""
    seconds = duration_seconds(value)
    if not 0 < seconds <= max_seconds:
        raise ValueError(f"must be between 1 second and {_days(max_seconds)}, got {value!r}")
    return seconds


def _days(seconds: int) -> str:
    return f"{seconds // 86_400} days" if seconds % 86_400 == 0 else f"{seconds} seconds"
