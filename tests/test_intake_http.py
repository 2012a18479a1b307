"""The Okta endpoint of the real daemon, over real HTTP: verification, auth, bad input, durability."""

from __future__ import annotations

import json
import socket
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import alert_rules, envelope, inbox_received, make_event, settled, stored, wait_for
from daemon import SECRET, Daemon, write_config
from proof_helpers import inbox_of, query

from sentinel.model import format_timestamp


def db_of(d: Daemon) -> Path:
    return d.config.parent / "state" / "sentinel.db"


# -- verification -------------------------------------------------------------------------------

def test_verification_challenge_is_echoed(shared_daemon: Daemon) -> None:
    r = httpx.get(f"{shared_daemon.url}/hooks/okta",
                  headers={"Authorization": SECRET, "X-Okta-Verification-Challenge": "abc-123"})
    assert r.status_code == 200
    assert r.json() == {"verification": "abc-123"}
    assert r.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize("auth", [None, "wrong", SECRET + "x", ""])
def test_verification_needs_auth(shared_daemon: Daemon, auth: str | None) -> None:
    headers = {"x-okta-verification-challenge": "abc"}
    if auth is not None:
        headers["Authorization"] = auth
    assert httpx.get(f"{shared_daemon.url}/hooks/okta", headers=headers).status_code == 401


def test_verification_without_challenge_is_400(shared_daemon: Daemon) -> None:
    r = httpx.get(f"{shared_daemon.url}/hooks/okta", headers={"Authorization": SECRET})
    assert r.status_code == 400
    assert "x-okta-verification-challenge" in r.json()["error"]


def test_verification_answers_head_like_get_without_a_body(shared_daemon: Daemon) -> None:
    url = f"{shared_daemon.url}/hooks/okta"
    r = httpx.head(url, headers={"Authorization": SECRET, "X-Okta-Verification-Challenge": "h"})
    assert r.status_code == 200
    assert r.content == b""
    assert httpx.head(url, headers={"X-Okta-Verification-Challenge": "h"}).status_code == 401


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_other_methods_are_405_naming_the_allowed_ones(shared_daemon: Daemon, method: str) -> None:
    r = httpx.request(method, f"{shared_daemon.url}/hooks/okta", headers={"Authorization": SECRET},
                      content=json.dumps(envelope(make_event("m-1"))))
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, HEAD, POST"
    assert inbox_received(db_of(shared_daemon)) == 0


@pytest.mark.proof
def test_a_latin1_header_byte_is_compared_as_that_character(tmp_path: Path) -> None:
    """Header values are Latin-1 text: a secret with a non-ASCII character matches its Latin-1 bytes."""
    secret = "s\u00e9cret-\u00e9t\u00e9-0123456789"
    d = Daemon(write_config(tmp_path), secret=secret).start()
    try:
        ok = d.post(envelope(make_event("latin-1")),
                    headers={"Authorization": secret.encode("latin-1"), "Content-Type": "application/json"})
        assert ok.status_code == 204
        as_utf8 = d.post(envelope(make_event("utf-8")),
                         headers={"Authorization": secret.encode("utf-8"), "Content-Type": "application/json"})
        assert as_utf8.status_code == 401
        assert stored(db_of(d)) == ["latin-1"]
    finally:
        d.stop()


# -- auth on delivery ---------------------------------------------------------------------------

@pytest.mark.parametrize("auth", [None, "wrong", SECRET.upper(), "Bearer " + SECRET])
def test_delivery_with_bad_auth_is_401_and_stores_nothing(shared_daemon: Daemon, auth: str | None) -> None:
    headers = {"Content-Type": "application/json"}
    if auth is not None:
        headers["Authorization"] = auth
    r = shared_daemon.post(envelope(make_event("u-1")), headers=headers)
    assert r.status_code == 401
    assert stored(db_of(shared_daemon)) == []
    assert shared_daemon.alive()


@pytest.mark.proof
def test_current_and_previous_secrets_both_work_during_rotation(tmp_path: Path) -> None:
    d = Daemon(write_config(tmp_path), secret="new-secret-value",
               env={"SENTINEL_OKTA_SECRET_PREVIOUS": "old-secret-value"}).start()
    try:
        for i, secret in enumerate(["new-secret-value", "old-secret-value"]):
            r = d.post(envelope(make_event(f"rot-{i}")),
                       headers={"Authorization": secret, "Content-Type": "application/json"})
            assert r.status_code == 204, r.text
        r = d.post(envelope(make_event("rot-x")),
                   headers={"Authorization": "other", "Content-Type": "application/json"})
        assert r.status_code == 401
        assert stored(db_of(d)) == ["rot-0", "rot-1"]
    finally:
        d.stop()


