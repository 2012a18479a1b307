"""Example events for an imported rule: a value that passes each field test, assembled per selection, so the
importer can write an inline test that matches and one that does not (checked by the real engine)."""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import re2

_REGEX_SAMPLES = ("0oa1x", "alice@example.com", "Password123", "admin", "x", "")


def passing_value(matcher: Any, lists: Mapping[str, tuple[str, ...]]) -> Any:
    """A value that passes ``matcher`` (a selection entry as written in TOML), or ``None`` for "leave the
    field out" (a negated or exists=false test)."""
    if not isinstance(matcher, dict):
        return matcher[0] if isinstance(matcher, list) else matcher
    if matcher.get("not") or matcher.get("exists") is False:
        return None
    value: Any = "x"
    for operator, operand in matcher.items():
        if operator in ("all", "ignore_case", "case_sensitive"):
            continue
        options = _operands(operand, lists)
        if operator == "equals":
            return options[0]
        if operator == "contains":
            return "x" + "x".join(options if matcher.get("all") else options[:1]) + "x"
        if operator == "startswith":
            value = options[0] + "x"
        elif operator == "endswith":
            value = "x" + options[0]
        elif operator == "glob":
            value = _from_glob(str(options[0]))
        elif operator == "regex":
            value = next((s for s in _REGEX_SAMPLES if re2.search(str(options[0]), s)), None)
        elif operator == "cidr":
            value = str(ipaddress.ip_network(str(options[0]), strict=False).network_address)
        elif operator in ("gt", "gte", "lt", "lte"):
            return float(options[0]) + {"gt": 1, "gte": 0, "lt": -1, "lte": 0}[operator]
    return value


def _operands(operand: Any, lists: Mapping[str, tuple[str, ...]]) -> list[Any]:
    if isinstance(operand, dict) and "list" in operand:
        return list(lists.get(str(operand["list"]), ("x",)))
    return list(operand) if isinstance(operand, list) else [operand]


def _from_glob(pattern: str) -> str:
    out, position = [], 0
    while position < len(pattern):
        char = pattern[position]
        if char == "[" and "]" in pattern[position + 2 :]:
            end = pattern.index("]", position + 2)
            out.append(pattern[position + 1])
            position = end
        else:
            out.append({"*": "x", "?": "y"}.get(char, char))
        position += 1
    return "".join(out)


def put(event: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted path; ``target`` is an array in Okta events, so it becomes a one-element list."""
    keys = path.split(".")
    node = event
    for position, key in enumerate(keys[:-1]):
        if position == 0 and key == "target":
            targets = node.setdefault("target", [{}])
            node = targets[0]
        else:
            node = node.setdefault(key, {})
    node[keys[-1]] = value


def selection_events(table: Mapping[str, Any], lists: Mapping[str, tuple[str, ...]]) -> Iterator[dict[str, Any]]:
    """Events built from every combination of the rule's selections (first alternative of each)."""
    detection: Mapping[str, Any] = table.get("detection", {})
    names = list(detection)[:6]
    for size in range(len(names) + 1):
        for chosen in itertools.combinations(names, size):
            event: dict[str, Any] = {}
            for name in chosen:
                selection = detection[name]
                first = selection[0] if isinstance(selection, list) else selection
                for path, matcher in first.items():
                    value = passing_value(matcher, lists)
                    if value is not None:
                        put(event, path, value)
            yield event


def example_tests(table: Mapping[str, Any], lists: Mapping[str, tuple[str, ...]],
                  matches: Callable[[str, dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """Up to two inline tests: an event that matches and one that does not, as the engine decides."""
    types = [t for t in table.get("event_types", []) if t != "*" and not t.endswith(".*")]
    event_type = types[0] if types else "user.session.start"
    positive = negative = None
    for event in selection_events(table, lists):
        event.setdefault("eventType", event_type)
        if positive is None and matches(str(event["eventType"]), event):
            positive = event
        elif negative is None and not matches(str(event["eventType"]), event):
            negative = event
    if negative is None:
        negative = {"eventType": "system.org.rate_limit.warning" if event_type != "system.org.rate_limit.warning"
                    else "user.session.start"}
    tests = []
    if positive is not None:
        tests.append({"name": "matches (generated from the Sigma detection)", "event": positive, "expect": True})
    tests.append({"name": "does not match (generated)", "event": negative, "expect": False})
    return tests
