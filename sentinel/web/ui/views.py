"""Shapes store rows for the templates: an event's fields as (path, value) lines, an alert as each channel
renders it (sentinel/render, the code that sends it), the pre-filled "silence alerts like this" form.
Values stay raw text here: the templates escape them."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sentinel.delivery.apprise_channel import Channel
from sentinel.model import Alert
from sentinel.render.facts import RenderOptions
from sentinel.render.message import email_message, log_record, pagerduty_message, slack_message, text_message
from sentinel.rules.field_paths import FieldPath
from sentinel.rules.model import Rule
from sentinel.rules.values import as_text

VALUE_LIMIT = 2000
MAX_FIELDS = 500


def event_fields(body: Mapping[str, Any]) -> list[tuple[str, str]]:
    """An event as rule field paths (``actor.alternateId``, ``target[0].id``) and their values, in order."""
    return list(_walk(body, ""))[:MAX_FIELDS]


def _walk(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _walk(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk(item, f"{path}[{i}]")
    else:
        text = "" if value is None else value if isinstance(value, str) else json.dumps(value)
        yield path, text if len(text) <= VALUE_LIMIT else text[:VALUE_LIMIT] + "…"


@dataclass(frozen=True)
class Rendering:
    channel: str
    destination: str  # the URL as the channel describes it (secrets masked)
    kind: str  # slack, email, pagerduty, text or log
    parts: tuple[tuple[str, str], ...]  # (label, text) as that channel sends them


def renderings(alert: Alert, channels: Mapping[str, Channel], options: RenderOptions) -> list[Rendering]:
    """The message as each configured channel (and each of its destinations) would send it."""
    shown: list[Rendering] = []
    for name, channel in channels.items():
        for destination, kind in channel.formats():
            shown.append(Rendering(name, destination, kind, _parts(kind, alert, options)))
    return shown


def _parts(kind: str, alert: Alert, options: RenderOptions) -> tuple[tuple[str, str], ...]:
    if kind == "slack":
        s = slack_message(alert, options)
        return (("header", s.header), ("text (Markdown)", s.text))
    if kind == "email":
        m = email_message(alert, options)
        return (("subject", m.subject), ("text", m.text))
    if kind == "pagerduty":
        p = pagerduty_message(alert, options)
        return (("summary", f"{p.title}\r\n{p.body}"), ("severity", p.severity), ("dedup_key", p.dedup_key),
                ("custom_details", json.dumps(dict(p.details), indent=2, ensure_ascii=False)))
    if kind == "log":
        return (("JSON line", json.dumps(log_record(alert, options), indent=2, ensure_ascii=False)),)
    t = text_message(alert, options)
    return (("title", t.title), ("body", t.body))


def silence_matchers(rule: Rule | None, bodies: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """What "silence alerts like this" proposes: the rule's group-by fields with this alert's first event's
    values (the alert group), else the actor."""
    if not bodies:
        return []
    paths = list(rule.group_by) if rule is not None and rule.group_by else [FieldPath.parse("actor.alternateId")]
    proposed = []
    for path in paths:
        values = path.values(bodies[0])
        text = as_text(values[0]) if values else None
        if text:
            proposed.append((path.text, text))
    return proposed
