"""Alert → message per channel kind (Slack, email, PagerDuty, plain text, log). Pure: no I/O, no clock.

The facts come from :mod:`sentinel.render_facts` as clean one-line text; each format here escapes
them for its own syntax (Slack CommonMark/mrkdwn, HTML) and keeps within the service's limits.
Time zones are resolved by the caller and passed in.
"""

from __future__ import annotations

import hashlib
import html
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sentinel.model import Alert, Severity, format_timestamp
from sentinel.render.facts import (
    DEFAULT_OPTIONS,
    Facts,
    RenderOptions,
    clean,
    facts,
    okta_event_link,
)
from sentinel.render.safe_text import mrkdwn_inert

__all__ = ["DEFAULT_OPTIONS", "Facts", "RenderOptions", "clean", "facts", "okta_event_link"]

SLACK_TEXT_LIMIT = 3000  # Slack section text block
SLACK_HEADER_LIMIT = 150  # Slack header block (plain_text)
PAGERDUTY_SUMMARY_LIMIT = 1024
PAGERDUTY_DEDUP_LIMIT = 255


# Slack shows four colours through Apprise's notify types; the emoji tells all five severities apart.
_EMOJI = {
    Severity.CRITICAL: "\U0001f6a8",  # rotating light
    Severity.HIGH: "\U0001f534",  # red circle
    Severity.MEDIUM: "\U0001f7e0",  # orange circle
    Severity.LOW: "\U0001f7e1",  # yellow circle
    Severity.INFO: "\U0001f535",  # blue circle
}
_NOTIFY_TYPE = {
    Severity.CRITICAL: "failure",
    Severity.HIGH: "failure",
    Severity.MEDIUM: "warning",
    Severity.LOW: "warning",
    Severity.INFO: "info",
}
_PAGERDUTY_SEVERITY = {
    Severity.CRITICAL: "critical",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "warning",
    Severity.INFO: "info",
}


# --- Slack ---------------------------------------------------------------------------------------
# The body is CommonMark: Apprise's Slack plugin converts it to mrkdwn and entity-escapes ``&``, but
# passes ``<!channel>``-style text through, so event text has ``<>[]\\`` backslash-escaped here
# (Apprise turns ``\\<`` into ``&lt;`` and ``\\[`` into a literal ``[``: no mention, no link), and
# Slack's own formatting characters swapped for look-alikes (no escape exists for them in mrkdwn).


def slack_escape(text: str) -> str:
    """Escape event text so it cannot form a Slack mention (``<!channel>``), a link, or formatting."""
    text = mrkdwn_inert(text)
    for ch in ("\\", "<", ">", "[", "]"):
        text = text.replace(ch, "\\" + ch)
    return text


def slack_length(text: str) -> int:
    """Length after Apprise's conversion (``&`` → ``&amp;``, ``\\<`` → ``&lt;``): an upper bound."""
    return len(text) + 4 * text.count("&") + 2 * (text.count("\\<") + text.count("\\>"))


def safe_cut(text: str, limit: int, marker: str = "… (truncated)") -> str:
    """Cut to at most ``limit`` converted characters, never leaving a dangling backslash escape."""
    if slack_length(text) <= limit:
        return text
    budget, lo, hi = limit - len(marker), 0, len(text)
    while lo < hi:  # longest prefix that fits (slack_length grows with the prefix)
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if slack_length(text[:mid]) <= budget else (lo, mid - 1)
    cut = text[:lo]
    trailing = len(cut) - len(cut.rstrip("\\"))
    if trailing % 2:
        cut = cut[:-1]
    return cut + marker


@dataclass(frozen=True)
class SlackMessage:
    header: str  # plain text; Apprise escapes it for the header block
    text: str  # CommonMark with event text escaped; ≤ SLACK_TEXT_LIMIT once converted
    notify_type: str  # Apprise notify type name: sets the attachment colour


