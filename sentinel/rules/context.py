"""What an alert message needs from its event(s): short text values in an :class:`AlertContext`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sentinel.alert_context import AlertContext, Party, Sample, StepEvents
from sentinel.model import format_timestamp
from sentinel.rules.engine_state import from_micros
from sentinel.rules.measures import shown
from sentinel.rules.model import Rule
from sentinel.rules.values import as_text

MAX_TARGETS = 10
MAX_FIELD_CHARS = 512
MAX_DISTINCT_VALUES = 20


def _get(data: Any, *keys: str) -> str | None:
    node = data
    for key in keys:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    text = as_text(node)
    return None if text is None else text[:MAX_FIELD_CHARS]


def short_event(data: Mapping[str, Any], uuid: str, published: str) -> dict[str, Any]:
    """The few fields a message shows per sample event (kept as JSON in rule state)."""
    return {
        "uuid": uuid,
        "published": published,
        "actor": _get(data, "actor", "alternateId"),
        "ip": _get(data, "client", "ipAddress"),
    }


def brief_event(data: Mapping[str, Any]) -> dict[str, Any]:
    """The fields an alert's context and templates most often read (actor, targets, client, outcome,
    message), each value cut short: what a sequence keeps of the event that completed it, to alert
    later (an absence deadline) without keeping whole events."""

    def party(entity: Any) -> dict[str, Any]:
        return {k: _get(entity, k) for k in ("alternateId", "displayName", "type", "id")}

    targets = data.get("target")
    client = data.get("client")
    return {
        "actor": party(data.get("actor")),
        "target": [party(t) for t in targets[:MAX_TARGETS] if isinstance(t, dict)] if isinstance(targets, list)
        else [],
        "client": {"ipAddress": _get(client, "ipAddress"),
                   "geographicalContext": {"city": _get(client, "geographicalContext", "city"),
                                           "country": _get(client, "geographicalContext", "country")},
                   "userAgent": {"rawUserAgent": _get(client, "userAgent", "rawUserAgent")}},
        "outcome": {"result": _get(data, "outcome", "result"), "reason": _get(data, "outcome", "reason")},
        "displayMessage": _get(data, "displayMessage"),
    }


def _party(entity: Any) -> Party:
    return Party(alternate_id=_get(entity, "alternateId"), display_name=_get(entity, "displayName"),
                 type=_get(entity, "type"), id=_get(entity, "id"))


def alert_context(
    rule: Rule, data: Mapping[str, Any], event_type: str, uuid: str, published: str, group_key: str,
    record: Mapping[str, Any],
) -> AlertContext:
    """The context of an alert the event ``data`` (``uuid``, ``published``) produced under ``rule``.

    Actor, targets, client, outcome, time and uuid all come from this one event; ``record`` is the
    engine's record of the alert (samples and, for distinct counts, the values counted).
    """
    raw_targets = data.get("target") if isinstance(data, dict) else None
    targets = tuple(_party(t) for t in raw_targets[:MAX_TARGETS] if isinstance(t, dict)) if isinstance(
        raw_targets, list) else ()
    threshold = rule.threshold
    distinct = threshold.distinct if threshold is not None else None
    return AlertContext(
        event_type=event_type,
        event_uuid=uuid,
        published=published,
        actor=_party(data.get("actor")),
        targets=targets,
        client_ip=_get(data, "client", "ipAddress"),
        city=_get(data, "client", "geographicalContext", "city"),
        country=_get(data, "client", "geographicalContext", "country"),
        user_agent=_get(data, "client", "userAgent", "rawUserAgent"),
        outcome_result=_get(data, "outcome", "result"),
        outcome_reason=_get(data, "outcome", "reason"),
        display_message=_get(data, "displayMessage"),
        rule_id=rule.id,
        description=rule.description,
        runbook=rule.runbook,
        references=rule.references,
        tags=rule.tags,
        falsepositives=rule.falsepositives,
        author=rule.author,
        group_key=group_key,
        group_by=tuple(p.text for p in rule.group_by),
        samples=_samples(record.get("samples", ())),
        window_seconds=threshold.window_seconds if threshold is not None else None,
        threshold=threshold.count if threshold is not None else None,
        distinct_field=threshold.distinct_text if threshold is not None else None,
        distinct_count=int(record.get("distinct_count", 0)) if distinct is not None else None,
        distinct_values=tuple(str(v) for v in record.get("distinct", ()))[:MAX_DISTINCT_VALUES]
        if distinct is not None else (),
        throttle_seconds=rule.throttle_seconds,
        steps=tuple(s for s in map(StepEvents.from_dict, record.get("steps", ())) if s is not None),
        when=threshold.when.text() if threshold is not None and threshold.when is not None else "",
        measures=_measures(rule, record.get("measures")),
    )


def _measures(rule: Rule, values: Any) -> tuple[tuple[str, str], ...]:
    """Each measure's value as the alert states it: a whole number plainly, else two decimals; the time
    of a ``first``/``last`` measure as UTC; an undefined one (a division by zero) as "undefined"."""
    threshold = rule.threshold
    if threshold is None or not threshold.measures or not isinstance(values, Mapping):
        return ()
    times = {m.name for m in threshold.measures if m.kind in ("first", "last")}
    out = []
    for name, value in shown(threshold, values):
        if value is None:
            text = "undefined"
        elif name in times:
            try:
                text = format_timestamp(from_micros(int(value * 1_000_000)))
            except (OverflowError, ValueError):
                text = "undefined"
        else:
            text = str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.2f}"
        out.append((name, text))
    return tuple(out)


def _samples(raw: Iterable[Any]) -> tuple[Sample, ...]:
    return tuple(s for s in map(Sample.from_dict, raw) if s is not None)
