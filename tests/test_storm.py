"""Storm control: past a channel's storm_limit within storm_window, the rest of its alerts wait in one digest
sent when the window ends; nothing is dropped from the store (held deliveries are 'digested'), and critical
alerts are never held. Alerts made by the engine over the shipped pack; a real store; Apprise's json:// posting
to a local capture server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import make_event
from helpers_capture import CaptureServer

from sentinel.cli import main
from sentinel.clock import FixedClock
from sentinel.delivery.apprise_channel import AppriseChannel, RetryPolicy
from sentinel.model import Alert, Severity
from sentinel.okta import parse_event
from sentinel.render.digest import HeldAlert, digest_alert
from sentinel.rules import load_rules
from sentinel.rules.engine import EngineState, evaluate
from sentinel.rules.testing import event_from_dict
from sentinel.service.dispatch import Dispatcher, StormPolicy
from sentinel.store import Store

REPO = Path(__file__).resolve().parent.parent
SUPERADMIN = json.loads((REPO / "rules" / "data" / "privilege-grant-superadmin.json").read_text(encoding="utf-8"))
T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
PACK = load_rules([REPO / "rules"])


def engine_alerts(events: list[dict[str, Any]]) -> list[Alert]:
    state, alerts = EngineState(), []
    for event in events:
        raised, state = evaluate(PACK, event_from_dict(event) if "uuid" not in event else parse_event(event),
                                 state, T0)
        alerts.extend(raised)
    return alerts


def lockouts(count: int) -> list[Alert]:
    """One okta-user-account-locked alert (medium) per user."""
    return engine_alerts([make_event(f"lock-{i}", "user.account.lock", "2026-11-26T09:59:00.000Z",
                                     actor={"id": f"00u{i}", "type": "User", "alternateId": f"user{i}@example.com",
                                            "displayName": f"User {i}"}) for i in range(count)])


@pytest.fixture
def server() -> Iterator[CaptureServer]:
    srv = CaptureServer().start()
    yield srv
    srv.stop()


def test_past_the_limit_one_digest_carries_the_rest_and_criticals_go_alone(tmp_path: Path,
                                                                           server: CaptureServer) -> None:
    alerts = lockouts(8)
    (critical,) = engine_alerts([SUPERADMIN])
    assert {a.severity for a in alerts} == {Severity.MEDIUM} and critical.severity == Severity.CRITICAL
    clock = FixedClock(T0)

    async def scenario() -> None:
        store = Store(tmp_path / "state" / "sentinel.db")
        store.start(clock.now())
        hook = AppriseChannel("hook", [f"json://127.0.0.1:{server.port}/hook"], policy=RetryPolicy(attempts=1))
        dispatcher = Dispatcher(hook, store, clock, storm=StormPolicy(3, timedelta(minutes=5)),
                                ui_url="http://127.0.0.1:8081")
        try:
            await store.record_evaluation([], alerts[:6], lambda a: ["hook"], {}, [], clock.now())
            await store.record_evaluation([], [critical, *alerts[6:]], lambda a: ["hook"], {}, [], clock.now())
            assert await dispatcher.run_once() == 9
            assert len(server.to("/hook")) == 4  # 3 within the limit, and the critical one
            assert await dispatcher.run_once() == 0  # the digest waits for the window's end
            clock.advance(timedelta(minutes=5))
            assert await dispatcher.run_once() == 1
            assert await dispatcher.run_once() == 0
        finally:
            store.close()

    asyncio.run(scenario())
    bodies = [r.json() for r in server.to("/hook")]
    assert len(bodies) == 5
    titles = [b["title"] for b in bodies]
    assert sum("locked out" in t for t in titles) == 3 and any("Admin role granted" in t for t in titles)
    digest = bodies[-1]
    assert "Alert storm on hook: 5 alerts in 1 rules" in digest["title"]
    assert "okta-user-account-locked 5" in digest["message"]
    assert "http://127.0.0.1:8081/ui/" in digest["message"]
    assert "user3@example.com" in digest["message"]  # the first held alert is listed

    config = tmp_path / "sentinel.toml"
    config.write_text('[storage]\npath = "state/sentinel.db"\n[channels.log]\nkind = "log"\npath = "a.jsonl"\n')
    run = CliRunner().invoke
    listed = [json.loads(line) for line in run(main, ["alerts", "--json", "--config", str(config)]).output.splitlines()]
    assert len(listed) == 10  # 9 alerts, none dropped, and the digest itself
    digested = run(main, ["deliveries", "--status", "digested", "--config", str(config)]).output
    assert digested.count("held back in the storm digest") == 5


def test_a_channel_without_storm_control_sends_every_alert(tmp_path: Path, server: CaptureServer) -> None:
    clock = FixedClock(T0)

    async def scenario() -> None:
        store = Store(tmp_path / "s.db")
        store.start(clock.now())
        hook = AppriseChannel("hook", [f"json://127.0.0.1:{server.port}/hook"], policy=RetryPolicy(attempts=1))
        try:
            await store.record_evaluation([], lockouts(6), lambda a: ["hook"], {}, [], clock.now())
            assert await Dispatcher(hook, store, clock, storm=StormPolicy(0, timedelta(minutes=5))).run_once() == 6
        finally:
            store.close()

    asyncio.run(scenario())
    assert len(server.to("/hook")) == 6


def test_the_limit_counts_what_the_channel_sent_within_the_window(tmp_path: Path, server: CaptureServer) -> None:
    clock = FixedClock(T0)
    alerts = lockouts(6)

    async def scenario() -> None:
        store = Store(tmp_path / "s.db")
        store.start(clock.now())
        hook = AppriseChannel("hook", [f"json://127.0.0.1:{server.port}/hook"], policy=RetryPolicy(attempts=1))
        dispatcher = Dispatcher(hook, store, clock, storm=StormPolicy(2, timedelta(minutes=5)))
        try:
            for i, alert in enumerate(alerts[:4]):  # one every 3 minutes: never more than 2 in 5 minutes
                await store.record_evaluation([], [alert], lambda a: ["hook"], {}, [], clock.now())
                assert await dispatcher.run_once() == 1
                clock.advance(timedelta(minutes=3))
            assert len(server.to("/hook")) == 4
            await store.record_evaluation([], alerts[4:], lambda a: ["hook"], {}, [], clock.now())
            await dispatcher.run_once()  # one sent 3 min ago: room for one
            assert len(server.to("/hook")) == 5
        finally:
            store.close()

    asyncio.run(scenario())


def held(count: int, title: str = "Okta account x locked out") -> list[HeldAlert]:
    return [HeldAlert(i + 1, "okta-user-account-locked" if i % 3 else "okta-brute-force-user",
                      "medium" if i % 3 else "high", f"{title} {i}", T0 + timedelta(seconds=i)) for i in range(count)]


def test_the_digest_counts_per_rule_lists_the_first_few_and_links_the_page() -> None:
    (base,) = lockouts(1)
    message = digest_alert(base, held(9), "slack", timedelta(minutes=5), "https://sentinel.example.com/")
    assert message.title == "Alert storm on slack: 9 alerts in 2 rules"
    assert message.severity == Severity.HIGH and message.count == 9
    assert "per rule: okta-user-account-locked 6, okta-brute-force-user 3" in message.summary
    assert "triage page: https://sentinel.example.com/ui/" in message.summary
    assert "more than its storm_limit within 5 min" in message.summary
    description = message.context.description
    assert description.count("#") == 5 and "#1 10:00:00 [HIGH] Okta account x locked out 0" in description
    assert description.endswith("; and 4 more")
    assert "triage page" not in digest_alert(base, held(2), "slack", timedelta(seconds=90)).summary


def test_the_digest_makes_hostile_titles_inert() -> None:
    (base,) = lockouts(1)
    message = digest_alert(base, held(1, "evil\n\x1b[31m<@channel>"), "slack", timedelta(minutes=5))
    assert "\n" not in message.context.description and "\x1b" not in message.context.description


def test_storm_settings_reach_each_apprise_channels_dispatcher_and_never_a_log_channel(tmp_path: Path) -> None:
    from sentinel.config import load_config
    from sentinel.delivery.apprise_channel import build_channels
    from sentinel.service.dispatchers import Dispatchers
    from sentinel.service.metrics import Metrics

    config = tmp_path / "sentinel.toml"
    config.write_text("""
[storage]
path = "s.db"
[channels.chat]
urls = ["json://127.0.0.1:9/chat"]
storm_limit = 12
storm_window = "10m"
[channels.pager]
urls = ["json://127.0.0.1:9/pager"]
[channels.log]
kind = "log"
path = "a.jsonl"
storm_limit = 5
""", encoding="utf-8")
    settings = load_config(config)

    async def scenario() -> dict[str, StormPolicy | None]:
        store = Store(settings.storage.path)
        store.start(T0)
        dispatchers = Dispatchers(build_channels(settings), settings.delivery, store, FixedClock(T0), Metrics(),
                                  settings.channels)
        dispatchers.start()
        try:
            return {d.name: d.storm for d in dispatchers.dispatchers}
        finally:
            await dispatchers.stop()
            store.close()

    assert asyncio.run(scenario()) == {"chat": StormPolicy(12, timedelta(minutes=10)), "pager": None, "log": None}
