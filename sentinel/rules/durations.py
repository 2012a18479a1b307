"""A rule's ``window`` and ``period``: the one duration syntax (:mod:`sentinel.durations`) with a rule's bounds."""

from __future__ import annotations

from sentinel.durations import duration_seconds

__all__ = ["MAX_LOOKBACK_SECONDS", "MAX_WINDOW_SECONDS", "duration_seconds", "parse_duration"]

MAX_WINDOW_SECONDS = 7 * 86_400
MAX_LOOKBACK_SECONDS = 90 * 86_400  # a first-seen ``lookback`` (history, not a window held in full)


def parse_duration(value: object, max_seconds: int = MAX_WINDOW_SECONDS) -> int:
    """A rule's window or period: a duration of 1 second to 7 days (or ``max_seconds``), in seconds;
    ValueError otherwise."""
    seconds = duration_seconds(value)
    if not 0 < seconds <= max_seconds:
        raise ValueError(f"must be between 1 second and {_days(max_seconds)}, got {value!r}")
    return seconds


def _days(seconds: int) -> str:
    return f"{seconds // 86_400} days" if seconds % 86_400 == 0 else f"{seconds} seconds"
