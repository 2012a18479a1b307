"""The operator table of the rule language: each operator compiles, at load time, to a predicate on one value.

Compiling validates the rule's operand and raises ``ValueError`` with a message meant for a rule author.
A compiled predicate takes one scalar taken from an event and never raises, whatever its type or size.
Okta writes many numbers and booleans as strings (``"true"``, ``"60"``), so comparisons are type-lenient.
"""

from __future__ import annotations

import ipaddress
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import re2

Predicate = Callable[[Any], bool]

# Event strings longer than this are cut before they are looked at (hook bodies are capped near 1 MiB anyway).
MAX_TEXT_CHARS = 1_048_576
MAX_PATTERN_CHARS = 4_096
MAX_REGEX_MEMORY = 8 << 20
MAX_DECODE_CHARS = 65_536
MAX_DECODE_DEPTH = 32  # as deep as a field path can walk (conditions.MAX_DEPTH)


@dataclass(frozen=True, slots=True)
class Options:
    """Modifiers that may accompany any operator in a field table."""

    ignore_case: bool = False
    all: bool = False  # every listed operand must match (default: any one of them)


# --- value normalisation: lenient, total, never raising -------------------------------------------------


def as_text(value: Any) -> str | None:
    """The text form of a scalar as Okta would have written it; None for objects, arrays and null."""
    kind = type(value)
    if kind is str:
        text: str = value
        return text if len(text) <= MAX_TEXT_CHARS else text[:MAX_TEXT_CHARS]
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value) if -(10**18) < value < 10**18 else None
    if kind is float:
        if not math.isfinite(value):
            return None
        return str(int(value)) if value.is_integer() and abs(value) < 1e18 else repr(value)
    return None


def as_number(value: Any) -> float | None:
    """A finite number from an int, float or numeric string (``"60"``); booleans are not numbers."""
    kind = type(value)
    if kind is bool:
        return None
    if kind is int or kind is float:
        try:
            number = float(value)
        except OverflowError:
            return None
    elif kind is str and len(value) <= 64:
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def as_bool(value: Any) -> bool | None:
    if type(value) is bool:
        return bool(value)
    if type(value) is str and len(value) <= 5:
        lowered = value.strip().lower()
        if lowered == "true":
            return True
        if lowered == "false":
            return False
    return None


# --- decoders for values Okta packs into strings ----------------------------------------------------------


@lru_cache(maxsize=512)
def decode_json(text: str) -> Any:
    """JSON inside a string (``threatDetections``, ``logOnlySecurityData``); None when it is not JSON."""
    if len(text) > MAX_DECODE_CHARS:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


@lru_cache(maxsize=512)
def decode_java_map(text: str) -> dict[str, Any] | None:
    """Java ``Map.toString`` text (``{New IP=POSITIVE, level=LOW}``, as in ``behaviors`` and ``risk``)."""
    return _decode_java_map(text, 0)


def _decode_java_map(text: str, level: int) -> dict[str, Any] | None:
    # Maps nested deeper than a field path can reach stay text: each level rescans its value, so
    # unbounded nesting cost O(n * depth) and hit RecursionError on hostile input.
    text = text.strip()
    if len(text) > MAX_DECODE_CHARS or not (text.startswith("{") and text.endswith("}")):
        return None
    result: dict[str, Any] = {}
    depth, start, body = 0, 0, text[1:-1]
    parts: list[str] = []
    for position, char in enumerate(body):
        if char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(body[start:position])
            start = position + 1
    parts.append(body[start:])
    for part in parts:
        key, equals, value = part.partition("=")
        if not equals:
            continue
        value = value.strip()
        nested = _decode_java_map(value, level + 1) if value.startswith("{") and level < MAX_DECODE_DEPTH else None
        result[key.strip()] = nested if nested is not None else value
    return result


DECODERS: Mapping[str, Callable[[str], Any]] = {"json": decode_json, "kv": decode_java_map}


# --- operand checks -----------------------------------------------------------------------------------------


def _operands(operand: object) -> list[object]:
    values = list(operand) if isinstance(operand, list) else [operand]
    if not values:
        raise ValueError("needs at least one value")
    return values


def _texts(operand: object, options: Options) -> list[str]:
    texts = []
    for value in _operands(operand):
        if not isinstance(value, str):
            raise ValueError(f"expects text, got {type(value).__name__} {value!r}")
        texts.append(value.casefold() if options.ignore_case else value)
    return texts


