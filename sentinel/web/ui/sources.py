"""What the triage page reads from the running daemon, given by the composition root (sentinel/cli/compose.py):
the store, and the parts' current state (settings, channels and rules change on reload)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sentinel.clock import Clock
from sentinel.config import Settings
from sentinel.delivery.apprise_channel import Channel
from sentinel.rules.model import Rule
from sentinel.secret import Secret
from sentinel.store import MonitorSnapshot, Store


@dataclass(frozen=True)
class ReloadState:
    at: datetime | None  # None: no reload since start
    ok: bool


@dataclass(frozen=True)
class TriageSources:
    password: Secret
    store: Store
    clock: Clock
    settings: Callable[[], Settings]
    channels: Callable[[], Mapping[str, Channel]]
    rules: Callable[[], Sequence[Rule]]
    ready_checks: Callable[[], Mapping[str, bool]]
    queues: Callable[[], Awaitable[MonitorSnapshot]]
    last_reload: Callable[[], ReloadState]
    # The System Log poller's state as /readyz shows it (status, last_success, lag_seconds, last_error);
    # None without [okta.api].
    poll_state: Callable[[], Mapping[str, Any] | None] = lambda: None
