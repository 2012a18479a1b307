"""Where an ingested event's CPU time goes: each stage of Sentinel's path timed alone, in one thread.

Stages, per event, for 10-event deliveries of the realistic sign-in event used by ``bench/ingest.py``:
1. ``json.loads`` of the body (the bare baseline endpoint does exactly this, and nothing else);
2. ``parse_delivery`` (the same ``json.loads`` plus the checks and ``Event`` objects);
3. ``ingest``: re-serialising each event and ``INSERT OR IGNORE`` into SQLite (WAL), commit not counted;
4. one group commit (``synchronous=FULL``: an fsync) per 32 deliveries, the grouping seen under load;
5. the detector: ``pending_uuids`` (intake hands it the parsed events), the engine with the default pack,
   ``record_evaluation`` (mark evaluated, write alerts and state) and its commit.
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

from sentinel.evaluator import RuleEvaluator
from sentinel.model import Alert
from sentinel.okta import parse_delivery
from sentinel.rules import load_rules
from sentinel.store import connect
from sentinel.store.alerts import record_evaluation
from sentinel.store.events import ingest, pending_events, pending_uuids
from sentinel.store.schema import migrate

BATCH = 10
GROUP = 32  # deliveries per commit (the number of concurrent connections in bench/ingest.py)


def _per_event(fn: Callable[[], Any], events: int) -> float:
    started = time.process_time()
    fn()
    return 1e6 * (time.process_time() - started) / events


def breakdown(deliveries: int = 2_000) -> list[tuple[str, float]]:
    """Microseconds of CPU per event for each stage."""
    from datetime import UTC, datetime

    body = batch_template(BATCH)
    prefix = uuid.uuid4().hex[:8]
    bodies = [fill(body, prefix, i) for i in range(deliveries)]
    events = deliveries * BATCH
    now = datetime.now(UTC)
    stages: list[tuple[str, float]] = []
    # Best of three for the two parse stages: they are short, and the machine may be shared.
    stages.append(("json.loads of the body (= the bare endpoint's work)",
                   min(_per_event(lambda: [json.loads(b) for b in bodies], events) for _ in range(3))))
    stages.append(("parse_delivery (json.loads + checks + Event objects)",
                   min(_per_event(lambda: [parse_delivery(b) for b in bodies], events) for _ in range(3))))
    parsed = [parse_delivery(b) for b in bodies]
    with tempfile.TemporaryDirectory(prefix="sentinel-bench-breakdown-") as tmp:
        path = Path(tmp) / "sentinel.db"
        conn = connect(path)
        migrate(conn, "2026-01-01T00:00:00.000000Z")

        def insert_all() -> None:
            for start in range(0, deliveries, GROUP):
                conn.execute("BEGIN IMMEDIATE")
                for d in parsed[start:start + GROUP]:
                    ingest(conn, d.events, d.quarantined, now)
                conn.execute("ROLLBACK")

        stages.append(("ingest: re-serialise + INSERT (no commit)", _per_event(insert_all, events)))

        def insert_commit() -> None:
            for start in range(0, deliveries, GROUP):
                conn.execute("BEGIN IMMEDIATE")
                for d in parsed[start:start + GROUP]:
                    ingest(conn, d.events, d.quarantined, now)
                conn.execute("COMMIT")

        with_commit = _per_event(insert_commit, events)
        stages.append((f"group commit (FULL, one per {GROUP} deliveries)", max(0.0, with_commit - stages[-1][1])))

        evaluator = RuleEvaluator(load_rules([ROOT / "rules"]), 100_000)

        def route(alert: Alert) -> list[str]:
            return ["log"]

        # The daemon's detector is handed each new delivery's parsed events by intake, so it only reads
        # which uuids are pending (the index); reading bodies back happens only after a restart or a backlog.
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
    stages.append(("detector: pending uuids (events handed over)", 1e6 * read_cpu / events))
    stages.append(("detector: engine, default pack", 1e6 * eval_cpu / events))
    stages.append(("detector: mark evaluated + state + commit", 1e6 * write_cpu / events))
    stages.append(("(not counted) reading back + parsing, when not handed over", 1e6 * read_back_cpu / len(read_back)))
    return stages


def show(stages: list[tuple[str, float]]) -> str:
    sentinel = sum(v for name, v in stages[1:] if not name.startswith("(not counted)"))
    rows = [[name, f"{v:.1f}"] for name, v in stages]
    rows.append(["Sentinel, all stages but HTTP (2..7)", f"{sentinel:.1f}"])
    rows.append(["ratio Sentinel / bare, per event, without HTTP", f"{sentinel / stages[0][1]:.1f}x"])
    return table(["stage (CPU per event, one thread)", "µs"], rows)


def _cli() -> None:
    sqlite3.enable_callback_tracebacks(True)
    print(show(breakdown()))


if __name__ == "__main__":
    _cli()
