"""A long batch of unpacked deliveries evaluated and stored in short transactions (issue 16, point 3).

A System Log page is one inbox delivery of up to 1,000 events. Evaluated and stored in one transaction
with its alerts, it held the main database's write lock for 300-400 ms on a loaded machine when most of
its events alerted (1,000 alerts, 2,000 delivery rows), and the live path's commits (the dispatchers'
"sent" records, the detector's own commit of a live alert) waited behind it. So the fused path stores
such a batch's events ahead of its inbox cursor, in parts capped by events and by alerts; the batch's
last part moves the cursor as before. Sound across a crash because a part's events are stored with its
alerts and rule state: unpacked again after a crash they are duplicates, neither stored nor evaluated
twice (``Store.record_evaluated_ahead``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from sentinel.errors import StoreError
from sentinel.model import Alert, Event
from sentinel.okta import Delivery
from sentinel.service.detector_report import DetectorReport
from sentinel.store import IngestResult

if TYPE_CHECKING:
    from sentinel.service.detector import Detector

log = logging.getLogger("sentinel.detector")

# A part's size: 1,000 events with few alerts commit in milliseconds (about 8 ms of inserts); 1,000 alerts
# took 300-400 ms on the loaded machine (each its row, the key lookup, a delivery row per channel). A batch
# of hook deliveries (at most 500 rows / 1 MB, about 450 events) with few alerts stays one transaction.
MAX_EVENTS_PER_COMMIT = 500
MAX_ALERTS_PER_COMMIT = 50


@dataclass
class LastPart:
    """What the batch's last transaction (with the inbox cursor) stores: the events after those stored
    ahead, their alerts and rule-state changes, and the pass's report so far."""

    events: list[Event]
    alerts: list[Alert]
    changes: dict[str, str]
    deleted: set[str]
    report: DetectorReport
    started: float
    ahead: list[Event] = field(default_factory=list)


async def evaluate_in_parts(detector: Detector, fresh: Sequence[Event], deliveries: Sequence[tuple[str, Delivery]],
                            first_in: dict[str, int], now: datetime) -> LastPart:
    """Evaluate ``fresh`` (the batch's new events in queue order; ``first_in``: uuid → index of the delivery
    that brought it); each time a part reaches MAX_EVENTS_PER_COMMIT events or MAX_ALERTS_PER_COMMIT alerts
    before the batch ends, store it at once, evaluated, with its alerts and rule state."""
    received = {uuid: deliveries[index][0] for uuid, index in first_in.items()}
    report = DetectorReport()
    ahead: list[Event] = []
    alerts: list[Alert] = []
    begun = 0
    started = detector.clock.monotonic()
    for index, event in enumerate(fresh):
        try:
            alerts.extend(detector.evaluator.evaluate(event, now))
        except Exception:
            # One event must never stop detection for all the others (as Detector._evaluate).
            report.errors += 1
            log.exception("detector: evaluating event %s (%s) failed; skipped", event.uuid, event.event_type)
        if index + 1 < len(fresh) and (len(alerts) >= MAX_ALERTS_PER_COMMIT
                                       or index + 1 - begun >= MAX_EVENTS_PER_COMMIT):
            part = list(fresh[begun:index + 1])
            await _store_part(detector, part, alerts, received, now, report, started)
            ahead.extend(part)
            alerts, begun, report, started = [], index + 1, DetectorReport(), detector.clock.monotonic()
    changes, deleted = _take_changes(detector, report)
    return LastPart(list(fresh[begun:]), alerts, changes, deleted, report, started, ahead)


def _take_changes(detector: Detector, report: DetectorReport) -> tuple[dict[str, str], set[str]]:
    changes, deleted = detector.evaluator.take_changes()
    report.rule_state_counts = detector.evaluator.take_rule_counts()
    detector._rule_state_log.add(report.rule_state_counts, detector.clock.monotonic())
    return changes, deleted


async def _store_part(detector: Detector, part: list[Event], alerts: list[Alert], received: dict[str, str],
                      now: datetime, report: DetectorReport, started: float) -> None:
    changes, deleted = _take_changes(detector, report)
    silenced = await detector.silencer.silenced(alerts, part, now)
    by_delivery: dict[str, list[Event]] = {}
    for event in part:
        by_delivery.setdefault(received[event.uuid], []).append(event)
    try:
        evaluation = await detector.store.record_evaluated_ahead(
            list(by_delivery.items()), alerts, detector.route, changes, deleted, now, silenced)
    except StoreError:
        detector._report(report)
        await detector.load_state()  # the engine ran ahead of what was stored
        raise
    report.evaluation_seconds.append(detector.clock.monotonic() - started)
    detector._evaluated(report, evaluation, alerts, silenced)
    detector._report(report)  # its alerts go out now, not after the batch


def credit_ahead(deliveries: Sequence[tuple[str, Delivery]], results: Sequence[IngestResult],
                 ahead: Sequence[Event], first_in: dict[str, int]) -> list[IngestResult]:
    """The batch's results with the events stored ahead counted new in the delivery that brought them
    (``first_in``: uuid → index of that delivery), not as the duplicates the last transaction saw."""
    credit = [0] * len(deliveries)
    for event in ahead:
        credit[first_in[event.uuid]] += 1
    return [IngestResult(new=r.new + c, duplicate=r.duplicate - c, quarantined=r.quarantined)
            for r, c in zip(results, credit, strict=True)]
