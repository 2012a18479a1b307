"""``/readyz`` and ``sentinel_ready{check}`` tell the truth, tersely, against the real daemon: a full disk
(a real one, a small tmpfs) turns ``store`` failing until a delivery is stored again, and a reload that is
rejected or crashes turns ``last_reload`` failing, with no config text in the unauthenticated body."""

from __future__ import annotations

import errno
import os
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import alert_rules, envelope, make_event, stored, wait_for
from daemon import Daemon, write_config
from proof_helpers import inbox_of

READY_FIELDS = {"status", "store", "rules_loaded", "detector", "last_reload", "rules", "problems"}


def ready(daemon: Daemon) -> httpx.Response:
    response = httpx.get(f"{daemon.url}/readyz", timeout=10)
    assert set(response.json()) == READY_FIELDS
    return response


def gauge(daemon: Daemon, check: str) -> float:
    prefix = f'sentinel_ready{{check="{check}"}} '
    for line in httpx.get(f"{daemon.url}/metrics", timeout=10).text.splitlines():
        if line.startswith(prefix):
            return float(line.removeprefix(prefix))
    raise AssertionError(f"no {prefix.strip()} in /metrics")


def fill(folder: Path) -> Path:
    """Take every free byte of the file system under ``folder``."""
    filler = folder / "filler"
    block = b"\0" * 65536
    with filler.open("wb", buffering=0) as handle:
        try:
            while True:
                handle.write(block)
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
    # The last partial block, byte by byte in pages.
    with filler.open("ab", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
    return filler


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """``tmp_path/state`` on an 8 MiB tmpfs of its own (mounting needs root, as here and in CI)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    state = tmp_path / "state"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", str(state)], check=True)
    try:
        yield state
    finally:
        subprocess.run(["umount", "-l", str(state)], check=False)


@pytest.mark.proof
def test_a_full_disk_turns_store_failing_until_a_delivery_is_stored_again(tmp_path: Path, small_disk: Path) -> None:
    d = Daemon(write_config(tmp_path)).start()
    try:
        assert d.post(envelope(make_event("before"))).status_code == 204
        assert ready(d).json()["store"] == "ok"
        # A real delivery, large enough to need new space in the inbox's WAL.
        padding = "x" * 2000
        big = envelope(*[make_event(f"full-{i}", displayMessage=padding) for i in range(200)])
        filler = fill(small_disk)
        assert d.post(big).status_code == 503
        response = ready(d)
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "unavailable"
        assert body["store"] == "failing"
        assert body["problems"] == ["store"]
        assert str(tmp_path) not in response.text and "SQLITE" not in response.text.upper()
        assert gauge(d, "store") == 0
        assert "store failed: could not persist" in d.log()  # the reason: in the log
        # An empty write transaction still commits on a full disk: that must not clear the failure.
        assert ready(d).json()["store"] == "failing"
        # Space returns; Okta's retry is stored, and with it the store is ready again.
        filler.unlink()
        assert d.post(big).status_code == 204
        response = ready(d)
        assert response.status_code == 200
        assert response.json()["store"] == "ok" and response.json()["problems"] == []
        assert gauge(d, "store") == 1
        assert "store: deliveries are stored again" in d.log()
        assert len(stored(tmp_path / "state" / "sentinel.db")) == 201
    finally:
        d.stop()


BROKEN_CHANNEL = """
[channels.slack]
urls = ["slack://${SLACK_TOKEN_A}/${SLACK_TOKEN_B}/${SLACK_TOKEN_C}/#security-alerts"]
"""


@pytest.mark.proof
def test_a_rejected_reload_says_failing_without_the_config_text(ruled: Daemon) -> None:
    assert ready(ruled).json()["last_reload"] == "ok"
    assert gauge(ruled, "last_reload") == 1
    good = ruled.config.read_text()
    ruled.config.write_text(good + BROKEN_CHANNEL)
    assert ruled.proc is not None
    ruled.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "reload rejected" in ruled.log())
    assert "SLACK_TOKEN_A" in ruled.log()  # the detail: in the log
    response = ready(ruled)
    # Still ready: the previous configuration runs on.
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "store": "ok", "rules_loaded": True, "detector": "ok",
                               "last_reload": "failing", "rules": 1, "problems": []}
    for detail in ("SLACK", "slack", "channels", "not set", str(ruled.config.parent)):
        assert detail not in response.text
    assert gauge(ruled, "last_reload") == 0
    ruled.config.write_text(good)
    ruled.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: ready(ruled).json()["last_reload"] == "ok")
    assert gauge(ruled, "last_reload") == 1


@pytest.mark.proof
def test_a_reload_that_crashes_says_failing_and_the_daemon_runs_on(ruled: Daemon) -> None:
    good = ruled.config.read_text()
    # Nested deeper than the TOML parser can recurse: it raises RecursionError, which nothing in the
    # reload path expects (should the config loader learn to reject it, the reload is "rejected" instead).
    ruled.config.write_text(good + "\n[extra]\nx = " + "[" * 5000 + "]" * 5000 + "\n")
    assert ruled.proc is not None
    ruled.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "reload crashed" in ruled.log() or "reload rejected" in ruled.log())
    assert wait_for(lambda: ready(ruled).json()["last_reload"] == "failing")
    response = ready(ruled)
    assert response.status_code == 200 and response.json()["problems"] == []
    assert "Recursion" not in response.text and "extra" not in response.text
    assert gauge(ruled, "last_reload") == 0
    assert 'sentinel_reloads_total{result="failed"} 1.0' in httpx.get(f"{ruled.url}/metrics").text
    # Running on the previous configuration: deliveries are stored, rules match, alerts go out.
    assert ruled.post(envelope(make_event("after-crash", "user.account.lock"))).status_code == 204
    assert wait_for(lambda: alert_rules(ruled.config.parent) == ["test-lock"])
    ruled.config.write_text(good)
    ruled.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: ready(ruled).json()["last_reload"] == "ok")


def test_every_check_has_a_gauge(ruled: Daemon) -> None:
    body = ready(ruled).json()
    assert body["problems"] == []
    for check in ("store", "rules_loaded", "detector", "last_reload"):
        assert gauge(ruled, check) == 1, check
    assert body["status"] == "ok"


@pytest.mark.proof
def test_a_lock_seen_by_readyz_clears_from_the_gauge_without_another_readyz(daemon: Daemon) -> None:
    inbox = inbox_of(daemon.config.parent / "state" / "sentinel.db")
    blocker = sqlite3.connect(inbox, isolation_level=None, timeout=0.1)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        response = ready(daemon)
        assert response.status_code == 503 and response.json()["problems"] == ["store"]
        assert gauge(daemon, "store") == 0
        assert "the store cannot take a write transaction" in daemon.log()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    # The monitor checks again while the check fails (every 5 s): /metrics alone sees the recovery.
    assert wait_for(lambda: gauge(daemon, "store") == 1, timeout=12)
    assert ready(daemon).status_code == 200
