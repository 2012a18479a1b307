"""Adapts the pure rule engine to the detector: holds the rule set and its state."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sentinel.config import RulesSettings
from sentinel.model import Alert, Event
from sentinel.rules.engine import EngineState, evaluate
from sentinel.rules.engine_state import DEFAULT_ALLOWED_LATENESS_MICROS
from sentinel.rules.loader import load_rules
from sentinel.rules.model import RuleSet


class RuleEvaluator:
    def __init__(self, ruleset: RuleSet, max_groups: int, state: EngineState | None = None,
                 allowed_lateness_micros: int = DEFAULT_ALLOWED_LATENESS_MICROS) -> None:
        self.ruleset = ruleset
        self.max_groups = max_groups
        self.allowed_lateness_micros = allowed_lateness_micros
        self.state = state if state is not None else EngineState(max_groups, allowed_lateness_micros)
        self.state.allowed_lateness_micros = allowed_lateness_micros

    @classmethod
    def from_settings(cls, rules: RulesSettings) -> RuleEvaluator:
        """The rule set named by ``[rules]``, ready to evaluate: the one way the daemon, its detector
        process and ``check`` build an evaluator. Raises ErrorGroup if any rule is invalid."""
        return cls(load_rules(rules.paths), rules.max_groups,
                   allowed_lateness_micros=rules.allowed_lateness // timedelta(microseconds=1))

    @property
    def rule_count(self) -> int:
        return len(self.ruleset.rules)

    @property
    def group_count(self) -> int:
        return self.state.group_count

    @property
    def dropped_groups(self) -> int:
        return self.state.dropped_groups

    def evaluate(self, event: Event, now: datetime) -> list[Alert]:
        alerts, self.state = evaluate(self.ruleset, event, self.state, now)
        return alerts

    def take_changes(self) -> tuple[dict[str, str], set[str]]:
        return self.state.take_changes()

    def take_rule_counts(self) -> dict[tuple[str, str], int]:
        return self.state.take_rule_counts()

    def restore(self, rows: Iterable[tuple[str, str]]) -> None:
        self.state = EngineState.restore(rows, self.max_groups, self.allowed_lateness_micros)

    def successor(self, ruleset: RuleSet, max_groups: int,
                  allowed_lateness: timedelta | None = None) -> RuleEvaluator:
        """The evaluator for a reloaded rule set, carrying the live state over (groups of rules that
        are gone simply expire). ``allowed_lateness``: the reloaded ``[rules]`` value (None keeps it)."""
        if max_groups != self.max_groups:
            self.state.max_groups = max_groups
        lateness = self.allowed_lateness_micros if allowed_lateness is None \
            else allowed_lateness // timedelta(microseconds=1)
        return RuleEvaluator(ruleset, max_groups, self.state, lateness)
