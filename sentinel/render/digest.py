"""The storm digest: one message standing for the alerts a channel held back during a storm. Pure.

It states how many alerts were held, the count per rule, the first few (time, severity, title), and a link to
the triage page when one is configured. Titles are event-derived text: they go through the same cleaning as
any alert's (every channel's renderer escapes the result again for its syntax)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sentinel.alert_context import AlertContext, Party
from sentinel.model import Alert, Severity, format_timestamp
from sentinel.render.facts import clean

FIRST_FEW = 5
DIGEST_TITLE_LIMIT = 80


@dataclass(frozen=True, slots=True)
class HeldAlert:
    """One alert a digest carries."""

    alert_id: int
    rule_id: str
    severity: str
    title: str
    created_at: datetime


def _minutes(window: timedelta) -> str:
    seconds = int(window.total_seconds())
    return f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"


def digest_alert(digest: Alert, held: Sequence[HeldAlert], channel: str, window: timedelta,
                 ui_url: str | None = None) -> Alert:
    """The digest's message as an alert: ``digest`` is its stored row (rule sentinel-storm-digest)."""
    per_rule = Counter(h.rule_id for h in held)
    # Messages show the summary and description as one line each (facts.clean, 500 characters): what must
    # survive the cut (the count, the link, the rules) comes first.
    parts = [f"{len(held)} alerts held back on {channel} (more than its storm_limit within {_minutes(window)}); "
             "every one is stored (`sentinel alerts`)"]
    if ui_url:
        parts.append(f"triage page: {ui_url.rstrip('/')}/ui/")
    parts.append("per rule: " + ", ".join(f"{rule} {count}" for rule, count in per_rule.most_common()))
    summary = "; ".join(parts)
    first = [f"#{h.alert_id} {format_timestamp(h.created_at)[11:19]} [{h.severity.upper()}] "
             f"{clean(h.title, DIGEST_TITLE_LIMIT)}" for h in held[:FIRST_FEW]]
    more = f"; and {len(held) - FIRST_FEW} more" if len(held) > FIRST_FEW else ""
    description = "First: " + "; ".join(first) + more
    severities = [Severity.parse(h.severity) for h in held] or [Severity.INFO]
    return replace(
        digest, severity=max(severities), count=len(held),
        title=f"Alert storm on {channel}: {len(held)} alerts in {len(per_rule)} rules",
        summary=summary,
        context=AlertContext(event_type="sentinel.storm_digest", actor=Party(display_name="Sentinel"),
                             rule_id=digest.rule_id, description=description,
                             runbook="Open the triage page or run `sentinel alerts` to see every alert held; "
                                     "a silence (`sentinel silence add`) quiets known noise."),
    )
