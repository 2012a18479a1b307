"""Proof: SIGKILL at random moments under steady load loses nothing and evaluates nothing twice.

The real daemon (``sentinel serve`` in a subprocess) takes batches from a few client threads while the
test kills it with SIGKILL several times at random moments and starts it again. A final clean run lets
everything drain. Then, from the store and from a recording HTTP server behind a ``json://`` channel:

* every event that was answered 2xx is stored, and nothing is stored that was never sent;
* every stored event is evaluated, exactly once: single-event alerts map 1:1 to alerting events, and a
  throttled tally alert per client counts exactly the stored events of that client (a re-evaluation
  would push the count past the number of events);
* every alert has its delivery rows (one per channel), all sent, and reached the capture server at
  least once; a second copy is allowed only for a send a kill interrupted (see ``check_receipts``).

The seed is printed; re-run one schedule with ``SENTINEL_CRASH_SEED=<seed>``.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import httpx
import pytest
from conftest import envelope, make_event
from daemon import Daemon, write_config
from helpers_capture import Captured, CaptureServer
from proof_helpers import query, scalar, settled, wait_until

KILLS = 5
CLIENTS = 3
LOCK_SHARE = 0.15  # share of events that raise a single-event alert (the rest feed the tallies)
RULES = """
[[rules]]
id = "proof-lock"
title = "proof lock {uuid}"
severity = "high"
event_types = ["user.account.lock"]

[[rules]]
id = "proof-tally"
title = "proof tally {actor.alternateId}"
severity = "high"
event_types = ["user.session.start"]
group_by = ["actor.alternateId"]

