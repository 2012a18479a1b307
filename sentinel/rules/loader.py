"""TOML rule files → frozen ``Rule`` objects, collecting every problem as ``file: key.path: message``."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sentinel.errors import ErrorGroup, RuleError
from sentinel.model import Severity
from sentinel.rules.case import case_sensitive_tests
from sentinel.rules.condition_parser import parse_condition
from sentinel.rules.conditions import Matcher, compile_selection
from sentinel.rules.durations import parse_duration
from sentinel.rules.field_paths import ConditionError, FieldPath
from sentinel.rules.first_seen import parse_first_seen
from sentinel.rules.inline_tests import parse_tests
from sentinel.rules.lists import NamedList, list_text_files, names_used, read_text_list, read_toml_lists
from sentinel.rules.model import Rule, RuleSet, Sequence
from sentinel.rules.prefilter import required_text, without_implied_event_type
from sentinel.rules.problems import Problems as _Problems
from sentinel.rules.problems import severity as _severity
from sentinel.rules.sequence_spec import parse_sequence
from sentinel.rules.templates import Template
from sentinel.rules.threshold_spec import THRESHOLD_KEYS, THROTTLE_KEYS, parse_threshold, parse_throttle

__all__ = ["RULE_KEYS", "THRESHOLD_KEYS", "THROTTLE_KEYS", "load_rules", "rule_files"]

RULE_KEYS: Mapping[str, str] = {
    "id": "stable identifier, unique across all loaded files",
    "title": "alert title template",
    "summary": "alert summary template",
    "description": "what the rule detects and why it matters",
    "author": "who wrote the rule",
    "status": "maturity: stable, test, experimental, deprecated or unsupported",
    "severity": "info, low, medium, high or critical",
    "tags": "MITRE ATT&CK ids and other labels",
    "references": "links (http or https URLs) to documentation",
    "falsepositives": "known benign causes of a match",
    "runbook": "first response step",
    "enabled": "false ships the rule loaded and tested but never evaluated",
    "event_types": "event types (exact, prefix.*, or *) the rule reads",
    "channels": "names of delivery channels (default: route by severity)",
    "detection": "named selections",
    "condition": "boolean expression over the selections",
    "severity_when": "severity by condition, first match wins",
    "group_by": "fields that key thresholds and throttling",
    "threshold": "count / distinct count in a window, or named measures and a when over them",
    "throttle": "one alert per group per period",
    "first_seen": "alert on a value tuple new for the group within a lookback",
    "sequence": "ordered steps joined on group_by (instead of condition / threshold)",
    "resolve_after": "quiet time (wall clock since the group's last alert or fold) after which PagerDuty "
                     "gets a resolve",
    "tests": "inline test cases",
}
SEVERITY_WHEN_KEYS = ("condition", "severity")
STATUSES = ("stable", "test", "experimental", "deprecated", "unsupported")  # Sigma's values

_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")


def rule_files(paths: Iterable[str | Path]) -> tuple[list[Path], list[RuleError]]:
    files: list[Path] = []
    errors: list[RuleError] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*.toml") if p.is_file()))
        elif path.is_file():
            if path.suffix != ".txt":  # a .txt named directly is a list (lists.list_text_files)
                files.append(path)
        else:
            errors.append(RuleError("no such file or directory", str(path)))
    return files, errors


def load_rules(paths: Iterable[str | Path]) -> RuleSet:
    """Load every rule under ``paths`` (files or folders of ``*.toml``) and the named lists next to them
    (``lists/*.txt``, TOML files holding ``[lists]``); raise ``ErrorGroup`` listing all problems."""
    paths = list(paths)
    files, errors = rule_files(paths)
    documents: list[tuple[Path, _Problems, dict[str, Any]]] = []
    lists: dict[str, NamedList] = {}

    def add_list(named: NamedList, problems: _Problems, key: str) -> None:
        if named.name in lists:
            problems.add(key, f"duplicate list name {named.name!r} (also in {lists[named.name].source})")
        else:
            lists[named.name] = named

    for file in list_text_files(paths):
        problems = _Problems(str(file))
        named = read_text_list(file, problems)
        if named is not None:
            add_list(named, problems, "")
        errors.extend(problems.errors)
    for file in files:
        problems = _Problems(str(file))
        document = _read_document(file, problems)
        if document is not None and "lists" in document:
            for key in (k for k in document if k != "lists"):
                problems.add(key, "a file with [lists] holds only lists (put rules in their own files)")
            for named in read_toml_lists(document["lists"], file, problems):
                add_list(named, problems, f"lists.{named.name}")
        elif document is not None:
            documents.append((file, problems, document))
        errors.extend(problems.errors)
    rules: list[Rule] = []
    seen: dict[str, str] = {}
    for file, problems, document in documents:
        for rule, id_key in _load_document(document, file, problems, lists):
            if rule.id in seen:
                problems.add(id_key, f"duplicate rule id {rule.id!r} (also in {seen[rule.id]})")
                continue
            seen[rule.id] = str(file)
            rules.append(rule)
        errors.extend(problems.errors)
    if errors:
        raise ErrorGroup(errors)
    return RuleSet(rules, tuple(lists.values()))


def _read_document(file: Path, problems: _Problems) -> dict[str, Any] | None:
    try:
        return tomllib.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        problems.add("", f"cannot read: {error}")
    except tomllib.TOMLDecodeError as error:
        problems.add("", f"invalid TOML: {error}")
    except RecursionError:  # tomllib recurses once per nesting level
        problems.add("", "invalid TOML: nested too deeply")
    return None


def _load_document(document: Mapping[str, Any], file: Path, problems: _Problems,
                   lists: Mapping[str, NamedList]) -> list[tuple[Rule, str]]:
    if "rules" in document:
        tables = document["rules"]
        if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
            problems.add("rules", "must be an array of tables ([[rules]])")
            return []
        extra = [k for k in document if k != "rules"]
        for key in extra:
            problems.add(key, "unknown field next to [[rules]]")
        entries = [(t, f"rules[{i}].") for i, t in enumerate(tables)]
    else:
        entries = [(document, "")]
    loaded = []
    for table, prefix in entries:
        rule = _build_rule(table, prefix, file, problems, lists)
        if rule is not None:
            loaded.append((rule, prefix + "id"))
    return loaded


def _text(table: Mapping[str, Any], key: str, where: str, problems: _Problems, *, required: bool = False) -> str:
    value = table.get(key)
    if value is None:
        if required:
            problems.add(where + key, "is required")
        return ""
    if not isinstance(value, str):
        problems.add(where + key, "must be text")
        return ""
    return value


def _texts(table: Mapping[str, Any], key: str, where: str, problems: _Problems) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.add(where + key, "must be a list of text")
        return ()
    return tuple(value)


def _build_rule(table: Mapping[str, Any], where: str, file: Path, problems: _Problems,
                lists: Mapping[str, NamedList]) -> Rule | None:
    before = len(problems.errors)
    for key in table:
        if key not in RULE_KEYS:
            problems.add(where + key, f"unknown field (known: {', '.join(RULE_KEYS)})")
    rule_id = _text(table, "id", where, problems, required=True)
    if rule_id and not _ID.fullmatch(rule_id):
        problems.add(where + "id", "must be lower-case letters, digits, '.', '_' or '-' (at most 128)")
    templates = {}
    for key in ("title", "summary"):
        text = _text(table, key, where, problems, required=key == "title")
        try:
            templates[key] = Template.parse(text or (rule_id if key == "title" else ""))
        except ConditionError as error:
            problems.add(where + key, error.message)
    severity = _severity(table.get("severity"), where + "severity", problems)
    enabled = table.get("enabled", True)
    if not isinstance(enabled, bool):
        problems.add(where + "enabled", "must be true or false")
    event_types = _texts(table, "event_types", where, problems)
    if "event_types" in table and not event_types:
        problems.add(where + "event_types", "must name at least one event type")
    elif "event_types" not in table:
        problems.add(where + "event_types", "is required (exact names, prefix.* or *)")
    for position, pattern in enumerate(event_types):
        if not re.fullmatch(r"\*|[A-Za-z0-9_.-]+(\.\*)?", pattern) or "*" in pattern.rstrip("*").rstrip("."):
            problems.add(f"{where}event_types[{position}]", f"bad event type {pattern!r}")
    channels = None
    if "channels" in table:
        channels = _texts(table, "channels", where, problems)
    # Every text field is checked before the early return below, so all problems show in one run.
    description, author = _text(table, "description", where, problems), _text(table, "author", where, problems)
    runbook = _text(table, "runbook", where, problems)
    tags, falsepositives = _texts(table, "tags", where, problems), _texts(table, "falsepositives", where, problems)
    status = _text(table, "status", where, problems)
    if status and status not in STATUSES:
        problems.add(where + "status", f"unknown status {status!r} (known: {', '.join(STATUSES)})")
    references = _texts(table, "references", where, problems)
    for position, reference in enumerate(references):
        if not re.fullmatch(r"https?://[^\s]+", reference):
            problems.add(f"{where}references[{position}]", f"must be an http or https URL, got {reference[:80]!r}")
    matcher, selections, declared = _detection(table, where, problems, lists, event_types)
    severity_when = _severity_when(table, where, selections, declared, problems)
    group_by = _group_by(table, where, problems)
    threshold = parse_threshold(table.get("threshold"), where + "threshold", problems, selections, declared)
    throttle = parse_throttle(table.get("throttle"), where + "throttle", problems)
    first_seen = parse_first_seen(table.get("first_seen"), where + "first_seen", problems)
    for other in ("threshold", "throttle", "sequence"):
        if "first_seen" in table and other in table:
            problems.add(where + "first_seen", f"cannot be combined with {other} (a first-seen rule alerts once "
                                               "per new value)")
    sequence = None
    if "sequence" in table:
        for other in ("condition", "threshold"):
            if other in table:
                problems.add(where + other, "a sequence rule has no " + other + " (its steps say what matches)")
        sequence = parse_sequence(table["sequence"], where + "sequence", selections, declared, group_by, problems)
        matcher = _any_step(sequence) if sequence is not None else None
    resolve_after = None
    if "resolve_after" in table:
        try:
            resolve_after = parse_duration(table["resolve_after"])
        except ValueError as error:
            problems.add(where + "resolve_after", str(error))
    tests = parse_tests(table.get("tests", []), where + "tests", file, event_types, rule_id, problems)
    if len(problems.errors) > before or severity is None or matcher is None:
        return None
    return Rule(
        id=rule_id,
        title=templates["title"],
        summary=templates["summary"],
        description=description,
        author=author,
        status=status,
        severity=severity,
        event_types=event_types,
        matcher=matcher,
        severity_when=severity_when,
        tags=tags,
        references=references,
        falsepositives=falsepositives,
        runbook=runbook,
        enabled=bool(enabled),
        channels=channels,
        group_by=group_by,
        threshold=threshold,
        throttle_seconds=throttle,
        first_seen=first_seen,
        sequence=sequence,
        resolve_after_seconds=resolve_after,
        tests=tests,
        source=str(file),
        lists_used=tuple(sorted(names_used(table.get("detection")))),
        case_sensitive_tests=tuple(case_sensitive_tests(table.get("detection"))),
        prefilter=required_text(event_types, table.get("detection"), table.get("condition")),
    )


def _match_all(data: Mapping[str, Any]) -> bool:
    return True


def _any_step(sequence: Sequence) -> Matcher:
    """A sequence rule reads an event if any of its steps matches it."""
    matchers = tuple(step.matcher for step in sequence.steps)
    return lambda data: any(m(data) for m in matchers)


def _detection(table: Mapping[str, Any], where: str, problems: _Problems, lists: Mapping[str, NamedList],
               event_types: tuple[str, ...]) -> tuple[Matcher | None, dict[str, Matcher], list[str]]:
    """The rule's matcher, its compiled selections, and the names of all its selections (a selection that
    failed to compile is still declared: a condition naming it is checked, and not called unknown)."""
    detection = table.get("detection", {})
    selections: dict[str, Matcher] = {}
    if not isinstance(detection, dict):
        problems.add(where + "detection", "must be a table of named selections")
        return None, selections, []
    declared: list[str] = []
    for name, spec in detection.items():
        key = f"{where}detection.{name}"
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            problems.add(key, "selection names are letters, digits and '_'")
            continue
        declared.append(name)
        try:
            selections[name] = compile_selection(spec, lists)
            # What runs: without an eventType test the event-type index already guarantees (checked above).
            reduced = without_implied_event_type(spec, event_types)
            if reduced is not spec:
                selections[name] = _match_all if reduced is None else compile_selection(reduced, lists)
        except ConditionError as error:
            for each in error.under(key).errors:
                problems.add(each.key, each.message)
    condition = table.get("condition")
    if condition is None:
        # No condition: every event of the rule's types matches; selections may still drive severity_when
        # or a measure's where.
        measured = isinstance(table.get("threshold"), dict) and "measures" in table["threshold"]
        if detection and "severity_when" not in table and "sequence" not in table and not measured:
            problems.add(where + "condition", "is required when the rule has selections")
            return None, selections, declared
        return _match_all, selections, declared
    matcher = _compile_condition(condition, where + "condition", selections, declared, problems)
    return matcher if len(selections) == len(detection) else None, selections, declared


def _compile_condition(condition: Any, key: str, selections: Mapping[str, Matcher], declared: list[str],
                       problems: _Problems) -> Matcher | None:
    """Check ``condition`` against every declared selection; compile it only if all of them compiled."""
    try:
        node = parse_condition(condition, declared)
    except ConditionError as error:
        problems.add(key, error.message)
        return None
    return node.compile(selections) if len(selections) == len(declared) else None


def _severity_when(
    table: Mapping[str, Any], where: str, selections: Mapping[str, Matcher], declared: list[str],
    problems: _Problems,
) -> tuple[tuple[Matcher, Severity], ...]:
    entries = table.get("severity_when", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        problems.add(where + "severity_when", "must be an array of tables ([[severity_when]])")
        return ()
    result = []
    for position, entry in enumerate(entries):
        key = f"{where}severity_when[{position}]"
        for extra in (k for k in entry if k not in SEVERITY_WHEN_KEYS):
            problems.add(f"{key}.{extra}", "unknown field (known: condition, severity)")
        severity = _severity(entry.get("severity"), key + ".severity", problems)
        matcher = _compile_condition(entry.get("condition", ""), key + ".condition", selections, declared,
                                     problems)
        if matcher is not None and severity is not None:
            result.append((matcher, severity))
    return tuple(result)


def _group_by(table: Mapping[str, Any], where: str, problems: _Problems) -> tuple[FieldPath, ...]:
    paths = []
    for position, text in enumerate(_texts(table, "group_by", where, problems)):
        try:
            paths.append(FieldPath.parse(text))
        except ConditionError as error:
            problems.add(f"{where}group_by[{position}]", error.message)
    return tuple(paths)
