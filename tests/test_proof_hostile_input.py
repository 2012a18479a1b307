"""Proof: thousands of hostile requests against ONE running daemon never get a 5xx, never crash it, store
nothing from a rejected request, and leave its memory bounded.

The daemon is the real ``sentinel serve`` subprocess with the shipped rule pack, so every stored hostile
event also goes through the detector. Each request is checked against the pure parser
(``sentinel.okta.parse_delivery``) as the oracle: a body it rejects must be a 4xx and change no row; a body
it accepts must be a 204 that adds exactly its new events, and one quarantine record if it has bad elements.
At the end the detector must have evaluated every stored event (a poison event that stalls it fails the
last test).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from copy import deepcopy
from pathlib import Path
from typing import Any

import httpx
import pytest
from daemon import SECRET, Daemon, write_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from proof_helpers import inbox_backlog, inbox_received, query, rss_kib, scalar, settled, wait_until

from sentinel.errors import PayloadError
from sentinel.okta import parse_delivery

REPO = Path(__file__).resolve().parent.parent
MAX_BODY = 1_048_576
RSS_GROWTH_LIMIT_KIB = 150 * 1024
DETECTOR_RSS_LIMIT_KIB = 250 * 1024
SAMPLE = json.loads((REPO / "rules" / "data" / "privilege-grant-superadmin.json").read_text(encoding="utf-8"))
# Event types of shipped rules, so hostile events are evaluated by real rules (and one nobody reads).
EVENT_TYPES = ["user.account.privilege.grant", "user.session.start", "user.authentication.auth_via_mfa",
               "system.org.rate_limit.warning", "user.account.lock", "iam.role.create", "group.privilege.grant",
               "user.authentication.authenticate", "nobody.reads.this"]
HOSTILE_VALUES: list[Any] = [
    None, True, False, 0, -1, 2**63, -(2**200), 1.5, 1e308, -0.0, "", " ", "x" * 5000, [], {}, [None],
    [[[]]], {"a": {"b": {"c": []}}}, [1, "a", None, {}], "null", "true", "1e400", "\u0000", "\u202e\u202d",
    "e" + "\u0301" * 2000, "\ufeff", "\U0010ffff", "🙂" * 100, "{New IP=POSITIVE, level=HIGH}", '{"a":[1,2]}',
    "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0999-01-01T00:00:00Z", "2024-13-45T99:99:99Z",
    "9999-12-31T23:59:59.999999Z", "0001-01-01T00:00:00Z",
]


class Intake:
    """A client for the one daemon, with the store's row counts before and after each request."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.db = daemon.config.parent / "state" / "sentinel.db"
        self.http = httpx.Client(base_url=daemon.url, timeout=httpx.Timeout(30.0))
        self.statuses: dict[int, int] = {}
        self.rss_start = 0
        self.counter = 0

    def counts(self) -> tuple[int, int, int]:
        """Events, quarantine records (one per delivery with bad elements), and deliveries ever stored in
        the inbox."""
        row = query(self.db, "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM quarantine)")[0]
        return int(row[0]), int(row[1]), inbox_received(self.db)

    def unpacked(self) -> None:
        """Wait until the detector has unpacked every stored delivery into events and quarantine."""
        assert wait_until(lambda: inbox_backlog(self.db) == 0, timeout=60, interval=0.02), "inbox not unpacked"

    def post(self, content: bytes | Iterable[bytes], headers: dict[str, str] | None = None) -> httpx.Response:
        sent = {"Authorization": SECRET, "Content-Type": "application/json", **(headers or {})}
        r = self.http.post("/hooks/okta", content=content, headers=sent)
        self.statuses[r.status_code] = self.statuses.get(r.status_code, 0) + 1
        return r

    def uuid(self, tag: str) -> str:
        self.counter += 1
        return f"{tag}-{self.counter}"

    def known(self, uuids: list[str]) -> int:
        """How many of ``uuids`` are stored already (a retried event is a duplicate, not a new row)."""
        return sum(int(scalar(self.db, f"SELECT count(*) FROM events WHERE uuid IN ({','.join('?' * len(part))})",
                              tuple(part)))
                   for part in (uuids[i:i + 500] for i in range(0, len(uuids), 500)))

    def check(self, body: bytes, *, headers: dict[str, str] | None = None, expect: int | None = None,
              chunked: bool = False) -> int:
        """Post ``body``; the answer and the rows it added must agree with the pure parser."""
        try:
            delivery = parse_delivery(body)
        except PayloadError:
            delivery = None
        uuids = sorted({e.uuid for e in delivery.events}) if delivery else []
        known = self.known(uuids)
        before = self.counts()
        content: bytes | Iterable[bytes] = body
        if chunked:  # no Content-Length: the cap must hold while reading
            content = iter([body[i:i + 65536] for i in range(0, len(body), 65536)])
        r = self.post(content, headers)
        if r.status_code == 204:
            self.unpacked()
        after = self.counts()
        assert r.status_code < 500, f"{r.status_code} for {body[:200]!r}: {r.text[:300]}"
        if expect is not None:
            assert r.status_code == expect, f"{r.status_code} != {expect} for {body[:200]!r}: {r.text[:300]}"
        if r.status_code != 204:
            assert 400 <= r.status_code < 500
            assert after == before, f"a rejected request ({r.status_code}) changed the store: {body[:200]!r}"
            return r.status_code
        assert delivery is not None, f"the daemon accepted what the parser rejects: {body[:200]!r}"
        assert after[0] - before[0] == len(uuids) - known
        assert after[1] - before[1] == (1 if delivery.quarantined else 0)
        return 204

    def expected(self, body: bytes) -> int:
        """What the pure parser says the daemon must answer (size limits aside)."""
        try:
            parse_delivery(body)
        except PayloadError:
            return 400
        return 204


