"""A burst of alerts to the log channel (issue 16, point 3): how long the dispatcher takes to write and
record N alerts queued at once, one at a time (the path before: a write, an fsync and a durable commit
each) against many at once (``send_many``: one write and fsync, one transaction per 500), same run.

Real store and log file under a temporary folder; alerts made as the detector makes them (one
transaction), then drained by ``Dispatcher.run_once`` until nothing is due. Wall time, so read the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common import ROOT, Report, table

sys.path.insert(0, str(ROOT / "tests"))
from helpers_capture import sample_alert  # the tests' realistic alert (a Super administrator grant)

from sentinel.clock import FixedClock
from sentinel.delivery.log_channel import LogChannel
from sentinel.model import Alert, DeliveryOutcome
from sentinel.service.dispatch import Dispatcher
from sentinel.store import Store

AT = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


class OneByOne:
    """The log channel seen without ``send_many``: the dispatcher's per-delivery path."""

    kind = "log"

    def __init__(self, channel: LogChannel) -> None:
        self.channel, self.name = channel, channel.name

    async def send(self, alert: Alert) -> DeliveryOutcome:
        return await self.channel.send(alert)


async def drain(folder: Path, count: int, together: bool) -> tuple[float, int]:
    store = Store(folder / "s.db")
    store.start(AT)
    alerts = [sample_alert(key=f"k{i}", title=f"burst {i}", last_seen=AT - timedelta(hours=3)) for i in range(count)]
    await store.record_evaluation([], alerts, lambda a: ["log"], {}, [], AT)
    log = LogChannel("log", folder / "alerts.jsonl")
    dispatcher = Dispatcher(log if together else OneByOne(log), store, FixedClock(AT))  # type: ignore[arg-type]
    began = time.perf_counter()
    while await dispatcher.run_once():
        pass
    seconds = time.perf_counter() - began
    lines = len((folder / "alerts.jsonl").read_text(encoding="utf-8").splitlines())
    store.close()
    return seconds, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    import logging

    logging.disable(logging.INFO)  # a line per alert to the terminal would measure the terminal
    rows = []
    report = Report("dispatch_burst")
    for round_no in range(args.rounds):
        for together in (False, True):
            with tempfile.TemporaryDirectory(prefix="sentinel-burst-") as tmp:
                seconds, lines = asyncio.run(drain(Path(tmp), args.alerts, together))
            rows.append([round_no, "500 at once" if together else "one by one", lines, f"{seconds:.2f}",
                         f"{lines / seconds:,.0f}", f"{os.getloadavg()[0]:.2f}"])
            print("  " + "  ".join(str(c) for c in rows[-1]), flush=True)
    print(table(["round", "log channel", "alerts written", "seconds", "alerts/s", "load average"], rows))
    best = min(float(str(r[3])) for r in rows if r[1] == "500 at once")
    report.add(f"{args.alerts:,} alerts to the log channel drained in", best, 10, "s", higher_is_better=False)
    report.write(args.json)


if __name__ == "__main__":
    main()
