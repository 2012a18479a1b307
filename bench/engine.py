"""Engine: events per second through the pure engine, ``evaluate(ruleset, event, state, now)``, on one core.

What is measured: the CPU time (``time.process_time``, so other work on the machine does not count)
spent in ``evaluate`` alone (events are built before the clock starts), pinned to one CPU, for a
realistic Okta mix: mostly sign-ins (a tenth of them failures feeding the stateful brute-force and
password-spraying rules), SSO and policy events no rule reads, and a few lock-outs, privilege grants,
rate-limit warnings, suspicious-activity reports and API-token creations, built from real event shapes
in ``bench/data``.

Rule sets, each compared with the default pack measured in the same run (the baseline):
- the default pack (``rules/``);
- plus 10x and 100x as many synthetic rules on *other* event types (the index should make them free);
- plus 10x and 100x as many synthetic rules on the *same* event types (every one is matched: the cost
  grows with them, which is expected; printed as the curve; the 100x run uses a tenth of the events,
  so its alert count is not comparable).

Targets: >= 50,000 events/s for the default pack; >= 80% of that with 100x rules on other event types.
"""

from __future__ import annotations

import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common import ROOT, Report, arguments, make_event, pin_to, table, template

from sentinel.model import Event, format_timestamp
from sentinel.rules import load_rules
from sentinel.rules.engine import EngineState, evaluate

START = datetime(2026, 1, 1, tzinfo=UTC)
STEP = timedelta(milliseconds=50)  # an org producing 20 events/s, every one delivered to the hook

# (weight, event type, template, outcome, user pool, ip pool)
MIX: list[tuple[int, str, str, str | None, int, int]] = [
    (55, "user.session.start", "session-start.json", "SUCCESS", 20_000, 5_000),
    (10, "user.session.start", "session-start.json", "FAILURE", 2_000, 500),
    (5, "user.authentication.authenticate", "session-start.json", "FAILURE", 2_000, 500),
    (10, "user.authentication.sso", "session-start.json", "SUCCESS", 20_000, 5_000),
    (9, "policy.evaluate_sign_on", "session-start.json", "SUCCESS", 20_000, 5_000),
    (4, "user.account.lock", "session-start.json", "FAILURE", 2_000, 500),
    (3, "user.account.privilege.grant", "privilege-grant.json", None, 200, 100),
    (2, "system.org.rate_limit.warning", "rate-limit-warning.json", None, 50, 50),
    (1, "user.account.report_suspicious_activity_by_enduser", "suspicious-activity-report.json", None, 20_000, 5_000),
    (1, "system.api_token.create", "privilege-grant.json", "SUCCESS", 200, 100),
]
MIX_TYPES = sorted({m[1] for m in MIX})

# Realistic conditions for the synthetic rules (none of them matches the generated events).
SYNTHETIC_DETECTIONS = [
    '"actor.alternateId" = "nobody-{n}@example.com"',
    '"client.userAgent.rawUserAgent" = {{ contains = "sqlmap-{n}" }}',
    '"client.ipAddress" = {{ cidr = ["10.{a}.0.0/16"] }}',
    '"target.displayName" = {{ startswith = "svc-{n}-" }}',
    '"actor.alternateId" = {{ regex = "^attacker{n}[0-9]+@" }}',
    '"debugContext.debugData.requestUri" = {{ endswith = "/api/v1/bench{n}" }}',
]


def build_events(count: int, rng: random.Random, offset: int) -> list[Event]:
    templates: dict[str, dict[str, Any]] = {}
    weights = [m[0] for m in MIX]
    events = []
    for i in range(count):
        _, event_type, name, outcome, users, ips = rng.choices(MIX, weights)[0]
        base = templates.setdefault(name, template(name))
        published = START + (offset + i) * STEP
        u, ip = rng.randrange(users), rng.randrange(ips)
        data = make_event(base, f"ev-{offset + i}", format_timestamp(published), event_type=event_type,
                          user=f"user{u}@example.com", ip=f"198.{ip // 250 % 250}.{ip % 250}.1", result=outcome)
        events.append(Event(uuid=data["uuid"], event_type=event_type, published=published, data=data))
    return events


