"""Sigma correlation rules to Sentinel thresholds: ``event_count`` → ``[threshold] count``, ``value_count`` →
``[threshold] distinct``, both over the base rule's detection, ``group-by`` → ``group_by``, ``timespan`` →
``window``. ``temporal``/``temporal_ordered`` need the ``[sequence]`` construct (issue 14 point 1), which this
build does not have yet: they are reported as not importable rather than approximated.
"""

from __future__ import annotations

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
    if kind in (SigmaCorrelationType.TEMPORAL, SigmaCorrelationType.TEMPORAL_ORDERED):
        raise Unsupported(f"correlation type {kind.name.lower()} needs the [sequence] construct, "
                          "which this Sentinel does not have yet")
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
