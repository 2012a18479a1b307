"""Run every benchmark (``make bench``) and print one summary table with PASS/MISS per target.

Each benchmark runs in its own process (so memory figures are not polluted by the others, and a crash in
one does not hide the rest); each compares Sentinel with a baseline measured in the same run. These are
benchmarks, not tests: they print figures and never fail the build on a missed target. The exit code is
non-zero only if a benchmark could not run at all.

    python bench/run_all.py            # full run, about 11 minutes on a 2-core machine (684 s measured)
    python bench/run_all.py --quick    # smoke run, about two minutes
    python bench/run_all.py --only engine memory
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import BENCH, machine, table

BENCHES = ["engine", "memory", "ingest", "end_to_end"]
OPTIONAL = ["sustained"]  # 10 minutes (1 with --quick): only when named in --only
LIMIT_SECONDS = {"engine": 300, "memory": 400, "ingest": 1500, "end_to_end": 200, "sustained": 1200}


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    names = ["starlette", "uvicorn", "uvloop", "httptools", "msgspec", "apprise", "google-re2"]
    found = []
    for name in names:
        with contextlib.suppress(PackageNotFoundError):  # a missing optional package is not listed
            found.append(f"{name} {version(name)}")
    import sqlite3

    return ", ".join([f"SQLite {sqlite3.sqlite_version}", *found])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run of every benchmark")
    parser.add_argument("--only", nargs="+", choices=BENCHES + OPTIONAL,
                        help="run only these benchmarks (sustained runs only when named here)")
    args = parser.parse_args()
    info = machine()
    print(f"machine: {info['nproc']} CPUs, {info['cpu']}, Python {info['python']}; {versions()}")
    print(f"load average at start: {os.getloadavg()[0]:.2f} (other work on the machine skews the figures)")
    print(flush=True)
    results: list[dict[str, Any]] = []
    failed: list[str] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sentinel-bench-all-") as tmp:
        for name in args.only or BENCHES:
            out = Path(tmp) / f"{name}.json"
            argv = [sys.executable, str(BENCH / f"{name}.py"), "--json", str(out)]
            if args.quick:
                argv.append("--quick")
            print(f"=== {name} {'(quick)' if args.quick else ''}", flush=True)
            began = time.monotonic()
            try:
                code = subprocess.run(argv, timeout=LIMIT_SECONDS[name], check=False).returncode
            except subprocess.TimeoutExpired:
                code = -1
                print(f"{name}: stopped after {LIMIT_SECONDS[name]} s", flush=True)
            print(f"=== {name}: {time.monotonic() - began:.0f} s\n", flush=True)
            if code != 0 or not out.exists():
                failed.append(name)
                continue
            results.append(json.loads(out.read_text(encoding="utf-8")))
    rows = []
    for result in results:
        for t in result["targets"]:
            op = ">=" if t["higher_is_better"] else "<="
            met = t["value"] >= t["limit"] if t["higher_is_better"] else t["value"] <= t["limit"]
            rows.append([result["bench"], t["name"], f"{t['value']:,.1f} {t['unit']}".strip(),
                         f"{op} {t['limit']:,.0f} {t['unit']}".strip(), "PASS" if met else "MISS"])
    for name in failed:
        rows.append([name, "(did not run to the end)", "-", "-", "ERROR"])
    print(f"Summary ({'quick' if args.quick else 'full'} run, {time.monotonic() - started:.0f} s, "
          f"load average now {os.getloadavg()[0]:.2f})")
    print(table(["bench", "target", "measured", "target", "verdict"], rows))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
