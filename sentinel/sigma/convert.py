"""Sigma rules and correlations (parsed by pySigma) to Sentinel rule tables, or a per-rule error.

Only ``logsource: product: okta`` is accepted. Every construct the Sentinel language cannot express raises
``Unsupported`` and the rule is reported, never written as a different rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sigma.collection import SigmaCollection
from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionItem,
    ConditionNOT,
    ConditionOR,
)
from sigma.correlations import SigmaCorrelationRule
from sigma.exceptions import SigmaError
from sigma.rule import SigmaDetection, SigmaDetectionItem, SigmaRule
from sigma.types import SigmaString, SpecialChars

from sentinel.sigma.values import Unsupported, field_path, item_matcher

_SEVERITY = {"informational": "info", "low": "low", "medium": "medium", "high": "high", "critical": "critical"}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


class SigmaImportError(Exception):
    """One Sigma rule that cannot be imported: ``source`` (the file) and the reason."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


@dataclass
class ImportedRule:
    """A rule table ready for the TOML writer, the Sigma file it came from and its notes (placeholders)."""

    name: str  # the output file stem
    source: str
    table: dict[str, Any]
    lists: list[str] = field(default_factory=list)  # named lists the rule needs (Sigma placeholders)


def _source(rule: SigmaRule | SigmaCorrelationRule) -> str:
    return str(rule.source.path) if rule.source is not None and rule.source.path is not None else rule.title


def _stem(rule: SigmaRule | SigmaCorrelationRule) -> str:
    if rule.source is not None and rule.source.path is not None:
        return rule.source.path.stem
    return str(rule.name or rule.id or rule.title)


def convert_collection(collection: SigmaCollection) -> tuple[list[ImportedRule], list[SigmaImportError]]:
    """Every rule of the collection converted, or its error; correlations include their base rules'
    detections, and a base rule with ``generate: false`` (the default) is not written on its own."""
    imported: list[ImportedRule] = []
    errors: list[SigmaImportError] = [SigmaImportError(_source_of_error(e), str(e)) for e in collection.errors]
    hidden: set[int] = set()
    for rule in collection.rules:
        if isinstance(rule, SigmaCorrelationRule):
            for reference in rule.rules or []:
                if isinstance(reference.rule, SigmaRule) and not rule.generate:
                    hidden.add(id(reference.rule))
    for rule in collection.rules:
        if id(rule) in hidden:
            continue
        try:
            if isinstance(rule, SigmaCorrelationRule):
                imported.append(convert_correlation(rule))
            else:
                imported.append(convert_rule(rule))
        except (Unsupported, SigmaError) as error:  # pySigma checks some things only when asked (conditions)
            errors.append(SigmaImportError(_source(rule), str(error)))
    return imported, errors


def _source_of_error(error: Exception) -> str:
    location = getattr(error, "source", None)
    return str(getattr(location, "path", None) or "sigma")


def _metadata(rule: SigmaRule | SigmaCorrelationRule) -> dict[str, Any]:
    if rule.id is None:
        raise Unsupported("the rule has no id (Sentinel needs a stable id)")
    if rule.level is None:
        raise Unsupported("the rule has no level (Sentinel needs a severity)")
    table: dict[str, Any] = {
        "id": str(rule.id),
        "title": rule.title.replace("{", "{{").replace("}", "}}"),
        "severity": _SEVERITY[str(rule.level.name).lower()],
    }
    if rule.description:
        table["description"] = rule.description.strip()
    if rule.author:
        table["author"] = rule.author
    if rule.status is not None:
        table["status"] = str(rule.status.name).lower()
    if rule.tags:
        table["tags"] = [f"{t.namespace}.{t.name}" for t in rule.tags]
    if rule.references:
        table["references"] = list(rule.references)
    if rule.falsepositives:
        table["falsepositives"] = list(rule.falsepositives)
    return table


def _check_logsource(rule: SigmaRule) -> None:
    product = rule.logsource.product
    if product != "okta":
        raise Unsupported(f"logsource product {product!r} is not okta (only Okta System Log rules are imported)")


def convert_rule(rule: SigmaRule) -> ImportedRule:
    _check_logsource(rule)
    table = _metadata(rule)
    detection, lists = _detection(rule)
    condition = _condition(rule)
    table["event_types"] = _event_types(rule)
    table["condition"] = condition
    table["detection"] = detection
    return ImportedRule(_stem(rule), _source(rule), table, lists)


def _detection(rule: SigmaRule) -> tuple[dict[str, Any], list[str]]:
    out: dict[str, Any] = {}
    for name, detection in rule.detection.detections.items():
        if not _NAME.match(name):
            raise Unsupported(f"selection name {name!r} is not a Sentinel selection name")
        out[name] = _selection(detection)
    lists = sorted({m["list"] for table in _tables(out) for m in _operands(table) if isinstance(m, dict)})
    return out, lists


def _tables(detection: dict[str, Any]) -> Iterable[dict[str, Any]]:
    for selection in detection.values():
        yield from selection if isinstance(selection, list) else [selection]


