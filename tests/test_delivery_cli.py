"""Delivery commands run through click against a real store and a recording HTTP server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers_capture import CaptureServer, sample_alert

from sentinel.cli import main
from sentinel.cli.delivery_cmds import parse_since
from sentinel.store import Store
from sentinel.store.alerts import record_evaluation
from sentinel.store.deliveries import mark_dead, mark_sent

NOW = datetime.now(UTC)


@pytest.fixture
def server() -> Iterator[CaptureServer]:
    srv = CaptureServer().start()
    yield srv
    srv.stop()


def write_config(folder: Path, server: CaptureServer) -> Path:
    config = folder / "sentinel.toml"
    config.write_text(f"""
[storage]
path = "state/sentinel.db"
[okta]
org_url = "https://acme.okta.com"
[channels.hook]
urls = ["json://127.0.0.1:{server.port}/hook", "json://127.0.0.1:{server.port}/down"]
[channels.log]
kind = "log"
path = "state/alerts.jsonl"
""", encoding="utf-8")
    return config


def populate(db: Path) -> None:
    async def run() -> None:
        store = Store(db)
        store.start(NOW)
        for i, rule in enumerate(["okta-admin-grant", "okta-password-spraying"]):
            alert = sample_alert(key=f"k{i}", rule_id=rule, title=f"alert {i}")
            # awaited before the loop moves on, so the lambda sees this iteration's alert
            await store.write(lambda c: record_evaluation(c, [], [alert], lambda _: ["hook", "log"], {}, [], NOW))
        await store.write(lambda c: mark_sent(c, 1, NOW))
        await store.write(lambda c: mark_dead(c, 2, "json://127.0.0.1/hook: failure (error=500)", NOW))
        store.close()

    asyncio.run(run())


def test_notify_test_prints_each_destination_masked_and_fails_if_one_fails(tmp_path: Path,
                                                                          server: CaptureServer) -> None:
    config = write_config(tmp_path, server)
    server.fail("/down", 1)
    result = CliRunner().invoke(main, ["notify", "test", "hook", "--config", str(config)])
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"ok   json://127.0.0.1:{server.port}/hook")
    assert lines[1].startswith(f"FAIL json://127.0.0.1:{server.port}/down") and "failure" in lines[1]
    assert server.to("/hook")[0].json()["title"] == "[INFO] Sentinel test alert"
    assert CliRunner().invoke(main, ["notify", "test", "hook", "--config", str(config)]).exit_code == 0
    missing = CliRunner().invoke(main, ["notify", "test", "nope", "--config", str(config)])
    assert missing.exit_code == 1 and "no channel named 'nope' (configured: hook, log)" in missing.output


def test_alerts_list_filter_show_and_json(tmp_path: Path, server: CaptureServer) -> None:
    config = write_config(tmp_path, server)
    populate(tmp_path / "state" / "sentinel.db")
    run = CliRunner().invoke
    out = run(main, ["alerts", "--config", str(config)]).output
    assert "okta-password-spraying  alert 1" in out and "okta-admin-grant  alert 0" in out
    out = run(main, ["alerts", "--config", str(config), "--rule", "okta-admin-grant", "--json"]).output
    (row,) = [json.loads(line) for line in out.splitlines()]
    assert row["rule_id"] == "okta-admin-grant" and row["severity"] == "critical"
    assert run(main, ["alerts", "--config", str(config), "--since", "1h"]).output.count("\n") == 2
    shown = run(main, ["alerts", "show", "1", "--config", str(config)])
    assert shown.exit_code == 0, shown.output
    assert "[CRITICAL] alert 0" in shown.output
    assert "https://acme-admin.okta.com/report/system_log_2?search=f1e2d3c4" in shown.output
    assert "hook" in shown.output and "sent" in shown.output and "log " in shown.output
    assert run(main, ["alerts", "show", "99", "--config", str(config)]).exit_code == 1


def test_deliveries_and_redeliver(tmp_path: Path, server: CaptureServer) -> None:
    config = write_config(tmp_path, server)
    populate(tmp_path / "state" / "sentinel.db")
    run = CliRunner().invoke
    dead = run(main, ["deliveries", "--status", "dead", "--config", str(config)]).output
    assert dead.count("\n") == 1 and "gave up" in dead and "error=500" in dead
    assert run(main, ["redeliver", "--config", str(config)]).exit_code == 1  # needs ID or --dead
    result = run(main, ["redeliver", "--dead", "--config", str(config)])
    assert result.exit_code == 0 and "1 delivery queued" in result.output
    assert run(main, ["deliveries", "--status", "dead", "--config", str(config)]).output == ""
    assert run(main, ["redeliver", "12345", "--config", str(config)]).exit_code == 1


def test_parse_since() -> None:
    assert parse_since("2h", NOW) == NOW - timedelta(hours=2)
    assert parse_since("2026-01-01T00:00:00Z", NOW) == datetime(2026, 1, 1, tzinfo=UTC)
