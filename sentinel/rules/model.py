"""Frozen rule objects and the rule set that indexes them by event type."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sentinel.model import Severity
from sentinel.rules.conditions import Matcher
from sentinel.rules.field_paths import FieldPath
from sentinel.rules.lists import NamedList
from sentinel.rules.measure_expr import Expr
from sentinel.rules.prefilter import Prefilter
from sentinel.rules.prefilter_index import PrefilterIndex
from sentinel.rules.templates import Template


@dataclass(frozen=True, slots=True)
class Measure:
    """One named figure of a threshold's window (``[threshold.measures]``), over the events the rule reads
    that ``where`` holds for: ``count`` them, count ``distinct`` values of ``fields`` (only values with
    ``per_value`` events, if set), ``sum`` a number, the most events one value has (``max_per``), the
    seconds from the first to the last (``span``), or the event time of the ``first`` or ``last``."""

    name: str
    kind: str  # one of MEASURE_KINDS
    fields: tuple[FieldPath, ...] = ()
    where: Matcher | None = field(default=None, repr=False, compare=False)
    where_text: str = ""
    per_value: tuple[int, int] | None = None

    @property
    def text(self) -> str:
        """How the alert describes it: ``distinct actor.alternateId where failed``."""
        paths = ", ".join(p.text for p in self.fields)
        what = f"{self.kind} {paths}" if paths else self.kind
        if self.per_value is not None:
            low, high = self.per_value
            what += f" with {low} to {high} events each"
        return what + (f" where {self.where_text}" if self.where_text else "")


MEASURE_KINDS = ("count", "distinct", "sum", "max_per", "span", "first", "last")


@dataclass(frozen=True, slots=True)
class Threshold:
    """Alert when ``count`` matching events (or distinct values of ``distinct``) fall in ``window_seconds``;
    with ``measures``, when ``when`` holds for the measures of a window instead."""

    count: int
    window_seconds: int
    distinct: FieldPath | None = None
    # Further fields counted with ``distinct`` as one combination (``distinct = [a, b]``): two events differ
    # when any of the fields differs, so a count of 2 means "a second value of a, or of b".
    distinct_with: tuple[FieldPath, ...] = ()
    measures: tuple[Measure, ...] = ()
    when: Expr | None = field(default=None, compare=False)
    signature: str = ""  # the measures' names and kinds (measures.signature): what a group record was kept for

    @property
    def distinct_text(self) -> str | None:
        """How the alert names what was counted: ``a``, or ``(a, b)`` for a combination."""
        if self.distinct is None:
            return None
        if not self.distinct_with:
            return self.distinct.text
        return "(" + ", ".join(p.text for p in (self.distinct, *self.distinct_with)) + ")"


@dataclass(frozen=True, slots=True)
class FirstSeen:
    """Alert when the value tuple of ``fields`` is new for the rule's group within ``lookback_seconds``."""

    fields: tuple[FieldPath, ...]
    lookback_seconds: int
    new_group: str = "learn"  # "learn": a group with no history learns silently; "alert": it alerts
    max_values: int = 1000  # per group; the least recently seen value is forgotten first


@dataclass(frozen=True, slots=True)
class SequenceStep:
    """One step of a sequence: its matcher, how many events it needs, how long after the previous step."""

    name: str  # the selection it names, or its condition text
    matcher: Matcher = field(repr=False)
    count: int = 1
    within_seconds: int | None = None
    absent: bool = False  # "and then not this step within ``within``"
    group_by: tuple[FieldPath, ...] = ()  # this step's join fields; empty: the rule's group_by


@dataclass(frozen=True, slots=True)
class Sequence:
    """Ordered steps joined on the rule's group_by (or each step's own), within an optional ``window``."""

    steps: tuple[SequenceStep, ...]
    window_seconds: int | None = None
    # Derived once (the engine reads them for every event a sequence rule reads).
    present: tuple[SequenceStep, ...] = field(init=False, repr=False, compare=False)  # all but a final absence
    absence: SequenceStep | None = field(init=False, repr=False, compare=False)
    horizon_seconds: int = field(init=False, repr=False, compare=False)  # first event to absence deadline, at most
    timing: str = field(init=False, repr=False, compare=False)  # counts, withins and window: what a search obeys

    def __post_init__(self) -> None:
        present = tuple(s for s in self.steps if not s.absent)
        absence = self.steps[-1] if self.steps and self.steps[-1].absent else None
        after = (absence.within_seconds or 0) if absence is not None else 0
        if self.window_seconds is not None:
            horizon = self.window_seconds + after
        else:
            horizon = sum(s.within_seconds or 0 for s in present) + after
        timing = ",".join(f"{s.count}/{s.within_seconds}{' absent' if s.absent else ''}" for s in self.steps) \
            + f";{self.window_seconds}"
        for name, value in (("present", present), ("absence", absence), ("horizon_seconds", horizon),
                            ("timing", timing)):
            object.__setattr__(self, name, value)


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
    first_seen: FirstSeen | None = None
    sequence: Sequence | None = None
    resolve_after_seconds: int | None = None  # resolve_after: see docs/rules.md
    tests: tuple[RuleTest, ...] = field(default=(), repr=False)
    source: str = ""  # the file the rule came from
    lists_used: tuple[str, ...] = ()  # the named lists its detection refers to
    # (selection, field path, operator) of each case-sensitive text test on a field people type (rules check)
    case_sensitive_tests: tuple[tuple[str, str, str], ...] = ()
    # a rule reading every event type: a field it requires to be one of a few texts (sentinel.rules.prefilter)
    prefilter: Prefilter | None = None

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
        self._by_id = {rule.id: rule for rule in self.rules if rule.enabled}
        # The prefilters of the enabled rules on every type, keyed by rule id, in one index (each field read
        # once per event); per event type, the rules that have none (what runs when the index admits none).
        self.prefilters = PrefilterIndex((r.id, r.prefilter) for r in self._by_id.values() if r.prefilter)
        self.has_prefilters = bool(self.prefilters)
        self._unfiltered_memo: dict[str, tuple[Rule, ...]] = {}

    def enabled_rule(self, rule_id: str) -> Rule | None:
        """The enabled rule with this id, if any (a sequence's absence deadline names its rule)."""
        return self._by_id.get(rule_id)

    def __len__(self) -> int:
        return len(self.rules)

    def __iter__(self) -> Any:
        return iter(self.rules)

    def rules_reading(self, event_type: str, data: Mapping[str, Any]) -> tuple[Rule, ...] | list[Rule]:
        """The enabled rules for ``event_type`` that may match ``data``: a rule with a prefilter only if the
        prefilter index admits the event. In the rule set's order."""
        rules = self.rules_for(event_type)
        if not self.has_prefilters or not rules:
            return rules
        admitted = self.prefilters.admitted(data)
        if not admitted:
            unfiltered = self._unfiltered_memo.get(event_type)
            if unfiltered is None:
                unfiltered = tuple(r for r in rules if r.prefilter is None)
                if len(self._unfiltered_memo) < self.MEMO_LIMIT:
                    self._unfiltered_memo[event_type] = unfiltered
            return unfiltered
        return [r for r in rules if r.prefilter is None or r.id in admitted]

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
