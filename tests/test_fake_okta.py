"""The fake Okta System Log API behaves as docs/okta-system-log-api.md describes, so the poller's tests can
trust it. Plain httpx against the real server on a free port."""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from fake_okta import FakeOkta
from fake_okta_auth import client_assertion, ec_key_pair, rsa_key_pair

DATA = Path(__file__).parent / "data"
TOKEN = "00abcSSWStokenForTheFake"
NOW = 1_796_000_000.0  # 2026-11-28, a whole second


def real_events() -> list[dict[str, Any]]:
    """LogEvents Okta really sent: the hook sample from Okta's docs and the Panther test events."""
    events: list[dict[str, Any]] = json.loads((DATA / "envelope.json").read_text())["data"]["events"]
    for line in (DATA / "panther-okta-cases.jsonl").read_text().splitlines():
        if line.startswith("{"):
            event = json.loads(line)["event"]
            if event.get("uuid") and event.get("eventType"):
                events.append(event)
    return events


def events_at(start: datetime, count: int, step: timedelta = timedelta(seconds=1)) -> list[dict[str, Any]]:
    """``count`` real events re-stamped with fresh uuids and ``published`` times from ``start`` on."""
    templates = real_events()
    out = []
    for i in range(count):
        event = copy.deepcopy(templates[i % len(templates)])
        event["uuid"] = str(uuid.uuid4())
        event["published"] = (start + i * step).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        out.append(event)
    return out


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def fake(clock: Clock) -> Iterator[FakeOkta]:
    server = FakeOkta(api_token=TOKEN, clock=clock, rate_limit=1000).start()
    yield server
    server.stop()


@pytest.fixture
def http(fake: FakeOkta) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.base, headers={"Authorization": f"SSWS {TOKEN}"}, timeout=5) as client:
        yield client


def at(clock: Clock, delta: timedelta = timedelta()) -> datetime:
    return datetime.fromtimestamp(clock.now, UTC) + delta


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def uuids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [e["uuid"] for e in response.json()]


def link(response: httpx.Response, rel: str) -> str | None:
    found = response.links.get(rel)
    return None if found is None else found["url"]


# -- polling requests -----------------------------------------------------------------------------------
def test_polling_pages_ascending_and_ends_on_an_empty_page_whose_next_is_self(fake, http, clock):
    events = events_at(at(clock, -timedelta(hours=2)), 5)
    fake.add(list(reversed(events)))
    seen: list[str] = []
    response = http.get("/api/v1/logs", params={"since": iso(at(clock, -timedelta(hours=3))), "limit": "2"})
    sizes = []
    while True:
        sizes.append(len(uuids(response)))
        seen += uuids(response)
        next_url = link(response, "next")
        assert next_url is not None, "a polling request always has a next link"
        if not response.json():
            assert next_url == link(response, "self")
            break
        response = http.get(next_url)
    assert sizes == [2, 2, 1, 0]
    assert seen == [e["uuid"] for e in events]
    # The next link is followed verbatim: the fake saw exactly the URL it handed out.
    assert fake.to("/api/v1/logs")[-1].target == next_url.removeprefix(fake.base)


def test_a_caught_up_next_link_returns_what_is_committed_later_even_late_events(fake, http, clock):
    response = http.get("/api/v1/logs")
    assert uuids(response) == []
    next_url = link(response, "next")
    assert next_url is not None and "after=" in next_url, "an empty first page still carries a cursor"
    again = http.get(next_url)
    assert uuids(again) == [] and link(again, "next") == link(again, "self") == next_url

    on_time = events_at(at(clock, -timedelta(minutes=1)), 2)
    fake.add(on_time)
    # Published before the others but committed after them: a polling request still returns it.
    late = events_at(at(clock, -timedelta(minutes=10)), 1)
    fake.add(late, persisted=at(clock))
    page = http.get(next_url)
    assert uuids(page) == [on_time[0]["uuid"], on_time[1]["uuid"], late[0]["uuid"]]
    assert link(page, "next") != next_url
    assert uuids(http.get(link(page, "next") or "")) == []


