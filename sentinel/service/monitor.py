"""Self-monitoring: Okta tells nobody when hook deliveries stop, so Sentinel watches its own feed.

``feed_alert`` is pure: given when the newest event arrived, the time now and the allowed silence, it
says whether a "feed silent" or "feed restored" alert is due. Alert keys are derived from the last
event time, so a restart never raises the same alert twice.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sentinel.alert_context import AlertContext, Party
from sentinel.model import Alert, Severity, format_timestamp

SILENT_RULE = "sentinel.feed_silent"
RESTORED_RULE = "sentinel.feed_restored"
POLL_BEHIND_RULE = "sentinel.poll_behind"
POLL_RESTORED_RULE = "sentinel.poll_restored"


def feed_alert(last_received: datetime | None, silent_since: datetime | None, now: datetime,
               allowed: timedelta) -> tuple[Alert | None, datetime | None]:
    """Returns (alert to raise or None, the new ``silent_since`` marker)."""
    if last_received is None:
        return None, silent_since
    quiet = now - last_received
    if silent_since is None and quiet >= allowed:
        minutes = int(quiet.total_seconds() // 60)
        alert = _alert(SILENT_RULE, Severity.HIGH, last_received, now,
                       f"No Okta events received for {minutes} minutes",
                       f"The last event arrived at {format_timestamp(last_received)}. Okta does not report failed "
                       "hook deliveries: check the Event Hook's status in the Okta Admin Console (Workflow > "
                       "Event Hooks), the reverse proxy, and this host's network.")
        return alert, last_received
    if silent_since is not None and last_received > silent_since:
        gap = int((last_received - silent_since).total_seconds() // 60)
        alert = _alert(RESTORED_RULE, Severity.INFO, silent_since, now, "Okta events are arriving again",
                       f"Events resumed at {format_timestamp(last_received)} after a gap of {gap} minutes. Events "
                       "from the gap are not replayed by Okta; back-fill from the System Log API if needed.")
        return alert, None
    return None, silent_since


def poll_alert(current_until: datetime, last_error: str | None, behind_since: datetime | None, now: datetime,
               allowed: timedelta) -> tuple[Alert | None, datetime | None]:
    """The System Log poller's counterpart of ``feed_alert``. ``current_until``: the time up to which the
    poller has read everything (its newest polled ``published``, the moment it last caught up, or when it
    started); polling that fails stops it moving, so a failure and a lag are one condition. Returns (alert
    to raise or None, the new ``behind_since`` marker)."""
    behind = now - current_until
    if behind_since is None and behind >= allowed:
        seconds = int(behind.total_seconds())
        how_long = f"{seconds // 60} minutes" if seconds >= 120 else f"{seconds} seconds"
        why = f"The last request failed: {last_error}. " if last_error else ""
        alert = _alert(POLL_BEHIND_RULE, Severity.HIGH, current_until, now,
                       f"Okta System Log polling is {how_long} behind",
                       f"{why}Events are read up to {format_timestamp(current_until)}; poll-only event types "
                       "(ThreatInsight, impersonation, network zones, failed hook deliveries) go unseen meanwhile. "
                       "Check the API credential, its scope okta.logs.read and admin role, and the rate limits.",
                       group_key="okta-poll", runbook="See README 'System Log polling' and `sentinel check --probe`.")
        return alert, current_until
    if behind_since is not None and current_until > behind_since and behind < allowed:
        alert = _alert(POLL_RESTORED_RULE, Severity.INFO, behind_since, now, "Okta System Log polling caught up",
                       f"Events are read up to {format_timestamp(current_until)} again; the poller read the gap "
                       "from its cursor.", group_key="okta-poll",
                       runbook="See README 'System Log polling'.")
        return alert, None
    return None, behind_since


FEED_RUNBOOK = ("Check the Okta Event Hook (Admin Console > Workflow > Event Hooks) and the path from Okta to "
                "this host; see README 'Self-monitoring'.")


def _alert(rule_id: str, severity: Severity, anchor: datetime, now: datetime, title: str, summary: str,
           group_key: str = "okta-feed", runbook: str = FEED_RUNBOOK) -> Alert:
    stamp = format_timestamp(anchor)
    return Alert(
        key=f"{rule_id}:{stamp}", rule_id=rule_id, severity=severity, title=title, summary=summary,
        group_key=group_key, first_seen=anchor, last_seen=now, count=1, event_uuids=(),
        context=AlertContext(event_type="sentinel.self_monitoring", actor=Party(display_name="Sentinel"),
                             rule_id=rule_id, description=summary, runbook=runbook),
    )
