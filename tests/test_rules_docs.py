"""docs/rules.md must document every operator, modifier and rule field the loader accepts."""

from __future__ import annotations

from pathlib import Path

from sentinel.rules.inline_tests import TEST_KEYS
from sentinel.rules.loader import RULE_KEYS, THRESHOLD_KEYS, THROTTLE_KEYS
from sentinel.rules.operators import MODIFIERS, OPERATORS
from sentinel.rules.sequence_spec import SEQUENCE_KEYS, STEP_KEYS

DOCS = (Path(__file__).resolve().parent.parent / "docs" / "rules.md").read_text(encoding="utf-8")


def documented(name: str) -> bool:
    return f"`{name}`" in DOCS


def test_every_operator_is_documented():
    assert [name for name in OPERATORS if not documented(name)] == []


def test_every_modifier_is_documented():
    assert [name for name in MODIFIERS if not documented(name)] == []


def test_every_rule_field_is_documented():
    keys = [*RULE_KEYS, *THRESHOLD_KEYS, *THROTTLE_KEYS, *SEQUENCE_KEYS, *STEP_KEYS, *TEST_KEYS]
    assert [key for key in keys if not documented(key)] == []


def test_operator_rows_carry_an_example():
    for name in OPERATORS:
        row = next(line for line in DOCS.splitlines() if line.startswith(f"| `{name}` |"))
        assert f"{name} =" in row, name
