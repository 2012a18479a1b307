"""One Sigma detection item (field, modifiers already applied by pySigma, values) to one Sentinel matcher.

pySigma has already applied the modifiers: ``contains`` is a string with a leading and trailing wildcard,
``windash`` an expansion of strings, ``re`` a regular expression, ``cidr`` a network. So the operator is read
from the value's shape, which keeps Sigma's meaning exactly (a plain value with a ``*`` in it is a wildcard
in Sigma too).
"""

from __future__ import annotations

from typing import Any

from sigma.conditions import ConditionAND, ConditionOR
from sigma.rule import SigmaDetectionItem
from sigma.types import (
    Placeholder,
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaFieldReference,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
    SpecialChars,
)

TEXT_OPERATORS = ("equals", "contains", "startswith", "endswith", "glob")
# Characters our field paths give a meaning to ([type=User] selectors, |json decoders).
_PATH_SPECIALS = set("[]|")
_COMPARISONS = {"LT": "lt", "LTE": "lte", "GT": "gt", "GTE": "gte"}
_WILD = SpecialChars.WILDCARD_MULTI
_ONE = SpecialChars.WILDCARD_SINGLE


class Unsupported(Exception):
    """A construct the Sentinel language cannot express; the message says which."""


def field_path(field: str | None) -> str:
    if not field:
        raise Unsupported("keyword search (a value without a field) is not supported: name the field")
    if _PATH_SPECIALS & set(field):
        raise Unsupported(f"field name {field!r} has a character Sentinel field paths reserve ([, ] or |)")
    return field


def _glob_text(value: SigmaString) -> str:
    out: list[str] = []
    for part in value.s:
        if part is _WILD:
            out.append("*")
        elif part is _ONE:
            out.append("?")
        elif isinstance(part, str):
            out.append("".join(f"[{c}]" if c in "*?[" else c for c in part))
        else:
            raise Unsupported(f"cannot express the value part {part!r}")
    return "".join(out)


def _string_test(value: SigmaString) -> tuple[str, Any]:
    """(operator, operand) for a Sigma string: equals/contains/startswith/endswith when the only wildcards
    are ``*`` at the ends, else glob (which is Sigma's wildcard semantics)."""
    parts = list(value.s)
    if any(isinstance(p, Placeholder) for p in parts):
        return _placeholder_test(parts)
    lead = bool(parts) and parts[0] is _WILD
    trail = len(parts) > 1 and parts[-1] is _WILD
    inner = parts[int(lead) : len(parts) - int(trail)]
    if inner and all(isinstance(p, str) for p in inner):
        text = "".join(str(p) for p in inner)
        operator = {(False, False): "equals", (True, True): "contains", (False, True): "startswith",
                    (True, False): "endswith"}[(lead, trail)]
        return operator, text
    return "glob", _glob_text(value)


def _placeholder_test(parts: list[Any]) -> tuple[str, Any]:
    lead = parts[0] is _WILD
    trail = len(parts) > 1 and parts[-1] is _WILD
    inner = parts[int(lead) : len(parts) - int(trail)]
    if len(inner) != 1 or not isinstance(inner[0], Placeholder):
        raise Unsupported("a placeholder must be the whole value (with at most a leading and trailing *)")
    operator = {(False, False): "equals", (True, True): "contains", (False, True): "startswith",
                (True, False): "endswith"}[(lead, trail)]
    return operator, {"list": inner[0].name}


