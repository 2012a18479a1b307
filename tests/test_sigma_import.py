"""``sentinel rules import-sigma``: the 24 Sigma Okta rules import, load, pass ``rules check``, and match
exactly the events pySigma's own SQLite backend matches (its generated SQL run over the same events flattened
into one table, the Zircolite way); Sigma correlations become thresholds; what cannot be expressed is a
per-rule error naming the file.

The SQLite side: one row per event (one per element when the event has an array of objects, such as
``target``: Sigma's "any element" reading), one TEXT column per dotted field path with ``COLLATE NOCASE``
(Zircolite's table: Sigma strings ignore case), JSON booleans and numbers as their JSON text, ``REGEXP`` as
Python's case-sensitive ``re.search`` (Sigma's ``re``). Event types are not varied in case: Okta writes them in
lower case and the engine's event-type index compares them exactly (docs/rules.md).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sigma.backends.sqlite.sqlite import sqliteBackend
from sigma.collection import SigmaCollection
from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
from sigma.processing.transformations import ValueListPlaceholderTransformation
from sigma.rule import SigmaDetection, SigmaDetectionItem, SigmaRule
from sigma.types import SigmaRegularExpression, SigmaString, SpecialChars

from sentinel.cli import main
from sentinel.rules import RuleSet, load_rules
from sentinel.rules.engine import EngineState, evaluate
from sentinel.rules.testing import event_from_dict

DATA = Path(__file__).parent / "data"
SIGMA = DATA / "sigma-okta"
SAMPLES = DATA / "okta-samples"
SHIPPED = Path(__file__).resolve().parent.parent / "rules" / "sigma"
TRUSTED = ["trusted.example"]  # the values of %legtimate_identifiers% on both sides


def run_import(*args: str) -> Any:
    return CliRunner().invoke(main, ["rules", "import-sigma", *args])


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> RuleSet:
    out = tmp_path_factory.mktemp("sigma")
    result = run_import(str(SIGMA), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "24 rules written" in result.output
    (out / "lists" / "legtimate_identifiers.txt").write_text("\n".join(TRUSTED) + "\n")
    return load_rules([out])


def test_all_24_import_and_pass_rules_check(imported, tmp_path):
    assert len(imported.rules) == 24
    check = CliRunner().invoke(main, ["rules", "check", str(Path(imported.rules[0].source).parent)])
    assert check.exit_code == 0, check.output
    tests = CliRunner().invoke(main, ["rules", "test", str(Path(imported.rules[0].source).parent)])
    assert tests.exit_code == 0 and " 0 failed" in tests.output, tests.output


def test_the_shipped_folder_is_what_the_importer_writes(tmp_path):
    """rules/sigma is the importer's output (with the --disable choices of its README), not hand-edited."""
    disabled = [line.split("|")[1].strip() for line in (SHIPPED / "README.md").read_text().splitlines()
                if line.startswith("| okta_") and line.split("|")[2].strip() == "off"]
    assert len(disabled) == 14
    args = [str(SIGMA), "--out", str(tmp_path)] + [a for name in disabled for a in ("--disable", name)]
    assert run_import(*args).exit_code == 0
    for written in sorted(tmp_path.glob("*.toml")):
        assert (SHIPPED / written.name).read_text() == written.read_text(), written.name
    assert len(list(SHIPPED.glob("*.toml"))) == 24


def test_disable_writes_enabled_false_and_refuses_an_unknown_name(tmp_path):
    source = str(SIGMA / "okta_user_created.yml")
    assert run_import(source, "--out", str(tmp_path), "--disable", "okta_user_created").exit_code == 0
    assert load_rules([tmp_path]).rules[0].enabled is False
    result = run_import(source, "--out", str(tmp_path / "x"), "--disable", "okta_user_craeted")
    assert result.exit_code == 1 and "okta_user_craeted" in result.output
    assert not (tmp_path / "x").exists()


def test_metadata_is_carried_over(imported):
    rule = next(r for r in imported if r.id == "91b76b84-8589-47aa-9605-c837583b82a9")
    assert rule.title.text == "Potential Okta Password in AlternateID Field"
    assert rule.severity.label == "high"
    assert rule.author == "kelnage"
    assert rule.status == "test"
    assert "attack.t1552" in rule.tags
    assert rule.references[0] == "https://developer.okta.com/docs/reference/api/system-log/"
    assert rule.falsepositives == ("Unlikely",)
    assert rule.event_types == ("*",)  # legacyEventType only: one of the five rules reading every type
    assert sum(r.event_types == ("*",) for r in imported) == 5


# --- the generated event set -------------------------------------------------------------------------------


