"""Running as a service: reload on SIGHUP, clean stop on SIGTERM, sd_notify, /metrics, feed silence."""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest
from conftest import LOCK_RULE, alert_rules, envelope, make_event, settled, stored, wait_for
from daemon import Daemon, free_port, write_config

SESSION_RULE = LOCK_RULE.replace("test-lock", "test-session").replace("locked", "session of").replace(
    '["user.account.lock"]', '["user.session.start"]').replace(
    '{ eventType = "user.account.lock" }\nexpect = true', '{ eventType = "user.session.start" }\nexpect = true'
).replace('{ eventType = "user.session.start" }\nexpect = false', '{ eventType = "user.account.lock" }\nexpect = false')


def test_alert_reaches_the_log_channel(ruled: Daemon) -> None:
    assert ruled.post(envelope(make_event("lk-1", "user.account.lock"))).status_code == 204
    assert wait_for(lambda: alert_rules(ruled.config.parent) == ["test-lock"])


@pytest.mark.proof
def test_sighup_with_valid_rules_swaps_them_in(ruled: Daemon) -> None:
    folder = ruled.config.parent
    assert ruled.post(envelope(make_event("s-1", "user.session.start"))).status_code == 204
    db = folder / "state" / "sentinel.db"
    assert wait_for(lambda: settled(db))
    (folder / "rules" / "session.toml").write_text(SESSION_RULE)
    assert ruled.proc is not None
    ruled.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "reloaded: 2 rules" in ruled.log())
    assert ruled.post(envelope(make_event("s-2", "user.session.start"))).status_code == 204
    assert wait_for(lambda: alert_rules(folder) == ["test-session"])
    # The event evaluated before the reload is not evaluated again by the new rules: once every event is
    # evaluated (a re-evaluation would first clear s-1's evaluated_at), there is still one alert.
    assert wait_for(lambda: settled(db))
    assert alert_rules(folder) == ["test-session"]
    assert stored(db, "SELECT count(*) FROM alerts") == [1]
    assert httpx.get(f"{ruled.url}/readyz").json()["last_reload"] == "ok"


@pytest.mark.proof
def test_sighup_with_broken_rules_keeps_the_old_set_and_says_why(ruled: Daemon) -> None:
    folder = ruled.config.parent
    (folder / "rules" / "broken.toml").write_text('id = "b"\ntitle = "t"\nseverity = "urgent"\n')
    assert ruled.proc is not None
    ruled.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "reload rejected" in ruled.log())
    assert "broken.toml: severity: unknown severity 'urgent'" in ruled.log()
    ready = httpx.get(f"{ruled.url}/readyz")
    assert ready.status_code == 200
    assert ready.json()["last_reload"] == "failing"
    assert "broken.toml" not in ready.text and "urgent" not in ready.text  # the detail is in the log only
    metrics = httpx.get(f"{ruled.url}/metrics").text
    assert 'sentinel_reloads_total{result="failed"} 1.0' in metrics
    # Still running on the old rules.
    assert ruled.post(envelope(make_event("after-bad", "user.account.lock"))).status_code == 204
    assert wait_for(lambda: alert_rules(folder) == ["test-lock"])
    (folder / "rules" / "broken.toml").unlink()
    ruled.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: httpx.get(f"{ruled.url}/readyz").json()["last_reload"] == "ok")


def test_sigterm_stops_cleanly_and_keeps_everything(ruled: Daemon) -> None:
    events = [make_event(f"t-{i}", "user.account.lock", published=f"2024-05-01T10:00:{i:02d}Z") for i in range(20)]
    assert ruled.post(envelope(*events)).status_code == 204
    code = ruled.stop()
    assert code in (0, -signal.SIGTERM)
    db = ruled.config.parent / "state" / "sentinel.db"
    assert len(stored(db)) == 20
    log = ruled.log()
    assert "Traceback" not in log
    assert "Application shutdown complete" in log
    # Whatever was not evaluated or delivered before the stop is still queued, and finishes after a start.
    ruled.start()
    assert wait_for(lambda: settled(db))
    assert wait_for(lambda: stored(db, "SELECT count(*) FROM deliveries WHERE status != 'sent'") == [0])


