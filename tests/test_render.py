"""The renderer: every message states the facts an on-call engineer needs, safely, within limits."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from zoneinfo import ZoneInfo

from apprise.plugins.slack import NotifySlack
from conftest import rule_by_id
from helpers_capture import sample_alert
from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel.model import Severity
from sentinel.render import facts as render_facts
from sentinel.render import message as render
from sentinel.render.message import RenderOptions
from sentinel.rules import load_rules
from sentinel.rules.engine import EngineState, evaluate
from sentinel.rules.model import RuleSet
from sentinel.rules.testing import event_from_dict, raised_alerts

REPO = Path(__file__).resolve().parent.parent
OPTIONS = RenderOptions(tz=ZoneInfo("Europe/Berlin"), tz_name="Europe/Berlin", org_url="https://acme.okta.com")
UUID = "f1e2d3c4-0000-4000-8000-000000000001"
FACTS = [
    "CRITICAL", "Super administrator granted", "user.account.privilege.grant", "mallory@example.com",
    "bob@example.com", "Super administrator", "203.0.113.9", "Lisbon", "Portugal", "Firefox/133.0",
    "SUCCESS", "2026-11-26 10:15:30 UTC", "2026-11-26 11:15:30 CET", UUID,
    "Confirm the grant with the actor's manager",
    f"https://acme-admin.okta.com/report/system_log_2?search={UUID}",
]


def test_render_is_pure_no_io_library_imports() -> None:
    imported: set[str] = set()
    for module in (render, render_facts):
        tree = ast.parse(Path(module.__file__ or "").read_text())
        imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    forbidden = {"apprise", "tenacity", "starlette", "uvicorn", "sqlite3", "sqlite_utils", "click", "os",
                 "socket", "zoneinfo", "time", "logging", "sentinel.clock"}
    assert not {m for m in imported if m.split(".")[0] in forbidden or m in forbidden}
    code = ("import sys, sentinel.render; bad = [m for m in ('apprise','tenacity','starlette','sqlite3') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_every_format_states_every_fact() -> None:
    alert = sample_alert()
    slack = render.slack_message(alert, OPTIONS)
    mail = render.email_message(alert, OPTIONS)
    pd = render.pagerduty_message(alert, OPTIONS)
    record = json.dumps(render.log_record(alert, OPTIONS))
    slack_text = slack.header + slack.text
    for fact in FACTS:
        assert fact in slack_text.replace("\\", ""), fact
        assert fact in mail.text, fact
        assert fact.replace("'", "&#x27;") in mail.html, fact
        assert fact in pd.title + json.dumps(dict(pd.details)), fact
        assert fact in record or fact.lower() in record, fact
    sentence = ("Mallory Admin (mallory@example.com) granted admin privileges (Super administrator) to "
                "Bob Builder (bob@example.com).")
    assert sentence in mail.text
    assert mail.subject == "[CRITICAL] Super administrator granted"


def test_without_org_url_or_timezone_there_is_no_link_and_no_local_time() -> None:
    text = render.email_message(sample_alert()).text
    assert "system_log_2" not in text and "Local time" not in text
    assert "2026-11-26 10:15:30 UTC" in text


def test_okta_admin_link_forms() -> None:
    assert render.okta_event_link("https://acme.okta.com", "a b") == \
        "https://acme-admin.okta.com/report/system_log_2?search=a%20b"
    assert (render.okta_event_link("https://acme.oktapreview.com/", "u") or "").startswith(
        "https://acme-admin.oktapreview")
    assert (render.okta_event_link("https://acme-admin.okta.com", "u") or "").startswith("https://acme-admin.okta.com/")
    assert render.okta_event_link("https://login.acme.example", "u") == \
        "https://login.acme.example/report/system_log_2?search=u"
    assert render.okta_event_link("javascript:alert(1)", "u") is None
    assert render.okta_event_link(None, "u") is None


def test_slack_text_cannot_ping_channel_or_inject_links() -> None:
    hostile = {"actor": {"alternateId": "<!channel> [click](https://evil.example) \\<!here>",
                         "displayName": "x\n*Severity:* INFO"}}
    slack = render.slack_message(sample_alert(context=hostile), OPTIONS)
    converted = NotifySlack._commonmark_to_slack(slack.text)  # what Apprise sends to Slack
    assert "<!channel>" not in converted and "<!here>" not in converted
    assert "<https://evil.example" not in converted
    assert "&lt;!channel&gt;" in converted
    # A newline in event text cannot forge a line of its own.
    assert "\n*Severity:* INFO" not in converted
    assert "<https://acme-admin.okta.com/report/system_log_2?search=" in converted  # our own link works


def test_slack_limits_hold_for_huge_values_and_link_survives() -> None:
    huge = {"runbook": "&<>" * 3000, "user_agent": "A" * 5000,
            "targets": [{"type": "User", "alternateId": f"u{i}@x" + "&" * 200} for i in range(200)]}
    slack = render.slack_message(sample_alert(title="T" * 400, context=huge), OPTIONS)
    converted = NotifySlack._commonmark_to_slack(slack.text)
    assert len(converted) <= render.SLACK_TEXT_LIMIT
    assert len(slack.header) <= render.SLACK_HEADER_LIMIT
    assert "(truncated)" in slack.text
    assert converted.endswith(f"search={UUID}|View in Okta System Log>")


def test_threshold_alert_says_how_many_over_what_window_for_which_group() -> None:
    rule = rule_by_id(load_rules([REPO / "rules"]), "okta-password-spraying")
    assert rule is not None
    spray = next(t for t in rule.tests if t.expect == 1)
    # Six more users fail from the same IP within the hour: they fold into the alert (count, samples grow).
    later = [{**spray.events[-1], "uuid": f"later-{i}", "published": f"2026-01-01T10:1{i}:00Z",
              "actor": {"alternateId": f"late{i}@example.com"}} for i in range(6)]
    (alert,) = raised_alerts(rule, replace(spray, events=spray.events + tuple(later)))
    text = render.email_message(alert, OPTIONS).text
    assert "16 events within 15 min for client.ipAddress=203.0.113.7 (first 2026-01-01 10:00:00 UTC" in text
    assert "the rule fires at 10 distinct actor.alternateId within 15 min" in text
    assert "16 distinct actor.alternateId (first 10 shown): user0@example.com, user1@example.com" in text
    # The samples: the event that raised the alert, then the first folded ones, five at most.
    assert "· late3@example.com ·" in text and "late4@example.com" not in text
    # Actor, time and uuid of one event, the latest.
    assert "late5@example.com failed to sign in (INVALID_CREDENTIALS)." in text
    assert "2026-01-01 10:15:00 UTC" in text and "later-5" in text
    assert "16 events" in render.slack_message(alert, OPTIONS).text


def test_actor_time_and_uuid_come_from_one_event_even_out_of_order() -> None:
    """The event that completes a spray arrives last but is the oldest: the message names that one event."""
    rule = rule_by_id(load_rules([REPO / "rules"]), "okta-password-spraying")
    assert rule is not None
    spray = next(t for t in rule.tests if t.expect == 1)
    events = sorted((event_from_dict(e) for e in spray.events), key=lambda e: e.published)
    ruleset, state = RuleSet([rule]), EngineState()
    alerts = []
    for event in events[1:] + events[:1]:
        raised, state = evaluate(ruleset, event, state, event.published)
        alerts += raised
    (alert,) = alerts
    oldest = events[0]
    assert alert.event_uuids[-1] != oldest.uuid  # the alert's uuid list is in event-time order
    f = render.facts(alert)
    assert (f.actor, f.uuid, f.time_utc) == ("user0@example.com", oldest.uuid, "2026-01-01 10:00:00 UTC")
    assert f.sentence.startswith("user0 (user0@example.com) failed to sign in")


def test_pagerduty_severity_dedup_and_summary_limit() -> None:
    mapping = {Severity.CRITICAL: "critical", Severity.HIGH: "error", Severity.MEDIUM: "warning",
               Severity.LOW: "warning", Severity.INFO: "info"}
    for severity, expected in mapping.items():
        assert render.pagerduty_message(sample_alert(severity=severity)).severity == expected
    pd = render.pagerduty_message(sample_alert(context={"actor": {"alternateId": "a" * 5000}}))
    assert len(pd.title) + 2 + len(pd.body) <= render.PAGERDUTY_SUMMARY_LIMIT
    assert pd.dedup_key == "okta-admin-grant:bob@example.com"
    assert len(render.dedup_key(sample_alert(group_key="g" * 1000))) <= render.PAGERDUTY_DEDUP_LIMIT
    assert len(render.dedup_key(sample_alert(group_key="", key="k" * 1000))) <= render.PAGERDUTY_DEDUP_LIMIT


def test_email_html_escapes_event_text() -> None:
    mail = render.email_message(sample_alert(context={"user_agent": "<script>alert(1)</script>"}))
    assert "<script>" not in mail.html and "&lt;script&gt;" in mail.html


context_values = st.one_of(st.none(), st.text(max_size=400), st.integers(), st.lists(st.text(max_size=20)),
                           st.dictionaries(st.text(max_size=10), st.text(max_size=50), max_size=3))


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(["event_type", "actor", "targets", "client_ip", "city", "country",
                                        "user_agent", "outcome_result", "outcome_reason", "published", "event_uuid",
                                        "runbook", "window_seconds", "group_by", "samples", "references",
                                        "threshold", "distinct_field", "distinct_count", "distinct_values",
                                        "throttle_seconds"]),
                       context_values), st.text(max_size=300))
def test_any_context_renders_within_limits(context: dict[str, object], title: str) -> None:
    alert = sample_alert(context=context, title=title)
    slack = render.slack_message(alert, OPTIONS)
    assert len(NotifySlack._commonmark_to_slack(slack.text)) <= render.SLACK_TEXT_LIMIT
    assert len(slack.header) <= render.SLACK_HEADER_LIMIT
    assert "\n" not in render.email_message(alert, OPTIONS).subject
    pd = render.pagerduty_message(alert, OPTIONS)
    assert len(pd.title) + 2 + len(pd.body) <= render.PAGERDUTY_SUMMARY_LIMIT
    json.dumps(render.log_record(alert, OPTIONS))
