"""A rule's ``[sequence]`` table → a checked :class:`Sequence`, every problem named by its key path."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sentinel.rules.condition_parser import parse_condition
from sentinel.rules.conditions import Matcher
from sentinel.rules.durations import parse_duration
from sentinel.rules.field_paths import ConditionError, FieldPath
from sentinel.rules.model import Sequence, SequenceStep
from sentinel.rules.problems import Problems

SEQUENCE_KEYS = ("window", "steps")
STEP_KEYS = ("selection", "condition", "count", "within", "absent", "group_by")
MAX_STEPS = 10
# A group keeps at most this many events per step (the newest), so a step's count is at most this.
MAX_STEP_EVENTS = 64


def parse_sequence(spec: object, key: str, selections: Mapping[str, Matcher], declared: list[str],
                   group_by: tuple[FieldPath, ...], problems: Problems) -> Sequence | None:
    """Check ``[sequence]`` (at ``key``) against the rule's selections and group_by; None on any problem."""
    before = len(problems.errors)
    if not isinstance(spec, dict):
        problems.add(key, "must be a table with steps (and an optional window)")
        return None
    for extra in (k for k in spec if k not in SEQUENCE_KEYS):
        problems.add(f"{key}.{extra}", f"unknown field (known: {', '.join(SEQUENCE_KEYS)})")
    window = _duration(spec, "window", key, problems)
    raw_steps = spec.get("steps")
    if not isinstance(raw_steps, list) or not all(isinstance(s, dict) for s in raw_steps):
        problems.add(key + ".steps", "must be an array of tables ([[sequence.steps]])")
        return None
    if not 2 <= len(raw_steps) <= MAX_STEPS:
        problems.add(key + ".steps", f"a sequence has 2 to {MAX_STEPS} steps, got {len(raw_steps)}")
        return None
    steps = []
    for position, raw in enumerate(raw_steps):
        step = _step(raw, f"{key}.steps[{position}]", selections, declared, group_by, problems)
        if step is not None:
            steps.append(step)
    if len(problems.errors) > before:
        return None
    _check_order(steps, window, key, problems)
    if len(problems.errors) > before:
        return None
    return Sequence(tuple(steps), window)


def _duration(table: Mapping[str, Any], name: str, key: str, problems: Problems) -> int | None:
    if name not in table:
        return None
    try:
        return parse_duration(table[name])
    except ValueError as error:
        problems.add(f"{key}.{name}", str(error))
        return None


def _step(raw: Mapping[str, Any], key: str, selections: Mapping[str, Matcher], declared: list[str],
          group_by: tuple[FieldPath, ...], problems: Problems) -> SequenceStep | None:
    before = len(problems.errors)
    for extra in (k for k in raw if k not in STEP_KEYS):
        problems.add(f"{key}.{extra}", f"unknown field (known: {', '.join(STEP_KEYS)})")
    matcher, name = _step_matcher(raw, key, selections, declared, problems)
    count = raw.get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_STEP_EVENTS:
        problems.add(key + ".count", f"must be a whole number from 1 to {MAX_STEP_EVENTS}")
        count = 1
    absent = raw.get("absent", False)
    if not isinstance(absent, bool):
        problems.add(key + ".absent", "must be true or false")
        absent = False
    within = _duration(raw, "within", key, problems)
    paths = _step_group_by(raw, key, group_by, problems)
    if len(problems.errors) > before or matcher is None:
        return None
    return SequenceStep(name, matcher, count, within, absent, paths)


def _step_matcher(raw: Mapping[str, Any], key: str, selections: Mapping[str, Matcher], declared: list[str],
                  problems: Problems) -> tuple[Matcher | None, str]:
    given = [k for k in ("selection", "condition") if k in raw]
    if len(given) != 1:
        problems.add(key, "needs exactly one of selection (a name under [detection]) or condition")
        return None, ""
    text = raw[given[0]]
    if not isinstance(text, str) or not text.strip():
        problems.add(f"{key}.{given[0]}", "must be non-empty text")
        return None, ""
    if given[0] == "selection" and text not in declared:
        known = ", ".join(declared) or "none"
        problems.add(key + ".selection", f"unknown selection {text!r} (the rule's selections: {known})")
        return None, ""
    try:
        node = parse_condition(text, declared)
    except ConditionError as error:
        problems.add(key + ".condition", error.message)
        return None, ""
    if len(selections) != len(declared):  # a selection failed to compile: that problem is already listed
        return None, ""
    return node.compile(selections), text


def _step_group_by(raw: Mapping[str, Any], key: str, group_by: tuple[FieldPath, ...],
                   problems: Problems) -> tuple[FieldPath, ...]:
    if "group_by" not in raw:
        return ()
    texts = raw["group_by"]
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        problems.add(key + ".group_by", "must be a list of text")
        return ()
    if len(texts) != len(group_by):
        problems.add(key + ".group_by", f"must name as many fields as the rule's group_by ({len(group_by)}): "
                     "step values are joined with the rule's, field by field")
        return ()
    paths = []
    for position, text in enumerate(texts):
        try:
            paths.append(FieldPath.parse(text))
        except ConditionError as error:
            problems.add(f"{key}.group_by[{position}]", error.message)
    return tuple(paths)


def _check_order(steps: list[SequenceStep], window: int | None, key: str, problems: Problems) -> None:
    """Where absence may stand, and that every step is bounded in time (state must expire)."""
    last = len(steps) - 1
    for position, step in enumerate(steps):
        where = f"{key}.steps[{position}]"
        if step.absent:
            if position != last:
                problems.add(where + ".absent", "only the last step can be absent")
            if position == 0:
                problems.add(where + ".absent", "the first step cannot be absent")
            if step.within_seconds is None:
                problems.add(where + ".within", "an absent step needs within (how long to wait for it)")
            if step.count != 1:
                problems.add(where + ".count", "an absent step has no count")
        elif position == 0:
            if step.within_seconds is not None and step.count == 1:
                problems.add(where + ".within", "on the first step, within bounds its counted events: "
                             "give count > 1, or use [sequence] window")
            if step.count > 1 and step.within_seconds is None and window is None:
                problems.add(where + ".within", "a counted first step needs within (or a [sequence] window)")
        elif step.within_seconds is None and window is None:
            problems.add(where + ".within", "is required unless [sequence] window is set "
                         "(a sequence must end in bounded time)")
