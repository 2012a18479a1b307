"""``sentinel rules check`` reports every problem of a file in one run, each with its key path: problems
in one selection, in one field, in one list of values, and in the conditions over selections."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from test_config import run_cli

from sentinel.errors import ErrorGroup
from sentinel.rules import load_rules

THREE_PROBLEMS = """
id = "three-problems"
title = "t"
severity = "high"
event_types = ["user.session.start"]
condition = "sel and not filter"

[detection.sel]
"client.ipAddress" = { cidr = "10.0.0.0/33" }
"actor.alternateId" = { regex = "(unclosed" }
"""


def test_three_independent_errors_are_all_reported_in_one_run(tmp_path: Path) -> None:
    rule = tmp_path / "three.toml"
    rule.write_text(THREE_PROBLEMS, encoding="utf-8")
    result = run_cli("rules", "check", str(rule))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{rule}: detection.sel.\"client.ipAddress\".cidr: not a CIDR network: '10.0.0.0/33'",
        f"{rule}: detection.sel.\"actor.alternateId\".regex: bad regex '(unclosed': missing ): (unclosed",
        f"{rule}: condition: condition names unknown selection 'filter'",
    ]


def problems(tmp_path: Path, text: str) -> list[str]:
    rule = tmp_path / "rule.toml"
    rule.write_text(textwrap.dedent(text), encoding="utf-8")
    with pytest.raises(ErrorGroup) as caught:
        load_rules([rule])
    return [str(e).removeprefix(f"{rule}: ") for e in caught.value.errors]


def test_every_problem_inside_one_field_and_one_list_is_named(tmp_path: Path) -> None:
    assert problems(tmp_path, """
        id = "r"
        title = "t"
        severity = "low"
        event_types = ["x.y"]
        condition = "sel or alt"
        [detection]
        sel = { "a..b" = { contians = "x", not = "yes", regex = ["ok", "(", "["] } }
        alt = [{ "client.ipAddress" = { cidr = ["10.0.0.0/8", "nope"] } }, { exists = { exists = 1 } }]
        [[severity_when]]
        condition = "sel and other and more"
        severity = "high"
        """) == [
        "detection.sel.\"a..b\": bad field path 'a..b' at ''",
        "detection.sel.\"a..b\".contians: unknown operator 'contians' (known: equals, in_list, contains, "
        "startswith, endswith, glob, regex, cidr, gt, gte, lt, lte, exists, equals_field, hour_between, "
        "weekday_in; modifiers: ignore_case, all, not, case_sensitive, timezone)",
        "detection.sel.\"a..b\".not: not must be true or false",
        "detection.sel.\"a..b\".regex[1]: bad regex '(': missing ): (",
        "detection.sel.\"a..b\".regex[2]: bad regex '[': missing ]: [",
        "detection.alt[0].\"client.ipAddress\".cidr[1]: not a CIDR network: 'nope'",
        "detection.alt[1].exists.exists: exists must be true or false",
        "severity_when[0].condition: condition names unknown selections 'other', 'more'",
    ]


def test_a_condition_naming_a_broken_selection_is_not_called_unknown(tmp_path: Path) -> None:
    assert problems(tmp_path, """
        id = "r"
        title = "t"
        severity = "low"
        event_types = ["x.y"]
        condition = "sel"
        [detection.sel]
        "actor.alternateId" = { regex = "(" }
        """) == ["detection.sel.\"actor.alternateId\".regex: bad regex '(': missing ): ("]
