"""Adapts the pure rule engine to the detector: holds the rule set and its state."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sentinel.config import RulesSettings
from sentinel.model import Alert, Event
from sentinel.rules.engine import EngineState, evaluate
from sentinel.rules.loader import load_rules
from sentinel.rules.model import RuleSet


class RuleEvaluator:
    def __init__(self, ruleset: RuleSet, max_groups: int, state: EngineState | None = None) -> None:
        self.ruleset = ruleset
        self.max_groups = max_groups
        self.state = state if state is not None else EngineState(max_groups)

    @classmethod
    def from_settings(cls, rules: RulesSettings) -> RuleEvaluator:
        """The rule set named by ``[rules]``, ready to evaluate: the one way the daemon, its detector
        process and ``check`` build an evaluator. Raises ErrorGroup if any rule is invalid."""
        return cls(load_rules(rules.paths), rules.max_groups)

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
        self.state = EngineState.restore(rows, self.max_groups)

    def successor(self, ruleset: RuleSet, max_groups: int) -> RuleEvaluator:
        """The evaluator for a reloaded rule set, carrying the live state over (groups of rules that
        are gone simply expire)."""
        if max_groups != self.max_groups:
            self.state.max_groups = max_groups
        return RuleEvaluator(ruleset, max_groups, self.state)
