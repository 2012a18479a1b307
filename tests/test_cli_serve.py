"""``sentinel serve`` start-up rules and ``sentinel events``, run as real processes."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import envelope, make_event
from daemon import Daemon, free_port, write_config
from test_config import run_cli


def test_serve_refuses_to_start_without_a_secret(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    r = run_cli("serve", "--config", str(config))
    assert r.returncode == 1
    assert "no Okta secret configured: set SENTINEL_OKTA_SECRET" in r.stderr
    assert not (tmp_path / "state" / "sentinel.db").exists()


def test_allow_unauthenticated_must_be_explicit_and_warns(tmp_path: Path) -> None:
    d = Daemon(write_config(tmp_path, extra="[okta]\nallow_unauthenticated = true\n"), secret=None).start()
    try:
        r = httpx.post(f"{d.url}/hooks/okta", json=envelope(make_event("open-1")))
        assert r.status_code == 204
    finally:
        d.stop()
    assert "running WITHOUT authentication" in d.log()


@pytest.mark.proof
def test_secret_file_is_generated_private_and_printed_once(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    secret_file = tmp_path / ".okta-secret"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTINEL_")}
    port = int(config.read_text().split("port = ")[1].split()[0])
    outputs = []
    for _ in range(2):
        proc = subprocess.Popen([sys.executable, "-m", "sentinel", "serve", "--config", str(config),
                                 "--secret-file", str(secret_file)], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=env, text=True)
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            secret = secret_file.read_text().strip()
            ok = httpx.get(f"http://127.0.0.1:{port}/hooks/okta",
                           headers={"Authorization": secret, "x-okta-verification-challenge": "v"})
            assert ok.json() == {"verification": "v"}
        finally:
            proc.terminate()
            out, _ = proc.communicate(timeout=15)
        outputs.append(out)
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert len(secret) >= 32
    assert f"Authorization: {secret}" in outputs[0]          # shown once, to paste into Okta
    assert secret not in outputs[1]                         # afterwards only the file is named
    assert "curl -H \"Authorization: $(cat" in outputs[1]
    # The daemon's own log lines never carry it.
    assert all(secret not in line for line in outputs[0].splitlines() if " INFO " in line or " WARNING " in line)


@pytest.mark.proof
def test_host_and_port_flags_override_the_config(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTINEL_")}
    env["SENTINEL_OKTA_SECRET"] = "secret-for-override"
    proc = subprocess.Popen([sys.executable, "-m", "sentinel", "serve", "--config", str(config), "--port", str(port),
                             "--host", "127.0.0.1"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        status = None
        while time.monotonic() < deadline and status != 200:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).status_code
            except httpx.HTTPError:
                time.sleep(0.1)
        assert status == 200
    finally:
        proc.terminate()
        proc.wait(15)


def test_events_command_lists_stored_events(daemon: Daemon) -> None:
    daemon.post(envelope(make_event("e-1", published="2024-05-01T10:00:00Z"),
                         make_event("e-2", "user.account.lock", published="2024-05-01T09:00:00Z")))
    r = run_cli("events", "--config", str(daemon.config), "--last", "10")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].split()[:2] == ["2024-05-01T09:00:00.000000Z", "user.account.lock"]
    assert "e-1" in lines[1] and "alice@example.com" in lines[1]
    only = run_cli("events", "--config", str(daemon.config), "--type", "user.account.*", "--json")
    assert only.returncode == 0
    assert [__import__("json").loads(x)["uuid"] for x in only.stdout.splitlines()] == ["e-2"]


def test_events_without_a_database_is_a_clear_error(tmp_path: Path) -> None:
    r = run_cli("events", "--config", str(write_config(tmp_path)))
    assert r.returncode == 1
    assert "no database at" in r.stderr and "Traceback" not in r.stderr


def test_python_dash_m_and_console_script_agree() -> None:
    script = Path(sys.executable).parent / "sentinel"
    a = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=True)
    b = subprocess.run([sys.executable, "-m", "sentinel", "--version"], capture_output=True, text=True, check=True)
    assert a.stdout == b.stdout and "sentinel" in a.stdout
