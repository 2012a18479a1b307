"""Channels against real servers: a recording HTTP server (Slack, PagerDuty, json://) and aiosmtpd."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from apprise.plugins import pagerduty
from apprise.plugins.slack import NotifySlack
from helpers_capture import CaptureServer, SmtpCapture, body_text, sample_alert
from tenacity import wait_exponential_jitter

from sentinel.config import ChannelSettings, DeliverySettings, OktaSettings
from sentinel.delivery.apprise_channel import AppriseChannel, RetryPolicy, build_channels, render_options
from sentinel.delivery.log_channel import LogChannel
from sentinel.errors import ErrorGroup
from sentinel.model import Severity
from sentinel.redaction import RedactingFilter, SecretRegistry, secret_parts
from sentinel.secret import Secret

SLACK_TOKEN = "TIiajkdnlazkcOXrIdevi7"
SLACK = f"slack://T1JJ3T3L2/A1BRTD4JD/{SLACK_TOKEN}"
PD_KEY = "ROUTINGKEYabc123"
OPTIONS = render_options("Europe/Berlin", "https://acme.okta.com")


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[CaptureServer]:
    srv = CaptureServer().start()
    monkeypatch.setattr(NotifySlack, "webhook_url", f"{srv.base}/services")
    monkeypatch.setitem(pagerduty.PAGERDUTY_API_LOOKUP, "us", f"{srv.base}/v2/enqueue")
    yield srv
    srv.stop()


class Sleeps:
    def __init__(self) -> None:
        self.slept: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)


def policy(attempts: int = 3) -> tuple[RetryPolicy, Sleeps]:
    sleeps = Sleeps()
    return RetryPolicy(attempts=attempts, wait=wait_exponential_jitter(multiplier=1, max=30, jitter=1),
                       sleep=sleeps, timeout=10), sleeps


def test_slack_gets_block_kit_with_colour_and_escaped_event_text(server: CaptureServer) -> None:
    channel = AppriseChannel("slack", [SLACK], options=OPTIONS)
    hostile = {"actor": {"alternateId": "<!channel> & [x](https://evil.example)", "displayName": "M"}}
    outcome = asyncio.run(channel.send(sample_alert(context=hostile)))
    assert outcome.ok, outcome.detail
    (req,) = server.to("/services/")
    assert req.path == f"/services/T1JJ3T3L2/A1BRTD4JD/{SLACK_TOKEN}"
    attachment = req.json()["attachments"][0]
    assert attachment["color"] == "#A32037"  # critical → Apprise's failure colour
    header, section = attachment["blocks"]
    assert header["type"] == "header" and "CRITICAL: Super administrator granted" in header["text"]["text"]
    text = section["text"]["text"]
    assert section["text"]["type"] == "mrkdwn"
    assert "*Actor:* &lt;!channel&gt; &amp; [x](https://evil.example)" in text
    assert "<!channel>" not in text and "<https://evil" not in text
    assert "*Client:* 203.0.113.9 (Lisbon, Portugal)" in text
    assert text.endswith("search=f1e2d3c4-0000-4000-8000-000000000001|View in Okta System Log>")
    assert SLACK_TOKEN not in outcome.detail


def test_pagerduty_gets_severity_dedup_key_and_custom_details(server: CaptureServer) -> None:
    channel = AppriseChannel("pager", [f"pagerduty://{PD_KEY}@apikey/sentinel?+team=secops"], options=OPTIONS)
    outcome = asyncio.run(channel.send(sample_alert(severity=Severity.HIGH)))
    assert outcome.ok, outcome.detail
    (req,) = server.to("/v2/enqueue")
    body = req.json()
    assert body["routing_key"] == PD_KEY and body["event_action"] == "trigger"
    assert body["dedup_key"] == "okta-admin-grant:bob@example.com"
    payload = body["payload"]
    assert payload["severity"] == "error"
    assert payload["summary"].startswith("[HIGH] Super administrator granted\r\nMallory Admin")
    assert len(payload["summary"]) <= 1024
    details = payload["custom_details"]
    assert details["team"] == "secops"  # the URL's own +key=value survives
    assert details["actor"] == "mallory@example.com" and details["event_type"] == "user.account.privilege.grant"
    assert details["client"] == "203.0.113.9 (Lisbon, Portugal)"
    assert PD_KEY not in outcome.detail


def test_json_webhook_gets_title_and_plain_body(server: CaptureServer) -> None:
    channel = AppriseChannel("hook", [f"json://127.0.0.1:{server.port}/alerts"], options=OPTIONS)
    assert asyncio.run(channel.send(sample_alert())).ok
    (req,) = server.to("/alerts")
    body = req.json()
    assert req.headers["content-type"].startswith("application/json")
    assert body["title"] == "[CRITICAL] Super administrator granted"
    assert body["type"] == "info"
    assert "Actor:      mallory@example.com" in body["message"]
    assert "Local time: 2026-11-26 11:15:30 CET (Europe/Berlin)" in body["message"]


def test_email_arrives_with_subject_text_and_html_bodies() -> None:
    smtp = SmtpCapture().start()
    try:
        channel = AppriseChannel("mail", [smtp.url()], options=OPTIONS)
        outcome = asyncio.run(channel.send(sample_alert(context={"user_agent": "<b>ua</b>"})))
    finally:
        smtp.stop()
    assert outcome.ok, outcome.detail
    (msg,) = smtp.messages
    assert msg["Subject"] == "[CRITICAL] Super administrator granted"
    assert msg["To"] == "oncall@example.org"
    plain = body_text(msg, "plain")
    html = body_text(msg, "html")
    for fact in ("mallory@example.com", "bob@example.com", "203.0.113.9 (Lisbon, Portugal)", "SUCCESS",
                 "2026-11-26 10:15:30 UTC", "f1e2d3c4-0000-4000-8000-000000000001", "Confirm the grant"):
        assert fact in plain and fact in html, fact
    assert "&lt;b&gt;ua&lt;/b&gt;" in html and "<b>ua</b>" not in html
    assert 'href="https://acme-admin.okta.com/report/system_log_2?search=f1e2d3c4' in html


@pytest.mark.proof
def test_500_is_retried_with_backoff_then_delivered(server: CaptureServer) -> None:
    retry, sleeps = policy(attempts=3)
    channel = AppriseChannel("slack", [SLACK], policy=retry)
    server.fail("/services/", 2)
    outcome = asyncio.run(channel.send(sample_alert()))
    assert outcome.ok, outcome.detail
    assert len(server.to("/services/")) == 3
    assert len(sleeps.slept) == 2 and 1 <= sleeps.slept[0] <= 2 and 2 <= sleeps.slept[1] <= 3


@pytest.mark.proof
def test_500_forever_is_a_retryable_failure_value_and_only_failed_urls_are_retried(
        server: CaptureServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    retry, _ = policy(attempts=3)
    channel = AppriseChannel("mixed", [SLACK, f"json://127.0.0.1:{server.port}/ok"], policy=retry)
    server.fail("/services/", 99)
    outcome = asyncio.run(channel.send(sample_alert()))
    assert not outcome.ok and outcome.retryable
    assert len(server.to("/services/")) == 3 and len(server.to("/ok")) == 1
    assert "failure" in outcome.detail and "500" in outcome.detail
    assert "json://127.0.0.1" in outcome.detail and ": success" in outcome.detail
    assert SLACK_TOKEN not in outcome.detail
    assert SLACK_TOKEN not in caplog.text
    assert "A1BRTD4JD" not in caplog.text  # the middle token part too
    assert "POST /services/" in caplog.text  # urllib3 did log the request, masked


def test_unloadable_url_is_a_config_error_naming_the_channel_masked() -> None:
    with pytest.raises(ErrorGroup) as err:
        AppriseChannel("pager", ["pagerduty://", "nosuchscheme://user:hunter2secret@host/path"],
                       location="sentinel.toml")
    text = str(err.value)
    assert "sentinel.toml: channels.pager.urls[0]: Apprise cannot load pagerduty://****" in text
    assert "sentinel.toml: channels.pager.urls[1]: Apprise cannot load nosuchscheme://****" in text
    assert "hunter2secret" not in text


def test_build_channels_from_settings_builds_each_kind(tmp_path: Path) -> None:
    settings = SimpleNamespace(
        source=tmp_path / "sentinel.toml", delivery=DeliverySettings(timezone="UTC"), okta=OktaSettings(),
        channels={"log": ChannelSettings("log", kind="log", path=tmp_path / "alerts.jsonl"),
                  "chat": ChannelSettings("chat", urls=(Secret(SLACK),), min_severity=Severity.HIGH)},
    )
    channels = build_channels(settings)
    assert isinstance(channels["log"], LogChannel)
    assert channels["chat"].min_severity is Severity.HIGH
    assert channels["chat"].describe()[0].startswith("slack://T...2/A...D/T...7")
    bad = SimpleNamespace(**{**vars(settings), "channels": {"x": ChannelSettings("x", urls=(Secret("zz://"),))}})
    with pytest.raises(ErrorGroup, match=r"sentinel\.toml: channels\.x\.urls"):
        build_channels(bad)


def test_log_channel_appends_one_json_line_and_logs_one_line(tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sentinel.alerts")
    channel = LogChannel("log", tmp_path / "state" / "alerts.jsonl", options=OPTIONS)
    assert asyncio.run(channel.send(sample_alert())).ok
    assert asyncio.run(channel.send(sample_alert(title="second"))).ok
    lines = (tmp_path / "state" / "alerts.jsonl").read_text().splitlines()
    assert [json.loads(line)["title"] for line in lines] == ["Super administrator granted", "second"]
    assert json.loads(lines[0])["okta_link"].startswith("https://acme-admin.okta.com/")
    assert "alert okta-admin-grant [critical] Super administrator granted" in caplog.text


def test_redacting_filter_masks_learnt_secrets_and_token_like_strings() -> None:
    redactor = SecretRegistry()
    redactor.stage(secret_parts("pagerduty://routing0key@apikey0value/src", "pagerduty://****@****/s...c"))
    record = logging.LogRecord("apprise", logging.WARNING, __file__, 1, "posting to %s with %s", (
        "https://x/routing0key", "Token token=apikey0value"), None)
    assert RedactingFilter(redactor).filter(record)
    assert record.getMessage() == "posting to https://x/**** with Token token=****"
    # A token never configured here is still masked because it looks like one.
    assert redactor("hook /services/T0/B0/XXXXXXXXXXXXXXXX1234 ok") == "hook /services/T0/B0/**** ok"
    assert redactor("uuid-free text stays") == "uuid-free text stays"


def test_timeout_is_a_failure_value(server: CaptureServer) -> None:
    import time

    server.on_request = lambda req: time.sleep(1.0)
    channel = AppriseChannel("slow", [f"json://127.0.0.1:{server.port}/slow"],
                             policy=RetryPolicy(attempts=1, timeout=0.2))
    outcome = asyncio.run(channel.send(sample_alert()))
    assert not outcome.ok and "timeout" in outcome.detail
