"""Log what rule state let go — evicted and expired groups, forgotten events, matcher errors — at most
once per rule and kind per interval, with the count since that rule and kind's last line.

The engine only counts (it is pure); the detector hands the counts here and to the metrics. A flood
that evicts a thousand groups a second is one line a minute per rule, not a thousand; the metrics
(``sentinel_rule_*_total{rule}``) carry every count, unthrottled.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping

from sentinel.rules.engine_state import (
    DROPPED_ENTRIES,
    EVICTED_GROUPS,
    EXPIRED_GROUPS,
    MATCH_ERRORS,
    TOO_LATE,
    VALUES_FORGOTTEN,
)

INTERVAL_SECONDS = 60.0

# kind → (level, what was counted, why it matters). Expiry is housekeeping (info); the rest loses evidence.
MESSAGES: Mapping[str, tuple[int, str, str]] = {
    EVICTED_GROUPS: (logging.WARNING, "live groups evicted",
                     "rule state is full ([rules] max_groups); their windows were lost, so alerts may be missed"),
    DROPPED_ENTRIES: (logging.WARNING, "pending events forgotten",
                      "repeats of a value filled a distinct-count group; the distinct count is intact, the "
                      "alert's count is lower"),
    VALUES_FORGOTTEN: (logging.WARNING, "first-seen values forgotten",
                       "a group held max_values; a forgotten value alerts as new when it comes back"),
    MATCH_ERRORS: (logging.WARNING, "events skipped",
                   "the rule raised while matching (a bug; `sentinel replay` reproduces it)"),
    TOO_LATE: (logging.WARNING, "late events not counted",
               "they were older than the newest event time less [rules] allowed_lateness (raise it to cover a "
               "longer poller back-fill; `sentinel replay` re-runs a past window)"),
    EXPIRED_GROUPS: (logging.INFO, "groups expired", "their windows ended"),
}


class RuleStateLog:
    def __init__(self, log: logging.Logger, interval: float = INTERVAL_SECONDS) -> None:
        self._log = log
        self._interval = interval
        self._pending: Counter[tuple[str, str]] = Counter()
        self._last: dict[tuple[str, str], float] = {}  # (kind, rule) → when its last line was logged

    def add(self, counts: Mapping[tuple[str, str], int], now: float) -> None:
        """Counts by (kind, rule id) since the previous call; ``now`` is monotonic seconds."""
        self._pending.update(counts)
        self.flush(now)

    def flush(self, now: float) -> None:
        """Log every (kind, rule) with a count whose last line is at least an interval old (or that has none)."""
        for (kind, rule_id), count in list(self._pending.items()):
            last = self._last.get((kind, rule_id))
            if last is not None and now - last < self._interval:
                continue
            level, what, why = MESSAGES.get(kind, (logging.WARNING, kind, "see the metrics"))
            since = "" if last is None else f" in the last {now - last:.0f} s"
            self._log.log(level, "rule %s: %d %s%s: %s", rule_id, count, what, since, why)
            self._last[kind, rule_id] = now
            del self._pending[kind, rule_id]