def _combine(predicates: list[Predicate], options: Options) -> Predicate:
    if len(predicates) == 1:
        return predicates[0]
    if options.all:
        return lambda value: all(p(value) for p in predicates)
    return lambda value: any(p(value) for p in predicates)


def _text_of(options: Options) -> Callable[[Any], str | None]:
    if not options.ignore_case:
        return as_text

    def folded(value: Any) -> str | None:
        text = as_text(value)
        return None if text is None else text.casefold()

    return folded


# --- the operators -----------------------------------------------------------------------------------------


def compile_equals(operand: object, options: Options) -> Predicate:
    values = _operands(operand)
    texts: set[str] = set()
    written: set[str] = set()  # the operands as written: a value in that case matches without a casefold
    numbers: set[float] = set()
    bools: set[bool] = set()
    for value in values:
        if isinstance(value, bool):
            bools.add(value)
        elif isinstance(value, int | float):
            numbers.add(float(value))
        elif isinstance(value, str):
            texts.add(value.casefold() if options.ignore_case else value)
            written.add(value)
        else:
            raise ValueError(f"expects text, numbers or booleans, got {type(value).__name__}")
    if options.all and len(values) > 1:
        # One scalar can equal several operands only if they are the same; keep the semantics honest.
        singles = [compile_equals(v, Options(options.ignore_case)) for v in values]
        return lambda value: all(p(value) for p in singles)
    text_of = _text_of(options)
    frozen_texts = frozenset(texts)
    if not numbers and not bools:
        if not options.ignore_case:
            return lambda value: (value if type(value) is str else as_text(value)) in frozen_texts
        # Folding never shortens text, so a value longer than every operand cannot equal one: skip its casefold.
        longest, frozen_written = max(map(len, frozen_texts)), frozenset(written)

        def equals_folded(value: Any) -> bool:
            if type(value) is str:
                if value in frozen_written:
                    return True
                return len(value) <= longest and value.casefold() in frozen_texts
            return text_of(value) in frozen_texts

        return equals_folded

    def equals(value: Any) -> bool:
        if frozen_texts and text_of(value) in frozen_texts:
            return True
        if bools and as_bool(value) in bools:
            return True
        return bool(numbers) and as_number(value) in numbers

    return equals


def compile_contains(operand: object, options: Options) -> Predicate:
    text_of = _text_of(options)
    predicates: list[Predicate] = []
    for needle in _texts(operand, options):
        predicates.append(_contains(needle, text_of))
    return _combine(predicates, options)


def _contains(needle: str, text_of: Callable[[Any], str | None]) -> Predicate:
    def contains(value: Any) -> bool:
        text = text_of(value)
        return text is not None and needle in text

    return contains


def compile_startswith(operand: object, options: Options) -> Predicate:
    text_of = _text_of(options)
    prefixes = tuple(_texts(operand, options))
    if options.all:
        return lambda value: (t := text_of(value)) is not None and all(t.startswith(p) for p in prefixes)
    return lambda value: (t := text_of(value)) is not None and t.startswith(prefixes)


def compile_endswith(operand: object, options: Options) -> Predicate:
    text_of = _text_of(options)
    suffixes = tuple(_texts(operand, options))
    if options.all:
        return lambda value: (t := text_of(value)) is not None and all(t.endswith(s) for s in suffixes)
    return lambda value: (t := text_of(value)) is not None and t.endswith(suffixes)


def _re2(pattern: str, ignore_case: bool) -> Any:
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ValueError(f"pattern longer than {MAX_PATTERN_CHARS} characters")
    settings = re2.Options()
    settings.max_mem = MAX_REGEX_MEMORY
    settings.log_errors = False
    settings.case_sensitive = not ignore_case
    try:
        return re2.compile(pattern, settings)
    except re2.error as error:
        detail = error.args[0].decode() if error.args and isinstance(error.args[0], bytes) else str(error)
        raise ValueError(f"bad regex {pattern!r}: {detail}") from None


def compile_regex(operand: object, options: Options) -> Predicate:
    predicates: list[Predicate] = []
    for pattern in _texts(operand, Options()):
        compiled = _re2(pattern, options.ignore_case)
        predicates.append(_searcher(compiled))
    return _combine(predicates, options)