[rules.throttle]
period = "7d"
"""
# All events fall inside one 7-day throttle period (periods are aligned to the epoch), so each client's
# tally is one alert whose count is the number of its events the engine saw.
_PERIOD = 7 * 24 * 3600
BASE = datetime.fromtimestamp((1714557600 // _PERIOD) * _PERIOD + 3600, UTC)
UUID_IN_TITLE = re.compile(r"proof lock (crash-\d+-\d+)")
TALLY_IN_TITLE = re.compile(r"proof tally (w\d+@example\.com)")


@dataclass
class Ledger:
    """What the clients know: events acknowledged with 2xx, and events sent without a definite answer."""

    acked: set[str] = field(default_factory=set)
    unsure: set[str] = field(default_factory=set)
    lock_events: set[str] = field(default_factory=set)
    worker_of: dict[str, str] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def client(worker: int, url: str, secret: str, ledger: Ledger, stop: threading.Event, seed: int) -> None:
    """Post batches with fresh uuids until stopped; retry a batch (as Okta would) until it is answered."""
    rng = random.Random(seed)
    actor = f"w{worker}@example.com"
    headers = {"Authorization": secret, "Content-Type": "application/json"}
    sequence = 0
    with httpx.Client(timeout=httpx.Timeout(5.0)) as http:
        while not stop.is_set():
            events = []
            for _ in range(rng.randint(1, 20)):
                sequence += 1
                uuid = f"crash-{worker}-{sequence:06d}"
                # Out of order within the period, as Okta delivers.
                published = (BASE + timedelta(seconds=rng.uniform(0, 86400))).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                kind = "user.account.lock" if rng.random() < LOCK_SHARE else "user.session.start"
                events.append(make_event(uuid, kind, published,
                                         actor={"id": "00u1", "type": "User", "alternateId": actor}))
            uuids = {e["uuid"] for e in events}
            with ledger.lock:
                ledger.unsure |= uuids
                ledger.lock_events |= {e["uuid"] for e in events if e["eventType"] == "user.account.lock"}
                ledger.worker_of.update(dict.fromkeys(uuids, actor))
            body = json.dumps(envelope(*events))
            # Keep retrying while the daemon is down or being killed; after stop, a bounded number more.
            deadline = None
            while True:
                try:
                    status = http.post(f"{url}/hooks/okta", content=body, headers=headers).status_code
                except httpx.HTTPError:
                    status = None
                if status == 204:
                    with ledger.lock:
                        ledger.acked |= uuids
                        ledger.unsure -= uuids
                    break
                if status is not None and status != 503:
                    with ledger.lock:
                        ledger.unexpected.append(f"HTTP {status} for a valid batch")
                    break
                if stop.is_set():
                    deadline = deadline or time.monotonic() + 10
                    if time.monotonic() > deadline:
                        break
                time.sleep(0.05)
            time.sleep(0.01)


@pytest.fixture
def capture() -> Iterator[tuple[CaptureServer, list[tuple[float, str]]]]:
    """A recording HTTP server; each receipt is kept with its monotonic time and alert title."""
    receipts: list[tuple[float, str]] = []
    lock = threading.Lock()

    def record(req: Captured) -> None:
        title = str(req.json().get("title", ""))
        with lock:
            receipts.append((time.monotonic(), title))
        # A short pause before answering widens the send→mark window, so kills land in it sometimes.
        time.sleep(0.005)

    srv = CaptureServer(on_request=record).start()
    try:
        yield srv, receipts
    finally:
        srv.stop()


def check_receipts(name: str, titles: list[tuple[float, str]], restarts: list[float]) -> None:
    """At least once per alert; a duplicate only for a send that a kill interrupted.

    Exactly-once delivery is not something the outbox can promise: the dispatcher sends, then records
    the row as sent (no remote system here takes an idempotency key). A SIGKILL after the receiver got
    the message and before the "sent" commit means the row is still pending after restart and the alert
    goes out again. Each dispatcher sends one delivery at a time, so one kill can interrupt at most one
    send per channel: duplicates ≤ kills, and each one's first copy arrived before the restart that
    followed a kill (so it came from the killed process), the repeat after that restart. Everything else
    must be exactly once. (The restart time, not the kill time, is the boundary: a request the killed
    process had already written can still be read by the capture server just after the kill.)
    """
    by_title: dict[str, list[float]] = defaultdict(list)
    for at, title in titles:
        by_title[title].append(at)
    extra = 0
    used: set[float] = set()
    for title, times in by_title.items():
        if len(times) == 1:
            continue
        extra += len(times) - 1
        times.sort()
        for first, again in pairwise(times):
            straddled = [r for r in restarts if first < r <= again and r not in used]
            assert straddled, f"{name}: {title!r} delivered twice without a kill and restart in between"
            used.add(straddled[0])
    assert extra <= len(restarts), f"{name}: {extra} duplicate deliveries for {len(restarts)} kills"
    print(f"{name}: {len(by_title)} alerts, {extra} duplicate(s) from sends interrupted by a kill")


def test_sigkill_under_load_loses_nothing_and_evaluates_once(
        tmp_path: Path, capture: tuple[CaptureServer, list[tuple[float, str]]]) -> None:
    srv, receipts = capture
    seed = int(os.environ.get("SENTINEL_CRASH_SEED") or random.SystemRandom().randrange(1 << 32))
    print(f"crash test seed: {seed} (re-run with SENTINEL_CRASH_SEED={seed})")
    rng = random.Random(seed)

    config = write_config(tmp_path, extra=f'[channels.capture]\nurls = ["json://127.0.0.1:{srv.port}/capture"]\n')
    (tmp_path / "rules" / "proof.toml").write_text(RULES, encoding="utf-8")
    db = tmp_path / "state" / "sentinel.db"
    daemon = Daemon(config)
    ledger = Ledger()
    stop = threading.Event()
    threads = [threading.Thread(target=client, args=(w, daemon.url, daemon.secret, ledger, stop, seed + w),
                                daemon=True) for w in range(CLIENTS)]
    kills: list[float] = []
    restarts: list[float] = []
    try:
        daemon.start()
        for t in threads:
            t.start()
        for _ in range(KILLS):
            # Random moments: sometimes while start-up recovery is still running, mostly mid-load.
            time.sleep(rng.uniform(0.05, 2.5))
            daemon.kill()
            kills.append(time.monotonic())  # after the process is gone: nothing it sends can come later
            time.sleep(rng.uniform(0.0, 0.3))
            restarts.append(time.monotonic())
            daemon.start()
        time.sleep(1.0)  # the final run takes load too, then the clients stop
        stop.set()
        for t in threads:
            t.join(timeout=30)
        assert not any(t.is_alive() for t in threads), "a client thread did not finish"

        # The final clean run drains everything: every event evaluated, every delivery row sent.
        def drained() -> bool:
            return bool(settled(db)
                        and scalar(db, "SELECT count(*) FROM deliveries WHERE status != 'sent'") == 0)

        wait_until(drained, timeout=90, interval=0.25, detail=lambda: "store did not drain:\n" + daemon.log()[-3000:])
        # uvicorn shuts down cleanly on SIGTERM, then re-raises the signal: either exit status is clean.
        assert daemon.stop() in (0, -signal.SIGTERM)
    finally:
        stop.set()
        daemon.kill()
        for t in threads:
            t.join(timeout=15)

    assert not ledger.unexpected, ledger.unexpected[:5]
    assert len(kills) == KILLS
    stored = {row[0] for row in query(db, "SELECT uuid FROM events")}
    sent = ledger.acked | ledger.unsure
    print(f"events: {len(ledger.acked)} acknowledged, {len(ledger.unsure)} unanswered, {len(stored)} stored")
    assert len(ledger.acked) > 500, "too little load to prove anything"

    # Every acknowledged event is stored; nothing appears that no client sent.
    assert ledger.acked <= stored, f"lost acknowledged events: {sorted(ledger.acked - stored)[:10]}"
    assert stored <= sent
    assert scalar(db, "SELECT count(*) FROM quarantine") == 0
    assert scalar(db, "SELECT count(*) FROM events WHERE evaluated_at IS NULL") == 0

    # Single-event alerts: exactly one per stored alerting event, each naming that event alone.
    lock_alerts = query(db, "SELECT key, event_uuids, count FROM alerts WHERE rule_id = 'proof-lock'")
    stored_locks = stored & ledger.lock_events
    alerted = Counter(u for _, uuids, _ in lock_alerts for u in json.loads(uuids))
    assert set(alerted) == stored_locks
    assert all(n == 1 for n in alerted.values())
    assert {key for key, _, _ in lock_alerts} == {f"proof-lock:{u}" for u in stored_locks}
    assert all(count == 1 for _, _, count in lock_alerts)
    assert ledger.acked & ledger.lock_events <= stored_locks

    # Tallies: the engine state is committed with the events it consumed, so across every crash the
    # count equals the number of stored events of that client. Evaluating any event twice (or losing
    # state and re-counting from zero) would break the equality.
    tallies = {group.removeprefix("actor.alternateId="): count for group, count in query(
        db, "SELECT group_key, count FROM alerts WHERE rule_id = 'proof-tally'")}
    expected = Counter(ledger.worker_of[u] for u in stored - ledger.lock_events)
    assert tallies == dict(expected)

    # The outbox: one row per alert and channel, none lost, all sent.
    alerts = scalar(db, "SELECT count(*) FROM alerts")
    assert alerts == len(stored_locks) + len(expected)
    rows = query(db, "SELECT a.key, group_concat(d.channel) FROM alerts a LEFT JOIN deliveries d "
                     "ON d.alert_id = a.id GROUP BY a.id")
    assert all(sorted((channels or "").split(",")) == ["capture", "log"] for _, channels in rows), rows[:5]
    assert scalar(db, "SELECT count(*) FROM deliveries WHERE status = 'sent' AND sent_at IS NOT NULL") == 2 * alerts

    # The capture channel got every alert; the log channel wrote every alert.
    got = [(at, title) for at, title in receipts]
    titles = {t for _, t in got}
    lock_titles = {m.group(1) for t in titles if (m := UUID_IN_TITLE.search(t))}
    tally_titles = {m.group(1) for t in titles if (m := TALLY_IN_TITLE.search(t))}
    assert lock_titles == stored_locks
    assert tally_titles == set(expected)
    assert len(titles) == alerts
    check_receipts("capture", got, restarts)

    lines = (tmp_path / "state" / "alerts.jsonl").read_text(encoding="utf-8").splitlines()
    logged = Counter(json.loads(line)["alert_key"] for line in lines)
    assert set(logged) == {key for key, _ in rows}
    # The log channel has no arrival times; the per-kill bound still holds (one send in flight per kill),
    # and a send a kill interrupted after its line was on disk is not written again (log_channel.py): a
    # second line for an alert can only be a changed record (grown while the daemon was down).
    assert sum(n - 1 for n in logged.values()) <= len(kills)
    repeated = [line for line, n in Counter(lines).items() if n > 1]
    assert not repeated, f"{len(repeated)} alert records written twice, e.g. {repeated[0][:200]}"
