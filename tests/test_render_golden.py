"""Every rule of the default pack, rendered for every channel kind from the alerts the engine really makes
out of the rule's own inline test events, compared with golden files under tests/golden/render/.

``SENTINEL_UPDATE_GOLDEN=1 pytest tests/test_render_golden.py`` rewrites the golden files; read the diff.
Independently of the golden text, every message must state the facts listed in ``facts_of``, so a
regenerated golden file cannot quietly drop one.
"""

from __future__ import annotations

import html
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from sentinel.model import Alert
from sentinel.render import message as render
from sentinel.render.facts import clean
from sentinel.rules import load_rules
from sentinel.rules.model import Rule, RuleTest
from sentinel.rules.testing import raised_alerts

REPO = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).parent / "golden" / "render"
UPDATE = os.environ.get("SENTINEL_UPDATE_GOLDEN") == "1"
OPTIONS = render.RenderOptions(tz=ZoneInfo("Europe/Berlin"), tz_name="Europe/Berlin", org_url="https://acme.okta.com")
PACK = load_rules([REPO / "rules"])


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def golden_path(rule: Rule, test: RuleTest) -> Path:
    return GOLDEN / rule.id / f"{slug(test.name)}.txt"


def alerting_tests() -> Iterator[Any]:
    for rule in PACK.rules:
        for test in rule.tests:
            if test.expect is not False and test.expect != 0:
                yield pytest.param(rule, test, id=f"{rule.id}/{slug(test.name)}")


def rendered(alert: Alert) -> dict[str, str]:
    """Each channel kind's message for one alert, as text (PagerDuty's dedup key is routing's, not text)."""
    slack = render.slack_message(alert, OPTIONS)
    mail = render.email_message(alert, OPTIONS)
    pd = render.pagerduty_message(alert, OPTIONS)
    other = render.text_message(alert, OPTIONS)
    return {
        "slack header": slack.header,
        "slack text (CommonMark, event text escaped)": slack.text,
        "email subject": mail.subject,
        "email text": mail.text,
        "email html": mail.html,
        "pagerduty": "\n".join([f"title: {pd.title}", f"severity: {pd.severity}", f"body: {pd.body}",
                                "details: " + json.dumps(dict(pd.details), indent=2, ensure_ascii=False)]),
        "text (json://, form://, chat services)": f"{other.title}\n{other.body}",
        "log (alerts.jsonl)": json.dumps(render.log_record(alert, OPTIONS), indent=2, sort_keys=True,
                                         ensure_ascii=False),
    }


def document(rule: Rule, test: RuleTest, alerts: list[Alert]) -> str:
    parts = []
    for number, alert in enumerate(alerts, start=1):
        parts.append(f"# {rule.id}: {test.name} (alert {number} of {len(alerts)})")
        parts += [f"## {kind}\n{text}" for kind, text in rendered(alert).items()]
    return "\n\n".join(parts) + "\n"


def facts_of(alert: Alert) -> list[str]:
    """What every message of this alert must state, as plain text."""
    ctx = alert.context
    facts = [alert.severity.label.upper(), clean(alert.title, 250), ctx.event_uuid, ctx.event_type, alert.rule_id,
             ctx.published[:19].replace("T", " ") + " UTC"]
    if ctx.actor.alternate_id:
        facts.append(ctx.actor.alternate_id)
    if ctx.outcome_result:
        facts.append(ctx.outcome_result)
        if ctx.outcome_result == "FAILURE" and ctx.event_type != "user.account.lock":
            facts.append("failed to")
    if ctx.window_seconds is not None or alert.count > 1:
        facts += [f"{alert.count} events", alert.group_key]
    facts += [f"{step.step} {step.name}: {step.count} event" for step in ctx.steps if not step.absent]
    facts += [f"{step.step} then no {step.name} until" for step in ctx.steps if step.absent]
    if ctx.distinct_field is not None:
        total = ctx.distinct_count or 0
        facts.append(f"{total} distinct {ctx.distinct_field}")
        facts += list(ctx.distinct_values[:10])
    return [f for f in facts if f]


def channel_texts(alert: Alert) -> dict[str, tuple[str, Any]]:
    """Each channel's full text and how a plain fact is spelled in it."""
    slack = render.slack_message(alert, OPTIONS)
    mail = render.email_message(alert, OPTIONS)
    pd = render.pagerduty_message(alert, OPTIONS)
    record = render.log_record(alert, OPTIONS)
    other = render.text_message(alert, OPTIONS)
    log_values = [v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for v in record.values()]
    return {
        "slack": (slack.header + "\n" + slack.text, render.slack_escape),
        "email text": (mail.subject + "\n" + mail.text, str),
        "email html": (mail.html, lambda f: html.escape(f)),
        "pagerduty": ("\n".join([pd.title, pd.body, *pd.details.values()]), str),
        "log": ("\n".join(log_values).lower(), str.lower),  # the severity is lower case there (contract)
        "text": (other.title + "\n" + other.body, str),
    }


@pytest.mark.parametrize(("rule", "test"), list(alerting_tests()))
def test_every_rule_renders_as_its_golden_file_for_every_channel(rule: Rule, test: RuleTest) -> None:
    alerts = raised_alerts(rule, test)
    assert alerts, f"{rule.id}: {test.name} raised no alert"
    text = document(rule, test, alerts)
    path = golden_path(rule, test)
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no golden file {path}: run with SENTINEL_UPDATE_GOLDEN=1 and read it"
    assert text == path.read_text(encoding="utf-8"), f"{path} differs (SENTINEL_UPDATE_GOLDEN=1 rewrites it)"


@pytest.mark.parametrize(("rule", "test"), list(alerting_tests()))
def test_every_channel_states_every_fact_of_every_rule_alert(rule: Rule, test: RuleTest) -> None:
    for alert in raised_alerts(rule, test):
        for channel, (text, spelled) in channel_texts(alert).items():
            missing = [fact for fact in facts_of(alert) if spelled(fact) not in text]
            assert not missing, f"{rule.id}: {test.name}: {channel} does not state {missing}"


def test_every_rule_of_the_pack_has_a_golden_file_and_none_is_stale() -> None:
    expected = {golden_path(rule, test) for rule, test in (p.values for p in alerting_tests())}
    assert {r.id for r in PACK.rules} == {p.parent.name for p in expected}
    assert set(GOLDEN.rglob("*.txt")) == expected
