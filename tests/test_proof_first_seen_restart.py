"""A first-seen rule's history survives kill -9: after a restart a known value does not alert and a new one
does (the shipped okta-admin-console-new-country rule, on its own test events)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from conftest import alert_rules, envelope, settled, stored, wait_for
from daemon import Daemon, write_config

ROOT = Path(__file__).resolve().parent.parent
RULE = "okta-admin-console-new-country"


def test_first_seen_history_survives_a_kill_and_restart(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    shutil.copy(ROOT / "rules" / f"{RULE}.toml", tmp_path / "rules")
    shutil.copytree(ROOT / "rules" / "data", tmp_path / "rules" / "data")  # its inline tests' events
    events: list[dict[str, Any]] = json.loads(
        (ROOT / "rules" / "data" / "admin-console-new-country.json").read_text(encoding="utf-8"))
    canada, canada_again, romania = events
    db = tmp_path / "state" / "sentinel.db"
    d = Daemon(config).start()
    try:
        assert d.post(envelope(canada)).status_code == 204
        wait_for(lambda: settled(db))
        assert stored(db, "SELECT key FROM rule_state") == [f"{RULE}/actor.alternateId=admin@example.com"]
    finally:
        d.kill()  # no clean shutdown: the history must already be in the store
    d.start()
    try:
        # Romania first: with the history it is new for a known admin (alert); had the history been lost, the
        # admin would be a new group and Romania only learned, and Canada would then be the new value.
        assert d.post(envelope(romania)).status_code == 204
        wait_for(lambda: alert_rules(tmp_path) == [RULE], detail=d.log)
        assert d.post(envelope(canada_again)).status_code == 204
        wait_for(lambda: settled(db))
        assert alert_rules(tmp_path) == [RULE]  # Canada is known: no second alert
        assert [json.loads(u) for u in stored(db, "SELECT event_uuids FROM alerts")] == [[romania["uuid"]]]
    finally:
        d.stop()
