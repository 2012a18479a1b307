"""Sigma correlation rules to Sentinel thresholds and sequences: ``event_count`` → ``[threshold] count``,
``value_count`` → ``[threshold] distinct``, both over the base rule's detection; ``temporal_ordered`` → a
``[sequence]`` with one step per base rule (its selections renamed ``sN__NAME``, its condition the step's);
``group-by`` → ``group_by``, ``timespan`` → ``window``. Unordered ``temporal`` has no Sentinel equivalent
(sequences are ordered) and is reported, not approximated.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sigma.correlations import SigmaCorrelationConditionOperator, SigmaCorrelationRule, SigmaCorrelationType
from sigma.rule import SigmaRule

from sentinel.sigma.values import Unsupported, field_path

if TYPE_CHECKING:
    from sentinel.sigma.convert import ImportedRule


def correlation_table(rule: SigmaCorrelationRule, metadata: dict[str, Any],
                      convert_rule: Callable[[SigmaRule], ImportedRule]) -> ImportedRule:
    kind = rule.type
    if kind == SigmaCorrelationType.TEMPORAL:
        raise Unsupported("an unordered temporal correlation is not supported: Sentinel sequences are ordered "
                          "(use temporal_ordered if the order is known)")
    if kind == SigmaCorrelationType.TEMPORAL_ORDERED:
        return _sequence(rule, metadata, convert_rule)
    if kind not in (SigmaCorrelationType.EVENT_COUNT, SigmaCorrelationType.VALUE_COUNT):
        raise Unsupported(f"correlation type {kind.name.lower()} is not supported")
    bases = [r.rule for r in rule.rules or []]
    if len(bases) != 1 or not isinstance(bases[0], SigmaRule):
        raise Unsupported("an event_count/value_count correlation over more than one rule is not supported")
    if rule.aliases.aliases:
        raise Unsupported("field aliases are not supported")
    base = convert_rule(bases[0])
    table = {k: v for k, v in base.table.items() if k not in metadata and k not in ("id", "title")}
    table = {**metadata, **table}
    if rule.group_by:
        table["group_by"] = [field_path(f) for f in rule.group_by]
    threshold: dict[str, Any] = {"count": _count(rule), "window": rule.timespan.seconds}
    if kind == SigmaCorrelationType.VALUE_COUNT:
        fieldref = getattr(rule.condition, "fieldref", None)
        if not fieldref:
            raise Unsupported("value_count without a condition field")
        fields = fieldref if isinstance(fieldref, list) else [fieldref]
        if len(fields) != 1:
            raise Unsupported("value_count over several fields is not supported")
        threshold["distinct"] = field_path(fields[0])
    table["threshold"] = threshold
    base.table = table
    base.name = str(rule.source.path.stem) if rule.source and rule.source.path else str(rule.name or rule.id)
    base.source = str(rule.source.path) if rule.source and rule.source.path else rule.title
    return base


def _count(rule: SigmaCorrelationRule) -> int:
    condition = rule.condition
    if getattr(condition, "percentile", None) is not None:
        raise Unsupported("a percentile condition is not supported")
    operator = getattr(condition, "op", None)
    count = getattr(condition, "count", None)
    if operator is None or count is None:
        raise Unsupported("only a simple condition (gte/gt) is supported for a correlation")
    if operator == SigmaCorrelationConditionOperator.GTE:
        return int(count)
    if operator == SigmaCorrelationConditionOperator.GT:
        return int(count) + 1
    raise Unsupported(f"correlation condition {operator.name.lower()} is not supported "
                      "(Sentinel thresholds fire at 'at least N')")


_KEYWORDS = {"and", "or", "not", "of", "them", "all", "any"}


def _sequence(rule: SigmaCorrelationRule, metadata: dict[str, Any],
              convert_rule: Callable[[SigmaRule], ImportedRule]) -> ImportedRule:
    bases = [r.rule for r in rule.rules or []]
    if len(bases) < 2 or not all(isinstance(b, SigmaRule) for b in bases):
        raise Unsupported("temporal_ordered needs two or more base rules")
    if len(bases) > 10:
        raise Unsupported("a sequence has at most 10 steps")
    if rule.aliases.aliases:
        raise Unsupported("field aliases are not supported")
    condition = rule.condition
    needed = getattr(condition, "count", None)
    operator = getattr(condition, "op", None)
    if getattr(condition, "fieldref", None) or operator not in (SigmaCorrelationConditionOperator.GTE, None) \
            or (needed is not None and int(needed) != len(bases)):
        raise Unsupported("temporal_ordered is imported only when every base rule must occur (condition gte: "
                          f"{len(bases)}): a sequence needs all its steps")
    detection: dict[str, Any] = {}
    steps: list[dict[str, Any]] = []
    types: set[str] = set()
    lists: set[str] = set()
    first: ImportedRule | None = None
    for number, base_rule in enumerate(bases, start=1):
        assert isinstance(base_rule, SigmaRule)
        base = convert_rule(base_rule)
        first = first or base
        prefix = f"s{number}__"
        detection.update({prefix + name: selection for name, selection in base.table["detection"].items()})
        steps.append({"condition": _prefixed(str(base.table["condition"]), prefix)})
        types.update(base.table["event_types"])
        lists.update(base.lists)
    assert first is not None
    table = {**metadata}
    table["event_types"] = ["*"] if "*" in types else sorted(types)
    if rule.group_by:
        table["group_by"] = [field_path(f) for f in rule.group_by]
    table["detection"] = detection
    table["sequence"] = {"window": rule.timespan.seconds, "steps": steps}
    first.table = table
    first.lists = sorted(lists)
    first.name = str(rule.source.path.stem) if rule.source and rule.source.path else str(rule.name or rule.id)
    first.source = str(rule.source.path) if rule.source and rule.source.path else rule.title
    return first


def _prefixed(condition: str, prefix: str) -> str:
    """A base rule's condition over its renamed selections; ``them`` becomes ``PREFIX*`` (its own only)."""

    def rename(match: re.Match[str]) -> str:
        word = match.group(0)
        if word == "them":
            return prefix + "*"
        return word if word.lower() in _KEYWORDS or word.isdigit() else prefix + word

    return re.sub(r"[A-Za-z0-9_.*-]+", rename, condition)
