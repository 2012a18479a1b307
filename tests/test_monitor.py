"""Feed-silence self-monitoring: the pure decision, and the service raising it through the outbox."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from conftest import make_event
from daemon import write_config

from sentinel.cli.compose import compose
from sentinel.clock import FixedClock
from sentinel.config import load_config
from sentinel.model import Severity
from sentinel.okta import parse_event
from sentinel.service.detector_runner import InProcessDetector
from sentinel.service.monitor import RESTORED_RULE, SILENT_RULE, feed_alert

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(minutes=60)


def test_quiet_for_less_than_the_limit_says_nothing() -> None:
    assert feed_alert(T0, None, T0 + timedelta(minutes=59), HOUR) == (None, None)


def test_no_event_ever_says_nothing() -> None:
    assert feed_alert(None, None, T0, HOUR) == (None, None)


def test_silence_raises_one_alert_then_restored_once() -> None:
    alert, marker = feed_alert(T0, None, T0 + HOUR, HOUR)
    assert alert is not None and alert.rule_id == SILENT_RULE and alert.severity is Severity.HIGH
    assert "60 minutes" in alert.title and marker == T0
    again, marker2 = feed_alert(T0, marker, T0 + 3 * HOUR, HOUR)
    assert again is None and marker2 == T0  # still silent: no repeat
    back, marker3 = feed_alert(T0 + 3 * HOUR, marker2, T0 + 3 * HOUR, HOUR)
    assert back is not None and back.rule_id == RESTORED_RULE and marker3 is None
    # Keys depend on the last event time only, so a restart cannot raise the same alert twice.
    assert feed_alert(T0, None, T0 + 2 * HOUR, HOUR)[0].key == alert.key  # type: ignore[union-attr]


def test_service_raises_feed_alerts_through_the_channels(tmp_path: Path) -> None:
    config = write_config(tmp_path, extra="[monitor]\nfeed_silence_minutes = 30\n")
    settings = load_config(config, {"SENTINEL_OKTA_SECRET": "x" * 16})
    clock = FixedClock(T0)

    async def scenario() -> None:
        daemon = compose(settings, clock=clock, detector=InProcessDetector)
        daemon.store.start(clock.now())
        try:
            event = parse_event(make_event("quiet-1"))
            await daemon.store.ingest([event], [], clock.now())
            await daemon.monitor.run_once()
            clock.advance(timedelta(minutes=31))
            await daemon.monitor.run_once()
            await daemon.monitor.run_once()  # no repeat while still silent
            clock.advance(timedelta(minutes=10))
            later = parse_event(make_event("back-1"))
            await daemon.store.ingest([later], [], clock.now())
            await daemon.monitor.run_once()
        finally:
            daemon.store.close()

    asyncio.run(scenario())
    conn = sqlite3.connect(tmp_path / "state" / "sentinel.db")
    rows = conn.execute("SELECT a.rule_id, a.severity, d.channel, d.status FROM alerts a "
                        "JOIN deliveries d ON d.alert_id = a.id ORDER BY a.id").fetchall()
    assert rows == [(SILENT_RULE, "high", "log", "pending"), (RESTORED_RULE, "info", "log", "pending")]
