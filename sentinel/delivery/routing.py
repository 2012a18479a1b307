"""Which channels an alert goes to, and which alerts would go nowhere. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sentinel.config import ChannelSettings
from sentinel.model import Alert, Severity
from sentinel.rules.model import Rule


def channels_for(severity: Severity, named: tuple[str, ...] | None,
                 channels: Mapping[str, ChannelSettings]) -> list[str]:
    """A rule's own ``named`` channels win (names not configured are dropped: ``routing_report`` names
    them); otherwise every channel whose ``min_severity`` the severity meets. The fallback channel is
    a channel like any other here: its role only adds the reports of dead deliveries."""
    if named is not None:
        return [name for name in named if name in channels]
    return [name for name, channel in channels.items() if severity >= channel.min_severity]


def route(alert: Alert, channels: Mapping[str, ChannelSettings]) -> list[str]:
    return channels_for(alert.severity, alert.channels, channels)


@dataclass(frozen=True)
class RoutingReport:
    problems: list[str]  # alerts that would reach no channel: `sentinel check` fails, `serve` logs errors
    warnings: list[str]  # routes that work but not as written (a misspelt name, no fallback channel)


def _labels(severities: Iterable[Severity]) -> str:
    return ", ".join(s.label for s in sorted(set(severities)))


def routing_report(channels: Mapping[str, ChannelSettings], fallback: str, rules: Iterable[Rule],
                   config: str = "") -> RoutingReport:
    """Every way an alert could be stored and sent nowhere, found by asking ``channels_for`` itself, so
    the check and the routing cannot disagree. Severities are checked whatever the rules produce:
    self-monitoring alerts (high and info) are routed by severity too. Lines about the config file
    start with ``config``; lines about a rule with its file and id."""
    at = f"{config}: " if config else ""
    problems: list[str] = []
    warnings: list[str] = []
    configured = ", ".join(channels) or "none"
    unrouted = [s for s in Severity if not channels_for(s, None, channels)]
    if unrouted:
        problems.append(f"{at}channels: alerts of severity {_labels(unrouted)} reach no channel (no channel's "
                        f"min_severity admits them; configured: {configured}): they would be stored and sent "
                        "nowhere")
    for rule in rules:
        if not rule.enabled or rule.channels is None:
            continue
        where = f"{rule.source}: {rule.id}: channels"
        severities = {rule.severity, *(s for _, s in rule.severity_when)}
        unknown = [name for name in rule.channels if name not in channels]
        names = ", ".join(repr(name) for name in unknown)
        verb = "is not a configured channel" if len(unknown) == 1 else "are not configured channels"
        kept = channels_for(rule.severity, rule.channels, channels)
        if not kept:
            why = f"{names} {verb} (configured: {configured})" if unknown else "the rule names no channel"
            problems.append(f"{where}: {why}: its alerts of severity {_labels(severities)} reach no channel")
        elif unknown:
            warnings.append(f"{where}: {names} {verb} (configured: {configured}); its alerts go to "
                            f"{', '.join(kept)} only")
    if fallback not in channels:
        warnings.append(f"{at}delivery.fallback_channel: {fallback!r} is not a configured channel (configured: "
                        f"{configured}): a dead delivery is logged but reported on no channel")
    return RoutingReport(problems, warnings)