@pytest.fixture(scope="module")
def intake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Intake]:
    folder = tmp_path_factory.mktemp("hostile")
    # A display zone far from UTC: alerts for events stamped at the edges of the datetime range must
    # still render (the log channel renders every alert of the shipped pack these events raise).
    config = write_config(folder, rules=str(REPO / "rules"), extra='[delivery]\ntimezone = "Pacific/Kiritimati"\n')
    config.write_text(config.read_text().replace("[server]\n", f"[server]\nmax_body_bytes = {MAX_BODY}\n"))
    daemon = Daemon(config)
    try:
        daemon.start()
        client = Intake(daemon)
        assert daemon.proc is not None
        client.rss_start = rss_kib(daemon.proc.pid)
        yield client
        client.http.close()
    finally:
        daemon.stop()


def body_of(*events: Any, **envelope: Any) -> bytes:
    return json.dumps({"eventType": "com.okta.event_hook", **envelope, "data": {"events": list(events)}}).encode()


def valid_event(uuid: str, event_type: str = "user.account.privilege.grant") -> dict[str, Any]:
    event: dict[str, Any] = deepcopy(SAMPLE)
    event.update(uuid=uuid, eventType=event_type)
    return event


# -- garbage --------------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000))
def test_random_bytes_are_4xx_and_store_nothing(intake: Intake, body: bytes) -> None:
    intake.check(body, expect=intake.expected(body))


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_random_json_documents_are_4xx_unless_they_are_deliveries(intake: Intake, doc: Any) -> None:
    body = json.dumps(doc).encode()
    intake.check(body, expect=intake.expected(body))


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(json_values, max_size=8), json_values)
def test_arbitrary_event_elements_are_stored_or_quarantined(intake: Intake, elements: list[Any], extra: Any) -> None:
    """Anything inside ``data.events``: good events stored, everything else quarantined, never a 5xx."""
    body = body_of(*elements, eventId=extra)
    intake.check(body, expect=intake.expected(body))


# -- wrong types in every field of an otherwise valid event ---------------------------------------------

FIELDS = ["uuid", "eventType", "published", "version", "severity", "displayMessage", "actor", "actor.alternateId",
          "actor.displayName", "client", "client.ipAddress", "client.userAgent", "client.geographicalContext",
          "outcome", "outcome.result", "outcome.reason", "target", "target.0", "target.0.type",
          "target.0.alternateId", "debugContext", "debugContext.debugData",
          "debugContext.debugData.privilegeGranted", "debugContext.debugData.behaviors",
          "debugContext.debugData.threatDetections", "securityContext", "authenticationContext", "request"]


