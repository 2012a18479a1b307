"""Which channels an alert goes to. Pure."""

from __future__ import annotations

from collections.abc import Mapping

from sentinel.config import ChannelSettings
from sentinel.model import Alert


def route(alert: Alert, channels: Mapping[str, ChannelSettings], fallback: str = "fallback") -> list[str]:
    """A rule's own ``channels`` win (unknown names are dropped: the loader warns about them);
    otherwise every channel whose ``min_severity`` the alert meets. The fallback channel only gets
    dead-letter reports unless a rule names it."""
    if alert.channels is not None:
        return [name for name in alert.channels if name in channels]
    return [name for name, channel in channels.items()
            if name != fallback and alert.severity >= channel.min_severity]
