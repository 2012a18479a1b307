"""Sustained load: N minutes at M events/s of 10-event deliveries, with alerting events mixed in.

What is measured: the real daemon (``python -m sentinel serve``, default rule pack, WAL + FULL, its only
channel ``json://`` to a capture server in this process) gets 10-event sign-in deliveries open loop at
``--rate`` events/s; every ``ALERT_EVERY``-th request is instead one ``system.api_token.create`` event, on
which the default pack alerts. After each minute a row: the daemon's and the detector's RSS, the inbox
backlog (deliveries not unpacked, events not evaluated), the WAL sizes of both databases, and that
minute's p99 of the POST answer and of POST -> alert arrival. After the load: the drain time, and
whether everything answered 204 was stored and every alert arrived (nothing lost).

Targets (issue 16, point 4): flat at the end (the last row's RSS of both processes within a margin of the
middle row's, the backlog about a second of work, both WALs bounded), nothing lost; one VERDICT line.
Default 10 min at 2,000 events/s, a row a minute: the full run is ``.venv/bin/python bench/sustained.py``;
``--minutes 1`` (rows of 10 s) for a smoke run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from common import (
    SECRET,
    Processes,
    Report,
    backlog,
    batch_template,
    detector_pid,
    drain,
    envelope,
    fill,
    free_port,
    make_event,
    open_loop,
    percentile,
    pin_to,
    request_bytes,
    rss_mb,
    run_async,
    sentinel_config,
    start_sentinel,
    table,
    template,
)
from end_to_end import Capture

from sentinel.store.inbox import inbox_path

BATCH = 10
ALERT_EVERY = 20  # one alerting request in 20: 10 alerts/s at 2,000 events/s
HEADERS = {"Content-Type": "application/json", "Authorization": SECRET}
RSS_MARGIN_MB = 30.0  # "flat": the last minute's RSS within this of the middle minute's
BACKLOG_MARGIN = 5_000  # events: about a second of the detector's work
WAL_LIMIT_MB = 80.0  # "bounded": a WAL past intake's 64 MB fallback threshold plus a margin is growing


def _wal_mb(db: Path) -> float:
    wal = db.with_name(db.name + "-wal")
    return wal.stat().st_size / 2**20 if wal.exists() else 0.0


def _stored(db: Path, prefix: str) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return int(conn.execute("SELECT count(*) FROM events WHERE uuid LIKE ?", (f"%{prefix}%",)).fetchone()[0])
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="minutes of load (default 10)")
    parser.add_argument("--rate", type=int, default=2_000, help="events/s (default 2,000)")
    parser.add_argument("--row-seconds", type=float, default=0.0,
                        help="seconds per row of the table (default: a minute, 10 s for runs under 3 minutes)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 minute")
    parser.add_argument("--json", metavar="FILE", help="also write the checked targets to FILE (for run_all)")
    args = parser.parse_args()
    if args.quick:
        args.minutes = 1.0
    request_rate = args.rate / BATCH
    prefix = uuid.uuid4().hex[:12]
    body = batch_template(BATCH)
    token = template("privilege-grant.json")
    capture = Capture(re.compile(rb"sus-[0-9a-f]{12}-\d+"))
    report = Report("sustained")
    rows: list[list[object]] = []
    alert_sent: dict[str, float] = {}
    summary: dict[str, float] = {}
    pin_to(1)  # client and capture server on CPU 1, the daemon on CPU 0 (its detector wherever it lands)

    def make_for(minute: int) -> Callable[[int], bytes]:
        offset = minute * 10_000_000

        def make(i: int) -> bytes:
            n = offset + i
            if i % ALERT_EVERY == 0:
                name = f"sus-{prefix}-{n}"
                event = make_event(token, name, time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                                   event_type="system.api_token.create", user=f"admin{n % 50}@example.com",
                                   result="SUCCESS")
                event["target"] = [{"type": "Token", "displayName": f"token-{n}", "alternateId": "unknown"}]
                alert_sent[name] = time.perf_counter()
                return request_bytes("/hooks/okta", json.dumps(envelope([event])).encode(), HEADERS)
            return request_bytes("/hooks/okta", fill(body, f"sus{prefix}", n), HEADERS)
        return make

    async def run() -> None:
        await capture.start()
        try:
            with tempfile.TemporaryDirectory(prefix="sentinel-bench-sustained-") as tmp, Processes() as procs:
                folder = Path(tmp)
                port = free_port()
                channels = (f'[channels.capture]\nurls = ["json://127.0.0.1:{capture.port}/alerts"]\n'
                            'min_severity = "info"\n')
                config = sentinel_config(folder, port, channels=channels)
                daemon = await asyncio.to_thread(start_sentinel, procs, folder, config, port, cpu=0)
                detector = detector_pid(daemon.pid)
                db = folder / "state" / "sentinel.db"
                row_seconds = args.row_seconds or (60.0 if args.minutes >= 3 else 10.0)
                minutes = max(1, round(args.minutes * 60 / row_seconds))  # rows, each ``row_seconds`` long
                seconds_each = args.minutes * 60 / minutes
                answered = 0
                for minute in range(minutes):
                    make = make_for(minute)
                    before = set(alert_sent)
                    result = await open_loop(port, make, request_rate, seconds_each)
                    answered += result.ok
                    waiting, pending = await asyncio.to_thread(backlog, folder)
                    fresh = [capture.arrivals[k] - alert_sent[k] for k in set(alert_sent) - before
                             if k in capture.arrivals]
                    e2e = sorted(x * 1000 for x in fresh)
                    rows.append([f"{(minute + 1) * seconds_each:.0f}", f"{rss_mb(daemon.pid):.1f}",
                                 f"{rss_mb(detector):.1f}", waiting,
                                 pending, f"{_wal_mb(db):.1f}", f"{_wal_mb(inbox_path(db)):.1f}",
                                 f"{result.p(99):.1f}", f"{percentile(e2e, 99):.1f}", result.errors])
                    print(f"  {rows[-1][0]} s: " + ", ".join(str(c) for c in rows[-1][1:]) +
                          f" (load {os.getloadavg()[0]:.2f})", flush=True)
                summary["drain_s"] = await asyncio.to_thread(drain, folder)
                deadline = time.perf_counter() + 30
                while len(set(alert_sent) & set(capture.arrivals)) < len(alert_sent) and time.perf_counter() < deadline:
                    await asyncio.sleep(0.1)
                alert_requests = len(alert_sent)
                expected = (answered - alert_requests) * BATCH + alert_requests
                summary["expected"] = expected
                summary["stored"] = await asyncio.to_thread(_stored, db, prefix)
                summary["alerts_missing"] = alert_requests - len(set(alert_sent) & set(capture.arrivals))
                summary["rss_detector_end"] = rss_mb(detector)
        finally:
            capture.close()

    print(f"sustained: {args.minutes:g} min at {args.rate:,} events/s ({request_rate:,.0f} requests/s of "
          f"{BATCH}-event deliveries, one in {ALERT_EVERY} an alerting event); load average "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    run_async(run())
    print()
    print(table(["at s", "daemon RSS MB", "detector RSS MB", "inbox backlog (deliveries)", "events pending",
                 "main WAL MB", "inbox WAL MB", "POST p99 ms", "POST->alert p99 ms", "errors"], rows))
    print(f"\nafter the load: drained in {summary['drain_s']:.1f} s; events stored {summary['stored']:,.0f} "
          f"of {summary['expected']:,.0f} answered; alerts missing {summary['alerts_missing']:.0f}; "
          f"load average {os.getloadavg()[0]:.2f}\n")
    middle, last = rows[len(rows) // 2], rows[-1]
    checks = [
        report.add("events lost (answered 204, not stored)", summary["expected"] - summary["stored"], 0, "",
                   higher_is_better=False),
        report.add("alerts missing at the capture server", summary["alerts_missing"], 0, "",
                   higher_is_better=False),
        report.add("daemon RSS growth, middle -> last row", float(str(last[1])) - float(str(middle[1])),
                   RSS_MARGIN_MB, "MB", higher_is_better=False),
        report.add("detector RSS growth, middle -> last row", float(str(last[2])) - float(str(middle[2])),
                   RSS_MARGIN_MB, "MB", higher_is_better=False),
        report.add("events pending at the last row", float(str(last[4])), BACKLOG_MARGIN, "events",
                   higher_is_better=False),
        report.add("inbox WAL at the last row (intake's fallback checkpoint starts it over past 64 MB)",
                   float(str(last[6])), WAL_LIMIT_MB, "MB", higher_is_better=False),
        report.add("main WAL at the last row", float(str(last[5])), WAL_LIMIT_MB, "MB", higher_is_better=False),
    ]
    missed = [c.name for c in checks if not c.met]
    print(f"\nVERDICT: {'PASS: flat at the end, nothing lost' if not missed else 'MISS: ' + '; '.join(missed)}"
          f" ({args.minutes:g} min at {args.rate:,} events/s, load average {os.getloadavg()[0]:.2f})")
    report.write(args.json)


if __name__ == "__main__":
    main()