def _searcher(compiled: Any) -> Predicate:
    def search(value: Any) -> bool:
        text = as_text(value)
        return text is not None and compiled.search(text) is not None

    return search


def glob_to_regex(pattern: str) -> str:
    """``*`` any run, ``?`` one character, ``[abc]`` a class; everything else literal; whole-value match."""
    out: list[str] = []
    position = 0
    while position < len(pattern):
        char = pattern[position]
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[" and "]" in pattern[position + 2 :]:
            end = pattern.index("]", position + 2)
            body = pattern[position + 1 : end].replace("\\", "\\\\")
            out.append("[^" + body[1:] + "]" if body.startswith("!") else "[" + body + "]")
            position = end
        else:
            out.append(re2.escape(char))
        position += 1
    return "(?s)^" + "".join(out) + "$"


def compile_glob(operand: object, options: Options) -> Predicate:
    return compile_regex([glob_to_regex(p) for p in _texts(operand, Options())], options)


def compile_cidr(operand: object, options: Options) -> Predicate:
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for text in _texts(operand, Options()):
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(f"not a CIDR network: {text!r}") from None
    frozen = tuple(networks)

    def in_networks(value: Any) -> bool:
        if type(value) is not str or len(value) > 64:
            return False
        try:
            address = ipaddress.ip_address(value.strip())
        except ValueError:
            return False
        if options.all:
            return all(address in network for network in frozen)
        return any(address in network for network in frozen)

    return in_networks


def _compile_comparison(name: str, compare: Callable[[float, float], bool]) -> Compiler:
    def compile_comparison(operand: object, options: Options) -> Predicate:
        limits = []
        for value in _operands(operand):
            number = None if isinstance(value, bool) else as_number(value)
            if number is None:
                raise ValueError(f"{name} expects a number, got {value!r}")
            limits.append(number)
        return _combine([_comparer(compare, limit) for limit in limits], options)

    return compile_comparison


def _comparer(compare: Callable[[float, float], bool], limit: float) -> Predicate:
    def compare_number(value: Any) -> bool:
        number = as_number(value)
        return number is not None and compare(number, limit)

    return compare_number


def compile_not_applicable(operand: object, options: Options) -> Predicate:
    """Placeholder for operators the condition layer evaluates itself (exists, equals_field)."""
    raise NotImplementedError


Compiler = Callable[[object, Options], Predicate]


@dataclass(frozen=True, slots=True)
class Operator:
    name: str
    compile: Compiler
    summary: str
    # "value": predicate per value; "exists": on presence; "field": compares with another field path;
    # "list": equals, with the operand naming lists (resolved by the condition layer).
    kind: str = "value"


OPERATORS: Mapping[str, Operator] = {
    op.name: op
    for op in (
        Operator("equals", compile_equals, "equal to a value, or to any value of a list (in-list)"),
        Operator("in_list", compile_equals, "equal to any value of a named list (or of several)", kind="list"),
        Operator("contains", compile_contains, "text contains the substring"),
        Operator("startswith", compile_startswith, "text starts with the prefix"),
        Operator("endswith", compile_endswith, "text ends with the suffix"),
        Operator("glob", compile_glob, "whole text matches a shell pattern (* ? [..])"),
        Operator("regex", compile_regex, "RE2 regular expression found in the text (linear time)"),
        Operator("cidr", compile_cidr, "IP address (v4 or v6) inside the network"),
        Operator("gt", _compile_comparison("gt", lambda a, b: a > b), "number greater than"),
        Operator("gte", _compile_comparison("gte", lambda a, b: a >= b), "number greater than or equal"),
        Operator("lt", _compile_comparison("lt", lambda a, b: a < b), "number less than"),
        Operator("lte", _compile_comparison("lte", lambda a, b: a <= b), "number less than or equal"),
        Operator("exists", compile_not_applicable, "the field is present and not null", kind="exists"),
        Operator("equals_field", compile_not_applicable, "equal to another field of the event", kind="field"),
    )
}

# Modifiers accepted next to operators in a field table; ``not`` negates the whole field test.
MODIFIERS: Mapping[str, str] = {
    "ignore_case": "compare text case-insensitively (the default, except for regex)",
    "all": "every listed value must match (default: any one)",
    "not": "negate the field test (a missing field then matches)",
    "case_sensitive": "compare text case-sensitively (opts out of the default)",
}
