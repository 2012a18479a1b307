"""The System Log poller in the real daemon (smoke test of ``make test``; the other daemon proofs are in
tests/test_proof_poller.py): a poll-only event alerts, and an event that comes by hook and by poll is
stored and alerted once."""

from __future__ import annotations

from pathlib import Path

from conftest import wait_for
from poll_helpers import alerts, event_count, fake_okta, lock_event, metric, poll_config, poll_daemon, readyz, threats


def test_a_poll_only_event_alerts_and_one_seen_by_hook_and_poll_is_stored_and_alerted_once(tmp_path: Path) -> None:
    with fake_okta() as fake:
        (threat,) = threats(1)
        both = lock_event("lock-by-hook-and-poll")
        fake.add([threat, both])
        daemon = poll_daemon(poll_config(tmp_path, fake)).start()
        try:
            assert daemon.post({"data": {"events": [both]}}).status_code == 204
            wait_for(lambda: sorted(a["rule_id"] for a in alerts(tmp_path)) == ["test-lock", "test-threat"],
                     detail=daemon.log)
            # Both events came by poll too (the lock one also by hook): the poller read them.
            wait_for(lambda: metric(daemon, "sentinel_okta_poll_events_total") >= 2, detail=daemon.log)
            wait_for(lambda: event_count(tmp_path / "state" / "sentinel.db",
                                         "SELECT count(*) FROM events WHERE evaluated_at IS NOT NULL") == 2)
            assert metric(daemon, "sentinel_okta_poll_requests_total", 'status="200"') >= 1
            state = readyz(daemon)
            assert state["status"] == "ok" and state["okta_poll"]["status"] == "ok"
            assert state["okta_poll"]["last_success"] is not None and state["okta_poll"]["last_error"] is None
            requests = fake.to("/api/v1/logs")
            assert 'eventType eq "security.threat.detected"' in requests[0].query["filter"][0]
            assert requests[0].headers["authorization"] == "SSWS <redacted>"
        finally:
            daemon.stop()
        assert sorted(a["rule_id"] for a in alerts(tmp_path)) == ["test-lock", "test-threat"]
        assert event_count(tmp_path / "state" / "sentinel.db") == 2
