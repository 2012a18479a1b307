"""Offline replay: read saved events (JSON lines, JSON arrays, hook POST bodies), run the engine, no sending."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sentinel.engine import EngineState, evaluate
from sentinel.errors import PayloadError
from sentinel.model import Alert, Event, format_timestamp
from sentinel.okta import parse_event
from sentinel.rule_model import RuleSet


@dataclass
class ReadReport:
    events: list[Event] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # "source: location: message", one per skipped item


def _elements(document: Any, where: str) -> Iterator[tuple[Any, str]]:
    """Events inside one JSON document: a hook body, an array, or a single event."""
    if isinstance(document, dict) and isinstance(document.get("data"), dict) and "events" in document["data"]:
        events = document["data"]["events"]
        if isinstance(events, list):
            for index, raw in enumerate(events):
                yield raw, f"{where}data.events[{index}]"
        else:
            yield events, f"{where}data.events"
    elif isinstance(document, list):
        for index, raw in enumerate(document):
            yield from _elements(raw, f"{where}[{index}]") if _is_body(raw) else [(raw, f"{where}[{index}]")]
    else:
        yield document, where.rstrip(".") or "event"


def _is_body(raw: Any) -> bool:
    return isinstance(raw, dict) and isinstance(raw.get("data"), dict) and "events" in raw["data"]


def read_events(text: str, source: str, report: ReadReport) -> None:
    """Add the events in ``text`` to ``report``; anything unusable is reported with its location and skipped."""
    stripped = text.strip()
    if not stripped:
        return
    documents: list[tuple[Any, str]] = []
    try:
        documents.append((json.loads(stripped), ""))  # one document: a body, an array or an event
    except ValueError:
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                documents.append((json.loads(line), f"line {number}: "))
            except ValueError as error:
                report.problems.append(f"{source}: line {number}: not JSON ({error})")
    for document, prefix in documents:
        for raw, location in _elements(document, ""):
            try:
                report.events.append(parse_event(raw, location or "event"))
            except PayloadError as error:
                report.problems.append(f"{source}: {prefix}{error}")


def replay(ruleset: RuleSet, events: Iterable[Event], max_groups: int = 100_000) -> list[Alert]:
    """Evaluate in ``published`` order with event time as ``now``; one (final) alert per alert key."""
    unique: dict[str, Event] = {}
    for event in events:
        unique.setdefault(event.uuid, event)  # Okta delivers at least once
    state = EngineState(max_groups=max_groups)
    alerts: dict[str, Alert] = {}
    for event in sorted(unique.values(), key=lambda e: e.published):
        found, state = evaluate(ruleset, event, state, event.published)
        for alert in found:
            alerts[alert.key] = alert  # later versions carry the grown count
    return list(alerts.values())


def alert_json(alert: Alert) -> dict[str, Any]:
    return {
        "rule_id": alert.rule_id,
        "severity": alert.severity.label,
        "title": alert.title,
        "summary": alert.summary,
        "group_key": alert.group_key,
        "count": alert.count,
        "first_seen": format_timestamp(alert.first_seen),
        "last_seen": format_timestamp(alert.last_seen),
        "event_uuids": list(alert.event_uuids),
        "key": alert.key,
        "channels": list(alert.channels) if alert.channels is not None else None,
    }