def _texts(value: Any) -> list[str]:
    """A matching text for one Sigma value, then near misses and case variants of it."""
    if isinstance(value, SigmaRegularExpression):
        return ["0oa1b2c3", "alice@example.com", "Alice@Example.COM", "hunter2Password", "0OA1b2", "a@b.c"]
    if not isinstance(value, SigmaString):
        return [str(value)]
    parts = [p for p in value.s]
    if any(not isinstance(p, str | SpecialChars) for p in parts):  # a placeholder
        return [f"x{TRUSTED[0]}x", "system@okta.com", "alice@other.example"]
    plain = "".join(p if isinstance(p, str) else "" for p in parts)
    wrapped = "".join(p if isinstance(p, str) else "zz" for p in parts)
    variants = [wrapped, plain, plain[:-1], plain[1:], plain + "q", "q" + plain,
                wrapped.upper(), wrapped.lower(), wrapped.swapcase()]
    return list(dict.fromkeys(variants))


def _put(event: dict[str, Any], path: str, value: Any) -> None:
    keys = path.split(".")
    node = event
    for position, key in enumerate(keys[:-1]):
        node = node.setdefault("target", [{}])[0] if position == 0 and key == "target" else node.setdefault(key, {})
    node[keys[-1]] = value


def _items(detection: SigmaDetection) -> list[list[SigmaDetectionItem]]:
    """The alternatives of a selection, each a list of items that must all hold."""
    if all(isinstance(i, SigmaDetectionItem) for i in detection.detection_items):
        return [list(detection.detection_items)]  # type: ignore[arg-type]
    return [list(sub.detection_items) for sub in detection.detection_items]  # type: ignore[union-attr,arg-type]


def generated_events() -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    rules = [r for r in SigmaCollection.load_ruleset([SIGMA]).rules if isinstance(r, SigmaRule)]
    for rule in rules:
        selections = {name: _items(d) for name, d in rule.detection.detections.items()}
        names = list(selections)
        for size in range(len(names) + 1):
            for chosen in itertools.combinations(names, size):
                for alternative in itertools.product(*(selections[n] for n in chosen)):
                    items = [i for group in alternative for i in group]
                    base: dict[str, Any] = {}
                    for item in items:
                        _put(base, str(item.field), _texts(item.value[0])[0])
                    events.append(base)
                    for item in items:  # each item varied alone: other values, near misses, case variants
                        for value in item.value:
                            for text in _texts(value):
                                if item.field == "eventType" and text.lower() != text:
                                    continue  # see the module docstring
                                event = copy.deepcopy(base)
                                _put(event, str(item.field), text)
                                events.append(event)
        # the same detection under a neighbour event type, and a boolean where Sigma says 'true'
        events.append({"eventType": "user.session.end", "securityContext": {"isProxy": True},
                       "debugContext": {"debugData": {"requestUri": "/admin/x"}}})
        events.append({"eventType": "user.session.start", "securityContext": {"isProxy": False}})
    for sample in sorted(SAMPLES.glob("*.json")):
        data = json.loads(sample.read_text())
        events.extend(data["data"]["events"] if "data" in data else [data])
    out = []
    for number, event in enumerate(events):
        event = copy.deepcopy(event)
        event.setdefault("eventType", "user.session.start")
        event["uuid"] = f"gen-{number}"
        event["published"] = "2026-01-01T00:00:00Z"
        out.append(event)
    return out


def _rows(value: Any, prefix: str = "") -> list[dict[str, str]]:
    """Flatten one JSON value into rows of {dotted path: text}; an array gives one row per element."""
    if isinstance(value, dict):
        rows: list[dict[str, str]] = [{}]
        for key, child in value.items():
            child_rows = _rows(child, f"{prefix}{key}.")
            rows = [{**r, **c} for r in rows for c in child_rows]
        return rows
    if isinstance(value, list):
        return [r for element in value for r in _rows(element, prefix)] or [{}]
    if value is None:
        return [{}]
    text = json.dumps(value) if isinstance(value, bool | int | float) else str(value)
    return [{prefix[:-1]: text}]


