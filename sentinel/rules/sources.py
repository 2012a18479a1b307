"""Which feed brings each rule its events: the Okta event hook, the System Log poller, or both; and the event
types the poller needs to ask for. Pure: the poller (service) and ``sentinel rules`` ask the same functions.

Okta's System Log ``filter`` takes SCIM expressions, ``sw`` included (``eventType sw "event_hook"`` is Okta's
own example), so a prefix pattern such as ``iam.role.*`` is asked for as ``eventType sw "iam.role."``
rather than expanded against a catalog that may be out of date.
"""

from __future__ import annotations

import json
from typing import Literal

from sentinel.rules.lint import hook_eligible_types
from sentinel.rules.model import Rule, RuleSet

Source = Literal["hook", "poll", "both"]
# Past this many terms (or characters) the filter makes a URL some proxies refuse; polling everything and
# letting the rule set ignore the rest costs less than a rejected request.
MAX_FILTER_TERMS = 100
MAX_FILTER_CHARS = 4000


def polled_event_types(ruleset: RuleSet) -> tuple[str, ...] | None:
    """The event types (exact names, or prefixes ending in ``.*``) the enabled rules read, sorted; None when
    the poller must read every type: some rule reads ``*``, or the list is too long for one filter."""
    patterns: set[str] = set()
    for rule in ruleset.rules:
        if not rule.enabled:
            continue
        if "*" in rule.event_types:
            return None
        patterns.update(rule.event_types)
    # A type a prefix already covers adds nothing to the filter.
    prefixes = [p[:-1] for p in patterns if p.endswith(".*")]
    kept = sorted(p for p in patterns
                  if not any(p != q + "*" and p.startswith(q) for q in prefixes))
    if len(kept) > MAX_FILTER_TERMS or len(filter_expression(kept)) > MAX_FILTER_CHARS:
        return None
    return tuple(kept)


def filter_expression(types: tuple[str, ...] | list[str]) -> str:
    """Okta's ``filter`` for these types: ``eventType eq "a" or eventType sw "b."`` (``b.*`` is a prefix).
    Each name is written as a JSON string, so a quote or backslash in a rule file cannot break out of it."""
    terms = []
    for pattern in types:
        if pattern.endswith(".*"):
            terms.append(f"eventType sw {json.dumps(pattern[:-1])}")
        else:
            terms.append(f"eventType eq {json.dumps(pattern)}")
    return " or ".join(terms)


def rule_source(rule: Rule, polling: bool) -> Source:
    """Which feed brings ``rule`` its events: "poll" when no type it reads is hook-eligible (without
    polling such a rule sees nothing, and ``rules check`` says so); else "both" when the poller runs (it
    asks for every type the rules read), "hook" when it does not."""
    eligible = hook_eligible_types()
    if not any(_hook_can_deliver(pattern, eligible) for pattern in rule.event_types):
        return "poll"
    return "both" if polling else "hook"


def _hook_can_deliver(pattern: str, eligible: frozenset[str]) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return any(t.startswith(pattern[:-1]) for t in eligible)
    return pattern in eligible
