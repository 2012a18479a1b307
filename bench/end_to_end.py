"""End to end: from the Okta POST to the alert's arrival at a notification endpoint, at 100 alerts/s.

What is measured: the real daemon (``python -m sentinel serve``, default rule pack, WAL + FULL) gets one
``system.api_token.create`` event per POST (the default pack alerts on each one) at a fixed rate of 100
POSTs/s, open loop. Its only channel is ``json://`` (Apprise's JSON webhook) pointing at a capture server
in this process, which timestamps each arrival and finds the event's uuid in the message. Latency is
arrival time minus the POST's scheduled send time, so it covers the whole path: intake and durable
commit, the detector, the alert and its delivery row, the dispatcher, rendering and Apprise's HTTP POST.

Baseline: the same capture server's answer time to a direct POST (the floor the network and the
capture server add), printed for comparison.

Target: p99 <= 100 ms (issue 16; it was 250 ms), and every alert delivered.

``--with-backfill [--backfill-events N]`` (issue 16, point 3): the same live load while the daemon's System
Log poller back-fills a day of N events (400,000 by default: ``bench/backfill.py``'s ``org_day``, from the
tests' fake Okta server at 120 requests a minute, in a process of its own: bench/fake_okta_process.py) to
every channel. A large org's day is mostly sign-ins, SSO and MFA: 0.5% of the events are ThreatInsight
detections, three alerts each (1.5 alerts a hundred events: 6,000 for 400,000); ``--backfill-alerting 1`` is
the worst case, every event a detection (the data before, about one alert an event, made a 400,000-event day
~25 minutes of sends). The live load runs until the back-fill's last alert is in the log channel; printed: how
long that took from the daemon's start, and the live path's p50/p99 meanwhile. ``--backfill-events 20000`` is
a smoke run.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
import sqlite3
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common import (
    ROOT,
    SECRET,
    Connection,
    Processes,
    Report,
    arguments,
    envelope,
    free_port,
    make_event,
    open_loop,
    percentile,
    pin_to,
    request_bytes,
    run_async,
    sentinel_config,
    start_sentinel,
    table,
    template,
)

sys.path.insert(0, str(ROOT / "tests"))
from fake_okta import FakeOkta  # the tests' fake System Log API, a real HTTP server
from fake_okta_process import FakeOktaProcess

RATE = 100
P99_TARGET_MS = 100  # issue 16
HEADERS = {"Content-Type": "application/json", "Authorization": SECRET}


class Capture:
    """A minimal HTTP server on the benchmark's event loop that records when each alert arrives."""

    def __init__(self, pattern: re.Pattern[bytes]) -> None:
        self.pattern = pattern
        self.arrivals: dict[str, float] = {}
        self.requests = 0
        self.server: asyncio.base_events.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                body = await reader.readexactly(length) if length else b""
                arrived = time.perf_counter()
                self.requests += 1
                for found in self.pattern.findall(body):
                    self.arrivals.setdefault(found.decode(), arrived)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


async def measure(port: int, capture: Capture, prefix: str, seconds: float, first: int = 0,
                  wait: bool = True) -> tuple[dict[int, float], int]:
    """``seconds`` of POSTs at RATE, numbered from ``first``; with ``wait``, until their alerts arrived."""
    base = template("privilege-grant.json")
    sent: dict[int, float] = {}

    def make(n: int) -> bytes:
        i = first + n
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        event = make_event(base, f"e2e-{prefix}-{i}", stamp, event_type="system.api_token.create",
                           user=f"admin{i % 50}@example.com", result="SUCCESS")
        event["target"] = [{"type": "Token", "displayName": f"token-{i}", "alternateId": "unknown"}]
        return request_bytes("/hooks/okta", json.dumps(envelope([event])).encode(), HEADERS)

    def on_sent(n: int, scheduled: float) -> None:
        sent[first + n] = scheduled

    result = await open_loop(port, make, RATE, seconds, on_sent=on_sent)
    deadline = time.perf_counter() + (30 if wait else 0)
    while len(capture.arrivals) < len(sent) and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    return sent, result.errors