def slack_message(alert: Alert, options: RenderOptions = DEFAULT_OPTIONS) -> SlackMessage:
    f = facts(alert, options)
    header = f"{_EMOJI[f.severity]} {f.severity.label.upper()}: {f.title}"
    if len(header) > SLACK_HEADER_LIMIT:
        header = header[: SLACK_HEADER_LIMIT - 1] + "…"
    # Short lines, label first: readable on a phone without horizontal scrolling.
    lines = [f"**{slack_escape(f.sentence)}**"]
    if f.summary and f.summary != f.title:
        lines.append(slack_escape(f.summary))
    lines += [f"**{label}:** {slack_escape(value)}" for label, value in f.lines()[2:]]
    if f.samples:
        lines.append("**Events:**\n" + "\n".join(f"• {slack_escape(s)}" for s in f.samples))
    # The link is ours (org_url from config, uuid percent-encoded), so it is kept whole and last.
    link = f"[View in Okta System Log](<{f.link}>)" if f.link else ""
    room = SLACK_TEXT_LIMIT - (slack_length(link) + 1 if link else 0)
    text = safe_cut("\n".join(lines), room)
    return SlackMessage(header=header, text=f"{text}\n{link}" if link else text,
                        notify_type=_NOTIFY_TYPE[f.severity])


# --- email and plain text ------------------------------------------------------------------------


@dataclass(frozen=True)
class EmailMessage:
    subject: str
    text: str
    html: str


def subject(f: Facts) -> str:
    return f"[{f.severity.label.upper()}] {f.title}"


def plain_text(f: Facts) -> str:
    lines = [subject(f), f.sentence]
    if f.summary and f.summary != f.title:
        lines.append(f.summary)
    lines.append("")
    width = max(len(label) for label, _ in f.lines())
    lines += [f"{label + ':':<{width + 1}} {value}" for label, value in f.lines()[2:]]
    if f.samples:
        lines += ["", "Events:"] + [f"  - {s}" for s in f.samples]
    if f.link:
        lines += ["", f"Okta System Log: {f.link}"]
    if f.references:
        lines += ["", "References:"] + [f"  - {r}" for r in f.references]
    if f.attack:
        lines += ["", "MITRE ATT&CK:"] + [f"  - {label}: {url}" for label, url in f.attack]
    return "\n".join(lines)


def email_message(alert: Alert, options: RenderOptions = DEFAULT_OPTIONS) -> EmailMessage:
    f = facts(alert, options)
    esc = html.escape
    rows = "".join(
        f'<tr><th align="left" valign="top" style="padding:2px 12px 2px 0">{esc(label)}</th>'
        f"<td>{esc(value)}</td></tr>"
        for label, value in f.lines()
    )
    parts = [f"<h2>{esc(subject(f))}</h2>", f"<p><strong>{esc(f.sentence)}</strong></p>"]
    if f.summary and f.summary != f.title:
        parts.append(f"<p>{esc(f.summary)}</p>")
    parts.append(f"<table>{rows}</table>")
    if f.samples:
        parts.append("<p>Events:</p><ul>" + "".join(f"<li>{esc(s)}</li>" for s in f.samples) + "</ul>")
    if f.link:
        parts.append(f'<p><a href="{esc(f.link, quote=True)}">View in Okta System Log</a></p>')
    if f.references:
        parts.append("<p>References:</p><ul>" + "".join(f"<li>{esc(r)}</li>" for r in f.references) + "</ul>")
    if f.attack:
        parts.append("<p>MITRE ATT&amp;CK:</p><ul>" + "".join(
            f'<li><a href="{esc(url, quote=True)}">{esc(label)}</a></li>' for label, url in f.attack) + "</ul>")
    return EmailMessage(subject=subject(f), text=plain_text(f), html="\n".join(parts))


@dataclass(frozen=True)
class TextMessage:
    title: str
    body: str


def text_message(alert: Alert, options: RenderOptions = DEFAULT_OPTIONS) -> TextMessage:
    """For any other Apprise URL (json://, form://, chat services): a title and a plain body."""
    f = facts(alert, options)
    return TextMessage(title=subject(f), body=plain_text(f))


