"""The triage page's pure parts: the chart's layout, an event's fields by rule path, what "silence alerts like
this" proposes, the login limiter and the credential parsing. No server, no store."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request

from sentinel.rules import load_rules
from sentinel.silences import Silence, matches
from sentinel.web.ui.app import _next
from sentinel.web.ui.auth import LimitPolicy, LoginLimiter, basic_credentials, display_user
from sentinel.web.ui.chart import BAR_WIDTH, MAX_BARS, rule_chart
from sentinel.web.ui.views import event_fields, silence_matchers

ROOT = Path(__file__).parent.parent
RULES = {rule.id: rule for rule in load_rules([ROOT / "rules"]).rules}


def sample(name: str) -> Any:
    return json.loads((ROOT / "rules" / "data" / name).read_text(encoding="utf-8"))


def test_the_chart_ranks_rules_and_scales_bars_to_the_largest() -> None:
    chart = rule_chart({"b-rule": 2, "a-rule": 8, "c-rule": 2})
    assert [(b.rule, b.count) for b in chart.bars] == [("a-rule", 8), ("b-rule", 2), ("c-rule", 2)]
    assert chart.bars[0].width == BAR_WIDTH and chart.bars[1].width == BAR_WIDTH // 4
    assert [b.y for b in chart.bars] == sorted({b.y for b in chart.bars})  # one row each, top down
    assert chart.others == 0


def test_the_chart_keeps_the_busiest_rules_and_counts_the_rest() -> None:
    counts = {f"rule-{i:02}": i + 1 for i in range(MAX_BARS + 3)}
    chart = rule_chart(counts)
    assert len(chart.bars) == MAX_BARS
    assert chart.others == 1 + 2 + 3  # rule-00, rule-01, rule-02
    assert min(b.width for b in chart.bars) >= 1


def test_an_empty_chart_has_no_bars() -> None:
    chart = rule_chart({})
    assert chart.bars == () and chart.height > 0


def test_event_fields_are_the_paths_rules_use() -> None:
    fields = dict(event_fields(sample("suspicious-activity-report.json")))
    assert fields["actor.alternateId"] == "user@login.com"
    assert fields["target[0].alternateId"] == "user@login.com"
    assert fields["client.geographicalContext.geolocation.lat"] == "12.8996"
    assert fields["securityContext.isProxy"] == "false"
    assert fields["actor.detailEntry"] == ""


def test_event_fields_are_bounded() -> None:
    hostile = {"a": "x" * 50_000, "many": list(range(10_000))}
    fields = event_fields(hostile)
    assert len(fields) <= 500
    assert len(dict(fields)["a"]) <= 2001


def test_silence_like_this_proposes_the_alert_group() -> None:
    events = sample("password-spray-10-users.json")
    proposed = silence_matchers(RULES["okta-password-spraying"], events)
    assert proposed == [("client.ipAddress", events[0]["client"]["ipAddress"])]
    # What is proposed silences that group (the alert the engine makes of it), and not another one.
    start, end = _times()
    silence = Silence(1, "okta-password-spraying", tuple(proposed), start, end, "dana", "known scanner", start)
    alert = _engine_alert("okta-password-spraying", events)
    assert matches(silence, alert, events)
    other = [{**e, "client": {**e["client"], "ipAddress": "198.51.100.99"}} for e in events]
    assert not matches(silence, alert, other)


def test_without_group_by_the_actor_is_proposed() -> None:
    event = sample("suspicious-activity-report.json")
    assert silence_matchers(RULES["okta-user-reported-suspicious-activity"], [event]) == [
        ("actor.alternateId", "user@login.com")]
    assert silence_matchers(None, [{"actor": {}}]) == []
    assert silence_matchers(None, []) == []


def test_the_limiter_holds_off_an_address_after_its_failures_and_forgets_them() -> None:
    now = [0.0]
    limiter = LoginLimiter(LimitPolicy(failures=3, window_seconds=60, addresses=2), clock=lambda: now[0])
    for _ in range(3):
        assert limiter.retry_after("10.0.0.1") == 0
        limiter.failed("10.0.0.1")
    assert 0 < limiter.retry_after("10.0.0.1") <= 61
    assert limiter.retry_after("10.0.0.2") == 0  # per address
    now[0] = 60.0
    assert limiter.retry_after("10.0.0.1") == 0


def test_the_limiter_tracks_a_bounded_number_of_addresses() -> None:
    limiter = LoginLimiter(LimitPolicy(failures=1, window_seconds=60, addresses=2), clock=lambda: 0.0)
    for address in ("a", "b", "c"):
        limiter.failed(address)
    assert limiter.retry_after("a") == 0  # the oldest was forgotten
    assert limiter.retry_after("b") > 0 and limiter.retry_after("c") > 0


def _request(authorization: str) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/ui/", "headers": [(b"authorization",
                                                                                 authorization.encode("latin-1"))]})


@pytest.mark.parametrize(("header", "expected"), [
    ("Basic " + base64.b64encode(b"dana:pass:word").decode(), ("dana", "pass:word")),
    ("basic " + base64.b64encode(b":secret").decode(), ("", "secret")),
    ("Basic " + base64.b64encode("zoë:é".encode()).decode(), ("zoë", "é")),
    ("Basic " + base64.b64encode(b"no-colon").decode(), None),
    ("Basic !!!not-base64", None),
    ("Bearer abc", None),
    ("Basic", None),
    ("Basic " + base64.b64encode(b"\xff:\xfe").decode(), None),
])
def test_basic_credentials(header: str, expected: tuple[str, str] | None) -> None:
    assert basic_credentials(_request(header)) == expected


def test_user_names_are_one_bounded_line() -> None:
    assert display_user("  Dana\n\tScully  ") == "Dana Scully"
    assert display_user("") == "on-call"
    assert len(display_user("x" * 500)) == 64


@pytest.mark.parametrize(("target", "expected"), [
    ("/ui/rules", "/ui/rules"), ("/ui/alerts/3", "/ui/alerts/3"), ("https://evil.example/", "/ui/"),
    ("//evil.example/ui/", "/ui/"), ("/ui//evil.example", "/ui/"), ("/ui/\\evil", "/ui/"), (None, "/ui/"),
    ("/metrics", "/ui/"),
])
def test_after_login_only_our_pages(target: object, expected: str) -> None:
    assert _next(target) == expected


def _times() -> tuple[Any, Any]:
    from datetime import UTC, datetime, timedelta
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return start, start + timedelta(hours=2)


def _engine_alert(rule_id: str, events: list[dict[str, Any]]) -> Any:
    """The alert the shipped rules make of these events (as the detector would)."""
    from sentinel.okta import parse_delivery
    from sentinel.rules.evaluator import RuleEvaluator
    from sentinel.rules.model import RuleSet

    for i, event in enumerate(events):
        event.setdefault("uuid", f"spray-{i}")
    delivery = parse_delivery(json.dumps({"data": {"events": events}}).encode())
    evaluator = RuleEvaluator(RuleSet([RULES[rule_id]]), 1000)
    made = [a for e in delivery.events for a in evaluator.evaluate(e, e.published)]
    assert made, "the rule's own sample must make an alert"
    return made[-1]
