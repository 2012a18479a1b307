"""A rule's inline tests (``[[tests]]``): their events completed with defaults, checked as they are read."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sentinel.model import format_timestamp
from sentinel.rules.model import RuleTest
from sentinel.rules.problems import Problems, severity

TEST_KEYS = ("name", "event", "events", "event_file", "expect", "expect_severity")
TEST_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def parse_tests(
    entries: object, key: str, file: Path, event_types: tuple[str, ...], rule_id: str, problems: Problems
) -> tuple[RuleTest, ...]:
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        problems.add(key, "must be an array of tables ([[tests]])")
        return ()
    default_type = next((t for t in event_types if "*" not in t), None)
    tests = []
    for position, entry in enumerate(entries):
        where = f"{key}[{position}]"
        for extra in (k for k in entry if k not in TEST_KEYS):
            problems.add(f"{where}.{extra}", f"unknown field (known: {', '.join(TEST_KEYS)})")
        events = _test_events(entry, where, file, problems)
        expect = entry.get("expect")
        if not isinstance(expect, bool | int) or (not isinstance(expect, bool) and expect < 0):
            problems.add(where + ".expect", "must be true, false or a number of alerts")
            continue
        expect_severity = None
        if "expect_severity" in entry:
            expect_severity = severity(entry["expect_severity"], where + ".expect_severity", problems)
        filled = []
        for index, event in enumerate(events):
            event = dict(event)
            event.setdefault("uuid", f"test-{rule_id}-{position}-{index}")
            event.setdefault("published", format_timestamp(TEST_EPOCH + timedelta(seconds=index)))
            if "eventType" not in event:
                if default_type is None:
                    problems.add(where, "events need an eventType (the rule names no exact type)")
                event["eventType"] = default_type or ""
            filled.append(event)
        name = entry.get("name") if isinstance(entry.get("name"), str) else f"test {position + 1}"
        tests.append(RuleTest(str(name), tuple(filled), expect, expect_severity, f"{file}: {where}"))
    return tuple(tests)


def _test_events(entry: Mapping[str, Any], where: str, file: Path, problems: Problems) -> list[dict[str, Any]]:
    given = [k for k in ("event", "events", "event_file") if k in entry]
    if len(given) != 1:
        problems.add(where, "needs exactly one of event, events or event_file")
        return []
    if "event" in entry:
        events = [entry["event"]]
    elif "events" in entry:
        events = entry["events"] if isinstance(entry["events"], list) else [None]
    else:
        name = entry["event_file"]
        if not isinstance(name, str):
            problems.add(where + ".event_file", "must be a file name")
            return []
        try:
            loaded = json.loads((file.parent / name).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            problems.add(where + ".event_file", f"cannot read {name}: {error}")
            return []
        events = loaded if isinstance(loaded, list) else [loaded]
    if not events or not all(isinstance(e, dict) for e in events):
        problems.add(where + "." + given[0], "must be one event table, or a non-empty list of them")
        return []
    return events
