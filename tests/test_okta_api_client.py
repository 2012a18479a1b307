"""The System Log client against the fake Okta (a real HTTP server): paging as Okta documents it, the
filter and limit, rate limits to the second, retries and what is not retried. Times are simulated: the
fake and the client share one clock and the client's sleeps move it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fake_okta import FakeOkta
from okta_api_helpers import TOKEN, SimClock, ago, make_client, run, ssws
from test_fake_okta import events_at

from sentinel.okta_api import ApiError, AuthFailed, CursorRejected, LogPage, SystemLogClient


@pytest.fixture
def clock() -> SimClock:
    return SimClock()


@pytest.fixture
def fake(clock: SimClock) -> Iterator[FakeOkta]:
    server = FakeOkta(api_token=TOKEN, clock=clock, rate_limit=1000).start()
    yield server
    server.stop()


def logs_requests(fake: FakeOkta) -> list[str]:
    return [r.target for r in fake.to("/api/v1/logs")]


async def read_all(client: SystemLogClient, url: str, max_pages: int = 50) -> list[LogPage]:
    """Follow next links until the polling stream is caught up (next == self) or a bounded one ends."""
    pages: list[LogPage] = []
    while len(pages) < max_pages:
        page = await client.get_page(url)
        pages.append(page)
        if page.next_url is None or page.next_url == page.self_url:
            break
        url = page.next_url
    return pages


# -- paging ---------------------------------------------------------------------------------------------
def test_polling_follows_next_links_verbatim_until_next_equals_self(fake, clock):
    events = events_at(ago(clock, hours=2), 5)
    fake.add(events)
    statuses: list[int] = []
    client = make_client(fake, clock, statuses=statuses)
    first = client.first_url(ago(clock, hours=3), limit=2)
    pages = run(client, lambda c: read_all(c, first))

    assert [len(p.events) for p in pages] == [2, 2, 1, 0]
    assert [e["uuid"] for p in pages for e in p.events] == [e["uuid"] for e in events]
    assert pages[-1].next_url == pages[-1].self_url, "caught up: Okta's next link equals self"
    # Each request after the first is exactly the next link the page before handed out.
    sent = [fake.base + t for t in logs_requests(fake)]
    assert sent == [first] + [p.next_url for p in pages[:-1]]
    assert all(p.self_url == url and p.status == 200 for p, url in zip(pages, sent, strict=True))
    assert statuses == [200] * 4
    query = parse_qs(urlsplit(first).query)
    assert query["sortOrder"] == ["ASCENDING"] and "until" not in query and query["limit"] == ["2"]
    assert query["since"] == [(ago(clock, hours=3)).isoformat(timespec="milliseconds").replace("+00:00", "Z")]


def test_page_body_is_the_raw_response_and_events_its_parsed_array(fake, clock):
    fake.add(events_at(ago(clock, minutes=5), 3))
    client = make_client(fake, clock)
    page = run(client, lambda c: c.get_page(c.first_url(ago(clock, hours=1))))
    assert json.loads(page.body) == page.events and len(page.events) == 3


def test_limit_defaults_to_1000_the_documented_maximum(fake, clock):
    fake.add(events_at(ago(clock, hours=1), 1001, step=timedelta(milliseconds=10)))
    client = make_client(fake, clock)
    url = client.first_url(ago(clock, hours=2))
    assert parse_qs(urlsplit(url).query)["limit"] == ["1000"]
    pages = run(client, lambda c: read_all(c, url))
    assert [len(p.events) for p in pages] == [1000, 1, 0]
    with pytest.raises(ValueError):
        client.first_url(ago(clock, hours=2), limit=1001)


def test_bounded_request_pages_by_published_and_ends_without_next(fake, clock):
    start = ago(clock, hours=5)
    inside = events_at(start, 5)
    fake.add(events_at(start - timedelta(hours=1), 2) + list(reversed(inside)) + events_at(ago(clock, hours=1), 2))
    client = make_client(fake, clock)
    url = client.first_url(start, until=start + timedelta(seconds=5), limit=2)
    assert "sortOrder" not in parse_qs(urlsplit(url).query)
    pages = run(client, lambda c: read_all(c, url))
    assert [e["uuid"] for p in pages for e in p.events] == [e["uuid"] for e in inside]
    assert pages[-1].next_url is None and len(pages) == 3


def test_event_type_filter_polls_only_those_types(fake, clock):
    events = events_at(ago(clock, hours=1), 30)
    fake.add(events)
    wanted = ["user.session.start", "user.account.lock"]
    client = make_client(fake, clock)
    url = client.first_url(ago(clock, hours=2), event_types=wanted)
    pages = run(client, lambda c: read_all(c, url))
    got = [e["uuid"] for p in pages for e in p.events]
    assert got == [e["uuid"] for e in events if e["eventType"] in wanted] and len(got) >= 2
    assert parse_qs(urlsplit(url).query)["filter"] == ['eventType eq "user.session.start" or '
                                                       'eventType eq "user.account.lock"']


def test_a_rule_prefix_is_polled_with_starts_with(fake, clock):
    events = events_at(ago(clock, hours=1), 30)
    fake.add(events)
    client = make_client(fake, clock)
    url = client.first_url(ago(clock, hours=2), event_types=["user.session.*", "user.account.lock"])
    pages = run(client, lambda c: read_all(c, url))
    got = [e["uuid"] for p in pages for e in p.events]
    wanted = [e["uuid"] for e in events
              if e["eventType"].startswith("user.session.") or e["eventType"] == "user.account.lock"]
    assert got == wanted and len(got) >= 2
    assert parse_qs(urlsplit(url).query)["filter"] == ['eventType sw "user.session." or '
                                                       'eventType eq "user.account.lock"']


@pytest.mark.parametrize("bad", [[], ['a" or eventType sw "'], ["user.session start"], ["x\\"], [".*"], ["a.*.*"]])
def test_event_types_that_could_break_the_filter_are_refused(fake, clock, bad):
    client = make_client(fake, clock)
    with pytest.raises(ValueError):
        client.first_url(ago(clock, hours=1), event_types=bad)


# -- what is not retried ----------------------------------------------------------------------------------
def test_an_expired_cursor_is_cursor_rejected_without_a_retry(fake, clock):
    client = make_client(fake, clock)

    async def work(c: SystemLogClient) -> None:
        page = await c.get_page(c.first_url(ago(clock, hours=1)))
        assert page.next_url is not None
        fake.expire_cursors()
        with pytest.raises(CursorRejected) as info:
            await c.get_page(page.next_url)
        assert "E0000053" in str(info.value) and info.value.status == 400

    run(client, work)
    assert len(logs_requests(fake)) == 2 and clock.sleeps == []


def test_a_400_without_a_cursor_is_an_api_error_not_a_cursor_problem(fake, clock):
    client = make_client(fake, clock)
    with pytest.raises(ApiError) as info:
        run(client, lambda c: c.get_page(c.first_url(ago(clock, days=181))))
    assert not isinstance(info.value, CursorRejected) and info.value.status == 400
    assert len(logs_requests(fake)) == 1


def test_a_url_outside_the_org_is_never_requested(fake, clock):
    client = make_client(fake, clock)
    urls = ("http://127.0.0.1:1/api/v1/logs?after=x", fake.base + "/api/v1/users", "https://evil.example/x",
            fake.base.replace("127.0.0.1", "localhost") + "/api/v1/logs")

    async def work(c: SystemLogClient) -> None:
        for url in urls:
            with pytest.raises(CursorRejected):
                await c.get_page(url)

    run(client, work)
    assert fake.requests == []


@pytest.mark.parametrize(("forbidden", "status", "hint"), [
    (False, 401, "Security > API > Tokens"),
    (True, 403, "Read-only Administrator"),
])
def test_401_and_403_are_auth_failed_with_what_to_fix(fake, clock, forbidden, status, hint):
    fake.forbidden = forbidden
    token = "wrong-token-but-long-enough-1" if status == 401 else TOKEN
    with pytest.raises(AuthFailed) as info:
        run(make_client(fake, clock, ssws(token)), lambda c: c.get_page(c.first_url(ago(clock, hours=1))))
    assert info.value.status == status and hint in info.value.hint and hint in str(info.value)
    assert len(logs_requests(fake)) == 1 and clock.sleeps == [], "an auth failure is not retried here"


# -- retries --------------------------------------------------------------------------------------------
def test_a_500_is_retried_after_a_jittered_backoff(clock):
    fake = FakeOkta(api_token=TOKEN, clock=clock, fail_every=2).start()
    try:
        fake.add(events_at(ago(clock, minutes=5), 2))
        statuses: list[int] = []
        client = make_client(fake, clock, statuses=statuses)
        pages = run(client, lambda c: read_all(c, c.first_url(ago(clock, hours=1), limit=1)))
    finally:
        fake.stop()
    assert [len(p.events) for p in pages] == [1, 1, 0]
    assert statuses == [200, 500, 200, 500, 200]
    # Exponential from 1 s, plus up to 1 s of jitter.
    assert len(clock.sleeps) == 2 and all(1 <= s <= 2 for s in clock.sleeps)


def test_persistent_500s_back_off_exponentially_then_give_up(clock):
    fake = FakeOkta(api_token=TOKEN, clock=clock, fail_every=1).start()
    try:
        client = make_client(fake, clock, give_up_after=100)
        with pytest.raises(ApiError) as info:
            run(client, lambda c: c.get_page(c.first_url(ago(clock, hours=1))))
    finally:
        fake.stop()
    assert "gave up" in str(info.value) and info.value.status == 500
    assert clock.monotonic() <= 100
    floors = [min(2 ** i, 60) for i in range(len(clock.sleeps))]
    assert all(f <= s <= f + 1 for f, s in zip(floors, clock.sleeps, strict=True)), clock.sleeps
    assert len(clock.sleeps) >= 5 and len(fake.to("/api/v1/logs")) == len(clock.sleeps) + 1


def test_network_errors_are_retried_then_reported(clock):
    fake = FakeOkta(api_token=TOKEN, clock=clock).start()
    fake.stop()  # nothing listens on its port any more
    with pytest.raises(ApiError) as info:
        run(make_client(fake, clock, give_up_after=10), lambda c: c.get_page(c.first_url(ago(clock, hours=1))))
    assert "ConnectError" in str(info.value) and len(clock.sleeps) >= 2


# -- rate limits ----------------------------------------------------------------------------------------
def test_a_429_waits_until_the_reset_to_the_second(clock):
    fake = FakeOkta(api_token=TOKEN, clock=clock, rate_limit=3, rate_window=60).start()
    try:
        fake.add(events_at(ago(clock, minutes=5), 1))
        clock.advance(0.4)  # the fake's Date header says a whole second; the wait still ends at the reset
        # Another integration of the org uses the whole bucket.
        with httpx.Client(headers={"Authorization": f"SSWS {TOKEN}"}) as other:
            assert [other.get(fake.base + "/api/v1/logs").status_code for _ in range(3)] == [200] * 3
        reset = fake.bucket.reset
        statuses: list[int] = []
        page = run(make_client(fake, clock, statuses=statuses, rate_limit_share=1.0),
                   lambda c: c.get_page(c.first_url(ago(clock, hours=1))))
    finally:
        fake.stop()
    assert statuses == [429, 200] and len(page.events) == 1
    asked_at = clock.epoch - sum(clock.sleeps)
    date = int(asked_at)  # HTTP dates have whole seconds
    assert asked_at != date and clock.sleeps == [reset - date], "Reset − Date of the 429, on Okta's clock"
    assert reset <= clock.epoch < reset + 1


def test_a_concurrency_429_with_limit_0_is_waited_out_without_dividing_by_it(fake, clock):
    fake.add(events_at(ago(clock, minutes=5), 1))
    fake.concurrency_429(2)
    statuses: list[int] = []
    page = run(make_client(fake, clock, statuses=statuses), lambda c: c.get_page(c.first_url(ago(clock, hours=1))))
    assert statuses == [429, 429, 200] and len(page.events) == 1
    assert clock.sleeps == [1.0, 1.0], "Reset is only an estimate (now + 1 s here): wait it, at least 1 s"


def test_sentinel_uses_only_its_share_of_the_bucket_and_never_meets_a_429(clock):
    fake = FakeOkta(api_token=TOKEN, clock=clock, rate_limit=10, rate_window=60).start()
    try:
        fake.add(events_at(ago(clock, minutes=30), 12))
        client = make_client(fake, clock, rate_limit_share=0.5)
        pages = run(client, lambda c: read_all(c, c.first_url(ago(clock, hours=1), limit=1)))
    finally:
        fake.stop()
    statuses = [r.status for r in fake.to("/api/v1/logs")]
    assert 429 not in statuses and len(pages) == 13
    # 5 requests (half of 10) per window, then a wait until the window resets.
    assert len(clock.sleeps) == 2 and all(55 <= s <= 60 for s in clock.sleeps), clock.sleeps


def test_only_one_request_is_ever_in_flight(fake, clock):
    fake.add(events_at(ago(clock, minutes=5), 3))
    client = make_client(fake, clock)
    url = client.first_url(ago(clock, hours=1))
    original = client._http.get
    in_flight: list[int] = [0, 0]

    async def counting_get(*args, **kwargs):
        in_flight[0] += 1
        in_flight[1] = max(in_flight)
        try:
            await asyncio.sleep(0.01)
            return await original(*args, **kwargs)
        finally:
            in_flight[0] -= 1

    client._http.get = counting_get  # type: ignore[method-assign]

    async def work(c: SystemLogClient) -> list[LogPage]:
        return list(await asyncio.gather(*(c.get_page(url) for _ in range(5))))

    pages = run(client, work)
    assert len(pages) == 5 and in_flight[1] == 1


def test_clients_sharing_a_request_lock_never_overlap_requests(fake, clock, tmp_path):
    """The daemon's poller and a `sentinel backfill` beside it are two processes with a client each; the lock
    file makes them take turns. Two clients here, each with its own open of the file, as two processes."""
    fake.add(events_at(ago(clock, minutes=5), 3))
    lock = tmp_path / "sentinel.db.okta-api.lock"
    clients = [make_client(fake, clock, request_lock=lock) for _ in range(2)]
    url = clients[0].first_url(ago(clock, hours=1))
    in_flight: list[int] = [0, 0]

    def counting(original):
        async def get(*args, **kwargs):
            in_flight[0] += 1
            in_flight[1] = max(in_flight)
            try:
                await asyncio.sleep(0.02)
                return await original(*args, **kwargs)
            finally:
                in_flight[0] -= 1
        return get

    for c in clients:
        c._http.get = counting(c._http.get)  # type: ignore[method-assign]

    async def both() -> list[LogPage]:
        try:
            return list(await asyncio.gather(*(c.get_page(url) for c in clients for _ in range(3))))
        finally:
            for c in clients:
                await c.aclose()

    pages = asyncio.run(both())
    assert len(pages) == 6 and in_flight[1] == 1
    assert lock.stat().st_mode & 0o777 == 0o600


class ElsewhereOkta(FakeOkta):
    """Hands out a next link to another host, as a compromised or misconfigured proxy could."""

    def _logs(self, query, auth):
        status, headers, payload = super()._logs(query, auth)
        if status == 200:
            elsewhere = f"http://127.0.0.2:{self.port}/api/v1/logs"
            headers["Link"] = f'<{self.base}/api/v1/logs>; rel="self"\n<{elsewhere}>; rel="next"'
        return status, headers, payload


def test_a_next_link_to_another_host_is_refused_not_followed(clock):
    fake = ElsewhereOkta(api_token=TOKEN, clock=clock).start()
    try:
        client = make_client(fake, clock)
        with pytest.raises(ApiError) as info:
            run(client, lambda c: c.get_page(c.first_url(ago(clock, hours=1))))
    finally:
        fake.stop()
    assert "next link points outside" in str(info.value) and len(fake.requests) == 1


PAGE_BODIES = [
    b"[]",
    b'[{"uuid":"a","published":"2026-11-28T10:00:00.000Z","x":[1,{"y":"z"}]},{"uuid":"b"}]',
    ' [ {"published": "2026-11-28T10:00:00Z", "m": "caf\u00e9 \U0001f600"} ,\n 7, "text", [1, 2], null,'
    ' {"published": 12}, {"published": {"nested": true}} ] '.encode(),
    b'[{"published":"x","s":"\\u00e9\\ud83d\\ude00 \\"quoted\\" ,]"}]',
]


@pytest.mark.parametrize("body", PAGE_BODIES)
def test_a_page_is_split_into_its_elements_texts_and_published_values_as_json_loads_reads_them(body):
    from sentinel.okta_api.client import LogPage, split_page

    parsed = json.loads(body)
    split = split_page(body)
    assert split is not None
    published, elements = split
    assert published == tuple(e.get("published") if isinstance(e, dict) else None for e in parsed)
    assert elements is not None and [json.loads(e) for e in elements] == parsed
    page = LogPage(body, None, "u", 200, published, elements)
    assert page.count == len(parsed) and page.events == parsed
    for size in (1, 2, 1000):
        parts = page.parts(size)
        assert [e for part in parts for e in json.loads(part)] == parsed  # in order, nothing lost or repeated
        assert all(len(json.loads(part)) <= size for part in parts) or parts == [body]


def test_a_page_only_json_loads_reads_is_kept_whole_and_what_is_not_an_array_is_refused():
    from sentinel.okta_api.client import LogPage, split_page

    for body in ('[{"published":"2026-11-28T10:00:00Z"},{"v":1}]'.encode("utf-16"), b'[{"v":NaN},{"v":1}]'):
        split = split_page(body)
        assert split is not None and split[1] is None  # read by json.loads, not split
        page = LogPage(body, None, "u", 200, *split)
        assert page.count == 2 and page.parts(1) == [body]
    utf16 = split_page('[{"published":"2026-11-28T10:00:00Z"}]'.encode("utf-16"))
    assert utf16 is not None and utf16[0] == ("2026-11-28T10:00:00Z",)
    # Bad UTF-8 inside a string: json.loads refuses the body, so does the split (msgspec would skip it).
    for body in (b'[{"s":"\xff"}]', b"not json", b'{"an":"object"}', b"[1,", b""):
        assert split_page(body) is None
