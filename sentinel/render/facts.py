"""What every alert message states, extracted from an alert as clean one-line text. Pure.

Every value in ``alert.context`` came from an Okta event, so it is hostile text: control, bidi and
invisible characters are shown as escapes (no forged lines, no reordered text, see
:mod:`sentinel.safe_text`) and lengths are capped here; each message format then escapes for its own
syntax (``sentinel.render``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any
from urllib.parse import quote, urlsplit

from sentinel.alert_context import AlertContext, Party
from sentinel.model import Alert, Severity, format_timestamp, parse_timestamp
from sentinel.render.safe_text import inert
from sentinel.rules.attack import attack_ref

FIELD_LIMIT = 300  # one event-supplied value
MAX_TARGETS = 5
MAX_SAMPLES = 5
MAX_DISTINCT_SHOWN = 10
MAX_ATTACK_TAGS = 8
MAX_STEPS_SHOWN = 10
_SUCCESS = frozenset({"", "SUCCESS", "ALLOW"})
_FAILURE = frozenset({"FAILURE", "DENY"})


@dataclass(frozen=True, slots=True)
class Action:
    """How the one-sentence summary phrases an event type: ``done`` for a success, ``verb`` after
    "failed to" / "tried to"; ``prep`` introduces the targets, ``target_type`` (if the event has such
    targets) picks the ones the sentence names. ``neutral``: the outcome is not whether the action
    happened (a lock-out is logged as a FAILURE of the sign-in that caused it)."""

    done: str
    verb: str
    prep: str = ""
    neutral: bool = False
    target_type: str | None = None


# What the actor did; other event types fall back to the type itself.
_ACTIONS = {
    "user.account.privilege.grant": Action("granted admin privileges", "grant admin privileges", "to", False,
                                           "User"),
    "user.account.privilege.revoke": Action("revoked admin privileges", "revoke admin privileges", "from", False,
                                            "User"),
    "group.privilege.grant": Action("granted admin privileges", "grant admin privileges", "to group", False,
                                    "UserGroup"),
    "app.oauth2.client.privilege.grant": Action("granted admin privileges", "grant admin privileges",
                                                "to OAuth app"),
    "user.account.report_suspicious_activity_by_enduser": Action("reported suspicious activity",
                                                                 "report suspicious activity", "on"),
    "system.org.rate_limit.warning": Action("approached an org rate limit", "", "on", True, "URL Pattern"),
    "system.org.rate_limit.violation": Action("exceeded an org rate limit", "", "on", True, "URL Pattern"),
    "user.session.start": Action("signed in", "sign in", "to"),
    "user.authentication.authenticate": Action("authenticated", "authenticate", "to"),
    "user.authentication.auth_via_mfa": Action("authenticated with MFA", "authenticate with MFA", "to"),
    "user.authentication.sso": Action("signed in with SSO", "sign in with SSO", "to"),
    "user.account.lock": Action("was locked out", "", "", neutral=True),
    "user.mfa.factor.reset_all": Action("reset all MFA factors", "reset all MFA factors", "of"),
    "system.api_token.create": Action("created an API token", "create an API token"),
    "policy.lifecycle.deactivate": Action("deactivated policy", "deactivate policy"),
    "policy.lifecycle.delete": Action("deleted policy", "delete policy"),
    "policy.rule.deactivate": Action("deactivated policy rule", "deactivate policy rule"),
    "policy.rule.delete": Action("deleted policy rule", "delete policy rule"),
    "system.idp.lifecycle.create": Action("created identity provider", "create identity provider"),
    "system.idp.lifecycle.update": Action("changed identity provider", "change identity provider"),
    "sentinel.notify.test": Action("sent a test alert", "send a test alert", "to"),
    "sentinel.self_monitoring": Action("watches the Okta event feed", "", neutral=True),
}


@dataclass(frozen=True)
class RenderOptions:
    tz: tzinfo | None = None  # configured display zone (already loaded by the caller)
    tz_name: str | None = None
    org_url: str | None = None


DEFAULT_OPTIONS = RenderOptions()


def clean(value: Any, limit: int = FIELD_LIMIT) -> str:
    """Hostile value → one line of plain text, at most ``limit`` characters, nothing a terminal acts on."""
    if value is None or isinstance(value, (dict, list, tuple, set)):
        return ""
    text = inert(str(value)).strip()
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
    # Distinct-count alerts: the line, the field counted, the total and the first values.
    distinct: str = ""
    distinct_field: str = ""
    distinct_count: int | None = None
    distinct_values: tuple[str, ...] = ()
    description: str = ""
    # MITRE ATT&CK tactics and techniques from the rule's tags: (label, link), e.g.
    # ("T1110.003 Brute Force: Password Spraying", "https://attack.mitre.org/techniques/T1110/003/").
    attack: tuple[tuple[str, str], ...] = ()
    falsepositives: str = ""
    author: str = ""  # the rule's author (Sigma's licence asks messages based on its rules to keep it)
    # Sequence alerts: one line per step, in step order ("1 denied: 3 events, 12:00:00 to 12:02:00 UTC").
    steps: tuple[str, ...] = ()
    # Measured thresholds: "failures 31, users 12, failures / users 2.58" (the window that met the test).
    measures: str = ""

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
            ("Distinct values", self.distinct),
            ("Measures", self.measures),
            ("Sequence", "; ".join(self.steps)),
            ("Description", self.description),
            ("ATT&CK", "; ".join(label for label, _ in self.attack)),
            ("False positives", self.falsepositives),
            ("Runbook", self.runbook),
            ("Rule", self.rule_id),
            ("Rule author", self.author),
        ]
        return [(label, value) for label, value in rows if value]


def _who(party: Party) -> str:
    name, alt = clean(party.display_name, 120), clean(party.alternate_id, 160)
    if name and alt and name != alt:
        return f"{name} ({alt})"
    return alt or name or clean(party.id, 120)


def _target(party: Party) -> str:
    who, kind = _who(party), clean(party.type, 60)
    return f"{who} [{kind}]" if who and kind else who or kind


def _moment(text: Any, fallback: datetime) -> datetime:
    try:
        return parse_timestamp(text)
    except (ValueError, TypeError):
        return fallback


def _when(moment: datetime) -> str:
    return format_timestamp(moment).replace("T", " ")[:19] + " UTC"


def _duration(seconds: int | None) -> str:
    if seconds is None or seconds <= 0:
        return ""
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def sentence(ctx: AlertContext) -> str:
    """One sentence saying who did what to whom, and whether it worked (``outcome.result``/``reason``)."""
    event_type = clean(ctx.event_type, 120)
    action = _ACTIONS.get(event_type) or Action(f"performed {event_type or 'an action'}",
                                                f"perform {event_type or 'an action'}", "on")
    result = clean(ctx.outcome_result, 40).upper()
    reason = clean(ctx.outcome_reason, 120)
    if action.neutral or result in _SUCCESS:
        verb, why = action.done, (reason if result not in _SUCCESS else "")
    elif result == "DENY":
        verb, why = f"was denied when trying to {action.verb}", reason
    elif result == "FAILURE":
        verb, why = f"failed to {action.verb}", reason
    else:  # CHALLENGE, SKIPPED, UNKNOWN, anything else: say what Okta said
        verb, why = f"tried to {action.verb}", f"outcome {result}" + (f": {reason}" if reason else "")
    # Roles granted are named with the action; the other targets (of the action's type) after it.
    roles = [n for n in (clean(t.display_name, 120) or _who(t) for t in ctx.targets if t.type == "ROLE") if n]
    chosen = [t for t in ctx.targets if t.type == action.target_type] or [
        t for t in ctx.targets if t.type not in ("ROLE", "ROLE_ASSIGNED")]
    names = [n for n in (_whom(t, ctx.actor) for t in chosen[:3]) if n]
    whom = ", ".join(names) + (f" and {len(chosen) - 3} more" if len(chosen) > 3 else "")
    what = f" ({', '.join(roles[:3])})" if roles else ""
    on = " " + " ".join(p for p in (action.prep, whom) if p) if whom else ""
    because = f" ({why})" if why else ""
    return f"{_who(ctx.actor) or 'Unknown actor'} {verb}{what}{on}{because}."


def _whom(target: Party, actor: Party) -> str:
    if target.alternate_id and target.alternate_id == actor.alternate_id:
        return "their own account"
    return _who(target)


def _distinct(ctx: AlertContext) -> tuple[str, tuple[str, ...]]:
    """The distinct-values line (the first ten, with the total) and the values shown."""
    if ctx.distinct_field is None:
        return "", ()
    values = tuple(v for v in (clean(x, 160) for x in ctx.distinct_values[:MAX_DISTINCT_SHOWN]) if v)
    total = max(ctx.distinct_count or 0, len(ctx.distinct_values))
    shown = f" (first {len(values)} shown)" if total > len(values) else ""
    line = f"{total} distinct {clean(ctx.distinct_field, 120)}{shown}: {', '.join(values)}"
    return line, values


def _threshold(alert: Alert, ctx: AlertContext) -> str:
    """How many events over which span for which group, and what makes the rule fire and fold."""
    window, hold = _duration(ctx.window_seconds), _duration(ctx.throttle_seconds)
    if not window and alert.count <= 1:
        return ""
    group = clean(alert.group_key or ctx.group_key, 200)
    text = (f"{alert.count} event{'s' if alert.count != 1 else ''}" + (f" within {window}" if window else "")
            + (f" for {group}" if group else "")
            + f" (first {_when(alert.first_seen)}, last {_when(alert.last_seen)})")
    if ctx.when:
        text += f"; the rule fires when {clean(ctx.when, 300)}" + (f" within {window}" if window else "")
    elif ctx.threshold is not None:
        counted = f"distinct {clean(ctx.distinct_field, 120)}" if ctx.distinct_field else "events"
        text += f"; the rule fires at {ctx.threshold} {counted}" + (f" within {window}" if window else "")
    if hold:
        folded = "sequences starting" if ctx.steps else "matches"
        text += f"; {folded} within {hold} fold into this alert"
    return text


def _steps(ctx: AlertContext, fallback: datetime) -> tuple[str, ...]:
    """Each step of a sequence alert: how many events, when; an absence step says until when it waited."""
    lines = []
    for step in ctx.steps[:MAX_STEPS_SHOWN]:
        name = clean(step.name, 120)
        first, last = _when(_moment(step.first, fallback)), _when(_moment(step.last, fallback))
        if step.absent:
            lines.append(f"{step.step} then no {name} until {last}")
            continue
        span = first if first == last else f"{first[:-4]} to {last}"
        lines.append(f"{step.step} {name}: {step.count} event{'s' if step.count != 1 else ''}, {span}")
    return tuple(lines)


def _attack(tags: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """Tactics first, then techniques, each once, in the order the rule lists them."""
    refs = [ref for ref in (attack_ref(clean(tag, 80)) for tag in tags) if ref is not None]
    ordered = [r for r in refs if r.id.startswith("TA")] + [r for r in refs if not r.id.startswith("TA")]
    unique = {ref.id: (ref.label(), ref.url) for ref in ordered}
    return tuple(unique.values())[:MAX_ATTACK_TAGS]


def facts(alert: Alert, options: RenderOptions = DEFAULT_OPTIONS) -> Facts:
    ctx = alert.context if isinstance(alert.context, AlertContext) else AlertContext()
    place = ", ".join(p for p in (clean(ctx.city, 80), clean(ctx.country, 80)) if p)
    ip = clean(ctx.client_ip, 64)
    result, reason = clean(ctx.outcome_result, 40), clean(ctx.outcome_reason, 255)
    moment = _moment(ctx.published, alert.last_seen)
    local = ""
    if options.tz is not None:
        zone_name = clean(options.tz_name, 60) or str(options.tz)
        try:
            local = moment.astimezone(options.tz).strftime("%Y-%m-%d %H:%M:%S %Z") + f" ({zone_name})"
        except OverflowError:  # an event stamped at the edge of year 1 or 9999: UTC is still shown
            local = ""
    targets = tuple(t for t in (_target(x) for x in ctx.targets) if t)
    extra = len(targets) - MAX_TARGETS
    uuid = clean(ctx.event_uuid, 80)
    threshold = _threshold(alert, ctx)
    samples = tuple(
        " · ".join(p for p in (_when(_moment(s.published, alert.last_seen)), clean(s.actor, 160),
                               clean(s.ip, 64), clean(s.uuid, 80)) if p)
        for s in ctx.samples[:MAX_SAMPLES]
    ) if threshold else ()
    distinct, distinct_values = _distinct(ctx)
    return Facts(
        severity=alert.severity,
        title=clean(alert.title, 250) or clean(alert.rule_id, 120) or "Sentinel alert",
        summary=clean(alert.summary, 500),
        sentence=sentence(ctx),
        event_type=clean(ctx.event_type, 120),
        actor=clean(ctx.actor.alternate_id, 160) or _who(ctx.actor),
        targets=targets[:MAX_TARGETS] + ((f"and {extra} more",) if extra > 0 else ()),
        client=f"{ip} ({place})" if ip and place else ip or place,
        user_agent=clean(ctx.user_agent, 250),
        outcome=f"{result}: {reason}" if result and reason else result or reason,
        time_utc=_when(moment),
        time_local=local,
        uuid=uuid,
        runbook=clean(ctx.runbook, 500),
        link=okta_event_link(options.org_url, uuid),
        threshold=threshold,
        samples=samples,
        rule_id=clean(alert.rule_id, 120),
        group_key=clean(alert.group_key, 200),
        references=tuple(r for r in (clean(x) for x in ctx.references[:5]) if r),
        distinct=distinct,
        distinct_field=clean(ctx.distinct_field, 120),
        distinct_count=ctx.distinct_count,
        distinct_values=distinct_values,
        description=clean(ctx.description, 500),
        attack=_attack(ctx.tags),
        falsepositives="; ".join(p for p in (clean(x, 200) for x in ctx.falsepositives[:5]) if p),
        author=clean(ctx.author, 200),
        steps=_steps(ctx, alert.last_seen),
        measures=", ".join(f"{clean(name, 80)} {clean(value, 40)}" for name, value in ctx.measures[:12]),
    )
