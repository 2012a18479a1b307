"""A new user's path: start the daemon on another port (``make run PORT=…`` runs ``serve --port``), feed it
with ``sentinel demo`` (no --url), then replay what it stored and get the very alerts it raised."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for
from daemon import SECRET, Daemon, free_port, write_config

ROOT = Path(__file__).resolve().parent.parent
DEMO_EVENTS = 15  # suspicious-activity report, rate-limit warning, admin grant, a 12-event password spray


def sentinel(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SENTINEL_")} | env
    return subprocess.run([sys.executable, "-m", "sentinel", *args], capture_output=True, text=True, cwd=cwd,
                          env=environ, timeout=120)


def _alerts(config: Path) -> list[dict[str, Any]]:
    listed = sentinel("alerts", "--json", "--config", str(config), cwd=config.parent)
    return [json.loads(line) for line in listed.stdout.splitlines()]


@pytest.fixture(scope="module")
def demo_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, subprocess.CompletedProcess[str]]]:
    folder = tmp_path_factory.mktemp("demo")
    config = write_config(folder, rules=str(ROOT / "rules"))  # the shipped pack
    daemon = Daemon(config, port=free_port()).start()  # not the config's port
    demo = sentinel("demo", "--config", str(config), cwd=folder, SENTINEL_OKTA_SECRET=SECRET)

    def settled() -> bool:
        events = sentinel("events", "--json", "--last", "1000", "--config", str(config), cwd=folder).stdout
        rows = [json.loads(line) for line in events.splitlines()]
        return len(rows) == DEMO_EVENTS and all(row["evaluated_at"] for row in rows) and len(_alerts(config)) == 4

    wait_for(settled, timeout=60)
    yield daemon, demo
    daemon.stop()


def test_demo_finds_a_daemon_started_with_port(demo_daemon: tuple[Daemon, subprocess.CompletedProcess[str]]) -> None:
    daemon, demo = demo_daemon
    assert f"port = {daemon.port}" not in daemon.config.read_text()
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert demo.stdout.count("-> 204") == 4
    address = daemon.config.parent / "state" / "sentinel.url"
    assert address.read_text().strip() == f"http://127.0.0.1:{daemon.port}/hooks/okta"
    assert stat.S_IMODE(address.stat().st_mode) == 0o600
    assert sorted(a["rule_id"] for a in _alerts(daemon.config)) == [
        "okta-admin-privilege-granted-user", "okta-org-rate-limit-warning", "okta-password-spraying",
        "okta-user-reported-suspicious-activity"]


@pytest.mark.proof
def test_replay_of_stored_events_gives_the_daemons_alerts(
        demo_daemon: tuple[Daemon, subprocess.CompletedProcess[str]]) -> None:
    daemon, _ = demo_daemon
    config, folder = daemon.config, daemon.config.parent
    saved = folder / "events.jsonl"
    saved.write_text(sentinel("events", "--json", "--last", "1000", "--config", str(config), cwd=folder).stdout)
    result = sentinel("replay", "--config", str(config), str(saved), cwd=folder)
    assert result.returncode == 0, result.stderr
    replayed = {a["key"]: a for a in map(json.loads, result.stdout.splitlines())}

    raised = {}
    for row in _alerts(config):
        shown = sentinel("alerts", "show", str(row["id"]), "--json", "--config", str(config), cwd=folder)
        raised[json.loads(shown.stdout)["key"]] = json.loads(shown.stdout)
    assert replayed.keys() == raised.keys()
    for key, alert in raised.items():
        again = replayed[key]
        for field in ("rule_id", "severity", "title", "group_key", "count", "first_seen", "last_seen"):
            assert again[field] == alert[field], (key, field)
        assert sorted(again["event_uuids"]) == sorted(alert["event_uuids"])
    assert next(a for a in raised.values() if a["rule_id"] == "okta-password-spraying")["count"] == 12


@pytest.mark.proof
def test_stopping_removes_the_address(tmp_path: Path) -> None:
    daemon = Daemon(write_config(tmp_path)).start()
    address = tmp_path / "state" / "sentinel.url"
    assert wait_for(address.exists)
    assert daemon.stop() in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled
    assert not address.exists()