@pytest.mark.proof
def test_custom_auth_header_name(tmp_path: Path) -> None:
    d = Daemon(write_config(tmp_path, extra='[okta]\nauth_header = "X-Sentinel-Key"\n')).start()
    try:
        ok = d.post(envelope(make_event("h-1")), headers={"X-Sentinel-Key": SECRET, "Content-Type": "application/json"})
        assert ok.status_code == 204
        wrong_header = d.post(envelope(make_event("h-2")),
                              headers={"Authorization": SECRET, "Content-Type": "application/json"})
        assert wrong_header.status_code == 401
    finally:
        d.stop()


# -- bad input ----------------------------------------------------------------------------------

def test_non_json_content_type_is_415(shared_daemon: Daemon) -> None:
    r = shared_daemon.post(json.dumps(envelope(make_event("ct-1"))),
                    headers={"Authorization": SECRET, "Content-Type": "text/plain"})
    assert r.status_code == 415
    assert stored(db_of(shared_daemon)) == []


def test_declared_oversized_body_is_413(shared_daemon: Daemon) -> None:
    big = json.dumps(envelope(make_event("big", displayMessage="x" * (1024 * 1024 + 10))))
    r = shared_daemon.post(big)
    assert r.status_code == 413
    assert stored(db_of(shared_daemon)) == []
    assert shared_daemon.alive()


def test_oversized_streamed_body_is_cut_off_while_reading(shared_daemon: Daemon) -> None:
    """No Content-Length (chunked): the cap must hold while reading, not after."""
    chunk = b"x" * 65536
    sent = 0

    def body():
        nonlocal sent
        yield b'{"data": {"events": [{"uuid": "stream", "displayMessage": "'
        for _ in range(64):  # 4 MiB offered in total
            sent += len(chunk)
            yield chunk
        yield b'"}]}}'

    r = httpx.post(f"{shared_daemon.url}/hooks/okta", content=body(), headers=shared_daemon.headers(), timeout=10)
    assert r.status_code == 413
    assert stored(db_of(shared_daemon)) == []
    assert shared_daemon.alive()


@pytest.mark.parametrize(("body", "path"), [
    (b"{not json", "$"),
    (b"[1, 2]", "$"),
    (b'"text"', "$"),
    (b"{}", "data"),
    (b'{"data": []}', "data"),
    (b'{"data": {}}', "data.events"),
    (b'{"data": {"events": {"uuid": "x"}}}', "data.events"),
    (b'{"data": {"events": null}}', "data.events"),
    (b"\xff\xfe", "$"),
    (b"[" * 100_000, "$"),
])
def test_malformed_body_is_400_naming_the_path(shared_daemon: Daemon, body: bytes, path: str) -> None:
    r = shared_daemon.post(body)
    assert r.status_code == 400, r.text
    assert r.json()["path"] == path
    assert stored(db_of(shared_daemon)) == []
    assert shared_daemon.alive()


def test_bad_events_are_quarantined_and_good_ones_kept(daemon: Daemon) -> None:
    good = make_event("good-1")
    bad: list[Any] = [
        {"eventType": "user.session.start", "published": "2024-05-01T10:00:00Z"},  # no uuid
        {"uuid": "no-type", "published": "2024-05-01T10:00:00Z"},
        {"uuid": 42, "eventType": "x", "published": "2024-05-01T10:00:00Z"},
        {"uuid": "bad-time", "eventType": "x", "published": "yesterday"},
        "not an object",
    ]
    r = daemon.post(envelope(good, *bad))
    assert r.status_code == 204
    db = db_of(daemon)
    assert stored(db) == ["good-1"]
    # The delivery's bad elements are one quarantine record: every path, every reason, every element.
    paths = ["data.events[1].uuid", "data.events[2].eventType", "data.events[3].uuid", "data.events[4].published",
             "data.events[5]"]
    reasons = ["missing", "missing", "must be a string, not a number", "not an ISO-8601 timestamp",
               "must be an object, not a string"]
    record = (", ".join(paths), "; ".join(f"{p}: {r}" for p, r in zip(paths, reasons, strict=True)))
    assert stored(db, "SELECT path, reason FROM quarantine ORDER BY id") == [record]
    assert "5 quarantined" in daemon.log()
    from test_config import run_cli

    listed = run_cli("quarantine", "--config", str(daemon.config), "--json")
    assert listed.returncode == 0, listed.stderr
    entries = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(e["path"], e["reason"]) for e in entries] == [record]
    assert json.loads(entries[0]["body"]) == bad


