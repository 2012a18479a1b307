"""A second index for rules that read every event type (``event_types = ["*"]``): a text field the condition
requires to equal (or contain) one of a few values (``displayMessage = "Max sign in attempts exceeded"``),
found at load. The engine checks that one field before running such a rule, so a rule on every type costs about
what a rule indexed on its event type costs on the events it does not read. Pure; it errs on "evaluate": it
rules an event out only where the rule's own case-folding test on a text value would fail.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sentinel.rules.condition_parser import Node, parse_condition
from sentinel.rules.field_paths import ConditionError


@dataclass(frozen=True, slots=True)
class Prefilter:
    """The field's keys, ``equals`` or ``contains``, the casefolded texts one of which it must equal or
    contain; ``admits(data)`` is compiled once (it runs for every event)."""

    keys: tuple[str, ...]
    operator: str
    texts: frozenset[str]
    admits: Callable[[Mapping[str, Any]], bool] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "admits", _compile(self.keys, self.operator, self.texts))

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
    if node.op == "and":  # any required child will do: the most selective
        found = [f for f in (_from_node(child, detection) for child in node.children) if f is not None]
        return min(found, key=_preference, default=None)
    return None  # "or" and "not" require nothing of one field


def _from_selection(selection: Any) -> Prefilter | None:
    if not isinstance(selection, Mapping):  # a list of tables is an OR
        return None
    found: list[Prefilter] = []
    for path, matcher in selection.items():
        test = _text_test(matcher)
        if test is not None and _SIMPLE_PATH.fullmatch(str(path)):
            found.append(Prefilter(tuple(str(path).split(".")), test[0], frozenset(t.casefold() for t in test[1])))
    return min(found, key=_preference, default=None)


_SCALAR_TEXT = re.compile(r"true|false|-?\d+(\.\d+)?", re.IGNORECASE)


def _preference(prefilter: Prefilter) -> int:
    """Lower is more selective: equality on text, then a substring, then equality on texts that read as a
    boolean or a number (such a field mostly holds JSON true/false or numbers, which a prefilter lets
    through: ``securityContext.isProxy = "true"``)."""
    if prefilter.operator != "equals":
        return 1
    return 2 if all(_SCALAR_TEXT.fullmatch(text) for text in prefilter.texts) else 0


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


def _compile(keys: tuple[str, ...], operator: str, texts: frozenset[str]) -> Callable[[Mapping[str, Any]], bool]:
    """False only when the rule cannot match: the field is missing, null, or text that equals (contains) none
    of the values. An array or a non-text value on the way means "evaluate" (any-element semantics, lenient
    comparisons of numbers and booleans)."""
    *path, last = keys
    longest = max(map(len, texts))
    needles = tuple(texts)

    def field_value(data: Mapping[str, Any]) -> Any:
        node: Any = data
        for key in path:
            node = node.get(key)
            if type(node) is not dict:
                return node if type(node) is list else None
        return node.get(last)

    if operator == "equals":

        def admits(data: Mapping[str, Any]) -> bool:
            node = field_value(data) if path else data.get(last)
            if type(node) is str:  # folding never shortens text: a longer value cannot fold to an operand
                return len(node) <= longest and node.casefold() in texts
            return node is not None

        return admits

    def admits_containing(data: Mapping[str, Any]) -> bool:
        node = field_value(data) if path else data.get(last)
        if type(node) is str:
            folded = node.casefold()
            for needle in needles:  # noqa: SIM110 (a loop, not a generator per event)
                if needle in folded:
                    return True
            return False
        return node is not None

    return admits_containing


def without_implied_event_type(selection: Any, event_types: tuple[str, ...]) -> Any:
    """The selection less an ``eventType`` equals test the index already guarantees (its values cover every one
    of the rule's exact ``event_types``, as imported Sigma rules write it); ``None`` if nothing is left (the
    selection always holds for the events the rule reads). Anything else is returned unchanged."""
    if not event_types or any(t == "*" or t.endswith(".*") for t in event_types):
        return selection
    routed = {t.casefold() for t in event_types}

    def reduce(table: Any) -> Any:
        if not isinstance(table, Mapping) or "eventType" not in table:
            return table
        test = _text_test(table["eventType"])
        if test is None or test[0] != "equals" or not routed <= {v.casefold() for v in test[1]}:
            return table
        return {k: v for k, v in table.items() if k != "eventType"} or None

    if isinstance(selection, list):
        reduced = [reduce(t) for t in selection]
        return None if any(t is None for t in reduced) else reduced  # an always-true alternative
    return reduce(selection)