def test_polling_since_is_on_persistence_time(fake, http, clock):
    old = events_at(at(clock, -timedelta(hours=30)), 2)
    recent = events_at(at(clock, -timedelta(hours=10)), 2)
    fake.add(old + recent)
    # Published 30 hours ago but committed an hour ago: since (24 hours back) does not exclude it.
    late = events_at(at(clock, -timedelta(hours=30)), 1)
    fake.add(late, persisted=at(clock, -timedelta(hours=1)))
    page = http.get("/api/v1/logs", params={"since": iso(at(clock, -timedelta(hours=24)))})
    assert uuids(page) == [e["uuid"] for e in recent + late]


def test_limit_defaults_to_100_and_accepts_at_most_1000(fake, http, clock):
    fake.add(events_at(at(clock, -timedelta(days=1)), 1001, step=timedelta(milliseconds=10)))
    assert len(uuids(http.get("/api/v1/logs"))) == 100
    assert len(uuids(http.get("/api/v1/logs", params={"limit": "1000"}))) == 1000
    empty = http.get("/api/v1/logs", params={"limit": "0"})
    assert uuids(empty) == [] and link(empty, "next") is not None
    for bad in ("1001", "-1", "ten"):
        response = http.get("/api/v1/logs", params={"limit": bad})
        assert response.status_code == 400 and response.json()["errorCode"] == "E0000001"


# -- bounded requests -----------------------------------------------------------------------------------
def test_bounded_request_is_ordered_by_published_and_ends_without_next(fake, http, clock):
    start = at(clock, -timedelta(hours=5))
    inside = events_at(start, 5)
    before = events_at(start - timedelta(hours=1), 1)
    after = events_at(start + timedelta(hours=1), 1)
    fake.add(list(reversed(inside)) + before + after)
    params = {"since": iso(start), "until": iso(start + timedelta(seconds=5)), "limit": "2"}
    response = http.get("/api/v1/logs", params=params)
    seen, pages = uuids(response), 1
    while (next_url := link(response, "next")) is not None:
        response = http.get(next_url)
        seen += uuids(response)
        pages += 1
    assert seen == [e["uuid"] for e in inside] and pages == 3

    descending = http.get("/api/v1/logs", params={**params, "limit": "10", "sortOrder": "DESCENDING"})
    assert uuids(descending) == [e["uuid"] for e in reversed(inside)]
    assert link(descending, "next") is None


def test_bounded_page_exactly_at_the_end_has_no_next(fake, http, clock):
    start = at(clock, -timedelta(hours=1))
    fake.add(events_at(start, 2))
    response = http.get("/api/v1/logs", params={"since": iso(start), "until": iso(at(clock)), "limit": "2"})
    assert len(uuids(response)) == 2 and link(response, "next") is None


def test_filter_subset_of_event_types(fake, http, clock):
    events = events_at(at(clock, -timedelta(hours=1)), 30)
    fake.add(events)
    wanted = {"user.session.start", "user.account.lock"}
    expected = [e["uuid"] for e in events if e["eventType"] in wanted]
    assert len(expected) >= 2
    query = 'eventType eq "user.session.start" or eventType eq "user.account.lock"'
    assert uuids(http.get("/api/v1/logs", params={"filter": query})) == expected
    # A prefix, as the poller asks for a rule's "user.account.*" (Okta's own example: eventType sw "event_hook").
    prefixed = [e["uuid"] for e in events
                if e["eventType"].startswith("user.account.") or e["eventType"] == "user.session.start"]
    assert set(prefixed) > set(expected)  # the prefix takes in more than user.account.lock
    query = 'eventType sw "user.account." or eventType eq "user.session.start"'
    assert uuids(http.get("/api/v1/logs", params={"filter": query})) == prefixed
    for unsupported in ('eventType co "user."', 'eventType eq "a" and actor.id eq "b"', "eventType eq"):
        response = http.get("/api/v1/logs", params={"filter": unsupported})
        assert response.status_code == 400 and response.json()["errorCode"] == "E0000031"


