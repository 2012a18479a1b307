"""docs/rules.md must document every operator, modifier and rule field the loader accepts."""

from __future__ import annotations

from pathlib import Path

from sentinel.rules import load_rules
from sentinel.rules.first_seen import FIRST_SEEN_KEYS
from sentinel.rules.inline_tests import TEST_KEYS
from sentinel.rules.loader import RULE_KEYS, THRESHOLD_KEYS, THROTTLE_KEYS
from sentinel.rules.operators import MODIFIERS, OPERATORS
from sentinel.rules.sequence_spec import SEQUENCE_KEYS, STEP_KEYS
from sentinel.rules.threshold_spec import MEASURE_KEYS

DOCS = (Path(__file__).resolve().parent.parent / "docs" / "rules.md").read_text(encoding="utf-8")


def documented(name: str) -> bool:
    return f"`{name}`" in DOCS


def test_every_operator_is_documented():
    assert [name for name in OPERATORS if not documented(name)] == []


def test_every_modifier_is_documented():
    assert [name for name in MODIFIERS if not documented(name)] == []


def test_every_rule_field_is_documented():
    keys = [*RULE_KEYS, *THRESHOLD_KEYS, *MEASURE_KEYS, *THROTTLE_KEYS, *FIRST_SEEN_KEYS, *SEQUENCE_KEYS, *STEP_KEYS,
            *TEST_KEYS]
    assert [key for key in keys if not documented(key)] == []


def test_operator_rows_carry_an_example():
    for name in OPERATORS:
        row = next(line for line in DOCS.splitlines() if line.startswith(f"| `{name}` |"))
        assert f"{name} =" in row, name


def test_the_first_seen_section_covers_its_keys_and_its_example_loads(tmp_path):
    section = DOCS.split("## First seen", 1)[1].split("\n## ", 1)[0]
    assert [key for key in (*FIRST_SEEN_KEYS, "learn", "alert") if f"`{key}`" not in section and
            f'"{key}"' not in section] == []
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "example.toml").write_text(example, encoding="utf-8")
    [rule] = load_rules([tmp_path]).rules
    assert rule.first_seen is not None and rule.first_seen.lookback_seconds == 30 * 86_400