def write_synthetic(folder: Path, count: int, same_types: bool) -> None:
    lines = []
    for n in range(count):
        event_type = MIX_TYPES[n % len(MIX_TYPES)] if same_types else f"bench.synthetic.type{n:05}"
        detection = SYNTHETIC_DETECTIONS[n % len(SYNTHETIC_DETECTIONS)].format(n=n, a=n % 250)
        lines.append(f"""
[[rules]]
id = "bench-{"same" if same_types else "other"}-{n:05}"
title = "Synthetic rule {n} for {{actor.alternateId}}"
description = "Benchmark filler."
severity = "low"
event_types = ["{event_type}"]
condition = "selection"
[rules.detection.selection]
{detection}
""")
    (folder / "synthetic.toml").write_text("".join(lines), encoding="utf-8")


def throughput(ruleset: Any, passes: list[list[Event]], limit: int | None = None) -> tuple[float, int]:
    """Events/s (best of the passes after the first, which warms caches) and alerts seen. ``limit``
    shortens each pass, for rule sets so slow that full passes would take minutes."""
    state = EngineState()
    now = passes[-1][-1].published + timedelta(seconds=1)
    rates = []
    alerts = 0
    for events in passes:
        events = events[:limit]
        started = time.process_time()  # CPU time: other processes on the machine do not count against us
        for event in events:
            found, state = evaluate(ruleset, event, state, now)
            alerts += len(found)
        rates.append(len(events) / (time.process_time() - started))
    return max(rates[1:] or rates), alerts


def main() -> None:
    args = arguments(__doc__)
    pin_to(0)
    per_pass = 10_000 if args.quick else 30_000
    npasses = 3 if args.quick else 4
    rng = random.Random(7)  # noqa: S311 - a repeatable workload, not a secret
    passes = [build_events(per_pass, rng, k * per_pass) for k in range(npasses)]
    default_dir = ROOT / "rules"
    base_count = len(load_rules([default_dir]))
    print(f"engine: {npasses} passes of {per_pass:,} events (best pass after the first counts), "
          f"default pack {base_count} rules, pinned to CPU 0", flush=True)
    rows = []
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="sentinel-bench-rules-") as tmp:
        for label, factor, same in [("default pack", 0, False), ("+10x other types", 10, False),
                                    ("+100x other types", 100, False), ("+10x same types", 10, True),
                                    ("+100x same types", 100, True)]:
            paths: list[Path] = [default_dir]
            if factor:
                folder = Path(tmp) / f"{factor}-{same}"
                folder.mkdir()
                write_synthetic(folder, factor * base_count, same)
                paths.append(folder)
            loaded = time.perf_counter()
            ruleset = load_rules(paths)
            load_seconds = time.perf_counter() - loaded
            rate, alerts = throughput(ruleset, passes, per_pass // 10 if same and factor == 100 else None)
            figures[label] = rate
            ratio = rate / figures["default pack"]
            rows.append([label, len(ruleset), rate, f"{100 * ratio:.0f}%", f"{1e6 / rate:.1f}",
                         alerts, f"{load_seconds:.2f}"])
            print(f"  {label:18} {len(ruleset):5} rules: {rate:10,.0f} events/s ({100 * ratio:.0f}% of default)",
                  flush=True)
    print()
    print(table(["rule set", "rules", "events/s", "vs default", "µs/event", "alerts", "load s"], rows))
    print()
    report = Report("engine")
    report.add("engine events/s, default pack", figures["default pack"], 50_000, "events/s")
    report.add("engine with 100x rules on other types vs default",
               100 * figures["+100x other types"] / figures["default pack"], 80, "%")
    report.write(args.json)


if __name__ == "__main__":
    main()
