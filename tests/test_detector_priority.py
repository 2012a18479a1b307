"""The detector lowers its own CPU and disk priority ([detector] cpu_priority, io_priority), each thread."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from sentinel.service.detector_priority import IOPRIO_CLASS_IDLE


def lowered(cpu: str, io: str) -> dict[str, object]:
    """Apply the settings in a fresh process, start a thread, and report what that thread runs at."""
    code = f"""
import json, os, threading
from sentinel.service.detector_priority import io_priority_class, lower_cpu_priority, lower_io_priority
problems = [lower_cpu_priority({cpu!r}), lower_io_priority({io!r})]
seen = {{}}
def look():
    seen.update(policy=os.sched_getscheduler(0), nice=os.nice(0), io=io_priority_class())
t = threading.Thread(target=look); t.start(); t.join()
print(json.dumps({{"problems": problems, **seen}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return dict(json.loads(out))


def test_idle_runs_every_thread_under_sched_idle_and_the_idle_io_class() -> None:
    seen = lowered("idle", "idle")
    assert seen["problems"] == [None, None]
    assert seen["policy"] == os.SCHED_IDLE
    assert seen["io"] == IOPRIO_CLASS_IDLE


@pytest.mark.parametrize(("cpu", "nice"), [("low", 5), ("normal", 0)])
def test_low_is_nice_5_and_normal_changes_nothing(cpu: str, nice: int) -> None:
    base = int(subprocess.run([sys.executable, "-c", "import os; print(os.nice(0))"], capture_output=True,
                              text=True, check=True).stdout)
    seen = lowered(cpu, "normal")
    assert seen["problems"] == [None, None]
    assert seen["policy"] == os.SCHED_OTHER
    assert seen["nice"] == min(19, base + nice)  # relative to the daemon's own
    assert seen["io"] != IOPRIO_CLASS_IDLE
