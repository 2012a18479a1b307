"""What the detector's log says of the deliveries it unpacks: one line per batch, however many deliveries.

A line per delivery cost the detector about 14 µs (a record, the redacting filter's three regular
expressions, the formatter, a write), 1.4 µs an event of 10-event deliveries (issue 16). So a batch's
deliveries are told of together: which (their inbox ids, as ranges), how many events (new, duplicate,
quarantined), and how long after they were stored they were unpacked. A delivery with quarantined elements
still has a WARNING line of its own, with what was wrong; a batch of one delivery reads as before.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from sentinel.model import parse_timestamp
from sentinel.okta import Delivery
from sentinel.quarantine import index_ranges, summary
from sentinel.store import IngestResult


def log_unpacked(log: logging.Logger, rows: Sequence[tuple[int, str, bytes]],
                 deliveries: Sequence[tuple[str, Delivery]], results: Sequence[IngestResult], now: datetime) -> None:
    """``rows`` are the inbox rows (id, received_at, body) the ``deliveries`` were unpacked from, and
    ``results`` what the store took of each; ``now`` when they were unpacked."""
    clean: list[tuple[int, str, Delivery, IngestResult]] = []
    for (row_id, received_at, _), (_, delivery), result in zip(rows, deliveries, results, strict=True):
        if result.quarantined:
            # One line per delivery, however many bad elements it holds (they are one quarantine record).
            log.warning("okta delivery %d: %d events (%d new, %d duplicate, %d quarantined), unpacked %.0f ms "
                        "after it was stored; quarantined %s", row_id, len(delivery.events) + result.quarantined,
                        result.new, result.duplicate, result.quarantined, _waited_ms(now, received_at),
                        summary(delivery.quarantined))
        else:
            clean.append((row_id, received_at, delivery, result))
    if not clean or not log.isEnabledFor(logging.INFO):
        return
    if len(clean) == 1:
        ((row_id, received_at, delivery, result),) = clean
        log.info("okta delivery %d: %d events (%d new, %d duplicate, 0 quarantined), unpacked %.0f ms after it "
                 "was stored", row_id, len(delivery.events), result.new, result.duplicate,
                 _waited_ms(now, received_at))
        return
    # received_at is the store's fixed-width UTC text: its order is time order, no need to parse each.
    stamps = [received_at for _, received_at, _, _ in clean]
    new = sum(result.new for _, _, _, result in clean)
    log.info("okta deliveries %s: %d deliveries, %d events (%d new, %d duplicate, 0 quarantined), unpacked "
             "%.0f-%.0f ms after they were stored", index_ranges([row_id for row_id, _, _, _ in clean]),
             len(clean), sum(len(delivery.events) for _, _, delivery, _ in clean), new,
             sum(result.duplicate for _, _, _, result in clean), _waited_ms(now, max(stamps)),
             _waited_ms(now, min(stamps)))


def _waited_ms(now: datetime, received_at: str) -> float:
    return (now - parse_timestamp(received_at)).total_seconds() * 1000
