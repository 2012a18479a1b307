"""Memory: resident set size of the engine after 1 million events through 100,000 distinct groups.

What is measured: this process's RSS (VmRSS in /proc/self/status) while the pure engine evaluates
synthetic sign-in failures through two stateful rules:
- a count threshold (>= 20 failures per user within 2 minutes), grouped by ``actor.alternateId``;
- a distinct count (>= 20 distinct users failing from one IP within 2 minutes), grouped by
  ``client.ipAddress``.
Events come in 4 generations of 250,000. Each generation has its own 50,000 users and 50,000 source IPs:
100,000 distinct groups, each seen 5 times (100 s apart). Event time advances 2 ms per event (--quick: 13 ms),
so a generation spans 500 s and the previous generation's windows (2 min + 2 min hold) expire early in the
next one: the live groups peak at about 200,000 at each changeover, then fall back to 100,000. RSS is
printed at checkpoints; it should be the same at the same point of every generation (flat), not grow
with the events seen.

Baseline: RSS of the same process after loading the rules, before the first event (the interpreter,
Sentinel and its libraries).

The engine's group cap (``max_groups``, 100,000 in the shipped config) is raised to 250,000 here so the
changeover peak fits without eviction: what is measured is the cost of live windows, not of the cap
throwing them away (the cap bounds memory further: RSS ~ baseline + max_groups x the per-group cost).

Targets: <= 300 MB RSS at every checkpoint; flat: RSS at the end of the last generation within 30 MB of
the end of the second.
"""

from __future__ import annotations

import copy
import gc
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common import Report, arguments, pin_to, rss_mb, table, template

from sentinel.model import Event
from sentinel.rules import load_rules
from sentinel.rules.engine import EngineState, evaluate

START = datetime(2026, 1, 1, tzinfo=UTC)
GENERATION_SPAN = timedelta(seconds=500)
PER_RULE = 50_000  # users, and source IPs, per generation
GENERATION = 250_000

RULES = """
[[rules]]
id = "bench-threshold-user"
title = "Failures for {actor.alternateId}"
description = "Count threshold per user."
severity = "medium"
event_types = ["user.session.start"]
condition = "failed"
group_by = ["actor.alternateId"]
[rules.detection.failed]
"outcome.result" = "FAILURE"
[rules.threshold]
count = 20
window = "2m"

[[rules]]
id = "bench-distinct-ip"
title = "Spraying from {client.ipAddress}"
description = "Distinct users per IP."
severity = "high"
event_types = ["user.session.start"]
condition = "failed"
group_by = ["client.ipAddress"]
[rules.detection.failed]
"outcome.result" = "FAILURE"
[rules.threshold]
count = 20
distinct = "actor.alternateId"
window = "2m"
"""


def main() -> None:
    args = arguments(__doc__)
    pin_to(0)
    total = 150_000 if args.quick else 1_000_000
    generation_size = 37_500 if args.quick else GENERATION
    every = generation_size // 5
    step = GENERATION_SPAN / generation_size  # a generation always spans 500 s of event time
    with tempfile.TemporaryDirectory(prefix="sentinel-bench-mem-") as tmp:
        (Path(tmp) / "rules.toml").write_text(RULES, encoding="utf-8")
        ruleset = load_rules([tmp])
    base = template("session-start.json")
    base["outcome"] = {"result": "FAILURE", "reason": "INVALID_CREDENTIALS"}
    per_rule = generation_size // 5
    state = EngineState(max_groups=250_000)
    gc.collect()
    baseline = rss_mb()
    print(f"memory: {total:,} events in generations of {generation_size:,}, each with {per_rule:,} users and "
          f"{per_rule:,} IPs ({2 * per_rule:,} groups); baseline RSS {baseline:.1f} MB", flush=True)
    rows = []
    checkpoints: dict[int, float] = {}
    peak = baseline
    started = time.perf_counter()
    alerts = 0
    for i in range(total):
        generation, k = divmod(i, generation_size)
        user, ip = k % per_rule, (k * 7 + k // per_rule) % per_rule
        published = START + i * step
        # Only what the engine reads is built per event; it keeps none of the event itself.
        data = copy.copy(base)
        data["uuid"] = f"ev-{i}"
        data["published"] = published.isoformat()
        data["actor"] = {"alternateId": f"u{generation}-{user}@example.com", "type": "User"}
        data["client"] = {"ipAddress": f"10.{generation}.{ip // 256}.{ip % 256}"}
        found, state = evaluate(ruleset, Event(data["uuid"], "user.session.start", published, data), state,
                                published)
        alerts += len(found)
        if (i + 1) % 10_000 == 0:
            state.take_changes()  # the detector does this after every batch; keeps the change sets small
            peak = max(peak, rss_mb())
        if (i + 1) % every == 0:
            rss = rss_mb()
            peak = max(peak, rss)
            checkpoints[i + 1] = rss
            rows.append([i + 1, f"{rss:.1f}", f"{rss - baseline:.1f}", state.group_count, state.expired_groups,
                         state.evicted_groups, f"{(i + 1) / (time.perf_counter() - started):,.0f}"])
            print(f"  {i + 1:>9,} events: RSS {rss:6.1f} MB  live groups {state.group_count:,}  "
                  f"expired {state.expired_groups:,}", flush=True)
    print()
    print(table(["events", "RSS MB", "over baseline", "live groups", "expired", "evicted", "events/s"], rows))
    print(f"alerts emitted: {alerts:,}; peak RSS {peak:.1f} MB")
    second_end = checkpoints.get(2 * generation_size, baseline)
    growth = checkpoints[total] - second_end
    print(f"RSS at the end of generation 2: {second_end:.1f} MB; at the end of the run: {checkpoints[total]:.1f} MB "
          f"(growth {growth:+.1f} MB)")
    print()
    report = Report("memory")
    report.add(f"memory peak RSS over {total:,} events", peak, 300, "MB", higher_is_better=False)
    report.add("memory growth, end of generation 2 -> end of run", growth, 30, "MB", higher_is_better=False)
    report.write(args.json)


if __name__ == "__main__":
    main()
