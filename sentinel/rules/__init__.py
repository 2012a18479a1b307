"""The rule language's public face: load TOML rule files into a frozen, indexed ``RuleSet``; lint it."""

from __future__ import annotations

from sentinel.rules.durations import parse_duration
from sentinel.rules.lint import hook_eligible_types, lint
from sentinel.rules.loader import RULE_KEYS, load_rules
from sentinel.rules.model import Rule, RuleSet, RuleTest, Threshold

__all__ = [
    "RULE_KEYS",
    "Rule",
    "RuleSet",
    "RuleTest",
    "Threshold",
    "hook_eligible_types",
    "lint",
    "load_rules",
    "parse_duration",
]
