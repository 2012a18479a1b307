"""The System Log poller in process, against the fake Okta (a real HTTP server) and a real store: where it
starts, what it stores with which cursor, a restart, a refused cursor, a change of rules, failures; and
``sentinel backfill``'s bounded read and refusals."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner
from daemon import write_config
from fake_okta import FakeOkta
from test_fake_okta import events_at

from sentinel.cli import main
from sentinel.clock import FixedClock
from sentinel.config import OktaApiSettings
from sentinel.okta import parse_delivery
from sentinel.okta_api import SystemLogClient, load_api_credentials
from sentinel.service.backfill import BackfillProgress, backfill
from sentinel.service.metrics import Metrics
from sentinel.service.poller import CURSOR_OVERLAP, Poller
from sentinel.store import Store, open_inbox_for_cli
from sentinel.store.inbox import inbox_path

TOKEN = "00pollerTestTokenSSWS"
START = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
TYPES = ("security.threat.detected", "user.session.impersonation.initiate")


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture
def fake(clock: FixedClock) -> Iterator[FakeOkta]:
    server = FakeOkta(api_token=TOKEN, clock=lambda: clock.now().timestamp(), rate_limit=1000).start()
    yield server
    server.stop()


class Rig:
    """A store, metrics and a poller on them; ``restart()`` is a new process on the same files."""

    def __init__(self, tmp_path: Path, fake: FakeOkta, clock: FixedClock, token: str = TOKEN,
                 types: tuple[str, ...] | None = TYPES) -> None:
        self.db = tmp_path / "s.db"
        self.fake, self.clock, self.token, self.types = fake, clock, token, types
        self.wakes = 0
        self.loop = asyncio.new_event_loop()  # one loop for the client's connections and the store's futures
        self.settings = OktaApiSettings(base_url=fake.base, poll_interval_seconds=1, backfill_hours=24)
        self._open()

    def _open(self) -> None:
        self.store = Store(self.db, clock=self.clock)
        self.store.start(self.clock.now())
        self.metrics = Metrics()
        credentials = load_api_credentials(self.settings, {"SENTINEL_OKTA_API_TOKEN": self.token})

        async def no_sleep(seconds: float) -> None:
            return None

        self.client = SystemLogClient(self.settings, credentials, clock=self.clock, sleep=no_sleep,
                                      on_response=lambda s: self.metrics.poll_requests.labels(str(s)).inc())
        self.poller = Poller(self.settings, self.client, self.store, self.metrics, self.clock, self.types,
                             self._wake)

    def _wake(self) -> None:
        self.wakes += 1

    def run(self, awaitable: Any) -> Any:
        return self.loop.run_until_complete(awaitable)

    def step(self) -> bool:
        return bool(self.run(self.poller.step()))

    def until_caught_up(self, most: int = 20) -> int:
        for done in range(1, most + 1):
            if self.step():
                return done
        raise AssertionError("never caught up")

    def restart(self) -> None:
        self.run(self.client.aclose())
        self.store.close()
        self._open()

    def close(self) -> None:
        self.run(self.client.aclose())
        self.store.close()
        self.loop.close()

    def polled_uuids(self) -> list[str]:
        """Every event uuid the poller put in the inbox, in order (repeats kept: they would be a bug)."""
        return [uuid for row in self.inbox_rows() for uuid in row]

    def inbox_rows(self) -> list[list[str]]:
        """Each inbox row's event uuids, in order."""
        conn = sqlite3.connect(inbox_path(self.db))
        try:
            bodies = [bytes(r[0]) for r in conn.execute("SELECT body FROM received ORDER BY id")]
        finally:
            conn.close()
        return [[e.uuid for e in parse_delivery(body).events] for body in bodies]

    def log_requests(self) -> list[dict[str, str]]:
        return [{k: v[-1] for k, v in r.query.items()} for r in self.fake.to("/api/v1/logs")]

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        value = self.metrics.registry.get_sample_value(name, labels or {})
        return 0.0 if value is None else value


@pytest.fixture
def rig(tmp_path: Path, fake: FakeOkta, clock: FixedClock) -> Iterator[Rig]:
    r = Rig(tmp_path, fake, clock)
    yield r
    r.close()


def typed(events: list[dict[str, Any]], event_type: str) -> list[dict[str, Any]]:
    for event in events:
        event["eventType"] = event_type
    return events


