"""``sentinel rules history``: what a first-seen rule learned, read by the real CLI from the store a running
daemon wrote (the shipped okta-admin-console-new-country rule and its own test events)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result
from conftest import alert_rules, envelope, settled, wait_for
from daemon import Daemon, write_config

from sentinel.cli import main

ROOT = Path(__file__).resolve().parent.parent
RULE = "okta-admin-console-new-country"
GROUP = "actor.alternateId=admin@example.com"


def pack_events(name: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = json.loads((ROOT / "rules" / "data" / name).read_text(encoding="utf-8"))
    return events


def sentinel(folder: Path, *args: str) -> Result:
    """The real command in this process (a fresh interpreter per call would triple the test's time)."""
    return CliRunner().invoke(main, [*args, "--config", str(folder / "sentinel.toml")])


def test_rules_history_shows_what_the_running_daemon_learned(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    shutil.copy(ROOT / "rules" / f"{RULE}.toml", tmp_path / "rules")
    shutil.copytree(ROOT / "rules" / "data", tmp_path / "rules" / "data")  # its inline tests' events
    canada, canada_again, romania = pack_events("admin-console-new-country.json")
    d = Daemon(config).start()
    try:
        assert d.post(envelope(canada, canada_again, romania)).status_code == 204
        wait_for(lambda: alert_rules(tmp_path) == [RULE], detail=d.log)
        wait_for(lambda: settled(tmp_path / "state" / "sentinel.db"))

        text = sentinel(tmp_path, "rules", "history", RULE)  # the daemon is still running
        assert text.exit_code == 0, text.output
        assert text.stdout.splitlines() == [
            f"{GROUP}: 2 values",
            "  client.geographicalContext.country=Romania  first 2026-01-20T03:12:00.000000Z  "
            "last 2026-01-20T03:12:00.000000Z  count 1",
            "  client.geographicalContext.country=Canada  first 2026-01-01T09:00:00.000000Z  "
            "last 2026-01-10T09:00:00.000000Z  count 2",
        ]
        as_json = sentinel(tmp_path, "rules", "history", RULE, "--group", GROUP, "--json")
        assert [json.loads(line) for line in as_json.stdout.splitlines()] == [
            {"rule_id": RULE, "group": GROUP, "values": {"client.geographicalContext.country": country},
             "first_seen": first, "last_seen": last, "count": count}
            for country, first, last, count in [
                ("Romania", "2026-01-20T03:12:00.000000Z", "2026-01-20T03:12:00.000000Z", 1),
                ("Canada", "2026-01-01T09:00:00.000000Z", "2026-01-10T09:00:00.000000Z", 2)]]
        other = sentinel(tmp_path, "rules", "history", RULE, "--group", "actor.alternateId=nobody@example.com")
        assert (other.exit_code, other.stdout) == (0, "")
        assert "no first-seen history for rule 'okta-admin-console-new-country' for group" in other.stderr
    finally:
        d.stop()


def test_rules_history_refuses_a_rule_that_is_not_first_seen(tmp_path: Path) -> None:
    write_config(tmp_path)
    shutil.copy(ROOT / "rules" / "okta-brute-force-user.toml", tmp_path / "rules")
    shutil.copytree(ROOT / "rules" / "data", tmp_path / "rules" / "data")
    result = sentinel(tmp_path, "rules", "history", "okta-brute-force-user")
    assert result.exit_code == 1
    assert "rule 'okta-brute-force-user' is not a first-seen rule" in result.output
    unknown = sentinel(tmp_path, "rules", "history", "okta-no-such-rule")
    assert "warning: no loaded rule has id 'okta-no-such-rule'" in unknown.output
    assert unknown.exit_code == 1 and "no database at" in unknown.output  # then the store is read: none yet
