"""Nothing intake acknowledges stops detection: a property over hostile mutations of a real Okta delivery.

In process, through the real parts: the ASGI app as ``sentinel serve`` builds it (intake's check and its
durable inbox), the shipped config and rule pack, and the detector unpacking into a real SQLite store.
For every body intake answers 204 to, the detector unpacks it or quarantines it (one record, with its
reason) without raising, and a good event posted after it still raises its alert.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from copy import deepcopy
from pathlib import Path
from typing import Any

import httpx
import pytest
from daemon import SECRET
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from proof_helpers import inbox_backlog

from sentinel.cli.compose import compose, web_apps
from sentinel.clock import SystemClock
from sentinel.config import load_config
from sentinel.service.detector import DetectorReport
from sentinel.service.detector_runner import InProcessDetector

REPO = Path(__file__).resolve().parent.parent
# A real Okta event (Panther's sample of a Super administrator grant); the shipped pack alerts on it.
SAMPLE: dict[str, Any] = json.loads((REPO / "rules" / "data" / "privilege-grant-superadmin.json").read_text())
ENVELOPE: dict[str, Any] = json.loads((Path(__file__).parent / "data" / "envelope.json").read_text())
ALERTING_RULE = "okta-admin-privilege-granted-user"


class Harness:
    """One in-process intake + detector on a real store, shared by every example."""

    def __init__(self, folder: Path) -> None:
        shipped = (REPO / "sentinel.toml").read_text(encoding="utf-8")
        config = folder / "sentinel.toml"
        config.write_text(shipped.replace('paths = ["rules"]', f'paths = ["{REPO / "rules"}"]'), encoding="utf-8")
        settings = load_config(config, environ={"SENTINEL_OKTA_SECRET": SECRET})
        self.db = settings.storage.path
        self.loop = asyncio.new_event_loop()
        self.daemon = compose(settings, clock=SystemClock(), detector=InProcessDetector)
        self.daemon.store.start(self.daemon.clock.now())
        self.reports: list[DetectorReport] = []
        assert isinstance(self.daemon.detector, InProcessDetector)
        self.detector = self.daemon.detector.detector  # driven step by step, not as a task
        self.detector.on_report = self.reports.append
        app, _ = web_apps(self.daemon)
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sentinel")
        self.loop.run_until_complete(self.detector.load_state())
        self.counter = 0

    def post(self, body: bytes) -> int:
        headers = {"Authorization": SECRET, "Content-Type": "application/json"}
        response = self.loop.run_until_complete(self.http.post("/hooks/okta", content=body, headers=headers))
        return response.status_code

    def detect(self) -> DetectorReport:
        """Unpack and evaluate everything waiting, as the detector's loop does; what it reported."""
        self.reports.clear()

        async def drain() -> None:
            detector = self.detector
            while await detector.unpack_once() or await detector.run_once():
                pass

        self.loop.run_until_complete(drain())
        total = DetectorReport()
        for r in self.reports:
            total.received += r.received
            total.duplicate += r.duplicate
            total.quarantined += r.quarantined
            total.alerts += r.alerts
        return total

    def rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        conn = sqlite3.connect(self.db)
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()

    def close(self) -> None:
        self.loop.run_until_complete(self.http.aclose())
        self.daemon.store.close()
        self.loop.close()


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    h = Harness(tmp_path_factory.mktemp("poison"))
    yield h
    h.close()


# -- mutations of the real delivery --------------------------------------------------------------------

def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


HOSTILE_TOKENS: list[bytes] = [
    b"1" * 5000, b"-" + b"9" * 4301, b"1" * 4300, b"1e999", b"-1e999", b"1.5e308", b"NaN", b"Infinity",
    b"-Infinity", b'"\\ud800"', b'"x\\udfff"', b'"\\ud83d\\ude00"', b'"\xed\xa0\x80"', b'"\\u0000"',
    '"\u202e\u202d"'.encode(), '"\ufeff"'.encode(), '"\U0010ffff"'.encode(), ('"e' + "\u0301" * 300 + '"').encode(),
    b'"\xff"', b"null", b"true", b"0", b"-0", b"[]", b"{}", b'"x"', b'""', b'"2024-13-45T99:99:99Z"',
    b'"0001-01-01T00:00:00+01:00"', b'"9999-12-31T23:59:59-01:00"', b'{"a":1,"a":[2]}',
    nested(50), nested(900), nested(990), nested(1000), nested(5000),
]
TOKENS = st.sampled_from(HOSTILE_TOKENS) | st.integers(4290, 6000).map(lambda n: b"7" * n) | \
    st.text(max_size=20).map(lambda t: json.dumps(t, ensure_ascii=False).encode("utf-8", "surrogatepass"))
FIELDS = ["uuid", "eventType", "published", "actor", "actor.alternateId", "target", "client.ipAddress",
          "debugContext.debugData.privilegeGranted", "outcome.result", "displayMessage", "brandNew"]
