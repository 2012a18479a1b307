"""The 24 imported Sigma rules (rules/sigma, all switched on for the run) in the pure engine, against
pySigma's own SQLite backend (the Zircolite way: events flattened into one table, one column per dotted field
path, each rule's generated SQL run over it), on the realistic Okta mix of bench/engine.py. Not a test: it
prints figures and same-run ratios (docs/benchmarks.md "Sigma rules").

    .venv/bin/python bench/sigma_rules.py [--events N]

- engine: CPU time (``time.process_time``) in ``evaluate`` alone, one core, events built beforehand;
- SQLite: CPU time of the query phase only (the table is built first, as Zircolite does before it queries);
- rules that read every event type (the five with ``event_types = ["*"]``) vs indexed rules, per rule per
  event of the mix: the group's shared lookup (the event-type index for indexed rules, the prefilter value
  index for every-type rules) plus its rules' conditions where the engine runs them, divided by the group's
  rules (``dispatch_costs``); also the every-type rules as run before the index (each its own prefilter);
- sequences: okta-mfa-push-fatigue (pack) per event it reads, and the state kept per group, on three
  loads: 5,000 users, 20 busy users, and a push-bombing attack under way (the search's worst case);
- first-seen: okta-admin-console-new-country (pack), the same figures.
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
from collections.abc import Callable
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


DELIVERY = 50  # events parsed together before they are evaluated, as the detector unpacks a delivery


def _cpu_ns(loop: Callable[[list[Any]], object], texts: list[str], passes: int = 3) -> float:
    """Best CPU ns of ``loop`` over the events ``texts``, less the same iteration doing nothing. The events
    are parsed afresh, a delivery at a time, just before the loop reads them, as the detector does: new
    strings whose hashes are not yet computed, in memory the parse has just touched."""
    best = baseline = float("inf")
    for _ in range(passes):
        spent = idle = 0.0
        for low in range(0, len(texts), DELIVERY):
            datas = [json.loads(text) for text in texts[low:low + DELIVERY]]
            started = time.process_time()
            loop(datas)
            spent += time.process_time() - started
            datas = [json.loads(text) for text in texts[low:low + DELIVERY]]
            started = time.process_time()
            [d for d in datas]
            idle += time.process_time() - started
        best, baseline = min(best, spent), min(baseline, idle)
    return max(best - baseline, 0.0) * 1e9


def _matcher_ns(rule: Rule, texts: list[str]) -> float:
    """CPU ns of a rule's condition over the events it is run on (alerts not built)."""
    matcher = rule.matcher
    return _cpu_ns(lambda datas: [matcher(d) for d in datas], texts)


def dispatch_costs(ruleset: RuleSet, events: list[Event]) -> dict[str, float]:
    """Total CPU ns over ``events`` of each part of finding and running the rules (alerts not built), the
    events parsed afresh, a delivery at a time, for each pass:

    - ``type_lookup``: the event-type index (``rules_for``), charged to the rules indexed on event type;
    - ``indexed_rules``: each indexed rule's condition on the events of its types;
    - ``value_index``: the shared prefilter index (``prefilters.admitted``), charged to the rules on every type;
    - ``every_rules``: each every-type rule's condition on the events the index admits;
    - ``per_rule_prefilters``: the every-type rules as the engine ran them before the index: each its own
      prefilter on every event, then its condition where admitted (no shared lookup).
    """
    texts = [json.dumps(e.data) for e in events]
    types = [e.event_type for e in events]
    rules = [r for r in ruleset.rules if r.enabled]
    every = [r for r in rules if "*" in r.event_types]
    indexed = [r for r in rules if "*" not in r.event_types]
    costs = {"type_lookup": _cpu_ns(lambda datas: [ruleset.rules_for(d["eventType"]) for d in datas], texts)}
    costs["indexed_rules"] = sum(_matcher_ns(r, [x for t, x in zip(types, texts, strict=True) if r.applies_to(t)])
                                 for r in indexed)
    index = getattr(ruleset, "prefilters", None)  # absent before the shared index (an A/B run on older code)
    if index is not None:
        admitted = [index.admitted(e.data) for e in events]
        costs["value_index"] = _cpu_ns(lambda datas: [index.admitted(d) for d in datas], texts)
        costs["every_rules"] = sum(_matcher_ns(r, [x for a, x in zip(admitted, texts, strict=True)
                                                   if r.prefilter is None or r.id in a]) for r in every)
    per_rule = 0.0
    for rule in every:
        if rule.prefilter is None:
            per_rule += _matcher_ns(rule, texts)
            continue
        admits, matcher = rule.prefilter.admits, rule.matcher
        per_rule += _cpu_ns(lambda datas, a=admits, m=matcher: [a(d) and m(d) for d in datas], texts)
    costs["per_rule_prefilters"] = per_rule
    costs["every"], costs["indexed"] = len(every), len(indexed)
    return costs


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


