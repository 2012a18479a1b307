"""The one duration syntax (``90``, ``"30s"``, ``"10m"``, ``"1h30m"``, ``"1d"``), below every layer that reads
one: a rule's window, a config key such as ``[rules] allowed_lateness``, ``--since 30m`` on the command line."""

from __future__ import annotations

import re

_DURATION = re.compile(r"(\d+)\s*([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def duration_seconds(value: object) -> int:
    """``90``, ``"30s"``, ``"10m"``, ``"1h30m"``, ``"1d"`` → seconds; ValueError otherwise (no bounds)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip() and _DURATION.sub("", value).strip() == "":
        return sum(int(n) * _UNITS[u] for n, u in _DURATION.findall(value))
    raise ValueError(f"not a duration: {value!r} (use seconds or text like '10m', '1h', '1d')")