# -- errors ---------------------------------------------------------------------------------------------
def test_since_over_180_days_and_a_too_old_cursor_are_400(fake, http, clock):
    response = http.get("/api/v1/logs", params={"since": iso(at(clock, -timedelta(days=181)))})
    assert response.status_code == 400 and response.json()["errorCode"] == "E0000053"
    assert http.get("/api/v1/logs", params={"since": iso(at(clock, -timedelta(days=179)))}).status_code == 200

    next_url = link(http.get("/api/v1/logs"), "next") or ""
    fake.expire_cursors()
    stale = http.get(next_url)
    assert stale.status_code == 400 and stale.json()["errorCode"] == "E0000053"
    forged = http.get("/api/v1/logs", params={"after": "eyJwIjo5OTl9"})
    assert forged.status_code == 400 and forged.json()["errorCode"] == "E0000001"


def test_every_nth_request_is_a_500(clock):
    fake = FakeOkta(api_token=TOKEN, clock=clock, fail_every=3).start()
    try:
        with httpx.Client(headers={"Authorization": f"SSWS {TOKEN}"}) as http:
            statuses = [http.get(fake.base + "/api/v1/logs").status_code for _ in range(7)]
            failed = http.get(fake.base + "/api/v1/logs?limit=1")
        assert statuses == [200, 200, 500, 200, 200, 500, 200]
        assert failed.status_code == 200
        assert [r.status for r in fake.to("/api/v1/logs")][:7] == statuses
    finally:
        fake.stop()


def test_rate_limit_headers_date_and_429_until_the_reset(clock):
    fake = FakeOkta(api_token=TOKEN, clock=clock, rate_limit=3, rate_window=60).start()
    try:
        with httpx.Client(base_url=fake.base, headers={"Authorization": f"SSWS {TOKEN}"}) as http:
            answers = [http.get("/api/v1/logs") for _ in range(4)]
            assert [r.status_code for r in answers] == [200, 200, 200, 429]
            assert [r.headers["X-Rate-Limit-Remaining"] for r in answers] == ["2", "1", "0", "0"]
            limited = answers[-1]
            assert limited.headers["X-Rate-Limit-Limit"] == "3"
            assert limited.json()["errorCode"] == "E0000047"
            reset = int(limited.headers["X-Rate-Limit-Reset"])
            date = parsedate_to_datetime(limited.headers["Date"]).timestamp()
            assert date == clock.now and reset - date == 60
            clock.now = reset - 1
            assert http.get("/api/v1/logs").status_code == 429
            clock.now = reset
            fresh = http.get("/api/v1/logs")
            assert fresh.status_code == 200 and fresh.headers["X-Rate-Limit-Remaining"] == "2"
            assert int(fresh.headers["X-Rate-Limit-Reset"]) == reset + 60

            fake.concurrency_429(1)
            busy = http.get("/api/v1/logs")
            assert busy.status_code == 429
            assert (busy.headers["X-Rate-Limit-Limit"], busy.headers["X-Rate-Limit-Remaining"]) == ("0", "0")
            assert http.get("/api/v1/logs").status_code == 200
    finally:
        fake.stop()


# -- authentication -------------------------------------------------------------------------------------
def test_ssws_token_is_checked_and_never_recorded(fake, http):
    assert http.get("/api/v1/logs").status_code == 200
    for header in ({"Authorization": "SSWS wrong"}, {"Authorization": f"Bearer {TOKEN}"}, {}):
        response = httpx.get(fake.base + "/api/v1/logs", headers=header)
        assert response.status_code == 401 and response.json()["errorCode"] == "E0000011"
    fake.forbidden = True
    denied = http.get("/api/v1/logs")
    assert denied.status_code == 403 and denied.json()["errorCode"] == "E0000006"
    recorded = repr(fake.requests)
    assert TOKEN not in recorded and "wrong" not in recorded
    assert fake.requests[0].headers["authorization"] == "SSWS <redacted>"


def oauth_form(assertion: str, scope: str = "okta.logs.read") -> dict[str, str]:
    return {"grant_type": "client_credentials", "scope": scope, "client_assertion": assertion,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}