def test_first_start_polls_from_backfill_hours_with_the_rules_types_and_stores_pages_with_their_cursor(
        rig: Rig, fake: FakeOkta, clock: FixedClock) -> None:
    old = typed(events_at(START - timedelta(hours=30), 2), TYPES[0])  # before backfill_hours
    wanted = typed(events_at(START - timedelta(hours=2), 3), TYPES[0])
    other = typed(events_at(START - timedelta(hours=1), 2), "user.session.start")  # no rule reads it
    fake.add(old + wanted + other)
    assert rig.until_caught_up() >= 1
    first = rig.log_requests()[0]
    assert "until" not in first and first["sortOrder"] == "ASCENDING" and first["limit"] == "1000"
    assert first["since"].startswith("2026-11-27T12:00:00")
    assert first["filter"] == 'eventType eq "security.threat.detected" or ' \
                              'eventType eq "user.session.impersonation.initiate"'
    assert rig.polled_uuids() == [e["uuid"] for e in wanted]
    assert rig.wakes >= 1
    cursor = rig.run(rig.store.poll_cursor(fake.base))
    assert cursor is not None and cursor.event_types == TYPES
    # The stored cursor is the next link the API handed out, requested verbatim.
    assert "after=" in cursor.next_url
    rig.step()
    assert fake.to("/api/v1/logs")[-1].target == cursor.next_url.removeprefix(fake.base)
    assert rig.metric("sentinel_okta_poll_events_total") == 3
    assert rig.metric("sentinel_okta_poll_requests_total", {"status": "200"}) == len(rig.log_requests())
    assert rig.poller.status.readiness(clock.now())["last_success"] is not None


def test_caught_up_requests_store_nothing_more_and_new_events_come_next(rig: Rig, fake: FakeOkta,
                                                                        clock: FixedClock) -> None:
    rig.until_caught_up()
    assert rig.step() is True  # an empty page: next equals self
    assert rig.polled_uuids() == []
    fresh = typed(events_at(START - timedelta(seconds=30), 2), TYPES[1])
    fake.add(fresh)
    rig.until_caught_up()
    assert rig.polled_uuids() == [e["uuid"] for e in fresh]
    assert rig.poller.status.lag_seconds(clock.now()) == 0


def test_a_restart_resumes_from_the_stored_cursor_and_neither_skips_nor_repeats(rig: Rig, fake: FakeOkta,
                                                                               clock: FixedClock) -> None:
    before = typed(events_at(START - timedelta(hours=3), 1500, timedelta(seconds=2)), TYPES[0])
    fake.add(before)
    assert rig.step() is False  # a full page of 1000: more to come
    stored_next = rig.run(rig.store.poll_cursor(fake.base))
    rig.restart()
    clock.advance(timedelta(hours=1))
    during = typed(events_at(START + timedelta(minutes=10), 3), TYPES[0])
    fake.add(during)
    rig.until_caught_up()
    assert stored_next is not None
    resumed = rig.fake.to("/api/v1/logs")[1]
    assert resumed.target == stored_next.next_url.removeprefix(fake.base)
    assert rig.polled_uuids() == [e["uuid"] for e in before + during]


def test_a_refused_cursor_reads_the_gap_bounded_from_the_newest_polled_event_then_polls_again(
        rig: Rig, fake: FakeOkta, clock: FixedClock, caplog: pytest.LogCaptureFixture) -> None:
    seen = typed(events_at(START - timedelta(minutes=5), 2), TYPES[0])
    fake.add(seen)
    rig.until_caught_up()
    clock.advance(timedelta(days=3))  # an outage; Okta forgets the cursor meanwhile
    gap = typed(events_at(START + timedelta(days=1), 4, timedelta(hours=6)), TYPES[0])
    fake.add(gap)
    fake.expire_cursors()
    with caplog.at_level(logging.WARNING, logger="sentinel.poller"):
        rig.until_caught_up()
    assert any("refused the stored cursor" in r.getMessage() for r in caplog.records)
    bounded = [q for q in rig.log_requests() if "until" in q]
    assert bounded, "the gap is read with a bounded request"
    newest_seen = max(datetime.fromisoformat(e["published"]) for e in seen)
    assert datetime.fromisoformat(bounded[0]["since"]) == newest_seen - CURSOR_OVERLAP
    assert datetime.fromisoformat(bounded[0]["until"]) == clock.now()
    # Every gap event stored; the overlap may bring an already-polled one again (the detector drops it on uuid).
    polled = rig.polled_uuids()
    assert {e["uuid"] for e in gap} <= set(polled)
    assert set(polled) == {e["uuid"] for e in seen + gap}
    # And then polling again, from where the bounded read ended.
    after = typed(events_at(clock.now() + timedelta(seconds=1), 1), TYPES[0])
    clock.advance(timedelta(minutes=1))
    fake.add(after)
    rig.until_caught_up()
    last = rig.log_requests()[-1]
    assert "until" not in last
    assert rig.polled_uuids()[-1] == after[0]["uuid"]
    assert rig.metric("sentinel_okta_poll_errors_total") == 1


