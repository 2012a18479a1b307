"""Operators' clashes, with real processes: a second ``sentinel serve`` on a store already served, and a
port already taken, each fail at once with one line and a non-zero exit."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import envelope, make_event, stored
from daemon import Daemon, write_config

from sentinel.service.instance import InstanceClash, StoreLock

# A second instance used to wait 60 s for the first one's detector lock, then print a traceback.
PROMPT_SECONDS = 10


def serve(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``sentinel serve`` that must be over within PROMPT_SECONDS (TimeoutExpired otherwise)."""
    return subprocess.run([sys.executable, "-m", "sentinel", "serve", "--config", str(config)], env=env,
                          capture_output=True, text=True, timeout=PROMPT_SECONDS, cwd=config.parent)


def test_a_second_daemon_on_the_same_store_exits_at_once_naming_the_first(daemon: Daemon) -> None:
    assert daemon.proc is not None
    result = serve(daemon.config, daemon.env)
    lock = daemon.config.parent / "state" / "sentinel.db.lock"
    assert result.returncode != 0
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{daemon.config.parent / 'state' / 'sentinel.db'}: another sentinel serve (pid {daemon.proc.pid}) is "
        f"running on this store; lock file {lock}"]
    # The first one never noticed.
    assert daemon.post(envelope(make_event("after-clash"))).status_code == 204
    assert stored(daemon.config.parent / "state" / "sentinel.db") == ["after-clash"]


@pytest.mark.proof
def test_a_port_in_use_is_one_line_and_creates_nothing(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path, port=port)
        before = sorted(p.name for p in tmp_path.iterdir())
        result = serve(config, Daemon(config).env)
    assert result.returncode != 0
    assert result.stderr.splitlines() == [
        f"sentinel serve: cannot listen on 127.0.0.1:{port} ([server] host and port): the port is in use "
        "(by another sentinel, or another program)"]
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no store, no inbox, no lock file
    assert not (tmp_path / "state").exists()


@pytest.mark.proof
def test_the_lock_dies_with_its_holder_even_by_sigkill(tmp_path: Path) -> None:
    db = tmp_path / "state" / "sentinel.db"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from sentinel.service.instance import StoreLock; StoreLock(Path(sys.argv[1])).acquire(); "
         "print('held', flush=True); time.sleep(60)", str(db)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(InstanceClash, match=f"pid {holder.pid}"):
            StoreLock(db).acquire()
    finally:
        holder.kill()
        holder.wait(10)
    lock = StoreLock(db)  # the file is still there, with the dead holder's pid: no matter
    assert lock.acquire(create=False)
    assert (tmp_path / "state" / "sentinel.db.lock").read_text() == f"{os.getpid()}\n"
    lock.release()