def resolved_message(alert: Alert, options: RenderOptions = DEFAULT_OPTIONS) -> TextMessage:
    """The short note a channel with ``send_resolved = true`` gets when resolve_after closes a group."""
    f = facts(alert, options)
    quiet = f" for {alert.resolve_after // 60} min" if alert.resolve_after and alert.resolve_after % 60 == 0 \
        else (f" for {alert.resolve_after} s" if alert.resolve_after else "")
    body = (f"No new activity{quiet} since {format_timestamp(alert.last_seen)[:19]}Z "
            f"(rule {f.rule_id}, {alert.count} event(s)): resolved.")
    return TextMessage(title=f"[RESOLVED] {f.title}", body=body)


# --- PagerDuty -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PagerDutyMessage:
    title: str
    body: str  # Apprise sends "title\r\nbody" as payload.summary; together ≤ 1024
    severity: str  # critical | error | warning | info
    dedup_key: str
    details: Mapping[str, str]


def dedup_key(alert: Alert) -> str:
    """One PagerDuty incident per alert group: rule id + group key when the rule groups (later windows
    of the same group fold into its open incident), else the alert's own key (one incident per alert,
    never one per rule). Stable across re-emissions of an alert; hashed if too long."""
    key = f"{alert.rule_id}:{alert.group_key}" if alert.group_key else alert.key
    if len(key) <= PAGERDUTY_DEDUP_LIMIT:
        return key
    return f"{alert.rule_id[:100]}:sha256:{hashlib.sha256(key.encode()).hexdigest()}"


def pagerduty_message(alert: Alert, options: RenderOptions = DEFAULT_OPTIONS) -> PagerDutyMessage:
    f = facts(alert, options)
    title = subject(f)[:200]
    body = " ".join(p for p in (f.sentence, f"{f.threshold}." if f.threshold else "",
                                f"Distinct values: {f.distinct}." if f.distinct else "",
                                f"Measures: {f.measures}." if f.measures else "") if p)
    room = PAGERDUTY_SUMMARY_LIMIT - len(title) - 2
    if len(body) > room:
        body = body[: room - 1] + "…"
    details = {label.lower().replace(" ", "_").replace("(", "").replace(")", ""): value
               for label, value in f.lines()}
    if f.samples:
        details["events"] = " | ".join(f.samples)
    if f.link:
        details["okta_system_log"] = f.link
    return PagerDutyMessage(
        title=title,
        body=body,
        severity=_PAGERDUTY_SEVERITY[f.severity],
        dedup_key=dedup_key(alert),
        details=details,
    )


# --- log -----------------------------------------------------------------------------------------


def log_record(alert: Alert, options: RenderOptions = DEFAULT_OPTIONS) -> dict[str, Any]:
    """One JSON object per alert for the built-in log channel (values already cleaned)."""
    f = facts(alert, options)
    record: dict[str, Any] = {
        "alert_key": clean(alert.key, 200),
        "rule_id": f.rule_id,
        "severity": f.severity.label,
        "title": f.title,
        "summary": f.summary,
        "sentence": f.sentence,
        "event_type": f.event_type,
        "actor": f.actor,
        "targets": list(f.targets),
        "client": f.client,
        "user_agent": f.user_agent,
        "outcome": f.outcome,
        "time_utc": f.time_utc,
        "time_local": f.time_local or None,
        "uuid": f.uuid,
        "runbook": f.runbook,
        "okta_link": f.link,
        "group_key": f.group_key,
        "count": alert.count,
        "first_seen": format_timestamp(alert.first_seen),
        "last_seen": format_timestamp(alert.last_seen),
        "event_uuids": [clean(u, 80) for u in alert.event_uuids[:50]],
    }
    if f.threshold:
        record["threshold"] = f.threshold
        record["samples"] = list(f.samples)
    if f.description:
        record["description"] = f.description
    if f.falsepositives:
        record["falsepositives"] = f.falsepositives
    if f.author:
        record["rule_author"] = f.author
    if f.attack:
        record["attack"] = [{"name": label, "url": url} for label, url in f.attack]
    if f.steps:
        record["sequence"] = list(f.steps)
    if f.measures:
        record["measures"] = f.measures
    if f.distinct:
        record.update(distinct=f.distinct, distinct_field=f.distinct_field, distinct_count=f.distinct_count,
                      distinct_values=list(f.distinct_values))
    return record
