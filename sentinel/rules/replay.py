"""Offline replay: run saved events through the engine as they stream in; nothing is sent or stored.

Order policy: events are evaluated in the order they are read (file order, files in the order given), with
event time (``published``) as the clock, exactly as the daemon's engine does. Its windows are event-time
windows that accept out-of-order events, so a file need not be sorted; Sentinel's own ``sentinel events
--json`` output is in ``published`` order anyway.

Memory stays bounded whatever the input's size:

- duplicates (Okta delivers at least once) are skipped by ``uuid`` among the last ``DEDUPE_WINDOW`` events;
- an alert is printed as soon as it is final: at once for a single-event rule; for a threshold or throttle
  rule once event time has passed the end of its windows (an out-of-order event that still folds into it
  later prints it again, with the grown count: the last line for a ``key`` wins);
- at most ``PENDING_LIMIT`` alerts wait; past that the oldest is printed early (same rule).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any

from sentinel.model import Alert, Event, format_timestamp
from sentinel.rules.engine_state import DEFAULT_MAX_GROUPS, MICROS, to_micros
from sentinel.rules.evaluator import RuleEvaluator
from sentinel.rules.model import Rule, RuleSet

DEDUPE_WINDOW = 100_000
PENDING_LIMIT = 10_000


def open_for_micros(rule: Rule) -> int:
    """How long after an alert's first event a later event can still fold into it (0: never)."""
    if rule.sequence is not None:  # a late step can still complete it; with throttle, later ones fold in
        return (rule.sequence.horizon_seconds + (rule.throttle_seconds or 0)) * MICROS
    if rule.threshold is not None:
        hold = rule.throttle_seconds or rule.threshold.window_seconds
        return (rule.threshold.window_seconds + hold) * MICROS
    if rule.throttle_seconds is not None:
        return 2 * rule.throttle_seconds * MICROS
    return 0


class Replay:
    """Feed events one at a time; each call returns the alerts that became final."""

    def __init__(self, ruleset: RuleSet, max_groups: int = DEFAULT_MAX_GROUPS) -> None:
        self.evaluator = RuleEvaluator(ruleset, max_groups)  # as the daemon's, with event time as the clock
        self._open_for = {rule.id: open_for_micros(rule) for rule in ruleset}
        self._recent: deque[str] = deque()
        self._recent_set: set[str] = set()
        # key -> (the alert's latest version, when it is final): in the order alerts first appeared
        self._pending: OrderedDict[str, tuple[Alert, int]] = OrderedDict()
        self.duplicates = 0
        self.evaluated = 0

    def _seen(self, uuid: str) -> bool:
        if uuid in self._recent_set:
            return True
        self._recent.append(uuid)
        self._recent_set.add(uuid)
        if len(self._recent) > DEDUPE_WINDOW:
            self._recent_set.discard(self._recent.popleft())
        return False

    def feed(self, event: Event) -> list[Alert]:
        if self._seen(event.uuid):
            self.duplicates += 1
            return []
        self.evaluated += 1
        found = self.evaluator.evaluate(event, event.published)
        final: list[Alert] = []
        for alert in found:
            open_for = self._open_for.get(alert.rule_id, 0)
            if open_for == 0:
                final.append(alert)
                continue
            previous = self._pending.get(alert.key)
            final_at = previous[1] if previous else to_micros(alert.first_seen) + open_for
            self._pending[alert.key] = (alert, final_at)
        while self._pending:
            key, (alert, final_at) = next(iter(self._pending.items()))
            if final_at >= self.evaluator.state.watermark and len(self._pending) <= PENDING_LIMIT:
                break
            del self._pending[key]
            final.append(alert)
        return final

    def finish(self) -> list[Alert]:
        """Every alert still waiting (the input has ended)."""
        final = [alert for alert, _ in self._pending.values()]
        self._pending.clear()
        return final


def alert_json(alert: Alert) -> dict[str, Any]:
    return {
        "rule_id": alert.rule_id,
        "severity": alert.severity.label,
        "title": alert.title,
        "summary": alert.summary,
        "group_key": alert.group_key,
        "count": alert.count,
        "first_seen": format_timestamp(alert.first_seen),
        "last_seen": format_timestamp(alert.last_seen),
        "event_uuids": list(alert.event_uuids),
        "key": alert.key,
        "channels": list(alert.channels) if alert.channels is not None else None,
    }
