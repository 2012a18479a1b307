"""The log channel is exactly once across a crash: a kill between its fsync and the store's "sent" has the
alert sent again after the restart (a new LogChannel), and the record already in the file is not appended
twice; a torn last line (a kill mid-write) is written again whole, on its own line."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from pathlib import Path

from helpers_capture import sample_alert

from sentinel.clock import FixedClock
from sentinel.delivery.apprise_channel import render_options
from sentinel.delivery.log_channel import TAIL_BYTES, LogChannel
from sentinel.model import Alert, DeliveryOutcome
from sentinel.render.message import log_record
from sentinel.service.dispatch import Dispatcher
from sentinel.store import Store

OPTIONS = render_options("Europe/Berlin", "https://acme.okta.com")
AT = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def channel(path: Path) -> LogChannel:
    """A fresh channel, as a restarted daemon has."""
    return LogChannel("log", path, options=OPTIONS)


def send(path: Path, *alerts: Alert, resolved: bool = False) -> list[DeliveryOutcome]:
    ch = channel(path)

    async def each() -> list[DeliveryOutcome]:
        return [await (ch.resolve(a, True) if resolved else ch.send(a)) for a in alerts]

    return asyncio.run(each())


def line_of(alert: Alert) -> bytes:
    return json.dumps(log_record(alert, OPTIONS), ensure_ascii=False, sort_keys=True).encode() + b"\n"


def written(path: Path) -> list[tuple[str, bool]]:
    """(alert_key, resolved) of each line; every line must be one JSON object."""
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n")[:-1]]
    return [(r["alert_key"], r.get("resolved", False)) for r in records]


def test_a_record_already_at_the_end_is_not_written_again_by_a_restarted_channel(tmp_path: Path) -> None:
    out = tmp_path / "state" / "alerts.jsonl"
    alert = sample_alert()
    send(out, alert)
    before = out.read_bytes()
    (again,) = send(out, alert)
    assert again.ok and again.detail.endswith("already written")
    assert out.read_bytes() == before
    send(out, alert, resolved=True)
    send(out, alert, resolved=True)
    assert written(out) == [(alert.key, False), (alert.key, True)]


def test_another_alert_and_the_resolved_record_of_the_same_one_are_still_written(tmp_path: Path) -> None:
    out = tmp_path / "alerts.jsonl"
    a, b = sample_alert(key="a"), sample_alert(key="b")
    send(out, a)
    send(out, a, b)
    send(out, a, resolved=True)
    assert written(out) == [("a", False), ("b", False), ("a", True)]


def test_the_resend_is_recognised_after_new_alerts_went_first(tmp_path: Path) -> None:
    """After a restart live alerts may go out before the back-filled one that was in flight."""
    out = tmp_path / "alerts.jsonl"
    a, b = sample_alert(key="a"), sample_alert(key="b")
    send(out, a)
    send(out, b, a)
    assert written(out) == [("a", False), ("b", False)]


def test_a_new_version_of_the_same_alert_is_a_new_record(tmp_path: Path) -> None:
    """Same key, other content: the alert reopened (grown), or the fallback's report of a dead delivery."""
    out = tmp_path / "alerts.jsonl"
    alert = sample_alert()
    grown = replace(alert, count=2, last_seen=alert.last_seen + timedelta(minutes=5))
    report = replace(grown, title=f"Undelivered to chat: {alert.title}")
    send(out, alert)
    send(out, alert, grown, report, grown)
    assert written(out) == [(alert.key, False)] * 4
    assert [r["count"] for r in map(json.loads, out.read_text(encoding="utf-8").splitlines())] == [1, 2, 2, 2]


def test_a_torn_last_line_is_cut_and_the_record_written_again_on_its_own_line(tmp_path: Path) -> None:
    out = tmp_path / "alerts.jsonl"
    a, b = sample_alert(key="a"), sample_alert(key="b")
    send(out, a, b)
    whole = out.read_bytes()
    out.write_bytes(whole[:-40])  # killed mid-write of b: a part of its line, no newline
    (outcome,) = send(out, b)
    assert outcome.detail.endswith(": written")
    assert out.read_bytes() == whole
    assert written(out) == [("a", False), ("b", False)]


def test_a_file_that_is_only_a_torn_line_is_cut_to_nothing(tmp_path: Path) -> None:
    out = tmp_path / "alerts.jsonl"
    alert = sample_alert()
    send(out, alert)
    whole = out.read_bytes()
    out.write_bytes(whole[:-1])  # all of the record but its newline: still not counted as written
    send(out, alert)
    assert out.read_bytes() == whole


def test_a_torn_part_longer_than_the_tail_stays_but_the_record_starts_a_line_of_its_own(tmp_path: Path) -> None:
    out = tmp_path / "alerts.jsonl"
    out.write_bytes(b"x" * (TAIL_BYTES + 10))  # not a line of ours: where it starts is past the tail
    alert = sample_alert()
    send(out, alert)
    assert out.read_bytes() == b"x" * (TAIL_BYTES + 10) + b"\n" + line_of(alert)


def test_only_the_tail_is_read_and_a_line_cut_by_its_start_does_not_count(tmp_path: Path) -> None:
    out = tmp_path / "alerts.jsonl"
    alerts = [sample_alert(key=f"k{i}") for i in range(2 * TAIL_BYTES // len(line_of(sample_alert())) + 2)]
    send(out, *alerts)
    offsets = list(accumulate((len(line) for line in out.read_bytes().splitlines(keepends=True)), initial=0))
    start = offsets[-1] - TAIL_BYTES
    cut = next(i for i, offset in enumerate(offsets) if offset > start) - 1  # the line the tail starts in
    assert 0 < offsets[cut] < start
    send(out, alerts[-1], alerts[cut + 1], alerts[cut], alerts[0])  # the last two are outside the tail
    assert written(out)[len(alerts):] == [(alerts[cut].key, False), (alerts[0].key, False)]


def test_a_pending_delivery_already_in_the_file_is_marked_sent_without_a_second_line(tmp_path: Path) -> None:
    """The daemon's path: a delivery left pending by a kill after the fsync goes out once after the restart."""
    out = tmp_path / "alerts.jsonl"

    async def scenario() -> list[dict[str, object]]:
        store = Store(tmp_path / "s.db")
        store.start(AT)
        await store.record_evaluation([], [sample_alert(key="a"), sample_alert(key="b")], lambda a: ["log"], {},
                                      [], AT)
        (first, _) = await store.due_deliveries("log", AT)
        await LogChannel("log", out).send(first.alert)  # written and fsynced; killed before the "sent"
        assert await Dispatcher(LogChannel("log", out), store, FixedClock(AT)).run_once() == 2
        rows = await store.list_deliveries()
        store.close()
        return rows

    rows = asyncio.run(scenario())
    assert [r["status"] for r in rows] == ["sent", "sent"]
    assert written(out) == [("a", False), ("b", False)]
