"""Loading rule files: every problem reported at once as ``file: key.path: message``; lint; templates."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from conftest import rule_by_id

from sentinel.errors import ErrorGroup, RuleError
from sentinel.model import Severity
from sentinel.rules import lint, load_rules, parse_duration
from sentinel.rules.templates import Template

GOOD = """
id = "good-rule"
title = "Lock of {actor.alternateId}"
severity = "medium"
event_types = ["user.account.lock"]
"""

BROKEN = {
    "unknown-field.toml": (
        'id = "a"\ntitle = "t"\nseverity = "low"\nevent_types = ["x.y"]\nseverity_level = "low"\n',
        ["severity_level: unknown field (known: id, title, summary, description, author, status, severity, "
         "tags, references, falsepositives, runbook, enabled, event_types, channels, detection, condition, "
         "severity_when, group_by, threshold, throttle, first_seen, sequence, resolve_after, tests)"],
    ),
    "unknown-operator.toml": (
        'id = "b"\ntitle = "t"\nseverity = "low"\nevent_types = ["x.y"]\ncondition = "sel"\n'
        '[detection.sel]\n"outcome.result" = { contians = "FAIL" }\n',
        ["detection.sel.\"outcome.result\".contians: unknown operator 'contians' (known: equals, in_list, contains, "
         "startswith, endswith, glob, regex, cidr, gt, gte, lt, lte, exists, equals_field, hour_between, "
         "weekday_in; modifiers: ignore_case, all, not, case_sensitive, timezone)"],
    ),
    "bad-regex.toml": (
        'id = "c"\ntitle = "t"\nseverity = "low"\nevent_types = ["x.y"]\ncondition = "sel"\n'
        '[detection.sel]\n"actor.alternateId" = { regex = "(?<=a)b" }\n',
        ["detection.sel.\"actor.alternateId\".regex: bad regex '(?<=a)b': invalid perl operator: (?<="],
    ),
    "bad-severity.toml": (
        'id = "d"\ntitle = "t"\nseverity = "urgent"\nevent_types = ["x.y"]\n',
        ["severity: unknown severity 'urgent' (expected one of: info, low, medium, high, critical)"],
    ),
    "bad-window.toml": (
        'id = "e"\ntitle = "t"\nseverity = "low"\nevent_types = ["x.y"]\n'
        '[threshold]\ncount = 0\nwindow = "8d"\n[throttle]\nperiod = "soon"\n',
        [
            "threshold.count: must be a whole number from 1 to 100000",
            "threshold.window: must be between 1 second and 7 days, got '8d'",
            "throttle.period: not a duration: 'soon' (use seconds or text like '10m', '1h', '1d')",
        ],
    ),
    "bad-condition.toml": (
        'id = "f"\ntitle = "t {actor.alternateId"\nseverity = "low"\nevent_types = ["x.y"]\n'
        'condition = "sel and not filter"\n[detection.sel]\neventType = "x.y"\n',
        [
            "title: unclosed '{' in template 't {actor.alternateId'",
            "condition: condition names unknown selection 'filter'",
        ],
    ),
    "missing.toml": (
        'title = "t"\nevent_types = []\n',
        ["id: is required", "severity: unknown severity None (expected one of: info, low, medium, high, critical)",
         "event_types: must name at least one event type"],
    ),
    "bad-tests.toml": (
        'id = "g"\ntitle = "t"\nseverity = "low"\nevent_types = ["x.y"]\n'
        '[[tests]]\nexpect = "yes"\nevent = {}\n[[tests]]\nexpect = true\n'
        '[[tests]]\nexpect = true\nevent_file = "nope.json"\n',
        [
            "tests[0].expect: must be true, false or a number of alerts",
            "tests[1]: needs exactly one of event, events or event_file",
            "tests[2].event_file: cannot read nope.json: [Errno 2] No such file or directory: '{dir}/nope.json'",
        ],
    ),
    "not-toml.toml": ("id = \n", ["invalid TOML: Invalid value (at line 1, column 6)"]),
    "too-deep.toml": ("x = " + "[" * 5000 + "]" * 5000 + "\n", ["invalid TOML: nested too deeply"]),
}


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_every_problem_in_every_file_is_reported_at_once(tmp_path):
    for name, (text, _) in BROKEN.items():
        write(tmp_path, name, text)
    write(tmp_path, "good.toml", GOOD)
    with pytest.raises(ErrorGroup) as caught:
        load_rules([tmp_path])
    got = sorted(str(e) for e in caught.value.errors)
    expected = sorted(
        f"{tmp_path / name}: {message.replace('{dir}', str(tmp_path))}"
        for name, (_, messages) in BROKEN.items()
        for message in messages
    )
    assert got == expected
    assert all(isinstance(e, RuleError) for e in caught.value.errors)


def test_duplicate_ids_name_both_files(tmp_path):
    first = write(tmp_path, "a.toml", GOOD)
    second = write(tmp_path, "b.toml", GOOD)
    with pytest.raises(ErrorGroup) as caught:
        load_rules([tmp_path])
    assert [str(e) for e in caught.value.errors] == [f"{second}: id: duplicate rule id 'good-rule' (also in {first})"]


def test_missing_path_is_an_error(tmp_path):
    with pytest.raises(ErrorGroup, match="no such file or directory"):
        load_rules([tmp_path / "absent"])


def test_several_rules_per_file_have_indexed_locations(tmp_path):
    path = write(
        tmp_path,
        "family.toml",
        """
        [[rules]]
        id = "one"
        title = "t"
        severity = "low"
        event_types = ["user.account.lock"]
        [[rules]]
        id = "two"
        title = "t"
        severity = "loud"
        event_types = ["user.account.lock"]
        """,
    )
    with pytest.raises(ErrorGroup) as caught:
        load_rules([path])
    assert [str(e) for e in caught.value.errors] == [
        f"{path}: rules[1].severity: unknown severity 'loud' (expected one of: info, low, medium, high, critical)"
    ]


def test_a_loaded_rule_is_frozen_and_complete(tmp_path):
    path = write(
        tmp_path,
        "r.toml",
        """
        id = "grant"
        title = "Grant to {target[type=User].alternateId}"
        severity = "high"
        event_types = ["user.account.privilege.*"]
        channels = ["pager"]
        tags = ["attack.t1098.003"]
        condition = "granted"
        [detection.granted]
        "outcome.result" = "SUCCESS"
        [detection.super]
        "debugContext.debugData.privilegeGranted" = { contains = "super administrator", ignore_case = true }
        [[severity_when]]
        condition = "super"
        severity = "critical"
        """,
    )
    rule = rule_by_id(load_rules([path]), "grant")
    assert rule is not None
    assert rule.channels == ("pager",)
    assert rule.matches("user.account.privilege.grant", {"outcome": {"result": "SUCCESS"}})
    assert not rule.matches("user.account.lock", {"outcome": {"result": "SUCCESS"}})
    data = {"debugContext": {"debugData": {"privilegeGranted": "Super Administrator"}}}
    assert rule.severity_for(data) is Severity.CRITICAL
    assert rule.severity_for({}) is Severity.HIGH
    with pytest.raises(AttributeError):
        rule.id = "other"  # type: ignore[misc]


def test_selections_without_a_condition_are_an_error(tmp_path):
    path = write(tmp_path, "r.toml", GOOD + '[detection.sel]\neventType = "x"\n')
    with pytest.raises(ErrorGroup, match="condition: is required when the rule has selections"):
        load_rules([path])


def test_lint_warns_about_types_a_hook_cannot_deliver(tmp_path):
    path = write(
        tmp_path,
        "r.toml",
        GOOD.replace('["user.account.lock"]', '["user.account.lock", "security.threat.detected", "zone.*"]'),
    )
    warnings = lint(load_rules([path]))
    assert warnings == [
        f"{path}: good-rule: event_types[1]: 'security.threat.detected' cannot be delivered by an Okta event hook "
        "(not event-hook-eligible; needs System Log polling)",
        f"{path}: good-rule: event_types[2]: no event type under 'zone.*' can be delivered by an Okta event hook",
        f"{path}: good-rule: tests: rule has no inline tests",
    ]


@pytest.mark.parametrize(("text", "seconds"), [(90, 90), ("30s", 30), ("10m", 600), ("1h30m", 5400), ("1d", 86400)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", [0, -5, "10x", "", True, "8d", 3.5])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_templates_are_safe():
    template = Template.parse("{actor.alternateId} from {client.ipAddress} {{literal}} {__class__}")
    rendered = template.render({"actor": {"alternateId": "x\ny"}})
    assert rendered == "x y from ? {literal} ?"
    assert Template.parse("{a}").render({"a": "z" * 1000}) == "z" * 200
    assert Template.parse("{target.type}").render({"target": [{"type": "A"}, {"type": "B"}]}) == "A, B"
    with pytest.raises(ValueError, match="unmatched"):
        Template.parse("a } b")
