"""The self-monitoring decision for the System Log poller (pure): failing or lagging past
``[okta.api] max_lag_seconds`` raises one alert, catching up one "restored"."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sentinel.model import Severity
from sentinel.service.monitor import POLL_BEHIND_RULE, POLL_RESTORED_RULE, poll_alert

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ALLOWED = timedelta(minutes=10)


def test_within_the_allowed_lag_nothing_is_raised() -> None:
    assert poll_alert(T0, None, None, T0 + ALLOWED - timedelta(seconds=1), ALLOWED) == (None, None)


def test_past_the_allowed_lag_one_alert_naming_the_failure_then_silence() -> None:
    now = T0 + ALLOWED
    alert, marker = poll_alert(T0, "401 from /api/v1/logs; check the API token", None, now, ALLOWED)
    assert alert is not None and alert.rule_id == POLL_BEHIND_RULE and alert.severity is Severity.HIGH
    assert "10 minutes behind" in alert.title and "check the API token" in alert.summary
    assert marker == T0
    assert alert.key == poll_alert(T0, "other", None, now + timedelta(hours=1), ALLOWED)[0].key  # type: ignore[union-attr]
    assert poll_alert(T0, "again", marker, now + timedelta(hours=1), ALLOWED) == (None, T0)


def test_catching_up_raises_restored_once() -> None:
    later = T0 + timedelta(hours=2)
    alert, marker = poll_alert(later, None, T0, later + timedelta(seconds=5), ALLOWED)
    assert alert is not None and alert.rule_id == POLL_RESTORED_RULE and alert.severity is Severity.INFO
    assert marker is None
    assert poll_alert(later, None, None, later + timedelta(seconds=6), ALLOWED) == (None, None)


def test_progress_that_is_still_behind_is_not_called_restored() -> None:
    """Reading the back-log after an outage moves forward but stays past the limit: no "caught up" yet."""
    progress = T0 + timedelta(minutes=30)
    now = T0 + timedelta(hours=2)
    assert poll_alert(progress, None, T0, now, ALLOWED) == (None, T0)
