"""The 24 imported Sigma rules (rules/sigma, all switched on for the run) in the pure engine, against
pySigma's own SQLite backend (the Zircolite way: events flattened into one table, one column per dotted field
path, each rule's generated SQL run over it), on the realistic Okta mix of bench/engine.py. Not a test: it
prints figures and same-run ratios (docs/benchmarks.md "Sigma rules").

    .venv/bin/python bench/sigma_rules.py [--events N]

- engine: CPU time (``time.process_time``) in ``evaluate`` alone, one core, events built beforehand;
- SQLite: CPU time of the query phase only (the table is built first, as Zircolite does before it queries);
- rules that read every event type (the five with ``event_types = ["*"]``) vs indexed rules: the engine's
  each rule's own work per event of the mix (its prefilter, then its condition where the engine runs it;
  the event-type lookup and the per-event overhead every rule set pays are not charged), mean per group;
- sequences: okta-mfa-push-fatigue (pack) per event it reads, and the state kept per group.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import random
import re
import sqlite3
import time
import tracemalloc
from datetime import timedelta
from typing import Any

from common import ROOT, make_event, pin_to, table, template
from engine import START, build_events

from sentinel.model import Event, format_timestamp
from sentinel.rules import RuleSet, load_rules
from sentinel.rules.engine import EngineState, evaluate
from sentinel.rules.model import Rule

SIGMA = ROOT / "rules" / "sigma"


def engine_seconds(ruleset: RuleSet, events: list[Event], passes: int = 3) -> float:
    """Best CPU seconds of ``passes`` runs over the events (fresh state each)."""
    now = events[-1].published + timedelta(seconds=1)
    best = float("inf")
    for _ in range(passes):
        state = EngineState()
        started = time.process_time()
        for event in events:
            _, state = evaluate(ruleset, event, state, now)
        best = min(best, time.process_time() - started)
    return best


def rule_ns(rule: Rule, events: list[Event], passes: int = 5) -> float:
    """CPU ns per event of the mix for one rule's own work, as ``evaluate`` does it (alerts not built)."""
    applies = [rule.applies_to(e.event_type) for e in events]  # the index: one dict lookup shared by all rules
    datas = [e.data for e in events]
    admits, matcher = (rule.prefilter.admits if rule.prefilter else None), rule.matcher
    best = baseline = float("inf")
    for _ in range(passes):
        started = time.process_time()
        for reads, data in zip(applies, datas, strict=True):
            if reads and (admits is None or admits(data)):
                matcher(data)
        best = min(best, time.process_time() - started)
        started = time.process_time()
        for reads, data in zip(applies, datas, strict=True):
            if reads and data is None:
                pass
        baseline = min(baseline, time.process_time() - started)
    return max(best - baseline, 0.0) / len(events) * 1e9


def rows_of(value: Any, prefix: str = "") -> list[dict[str, str]]:
    """One row per element of each array of objects (Sigma's any-element reading), dotted paths as keys."""
    if isinstance(value, dict):
        rows: list[dict[str, str]] = [{}]
        for key, child in value.items():
            child_rows = rows_of(child, f"{prefix}{key}.")
            rows = [{**r, **c} for r in rows for c in child_rows]
        return rows
    if isinstance(value, list):
        return [r for element in value for r in rows_of(element, prefix)] or [{}]
    if value is None:
        return [{}]
    return [{prefix[:-1]: json.dumps(value) if isinstance(value, bool | int | float) else str(value)}]


def sqlite_query_seconds(events: list[Event], passes: int = 3) -> tuple[float, int]:
    from sigma.backends.sqlite.sqlite import sqliteBackend
    from sigma.collection import SigmaCollection
    from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
    from sigma.processing.transformations import ValueListPlaceholderTransformation

    pipeline = ProcessingPipeline(items=[ProcessingItem(ValueListPlaceholderTransformation())],
                                  vars={"legtimate_identifiers": ["placeholder.invalid"]})
    collection = SigmaCollection.load_ruleset([ROOT / "tests" / "data" / "sigma-okta"])
    queries = [q for rule in collection.rules for q in sqliteBackend(processing_pipeline=pipeline).convert_rule(rule)]
    rows = [row for event in events for row in rows_of(dict(event.data))]
    columns = sorted({c for row in rows for c in row} | set(re.findall(r"`([^`]+)`", " ".join(queries)))
                     | {"eventType", "legacyEventType", "displayMessage"})
    db = sqlite3.connect(":memory:")
    db.create_function("regexp", 2, lambda p, t: t is not None and re.search(p, t) is not None, deterministic=True)
    db.execute("CREATE TABLE logs (" + ", ".join(f'"{c}" TEXT COLLATE NOCASE' for c in columns) + ")")
    for row in rows:
        db.execute(f"INSERT INTO logs ({', '.join(repr(c) for c in row)}) VALUES ({', '.join('?' * len(row))})",
                   list(row.values()))
    db.commit()
    best, matched = float("inf"), 0
    for _ in range(passes):
        started = time.process_time()
        matched = sum(len(db.execute(q).fetchall()) for q in queries)
        best = min(best, time.process_time() - started)
    return best, matched


