"""Event values as the rule language sees them: lenient, total conversions that never raise (Okta writes many
numbers and booleans as strings), and the decoders for values Okta packs into strings (``|json``, ``|kv``)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

# Event strings longer than this are cut before they are looked at (hook bodies are capped near 1 MiB anyway).
MAX_TEXT_CHARS = 1_048_576
MAX_DECODE_CHARS = 65_536
MAX_DECODE_DEPTH = 32  # as deep as a field path can walk (field_paths.MAX_DEPTH)


# --- value normalisation: lenient, total, never raising -------------------------------------------------


def as_text(value: Any) -> str | None:
    """The text form of a scalar as Okta would have written it; None for objects, arrays and null."""
    kind = type(value)
    if kind is str:
        text: str = value
        return text if len(text) <= MAX_TEXT_CHARS else text[:MAX_TEXT_CHARS]
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value) if -(10**18) < value < 10**18 else None
    if kind is float:
        if not math.isfinite(value):
            return None
        return str(int(value)) if value.is_integer() and abs(value) < 1e18 else repr(value)
    return None


def as_number(value: Any) -> float | None:
    """A finite number from an int, float or numeric string (``"60"``); booleans are not numbers."""
    kind = type(value)
    if kind is bool:
        return None
    if kind is int or kind is float:
        try:
            number = float(value)
        except OverflowError:
            return None
    elif kind is str and len(value) <= 64:
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def as_bool(value: Any) -> bool | None:
    if type(value) is bool:
        return bool(value)
    if type(value) is str and len(value) <= 5:
        lowered = value.strip().lower()
        if lowered == "true":
            return True
        if lowered == "false":
            return False
    return None


# --- decoders for values Okta packs into strings ----------------------------------------------------------


@lru_cache(maxsize=512)
def decode_json(text: str) -> Any:
    """JSON inside a string (``threatDetections``, ``logOnlySecurityData``); None when it is not JSON."""
    if len(text) > MAX_DECODE_CHARS:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


@lru_cache(maxsize=512)
def decode_java_map(text: str) -> dict[str, Any] | None:
    """Java ``Map.toString`` text (``{New IP=POSITIVE, level=LOW}``, as in ``behaviors`` and ``risk``)."""
    return _decode_java_map(text, 0)


def _decode_java_map(text: str, level: int) -> dict[str, Any] | None:
    # Maps nested deeper than a field path can reach stay text: each level rescans its value, so
    # unbounded nesting cost O(n * depth) and hit RecursionError on hostile input.
    text = text.strip()
    if len(text) > MAX_DECODE_CHARS or not (text.startswith("{") and text.endswith("}")):
        return None
    result: dict[str, Any] = {}
    depth, start, body = 0, 0, text[1:-1]
    parts: list[str] = []
    for position, char in enumerate(body):
        if char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(body[start:position])
            start = position + 1
    parts.append(body[start:])
    for part in parts:
        key, equals, value = part.partition("=")
        if not equals:
            continue
        value = value.strip()
        nested = _decode_java_map(value, level + 1) if value.startswith("{") and level < MAX_DECODE_DEPTH else None
        result[key.strip()] = nested if nested is not None else value
    return result


DECODERS: Mapping[str, Callable[[str], Any]] = {"json": decode_json, "kv": decode_java_map}