def replaced(event: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    event = deepcopy(event)
    node: Any = event
    *parents, last = path.split(".")
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return event


def test_wrong_types_in_every_field_are_stored_or_quarantined(intake: Intake) -> None:
    """Every field × every hostile value, each in its own delivery and beside a good event."""
    posted = 0
    for field in FIELDS:
        for i, value in enumerate(HOSTILE_VALUES):
            event_type = EVENT_TYPES[(posted + i) % len(EVENT_TYPES)]
            event = replaced(valid_event(intake.uuid("wt"), event_type), field, value)
            body = body_of(event, valid_event(intake.uuid("wt-good"), event_type))
            assert intake.check(body, expect=204) == 204
            posted += 1
    assert posted == len(FIELDS) * len(HOSTILE_VALUES)


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(FIELDS), json_values, st.sampled_from(EVENT_TYPES))
def test_generated_values_in_any_field(intake: Intake, field: str, value: Any, event_type: str) -> None:
    body = body_of(replaced(valid_event(intake.uuid("gen"), event_type), field, value))
    assert intake.check(body, expect=204) == 204


# -- unicode edge cases ---------------------------------------------------------------------------------

RAW_STRINGS = [  # JSON string literals as they appear on the wire
    r'"\u0000"', r'"a\u0000b"', r'"\ud800"', r'"\udfff"', r'"\ude00\ud83d"', r'"\ud83d\ude00"', r'"x\ud800y"',
    r'"\uffff"', r'"\ufffe"', r'"\u202eevil.exe"', r'"\u200f\u061c"', '"' + "a" + r"\u0301" * 50_000 + '"',
    '"' + "🙂" * 1000 + '"', r'"\u00e9"', '"\u00e9"', r'"\\ud800"',
]


def test_unicode_edge_cases_in_every_text_field(intake: Intake) -> None:
    for raw in RAW_STRINGS:
        for field in ("uuid", "eventType", "displayMessage", "actor.alternateId", "KEY", "published"):
            uuid = intake.uuid("uni")
            event = valid_event(uuid, "user.account.privilege.grant")
            marker = "\u2603MARKER\u2603"
            if field == "KEY":
                event[marker] = 1
            else:
                event = replaced(event, field, marker)
            text = json.dumps({"data": {"events": [event]}})
            quoted = json.dumps(marker)
            text = text.replace(quoted, raw)
            intake.check(text.encode("utf-8"), expect=204)


@pytest.mark.parametrize("body", [
    b'{"data":{"events":[{"uuid":"\xed\xa0\x80","eventType":"a","published":"2024-01-01T00:00:00Z"}]}}',  # CESU
    b'{"data":{"events":[{"uuid":"\xc0\xaf","eventType":"a","published":"2024-01-01T00:00:00Z"}]}}',  # overlong
    b'{"data":{"events":[{"uuid":"\xff\xfe","eventType":"a","published":"2024-01-01T00:00:00Z"}]}}',
    '{"data":{"events":[]}}'.encode("utf-16"),
    '{"data":{"events":[]}}'.encode("utf-32"),
    b"\xef\xbb\xbf" + b'{"data":{"events":[]}}',  # a UTF-8 byte order mark
])
def test_bodies_that_are_not_utf8_json(intake: Intake, body: bytes) -> None:
    intake.check(body, expect=intake.expected(body))


# -- deep nesting, huge strings and arrays, exact size limits ----------------------------------------------

