"""The operator table of the rule language: each operator compiles, at load time, to a predicate on one value.

Compiling validates the rule's operand and raises ``ValueError`` with a message meant for a rule author.
A compiled predicate takes one scalar taken from an event and never raises, whatever its type or size.
Okta writes many numbers and booleans as strings (``"true"``, ``"60"``), so comparisons are type-lenient.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

import re2

from sentinel.model import parse_timestamp
from sentinel.rules.values import as_bool, as_number, as_text

Predicate = Callable[[Any], bool]

MAX_PATTERN_CHARS = 4_096
MAX_REGEX_MEMORY = 8 << 20


@dataclass(frozen=True, slots=True)
class Options:
    """Modifiers that may accompany any operator in a field table."""

    ignore_case: bool = False
    all: bool = False  # every listed operand must match (default: any one of them)
    # The zone hour_between and weekday_in read a timestamp in (``timezone``, resolved by the loader)
    timezone: tzinfo = UTC


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


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _local(value: Any, zone: tzinfo) -> datetime | None:
    """A timestamp value (Okta's ISO-8601 text, as ``published``) in ``zone``; None if it is not one."""
    try:
        moment = value if isinstance(value, datetime) else parse_timestamp(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(zone)
    except (ValueError, TypeError, OverflowError):
        return None


def _minute_of_day(text: object) -> int:
    if not isinstance(text, str) or len(text) != 5 or text[2] != ":" or not (text[:2] + text[3:]).isdigit():
        raise ValueError(f"expects times as \"HH:MM\", got {text!r}")
    hours, minutes = int(text[:2]), int(text[3:])
    if hours > 24 or minutes > 59 or (hours == 24 and minutes):
        raise ValueError(f"no such time of day: {text!r}")
    return hours * 60 + minutes


def compile_hour_between(operand: object, options: Options) -> Predicate:
    """``["18:00", "07:00"]``: from the first time (included) to the second (not included), wrapping past
    midnight when the second is earlier, on the local clock of ``timezone``."""
    if not isinstance(operand, list) or len(operand) != 2:
        raise ValueError('expects ["HH:MM", "HH:MM"]: from (included) and until (not included)')
    start, end = _minute_of_day(operand[0]), _minute_of_day(operand[1])
    if start % 1440 == end % 1440:
        raise ValueError("from and until are the same time: that is the whole day (leave the test out)")
    zone = options.timezone

    def in_hours(value: Any) -> bool:
        moment = _local(value, zone)
        if moment is None:
            return False
        minute = moment.hour * 60 + moment.minute
        return start <= minute < end if start < end else minute >= start or minute < end

    return in_hours


def compile_weekday_in(operand: object, options: Options) -> Predicate:
    days = set()
    for name in _operands(operand):
        text = name.strip().lower() if isinstance(name, str) else ""
        if text in WEEKDAYS:
            days.add(WEEKDAYS.index(text))
        elif text in _FULL_WEEKDAYS:
            days.add(_FULL_WEEKDAYS.index(text))
        else:
            raise ValueError(f"expects weekdays ({', '.join(WEEKDAYS)}), got {name!r}")
    frozen, zone = frozenset(days), options.timezone

    def on_days(value: Any) -> bool:
        moment = _local(value, zone)
        return moment is not None and moment.weekday() in frozen

    return on_days


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
    # The operand list is one value (hour_between's [from, until]), not alternatives to try one by one.
    whole_list: bool = False


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
        Operator("hour_between", compile_hour_between, "a timestamp's local time of day is in [from, until)",
                 whole_list=True),
        Operator("weekday_in", compile_weekday_in, "a timestamp's local weekday is one of these"),
    )
}

# Modifiers accepted next to operators in a field table; ``not`` negates the whole field test.
MODIFIERS: Mapping[str, str] = {
    "ignore_case": "compare text case-insensitively (the default, except for regex)",
    "all": "every listed value must match (default: any one)",
    "not": "negate the field test (a missing field then matches)",
    "case_sensitive": "compare text case-sensitively (opts out of the default)",
    "timezone": "IANA time zone hour_between and weekday_in read the time in (default UTC)",
}
TIME_OPERATORS = frozenset({"hour_between", "weekday_in"})
