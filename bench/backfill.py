"""Back-fill: the real daemon's first start reading one large org's day of System Log (400,000 events) from
the fake Okta server (tests/fake_okta.py, a real HTTP server in this process), until the last alert.

What is measured: ``python -m sentinel serve`` with ``[okta.api]`` pointed at the fake (SSWS token,
``backfill_hours = 25``, the fake's rate limit ``--rate-limit`` requests per minute, Okta's Workforce
figure by default, of which the poller uses its default share). The events are real Okta events
re-stamped over the last 24 hours; one rule (``bench-threat``) alerts on the ThreatInsight event that is
the newest of them, so its arrival in the log channel is "the last alert". Reported: events stored per
second from the daemon's start, the time until every event is stored and evaluated, and the time to the
last alert; also the requests the fake answered and its 429s (the poller must cause none).

Not a test and not for a shared machine: the lead runs it (``python bench/backfill.py``); ``--events
20000`` is a smoke run. Record results in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common import ROOT, Processes, Report, free_port, machine, sentinel_config, start_sentinel, table

sys.path.insert(0, str(ROOT / "tests"))
from fake_okta import FakeOkta

TOKEN = "00benchBackfillTokenSSWS"
RULE = """
id = "bench-threat"
title = "threat {client.ipAddress}"
severity = "high"
event_types = ["security.threat.detected"]
"""
# A rule on a second type, so the poller's filter has two terms as with a real pack.
RULE_LOCK = """
id = "bench-lock"
title = "locked {actor.alternateId}"
severity = "medium"
event_types = ["user.account.lock"]
condition = "selection"
[detection.selection]
"actor.alternateId" = "nobody-in-this-bench@example.invalid"
"""


def day_of_events(count: int, end: datetime) -> list[dict[str, Any]]:
    """``count`` real events (the tests' samples) over the 24 hours before ``end``, half of them of the two
    polled types; the newest is the ThreatInsight event the last alert is about."""
    templates: list[dict[str, Any]] = json.loads((ROOT / "tests" / "data" / "envelope.json").read_text())["data"][
        "events"]
    step = timedelta(hours=24) / count
    start = end - timedelta(hours=24)
    events = []
    for i in range(count):
        event = dict(templates[i % len(templates)])
        event["uuid"] = str(uuid.uuid4())
        event["published"] = (start + step * i).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        event["eventType"] = "user.account.lock" if i % 2 else "security.threat.detected"
        events.append(event)
    events[-1]["eventType"] = "security.threat.detected"
    return events


# A large org's ordinary day (end_to_end.py --with-backfill): sign-ins, SSO to apps and MFA, the types that
# make up most of a real System Log, with weights summing to 100. ALERTING_SHARE of the events are
# ThreatInsight detections (0.5%), spread evenly, each from its own address: each makes three alerts
# (bench-threat, the shipped ThreatInsight rule, whose throttle is per address, and the Sigma pack's
# "Okta Security Threat Detected"): 1.5 alerts a hundred events, measured with ``sentinel replay``.
# ``alerting_share=1`` is the worst case: every event a detection, three alerts an event.
ORDINARY_MIX = (("user.authentication.sso", 40), ("user.session.start", 20),
                ("user.authentication.auth_via_mfa", 15), ("policy.evaluate_sign_on", 10),
                ("user.authentication.verify", 8), ("user.session.end", 7))
ALERTING_SHARE = 0.005
ORG_USERS = 20_000


def org_day(count: int, end: datetime, alerting_share: float = ALERTING_SHARE) -> list[dict[str, Any]]:
    """``count`` events over the 24 hours before ``end``: ORDINARY_MIX (each user from an address of their
    own, so no sign-in rule's threshold is reached) and ``alerting_share`` ThreatInsight detections spread
    evenly; the newest event is a detection, the last alert. Shallow copies of one real event."""
    base: dict[str, Any] = json.loads((ROOT / "bench" / "data" / "session-start.json").read_text())
    types = [name for name, weight in ORDINARY_MIX for _ in range(weight)]
    step = timedelta(hours=24) / count
    start = end - timedelta(hours=24)
    events = []
    for i in range(count):
        event = dict(base)
        user = i * 7919 % ORG_USERS  # a prime stride: neighbours in time are different users
        alerting = int((i + 1) * alerting_share) > int(i * alerting_share) or i == count - 1
        event["uuid"] = str(uuid.uuid4())
        event["published"] = (start + step * i).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        event["eventType"] = "security.threat.detected" if alerting else types[i % len(types)]
        event["actor"] = {**base["actor"], "alternateId": f"user{user}@example.com", "id": f"00u{user:017d}"}
        detection = int((i + 1) * alerting_share)  # a detection's own address: never throttled away
        address = f"198.18.{detection >> 8 & 255}.{detection & 255}" if alerting else \
            f"10.{user >> 16 & 255}.{user >> 8 & 255}.{user & 255}"
        event["client"] = {**base["client"], "ipAddress": address}
        events.append(event)
    return events


def stored(db: Path) -> tuple[int, int]:
    """(events stored, of which evaluated)."""
    if not db.exists():
        return 0, 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        row = conn.execute("SELECT count(*), count(evaluated_at) FROM events").fetchone()
        return int(row[0]), int(row[1])
    except sqlite3.OperationalError:
        return 0, 0
    finally:
        conn.close()


def last_alert_seen(alerts: Path, marker: str) -> bool:
    return alerts.exists() and marker in alerts.read_text(encoding="utf-8", errors="replace")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=400_000)
    parser.add_argument("--rate-limit", type=int, default=120, help="the fake's /api/v1/logs requests a minute")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    info = machine()
    print(f"machine: {info['nproc']} CPUs, {info['cpu']}, Python {info['python']}")
    report = Report("backfill")
    now = datetime.now(UTC)
    events = day_of_events(args.events, now - timedelta(seconds=5))
    marker = events[-1]["uuid"]
    fake = FakeOkta(api_token=TOKEN, rate_limit=args.rate_limit, rate_window=60.0).start()
    fake.add(events)
    try:
        with tempfile.TemporaryDirectory(prefix="sentinel-bench-backfill-") as tmp, Processes() as procs:
            folder = Path(tmp)
            rules = folder / "rules"
            rules.mkdir()
            (rules / "threat.toml").write_text(RULE)
            (rules / "lock.toml").write_text(RULE_LOCK)
            port = free_port()
            config = sentinel_config(folder, port, rules=rules)
            config.write_text(config.read_text() + f"""
[okta.api]
base_url = "{fake.base}"
poll_interval_seconds = 5
backfill_hours = 25
max_lag_seconds = 86400
""")
            db = folder / "state" / "sentinel.db"
            alerts = folder / "state" / "alerts.jsonl"
            began = time.monotonic()
            start_sentinel(procs, folder, config, port, env={"SENTINEL_OKTA_API_TOKEN": TOKEN})
            all_stored = all_evaluated = last_alert = float("nan")
            while time.monotonic() - began < args.timeout:
                count, evaluated = stored(db)
                elapsed = time.monotonic() - began
                if count >= args.events and all_stored != all_stored:
                    all_stored = elapsed
                if evaluated >= args.events and all_evaluated != all_evaluated:
                    all_evaluated = elapsed
                if last_alert != last_alert and last_alert_seen(alerts, marker):
                    last_alert = elapsed
                if all_evaluated == all_evaluated and last_alert == last_alert:
                    break
                time.sleep(0.2)
            statuses = [r.status for r in fake.to("/api/v1/logs")]
            poller_lines = [line for line in (folder / "sentinel.log").read_text(errors="replace").splitlines()
                            if "sentinel.poller" in line]
            print("\n".join(poller_lines[-10:]))
            rate = args.events / all_stored if all_stored == all_stored else float("nan")
            ok, limited = statuses.count(200), statuses.count(429)
            print(table(["figure", "value"], [
                ["events", f"{args.events:,}"],
                ["fake rate limit", f"{args.rate_limit}/min"],
                ["requests (200 / 429 / other)", f"{ok} / {limited} / {len(statuses) - ok - limited}"],
                ["all stored after", f"{all_stored:.1f} s"],
                ["all evaluated after", f"{all_evaluated:.1f} s"],
                ["events/s (stored)", f"{rate:,.0f}"],
                ["time to the last alert", f"{last_alert:.1f} s"],
            ]))
            report.notes.append(f"{args.events} events, rate limit {args.rate_limit}/min, 429s {statuses.count(429)}")
            report.add("backfill: events stored per second", rate, 0, "events/s")
            report.add("backfill: time to the last alert", last_alert, args.timeout, "s", higher_is_better=False)
    finally:
        fake.stop()
    report.write(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