@pytest.mark.parametrize(("alg", "make_pair"), [("RS256", rsa_key_pair), ("ES256", ec_key_pair)])
def test_private_key_jwt_gets_a_bearer_token_that_reads_logs(fake, clock, alg, make_pair):
    keys = make_pair()
    fake.register_client("0oaSentinel", keys.public_pem, kid="k1")
    fake.add(events_at(at(clock, -timedelta(minutes=5)), 1))
    assertion = client_assertion(keys.private_pem, "0oaSentinel", fake.token_url, alg=alg, kid="k1",
                                 now=clock.now)
    answer = httpx.post(fake.token_url, data=oauth_form(assertion))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600 and body["scope"] == "okta.logs.read"
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    assert len(uuids(httpx.get(fake.base + "/api/v1/logs", headers=bearer))) == 1
    recorded = repr(fake.requests)
    assert assertion not in recorded and body["access_token"] not in recorded
    assert fake.to("/oauth2/v1/token")[0].form["client_assertion"] == "<redacted>"

    clock.now += 3600
    assert httpx.get(fake.base + "/api/v1/logs", headers=bearer).status_code == 401


def test_client_assertion_is_verified(fake, clock):
    keys, other = rsa_key_pair(), rsa_key_pair()
    fake.register_client("0oaSentinel", keys.public_pem)
    url = fake.token_url

    def sign(**kw: Any) -> str:
        return client_assertion(kw.pop("key", keys.private_pem), kw.pop("client_id", "0oaSentinel"),
                                kw.pop("aud", url), now=kw.pop("now", clock.now), **kw)

    rejected = {
        "signed by another key": sign(key=other.private_pem),
        "aud not the token URL": sign(aud=fake.base + "/oauth2/default/v1/token"),
        "sub not the client": sign(sub="0oaSomeoneElse"),
        "unknown client": sign(client_id="0oaUnknown"),
        "expired": sign(now=clock.now - 400),
        "exp over an hour ahead": sign(lifetime=7200),
        "unsigned (alg none)": jwt.encode({"iss": "0oaSentinel", "sub": "0oaSentinel", "aud": url, "jti": "n",
                                            "exp": int(clock.now + 60)}, "", algorithm="none"),
    }
    for reason, assertion in rejected.items():
        response = httpx.post(url, data=oauth_form(assertion))
        assert (response.status_code, response.json()["error"]) == (401, "invalid_client"), reason

    reused = sign(jti="once")
    assert httpx.post(url, data=oauth_form(reused)).status_code == 200
    replay = httpx.post(url, data=oauth_form(reused))
    assert replay.status_code == 401 and "jti" in replay.json()["error_description"]

    scope = httpx.post(url, data=oauth_form(sign(), scope="okta.users.read"))
    assert (scope.status_code, scope.json()["error"]) == (400, "invalid_scope")
    secret = httpx.post(url, data={**oauth_form(sign()), "client_assertion_type": "client_secret_post"})
    assert (secret.status_code, secret.json()["error"]) == (401, "invalid_client")


def test_token_without_the_logs_scope_is_forbidden(fake, clock):
    keys = ec_key_pair()
    fake.register_client("0oaUsers", keys.public_pem, scopes=("okta.users.read",))
    assertion = client_assertion(keys.private_pem, "0oaUsers", fake.token_url, alg="ES256", now=clock.now)
    token = httpx.post(fake.token_url, data=oauth_form(assertion, scope="okta.users.read")).json()
    response = httpx.get(fake.base + "/api/v1/logs", headers={"Authorization": f"Bearer {token['access_token']}"})
    assert response.status_code == 403


def test_requests_are_recorded_with_their_query(fake, http, clock):
    http.get("/api/v1/logs", params={"since": "2026-11-27T00:00:00Z", "limit": "1000"})
    [request] = fake.to("/api/v1/logs")
    assert request.method == "GET" and request.status == 200
    assert request.query == {"since": ["2026-11-27T00:00:00Z"], "limit": ["1000"]}
    assert request.target.startswith("/api/v1/logs?since=2026-11-27T00")


def test_real_clock_by_default():
    fake = FakeOkta(api_token=TOKEN).start()
    try:
        response = httpx.get(fake.base + "/api/v1/logs", headers={"Authorization": f"SSWS {TOKEN}"})
        date = parsedate_to_datetime(response.headers["Date"]).timestamp()
        assert abs(date - time.time()) < 5
        assert int(response.headers["X-Rate-Limit-Reset"]) - time.time() <= 61
    finally:
        fake.stop()