async def floor(capture: Capture, n: int) -> list[float]:
    """Answer times of the capture server itself (new connection each time, as Apprise does)."""
    times = []
    body = b'{"title":"x","message":"floor","type":"info"}'
    for _ in range(n):
        started = time.perf_counter()
        conn = await Connection.open(capture.port)
        await conn.send(request_bytes("/floor", body, {"Content-Type": "application/json"}))
        conn.close()
        times.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(0.005)
    return sorted(times)


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--with-backfill", action="store_true", help="the live load during a System Log back-fill")
    parser.add_argument("--backfill-events", type=int, default=400_000)
    parser.add_argument("--backfill-alerting", type=float, default=None, metavar="SHARE",
                        help="share of the back-fill's events that alert (default 0.005; 1: every one)")
    parser.add_argument("--backfill-timeout", type=float, default=1800.0)
    parser.add_argument("--fake-here", action="store_true",
                        help="the fake Okta as a thread of this process, as before it had its own (comparison)")
    parser.add_argument("--detector", action="append", default=[], metavar="KEY=VALUE",
                        help='a [detector] setting for the daemon, e.g. cpu_priority="low" (repeatable)')


class FakeHere:
    """The fake Okta as a thread of this process (``--fake-here``: the arrangement before the fake had a
    process of its own, for comparison), with FakeOktaProcess's interface."""

    def __init__(self, token: str, rate_limit: int, events: int, alerting: float) -> None:
        from backfill import org_day

        self._day = org_day(events, datetime.now(UTC) - timedelta(seconds=5), alerting)
        self._fake = FakeOkta(api_token=token, rate_limit=rate_limit, rate_window=60.0).start()
        self.base, self.marker = self._fake.base, str(self._day[-1]["uuid"])

    def add(self) -> None:
        self._fake.add(self._day)

    def stop(self) -> None:
        self._fake.stop()


def backfill_config(folder: Path, port: int, capture_port: int, events: int, alerting: float,
                    detector: list[str], fake_here: bool = False) -> tuple[Path, FakeHere | FakeOktaProcess]:
    """The daemon's config for the combined run: the default pack and the back-fill's rules, the capture
    channel and a log channel (every alert to both), the poller on a fake Okta that will hold ``events``
    (in a process of its own unless ``fake_here``: see bench/fake_okta_process.py)."""
    from backfill import RULE, RULE_LOCK, TOKEN

    rules = folder / "backfill-rules"
    rules.mkdir()
    (rules / "threat.toml").write_text(RULE)
    (rules / "lock.toml").write_text(RULE_LOCK)
    fake: FakeHere | FakeOktaProcess = (FakeHere if fake_here else FakeOktaProcess)(TOKEN, 120, events, alerting)
    channels = (f'[channels.capture]\nurls = ["json://127.0.0.1:{capture_port}/alerts"]\nmin_severity = "info"\n\n'
                '[channels.log]\nkind = "log"\npath = "state/alerts.jsonl"\n')
    detector_table = "[detector]\n" + "\n".join(detector) + "\n" if detector else ""
    config = sentinel_config(folder, port, rules=f'{ROOT / "rules"}", "{rules}', channels=channels, extra=f"""
{detector_table}
[okta.api]
base_url = "{fake.base}"
poll_interval_seconds = 5
backfill_hours = 25
max_lag_seconds = 86400
""")
    return config, fake


