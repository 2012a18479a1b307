"""A measured threshold's state survives kill -9: the shipped okta-credential-stuffing rule (switched on here),
fed half its events, killed, restarted and fed the rest, fires exactly once, holding every event, with the
measures of the whole window (the first half came back from the store, not from memory)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from conftest import alert_rules, envelope, settled, stored, wait_for
from daemon import Daemon, write_config

ROOT = Path(__file__).resolve().parent.parent
RULE = "okta-credential-stuffing"


def test_a_measured_threshold_fires_once_across_a_kill_and_restart(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    text = (ROOT / "rules" / f"{RULE}.toml").read_text(encoding="utf-8")
    (tmp_path / "rules" / f"{RULE}.toml").write_text(text.replace("enabled = false", "enabled = true"),
                                                     encoding="utf-8")
    shutil.copytree(ROOT / "rules" / "data", tmp_path / "rules" / "data")  # its inline tests' events
    events: list[dict[str, Any]] = json.loads(
        (ROOT / "rules" / "data" / "credential-stuffing-15-users.json").read_text(encoding="utf-8"))
    first, rest = events[:13], events[13:]
    db = tmp_path / "state" / "sentinel.db"
    d = Daemon(config).start()
    try:
        assert d.post(envelope(*first)).status_code == 204
        wait_for(lambda: settled(db))
        assert stored(db, "SELECT key FROM rule_state") == [f"{RULE}/client.ipAddress=198.51.100.23"]
        assert alert_rules(tmp_path) == []
    finally:
        d.kill()  # no clean shutdown: the 13 pending events must already be in the store
    d.start()
    try:
        assert d.post(envelope(*rest)).status_code == 204
        wait_for(lambda: alert_rules(tmp_path) == [RULE], detail=d.log)
        wait_for(lambda: settled(db))
        assert alert_rules(tmp_path) == [RULE]
        [(uuids, context)] = stored(db, "SELECT event_uuids, context FROM alerts")
        assert sorted(json.loads(uuids)) == sorted(e["uuid"] for e in events)
        assert json.loads(context)["measures"] == {
            "attempts": "25", "users": "15", "most_per_user": "2", "few": "15", "few * 100 / users": "100"}
    finally:
        d.stop()