@pytest.mark.proof
def test_a_five_thousand_digit_integer_is_quarantined_and_detection_goes_on(ruled: Daemon) -> None:
    """json.loads refuses integers past 4,300 digits; such a body used to be acknowledged by intake and
    then fail in the detector at every retry, holding back every later delivery for good."""
    digits = "1" * 5000
    body = json.dumps(envelope(make_event("digits", "user.account.lock", n=0))).replace('"n": 0', f'"n": {digits}')
    assert ruled.post(body).status_code == 204
    assert ruled.post(envelope(make_event("after", "user.account.lock"))).status_code == 204
    assert wait_for(lambda: alert_rules(ruled.config.parent) == ["test-lock"])
    assert stored(db_of(ruled)) == ["after"]
    from test_config import run_cli

    listed = run_cli("quarantine", "--config", str(ruled.config), "--json")
    assert listed.returncode == 0, listed.stderr
    (entry,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert (entry["path"], entry["reason"]) == ("data.events[0]", "contains an integer of more than 4300 digits")
    assert digits in entry["body"]
    text = run_cli("quarantine", "--config", str(ruled.config)).stdout
    assert "data.events[0]  contains an integer of more than 4300 digits" in text


@pytest.mark.proof
def test_a_body_of_many_bad_elements_is_one_log_line_and_one_quarantine_record(daemon: Daemon) -> None:
    """It used to be one warning line and one quarantine row per bad element (500,001 lines, 67 MB, for
    a 1 MB body)."""
    count = 100_000
    assert daemon.post(envelope(*[0] * count, make_event("kept"))).status_code == 204  # type: ignore[arg-type]
    db = db_of(daemon)
    assert stored(db) == ["kept"]
    group = f"data.events[0-{count - 1}]"
    assert stored(db, "SELECT path, reason, body FROM quarantine") == \
        [(group, "must be an object, not a number", "[" + ",".join(["0"] * count) + "]")]
    assert wait_for(lambda: "okta delivery 1:" in daemon.log())  # logged just after the commit
    lines = [line for line in daemon.log().splitlines() if "okta delivery 1" in line or "data.events[" in line]
    assert len(lines) == 1, lines[:5]
    assert f"{count + 1} events (1 new, 0 duplicate, {count} quarantined)" in lines[0]
    assert f"{group}: must be an object, not a number ({count:,} elements)" in lines[0]
    from test_config import run_cli

    listed = run_cli("quarantine", "--config", str(daemon.config)).stdout.splitlines()
    assert len(listed) == 1 and group in listed[0]


def test_real_okta_sample_is_accepted(daemon: Daemon, envelope_sample: dict) -> None:  # type: ignore[type-arg]
    assert daemon.post(envelope_sample).status_code == 204
    assert stored(db_of(daemon)) == ["f1d0b993-cc19-11ed-a688-db22c99ef6c4"]


# -- durability and idempotency -----------------------------------------------------------------

@pytest.mark.proof
def test_same_delivery_twice_stores_each_event_once(daemon: Daemon) -> None:
    body = envelope(make_event("d-1"), make_event("d-2"), make_event("d-1"))
    assert daemon.post(body).status_code == 204
    assert daemon.post(body).status_code == 204
    assert stored(db_of(daemon)) == ["d-1", "d-2"]
    assert "(0 new, 2 duplicate, 0 quarantined)" in daemon.log()


@pytest.mark.proof
def test_200_concurrent_posts_store_every_event(daemon: Daemon) -> None:
    def post(i: int) -> int:
        events = [make_event(f"c-{i}-{j}", published=f"2024-05-01T10:{i % 60:02d}:{j:02d}.000Z") for j in range(3)]
        return daemon.post(envelope(*events)).status_code

    with ThreadPoolExecutor(max_workers=50) as pool:
        codes = list(pool.map(post, range(200)))
    assert codes == [204] * 200
    assert len(stored(db_of(daemon))) == 600
    # Every stored event gets evaluated by the detector loop.
    assert wait_for(lambda: settled(db_of(daemon)))


@pytest.mark.proof
def test_store_locked_answers_503_then_recovers(daemon: Daemon) -> None:
    db = db_of(daemon)
    assert daemon.post(envelope(make_event("before"))).status_code == 204
    # Intake writes to the inbox: a lock held on it (as on a full disk) must give 503, not a hang.
    blocker = sqlite3.connect(inbox_of(db), isolation_level=None, timeout=0.1)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        r = daemon.post(envelope(make_event("while-locked")))
        assert r.status_code == 503
        ready = httpx.get(f"{daemon.url}/readyz", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["store"] == "failing" and ready.json()["problems"] == ["store"]
        assert "store failed: could not persist: OperationalError: database is locked" in daemon.log()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert daemon.post(envelope(make_event("while-locked"))).status_code == 204  # Okta's retry succeeds
    assert stored(db) == ["before", "while-locked"]
    assert httpx.get(f"{daemon.url}/readyz").status_code == 200


@pytest.mark.proof
def test_sigkill_right_after_204_loses_nothing_and_event_is_evaluated_after_restart(tmp_path: Path) -> None:
    d = Daemon(write_config(tmp_path)).start()
    # Keep the detector from evaluating before the kill: hold the reader out with no lock needed —
    # the kill comes straight after the answer, so the event is usually still pending; either way
    # it must be stored and, after the restart, evaluated.
    r = d.post(envelope(make_event("crash-1"), make_event("crash-2")))
    assert r.status_code == 204
    d.kill()
    db = db_of(d)
    # Durable before the answer: in the events already, or in the inbox, still to be unpacked.
    in_events = stored_now(db)
    assert in_events == ["crash-1", "crash-2"] or (in_events == [] and inbox_received(db) == 1)
    d.start()
    try:
        assert wait_for(lambda: settled(db))
        assert stored(db) == ["crash-1", "crash-2"]
    finally:
        d.stop()


@pytest.mark.proof
def test_pending_events_from_before_a_crash_are_evaluated_at_start(tmp_path: Path) -> None:
    d = Daemon(write_config(tmp_path)).start()
    d.stop()
    db = db_of(d)
    conn = sqlite3.connect(db)
    # Received just before the crash: an old received_at would be pruned by retention once evaluated.
    received = format_timestamp(datetime.now(UTC))
    conn.execute("INSERT INTO events (uuid, event_type, published, received_at, body) VALUES "
                 "('left-1', 'user.session.start', '2024-05-01T10:00:00.000000Z', ?, ?)",
                 (received, json.dumps(make_event("left-1"))))
    conn.commit()
    conn.close()
    d.start()
    try:
        assert wait_for(lambda: stored(db, "SELECT evaluated_at IS NOT NULL FROM events") == [1])
    finally:
        d.stop()


# -- observability ------------------------------------------------------------------------------

def test_health_and_readiness(shared_daemon: Daemon) -> None:
    assert httpx.get(f"{shared_daemon.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{shared_daemon.url}/readyz")
    assert ready.status_code == 200
    assert ready.json()["store"] == "ok"


def test_logs_never_contain_the_secret(daemon: Daemon) -> None:
    daemon.post(envelope(make_event("l-1")))
    daemon.post(envelope(make_event("l-2")), headers={"Authorization": "wrong-" + SECRET,
                                                      "Content-Type": "application/json"})
    httpx.get(f"{daemon.url}/hooks/okta", headers={"Authorization": SECRET, "x-okta-verification-challenge": "c"})
    assert stored(db_of(daemon)) == ["l-1"]
    daemon.stop()
    log = daemon.log()
    assert "okta delivery 1: 1 events (1 new, 0 duplicate, 0 quarantined)" in log
    assert "rejected POST /hooks/okta" in log
    assert SECRET not in log


@pytest.mark.proof
def test_slow_loris_body_is_dropped_without_storing(daemon: Daemon) -> None:
    """A client that sends headers and then a trickle of body must not hold a request open forever."""
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=30) as s:
        s.sendall(f"POST /hooks/okta HTTP/1.1\r\nHost: x\r\nAuthorization: {SECRET}\r\n"
                  "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{".encode())
        started = time.monotonic()
        s.settimeout(30)
        answer = s.recv(200)
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408")
    assert waited < 25
    assert stored(db_of(daemon)) == []
    assert daemon.alive()


def stored_now(db: Path) -> list[str]:
    """The events table as it is, without waiting for the inbox to be unpacked (no daemon runs)."""
    return [row[0] for row in query(db, "SELECT uuid FROM events ORDER BY uuid")]