def _operands(table: dict[str, Any]) -> Iterable[Any]:
    for matcher in table.values():
        if isinstance(matcher, dict):
            yield from matcher.values()


def _selection(detection: SigmaDetection) -> Any:
    """A table (AND of field tests) or a list of tables (OR of them)."""
    items = detection.detection_items
    if all(isinstance(i, SigmaDetectionItem) for i in items):
        if detection.item_linking is ConditionAND or len(items) == 1:
            return _and_table(items)  # type: ignore[arg-type]
        return [_and_table([i]) for i in items]  # type: ignore[list-item]
    if detection.item_linking is ConditionOR and all(isinstance(i, SigmaDetection) for i in items):
        alternatives = []
        for sub in items:
            assert isinstance(sub, SigmaDetection)
            if not all(isinstance(i, SigmaDetectionItem) for i in sub.detection_items):
                raise Unsupported("selections nested more than two levels deep are not supported")
            if sub.item_linking is not ConditionAND and len(sub.detection_items) > 1:
                raise Unsupported("a list of values without a field (keywords) is not supported")
            alternatives.append(_and_table(sub.detection_items))  # type: ignore[arg-type]
        return alternatives
    raise Unsupported("this selection shape (mixed lists and maps) is not supported")


def _and_table(items: list[SigmaDetectionItem]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for item in items:
        path = field_path(item.field)
        matcher = item_matcher(item)
        if path not in table:
            table[path] = matcher
            continue
        # The same field twice in one map: both must hold, as several operators in one table do.
        before, now = _as_table(table[path]), _as_table(matcher)
        shared = set(before) & set(now)
        if shared - {"case_sensitive", "ignore_case"} or any(before.get(k) != now.get(k) for k in shared):
            raise Unsupported(f"field {path!r} tested twice with the same operator or modifiers in one selection")
        if {"all", "not"} & (set(before) | set(now)):
            raise Unsupported(f"field {path!r} tested twice with all/not in one selection")
        table[path] = {**before, **now}
    return table


def _as_table(matcher: Any) -> dict[str, Any]:
    return dict(matcher) if isinstance(matcher, dict) else {"equals": matcher}


def _condition(rule: SigmaRule) -> str:
    conditions = list(rule.detection.condition)
    for text in conditions:
        if "|" in text:
            raise Unsupported(f"condition {text!r}: aggregations (|) are not supported; use a correlation rule")
        if re.search(r"\bthem\b", text) and any(n.startswith("_") for n in rule.detection.detections):
            raise Unsupported("'them' with selections named _...: Sigma skips those, Sentinel does not")
    for parsed in rule.detection.parsed_condition:
        parsed.parse()  # pySigma's own check of the condition; raises on an unknown selection
    return conditions[0] if len(conditions) == 1 else " or ".join(f"({c})" for c in conditions)


def _event_types(rule: SigmaRule) -> list[str]:
    """The event types an event must have to match (for the engine's index), or ["*"]."""
    types: set[str] | None = None
    for parsed in rule.detection.parsed_condition:
        these = _implied_types(parsed.parse())
        if these is None:
            return ["*"]
        types = these if types is None else types | these
    if types is not None and not types:
        raise Unsupported("the condition can never hold (no event type satisfies it)")
    return sorted(types) if types else ["*"]


def _implied_types(node: ConditionItem | Any) -> set[str] | None:
    if isinstance(node, ConditionFieldEqualsValueExpression):
        if node.field != "eventType" or not isinstance(node.value, SigmaString):
            return None
        parts = list(node.value.s)
        if all(isinstance(p, str) for p in parts):
            # Okta writes event types in lower case; the index compares them exactly.
            return {"".join(str(p) for p in parts).lower()}
        if (len(parts) == 2 and isinstance(parts[0], str) and parts[1] is SpecialChars.WILDCARD_MULTI
                and parts[0].endswith(".")):
            return {parts[0].lower() + "*"}
        return None
    if isinstance(node, ConditionAND):
        known = [t for t in (_implied_types(a) for a in node.args) if t is not None]
        if not known:
            return None
        result = known[0]
        for other in known[1:]:
            result = _intersect(result, other)
        return result
    if isinstance(node, ConditionOR):
        union: set[str] = set()
        for arg in node.args:
            these = _implied_types(arg)
            if these is None:
                return None
            union |= these
        return union
    if isinstance(node, ConditionNOT):
        return None
    return None


def _intersect(left: set[str], right: set[str]) -> set[str]:
    """Exact types in both; a prefix pattern keeps the other side's types it covers."""
    out = left & right
    for a, b in ((left, right), (right, left)):
        for pattern in a:
            if pattern.endswith(".*"):
                out |= {t for t in b if t.startswith(pattern[:-1]) and not t.endswith(".*")}
    return out


def convert_correlation(rule: SigmaCorrelationRule) -> ImportedRule:
    from sentinel.sigma.correlation import correlation_table

    return correlation_table(rule, _metadata(rule), convert_rule)