def push_events(count: int, rng: random.Random) -> list[Event]:
    """Okta Verify pushes for many users: mostly accepted, some denied runs, now and then fatigue."""
    base = template("session-start.json")
    events = []
    for i in range(count):
        published = START + timedelta(seconds=i)
        user = f"user{rng.randrange(count // 4)}@example.com"
        result = "FAILURE" if rng.random() < 0.3 else "SUCCESS"
        data = make_event(base, f"push-{i}", format_timestamp(published), event_type="user.authentication.auth_via_mfa",
                          user=user, result=result)
        data["debugContext"]["debugData"]["factor"] = "OKTA_VERIFY_PUSH"
        events.append(Event(uuid=data["uuid"], event_type="user.authentication.auth_via_mfa", published=published,
                            data=data))
    return events


def admin_console_events(count: int, rng: random.Random) -> list[Event]:
    """Admin Console sign-ins: 500 admins, mostly from their own two countries, now and then another."""
    base = template("session-start.json")
    countries = ["United States", "Canada", "Germany", "France", "India", "Japan", "Brazil", "Australia"]
    events = []
    for i in range(count):
        published = START + timedelta(seconds=i)
        admin = rng.randrange(500)
        country = countries[admin % 2] if rng.random() < 0.97 else rng.choice(countries)
        data = make_event(base, f"admin-{i}", format_timestamp(published), event_type="user.session.access_admin_app",
                          user=f"admin{admin}@example.com", result="SUCCESS")
        data.setdefault("client", {}).setdefault("geographicalContext", {})["country"] = country
        events.append(Event(uuid=data["uuid"], event_type="user.session.access_admin_app", published=published,
                            data=data))
    return events


def sequence_figures(count: int, rng: random.Random) -> list[list[Any]]:
    """Per-event CPU and state memory per group of the pack's sequence and first-seen rules."""
    pack = load_rules([ROOT / "rules"])
    rows = []
    for rule_id, what, make in (("okta-mfa-push-fatigue", "sequence", push_events),
                                ("okta-admin-console-new-country", "first-seen", admin_console_events)):
        rule = next((r for r in pack.rules if r.id == rule_id), None)
        if rule is not None:
            rows.append(_stateful_row(rule, f"{what} {rule_id}", make(count, rng)))
    return rows


def _stateful_row(rule: Rule, name: str, events: list[Event]) -> list[Any]:
    count = len(events)
    seconds = engine_seconds(RuleSet([rule]), events)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    state = EngineState()
    for event in events:
        _, state = evaluate(RuleSet([rule]), event, state, event.published)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    groups = max(state.group_count, 1)
    return [name, count, round(seconds / count * 1e6, 2), groups, round((after - before) / groups)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    pin_to(0)
    rng = random.Random(14)
    events = build_events(args.events, rng, 0)
    rules = [dataclasses.replace(r, enabled=True) for r in load_rules([SIGMA]).rules]
    every = [r for r in rules if r.event_types == ("*",)]
    indexed = [r for r in rules if r.event_types != ("*",)]
    n = len(events)

    all_s = engine_seconds(RuleSet(rules), events)
    sql_s, sql_matches = sqlite_query_seconds(events)
    per_every = sum(rule_ns(r, events) for r in every) / len(every)
    per_indexed = sum(rule_ns(r, events) for r in indexed) / len(indexed)

    print(f"{n:,} events, {len(rules)} Sigma rules ({len(every)} read every event type), one core, CPU time")
    print(table(["what", "events/s", "µs/event"], [
        ["engine, 24 Sigma rules", round(n / all_s), round(all_s / n * 1e6, 2)],
        ["pySigma SQLite, query phase", round(n / sql_s), round(sql_s / n * 1e6, 2)],
    ]))
    print(f"engine / SQLite: {sql_s / all_s:.1f}x  (SQLite rows matched: {sql_matches})")
    print(table(["rule group", "rules", "ns per rule per event"], [
        ["read every event type", len(every), round(per_every, 1)],
        ["indexed on event type", len(indexed), round(per_indexed, 1)],
    ]))
    print(f"every-type / indexed cost per rule: {per_every / per_indexed:.1f}x (target <= 2x)")
    sequence = sequence_figures(min(n, 20_000), rng)
    if sequence:
        print(table(["rule", "events read", "µs/event", "groups", "bytes/group"], sequence))


if __name__ == "__main__":
    main()
