"""The settings ``sentinel.toml`` is read into: frozen, with the defaults of :mod:`sentinel.config_keys`.

:mod:`sentinel.config` reads a file into them (and re-exports them, the name everyone imports from).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from sentinel.config_keys import CHANNEL_SECTION, default, duration_of
from sentinel.durations import duration_seconds
from sentinel.maintenance import Window
from sentinel.model import Severity
from sentinel.secret import Secret

_DEFAULT_MIN_SEVERITY = Severity.parse(default(CHANNEL_SECTION, "min_severity"))
_DEFAULT_STORM_WINDOW = duration_of(default(CHANNEL_SECTION, "storm_window"))


@dataclass(frozen=True)
class ServerSettings:
    host: str = default("server", "host")
    port: int = default("server", "port")
    max_body_bytes: int = default("server", "max_body_bytes")


@dataclass(frozen=True)
class OktaSettings:
    auth_header: str = default("okta", "auth_header")
    allow_unauthenticated: bool = default("okta", "allow_unauthenticated")
    org_url: str | None = default("okta", "org_url")
    # Current secret first; the previous one is accepted while set, for rotation.
    secrets: tuple[Secret, ...] = ()


@dataclass(frozen=True)
class OktaApiSettings:
    """``[okta.api]``: polling the System Log API. No secret here: the credential is read where it is used
    (``sentinel.okta_api.load_api_credentials``), so these settings can go to the detector process."""

    base_url: str  # no trailing slash
    poll_interval_seconds: int = default("okta.api", "poll_interval_seconds")
    backfill_hours: float = float(default("okta.api", "backfill_hours"))
    client_id: str | None = default("okta.api", "client_id")  # set: OAuth service app, else an API token
    key_id: str | None = default("okta.api", "key_id")
    rate_limit_share: float = default("okta.api", "rate_limit_share")
    max_lag_seconds: int = default("okta.api", "max_lag_seconds")


@dataclass(frozen=True)
class StorageSettings:
    path: Path = Path(default("storage", "path"))
    retention_days: float = float(default("storage", "retention_days"))  # 0 keeps everything

    @property
    def retention(self) -> timedelta | None:
        return timedelta(days=self.retention_days) if self.retention_days > 0 else None


@dataclass(frozen=True)
class RulesSettings:
    paths: tuple[Path, ...] = tuple(Path(p) for p in default("rules", "paths"))
    max_groups: int = default("rules", "max_groups")
    # How far behind the newest event time a late event still counts toward windows (see EngineState).
    allowed_lateness: timedelta = timedelta(seconds=duration_seconds(default("rules", "allowed_lateness")))


@dataclass(frozen=True)
class DeliverySettings:
    retry_budget: timedelta = timedelta(hours=default("delivery", "retry_budget_hours"))
    timezone: str | None = default("delivery", "timezone")
    fallback_channel: str = default("delivery", "fallback_channel")


@dataclass(frozen=True)
class ChannelSettings:
    name: str
    kind: str = default(CHANNEL_SECTION, "kind")
    urls: tuple[Secret, ...] = ()
    min_severity: Severity = _DEFAULT_MIN_SEVERITY
    path: Path | None = None
    # The ${NAMES} its URLs are built from: environment variables (or credentials) holding secrets.
    secret_names: tuple[str, ...] = ()
    storm_limit: int = default(CHANNEL_SECTION, "storm_limit")  # 0: no storm control
    storm_window: timedelta = _DEFAULT_STORM_WINDOW
    send_resolved: bool = default(CHANNEL_SECTION, "send_resolved")


@dataclass(frozen=True)
class DetectorSettings:
    """How the detector process yields to intake (issue 16: intake's tail isolated from detection)."""

    cpu_priority: str = default("detector", "cpu_priority")
    io_priority: str = default("detector", "io_priority")
    inbox_checkpoint: str = default("detector", "inbox_checkpoint")
    yield_ms: float = float(default("detector", "yield_ms"))


@dataclass(frozen=True)
class MonitorSettings:
    # 0 turns the "feed silent" alert off.
    feed_silence_minutes: int = default("monitor", "feed_silence_minutes")


@dataclass(frozen=True)
class MetricsSettings:
    enabled: bool = default("metrics", "enabled")
    # Serve /metrics on its own address ("host:port") instead of the main listener.
    listen: str | None = default("metrics", "listen")
    require_token: bool = default("metrics", "require_token")
    token: Secret | None = None


@dataclass(frozen=True)
class UiSettings:
    # The triage page's own address ("host:port"); None: no page.
    listen: str | None = default("ui", "listen")
    password: Secret | None = None


@dataclass(frozen=True)
class LoggingSettings:
    format: str = default("logging", "format")
    level: str = default("logging", "level")


@dataclass(frozen=True)
class Settings:
    source: Path | None = None
    server: ServerSettings = field(default_factory=ServerSettings)
    okta: OktaSettings = field(default_factory=OktaSettings)
    okta_api: OktaApiSettings | None = None  # None: no [okta.api] table, no polling
    storage: StorageSettings = field(default_factory=StorageSettings)
    rules: RulesSettings = field(default_factory=RulesSettings)
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    channels: Mapping[str, ChannelSettings] = field(default_factory=dict)
    monitor: MonitorSettings = field(default_factory=MonitorSettings)
    detector: DetectorSettings = field(default_factory=DetectorSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    ui: UiSettings = field(default_factory=UiSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    maintenance: tuple[Window, ...] = ()
