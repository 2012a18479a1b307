"""What threshold measures cost (docs/rules.md "Measures"): CPU time per event in ``evaluate`` for one rule,
the distinct-count spray written the old way (``count``/``distinct``) against the same detection written
with measures, and the four-measure credential-stuffing rule; on ordinary traffic (failures spread over
many IPs and users) and on a flood (one IP failing for one user, so a ratio-style ``when`` never holds and
the group sits at its 2,000-event bound). Rules are timed interleaved (A, B, C, A, B, C, ...), best round
kept; prints µs per event and the ratio to the old way measured in the same run. Never fails.

    .venv/bin/python bench/measures.py [--events N] [--rounds R]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sentinel.model import Event
from sentinel.rules import RuleSet, load_rules
from sentinel.rules.engine import EngineState, evaluate

START = datetime(2026, 1, 1, tzinfo=UTC)
HEAD = """
id = "r"
title = "t"
severity = "high"
event_types = ["user.session.start"]
condition = "failed"
group_by = ["client.ipAddress"]
[detection.failed]
"outcome.result" = "FAILURE"
"""
RULES = {
    "distinct (old way)": HEAD + '[threshold]\ncount = 10\ndistinct = "actor.alternateId"\nwindow = "15m"\n',
    "the same with measures": HEAD + '[threshold]\nwindow = "15m"\nwhen = "users >= 10"\n'
                              '[threshold.measures]\nusers = { distinct = "actor.alternateId" }\n',
    "credential stuffing (4 measures)": HEAD + '[threshold]\nwindow = "15m"\n'
    'when = "attempts >= 25 and users >= 15 and most <= 2 and few * 100 / users >= 80"\n'
    '[threshold.measures]\nattempts = { count = true }\nusers = { distinct = "actor.alternateId" }\n'
    'most = { max_per = "actor.alternateId" }\nfew = { distinct = "actor.alternateId", per_value = [1, 2] }\n',
}


def events(count: int, flood: bool) -> list[Event]:
    out = []
    for i in range(count):
        at = START + timedelta(milliseconds=50 * i)
        ip = "203.0.113.9" if flood else f"198.51.{i % 97}.{i % 13}"
        user = "victim@example.com" if flood else f"user{(i * 7919) % 5000}@example.com"
        data = {"uuid": f"e{i}", "eventType": "user.session.start", "published": at.isoformat(),
                "actor": {"alternateId": user}, "client": {"ipAddress": ip}, "outcome": {"result": "FAILURE"}}
        out.append(Event(f"e{i}", "user.session.start", at, data))
    return out


def per_event_us(ruleset: RuleSet, batch: list[Event]) -> float:
    state = EngineState()
    start = time.process_time()
    for item in batch:
        _, state = evaluate(ruleset, item, state, item.published)
    return (time.process_time() - start) / len(batch) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=6_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rulesets = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, text in RULES.items():
            path = Path(folder) / f"{len(rulesets)}.toml"
            path.write_text(text, encoding="utf-8")
            rulesets[name] = load_rules([path])
    print(f"load average {os.getloadavg()[0]:.2f}; {args.events} events, best of {args.rounds} interleaved rounds")
    for traffic, flood in (("ordinary traffic", False), ("flood: one IP, one user", True)):
        batch = events(args.events, flood)
        best = dict.fromkeys(rulesets, float("inf"))
        for _ in range(args.rounds):
            for name, ruleset in rulesets.items():
                best[name] = min(best[name], per_event_us(ruleset, batch))
        base = best["distinct (old way)"]
        print(f"\n{traffic}")
        for name, us in best.items():
            print(f"  {name:34} {us:8.1f} µs/event  {us / base:5.2f}x")
    print(f"\nload average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
