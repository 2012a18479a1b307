"""What an alert message needs from its event(s): plain JSON-able values, short and safe to render."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sentinel.operators import as_text

MAX_TARGETS = 10
MAX_FIELD_CHARS = 512


def _get(data: Any, *keys: str) -> str | None:
    node = data
    for key in keys:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    text = as_text(node)
    return None if text is None else text[:MAX_FIELD_CHARS]


def short_event(data: Mapping[str, Any], uuid: str, published: str) -> dict[str, Any]:
    """The few fields a message shows per sample event."""
    return {
        "uuid": uuid,
        "published": published,
        "actor": _get(data, "actor", "alternateId"),
        "ip": _get(data, "client", "ipAddress"),
    }


def event_context(data: Mapping[str, Any], event_type: str, uuid: str, published: str) -> dict[str, Any]:
    targets_raw = data.get("target") if isinstance(data, dict) else None
    targets = []
    if isinstance(targets_raw, list):
        for target in targets_raw[:MAX_TARGETS]:
            if isinstance(target, dict):
                targets.append(
                    {
                        "type": _get(target, "type"),
                        "alternateId": _get(target, "alternateId"),
                        "displayName": _get(target, "displayName"),
                    }
                )
    return {
        "event_type": event_type,
        "event_uuid": uuid,
        "published": published,
        "actor": {
            "alternateId": _get(data, "actor", "alternateId"),
            "displayName": _get(data, "actor", "displayName"),
        },
        "targets": targets,
        "client_ip": _get(data, "client", "ipAddress"),
        "city": _get(data, "client", "geographicalContext", "city"),
        "country": _get(data, "client", "geographicalContext", "country"),
        "user_agent": _get(data, "client", "userAgent", "rawUserAgent"),
        "outcome_result": _get(data, "outcome", "result"),
        "outcome_reason": _get(data, "outcome", "reason"),
        "display_message": _get(data, "displayMessage"),
    }