def sqlite_matches(events: list[dict[str, Any]]) -> set[tuple[str, str]]:
    pipeline = ProcessingPipeline(items=[ProcessingItem(ValueListPlaceholderTransformation())],
                                  vars={"legtimate_identifiers": TRUSTED})
    backend = sqliteBackend(processing_pipeline=pipeline)
    collection = SigmaCollection.load_ruleset([SIGMA])
    rules = [r for r in collection.rules if isinstance(r, SigmaRule)]
    rows = [(e["uuid"], row) for e in events for row in _rows(e)]
    columns = sorted({c for _, row in rows for c in row} | {"uuid"} | {
        str(i.field) for r in rules for d in r.detection.detections.values()
        for group in _items(d) for i in group})
    db = sqlite3.connect(":memory:")
    db.create_function("regexp", 2, lambda pattern, text: text is not None and re.search(pattern, text) is not None)
    db.execute("CREATE TABLE logs (" + ", ".join(f'"{c}" TEXT COLLATE NOCASE' for c in columns) + ")")
    for uuid, row in rows:
        row = {**row, "uuid": uuid}
        db.execute(f"INSERT INTO logs ({', '.join(repr(c) for c in row)}) VALUES ({', '.join('?' * len(row))})",
                   list(row.values()))
    matched: set[tuple[str, str]] = set()
    for rule in rules:
        for query in backend.convert_rule(rule):
            sql = query.replace("SELECT * FROM logs", "SELECT DISTINCT uuid FROM logs", 1)
            matched |= {(str(rule.id), uuid) for (uuid,) in db.execute(sql)}
    return matched


