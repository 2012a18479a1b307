"""The smoke test of silences on the real daemon: a silence added with `sentinel silence add` while it runs
takes effect, and the same kind of event posted through /hooks/okta is stored as silenced and sends nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import envelope, wait_for
from daemon import Daemon, write_config
from helpers_capture import CaptureServer

from sentinel.cli import main
from sentinel.service.silencing import SILENCE_REFRESH_SECONDS

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "rules" / "data"
HELPDESK = json.loads((DATA / "privilege-grant-helpdesk.json").read_text(encoding="utf-8"))  # by admin.user@…
SUPERADMIN = json.loads((DATA / "privilege-grant-superadmin.json").read_text(encoding="utf-8"))  # by jack@acme.io


@pytest.fixture
def capture() -> Iterator[CaptureServer]:
    srv = CaptureServer().start()
    yield srv
    srv.stop()


def cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_a_silence_added_while_the_daemon_runs_stores_the_alert_silenced_and_sends_nothing(
        tmp_path: Path, capture: CaptureServer) -> None:
    config = write_config(tmp_path, rules=str(REPO / "rules"), extra=f"""
[channels.hook]
urls = ["json://127.0.0.1:{capture.port}/hook"]
""")
    daemon = Daemon(config).start()
    try:
        assert daemon.post(envelope(HELPDESK)).status_code == 204
        wait_for(lambda: len(capture.to("/hook")) == 1, detail=daemon.log)  # the channel works
        sid = cli("silence", "add", "--config", str(config), "--rule", "okta-admin-privilege-*",
                  "--match", "actor.alternateId=JACK@acme.io", "--for", "1h", "--comment", "jack's onboarding run")
        added = time.monotonic()
        # The contract: in effect within 5 s. The detector re-reads silences every SILENCE_REFRESH_SECONDS.
        time.sleep(SILENCE_REFRESH_SECONDS + 0.1)
        assert daemon.post(envelope(SUPERADMIN)).status_code == 204
        assert time.monotonic() - added < 5

        def alerts() -> list[dict[str, object]]:
            return [json.loads(line) for line in cli("alerts", "--json", "--config", str(config)).splitlines()]

        wait_for(lambda: len(alerts()) == 2, detail=daemon.log)
        silenced, sent = alerts()
        assert (silenced["status"], silenced["silenced_by"]) == ("silenced", f"silence {sid.strip()}")
        assert "alice@acme.io" in str(silenced["title"])
        assert sent["status"] == "open"
        shown = json.loads(cli("alerts", "show", str(silenced["id"]), "--json", "--config", str(config)))
        assert shown["deliveries"] == []  # nothing to send, now or after the silence ends
        assert cli("deliveries", "--status", "pending", "--config", str(config)) == ""
    finally:
        daemon.stop()
    assert len(capture.to("/hook")) == 1, [c.json() for c in capture.to("/hook")]
