"""The detector's own process, as `sentinel serve` runs it: supervised, secret-free, never outliving the
daemon, and never in the way of intake."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import httpx
import pytest
from conftest import LOCK_RULE, alert_rules, envelope, make_event, settled, spray_rule, stored, wait_for
from daemon import SECRET, Daemon, write_config

from sentinel.service.detector_process import child_environment


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


METRICS_TOKEN = "metrics-token-5b1e0c"
CHANNEL_TOKEN = "channel-token-9d44a7"
# A channel whose URL takes a secret from the environment; no alert here reaches it (critical only).
SECRET_CHANNEL = """
[channels.webhook]
urls = ["json://127.0.0.1:9/${CHANNEL_TOKEN}"]
min_severity = "critical"
"""


def environment_of(pid: int) -> dict[bytes, bytes]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split(b"=", 1) for item in raw.split(b"\0") if item)


@pytest.mark.proof
def test_the_detector_gets_no_secret(tmp_path: Path) -> None:
    """Not the Okta secret, the metrics token, a channel's ${VARIABLE}, nor where credentials are."""
    config = write_config(tmp_path, extra=SECRET_CHANNEL)
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    env = {"SENTINEL_METRICS_TOKEN": METRICS_TOKEN, "CHANNEL_TOKEN": CHANNEL_TOKEN,
           "CREDENTIALS_DIRECTORY": str(credentials)}
    d = Daemon(config, env=env).start()
    try:
        daemon_env = environment_of(d.proc.pid)  # type: ignore[union-attr]
        child_env = environment_of(detector_of(d))
    finally:
        d.stop()
    secret_names = [b"SENTINEL_OKTA_SECRET", b"SENTINEL_METRICS_TOKEN", b"CHANNEL_TOKEN", b"CREDENTIALS_DIRECTORY"]
    assert all(name in daemon_env for name in secret_names)  # the daemon has them all, so the test can fail
    assert [name for name in secret_names if name in child_env] == []
    values = b"\0".join(child_env.values())
    assert [s for s in (SECRET, METRICS_TOKEN, CHANNEL_TOKEN) if s.encode() in values] == []
    assert child_env[b"PATH"] == daemon_env[b"PATH"]  # the rest of the environment is passed on


def test_the_child_environment_drops_secrets_and_working_directory_paths() -> None:
    environ = {"HOME": "/home/x", "CHANNEL_TOKEN": "t", "SENTINEL_CONFIG": "c", "SENTINEL_ANYTHING": "a",
               "PYTHONPATH": os.pathsep.join(["", ".", "lib", "/opt/extra"])}
    assert child_environment({"CHANNEL_TOKEN"}, environ) == {"HOME": "/home/x", "PYTHONPATH": "/opt/extra"}
    assert "PYTHONPATH" not in child_environment(set(), {"PYTHONPATH": "."})


@pytest.mark.proof
def test_the_detector_imports_nothing_from_the_working_directory(tmp_path: Path) -> None:
    """Run from a folder holding a `sentinel` package (a clone of another version, or planted code): the
    detector still runs Sentinel's own code, and the planted code never runs."""
    marker = tmp_path / "planted-code-ran"
    planted = tmp_path / "sentinel"
    planted.mkdir()
    plant = f"import pathlib\npathlib.Path({str(marker)!r}).write_text(__name__)\n"
    (planted / "__init__.py").write_text(plant)
    (planted / "detector_process.py").write_text(plant + "raise SystemExit(3)\n")
    (planted / "rules.py").write_text(plant)  # no load_rules: a clone of another version
    config = write_config(tmp_path)
    (tmp_path / "rules" / "lock.toml").write_text(LOCK_RULE)
    # The installed entry script, as the systemd unit runs it (`python -m sentinel` would itself import
    # the planted package: the working directory comes first for -m).
    d = Daemon(config, command=[str(Path(sys.executable).parent / "sentinel")]).start()
    try:
        assert d.proc is not None and Path(f"/proc/{d.proc.pid}/cwd").resolve() == tmp_path.resolve()
        assert d.post(envelope(make_event("cwd-1", "user.account.lock"))).status_code == 204
        wait_for(lambda: alert_rules(tmp_path) == ["test-lock"], detail=lambda: d.log()[-2000:])
    finally:
        d.stop()
    assert not marker.exists(), f"planted code ran: {marker.read_text()}"


@pytest.mark.proof
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


@pytest.mark.proof
def test_the_detector_dies_with_the_daemon_and_a_new_one_takes_over(tmp_path: Path) -> None:
    d = Daemon(write_config(tmp_path)).start()
    child = detector_of(d)
    assert d.post(envelope(make_event("before-kill"))).status_code == 204
    d.kill()  # SIGKILL: no chance to tell the child
    wait_for(lambda: gone(child), timeout=5, detail=lambda: "the detector outlived a SIGKILLed daemon")
    d.start()
    try:
        assert d.post(envelope(make_event("after-restart"))).status_code == 204
        db = tmp_path / "state" / "sentinel.db"
        assert wait_for(lambda: settled(db))
        assert stored(db) == ["after-restart", "before-kill"]
    finally:
        d.stop()


@pytest.mark.proof
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



@pytest.mark.proof
def test_a_group_flood_is_one_log_line_per_rule_and_counted_by_rule_in_metrics(tmp_path: Path) -> None:
    """max_groups = 5 and 30 groups in three deliveries: 25 evictions, each batch evicting, one log line."""
    config = write_config(tmp_path)
    config.write_text(config.read_text().replace("[rules]\n", "[rules]\nmax_groups = 5\n"))
    (tmp_path / "rules" / "spray.toml").write_text(spray_rule("test-spray"))
    d = Daemon(config).start()
    try:
        db = tmp_path / "state" / "sentinel.db"
        for batch in range(3):
            events = [make_event(f"f{batch}-{i}", client={"ipAddress": f"10.0.{batch}.{i}"},
                                 outcome={"result": "FAILURE"}) for i in range(10)]
            assert d.post(envelope(*events)).status_code == 204
            assert wait_for(lambda: settled(db))  # one batch each: a line per batch would show
        assert wait_for(lambda: metric(d, 'sentinel_rule_groups_evicted_total{rule="test-spray"}') == 25)
        assert metric(d, "sentinel_rule_state_groups") == 5
    finally:
        d.stop()
    evicted = [line for line in d.log().splitlines() if "rule test-spray: " in line and "evicted" in line]
    assert len(evicted) == 1, evicted
    assert "live groups evicted: rule state is full ([rules] max_groups)" in evicted[0]