# Where a token goes: a field of the event, the event itself, a duplicate key, the envelope, another element.
PLACES = st.sampled_from([*FIELDS, "$element", "$duplicate-uuid", "$duplicate-eventType", "$envelope", "$extra"])
MUTATION_BYTES = st.sampled_from([b"", b"{", b"}", b"[", b"]", b",", b":", b'"', b"\\", b"\\u", b"d800", b"0",
                                  b"-", b"e", b".", b"\x00", b"\xff", b"\xed\xa0\x80", b"NaN", b"1" * 5000])


def mutated(uuid: str, placements: list[tuple[str, bytes]], cuts: list[tuple[int, int, bytes]]) -> bytes:
    """The Okta docs' delivery carrying the real sample event, with hostile tokens placed as raw JSON
    text (so they can be what json.dumps never writes), then optionally a few bytes cut or inserted."""
    event = deepcopy(SAMPLE) | {"uuid": uuid}
    envelope = deepcopy(ENVELOPE)
    elements: list[Any] = [event]
    tokens: dict[str, bytes] = {}

    def mark(token: bytes) -> str:
        name = f"@@token-{len(tokens)}@@"
        tokens[name] = token
        return name

    for place, token in placements:
        if place in FIELDS:
            *parents, leaf = place.split(".")
            target = event
            for key in parents:
                target = target[key] if isinstance(target.get(key), dict) else target.setdefault(key, {})
                if not isinstance(target, dict):
                    break
            else:
                target[leaf] = mark(token)
        elif place == "$element":
            elements[0] = mark(token)
        elif place.startswith("$duplicate-"):
            event[f"@@duplicate-{place.split('-', 1)[1]}@@"] = mark(token)
        elif place == "$envelope":
            envelope["eventId"] = mark(token)
        else:
            elements.append(mark(token))
    envelope["data"] = {"events": elements}
    body = json.dumps(envelope, ensure_ascii=False).encode("utf-8")
    for name, token in tokens.items():
        body = body.replace(json.dumps(name).encode(), token)
    body = body.replace(b'"@@duplicate-uuid@@"', b'"uuid"').replace(b'"@@duplicate-eventType@@"', b'"eventType"')
    mutable = bytearray(body)
    for at, cut, insert in cuts:
        at %= len(mutable) + 1
        mutable[at:at + cut] = insert
    return bytes(mutable)


def good_delivery(uuid: str) -> bytes:
    return json.dumps(deepcopy(ENVELOPE) | {"data": {"events": [deepcopy(SAMPLE) | {"uuid": uuid}]}}).encode()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(placements=st.lists(st.tuples(PLACES, TOKENS), min_size=1, max_size=3),
       cuts=st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 3), MUTATION_BYTES), max_size=2))
def test_whatever_intake_acknowledges_is_unpacked_or_quarantined_and_detection_goes_on(
        harness: Harness, placements: list[tuple[str, bytes]], cuts: list[tuple[int, int, bytes]]) -> None:
    harness.counter += 1
    body = mutated(f"hostile-{harness.counter}", placements, cuts)
    records_before = harness.rows("SELECT count(*) FROM quarantine")[0][0]
    status = harness.post(body)
    assert status in (204, 400), f"{status} for {body[:300]!r}"
    good = f"good-after-{harness.counter}"
    assert harness.post(good_delivery(good)) == 204
    report = harness.detect()  # raises if unpacking or evaluating fails
    assert inbox_backlog(harness.db) == 0, "a delivery was left in the inbox"
    # The good event, delivered after the hostile body, is stored, evaluated and alerts.
    assert harness.rows("SELECT count(*) FROM alerts WHERE event_uuids LIKE ?", (f'%"{good}"%',)) == [(1,)]
    assert ALERTING_RULE in [rule for rule, _ in report.alerts]
    records = harness.rows("SELECT count(*) FROM quarantine")[0][0] - records_before
    if status == 204:
        # Every element landed somewhere (stored, new or already known, or quarantined), the good one too.
        assert report.received + report.duplicate + report.quarantined >= 2, body[:300]
        # However many bad elements, one quarantine record for the delivery, with its reason.
        assert records == (1 if report.quarantined else 0)
        if records:
            ((path, reason),) = harness.rows("SELECT path, reason FROM quarantine ORDER BY id DESC LIMIT 1")
            assert path and reason
    else:
        assert (report.received, report.duplicate, report.quarantined, records) == (1, 0, 0, 0)


def test_the_five_thousand_digit_delivery_is_quarantined_and_the_next_one_alerts(harness: Harness) -> None:
    """The body that stopped all detection for good, as one example that always runs."""
    harness.counter += 1
    body = mutated(f"digits-{harness.counter}", [("brandNew", b"1" * 5000)], [])
    assert harness.post(body) == 204
    report = harness.detect()
    assert (report.received, report.quarantined) == (0, 1)
    ((path, reason, kept),) = harness.rows("SELECT path, reason, body FROM quarantine ORDER BY id DESC LIMIT 1")
    assert (path, reason) == ("data.events[0]", "contains an integer of more than 4300 digits")
    assert "1" * 5000 in kept
    assert harness.post(good_delivery(f"good-{harness.counter}")) == 204
    assert ALERTING_RULE in [rule for rule, _ in harness.detect().alerts]