@pytest.mark.parametrize("depth", [10, 100, 500, 900, 950, 990, 1000, 5000, 100_000, 500_000])
def test_deep_nesting(intake: Intake, depth: int) -> None:
    """As a whole body, and inside one field of a good event (around the parser's recursion limit)."""
    for body in (b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth):
        intake.check(body, expect=400 if len(body) <= MAX_BODY else 413)
    if depth <= MAX_BODY // 4:
        event = json.dumps(valid_event(intake.uuid("deep"), "user.session.start"))
        nested = "[" * depth + "]" * depth
        body = ('{"data":{"events":[' + event[:-1] + ',"deep":' + nested + ',"deepobj":' +
                '{"a":' * (depth // 2) + "1" + "}" * (depth // 2) + "}]}}").encode()
        # Near the limit the daemon's stack depth decides between 204 and 400; either is fine, a 5xx is not.
        intake.check(body)


def padded(size: int, *events: Any) -> bytes:
    """A delivery of exactly ``size`` bytes: ``events`` plus an envelope field padding it out."""
    body = body_of(*events, pad="")
    assert len(body) <= size
    return body_of(*events, pad="y" * (size - len(body)))


@pytest.mark.parametrize("chunked", [False, True])
def test_huge_string_exactly_at_and_just_over_the_limit(intake: Intake, chunked: bool) -> None:
    for size, expect in ((MAX_BODY, 204), (MAX_BODY + 1, 413), (MAX_BODY * 3, 413)):
        event = valid_event(intake.uuid("huge")) | {"displayMessage": "x" * (size - 3000)}
        intake.check(padded(size, event), expect=expect, chunked=chunked)


@pytest.mark.parametrize("chunked", [False, True])
def test_huge_arrays_at_and_over_the_limit(intake: Intake, chunked: bool) -> None:
    for size, expect in ((MAX_BODY, 204), (MAX_BODY + 1, 413)):
        event = valid_event(intake.uuid("arr")) | {"target": [0] * ((size - 3000) // 3)}
        intake.check(padded(size, event), expect=expect, chunked=chunked)
    # Hundreds of thousands of tiny elements: quarantined, one record (within the cap), or 413 (over it).
    intake.check(padded(MAX_BODY // 16, *[0] * (MAX_BODY // 48 - 100)), expect=204, chunked=chunked)
    intake.check(padded(MAX_BODY + 1, *[0] * (MAX_BODY // 3 - 100)), expect=413, chunked=chunked)


def raw_status(port: int, head: str, body: bytes) -> int:
    """Send a request byte for byte (headers a client library would refuse to send); the status code."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(head.encode("latin-1") + b"\r\n" + body)
        answer = s.recv(200)
    return int(answer.split()[1])


@pytest.mark.parametrize("header,expect", [
    (f"Content-Length: abc\r\nAuthorization: {SECRET}\r\nContent-Type: application/json", {400, 413}),
    (f"Content-Length: -5\r\nAuthorization: {SECRET}\r\nContent-Type: application/json", {400, 413}),
    (f"Content-Length: 99999999999999999999999\r\nAuthorization: {SECRET}\r\nContent-Type: application/json",
     {400, 413}),
    ("Content-Length: {n}\r\nAuthorization: wrong\r\nContent-Type: application/json", {401}),
    ("Content-Length: {n}\r\nContent-Type: application/json", {401}),
    (f"Content-Length: {{n}}\r\nAuthorization: {SECRET}\u00e9\r\nContent-Type: application/json", {401}),
    (f"Content-Length: {{n}}\r\nAuthorization: {SECRET}\r\nContent-Type: text/plain", {415}),
    (f"Content-Length: {{n}}\r\nAuthorization: {SECRET}", {415}),
])
def test_bad_headers_on_a_valid_delivery_are_rejected_and_store_nothing(intake: Intake, header: str,
                                                                        expect: set[int]) -> None:
    body = body_of(valid_event(intake.uuid("hdr")))
    head = "POST /hooks/okta HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + header.replace("{n}", str(len(body)))
    before = intake.counts()
    assert raw_status(intake.daemon.port, head + "\r\n", body) in expect
    assert intake.counts() == before


# -- 10k-event batches ------------------------------------------------------------------------------------

def small_event(uuid: str, i: int) -> dict[str, Any]:
    return {"uuid": uuid, "eventType": EVENT_TYPES[i % len(EVENT_TYPES)],
            "published": f"2026-01-01T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z"}


def test_ten_thousand_event_batch_is_stored_whole(intake: Intake) -> None:
    tag = intake.uuid("10k")
    body = body_of(*[small_event(f"{tag}-{i}", i) for i in range(10_000)])
    assert len(body) <= MAX_BODY
    before = intake.counts()
    assert intake.check(body, expect=204) == 204
    assert intake.counts()[0] - before[0] == 10_000
    assert scalar(intake.db, "SELECT count(*) FROM events WHERE uuid LIKE ?", (f"{tag}-%",)) == 10_000
    # The same batch again (Okta's retry) adds nothing.
    assert intake.check(body, expect=204) == 204
    assert intake.counts()[:2] == (before[0] + 10_000, before[1])


def test_ten_thousand_mixed_elements_half_quarantined(intake: Intake) -> None:
    tag = intake.uuid("mixed")
    elements: list[Any] = []
    for i in range(5_000):
        elements.append(small_event(f"{tag}-{i}", i))
        elements.append({"uuid": i, "eventType": None} if i % 2 else "not an event")
    before = intake.counts()
    assert intake.check(body_of(*elements), expect=204) == 204
    assert intake.counts()[:2] == (before[0] + 5_000, before[1] + 1)  # 5,000 bad elements: one record


# -- slow-loris bodies --------------------------------------------------------------------------------------

def slow_client(port: int, style: str, results: dict[str, bytes]) -> None:
    """Headers, then a body that never completes in time."""
    chunked = style == "chunked"
    head = (f"POST /hooks/okta HTTP/1.1\r\nHost: x\r\nAuthorization: {SECRET}\r\nContent-Type: application/json\r\n"
            + ("Transfer-Encoding: chunked\r\n" if chunked else "Content-Length: 100000\r\n") + "\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=40) as s:
        s.sendall(head.encode())
        deadline = time.monotonic() + 30
        s.settimeout(0.5)
        answer = b""
        while time.monotonic() < deadline and not answer:
            if style != "stall":  # a byte (or a one-byte chunk) every half second: never finishes in 10 s
                try:
                    s.sendall(b"1\r\n{\r\n" if chunked else b"{")
                except OSError:
                    pass
            try:
                answer = s.recv(200)
            except TimeoutError:
                continue
            except OSError:
                break
        results[style] = answer


def test_slow_loris_bodies_get_408_and_store_nothing(intake: Intake) -> None:
    results: dict[str, bytes] = {}
    before = intake.counts()
    threads = [threading.Thread(target=slow_client, args=(intake.daemon.port, style, results), daemon=True)
               for style in ("stall", "trickle", "chunked")]
    for t in threads:
        t.start()
    # The server keeps serving others meanwhile.
    assert intake.check(body_of(valid_event(intake.uuid("during-loris"))), expect=204) == 204
    for t in threads:
        t.join(timeout=45)
    assert set(results) == {"stall", "trickle", "chunked"}
    assert all(answer.startswith(b"HTTP/1.1 408") for answer in results.values()), results
    assert intake.counts() == (before[0] + 1, before[1], before[2] + 1)  # one delivery stored: the good one


# -- at the end: alive, every stored event evaluated, memory bounded ------------------------------------------

def test_zz_daemon_survived_evaluated_everything_and_memory_is_bounded(intake: Intake) -> None:
    daemon = intake.daemon
    assert daemon.proc is not None and daemon.proc.poll() is None
    assert daemon.alive()
    assert httpx.get(f"{daemon.url}/readyz", timeout=10).status_code == 200
    # A hostile event that makes the detector fail would leave everything after it pending forever.
    wait_until(lambda: settled(intake.db), timeout=60, interval=0.5,
               detail=lambda: "the detector stalled:\n" + daemon.log()[-3000:])
    # Likewise a hostile alert must not jam its channel: every delivery ends sent, none stuck pending.
    assert scalar(intake.db, "SELECT count(*) FROM alerts") > 100
    wait_until(lambda: scalar(intake.db, "SELECT count(*) FROM deliveries WHERE status != 'sent'") == 0,
               timeout=90, interval=0.5, detail=lambda: "a channel is stuck:\n" + daemon.log()[-3000:])
    growth = rss_kib(daemon.proc.pid) - intake.rss_start
    print(f"requests by status: {dict(sorted(intake.statuses.items()))}; RSS growth {growth // 1024} MiB")
    assert growth < RSS_GROWTH_LIMIT_KIB, f"RSS grew by {growth // 1024} MiB"
    # The detector process (the daemon's child) parsed every hostile body too: bounded as well.
    children = Path(f"/proc/{daemon.proc.pid}/task/{daemon.proc.pid}/children").read_text().split()
    assert len(children) == 1
    assert rss_kib(int(children[0])) < DETECTOR_RSS_LIMIT_KIB
    assert sum(intake.statuses.values()) >= 2000
    assert not any(status >= 500 for status in intake.statuses)
    log = daemon.log()
    assert "Exception in ASGI application" not in log
    assert "detector: unexpected error" not in log
    assert "dispatcher log: unexpected error" not in log