def stages(db: Path, prefix: str, sent: dict[int, float], arrivals: dict[str, float]) -> list[list[str]]:
    """Where the live path's time goes, from the store's own times (wall clock, microseconds): POST ->
    stored in the inbox (``events.received_at``), -> evaluated (``evaluated_at``), -> alert made
    (``alerts.created_at``), -> sent by the capture channel (``deliveries.sent_at``), -> arrival. Rows:
    each stage's p50 and p99, and its mean over the slowest 1% of alerts (what makes the tail). ``sent_at`` is
    stamped once the channel has answered, so "alert -> sent" includes the send and "sent -> arrival" is
    slightly negative (the capture server saw it first)."""
    offset = time.time() - time.perf_counter()
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        events = {u: (r, e) for u, r, e in conn.execute(
            "SELECT uuid, received_at, evaluated_at FROM events WHERE uuid LIKE ?", (f"e2e-{prefix}-%",))}
        made: dict[str, tuple[int, str]] = {}
        for alert_id, uuids, created in conn.execute("SELECT id, event_uuids, created_at FROM alerts"):
            for u in json.loads(uuids):
                if u in events:
                    made[u] = (alert_id, created)
        sent_at = dict(conn.execute("SELECT alert_id, sent_at FROM deliveries WHERE channel = 'capture'"))
    finally:
        conn.close()

    def wall(text: str | None) -> float:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else float("nan")

    names = ["POST -> inbox", "inbox -> evaluated", "evaluated -> alert made", "alert -> sent", "sent -> arrival"]
    rows: list[list[float]] = []
    for i, scheduled in sent.items():
        u = f"e2e-{prefix}-{i}"
        if u not in events or u not in made or u not in arrivals:
            continue
        marks = [scheduled + offset, wall(events[u][0]), wall(events[u][1]), wall(made[u][1]),
                 wall(sent_at.get(made[u][0])), arrivals[u] + offset]
        rows.append([(b - a) * 1000 for a, b in itertools.pairwise(marks)])
    rows.sort(key=sum)
    slowest = rows[-max(1, len(rows) // 100):]
    return [[name, f"{percentile(sorted(r[k] for r in rows), 50):.1f}",
             f"{percentile(sorted(r[k] for r in rows), 99):.1f}", f"{sum(r[k] for r in slowest) / len(slowest):.1f}"]
            for k, name in enumerate(names)]


def with_backfill(args: argparse.Namespace, report: Report) -> None:
    """The live load at RATE while the poller back-fills; until the back-fill's last alert is logged."""
    from backfill import ALERTING_SHARE, TOKEN

    alerting = ALERTING_SHARE if args.backfill_alerting is None else args.backfill_alerting
    pin_to(1)
    prefix = uuid.uuid4().hex[:12]
    capture = Capture(re.compile(rb"e2e-[0-9a-f]{12}-\d+"))
    print(f"end_to_end --with-backfill: {RATE} alerts/s live while the poller back-fills "
          f"{args.backfill_events:,} events ({alerting:.1%} of them alerting, 3 alerts each); [detector] "
          f"{' '.join(args.detector) or 'defaults'}; fake Okta "
          f"{'in this process' if args.fake_here else 'in a process of its own'}; "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)

    async def run() -> tuple[dict[int, float], int, float, float, list[list[str]]]:
        await capture.start()
        fake: FakeHere | FakeOktaProcess | None = None
        try:
            with tempfile.TemporaryDirectory(prefix="sentinel-bench-e2e-bf-") as tmp, Processes() as procs:
                folder = Path(tmp)
                port = free_port()
                config, fake = backfill_config(folder, port, capture.port, args.backfill_events,
                                               alerting, args.detector, args.fake_here)
                marker = fake.marker
                log = folder / "state" / "alerts.jsonl"
                await asyncio.to_thread(start_sentinel, procs, folder, config, port, cpu=0,
                                        env={"SENTINEL_OKTA_API_TOKEN": TOKEN})
                # Warm-up (first Apprise send, imports), not counted, as in the run without a back-fill; the
                # poller found the fake empty meanwhile and reads the day at its next poll (5 s at most).
                await measure(port, capture, "0" * 12, 1.0)
                capture.arrivals.clear()
                await asyncio.to_thread(fake.add)
                began = time.monotonic()
                sent: dict[int, float] = {}
                errors = 0
                last_alert = float("nan")
                chunk = 0

                async def watch_log() -> float:
                    """When the back-fill's last alert is in the log channel (read from where it was)."""
                    read = 0
                    while True:
                        if log.exists():
                            with log.open("rb") as lines:
                                lines.seek(max(0, read - len(marker)))  # a marker cut by the last read
                                text = lines.read()
                                read = lines.tell()
                            if marker.encode() in text:
                                return time.monotonic() - began
                        await asyncio.sleep(0.1)

                watcher = asyncio.create_task(watch_log())
                while time.monotonic() - began < args.backfill_timeout and not watcher.done():
                    part, failed = await measure(port, capture, prefix, 5.0, first=chunk * 5 * RATE, wait=False)
                    sent.update(part)
                    errors += failed
                    chunk += 1
                if watcher.done():
                    last_alert = watcher.result()
                watcher.cancel()
                deadline = time.perf_counter() + 30
                while len(capture.arrivals) < len(sent) and time.perf_counter() < deadline:
                    await asyncio.sleep(0.05)
                breakdown = stages(folder / "state" / "sentinel.db", prefix, sent, capture.arrivals)
                return sent, errors, last_alert, time.monotonic() - began, breakdown
        finally:
            capture.close()
            if fake is not None:
                fake.stop()

    sent, errors, last_alert, elapsed, breakdown = run_async(run())
    by_send = {i: (capture.arrivals[f"e2e-{prefix}-{i}"] - t) * 1000 for i, t in sent.items()
               if f"e2e-{prefix}-{i}" in capture.arrivals}
    latencies = sorted(by_send.values())
    missing = len(sent) - len(latencies)
    step = 5 * RATE  # the live load's 5 s chunks: where the tail is
    chunks = [sorted(v for i, v in by_send.items() if start <= i < start + step) for start in range(0, len(sent), step)]
    print(table(["live path stage (store times)", "p50 ms", "p99 ms", "mean of the slowest 1% ms"], breakdown))
    print("live p99 ms per 5 s of sending: " + " ".join(f"{percentile(c, 99):.0f}" for c in chunks if c))
    print(table(["figure", "value"], [
        ["back-fill events (alerting share)", f"{args.backfill_events:,} ({alerting:.1%})"],
        ["back-fill's last alert in the log channel, after the day was there", f"{last_alert:.1f} s"],
        ["live alerts sent meanwhile / arrived", f"{len(sent):,} / {len(latencies):,}"],
        ["live POST -> alert p50 / p99 / max ms", f"{percentile(latencies, 50):.1f} / {percentile(latencies, 99):.1f}"
         f" / {latencies[-1] if latencies else float('nan'):.1f}"],
        ["load average at the end", f"{os.getloadavg()[0]:.2f} (run {elapsed:.0f} s)"],
    ]))
    p99 = percentile(latencies, 99) if latencies else float("inf")
    report.add("end-to-end p99 at 100 alerts/s during the back-fill", p99, P99_TARGET_MS, "ms",
               higher_is_better=False)
    report.add("live alerts missing or POST errors during the back-fill", float(missing + errors), 0, "",
               higher_is_better=False)
    report.add("back-fill: its last alert after", last_alert, args.backfill_timeout, "s", higher_is_better=False)


def main() -> None:
    args = arguments(__doc__, _options)
    if args.with_backfill:
        report = Report("end_to_end_backfill")
        with_backfill(args, report)
        report.write(args.json)
        return
    seconds = 8.0 if args.quick else 30.0
    pin_to(1)  # client and capture server on CPU 1, the daemon on CPU 0
    prefix = uuid.uuid4().hex[:12]
    capture = Capture(re.compile(rb"e2e-[0-9a-f]{12}-\d+"))
    report = Report("end_to_end")

    async def run() -> tuple[dict[int, float], int, list[float]]:
        await capture.start()
        try:
            with tempfile.TemporaryDirectory(prefix="sentinel-bench-e2e-") as tmp, Processes() as procs:
                folder = Path(tmp)
                port = free_port()
                channels = (f'[channels.capture]\nurls = ["json://127.0.0.1:{capture.port}/alerts"]\n'
                            'min_severity = "info"\n')
                config = sentinel_config(folder, port, channels=channels)
                await asyncio.to_thread(start_sentinel, procs, folder, config, port, cpu=0)
                # Warm-up (first Apprise send, imports): not counted.
                await measure(port, capture, "0" * 12, 1.0)
                capture.arrivals.clear()
                sent, errors = await measure(port, capture, prefix, seconds)
                base = await floor(capture, 100)
                return sent, errors, base
        finally:
            capture.close()

    print(f"end_to_end: {RATE} alerts/s for {seconds:.0f} s, json:// channel to a local capture server; "
          "daemon on CPU 0, client and capture server on CPU 1", flush=True)
    sent, errors, base = run_async(run())
    latencies = sorted((capture.arrivals[f"e2e-{prefix}-{i}"] - t) * 1000 for i, t in sent.items()
                       if f"e2e-{prefix}-{i}" in capture.arrivals)
    missing = len(sent) - len(latencies)
    print()
    print(table(["path", "count", "p50 ms", "p90 ms", "p99 ms", "max ms"], [
        ["POST -> alert at capture server", len(latencies), f"{percentile(latencies, 50):.1f}",
         f"{percentile(latencies, 90):.1f}", f"{percentile(latencies, 99):.1f}",
         f"{latencies[-1]:.1f}" if latencies else "-"],
        ["baseline: direct POST to capture server", len(base), f"{percentile(base, 50):.2f}",
         f"{percentile(base, 90):.2f}", f"{percentile(base, 99):.2f}", f"{base[-1]:.2f}"],
    ]))
    print(f"alerts sent {len(sent):,}, arrived {len(latencies):,}, missing {missing}, POST errors {errors}")
    print()
    p99 = percentile(latencies, 99) if latencies else float("inf")
    report.add("end-to-end p99 at 100 alerts/s", p99, P99_TARGET_MS, "ms", higher_is_better=False)
    report.add("end-to-end alerts missing or POST errors", float(missing + errors), 0, "", higher_is_better=False)
    report.write(args.json)


if __name__ == "__main__":
    main()
