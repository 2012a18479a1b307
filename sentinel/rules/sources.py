"""Which event types the System Log poller must fetch for a rule set (pure).

Okta's ``filter`` takes ``eventType eq "…" or …``: when every enabled rule names exact types, the poller
asks for just those; a rule on a prefix (``user.session.*``) or on every type (``*``) needs them all.
With no enabled rule, everything too: the events are still stored (``sentinel events``) for rules to come.
"""

from __future__ import annotations

from sentinel.rules.model import RuleSet

# Okta's URLs have a length limit; past this many types one filter would not fit: poll everything.
MAX_FILTERED_TYPES = 100


def polled_event_types(ruleset: RuleSet) -> tuple[str, ...] | None:
    """The exact event types the enabled rules read, sorted; None when the poller must fetch every type
    (a rule reads a prefix or ``*``, no rule is enabled, or too many types for one filter)."""
    types: set[str] = set()
    for rule in ruleset.rules:
        if not rule.enabled:
            continue
        for pattern in rule.event_types:
            if pattern == "*" or pattern.endswith(".*"):
                return None
            types.add(pattern)
    if not types or len(types) > MAX_FILTERED_TYPES:
        return None
    return tuple(sorted(types))
