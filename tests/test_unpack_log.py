"""What the detector's log says of unpacked deliveries: one line per batch (a line per delivery cost 1.4 µs an
event, issue 16), still saying which deliveries, how many events, how many quarantined; a delivery with
quarantined elements keeps a WARNING line of its own. Real Store and Detector, both unpacking paths."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import make_event

from sentinel.clock import FixedClock
from sentinel.rules import RuleSet
from sentinel.rules.evaluator import RuleEvaluator
from sentinel.service.detector import Detector
from sentinel.store import Store

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def delivery(*events: object) -> bytes:
    return json.dumps({"eventType": "com.okta.event_hook", "data": {"events": list(events)}}).encode()


def unpack(tmp_path: Path, bodies: list[tuple[bytes, timedelta]], *, evaluate: bool,
           caplog: pytest.LogCaptureFixture, level: int = logging.INFO) -> list[logging.LogRecord]:
    """Store each body ``ago`` before NOW, then let the detector unpack them (one pass: one batch)."""
    async def scenario() -> None:
        store = Store(tmp_path / "s.db")
        store.start(NOW)
        try:
            for body, ago in bodies:
                await store.receive(body, NOW - ago)
            detector = Detector(store, RuleEvaluator(RuleSet(()), 100), lambda a: [], FixedClock(NOW))
            await detector.load_state()
            caplog.clear()
            with caplog.at_level(level, logger="sentinel.detector"):
                assert await detector.unpack_once(evaluate=evaluate) == len(bodies)
        finally:
            store.close()

    asyncio.run(scenario())
    return [r for r in caplog.records if r.name == "sentinel.detector" and "okta deliver" in r.getMessage()]


@pytest.mark.parametrize("evaluate", [False, True])
def test_a_batch_of_deliveries_is_one_line_naming_them_and_counting_their_events(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, evaluate: bool) -> None:
    bodies = [(delivery(make_event(f"e{i}a"), make_event(f"e{i}b")), timedelta(seconds=3 - i)) for i in range(3)]
    bodies.append((delivery(make_event("e0a"), make_event("e9")), timedelta(seconds=0.25)))  # one redelivered
    (line,) = unpack(tmp_path, bodies, evaluate=evaluate, caplog=caplog)
    assert line.levelno == logging.INFO
    assert line.getMessage() == ("okta deliveries 1-4: 4 deliveries, 8 events (7 new, 1 duplicate, 0 quarantined), "
                                 "unpacked 250-3000 ms after they were stored")


@pytest.mark.parametrize("evaluate", [False, True])
def test_a_delivery_with_quarantined_elements_keeps_a_warning_line_of_its_own(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, evaluate: bool) -> None:
    bodies = [(delivery(make_event("a")), timedelta(seconds=2)),
              (delivery(make_event("b"), {"uuid": "no-type"}, 42), timedelta(seconds=1)),
              (delivery(make_event("c")), timedelta(0)),
              (delivery(make_event("d")), timedelta(0))]
    warning, info = unpack(tmp_path, bodies, evaluate=evaluate, caplog=caplog)
    assert warning.levelno == logging.WARNING
    assert warning.getMessage() == (
        "okta delivery 2: 3 events (1 new, 0 duplicate, 2 quarantined), unpacked 1000 ms after it was stored; "
        "quarantined data.events[1].eventType: missing; data.events[2]: must be an object, not a number")
    assert info.getMessage() == ("okta deliveries 1,3-4: 3 deliveries, 3 events (3 new, 0 duplicate, "
                                 "0 quarantined), unpacked 0-2000 ms after they were stored")


def test_a_batch_of_one_delivery_reads_as_before(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (line,) = unpack(tmp_path, [(delivery(make_event("a"), make_event("b")), timedelta(seconds=0.5))],
                     evaluate=True, caplog=caplog)
    assert line.getMessage() == "okta delivery 1: 2 events (2 new, 0 duplicate, 0 quarantined), unpacked 500 ms " \
                                "after it was stored"


def test_at_warning_only_quarantined_deliveries_are_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bodies = [(delivery(make_event("a")), timedelta(0)), (delivery(make_event("b"), 42), timedelta(0)),
              (delivery(make_event("c")), timedelta(0))]
    (line,) = unpack(tmp_path, bodies, evaluate=True, caplog=caplog, level=logging.WARNING)
    assert line.getMessage().startswith("okta delivery 2: 2 events (1 new, 0 duplicate, 1 quarantined)")
