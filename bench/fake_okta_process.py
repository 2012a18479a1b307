"""The tests' fake Okta (tests/fake_okta.py) in a process of its own, for benchmarks that time something.

Okta's servers are not on Sentinel's machine. In the benchmark's own process, the fake's page building
(filtering the day, ``json.dumps`` of a 2-3 MB page: 20-40 ms holding the GIL) stalls the load generator
and the capture server that time the live path, so a page read shows up as live latency that the daemon
never caused. In a process of its own, pinned to the benchmark's CPU and niced (it stands for a machine
elsewhere), the fake shares only CPU time with the client, through the kernel's scheduler.

The day is generated in the child (``bench/backfill.py``'s ``org_day``) and added to the fake's log when
the parent says so; only the base URL and the day's newest uuid (its last alert) cross the pipe.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path

NICENESS = 10


def _serve(conn: Connection, token: str, rate_limit: int, events: int, alerting: float, cpu: int | None) -> None:
    here = Path(__file__).resolve().parent
    sys.path[:0] = [str(here), str(here.parent / "tests")]
    from backfill import org_day
    from common import pin_to
    from fake_okta import FakeOkta

    if cpu is not None:
        pin_to(cpu)
    os.nice(NICENESS)
    day = org_day(events, datetime.now(UTC) - timedelta(seconds=5), alerting)
    fake = FakeOkta(api_token=token, rate_limit=rate_limit, rate_window=60.0).start()
    conn.send((fake.base, str(day[-1]["uuid"])))
    try:
        while True:
            message = conn.recv()
            if message == "add":
                fake.add(day)
                conn.send("added")
            elif message == "stop":
                break
    except EOFError:
        pass
    finally:
        fake.stop()


class FakeOktaProcess:
    """``base``: the fake's URL; ``marker``: the uuid of the day's newest event. ``add()`` puts the day in."""

    def __init__(self, token: str, rate_limit: int, events: int, alerting: float, cpu: int | None = 1) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of a process with threads and a running loop
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, token, rate_limit, events, alerting, cpu),
                                        daemon=True, name="fake-okta")
        self._process.start()
        child.close()
        self.base, self.marker = self._conn.recv()

    def add(self) -> None:
        self._conn.send("add")
        self._conn.recv()

    def stop(self) -> None:
        try:
            self._conn.send("stop")
        except OSError:
            pass
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
