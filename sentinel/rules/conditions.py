"""Field tests and named selections, compiled at load (paths: field_paths; the condition over them: condition_parser).

Paths are dotted (``actor.alternateId``); an array matches if any element does; ``target[type=User]``
keeps the elements whose ``type`` is ``User``; ``target[0]`` picks one position; ``behaviors|kv`` and
``threatDetections|json`` decode a value Okta packed into a string. A missing field yields no values:
no match, never an error. Nothing here raises while matching an event.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sentinel.rules.case import contradiction, folds_case
from sentinel.rules.field_paths import ConditionError, FieldPath
from sentinel.rules.lists import NamedList, resolve
from sentinel.rules.operators import MODIFIERS, OPERATORS, TIME_OPERATORS, Options, Predicate
from sentinel.rules.values import as_text

EventData = Mapping[str, Any]
Matcher = Callable[[EventData], bool]

NO_LISTS: Mapping[str, NamedList] = {}
# A list with many bad values names this many of them (and how many more there are).
MAX_LIST_PROBLEMS = 10


# --- field tests ----------------------------------------------------------------------------------------


def _always_false(value: Any) -> bool:
    return False


@dataclass(frozen=True, slots=True)
class FieldTest:
    """One ``path = matcher`` entry of a selection."""

    path: FieldPath
    predicates: tuple[Predicate, ...]  # several only with ``all``: each must be met by some value
    negate: bool = False
    exists: bool | None = None
    other: FieldPath | None = None
    ignore_case: bool = False

    def __call__(self, data: EventData) -> bool:
        # Run for every rule an event reaches (several per event): one call, and a loop rather than a
        # generator for the usual single predicate (issue 16).
        values = self.path.values(data)
        if self.exists is not None:
            return self.negate != (bool(values) == self.exists)
        if not values:
            return self.negate
        if self.other is not None:
            return self.negate != _equals_other(self.other, data, values, self.ignore_case)
        predicates = self.predicates
        if len(predicates) == 1:
            predicate = predicates[0]
            for value in values:
                if predicate(value):
                    return not self.negate
            return self.negate
        return self.negate != all(any(p(v) for v in values) for p in predicates)


def _equals_other(other: FieldPath, data: EventData, values: Sequence[Any], ignore_case: bool) -> bool:
    """``equals_field``: some value equals some value of the other field."""
    fold = str.casefold if ignore_case else str
    others = {fold(t) for v in other.values(data) if (t := as_text(v)) is not None}
    return any((t := as_text(v)) is not None and fold(t) in others for v in values)


@dataclass(frozen=True, slots=True)
class NegatedTable:
    """``not = true`` on a table of several operators: ``not (A and B)``, the whole table negated as
    docs/rules.md says (not each operator on its own, which would be ``not A and not B``)."""

    tests: tuple[Matcher, ...]

    def __call__(self, data: EventData) -> bool:
        return not all(test(data) for test in self.tests)


def compile_field_test(path_text: str, spec: object, lists: Mapping[str, NamedList] = NO_LISTS) -> list[Matcher]:
    """``spec`` is a scalar (equals), a list (in-list) or a table of operators and modifiers; ``lists`` are
    the named lists operands may refer to. Raises ConditionError carrying every problem of the path and of
    each operator."""
    problems: list[ConditionError] = []
    path: FieldPath | None = None
    try:
        path = FieldPath.parse(path_text)
    except ConditionError as error:
        problems.append(error)
    if not isinstance(spec, dict):
        spec = {"equals": spec}
        keyed = False  # the shorthand has no operator key to name
    else:
        keyed = True
        unknown = [name for name in spec if name not in OPERATORS and name not in MODIFIERS]
        problems.extend(ConditionError(f"unknown operator {name!r} (known: {', '.join(OPERATORS)}; "
                                       f"modifiers: {', '.join(MODIFIERS)})", name) for name in unknown)
        problems.extend(ConditionError(f"{modifier} must be true or false", modifier)
                        for modifier in MODIFIERS if modifier in spec and not isinstance(spec[modifier], bool)
                        and modifier != "timezone")
        if not unknown and not any(name in OPERATORS for name in spec):
            problems.append(ConditionError("names no operator"))
    if (clash := contradiction(spec)) is not None:
        problems.append(ConditionError(clash, "case_sensitive"))
    negate = spec.get("not") is True
    # `not` on a table of several operators negates the whole table (see NegatedTable).
    negate_table = negate and sum(1 for k in spec if k in OPERATORS) > 1
    if negate_table:
        negate = False
    zone: tzinfo = UTC
    if "timezone" in spec:
        try:
            zone = _zone(spec)
        except ConditionError as error:
            problems.append(error)
    tests: list[FieldTest] = []
    for name in (k for k in spec if k in OPERATORS):
        try:
            options = Options(ignore_case=folds_case(name, spec), all=spec.get("all") is True, timezone=zone)
            test = _operator_test(path, name, spec[name], options, negate, name if keyed else "", lists)
        except ConditionError as error:
            problems.append(error)
            continue
        if path is not None:
            tests.append(test)
    if problems:
        raise ConditionError.of(problems)
    if negate_table:
        return [NegatedTable(tuple(tests))]
    return list(tests)


def _zone(spec: Mapping[str, object]) -> tzinfo:
    """The ``timezone`` modifier's zone, read when the rule loads (zoneinfo reads the tz database then;
    the predicates only convert times with it)."""
    name = spec["timezone"]
    if not any(op in TIME_OPERATORS for op in spec):
        raise ConditionError(f"timezone applies to {' and '.join(sorted(TIME_OPERATORS))} only", "timezone")
    if not isinstance(name, str) or not name or len(name) > 64 or name.startswith(("/", ".")) or ".." in name:
        raise ConditionError(f"timezone must be an IANA zone name such as \"Europe/Paris\", got {name!r}",
                             "timezone")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ConditionError(f"unknown time zone {name!r} (an IANA name such as \"America/New_York\")",
                             "timezone") from None


def _operator_test(path: FieldPath | None, name: str, operand: object, options: Options, negate: bool,
                   key: str, lists: Mapping[str, NamedList]) -> FieldTest:
    placeholder = path or FieldPath("", (), ())  # the path was bad (reported): only the operand is checked
    kind = OPERATORS[name].kind
    if kind == "exists":
        if not isinstance(operand, bool):
            raise ConditionError("exists must be true or false", key)
        return FieldTest(placeholder, (_always_false,), negate, exists=operand)
    if kind == "field":
        if not isinstance(operand, str):
            raise ConditionError("equals_field expects a field path", key)
        try:
            other = FieldPath.parse(operand)
        except ConditionError as error:
            raise ConditionError(error.message, key) from None
        return FieldTest(placeholder, (_always_false,), negate, other=other, ignore_case=options.ignore_case)
    if kind == "list":  # in_list = "name": equals any value of the named list(s)
        return FieldTest(placeholder, _list_predicates("equals", operand, options, key, lists), negate)
    if isinstance(operand, dict) and "list" in operand:  # startswith = { list = "name" }: values as operands
        extra = [k for k in operand if k != "list"]
        if extra:
            raise ConditionError(f"a list operand is {{ list = \"name\" }} only; unknown key {extra[0]!r}", key)
        return FieldTest(placeholder, _list_predicates(name, operand["list"], options, key, lists), negate)
    return FieldTest(placeholder, _predicates(name, operand, options, key), negate)


def _list_predicates(name: str, names: object, options: Options, key: str,
                     lists: Mapping[str, NamedList]) -> tuple[Predicate, ...]:
    """Operator ``name`` over every value of the named list(s); a value it cannot compile is named by its
    list and the file and line (or key) it was written at."""
    try:
        named = resolve(names, lists)
    except ValueError as error:
        raise ConditionError(str(error), key) from None
    values = [value for each in named for value in each.values]
    try:
        return _compiled(name, values, options)
    except ValueError:
        pass
    compile_operator, single = OPERATORS[name].compile, replace(options, all=False)
    problems = []
    for each in named:
        for value, place in zip(each.values, each.places, strict=True):
            try:
                compile_operator(value, single)
            except ValueError as error:
                problems.append(ConditionError(f"list {each.name!r} ({place}): {error}", key))
    if len(problems) > MAX_LIST_PROBLEMS:
        more = len(problems) - MAX_LIST_PROBLEMS
        problems = [*problems[:MAX_LIST_PROBLEMS], ConditionError(f"... and {more} more bad values", key)]
    raise ConditionError.of(problems or [ConditionError(f"{name} cannot use these lists", key)])


def _compiled(name: str, operand: object, options: Options) -> tuple[Predicate, ...]:
    compile_operator = OPERATORS[name].compile
    if options.all and isinstance(operand, list) and len(operand) > 1 and not OPERATORS[name].whole_list:
        single = replace(options, all=False)
        return tuple(compile_operator(o, single) for o in operand)
    return (compile_operator(operand, options),)


def _predicates(name: str, operand: object, options: Options, key: str) -> tuple[Predicate, ...]:
    compile_operator = OPERATORS[name].compile
    single = replace(options, all=False)
    try:
        return _compiled(name, operand, options)
    except ValueError as error:
        if not isinstance(operand, list) or len(operand) < 2 or OPERATORS[name].whole_list:
            raise ConditionError(str(error), key) from None
    # A list with a bad value: name each bad one by its position.
    problems = []
    for position, value in enumerate(operand):
        try:
            compile_operator(value, single)
        except ValueError as error:
            problems.append(ConditionError(str(error), f"{key}[{position}]"))
    raise ConditionError.of(problems or [ConditionError("bad list of values", key)])


# --- selections ----------------------------------------------------------------------------------------


def compile_selection(spec: object, lists: Mapping[str, NamedList] = NO_LISTS) -> Matcher:
    """A table (its field tests AND-ed) or a list of tables (OR-ed), as in Sigma; ``lists`` are the named
    lists its operands may refer to."""
    problems: list[ConditionError] = []
    if isinstance(spec, list):
        if not spec or not all(isinstance(s, dict) for s in spec):
            raise ConditionError("a selection list must hold one or more tables")
        alternatives = []
        for position, table in enumerate(spec):
            try:
                alternatives.append(compile_selection(table, lists))
            except ConditionError as error:
                problems.append(error.under(f"[{position}]"))
        if problems:
            raise ConditionError.of(problems)
        return any_of(alternatives)
    if not isinstance(spec, dict) or not spec:
        raise ConditionError("a selection must be a non-empty table of field = matcher")
    tests: list[Matcher] = []
    for path_text, matcher in spec.items():
        try:
            tests.extend(compile_field_test(path_text, matcher, lists))
        except ConditionError as error:
            problems.append(error.under(_quote(path_text)))
    if problems:
        raise ConditionError.of(problems)
    return all_of(tests)


# Matchers combined, unrolled for the usual two or three parts: all() or any() over a generator cost a
# generator per call, per rule and event (issue 16). Each part returns a bool, so and/or return one too.


def all_of(matchers: Sequence[Matcher]) -> Matcher:
    """Holds when every matcher does, tried in order until one does not."""
    parts = tuple(matchers)
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        a, b = parts
        return lambda data: a(data) and b(data)
    if len(parts) == 3:
        a, b, c = parts
        return lambda data: a(data) and b(data) and c(data)
    return lambda data: all(p(data) for p in parts)


def any_of(matchers: Sequence[Matcher]) -> Matcher:
    """Holds when some matcher does, tried in order until one does."""
    parts = tuple(matchers)
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        a, b = parts
        return lambda data: a(data) or b(data)
    if len(parts) == 3:
        a, b, c = parts
        return lambda data: a(data) or b(data) or c(data)
    return lambda data: any(p(data) for p in parts)


def _quote(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else f'"{key}"'
