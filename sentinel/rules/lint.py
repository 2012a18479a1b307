"""Warnings about rules that load but will not work as meant (kept apart from load errors)."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

from sentinel.rules.attack import unknown_attack_tag
from sentinel.rules.model import Rule, RuleSet


@lru_cache(maxsize=1)
def hook_eligible_types() -> frozenset[str]:
    """The event types an Okta event hook can subscribe to (shipped as package data)."""
    text = resources.files("sentinel").joinpath("data/hook-eligible-types.txt").read_text(encoding="utf-8")
    return frozenset(
        line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    )


def lint_rule(rule: Rule, polling: bool = False) -> list[str]:
    """``polling``: the System Log poller runs, asking for every type the rules read, so a type no event
    hook can deliver still arrives (no warning)."""
    eligible = hook_eligible_types()
    warnings = []
    for position, pattern in enumerate(() if polling else rule.event_types):
        where = f"{rule.source}: {rule.id}: event_types[{position}]"
        if pattern == "*":
            continue
        if pattern.endswith(".*"):
            prefix = pattern[:-1]
            if not any(t.startswith(prefix) for t in eligible):
                warnings.append(f"{where}: no event type under {pattern!r} can be delivered by an Okta event hook")
        elif pattern not in eligible:
            warnings.append(
                f"{where}: {pattern!r} cannot be delivered by an Okta event hook "
                "(not event-hook-eligible; needs System Log polling)"
            )
    for position, tag in enumerate(rule.tags):
        if unknown_attack_tag(tag):
            warnings.append(f"{rule.source}: {rule.id}: tags[{position}]: {tag!r} is not an ATT&CK tactic, "
                            "technique (attack.t1110.003), group or software id")
    for selection, path, operator in rule.case_sensitive_tests:
        warnings.append(f"{rule.source}: {rule.id}: detection.{selection}.{_quote(path)}.{operator}: case-sensitive "
                        "test on a field people type misses case variants (drop case_sensitive / ignore_case = false, "
                        "or add (?i) to a regex)")
    if rule.status == "deprecated" and rule.enabled:
        warnings.append(f"{rule.source}: {rule.id}: status: rule is deprecated but enabled")
    if not rule.tests:
        warnings.append(f"{rule.source}: {rule.id}: tests: rule has no inline tests")
    return warnings


def lint(ruleset: RuleSet, polling: bool = False) -> list[str]:
    """Every warning for every rule, one line each: ``file: rule-id: key: message``; then each named list no
    rule uses (``file: list 'name': ...``)."""
    used = {name for rule in ruleset.rules for name in rule.lists_used}
    unused = [f"{named.source}: list {named.name!r} is not used by any rule"
              for named in ruleset.lists if named.name not in used]
    return [warning for rule in ruleset.rules for warning in lint_rule(rule, polling)] + unused


def _quote(key: str) -> str:
    return key if all(c.isalnum() or c in "_-" for c in key) else f'"{key}"'
