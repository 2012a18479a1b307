"""PagerDuty lifecycle with resolve_after: a trigger with a stable dedup_key per alert group, a resolve with the
same key once the group has been quiet that long (wall-clock time since its last alert or fold), both retried
like any delivery; a group firing again after its resolve triggers again (PagerDuty opens a fresh incident, the
old one being resolved). Alerts the real engine made from a rule file through the real loader; a real store;
Apprise's real PagerDuty plugin posting to a local capture server."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from apprise.plugins import pagerduty
from conftest import make_event
from helpers_capture import CaptureServer

from sentinel.clock import FixedClock
from sentinel.delivery.apprise_channel import AppriseChannel, RetryPolicy
from sentinel.errors import ErrorGroup
from sentinel.model import Alert
from sentinel.okta import parse_event
from sentinel.render.message import dedup_key
from sentinel.rules import load_rules
from sentinel.rules.engine import EngineState, evaluate
from sentinel.service.dispatch import Dispatcher
from sentinel.store import Store

PD_KEY = "0123456789abcdef0123456789abcdef"
T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
RULE = """
id = "lockout"
title = "Locked {actor.alternateId}"
severity = "high"
event_types = ["user.account.lock"]
group_by = ["actor.alternateId"]
resolve_after = "30m"
[throttle]
period = "1h"
"""


@pytest.fixture
def capture(monkeypatch: pytest.MonkeyPatch) -> Iterator[CaptureServer]:
    srv = CaptureServer().start()
    monkeypatch.setitem(pagerduty.PAGERDUTY_API_LOOKUP, "us", f"{srv.base}/v2/enqueue")
    yield srv
    srv.stop()


def rules(tmp_path: Path, text: str = RULE) -> Any:
    (tmp_path / "rules").mkdir(exist_ok=True)
    (tmp_path / "rules" / "r.toml").write_text(textwrap.dedent(text), encoding="utf-8")
    return load_rules([tmp_path / "rules"])


def lockouts(ruleset: Any, *minutes: int, who: str = "jane@example.com") -> list[Alert]:
    state, alerts = EngineState(), []
    for m in minutes:
        event = make_event(f"lock-{who}-{m}", "user.account.lock",
                           (T0 + timedelta(minutes=m)).isoformat().replace("+00:00", "Z"),
                           actor={"id": "00u1", "type": "User", "alternateId": who, "displayName": who})
        raised, state = evaluate(ruleset, parse_event(event), state, T0)
        alerts.extend(raised)
    return alerts


def test_resolve_after_is_a_rule_duration(tmp_path: Path) -> None:
    (rule,) = rules(tmp_path).rules
    assert rule.resolve_after_seconds == 1800
    (alert,) = lockouts(rules(tmp_path), 0)
    assert alert.resolve_after == 1800
    with pytest.raises(ErrorGroup, match="resolve_after"):
        rules(tmp_path, RULE.replace('"30m"', '"soon"'))
    with pytest.raises(ErrorGroup, match="resolve_after"):
        rules(tmp_path, RULE.replace('"30m"', '"30d"'))


def test_trigger_then_resolve_with_the_same_dedup_key_retried_then_a_fresh_trigger(
        tmp_path: Path, capture: CaptureServer) -> None:
    ruleset = rules(tmp_path)
    first, fold = lockouts(ruleset, 0, 10)  # one group, one alert (throttled), emitted twice
    assert first.key == fold.key
    clock = FixedClock(T0)

    async def scenario() -> None:
        store = Store(tmp_path / "s.db")
        store.start(clock.now())
        pager = AppriseChannel("pager", [f"pagerduty://{PD_KEY}@apikey/sentinel"], policy=RetryPolicy(attempts=1))
        notes = AppriseChannel("chat", [f"json://127.0.0.1:{capture.port}/chat"], policy=RetryPolicy(attempts=1))
        quiet = AppriseChannel("quiet", [f"json://127.0.0.1:{capture.port}/quiet"], policy=RetryPolicy(attempts=1))
        dispatchers = [Dispatcher(pager, store, clock, backoff=lambda n: timedelta(minutes=1)),
                       Dispatcher(notes, store, clock, send_resolved=True), Dispatcher(quiet, store, clock)]

        async def dispatch() -> None:
            for d in dispatchers:
                await d.run_once()

        def route(alert: Alert) -> list[str]:
            return ["pager", "chat", "quiet"]

        try:
            await store.record_evaluation([], [first], route, {}, [], clock.now())
            await dispatch()
            clock.advance(timedelta(minutes=20))
            await store.record_evaluation([], [fold], route, {}, [], clock.now())  # activity: quiet starts again
            clock.advance(timedelta(minutes=29))
            assert await store.resolve_quiet(clock.now(), ["pager", "chat"]) == []  # 29 min since the fold
            clock.advance(timedelta(minutes=1))
            capture.fail("/v2/enqueue", 1)  # PagerDuty down for the resolve's first attempt
            assert await store.resolve_quiet(clock.now(), ["pager", "chat"]) == [1]
            assert await store.resolve_quiet(clock.now(), ["pager", "chat"]) == []  # once
            await dispatch()
            clock.advance(timedelta(minutes=1))
            await dispatch()  # the retry
            rows = {(r["channel"], r["kind"]): r["status"] for r in await store.deliveries_for_alert(1)}
            assert rows == {("pager", "alert"): "sent", ("chat", "alert"): "sent", ("quiet", "alert"): "sent",
                            ("pager", "resolve"): "sent", ("chat", "resolve"): "sent"}
            # The group fires again within its throttle hour: the same alert, open again, triggered again.
            (again,) = lockouts(ruleset, 50)
            assert again.key == first.key
            clock.advance(timedelta(minutes=5))
            await store.record_evaluation([], [again], route, {}, [], clock.now())
            await dispatch()
        finally:
            store.close()

    asyncio.run(scenario())
    pd = [r.json() for r in capture.to("/v2/enqueue")]
    key = dedup_key(first)
    assert [(b["event_action"], b["dedup_key"]) for b in pd] == [
        ("trigger", key), ("resolve", key), ("resolve", key), ("trigger", key)]  # the resolve, failed then retried
    assert set(pd[1]) == {"routing_key", "event_action", "dedup_key"} and pd[1]["routing_key"] == PD_KEY
    chat = [r.json() for r in capture.to("/chat")]
    assert len(chat) == 3 and chat[1]["title"] == "[RESOLVED] Locked jane@example.com"
    assert "No new activity for 30 min" in chat[1]["message"]
    assert len(capture.to("/quiet")) == 2  # no send_resolved, no PagerDuty: only the two triggers


def test_a_group_stays_open_while_any_of_its_alerts_is_active(tmp_path: Path) -> None:
    ruleset = rules(tmp_path)
    (jane,) = lockouts(ruleset, 0)
    (jane_next_hour,) = lockouts(ruleset, 70)  # a new throttle period: a second alert of the same group
    (john,) = lockouts(ruleset, 0, who="john@example.com")
    assert jane.key != jane_next_hour.key and dedup_key(jane) == dedup_key(jane_next_hour)
    clock = FixedClock(T0)

    async def scenario() -> list[list[int]]:
        store = Store(tmp_path / "s.db")
        store.start(clock.now())
        try:
            await store.record_evaluation([], [jane, john], lambda a: ["pager"], {}, [], clock.now())
            clock.advance(timedelta(minutes=25))
            await store.record_evaluation([], [jane_next_hour], lambda a: ["pager"], {}, [], clock.now())
            clock.advance(timedelta(minutes=10))
            early = await store.resolve_quiet(clock.now(), ["pager"])  # john quiet 35 min; jane's group 10
            clock.advance(timedelta(minutes=20))
            late = await store.resolve_quiet(clock.now(), ["pager"])
            return [early, late]
        finally:
            store.close()

    early, late = asyncio.run(scenario())
    assert early == [2]  # john's alert alone
    assert late == [3]  # jane's group, carried by its newest alert


def test_a_channel_with_no_destination_for_a_resolve_succeeds_without_sending(tmp_path: Path,
                                                                            capture: CaptureServer) -> None:
    chat = AppriseChannel("chat", [f"json://127.0.0.1:{capture.port}/chat"], policy=RetryPolicy(attempts=1))
    (alert,) = lockouts(rules(tmp_path), 0)
    outcome = asyncio.run(chat.resolve(alert, notes=False))
    assert outcome.ok and "takes a resolve" in outcome.detail
    assert asyncio.run(chat.resolve(alert, notes=True)).ok
    assert [r.json()["title"] for r in capture.requests] == ["[RESOLVED] Locked jane@example.com"]
