"""Frozen rule objects and the rule set that indexes them by event type."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sentinel.model import Severity
from sentinel.rules.conditions import Matcher
from sentinel.rules.field_paths import FieldPath
from sentinel.rules.lists import NamedList
from sentinel.rules.templates import Template


@dataclass(frozen=True, slots=True)
class Threshold:
    """Alert when ``count`` matching events (or distinct values of ``distinct``) fall in ``window_seconds``."""

    count: int
    window_seconds: int
    distinct: FieldPath | None = None


@dataclass(frozen=True, slots=True)
class RuleTest:
    """One inline test: events (already with defaults filled in) and the expected outcome."""

    name: str
    events: tuple[Mapping[str, Any], ...]
    expect: bool | int  # bool: alerts or not; int: number of distinct alerts
    expect_severity: Severity | None = None
    location: str = ""


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    title: Template
    summary: Template
    description: str
    severity: Severity
    event_types: tuple[str, ...]  # exact names, or prefixes ending in ".*", or "*" for every type
    matcher: Matcher = field(repr=False)
    severity_when: tuple[tuple[Matcher, Severity], ...] = field(default=(), repr=False)
    tags: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    runbook: str = ""
    author: str = ""
    status: str = ""  # stable, test, experimental, deprecated, unsupported (Sigma's); "" = not said
    falsepositives: tuple[str, ...] = ()
    enabled: bool = True
    channels: tuple[str, ...] | None = None
    group_by: tuple[FieldPath, ...] = ()
    threshold: Threshold | None = None
    throttle_seconds: int | None = None
    resolve_after_seconds: int | None = None  # resolve_after: see docs/rules.md
    tests: tuple[RuleTest, ...] = field(default=(), repr=False)
    source: str = ""  # the file the rule came from
    lists_used: tuple[str, ...] = ()  # the named lists its detection refers to
    # (selection, field path, operator) of each case-sensitive text test on a field people type (rules check)
    case_sensitive_tests: tuple[tuple[str, str, str], ...] = ()

    def applies_to(self, event_type: str) -> bool:
        return any(
            pattern == "*" or pattern == event_type or (pattern.endswith(".*") and event_type.startswith(pattern[:-1]))
            for pattern in self.event_types
        )

    def matches(self, event_type: str, data: Mapping[str, Any]) -> bool:
        """Whether one event satisfies the rule's type filter and condition (ignores thresholds)."""
        return self.applies_to(event_type) and self.matcher(data)

    def severity_for(self, data: Mapping[str, Any]) -> Severity:
        for matcher, severity in self.severity_when:
            if matcher(data):
                return severity
        return self.severity


class RuleSet:
    """Enabled rules indexed by event type: an exact dict plus prefix rules, memoised per type.

    Treat as immutable: reload builds a new one. The memo only caches the (pure) lookup.
    """

    MEMO_LIMIT = 4096

    def __init__(self, rules: Iterable[Rule], lists: Iterable[NamedList] = ()) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)
        self.lists: tuple[NamedList, ...] = tuple(lists)  # the named lists loaded with the rules (for reports)
        self._exact: dict[str, list[Rule]] = {}
        self._prefixed: list[tuple[str, Rule]] = []
        for rule in self.rules:
            if not rule.enabled:
                continue
            for pattern in rule.event_types:
                if pattern == "*":
                    self._prefixed.append(("", rule))
                elif pattern.endswith(".*"):
                    self._prefixed.append((pattern[:-1], rule))
                else:
                    self._exact.setdefault(pattern, []).append(rule)
        self._memo: dict[str, tuple[Rule, ...]] = {}

    def __len__(self) -> int:
        return len(self.rules)

    def __iter__(self) -> Any:
        return iter(self.rules)

    def rules_for(self, event_type: str) -> tuple[Rule, ...]:
        found = self._memo.get(event_type)
        if found is not None:
            return found
        candidates = list(self._exact.get(event_type, ()))
        candidates += [r for prefix, r in self._prefixed if event_type.startswith(prefix) and r not in candidates]
        order = {id(r): i for i, r in enumerate(self.rules)}
        found = tuple(sorted(candidates, key=lambda r: order[id(r)]))
        if len(self._memo) < self.MEMO_LIMIT:
            self._memo[event_type] = found
        return found
