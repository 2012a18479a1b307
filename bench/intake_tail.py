"""Intake's tail against detection's levers (issue 16, point 2): interleaved A/B at a fixed rate.

Each round runs the durable baseline (``bench/bare_app.py --durable``), then Sentinel once per variant
of its ``[detector]`` settings, each on a fresh server pinned as ``bench/ingest.py`` pins them (intake and
the baselines on CPU 0; the detector and this client on CPU 1), at ``--rate`` requests/s of 10-event
deliveries, open loop, for ``--seconds``. With ``--backlog S``, each Sentinel run first takes S seconds
at intake's maximum rate, so the fixed-rate phase runs while the detector drains a backlog. Rounds
interleave the variants so that a busy minute of a shared machine hits all of them alike; the verdict
uses the median over rounds of each run's p99 divided by the durable p99 of the same round.

Prints each run (p50, p99, p99.9, the client's own lateness, the load average) and a table per variant.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

from common import (
    Processes,
    Report,
    arguments,
    backlog,
    batch_template,
    detector_pid,
    drain,
    fill,
    free_port,
    open_loop,
    pin_to,
    request_bytes,
    run_async,
    sentinel_config,
    start_bare,
    start_sentinel,
    table,
)
from ingest import HEADERS, P99_VS_DURABLE, run_python

BEFORE = {"cpu_priority": "low", "io_priority": "normal", "inbox_checkpoint": "passive", "yield_ms": 0}
# Each lever alone against the settings before issue 16's pacing, then the shipped defaults together.
VARIANTS: dict[str, dict[str, object]] = {
    "before": BEFORE,
    "cpu-idle": {**BEFORE, "cpu_priority": "idle"},
    "io-idle": {**BEFORE, "io_priority": "idle"},
    "restart": {**BEFORE, "inbox_checkpoint": "restart"},
    "yield-2ms": {**BEFORE, "yield_ms": 2},
    "defaults": {},
}


def detector_table(values: dict[str, object]) -> str:
    lines = [f'{k} = {v!r}'.replace("'", '"') for k, v in values.items()]
    return "[detector]\n" + "\n".join(lines) + "\n" if lines else ""


def _sample_size(path: Path, sizes: list[float], done: threading.Event) -> None:
    """The file's size in MB every 100 ms until ``done`` (0 while it does not exist)."""
    while not done.wait(0.1):
        try:
            sizes.append(path.stat().st_size / 1e6)
        except OSError:
            sizes.append(0.0)


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="fixed-rate phase per run")
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--backlog", type=float, default=0.0, help="seconds at maximum rate before each Sentinel run")


def main() -> None:
    args = arguments(__doc__, _options)
    if args.quick:
        args.rounds, args.seconds = 1, 5.0
    names = [v for v in args.variants.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s): {', '.join(unknown)}")
    pin_to(1)
    body = batch_template(10)
    p99: dict[str, list[float]] = {name: [] for name in ["durable", *names]}
    ratios: dict[str, list[float]] = {name: [] for name in names}
    wal_mb: dict[str, list[float]] = {name: [] for name in ["durable", *names]}
    print(f"intake tail: {args.rounds} rounds of durable + {', '.join(names)}; {args.rate} req/s x 10 events, "
          f"{args.seconds:.0f} s each{f', after {args.backlog:.0f} s at maximum rate' if args.backlog else ''}; "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    report = Report("intake_tail")
    with tempfile.TemporaryDirectory(prefix="sentinel-tail-") as tmp, Processes() as procs:
        for round_no in range(args.rounds):
            durable = 0.0
            for name in ["durable", *names]:
                folder = Path(tmp) / f"{name}-{round_no}"
                folder.mkdir()
                port = free_port()
                if name == "durable":
                    proc = start_bare(procs, folder, port, cpu=0, durable=True)
                else:
                    config = sentinel_config(folder, port, extra=detector_table(VARIANTS[name]))
                    proc = start_sentinel(procs, folder, config, port, cpu=0)
                    pin_to(1, detector_pid(proc.pid))
                prefix = uuid.uuid4().hex[:12]

                def make(i: int, prefix: str = prefix) -> bytes:
                    return request_bytes("/hooks/okta", fill(body, prefix, i), HEADERS)

                run_async(open_loop(port, make, args.rate, 1.0))  # warm-up
                time.sleep(0.3)
                if args.backlog and name != "durable":
                    run_python(port, body, args.backlog)
                waiting = backlog(folder)[0] if name != "durable" else 0
                wal = folder / ("bare.inbox.db-wal" if name == "durable" else "state/sentinel.inbox.db-wal")
                sizes: list[float] = []
                done = threading.Event()
                sampler = threading.Thread(target=_sample_size, args=(wal, sizes, done), daemon=True)
                sampler.start()
                result = run_async(open_loop(port, make, args.rate, args.seconds))
                done.set()
                sampler.join()
                left = backlog(folder)[0] if name != "durable" else 0
                drained = drain(folder, 120) if name != "durable" else 0.0
                procs.stop(proc)
                p99[name].append(result.p(99))
                if name == "durable":
                    durable = result.p(99)
                else:
                    ratios[name].append(result.p(99) / durable)
                wal_mb[name].append(max(sizes, default=0.0))
                extra = (f"  backlog {waiting:,} -> {left:,} deliveries, drained {drained:.1f} s later"
                         if name != "durable" else "")
                print(f"round {round_no} {name:10} p50 {result.p(50):6.2f}  p99 {result.p(99):7.2f}  "
                      f"p99.9 {result.p(99.9):7.2f} ms  errors {result.errors}  client late <= "
                      f"{result.max_lag_ms:5.1f} ms  inbox WAL <= {wal_mb[name][-1]:.0f} MB  load "
                      f"{os.getloadavg()[0]:.2f}{extra}", flush=True)
    print()
    print(table(["variant", "p99 ms per round", "median p99 ms", "median p99 / durable same round",
                 "largest inbox WAL MB"],
                [[n, " ".join(f"{v:.1f}" for v in p99[n]), statistics.median(p99[n]),
                  f"{statistics.median(ratios[n]):.2f}" if n in ratios else "1.00", max(wal_mb[n])]
                 for n in ["durable", *names]]))
    print(f"(load average at the end {os.getloadavg()[0]:.2f}; variants: "
          + "; ".join(f"{n} = {VARIANTS[n] or 'the shipped defaults'}" for n in names) + ")")
    for name in names:
        report.add(f"{name}: p99 / durable p99{' draining a backlog' if args.backlog else ''}",
                   statistics.median(ratios[name]), P99_VS_DURABLE, "x", higher_is_better=False)
    report.write(args.json)


if __name__ == "__main__":
    main()