@pytest.mark.proof
def test_systemd_notify_protocol(tmp_path: Path) -> None:
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.2)
    config = write_config(tmp_path)
    (tmp_path / "rules" / "lock.toml").write_text(LOCK_RULE)
    d = Daemon(config, env={"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "400000"})
    messages: list[str] = []

    def drain(until: str, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                messages.append(sock.recv(4096).decode())
            except TimeoutError:
                continue
            if until in messages[-1]:
                return True
        return False

    try:
        d.start()
        assert drain("READY=1"), messages
        assert d.alive()  # READY is sent only once the server answers
        assert drain("WATCHDOG=1"), messages
        assert d.proc is not None
        d.proc.send_signal(signal.SIGHUP)
        assert drain("RELOADING=1"), messages
        assert drain("READY=1"), messages
        d.proc.send_signal(signal.SIGTERM)
        assert drain("STOPPING=1"), messages
    finally:
        d.stop()
        sock.close()
    ready = [m for m in messages if m.startswith("READY=1")]
    assert len(ready) == 2
    assert sum(m.startswith("WATCHDOG=1") for m in messages) >= 1


@pytest.mark.proof
def test_metrics_count_what_happens(ruled: Daemon) -> None:
    ruled.post(envelope(make_event("m-1", "user.account.lock"), make_event("m-2")))
    ruled.post(envelope(make_event("m-1", "user.account.lock")))
    ruled.post(envelope(make_event("m-3")), headers={"Authorization": "nope", "Content-Type": "application/json"})
    assert wait_for(lambda: alert_rules(ruled.config.parent) == ["test-lock"])

    def value(name: str) -> float | None:
        for line in httpx.get(f"{ruled.url}/metrics").text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        return None

    assert value("sentinel_events_received_total") == 2
    assert value("sentinel_events_duplicate_total") == 1
    assert value('sentinel_requests_rejected_total{reason="auth"}') == 1
    assert value('sentinel_alerts_total{rule="test-lock",severity="high"}') == 1
    assert wait_for(lambda: value('sentinel_deliveries_total{channel="log",status="sent"}') == 1)
    assert value("sentinel_rules_loaded") == 1
    assert value("sentinel_ingest_seconds_count") == 2
    assert wait_for(lambda: value("sentinel_events_pending") == 0)


@pytest.mark.proof
def test_metrics_on_their_own_address_behind_a_token(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, extra=f'[metrics]\nlisten = "127.0.0.1:{port}"\nrequire_token = true\n')
    d = Daemon(config, env={"SENTINEL_METRICS_TOKEN": "metrics-token-123456"}).start()
    try:
        assert httpx.get(f"{d.url}/metrics").status_code == 404
        url = f"http://127.0.0.1:{port}/metrics"
        assert wait_for(lambda: _status(url) == 401)
        assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = httpx.get(url, headers={"Authorization": "Bearer metrics-token-123456"})
        assert ok.status_code == 200 and "sentinel_events_received_total" in ok.text
    finally:
        d.stop()
    assert "metrics-token-123456" not in d.log()


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=1).status_code
    except httpx.HTTPError:
        return None


@pytest.mark.proof
def test_bad_channel_url_fails_start_with_a_clear_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, extra='[channels.bad]\nurls = ["nosuchscheme://secret-part@host"]\n')
    d = Daemon(config)
    with pytest.raises(RuntimeError) as info:
        d.start()
    assert "channels.bad.urls[0]" in str(info.value)
    assert "Traceback" not in str(info.value)
    assert "secret-part" not in str(info.value)


@pytest.mark.proof
def test_json_logs(tmp_path: Path) -> None:
    d = Daemon(write_config(tmp_path, extra='[logging]\nformat = "json"\n')).start()
    try:
        d.post(envelope(make_event("j-1")))
        assert stored(tmp_path / "state" / "sentinel.db") == ["j-1"]  # unpacked, so its log line is written
    finally:
        d.stop()
    lines = [json.loads(line) for line in d.log().splitlines() if line.startswith("{")]
    assert any("okta delivery 1: 1 events" in entry["message"] for entry in lines)
    assert all({"time", "level", "logger", "message"} <= entry.keys() for entry in lines)


THRESHOLD_RULE = """
id = "test-three-failures"
title = "three failures for {actor.alternateId}"
severity = "medium"
event_types = ["user.session.start"]
group_by = ["actor.alternateId"]
condition = "failed"

[detection.failed]
"outcome.result" = "FAILURE"

[threshold]
count = 3
window = "10m"
"""


@pytest.mark.proof
def test_threshold_state_survives_a_restart(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    (tmp_path / "rules" / "three.toml").write_text(THRESHOLD_RULE)
    db = tmp_path / "state" / "sentinel.db"

    def failure(uuid: str, second: int) -> dict:  # type: ignore[type-arg]
        return make_event(uuid, published=f"2024-05-01T10:00:{second:02d}Z", outcome={"result": "FAILURE"})

    d = Daemon(config).start()
    try:
        assert d.post(envelope(failure("f-1", 1), failure("f-2", 2))).status_code == 204
        assert wait_for(lambda: settled(db))
        assert stored(db, "SELECT count(*) FROM rule_state") == [1]
    finally:
        d.kill()  # no clean shutdown: the state must already be in the store
    d.start()
    try:
        assert d.post(envelope(failure("f-3", 3))).status_code == 204
        assert wait_for(lambda: alert_rules(tmp_path) == ["test-three-failures"])
        assert [(c, json.loads(u)) for c, u in stored(db, "SELECT count, event_uuids FROM alerts")] == [
            (3, ["f-1", "f-2", "f-3"])]
    finally:
        d.stop()