def engine_matches(ruleset: RuleSet, events: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """What the engine raises, through ``evaluate`` (its event-type index and the prefilter of the rules on
    every type), every rule switched on."""
    enabled = RuleSet([dataclasses.replace(rule, enabled=True) for rule in ruleset.rules], ruleset.lists)
    state = EngineState()
    found: set[tuple[str, str]] = set()
    for data in events:
        event = event_from_dict(data)
        alerts, state = evaluate(enabled, event, state, event.published)
        found |= {(alert.rule_id, uuid) for alert in alerts for uuid in alert.event_uuids}
    return found


def test_imported_rules_match_what_pysigma_sqlite_matches(imported):
    events = generated_events()
    expected = sqlite_matches(events)
    got = engine_matches(imported, events)
    assert got == {(rule.id, e["uuid"]) for e in events for rule in imported if rule.matches(e["eventType"], e)}
    assert got == expected, {"only sentinel": sorted(got - expected)[:10], "only sqlite": sorted(expected - got)[:10]}
    # The event set is not trivial: every rule matches some events and misses near ones.
    per_rule = {rule.id: sum(1 for r, _ in expected if r == rule.id) for rule in imported}
    assert all(count > 0 for count in per_rule.values()), per_rule
    assert all(count < len(events) / 2 for count in per_rule.values()), per_rule
    assert len(events) > 300


def test_rules_with_letters_miss_nothing_in_another_case(imported):
    """Sigma ignores case: the imported rule must too (forgetting that lost half the matches of one rule)."""
    rule = next(r for r in imported if r.id == "9058ca8b-f397-4fd1-a9fa-2b7aad4d6309")
    event = {"eventType": "user.session.start", "securityContext": {"isProxy": "TRUE"},
             "debugContext": {"debugData": {"requestUri": "/ADMIN/users"}}}
    assert rule.matches("user.session.start", event)


# --- correlations and errors ---------------------------------------------------------------------------------

BASE = """
title: Failed sign-in
id: 5a0c1c2e-0000-4000-8000-000000000001
name: failed_signin
status: test
level: low
logsource:
    product: okta
    service: okta
detection:
    selection:
        eventType: user.session.start
        outcome.result: FAILURE
    condition: selection
"""


def correlation(kind: str, condition: str, extra: str = "") -> str:
    return BASE + f"""---
title: Correlated failures
id: 5a0c1c2e-0000-4000-8000-000000000002
status: test
level: high
correlation:
    type: {kind}
    rules:
        - failed_signin
    group-by:
        - actor.alternateId
    timespan: 10m
    condition:
        {condition}
{extra}"""


def import_text(tmp_path: Path, text: str) -> tuple[Any, Path]:
    source = tmp_path / "in" / "rule.yml"
    source.parent.mkdir(exist_ok=True)
    source.write_text(text)
    out = tmp_path / "out"
    return run_import(str(source), "--out", str(out)), out


def fire(ruleset: RuleSet, events: list[dict[str, Any]]) -> list[Any]:
    state = EngineState()
    keys: dict[str, Any] = {}
    for event in events:
        parsed = event_from_dict(event)
        alerts, state = evaluate(ruleset, parsed, state, parsed.published)
        keys.update((a.key, a) for a in alerts)
    return list(keys.values())


def failures(users: list[str], ips: list[str], minutes: list[int]) -> list[dict[str, Any]]:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    return [{"uuid": f"e{n}", "eventType": "user.session.start", "outcome": {"result": "FAILURE"},
             "published": (t0 + timedelta(minutes=m)).isoformat().replace("+00:00", "Z"),
             "actor": {"alternateId": u}, "client": {"ipAddress": ip}}
            for n, (u, ip, m) in enumerate(zip(users, ips, minutes, strict=True))]


def test_event_count_becomes_a_threshold(tmp_path):
    result, out = import_text(tmp_path, correlation("event_count", "gte: 3"))
    assert result.exit_code == 0, result.output
    ruleset = load_rules([out])
    assert [r.id for r in ruleset] == ["5a0c1c2e-0000-4000-8000-000000000002"]  # the base is not generated
    rule = ruleset.rules[0]
    assert rule.threshold is not None
    assert (rule.threshold.count, rule.threshold.window_seconds) == (3, 600)
    assert len(fire(ruleset, failures(["a", "a", "a"], ["1.1.1.1"] * 3, [0, 4, 9]))) == 1
    assert fire(ruleset, failures(["a", "a", "b"], ["1.1.1.1"] * 3, [0, 4, 9])) == []  # grouped by user
    assert fire(ruleset, failures(["a", "a", "a"], ["1.1.1.1"] * 3, [0, 6, 12])) == []  # not within 10m


def test_value_count_becomes_a_distinct_threshold(tmp_path):
    result, out = import_text(tmp_path, correlation("value_count", "gt: 1\n        field: client.ipAddress"))
    assert result.exit_code == 0, result.output
    ruleset = load_rules([out])
    threshold = ruleset.rules[0].threshold
    assert threshold is not None and threshold.count == 2
    assert len(fire(ruleset, failures(["a", "a"], ["1.1.1.1", "2.2.2.2"], [0, 1]))) == 1
    assert fire(ruleset, failures(["a", "a", "a"], ["1.1.1.1"] * 3, [0, 1, 2])) == []


SUCCESS = BASE.replace("5a0c1c2e-0000-4000-8000-000000000001", "5a0c1c2e-0000-4000-8000-000000000003").replace(
    "name: failed_signin", "name: signin_ok").replace("Failed sign-in", "Sign-in").replace("FAILURE", "SUCCESS")


def temporal(kind: str, condition: str = "gte: 2") -> str:
    body = correlation(kind, condition).split("---", 1)[1]
    return BASE + "---" + SUCCESS + "---" + body.replace("- failed_signin", "- failed_signin\n        - signin_ok")


def test_temporal_ordered_becomes_a_sequence(tmp_path):
    result, out = import_text(tmp_path, temporal("temporal_ordered"))
    assert result.exit_code == 0, result.output
    ruleset = load_rules([out])
    rule = ruleset.rules[0]
    assert rule.sequence is not None
    assert [step.name for step in rule.sequence.steps] == ["s1__selection", "s2__selection"]
    ok = failures(["a"], ["1.1.1.1"], [5])
    ok[0]["outcome"]["result"] = "SUCCESS"
    ok[0]["uuid"] = "e-ok"
    fail_then_ok = failures(["a"], ["1.1.1.1"], [0]) + ok
    [alert] = fire(ruleset, fail_then_ok)
    assert alert.event_uuids == ("e0", "e-ok")
    assert fire(ruleset, failures(["a"], ["1.1.1.1"], [9]) + ok) == []  # success first: out of order
    other_user = failures(["b"], ["1.1.1.1"], [0]) + ok
    assert fire(ruleset, other_user) == []  # grouped by user
    late = [*failures(["a"], ["1.1.1.1"], [0]), {**ok[0], "published": "2026-01-01T00:11:00Z"}]
    assert fire(ruleset, late) == []  # not within the 10m timespan


def test_unordered_temporal_is_an_error_not_a_sequence(tmp_path):
    result, out = import_text(tmp_path, temporal("temporal"))
    assert result.exit_code == 1
    assert "unordered temporal correlation is not supported" in result.output
    assert not list(out.glob("*.toml"))


def test_temporal_ordered_needing_fewer_than_all_rules_is_an_error(tmp_path):
    result, _ = import_text(tmp_path, temporal("temporal_ordered", "gte: 1"))
    assert result.exit_code == 1 and "every base rule must occur" in result.output


@pytest.mark.parametrize(("text", "reason"), [
    (BASE.replace("product: okta", "product: windows"), "logsource product 'windows' is not okta"),
    (BASE.replace("condition: selection", "condition: selection | count() > 5"), "aggregations"),
    (BASE.replace("        outcome.result: FAILURE", "    keywords:\n        - evil"), "keyword"),
    (correlation("event_count", "lt: 3"), "correlation condition lt is not supported"),
    (correlation("value_count", "gte: 3"), "without field reference"),  # pySigma's own check
    (correlation("event_count", "gte: 3").replace("timespan: 10m", "timespan: 30d"), "window"),
])
def test_what_cannot_be_expressed_is_a_per_rule_error(tmp_path, text, reason):
    result, _ = import_text(tmp_path, text)
    assert result.exit_code == 1
    assert "rule.yml" in result.output and reason in result.output, result.output