def _value_test(value: Any) -> tuple[str, Any, dict[str, Any]]:
    """(operator, operand, modifiers) for one Sigma value."""
    if isinstance(value, SigmaCasedString):
        operator, operand = _string_test(value)
        return operator, operand, {"case_sensitive": True}
    if isinstance(value, SigmaString):
        operator, operand = _string_test(value)
        return operator, operand, {}
    if isinstance(value, SigmaBool):
        return "equals", value.boolean, {}
    if isinstance(value, SigmaNumber):
        return "equals", value.number, {}
    if isinstance(value, SigmaNull):
        return "exists", False, {}
    if isinstance(value, SigmaExists):
        return "exists", value.exists, {}
    if isinstance(value, SigmaRegularExpression):
        return _regex_test(value)
    if isinstance(value, SigmaCIDRExpression):
        return "cidr", str(value.network), {}
    if isinstance(value, SigmaCompareExpression):
        name = _COMPARISONS.get(value.op.name)
        if name is None:
            raise Unsupported(f"comparison {value.op.name} is not supported")
        return name, value.number.number, {}
    if isinstance(value, SigmaFieldReference):
        if value.starts_with or value.ends_with:
            raise Unsupported("fieldref with startswith/endswith is not supported")
        return "equals_field", field_path(value.field), {}
    raise Unsupported(f"value type {type(value).__name__} is not supported")


def _regex_test(value: SigmaRegularExpression) -> tuple[str, Any, dict[str, Any]]:
    prefix = ""
    modifiers: dict[str, Any] = {}
    for flag in value.flags:
        if flag == SigmaRegularExpressionFlag.IGNORECASE:
            modifiers["ignore_case"] = True
        elif flag == SigmaRegularExpressionFlag.MULTILINE:
            prefix += "(?m)"
        elif flag == SigmaRegularExpressionFlag.DOTALL:
            prefix += "(?s)"
        else:
            raise Unsupported(f"regular expression flag {flag} is not supported")
    # Sigma's `re` is case-sensitive, as our regex is by default, unless the `i` flag says otherwise.
    if value.contains_placeholder():
        raise Unsupported("a placeholder inside a regular expression is not supported")
    pattern = value.regexp.to_plain() if hasattr(value.regexp, "to_plain") else value.regexp
    return "regex", prefix + str(pattern), modifiers


def _flatten(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for value in values:
        out.extend(_flatten(list(value.values)) if isinstance(value, SigmaExpansion) else [value])
    return out


def item_matcher(item: SigmaDetectionItem) -> Any:
    """The TOML value (scalar, list or operator table) for one detection item."""
    if item.negated:
        raise Unsupported("a negated detection item is not supported")
    values = _flatten(list(item.value))
    if not values:
        raise Unsupported(f"field {item.field!r} has no value")
    tests = [_value_test(v) for v in values]
    every = item.value_linking is ConditionAND and len(tests) > 1
    if item.value_linking not in (ConditionAND, ConditionOR):
        raise Unsupported("unknown value linking")
    operators = {t[0] for t in tests}
    modifier_sets = {tuple(sorted(t[2].items())) for t in tests}
    if len(modifier_sets) > 1:
        raise Unsupported(f"field {item.field!r}: values with different modifiers in one item")
    modifiers = dict(tests[0][2])
    if len(operators) > 1:
        if not operators <= set(TEXT_OPERATORS) or any(isinstance(t[1], dict) for t in tests):
            raise Unsupported(f"field {item.field!r}: values of different kinds ({', '.join(sorted(operators))})")
        # Mixed wildcard shapes: one glob per value keeps Sigma's meaning.
        tests = [("glob", _as_glob(v), t[2]) for v, t in zip(values, tests, strict=True)]
        operators = {"glob"}
    operator = operators.pop()
    operands = [t[1] for t in tests]
    if len(operands) > 1 and any(isinstance(o, dict) for o in operands):
        raise Unsupported(f"field {item.field!r}: a placeholder mixed with other values")
    operand = operands[0] if len(operands) == 1 else operands
    if operator == "equals" and not modifiers and not every and not isinstance(operand, dict):
        return operand
    table: dict[str, Any] = {operator: operand}
    if every:
        table["all"] = True
    table.update(modifiers)
    return table


def _as_glob(value: Any) -> str:
    if isinstance(value, SigmaString) and not value.contains_placeholder():
        return _glob_text(value)
    raise Unsupported("cannot turn this value into a glob")
