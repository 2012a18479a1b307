"""A rule's ``window`` and ``period``: the one duration syntax (:mod:`sentinel.durations`) with a rule's bounds."""

from __future__ import annotations

from sentinel.durations import duration_seconds

__all__ = ["MAX_WINDOW_SECONDS", "duration_seconds", "parse_duration"]

MAX_WINDOW_SECONDS = 7 * 86_400


def parse_duration(value: object) -> int:
    """A rule's window or period: a duration of 1 second to 7 days, in seconds; ValueError otherwise."""
    seconds = duration_seconds(value)
    if not 0 < seconds <= MAX_WINDOW_SECONDS:
        raise ValueError(f"must be between 1 second and 7 days, got {value!r}")
    return seconds
