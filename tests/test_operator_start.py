"""What the README promises an operator at start-up: `make run PORT=…`, the command's path, a warning for a
short Okta secret (never the secret), and the detector's lower CPU priority, checked on the real daemon."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import wait_for
from daemon import SECRET, Daemon, write_config

from sentinel.cli import main
from sentinel.config import DetectorSettings
from sentinel.secret import MIN_SECRET_LENGTH
from sentinel.service.detector_priority import LOW_NICENESS as NICENESS

ROOT = Path(__file__).resolve().parent.parent
WARNING = f"the Okta secret is shorter than {MIN_SECRET_LENGTH} characters"


@pytest.fixture(scope="module")
def short_secret_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    assert len(SECRET) < MIN_SECRET_LENGTH  # the tests' usual secret is a short one
    daemon = Daemon(write_config(tmp_path_factory.mktemp("short"))).start()
    yield daemon
    daemon.stop()


def test_make_run_passes_port_and_host_and_says_where_the_command_is() -> None:
    dry = subprocess.run(["make", "-n", "run", "PORT=9123", "HOST=0.0.0.0"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    serve = next(line for line in dry.stdout.splitlines() if " serve " in line)
    assert serve.split()[0] == ".venv/bin/sentinel"
    assert serve.split()[-4:] == ["--port", "9123", "--host", "0.0.0.0"]
    assert 'export PATH=\\"' + str(ROOT / ".venv" / "bin") in dry.stdout
    plain = subprocess.run(["make", "-n", "run"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                           env={k: v for k, v in os.environ.items() if k not in ("PORT", "HOST")})
    assert "--port" not in plain.stdout and "--host" not in plain.stdout


def test_a_short_okta_secret_is_warned_about_in_the_daemons_log(short_secret_daemon: Daemon) -> None:
    log = short_secret_daemon.log()
    assert f"WARNING sentinel: {WARNING}" in log
    assert SECRET not in log


@pytest.mark.parametrize(("current", "previous", "warned"), [
    ("s" * 31, None, ["the Okta secret"]),
    ("s" * 32, None, []),
    ("s" * 43, "p" * 20, ["the previous Okta secret"]),
])
def test_check_warns_about_a_short_secret(current: str, previous: str | None, warned: list[str]) -> None:
    env = {"SENTINEL_OKTA_SECRET": current, "SENTINEL_OKTA_SECRET_PREVIOUS": previous}
    result = CliRunner().invoke(main, ["check", "--config", str(ROOT / "sentinel.toml")], env=env)
    assert result.exit_code == 0, result.output
    found = [line.removeprefix("warning: ").split(" is shorter")[0] for line in result.output.splitlines()
             if "is shorter than" in line]
    assert found == warned
    assert current not in result.output and (previous is None or previous not in result.output)


def _children(pid: int) -> list[int]:
    tasks = Path(f"/proc/{pid}/task")
    return [int(child) for task in tasks.iterdir() for child in (task / "children").read_text().split()]


def test_the_detector_runs_at_a_lower_cpu_priority(short_secret_daemon: Daemon) -> None:
    assert short_secret_daemon.proc is not None
    daemon_pid = short_secret_daemon.proc.pid
    assert wait_for(lambda: _children(daemon_pid))
    (detector,) = _children(daemon_pid)
    assert "sentinel.service.detector_process" in Path(f"/proc/{detector}/cmdline").read_text()
    nice = os.getpriority(os.PRIO_PROCESS, detector) - os.getpriority(os.PRIO_PROCESS, daemon_pid)
    assert nice == NICENESS == 5  # the README says nice 5 ([detector] cpu_priority = "low", the default)
    assert DetectorSettings().cpu_priority == "low"
    assert "could not lower the detector's priority" not in short_secret_daemon.log()
