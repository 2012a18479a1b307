"""A rule's ``[threshold]`` and ``[throttle]`` tables (the loader's; sequences and first-seen have theirs)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from sentinel.rules.condition_parser import parse_condition
from sentinel.rules.conditions import Matcher
from sentinel.rules.durations import parse_duration
from sentinel.rules.field_paths import ConditionError, FieldPath
from sentinel.rules.measure_expr import parse_when
from sentinel.rules.measures import signature
from sentinel.rules.model import MEASURE_KINDS, Measure, Threshold
from sentinel.rules.problems import Problems

THRESHOLD_KEYS = ("count", "window", "distinct", "measures", "when")
MEASURE_KEYS = (*MEASURE_KINDS, "where", "per_value")
MAX_DISTINCT_FIELDS = 4
MAX_MEASURES = 8
THROTTLE_KEYS = ("period",)
_MEASURE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")
_RESERVED = ("and", "or", "not")


def parse_threshold(spec: object, key: str, problems: Problems, selections: Mapping[str, Matcher] | None = None,
                    declared: Sequence[str] = ()) -> Threshold | None:
    """A rule's ``[threshold]`` table, or None (absent, or wrong: the problems say why). ``selections``
    (compiled) and ``declared`` (every name) are the rule's, for the measures' ``where``."""
    if spec is None:
        return None
    if not isinstance(spec, dict):
        problems.add(key, "must be a table with count and window")
        return None
    for extra in (k for k in spec if k not in THRESHOLD_KEYS):
        problems.add(f"{key}.{extra}", f"unknown field (known: {', '.join(THRESHOLD_KEYS)})")
    try:
        window = parse_duration(spec.get("window"))
    except ValueError as error:
        problems.add(key + ".window", str(error))
        window = None
    if "measures" in spec or "when" in spec:
        return _measured(spec, key, window, problems, selections or {}, declared)
    count = spec.get("count")
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 100_000:
        problems.add(key + ".count", "must be a whole number from 1 to 100000")
        count = None
    distinct: list[FieldPath] = []
    raw = spec.get("distinct")
    texts = raw if isinstance(raw, list) else [] if raw is None else [raw]
    if isinstance(raw, list) and not 1 <= len(raw) <= MAX_DISTINCT_FIELDS:
        problems.add(key + ".distinct", f"a list of 1 to {MAX_DISTINCT_FIELDS} field paths")
    for position, text in enumerate(texts):
        try:
            distinct.append(FieldPath.parse(text))
        except ConditionError as error:
            problems.add(key + (f".distinct[{position}]" if isinstance(raw, list) else ".distinct"), error.message)
    if count is None or window is None:
        return None
    return Threshold(count, window, distinct[0] if distinct else None, tuple(distinct[1:]))


def parse_throttle(spec: object, key: str, problems: Problems) -> int | None:
    """A rule's ``[throttle]`` period in seconds, or None."""
    if spec is None:
        return None
    if not isinstance(spec, dict):
        problems.add(key, "must be a table with period")
        return None
    for extra in (k for k in spec if k not in THROTTLE_KEYS):
        problems.add(f"{key}.{extra}", "unknown field (known: period)")
    try:
        return parse_duration(spec.get("period"))
    except ValueError as error:
        problems.add(key + ".period", str(error))
        return None


def _measured(spec: Mapping[str, object], key: str, window: int | None, problems: Problems,
              selections: Mapping[str, Matcher], declared: Sequence[str]) -> Threshold | None:
    """A threshold of named measures and a ``when`` over them (instead of ``count``/``distinct``)."""
    before = len(problems.errors)
    for other in ("count", "distinct"):
        if other in spec:
            problems.add(f"{key}.{other}", "a threshold with measures has no " + other + " (make it a measure "
                         "and test it in when, e.g. events = { count = true } and when = \"events >= 10\")")
    raw = spec.get("measures")
    if not isinstance(raw, dict) or not 1 <= len(raw) <= MAX_MEASURES:
        problems.add(key + ".measures", f"a table of 1 to {MAX_MEASURES} named measures, e.g. "
                                        "failures = { count = true, where = \"failed\" }")
        raw = raw if isinstance(raw, dict) else {}
    measures = []
    for name, table in list(raw.items())[:MAX_MEASURES]:
        measure = _measure(name, table, f"{key}.measures.{name}", problems, selections, declared)
        if measure is not None:
            measures.append(measure)
    when = None
    if "when" not in spec:
        problems.add(key + ".when", "is required with measures: a test over them, e.g. \"failures >= 20\"")
    else:
        try:
            when = parse_when(spec["when"], [str(name) for name in raw])
        except ValueError as error:
            problems.add(key + ".when", str(error))
    if len(problems.errors) > before or window is None or when is None:
        return None
    return Threshold(1, window, measures=tuple(measures), when=when, signature=signature(tuple(measures)))


def _measure(name: str, table: object, key: str, problems: Problems, selections: Mapping[str, Matcher],
             declared: Sequence[str]) -> Measure | None:
    if not _MEASURE_NAME.fullmatch(name) or name in _RESERVED:
        problems.add(key, "measure names are letters, digits and '_' (at most 40; not and, or, not)")
        return None
    if not isinstance(table, dict):
        problems.add(key, "must be a table, e.g. { count = true } or { distinct = \"actor.alternateId\" }")
        return None
    for extra in (k for k in table if k not in MEASURE_KEYS):
        problems.add(f"{key}.{extra}", f"unknown field (known: {', '.join(MEASURE_KEYS)})")
    kinds = [k for k in MEASURE_KINDS if k in table]
    if len(kinds) != 1:
        problems.add(key, f"names exactly one of {', '.join(MEASURE_KINDS)}" + (
            f" (it names {', '.join(kinds)})" if kinds else ""))
        return None
    kind = kinds[0]
    fields: list[FieldPath] = []
    operand = table[kind]
    if kind in ("count", "span", "first", "last"):
        if operand is not True:
            problems.add(f"{key}.{kind}", "must be true (say which events with where)")
    else:
        texts = operand if isinstance(operand, list) and kind != "sum" else [operand]
        if not texts or len(texts) > MAX_DISTINCT_FIELDS or not all(isinstance(t, str) for t in texts):
            problems.add(f"{key}.{kind}", "a field path" + (
                "" if kind == "sum" else f" or a list of 1 to {MAX_DISTINCT_FIELDS}"))
            texts = []
        for text in texts:
            try:
                fields.append(FieldPath.parse(text))
            except ConditionError as error:
                problems.add(f"{key}.{kind}", error.message)
    per_value = None
    if "per_value" in table:
        band = table["per_value"]
        if kind != "distinct":
            problems.add(key + ".per_value", "only with distinct (values having that many events each)")
        elif not (isinstance(band, list) and len(band) == 2 and all(
                isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in band) and band[0] <= band[1]):
            problems.add(key + ".per_value", "[least, most]: whole numbers from 1, least <= most, e.g. [2, 6]")
        else:
            per_value = (band[0], band[1])
    where: Matcher | None = None
    where_text = ""
    if "where" in table:
        where_text = table["where"] if isinstance(table["where"], str) else ""
        try:
            node = parse_condition(table["where"], declared)
            if len(selections) == len(declared):  # a selection that failed is reported already
                where = node.compile(selections)
        except ConditionError as error:
            problems.add(key + ".where", error.message)
            return None
    return Measure(name, kind, tuple(fields), where, where_text, per_value)
