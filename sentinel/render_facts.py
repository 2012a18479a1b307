"""What every alert message states, extracted from an alert as clean one-line text. Pure.

Every value in ``alert.context`` came from an Okta event, so it is hostile text: control characters
are flattened (no forged extra lines) and lengths are capped here; each message format then escapes
for its own syntax (``sentinel.render``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any
from urllib.parse import quote, urlsplit

from sentinel.model import Alert, Severity, format_timestamp, parse_timestamp

FIELD_LIMIT = 300  # one event-supplied value
MAX_TARGETS = 5
MAX_SAMPLES = 5
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")

# What the actor did, for the one-sentence summary; other event types fall back to the type itself.
_ACTIONS = {
    "user.account.privilege.grant": "granted admin privileges to",
    "user.account.privilege.revoke": "revoked admin privileges from",
    "group.privilege.grant": "granted admin privileges to group",
    "app.oauth2.client.privilege.grant": "granted admin privileges to OAuth app",
    "user.account.report_suspicious_activity_by_enduser": "reported suspicious activity on",
    "system.org.rate_limit.warning": "approached an org rate limit on",
    "system.org.rate_limit.violation": "exceeded an org rate limit on",
    "user.session.start": "signed in to",
    "user.authentication.auth_via_mfa": "authenticated with MFA to",
    "user.account.lock": "locked out",
    "user.mfa.factor.reset_all": "reset all MFA factors of",
    "system.api_token.create": "created API token",
    "policy.lifecycle.deactivate": "deactivated policy",
    "policy.lifecycle.delete": "deleted policy",
    "policy.rule.deactivate": "deactivated policy rule",
    "policy.rule.delete": "deleted policy rule",
    "system.idp.lifecycle.create": "created identity provider",
    "system.idp.lifecycle.update": "changed identity provider",
}


@dataclass(frozen=True)
class RenderOptions:
    tz: tzinfo | None = None  # configured display zone (already loaded by the caller)
    tz_name: str | None = None
    org_url: str | None = None


DEFAULT_OPTIONS = RenderOptions()


def clean(value: Any, limit: int = FIELD_LIMIT) -> str:
    """Hostile value → one line of plain text, at most ``limit`` characters."""
    if value is None or isinstance(value, (dict, list, tuple, set)):
        return ""
    text = _CONTROL.sub(" ", str(value)).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def okta_event_link(org_url: str | None, uuid: str) -> str | None:
    """Link to one event in the Okta Admin Console System Log.

    The admin console lives on ``{org}-admin.okta.com`` and its System Log page is
    ``/report/system_log_2``; its ``search`` parameter takes free text, so the uuid finds the event.
    """
    if not org_url or not uuid:
        return None
    parts = urlsplit(org_url.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return None
    host = parts.hostname
    label, _, rest = host.partition(".")
    okta_domains = ("okta.com", "oktapreview.com", "okta-emea.com", "okta-gov.com", "okta.mil")
    if rest in okta_domains and not label.endswith("-admin"):
        host = f"{label}-admin.{rest}"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/report/system_log_2?search={quote(uuid, safe='')}"


@dataclass(frozen=True)
class Facts:
    """Everything a message states, as clean plain text (each format escapes it)."""

    severity: Severity
    title: str
    summary: str
    sentence: str
    event_type: str
    actor: str
    targets: tuple[str, ...]
    client: str
    user_agent: str
    outcome: str
    time_utc: str
    time_local: str
    uuid: str
    runbook: str
    link: str | None
    threshold: str
    samples: tuple[str, ...]
    rule_id: str
    group_key: str
    references: tuple[str, ...] = field(default=())

    def lines(self) -> list[tuple[str, str]]:
        """(label, value) rows, in reading order, skipping empty values."""
        rows = [
            ("Severity", self.severity.label.upper()),
            ("What", self.sentence),
            ("Event type", self.event_type),
            ("Actor", self.actor),
            ("Target", "; ".join(self.targets)),
            ("Client", self.client),
            ("User agent", self.user_agent),
            ("Outcome", self.outcome),
            ("Time (UTC)", self.time_utc),
            ("Local time", self.time_local),
            ("Event uuid", self.uuid),
            ("Threshold", self.threshold),
            ("Runbook", self.runbook),
            ("Rule", self.rule_id),
        ]
        return [(label, value) for label, value in rows if value]


def _text_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (clean(value),) if value.strip() else ()
    if isinstance(value, (list, tuple)):
        return tuple(c for c in (clean(v) for v in value[:10]) if c)
    return ()


def _who(entity: Any) -> str:
    if not isinstance(entity, Mapping):
        return clean(entity)
    name, alt = clean(entity.get("displayName"), 120), clean(entity.get("alternateId"), 160)
    if name and alt and name != alt:
        return f"{name} ({alt})"
    return alt or name


def _target(entity: Any) -> str:
    who = _who(entity)
    kind = clean(entity.get("type"), 60) if isinstance(entity, Mapping) else ""
    return f"{who} [{kind}]" if who and kind else who or kind


def _moment(text: Any, fallback: datetime) -> datetime:
    try:
        return parse_timestamp(text)
    except (ValueError, TypeError):
        return fallback


def _when(moment: datetime) -> str:
    return format_timestamp(moment).replace("T", " ")[:19] + " UTC"


def _duration(seconds: Any) -> str:
    try:
        total = int(float(seconds))
    except (TypeError, ValueError):
        return ""
    for unit, size in (("h", 3600), ("min", 60)):
        if total >= size and total % size == 0:
            return f"{total // size} {unit}"
    return f"{total} s"


def facts(alert: Alert, options: RenderOptions = DEFAULT_OPTIONS) -> Facts:
    ctx: Mapping[str, Any] = alert.context if isinstance(alert.context, Mapping) else {}
    event_type = clean(ctx.get("event_type"), 120)
    actor = ctx.get("actor")
    actor_text = _who(actor)
    actor_id = clean(actor.get("alternateId"), 160) if isinstance(actor, Mapping) else ""
    raw_targets = ctx.get("targets")
    targets = tuple(
        t for t in (_target(x) for x in (raw_targets if isinstance(raw_targets, list) else [])) if t
    )
    extra = len(targets) - MAX_TARGETS
    shown = targets[:MAX_TARGETS] + ((f"and {extra} more",) if extra > 0 else ())
    place = ", ".join(p for p in (clean(ctx.get("city"), 80), clean(ctx.get("country"), 80)) if p)
    ip = clean(ctx.get("client_ip"), 64)
    client = f"{ip} ({place})" if ip and place else ip or place
    result, reason = clean(ctx.get("outcome_result"), 40), clean(ctx.get("outcome_reason"), 255)
    outcome = f"{result}: {reason}" if result and reason else result or reason
    moment = _moment(ctx.get("published"), alert.last_seen)
    local = ""
    if options.tz is not None:
        zone_name = clean(options.tz_name, 60) or str(options.tz)
        try:
            local = moment.astimezone(options.tz).strftime("%Y-%m-%d %H:%M:%S %Z") + f" ({zone_name})"
        except OverflowError:  # an event stamped at the edge of year 1 or 9999: UTC is still shown
            local = ""
    action = _ACTIONS.get(event_type, f"performed {event_type or 'an action'} on")
    target_names = [_who(x) for x in (raw_targets if isinstance(raw_targets, list) else [])[:3]]
    target_text = ", ".join(t for t in target_names if t) or "(no target)"
    sentence = f"{actor_text or 'Unknown actor'} {action} {target_text}."
    uuid = clean(ctx.get("uuid"), 80) or (clean(alert.event_uuids[-1], 80) if alert.event_uuids else "")
    threshold, samples = "", tuple[str, ...]()
    window = _duration(ctx.get("window_seconds"))
    if window or alert.count > 1:
        fields = ", ".join(_text_list(ctx.get("group_fields"))) or "group"
        over = f" within {window}" if window else ""
        threshold = (
            f"{alert.count} events{over} for {fields} = {clean(alert.group_key, 200)} "
            f"(first {_when(alert.first_seen)}, last {_when(alert.last_seen)})"
        )
        raw_samples = ctx.get("samples")
        rows = []
        for s in (raw_samples if isinstance(raw_samples, list) else [])[:MAX_SAMPLES]:
            if isinstance(s, Mapping):
                when = _when(_moment(s.get("published"), alert.last_seen))
                parts = [when, _who(s.get("actor")), clean(s.get("ip"), 64), clean(s.get("uuid"), 80)]
                rows.append(" · ".join(p for p in parts if p))
        samples = tuple(rows)
    return Facts(
        severity=alert.severity,
        title=clean(alert.title, 250) or clean(alert.rule_id, 120) or "Sentinel alert",
        summary=clean(alert.summary, 500),
        sentence=sentence,
        event_type=event_type,
        actor=actor_id or actor_text,
        targets=shown,
        client=client,
        user_agent=clean(ctx.get("user_agent"), 250),
        outcome=outcome,
        time_utc=_when(moment),
        time_local=local,
        uuid=uuid,
        runbook=clean(ctx.get("runbook"), 500),
        link=okta_event_link(options.org_url, uuid),
        threshold=threshold,
        samples=samples,
        rule_id=clean(alert.rule_id, 120),
        group_key=clean(alert.group_key, 200),
        references=_text_list(ctx.get("references"))[:5],
    )
