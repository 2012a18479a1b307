"""The detector's own process, as `sentinel serve` runs it: supervised, secret-free, never outliving the
daemon, and never in the way of intake."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
from conftest import alert_rules, envelope, make_event, settled, stored, wait_for
from daemon import SECRET, Daemon, write_config


def detector_of(daemon: Daemon) -> int:
    assert daemon.proc is not None
    pid = daemon.proc.pid
    assert wait_for(lambda: Path(f"/proc/{pid}/task/{pid}/children").read_text().split() != [])
    (child,) = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return int(child)


def gone(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status  # a zombie has exited


def metric(daemon: Daemon, name: str) -> float:
    for line in httpx.get(f"{daemon.url}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def test_the_detector_gets_no_secret(ruled: Daemon) -> None:
    environ = Path(f"/proc/{detector_of(ruled)}/environ").read_bytes()
    assert SECRET.encode() not in environ
    assert b"SENTINEL_OKTA_SECRET" not in environ


def test_a_killed_detector_is_restarted_and_nothing_is_lost_meanwhile(ruled: Daemon) -> None:
    db = ruled.config.parent / "state" / "sentinel.db"
    first = detector_of(ruled)
    os.kill(first, signal.SIGSTOP)  # hold it, so deliveries wait in the inbox while it is "down"
    try:
        for i in range(5):
            assert ruled.post(envelope(make_event(f"while-down-{i}", "user.account.lock"))).status_code == 204
    finally:
        os.kill(first, signal.SIGKILL)
    assert wait_for(lambda: gone(first))
    ready = httpx.get(f"{ruled.url}/readyz", timeout=10)
    if ready.status_code == 503:  # between the death and the restart (1 s): said, not hidden
        assert ready.json()["detector"] == "failing" and ready.json()["problems"] == ["detector"]
    assert wait_for(lambda: not gone(detector_of(ruled)) and detector_of(ruled) != first)
    assert wait_for(lambda: settled(db), timeout=30)
    assert stored(db) == [f"while-down-{i}" for i in range(5)]
    assert wait_for(lambda: alert_rules(ruled.config.parent).count("test-lock") == 5)
    # Gauges refreshed by the monitor (every 5 s).
    assert wait_for(lambda: metric(ruled, "sentinel_detector_restarts") == 1)
    assert wait_for(lambda: metric(ruled, "sentinel_detector_up") == 1)
    assert "detector process" in ruled.log() and "exited" in ruled.log()


def test_the_detector_dies_with_the_daemon_and_a_new_one_takes_over(tmp_path: Path) -> None:
    d = Daemon(write_config(tmp_path)).start()
    child = detector_of(d)
    assert d.post(envelope(make_event("before-kill"))).status_code == 204
    d.kill()  # SIGKILL: no chance to tell the child
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not gone(child):
        time.sleep(0.05)
    assert gone(child), "the detector outlived a SIGKILLed daemon"
    d.start()
    try:
        assert d.post(envelope(make_event("after-restart"))).status_code == 204
        db = tmp_path / "state" / "sentinel.db"
        assert wait_for(lambda: settled(db))
        assert stored(db) == ["after-restart", "before-kill"]
    finally:
        d.stop()


def test_sigterm_to_the_whole_group_stops_cleanly(tmp_path: Path) -> None:
    """systemd's stop signals every process of the unit: the detector must not exit first and be
    mistaken for a crash."""
    d = Daemon(write_config(tmp_path)).start()
    child = detector_of(d)
    assert d.post(envelope(make_event("g-1"))).status_code == 204
    assert d.proc is not None
    os.kill(child, signal.SIGTERM)
    d.proc.send_signal(signal.SIGTERM)
    d.proc.wait(20)
    assert wait_for(lambda: gone(child))
    assert "exited" not in d.log(), d.log()[-2000:]
    assert stored(tmp_path / "state" / "sentinel.db") == ["g-1"]
