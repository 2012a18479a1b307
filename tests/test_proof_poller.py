"""The System Log poller in the real daemon, the slow proofs (``make proof``): SIGKILL while polling loses and
repeats nothing, an outage is back-filled (also when Okta forgot the cursor), the rate limit is kept, a bad
token is visible in /readyz, the metrics and an alert, the OAuth path end to end, and ``sentinel backfill``
beside a running daemon."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from conftest import inbox_received, settled, wait_for
from fake_okta_auth import rsa_key_pair
from poll_helpers import (
    API_TOKEN,
    THREAT_RULE,
    alerts,
    event_count,
    fake_okta,
    metric,
    now,
    poll_config,
    poll_daemon,
    readyz,
    threats,
)

from sentinel.service.poller import PAGE_LIMIT, PAGE_PART_EVENTS

PARTS = PAGE_LIMIT // PAGE_PART_EVENTS  # inbox rows a full page makes
MARKED_IP = "198.51.100.77"
MARKED_RULE = f"""
id = "test-marked"
title = "threat from {{client.ipAddress}}"
severity = "high"
event_types = ["security.threat.detected"]
condition = "marked"
[detection.marked]
"client.ipAddress" = "{MARKED_IP}"
"""


def threat_alerts(folder: Path) -> list[str]:
    return [a["rule_id"] for a in alerts(folder) if a["rule_id"] == "test-threat"]


def test_sigkill_while_polling_loses_and_repeats_nothing(tmp_path: Path) -> None:
    db = tmp_path / "state" / "sentinel.db"
    # A bucket of 2 requests per 2 s (the poller takes half): the 3 pages come seconds apart, the kill lands
    # between them. One event in a hundred is from the marked address, and alerts (30 alerts, not 3,000).
    with fake_okta(rate_limit=2, rate_window=2.0) as fake:
        events = threats(3000, now() - timedelta(minutes=30), timedelta(milliseconds=100))
        for event in events[::100]:
            event["client"]["ipAddress"] = MARKED_IP
        fake.add(events)
        config = poll_config(tmp_path, fake, rules=(MARKED_RULE,))
        daemon = poll_daemon(config).start()
        wait_for(lambda: inbox_received(db) >= 1, timeout=60, detail=daemon.log)
        daemon.kill()
        killed_at = inbox_received(db)
        assert killed_at < 3 * PARTS, "the kill came after the last page: nothing was proved"
        daemon = poll_daemon(config).start()
        try:
            wait_for(lambda: event_count(db) == 3000 and settled(db), timeout=60, detail=daemon.log)
            wait_for(lambda: len(alerts(tmp_path)) >= 30, timeout=30, detail=daemon.log)
        finally:
            daemon.stop()
    # Each page goes into the inbox in parts, its cursor with the last part: 3 pages, 3 * PARTS rows, and a
    # kill mid-page has the page read again: only the parts of the one page in flight come twice (the
    # detector drops their events on uuid: 3,000 stored, 30 alerts, none twice).
    assert 3 * PARTS <= inbox_received(db) <= 3 * PARTS + PARTS - 1
    keys = [a["alert_key"] for a in alerts(tmp_path)]
    assert len(keys) == 30 and len(set(keys)) == 30


def test_an_outage_is_back_filled_from_the_cursor_and_a_refused_cursor_read_bounded(tmp_path: Path) -> None:
    db = tmp_path / "state" / "sentinel.db"
    with fake_okta() as fake:
        fake.add(threats(2))
        config = poll_config(tmp_path, fake, rules=(THREAT_RULE,))
        daemon = poll_daemon(config).start()
        wait_for(lambda: len(threat_alerts(tmp_path)) == 2, detail=daemon.log)
        daemon.stop()
        fake.add(threats(3, now()))  # during the outage
        daemon = poll_daemon(config).start()
        try:
            wait_for(lambda: len(threat_alerts(tmp_path)) == 5, detail=daemon.log)
            fake.add(threats(4, now()))
            fake.expire_cursors()  # Okta refuses the cursor the poller holds
            wait_for(lambda: len(threat_alerts(tmp_path)) == 9, detail=daemon.log)
            assert "refused the stored cursor" in daemon.log()
            assert any("until" in r.query for r in fake.to("/api/v1/logs")), "the gap was read bounded"
        finally:
            daemon.stop()
    assert event_count(db) == 9


def test_the_rate_limit_is_kept_and_a_concurrency_429_waited_out(tmp_path: Path) -> None:
    db = tmp_path / "state" / "sentinel.db"
    with fake_okta(rate_limit=6, rate_window=2.0) as fake:
        fake.add(threats(4000, now() - timedelta(minutes=30), timedelta(milliseconds=100)))
        fake.concurrency_429(1)
        daemon = poll_daemon(poll_config(tmp_path, fake, rules=(THREAT_RULE,))).start()
        try:
            wait_for(lambda: event_count(db) == 4000, timeout=90, detail=daemon.log)
            statuses = [r.status for r in fake.to("/api/v1/logs")]
            assert statuses[0] == 429
            assert statuses.count(429) == 1, f"the bucket was overrun: {statuses}"
            assert metric(daemon, "sentinel_okta_poll_requests_total", 'status="429"') == 1
        finally:
            daemon.stop()


def test_a_bad_token_shows_in_readyz_metrics_and_an_alert_without_making_intake_unready(tmp_path: Path) -> None:
    with fake_okta() as fake:
        fake.add(threats(1))
        config = poll_config(tmp_path, fake, api="max_lag_seconds = 2", rules=(THREAT_RULE,))
        daemon = poll_daemon(config, token="00notTheTokenTheFakeWants").start()
        try:
            wait_for(lambda: "sentinel.poll_behind" in [a["rule_id"] for a in alerts(tmp_path)], timeout=30,
                     detail=daemon.log)
            state = readyz(daemon)
            assert state["status"] == "ok", "hook intake stays ready"
            assert state["okta_poll"]["status"] == "failing" and state["okta_poll"]["last_error"] == "auth_failed"
            assert metric(daemon, "sentinel_okta_poll_errors_total") >= 1
            assert metric(daemon, "sentinel_okta_poll_requests_total", 'status="401"') >= 1
            (alert,) = [a for a in alerts(tmp_path) if a["rule_id"] == "sentinel.poll_behind"]
            assert "token" in json.dumps(alert).lower()
            assert "00notTheTokenTheFakeWants" not in daemon.log() + json.dumps(alerts(tmp_path))
            assert daemon.log().count("ERROR sentinel.poller") == 1
        finally:
            daemon.stop()


def test_the_oauth_service_app_path_end_to_end(tmp_path: Path) -> None:
    keys = rsa_key_pair()
    private_pem, public_pem = keys.private_pem, keys.public_pem
    with fake_okta(api_token=None) as fake:
        fake.register_client("0oaSentinelPoller", public_pem, kid="k1")
        fake.add(threats(2))
        config = poll_config(tmp_path, fake, api='client_id = "0oaSentinelPoller"\nkey_id = "k1"',
                             rules=(THREAT_RULE,))
        daemon = poll_daemon(config, token=None, env={"SENTINEL_OKTA_API_PRIVATE_KEY": private_pem}).start()
        try:
            wait_for(lambda: len(threat_alerts(tmp_path)) == 2, detail=daemon.log)
            assert len(fake.to("/oauth2/v1/token")) == 1, "the access token is cached"
            assert all(r.headers["authorization"] == "Bearer <redacted>" for r in fake.to("/api/v1/logs"))
        finally:
            daemon.stop()


def test_backfill_reads_a_window_into_the_running_daemon_bounded_with_progress(tmp_path: Path) -> None:
    with fake_okta() as fake:
        old = threats(1500, now() - timedelta(hours=5), timedelta(seconds=1))  # before backfill_hours
        fake.add(old)
        config = poll_config(tmp_path, fake, rules=(THREAT_RULE,))
        daemon = poll_daemon(config).start()
        try:
            wait_for(lambda: readyz(daemon)["okta_poll"]["last_success"] is not None, detail=daemon.log)
            assert threat_alerts(tmp_path) == []
            since = (now() - timedelta(hours=6)).isoformat()
            done = subprocess.run([sys.executable, "-m", "sentinel", "backfill", "--since", since, "--until", "4h",
                                   "--config", str(config)], capture_output=True, text=True, timeout=60,
                                  env={**daemon.env, "SENTINEL_OKTA_API_TOKEN": API_TOKEN}, cwd=tmp_path)
            assert done.returncode == 0, done.stderr
            totals = json.loads(done.stdout)
            assert totals["events"] == 1500 and totals["pages"] == 2
            assert done.stderr.count("backfill: ") == 2
            wait_for(lambda: len(threat_alerts(tmp_path)) == 1500, timeout=60, detail=daemon.log)
            bounded = [r for r in fake.to("/api/v1/logs") if "until" in r.query]
            assert len(bounded) == 2 and "after" in bounded[1].query  # the second followed the first's next link
        finally:
            daemon.stop()
