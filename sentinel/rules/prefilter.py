"""A second index for rules that read every event type (``event_types = ["*"]``): a text field the condition
requires to equal (or contain) one of a few values (``displayMessage = "Max sign in attempts exceeded"``),
found at load. The engine checks that one field before running such a rule, so a rule on every type costs about
what a rule indexed on its event type costs on the events it does not read. Pure; it errs on "evaluate": it
rules an event out only where the rule's own case-folding test on a text value would fail.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sentinel.rules.condition_parser import Node, parse_condition
from sentinel.rules.field_paths import ConditionError

# (the field's keys, "equals" or "contains", the casefolded texts one of which it must equal or contain)
Prefilter = tuple[tuple[str, ...], str, frozenset[str]]

_SIMPLE_PATH = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*")


def required_text(event_types: tuple[str, ...], detection: Any, condition: Any) -> Prefilter | None:
    """The prefilter of a rule reading every event type, or None (then the rule always runs)."""
    if "*" not in event_types or not isinstance(detection, Mapping) or not isinstance(condition, str):
        return None
    try:
        node = parse_condition(condition, list(detection))
    except ConditionError:
        return None
    return _from_node(node, detection)


def _from_node(node: Node, detection: Mapping[str, Any]) -> Prefilter | None:
    if node.op == "ref":
        return _from_selection(detection.get(node.name))
    if node.op == "and":  # any required child will do
        for child in node.children:
            found = _from_node(child, detection)
            if found is not None:
                return found
    return None  # "or" and "not" require nothing of one field


def _from_selection(selection: Any) -> Prefilter | None:
    if not isinstance(selection, Mapping):  # a list of tables is an OR
        return None
    found: list[Prefilter] = []
    for path, matcher in selection.items():
        test = _text_test(matcher)
        if test is not None and _SIMPLE_PATH.fullmatch(str(path)):
            found.append((tuple(str(path).split(".")), test[0], frozenset(t.casefold() for t in test[1])))
    # Equality rules out more events than a substring does.
    return min(found, key=lambda p: p[1] != "equals", default=None)


def _text_test(matcher: Any) -> tuple[str, list[str]] | None:
    """("equals" or "contains", operands) of a case-folding, any-of test whose operands are all text."""
    operator = "equals"
    if isinstance(matcher, Mapping):
        operators = set(matcher) - {"ignore_case"}
        if len(operators) != 1 or not operators <= {"equals", "contains"} or matcher.get("ignore_case") is False:
            return None
        operator = operators.pop()
        matcher = matcher[operator]
    values = matcher if isinstance(matcher, list) else [matcher]
    if not values or not all(isinstance(v, str) for v in values):
        return None
    return operator, list(values)


def admits(prefilter: Prefilter, data: Mapping[str, Any]) -> bool:
    """False only when the rule cannot match: the field is missing, null, or text that equals (contains) none
    of the values. An array or a non-text value on the way means "evaluate" (any-element semantics, lenient
    comparisons of numbers and booleans)."""
    keys, operator, texts = prefilter
    node: Any = data
    for key in keys:
        if type(node) is not dict:
            return type(node) is list
        node = node.get(key)
    if type(node) is str:
        folded = node.casefold()
        return folded in texts if operator == "equals" else any(t in folded for t in texts)
    return node is not None