def test_new_rules_start_a_new_polling_request_for_their_types(rig: Rig, fake: FakeOkta,
                                                               clock: FixedClock) -> None:
    fake.add(typed(events_at(START - timedelta(minutes=3), 1), TYPES[0]))
    rig.until_caught_up()
    zone = typed(events_at(START - timedelta(minutes=2), 1), "zone.update")
    fake.add(zone)
    rig.poller.use_event_types((*TYPES, "zone.update"))
    rig.until_caught_up()
    query = rig.log_requests()[-1]
    assert 'eventType eq "zone.update"' in query["filter"]
    assert zone[0]["uuid"] in rig.polled_uuids()
    rig.poller.use_event_types(None)  # a rule on a prefix: every type
    rig.until_caught_up()
    assert "filter" not in rig.log_requests()[-1]
    cursor = rig.run(rig.store.poll_cursor(fake.base))
    assert cursor is not None and cursor.event_types is None


@pytest.mark.proof
def test_a_bad_token_is_logged_once_with_what_to_fix_retried_slowly_counted_and_shown_tersely(
        tmp_path: Path, fake: FakeOkta, clock: FixedClock, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from sentinel.service import poller as poller_module

    # Retried every 5 minutes in production; here at the poll interval (1 s), to see several attempts.
    monkeypatch.setattr(poller_module, "AUTH_RETRY_SECONDS", 0.01)
    bad = "00wrongTokenNotTheFakes"
    rig = Rig(tmp_path, fake, clock, token=bad)
    stop = asyncio.Event()

    async def run_briefly() -> None:
        task = asyncio.create_task(rig.poller.run(stop))
        await asyncio.sleep(2.5)
        stop.set()
        await task

    try:
        with caplog.at_level(logging.INFO, logger="sentinel"):
            rig.run(run_briefly())
            status = rig.poller.status
            assert status.failing_since is not None and status.error_kind == "auth_failed"
            readiness = status.readiness(clock.now())
            assert readiness["status"] == "failing" and readiness["last_error"] == "auth_failed"
            attempts = len(fake.to("/api/v1/logs"))
            assert 2 <= attempts <= 3, f"{attempts} attempts in 2.5 s: not retried at the slow pace"
            assert rig.metric("sentinel_okta_poll_errors_total") == attempts
            assert rig.metric("sentinel_okta_poll_requests_total", {"status": "401"}) == attempts
            errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
            assert len(errors) == 1 and "token" in errors[0].lower()
            assert all(bad not in r.getMessage() for r in caplog.records)
            assert bad not in json.dumps(readiness)
    finally:
        rig.close()


def test_query_parameters_are_what_okta_documents(rig: Rig, fake: FakeOkta) -> None:
    rig.step()
    split = urlsplit(fake.base + fake.to("/api/v1/logs")[0].target)
    assert split.path == "/api/v1/logs"
    assert set(parse_qs(split.query)) == {"since", "sortOrder", "limit", "filter"}


def test_composed_daemon_masks_the_api_token_through_reloads_and_reloads_the_polled_types(
        tmp_path: Path, fake: FakeOkta, monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import LOCK_RULE
    from daemon import write_config

    from sentinel import redaction
    from sentinel.cli.compose import compose
    from sentinel.config import load_config
    from sentinel.service.detector_runner import InProcessDetector

    token = "my.api.t0ken"  # nothing token-like for the generic masks: only the registry can hide it
    monkeypatch.setenv("SENTINEL_OKTA_API_TOKEN", token)
    config = write_config(tmp_path, extra=f'[okta.api]\nbase_url = "{fake.base}"\n')
    (tmp_path / "rules" / "lock.toml").write_text(LOCK_RULE)
    env = {"SENTINEL_OKTA_SECRET": "composedOktaSecret0123456789abcdef"}
    daemon = compose(load_config(config, env), lambda: load_config(config, env), detector=InProcessDetector)
    record = logging.LogRecord("sentinel", logging.INFO, __file__, 1, "sent %s", (token,), None)

    async def scenario() -> None:
        await daemon.lifecycle.start()
        try:
            assert daemon.poller is not None and daemon.poller.event_types == ("user.account.lock",)
            (tmp_path / "rules" / "zone.toml").write_text('id = "zone"\ntitle = "t"\nseverity = "low"\n'
                                                          'event_types = ["zone.update"]\n')
            assert await daemon.reloader.reload()
            assert list(daemon.poller.event_types or ()) == ["user.account.lock", "zone.update"]
            assert redaction.FILTER.filter(record) and token not in record.getMessage()
        finally:
            await daemon.lifecycle.stop()

    asyncio.run(scenario())


def test_the_newest_published_ignores_what_does_not_parse_and_never_passes_now() -> None:
    from sentinel.service.poller import newest_published

    # Each element's ``published`` as LogPage gives it: None where missing or not an object.
    hostile: list[Any] = ["2026-11-28T11:00:00.000Z", "not a time", 12, None, [], {"a": 1}, "2099-01-01T00:00:00Z"]
    assert newest_published(hostile, None, START) == START  # a time from the future is clamped to now
    assert newest_published(hostile[:6], None, START) == datetime(2026, 11, 28, 11, 0, tzinfo=UTC)
    assert newest_published(hostile[1:6], None, START) is None
    assert newest_published([], START - timedelta(hours=1), START) == START - timedelta(hours=1)


def test_types_the_client_cannot_filter_on_mean_every_type(rig: Rig) -> None:
    from sentinel.service.poller import requestable_types

    assert requestable_types(("zone.update", "security.threat.detected")) == ("zone.update", "security.threat.detected")
    assert requestable_types(("zone.update", "iam.role.*")) == ("zone.update", "iam.role.*")  # sw for the prefix
    assert requestable_types(()) is None  # no enabled rule: store everything for rules to come
    assert requestable_types(None) is None
    rig.poller.use_event_types(())
    rig.step()
    assert "filter" not in rig.log_requests()[-1]


# -- sentinel backfill: the bounded read into the inbox, and the command's refusals ---------------------------
def test_a_window_is_read_with_bounded_requests_page_by_page_into_the_inbox(rig: Rig, fake: FakeOkta) -> None:
    inside = typed(events_at(START - timedelta(hours=5), 1200, timedelta(seconds=1)), TYPES[0])
    before = typed(events_at(START - timedelta(hours=9), 3), TYPES[0])
    after = typed(events_at(START - timedelta(hours=1), 3), TYPES[0])
    fake.add(before + inside + after)
    inbox = open_inbox_for_cli(rig.db)
    seen: list[tuple[int, int]] = []

    def progress(done: BackfillProgress) -> None:
        seen.append((done.pages, done.events))

    try:
        done = rig.run(backfill(rig.client, START - timedelta(hours=6), START - timedelta(hours=4), TYPES,
                                inbox.append_page, rig.clock, progress))
    finally:
        inbox.close()
    assert (done.pages, done.events) == (2, 1200) and seen == [(1, 1000), (2, 1200)]
    assert rig.polled_uuids() == [e["uuid"] for e in inside]
    first, second = rig.log_requests()
    assert first["until"] and "sortOrder" not in first and first["limit"] == "1000"
    assert "after" in second  # the next link, followed verbatim
    assert rig.run(rig.store.poll_cursor(fake.base)) is None  # the poller's cursor is not touched


def test_the_command_refuses_without_an_api_table_a_reversed_window_or_a_store(tmp_path: Path,
                                                                               fake: FakeOkta) -> None:
    runner = CliRunner()
    plain = write_config(tmp_path)
    result = runner.invoke(main, ["backfill", "--since", "2h", "--config", str(plain)],
                           env={"SENTINEL_OKTA_SECRET": "x" * 32})
    assert result.exit_code == 1 and "no [okta.api] table" in result.output
    polled = write_config(tmp_path, extra=f'[okta.api]\nbase_url = "{fake.base}"\n')
    env = {"SENTINEL_OKTA_SECRET": "x" * 32, "SENTINEL_OKTA_API_TOKEN": "t0ken.for.the.cli"}
    result = runner.invoke(main, ["backfill", "--since", "1h", "--until", "2h", "--config", str(polled)], env=env)
    assert result.exit_code == 1 and "must be before" in result.output
    result = runner.invoke(main, ["backfill", "--since", "2h", "--config", str(polled)], env=env)
    assert result.exit_code == 1 and "has the daemon run" in result.output
    assert fake.to("/api/v1/logs") == []
    assert "t0ken.for.the.cli" not in result.output