def busy_push_events(count: int, rng: random.Random) -> list[Event]:
    """The pushes of ``push_events`` for only 20 users: many events per group, sequences completing often."""
    events = push_events(count, rng)
    for event in events:
        event.data["actor"]["alternateId"] = f"busy{rng.randrange(20)}@example.com"
    return events


def push_bombing_events(count: int, rng: random.Random) -> list[Event]:
    """A push-bombing attack under way for 10 users: each has 64 accepted pushes kept from the hours before
    (a full step), then only denials, every few seconds: a search's worst case (both steps full, many runs
    of denials, no accept after them, so nothing completes and nothing is spent)."""
    base = template("session-start.json")
    events = []
    for i in range(count):
        user = i % 10
        if i < 640:
            published, result = START + timedelta(minutes=i // 10), "SUCCESS"
        else:
            published, result = START + timedelta(hours=2, seconds=i), "FAILURE"
        data = make_event(base, f"bomb-{i}", format_timestamp(published), event_type="user.authentication.auth_via_mfa",
                          user=f"target{user}@example.com", result=result)
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
                                ("okta-mfa-push-fatigue", "sequence, 20 busy users:", busy_push_events),
                                ("okta-mfa-push-fatigue", "sequence, push bombing under way:", push_bombing_events),
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
    gc.collect()  # the state's live records only, not garbage a collection would free
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    groups = max(state.group_count, 1)
    return [name, count, round(seconds / count * 1e6, 2), groups, round((after - before) / groups)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    pin_to(0)
    rng = random.Random(14)  # noqa: S311 - a repeatable workload, not a secret
    events = build_events(args.events, rng, 0)
    rules = [dataclasses.replace(r, enabled=True) for r in load_rules([SIGMA]).rules]
    every = [r for r in rules if "*" in r.event_types]
    n = len(events)

    ruleset = RuleSet(rules)
    all_s = engine_seconds(ruleset, events)
    sql_s, sql_matches = sqlite_query_seconds(events)
    costs = dispatch_costs(ruleset, events)

    print(f"{n:,} events, {len(rules)} Sigma rules ({len(every)} read every event type), one core, CPU time")
    print(table(["what", "events/s", "µs/event"], [
        ["engine, 24 Sigma rules", round(n / all_s), round(all_s / n * 1e6, 2)],
        ["pySigma SQLite, query phase", round(n / sql_s), round(sql_s / n * 1e6, 2)],
    ]))
    print(f"engine / SQLite: {sql_s / all_s:.1f}x  (SQLite rows matched: {sql_matches})")
    n_every, n_indexed = int(costs["every"]), int(costs["indexed"])
    indexed = (costs["type_lookup"] + costs["indexed_rules"]) / n_indexed / n
    rows = [["indexed on event type", n_indexed, "event-type lookup", round(costs["type_lookup"] / n, 1),
             round(costs["indexed_rules"] / n, 1), round(indexed, 1), "1.0x"]]
    if "value_index" in costs:
        shared = (costs["value_index"] + costs["every_rules"]) / n_every / n
        rows.append(["every type: shared value index", n_every, "value index", round(costs["value_index"] / n, 1),
                     round(costs["every_rules"] / n, 1), round(shared, 1), f"{shared / indexed:.1f}x"])
    per_rule = costs["per_rule_prefilters"] / n_every / n
    rows.append(["every type: own prefilter each", n_every, "none", 0, round(costs["per_rule_prefilters"] / n, 1),
                 round(per_rule, 1), f"{per_rule / indexed:.1f}x"])
    print(table(["rule group", "rules", "shared lookup", "lookup ns/event", "rules' own ns/event",
                 "ns per rule per event", "vs indexed"], rows))
    print("ns per rule per event = (shared lookup + the group's conditions where run) / rules / events; "
          "target: every type <= 2x indexed")
    sequence = sequence_figures(min(n, 20_000), rng)
    if sequence:
        print(table(["rule", "events read", "µs/event", "groups", "bytes/group"], sequence))


if __name__ == "__main__":
    main()
