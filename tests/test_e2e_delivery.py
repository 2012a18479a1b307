"""End to end: an Okta-shaped POST to the running daemon (``sentinel serve`` in a subprocess) ends as a
captured Slack message, an email, and a line in the log channel; ``sentinel demo`` feeds it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import wait_for
from helpers_capture import CaptureServer, SmtpCapture, body_text, free_port

SECRET = "e2e-secret-0123456789abcdef"
SLACK_TOKEN = "E2Etoken0123456789abcXYZ"
REPO = Path(__file__).resolve().parent.parent
GRANT = json.loads((REPO / "rules" / "data" / "privilege-grant-superadmin.json").read_text())


@pytest.fixture
def capture() -> Iterator[tuple[CaptureServer, SmtpCapture]]:
    srv, smtp = CaptureServer().start(), SmtpCapture().start()
    yield srv, smtp
    srv.stop()
    smtp.stop()


def start_daemon(folder: Path, srv: CaptureServer, smtp: SmtpCapture) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    config = folder / "sentinel.toml"
    config.write_text(f"""
[server]
host = "127.0.0.1"
port = {port}
[storage]
path = "state/sentinel.db"
[rules]
paths = ["{REPO / 'rules'}"]
[okta]
org_url = "https://acme.okta.com"
[delivery]
timezone = "Europe/Berlin"
[channels.log]
kind = "log"
path = "state/alerts.jsonl"
[channels.slack]
urls = ["slack://T0E2E0000/B0E2E0000/${{SLACK_TOKEN_C}}"]
min_severity = "high"
[channels.email]
urls = ["{smtp.url()}"]
min_severity = "high"
""", encoding="utf-8")
    env = {**os.environ, "SENTINEL_OKTA_SECRET": SECRET, "SLACK_TOKEN_C": SLACK_TOKEN,
           "SENTINEL_E2E_CAPTURE_BASE": srv.base}
    env.pop("SENTINEL_OKTA_SECRET_PREVIOUS", None)
    log = (folder / "daemon.log").open("ab")
    proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "e2e_launch.py"), "serve", "--config",
                             str(config)], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, (folder / "daemon.log").read_text()
        try:
            if httpx.get(f"{url}/healthz", timeout=0.5).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.05)
    raise AssertionError("daemon did not start")


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTINEL_OKTA_SECRET")}
    return {**env, "SLACK_TOKEN_C": SLACK_TOKEN}


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_okta_post_ends_as_slack_message_email_and_log_line(
        tmp_path: Path, capture: tuple[CaptureServer, SmtpCapture]) -> None:
    srv, smtp = capture
    proc, url = start_daemon(tmp_path, srv, smtp)
    try:
        body = {"eventType": "com.okta.event_hook", "eventTypeVersion": "1.0", "cloudEventsVersion": "0.1",
                "eventId": "e2e-1", "data": {"events": [GRANT]}}
        response = httpx.post(f"{url}/hooks/okta", json=body, headers={"Authorization": SECRET}, timeout=10)
        assert response.status_code == 204
        wait_for(lambda: srv.to("/services/") and smtp.messages, detail=(tmp_path / "daemon.log").read_text)
    finally:
        stop(proc)
    (slack,) = srv.to("/services/")
    assert slack.path == f"/services/T0E2E0000/B0E2E0000/{SLACK_TOKEN}"
    text = json.dumps(slack.json())
    for fact in ("CRITICAL", "jack@acme.io", "alice@acme.io", "136.24.229.58", GRANT["uuid"],
                 "acme-admin.okta.com/report/system_log_2"):
        assert fact in text, fact
    (mail,) = smtp.messages
    assert mail["Subject"].startswith("[CRITICAL] ")
    assert "jack@acme.io" in body_text(mail, "plain")
    log_line = json.loads((tmp_path / "state" / "alerts.jsonl").read_text().splitlines()[0])
    assert log_line["uuid"] == GRANT["uuid"] and log_line["severity"] == "critical"
    daemon_log = (tmp_path / "daemon.log").read_text()
    assert SLACK_TOKEN not in daemon_log and SECRET not in daemon_log


@pytest.mark.proof
def test_demo_posts_sample_deliveries_to_the_running_daemon(
        tmp_path: Path, capture: tuple[CaptureServer, SmtpCapture]) -> None:
    srv, smtp = capture
    proc, url = start_daemon(tmp_path, srv, smtp)
    secret_file = tmp_path / "okta-secret"
    secret_file.write_text(SECRET + "\n")
    try:
        result = subprocess.run(
            [sys.executable, "-m", "sentinel", "demo", "--config", str(tmp_path / "sentinel.toml"),
             "--url", f"{url}/hooks/okta", "--secret-file", str(secret_file)],
            capture_output=True, text=True, timeout=60, env=cli_env())
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.count("sent ") == 4 and "-> 204" in result.stdout
        events = subprocess.run([sys.executable, "-m", "sentinel", "events", "--config",
                                 str(tmp_path / "sentinel.toml"), "--last", "100"],
                                capture_output=True, text=True, timeout=60, env=cli_env())
        assert events.stdout.count("user.session.start") == 12, events.stdout + events.stderr
        assert "user.account.privilege.grant" in events.stdout
        alerts = tmp_path / "state" / "alerts.jsonl"
        assert wait_for(lambda: alerts.exists() and len(alerts.read_text().splitlines()) >= 4)
        assert len(alerts.read_text().splitlines()) == 4  # one per demo delivery; the spray folds into one
    finally:
        stop(proc)
    wrong = subprocess.run(
        [sys.executable, "-m", "sentinel", "demo", "--config", str(tmp_path / "sentinel.toml"),
         "--url", f"{url}/hooks/okta"], capture_output=True, text=True, timeout=60,
        env={**cli_env(), "SENTINEL_OKTA_SECRET": "wrong"})
    assert wrong.returncode == 1  # the daemon is gone (or would answer 401): never a silent success
