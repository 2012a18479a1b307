"""Where an ingested event's CPU time goes: each stage of Sentinel's path timed alone, in one thread.

Stages, per event, for 10-event deliveries of the realistic sign-in event used by ``bench/ingest.py``.
Intake (the daemon's process, the one core the bare endpoint also gets):
1. ``json.loads`` of the body (the bare baseline endpoint does exactly this, and nothing else);
2. ``check_delivery`` (msgspec: the whole body validated, only the envelope decoded; decides 400 or not);
3. appending the body to the inbox (one INSERT per delivery), and one group commit (``synchronous=FULL``)
   per 32 deliveries, the grouping seen under load.
Detector (its own process): unpacking (``parse_delivery``: each element's key fields and checks, ``Event``
objects and each event's text as delivered; ``ingest``: that text ``INSERT OR IGNORE``d, with its commit), then
``pending_uuids``, the engine with the default pack (decoding the body of each event it reads: bodies are
decoded when read, not at unpacking), and ``record_evaluation`` (mark evaluated, alerts, state) with its commit.
The HTTP cost (uvicorn, httptools, Starlette) is the bare endpoint's, measured by ``bench/ingest.py``.
Run by ``bench/ingest.py`` after the load runs; also runnable alone.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import ROOT, batch_template, fill, table

from sentinel.model import Alert
from sentinel.okta import check_delivery, decode_json, parse_delivery, parse_delivery_with_json
from sentinel.rules import load_rules
from sentinel.rules.evaluator import RuleEvaluator
from sentinel.store import connect, inbox
from sentinel.store.alerts import record_evaluation
from sentinel.store.events import ingest, pending_events, pending_uuids
from sentinel.store.schema import migrate, prepare_new_store

INTAKE = "intake"
DETECTOR = "detector"

BATCH = 10
DETECTOR_TARGET = 30_000  # events/s on one core (issue 16)
GROUP = 32  # deliveries per commit (the number of concurrent connections in bench/ingest.py)


def _per_event(fn: Callable[[], Any], events: int) -> float:
    started = time.process_time()
    fn()
    return 1e6 * (time.process_time() - started) / events


def breakdown(deliveries: int = 2_000) -> list[tuple[str, str, float]]:
    """(process, stage, microseconds of CPU per event) for each stage; process "" is the baseline."""
    from datetime import UTC, datetime

    body = batch_template(BATCH)
    prefix = uuid.uuid4().hex[:8]
    bodies = [fill(body, prefix, i) for i in range(deliveries)]
    events = deliveries * BATCH
    now = datetime.now(UTC)
    stamp = "2026-01-01T00:00:00.000000Z"
    stages: list[tuple[str, str, float]] = []
    # Best of three for the parse stages: they are short, and the machine may be shared.
    stages.append(("", "json.loads of the body (= the bare endpoint's work)",
                   min(_per_event(lambda: [json.loads(b) for b in bodies], events) for _ in range(3))))
    stages.append((INTAKE, "check_delivery (msgspec: validate all, decode the envelope only)",
                   min(_per_event(lambda: [check_delivery(b) for b in bodies], events) for _ in range(3))))
    with tempfile.TemporaryDirectory(prefix="sentinel-bench-breakdown-") as tmp:
        box = connect(Path(tmp) / "sentinel.inbox.db")
        inbox.prepare(box)

        def append_all(commit: str) -> Callable[[], None]:
            def run() -> None:
                for start in range(0, deliveries, GROUP):
                    box.execute("BEGIN IMMEDIATE")
                    for b in bodies[start:start + GROUP]:
                        inbox.receive(box, b, stamp)
                    box.execute(commit)
            return run

        appended = _per_event(append_all("ROLLBACK"), events)
        stages.append((INTAKE, "append the body to the inbox (INSERT, no commit)", appended))
        with_commit = _per_event(append_all("COMMIT"), events)
        stages.append((INTAKE, f"group commit (FULL, one per {GROUP} deliveries)", max(0.0, with_commit - appended)))
        box.close()

        stages.append((DETECTOR, "parse_delivery (msgspec: key fields per element + checks + Event objects + text)",
                       min(_per_event(lambda: [parse_delivery(b) for b in bodies], events) for _ in range(3))))
        sources = [e.source or "" for b in bodies[:200] for e in parse_delivery(b).events]

        def decode_each() -> None:  # as the engine does: each body dropped once read
            for text in sources:
                decode_json(text)

        stages.append(("", "(not counted) decoding an event's body, paid in the engine stage for each it reads",
                       min(_per_event(decode_each, len(sources)) for _ in range(3))))
        stages.append(("", "(not counted) parse_delivery through json.loads, the path before issue 16",
                       min(_per_event(lambda: [parse_delivery_with_json(b) for b in bodies], events)
                           for _ in range(3))))
        parsed = [parse_delivery(b) for b in bodies]
        conn = connect(Path(tmp) / "sentinel.db")
        prepare_new_store(conn)  # as the daemon makes a new store (its page size)
        migrate(conn, stamp)

        def insert_all() -> None:
            for start in range(0, len(parsed), 500 // BATCH):
                conn.execute("BEGIN IMMEDIATE")
                for d in parsed[start:start + 500 // BATCH]:
                    ingest(conn, d.events, d.quarantined, now)
                conn.execute("COMMIT")

        stages.append((DETECTOR, "unpack: INSERT each event's delivered text + commit", _per_event(insert_all, events)))

        evaluator = RuleEvaluator(load_rules([ROOT / "rules"]), 100_000)

        def route(alert: Alert) -> list[str]:
            return ["log"]

        # The detector keeps the events it has just unpacked, so it only reads which uuids are pending
        # (the index); reading bodies back happens only after a restart or under a backlog.
        handed_over = {e.uuid: e for d in parsed for e in d.events}
        t0 = time.process_time()
        read_back = pending_events(conn, 500)
        read_back_cpu = time.process_time() - t0
        read_cpu = eval_cpu = write_cpu = 0.0
        while True:
            t0 = time.process_time()
            pending = [handed_over[u] for u in pending_uuids(conn, 500)]
            t1 = time.process_time()
            if not pending:
                break
            alerts = [a for e in pending for a in evaluator.evaluate(e, now)]
            changes, deleted = evaluator.take_changes()
            t2 = time.process_time()
            conn.execute("BEGIN IMMEDIATE")
            record_evaluation(conn, [e.uuid for e in pending], alerts, route, changes, deleted, now)
            conn.execute("COMMIT")
            t3 = time.process_time()
            read_cpu, eval_cpu, write_cpu = read_cpu + t1 - t0, eval_cpu + t2 - t1, write_cpu + t3 - t2
        conn.close()
        # The candidate next step, measured (not counted): events evaluated before they are stored, so
        # each is inserted once, already evaluated, instead of inserted pending and then marked.
        fused = connect(Path(tmp) / "sentinel-fused.db")
        prepare_new_store(fused)
        migrate(fused, stamp)
        received = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

        def insert_evaluated() -> None:
            for start in range(0, len(parsed), 500 // BATCH):
                fused.execute("BEGIN IMMEDIATE")
                fused.executemany(
                    "INSERT OR IGNORE INTO events (uuid, event_type, published, received_at, evaluated_at, body) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [(e.uuid, e.event_type, e.published.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), received, received,
                      e.source) for d in parsed[start:start + 500 // BATCH] for e in d.events])
                fused.execute("COMMIT")

        fused_cpu = _per_event(insert_evaluated, events)
        fused.close()
    stages.append(("", "(not counted) INSERT already evaluated + commit: replaces unpack INSERT + mark evaluated",
                   fused_cpu))
    stages.append((DETECTOR, "pending uuids (events kept from unpacking)", 1e6 * read_cpu / events))
    stages.append((DETECTOR, "engine, default pack (with the decoding of each body it reads)", 1e6 * eval_cpu / events))
    stages.append((DETECTOR, "mark evaluated + state + commit", 1e6 * write_cpu / events))
    stages.append(("", "(not counted) reading back + parsing, when not kept", 1e6 * read_back_cpu / len(read_back)))
    return stages


def log_as_the_daemon(folder: Path) -> Path:
    """Logging as ``sentinel serve`` sets it up in the detector's process for the shipped configuration
    (its ``[logging]`` level and format, the stderr handler with its redacting filter), the handler's stream
    sent to a file in ``folder`` instead of the terminal: the loop pays for every line the daemon writes.
    Returns the file. (Before, the loop ran at WARNING and never paid for its INFO lines.)"""
    import logging

    from sentinel import log as sentinel_log
    from sentinel.config import load_config

    settings = load_config(ROOT / "sentinel.toml", environ={}, resolve_secrets=False)
    sentinel_log.configure(settings.logging.level, settings.logging.format)
    logging.getLogger("sentinel").setLevel(logging.NOTSET)  # nothing sets it in the daemon: the root's applies
    path = folder / "detector.log"
    (handler,) = logging.getLogger().handlers
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(path.open("a", encoding="utf-8"))
    return path


def detector_loop(deliveries: int, fused: bool) -> float:
    """CPU µs per event of the real detector loop (``Detector.run``, default pack, its store and writer
    thread, logging as the daemon's: :func:`log_as_the_daemon`) draining ``deliveries`` 10-event bodies
    stored in the inbox beforehand; ``fused``: the batch's events evaluated as they are unpacked (issue 16),
    else stored pending, then evaluated."""
    import asyncio
    import logging
    from datetime import UTC, datetime

    from sentinel.clock import SystemClock
    from sentinel.service import detector as detector_module
    from sentinel.service.detector import Detector
    from sentinel.store import Store

    body = batch_template(BATCH)
    prefix = uuid.uuid4().hex[:8]

    async def run(folder: Path) -> float:
        store = Store(folder / "sentinel.db")
        store.start(datetime.now(UTC))
        try:
            for i in range(deliveries):
                await store.receive(fill(body, prefix, i), datetime.now(UTC))
            detector = Detector(store, RuleEvaluator(load_rules([ROOT / "rules"]), 100_000), lambda a: ["log"],
                                SystemClock())
            await detector.load_state()
            stop = asyncio.Event()
            detector_module.FUSED = fused
            started = time.process_time()
            task = asyncio.create_task(detector.run(stop))
            while detector._unpacked_upto < deliveries or await store.pending_uuids(1):
                await asyncio.sleep(0.01)
            cpu = time.process_time() - started
            stop.set()
            detector.wake()
            await task
            return cpu
        finally:
            store.close()

    with tempfile.TemporaryDirectory(prefix="sentinel-bench-loop-") as tmp:
        log_as_the_daemon(Path(tmp))
        try:
            return 1e6 * asyncio.run(run(Path(tmp))) / (deliveries * BATCH)
        finally:
            for handler in logging.getLogger().handlers:
                handler.close()
                logging.getLogger().removeHandler(handler)


def show(stages: list[tuple[str, str, float]]) -> str:
    bare = stages[0][2]
    intake = sum(v for process, _, v in stages if process == INTAKE)
    detector = sum(v for process, _, v in stages if process == DETECTOR)
    rows = [[process or "-", name, f"{v:.1f}"] for process, name, v in stages]
    rows.append([INTAKE, "intake, all stages but HTTP", f"{intake:.1f}"])
    rows.append([INTAKE, "ratio intake / bare, per event, without HTTP", f"{intake / bare:.2f}x"])
    rows.append([DETECTOR, "detector, all stages (its own process and core)", f"{detector:.1f}"])
    rows.append([DETECTOR, "ratio detector / bare json.loads, per event", f"{detector / bare:.2f}x"])
    rate = 1e6 / detector if detector else 0.0
    summary = table(["target", "figure", "verdict"],
                    [[f"detector >= {DETECTOR_TARGET:,} events/s on one core (sum of its stages)",
                      f"{rate:,.0f} events/s", "PASS" if rate >= DETECTOR_TARGET else "MISS"]])
    return table(["process", "stage (CPU per event, one thread)", "µs"], rows) + "\n\n" + summary


def _cli() -> None:
    import argparse
    import os

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=2_000, help="10-event deliveries (default 2,000)")
    args = parser.parse_args()
    sqlite3.enable_callback_tracebacks(True)
    print(f"load average at the start: {os.getloadavg()[0]:.2f}")
    print(show(breakdown(args.deliveries)))
    print()
    loop = [(fused, detector_loop(args.deliveries, fused)) for fused in (False, True, False, True)]
    rows = [["evaluated as unpacked (issue 16)" if fused else "stored pending, then evaluated (before)",
             f"{us:.1f}", f"{1e6 / us:,.0f}"] for fused, us in loop]
    print("The real detector loop (Detector.run draining the inbox, its writer thread included), CPU, "
          "interleaved:")
    print(table(["path", "µs/event", "events/s"], rows))
    best = 1e6 / min(us for fused, us in loop if fused)
    print(table(["target", "figure", "verdict"],
                [[f"detector loop >= {DETECTOR_TARGET:,} events/s on one core", f"{best:,.0f} events/s",
                  "PASS" if best >= DETECTOR_TARGET else "MISS"]]))
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    _cli()
