"""``sentinel.toml`` → frozen settings.

Every problem is collected and reported at once as ``file: key.path: message``. Relative paths are
resolved against the config file's folder. Secrets come from the environment or systemd credentials
(``$CREDENTIALS_DIRECTORY``), never from the file, and are held as :class:`Secret`. Commands that use no
secret (listing events, alerts, rules) load with ``resolve_secrets=False``: no secret is read, so a missing
one is no error there; ``serve`` and ``check`` resolve them and fail on a missing one.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sentinel.errors import ConfigError, ErrorGroup
from sentinel.model import Severity
from sentinel.secret import Secret

SECRET_ENV = "SENTINEL_OKTA_SECRET"
PREVIOUS_SECRET_ENV = "SENTINEL_OKTA_SECRET_PREVIOUS"
SECRET_CREDENTIAL = "okta-secret"
PREVIOUS_SECRET_CREDENTIAL = "okta-secret-previous"
METRICS_TOKEN_ENV = "SENTINEL_METRICS_TOKEN"
METRICS_TOKEN_CREDENTIAL = "metrics-token"

CHANNEL_KINDS = ("apprise", "log")
# Every key the file may hold, by table ("channels" holds one table of CHANNEL_KEYS per channel).
SECTION_KEYS: dict[str, frozenset[str]] = {
    "server": frozenset({"host", "port", "max_body_bytes"}),
    "okta": frozenset({"auth_header", "allow_unauthenticated", "org_url"}),
    "storage": frozenset({"path", "retention_days"}),
    "rules": frozenset({"paths", "max_groups"}),
    "delivery": frozenset({"retry_budget_hours", "timezone", "fallback_channel"}),
    "channels": frozenset(),
    "monitor": frozenset({"feed_silence_minutes"}),
    "metrics": frozenset({"enabled", "listen", "require_token"}),
    "logging": frozenset({"format", "level"}),
}
CHANNEL_KEYS = frozenset({"kind", "urls", "min_severity", "path"})
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 1024 * 1024


@dataclass(frozen=True)
class OktaSettings:
    auth_header: str = "Authorization"
    allow_unauthenticated: bool = False
    org_url: str | None = None
    # Current secret first; the previous one is accepted while set, for rotation.
    secrets: tuple[Secret, ...] = ()


@dataclass(frozen=True)
class StorageSettings:
    path: Path = Path("sentinel.db")
    retention_days: float = 90.0  # as Okta's System Log; 0 keeps everything

    @property
    def retention(self) -> timedelta | None:
        return timedelta(days=self.retention_days) if self.retention_days > 0 else None


@dataclass(frozen=True)
class RulesSettings:
    paths: tuple[Path, ...] = (Path("rules"),)
    max_groups: int = 100_000


@dataclass(frozen=True)
class DeliverySettings:
    retry_budget: timedelta = timedelta(hours=24)
    timezone: str | None = None
    fallback_channel: str = "fallback"


@dataclass(frozen=True)
class ChannelSettings:
    name: str
    kind: str = "apprise"
    urls: tuple[Secret, ...] = ()
    min_severity: Severity = Severity.INFO
    path: Path | None = None
    # The ${NAMES} its URLs are built from: environment variables (or credentials) holding secrets.
    secret_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class MonitorSettings:
    # 0 turns the "feed silent" alert off.
    feed_silence_minutes: int = 0


@dataclass(frozen=True)
class MetricsSettings:
    enabled: bool = True
    # Serve /metrics on its own address ("host:port") instead of the main listener.
    listen: str | None = None
    require_token: bool = False
    token: Secret | None = None


@dataclass(frozen=True)
class LoggingSettings:
    format: str = "text"
    level: str = "INFO"


@dataclass(frozen=True)
class Settings:
    source: Path | None = None
    server: ServerSettings = field(default_factory=ServerSettings)
    okta: OktaSettings = field(default_factory=OktaSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    rules: RulesSettings = field(default_factory=RulesSettings)
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    channels: Mapping[str, ChannelSettings] = field(default_factory=dict)
    monitor: MonitorSettings = field(default_factory=MonitorSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)


class _Reader:
    """Reads one TOML table against expected keys, recording every problem instead of stopping."""

    def __init__(self, errors: list[ConfigError], file: str) -> None:
        self.errors = errors
        self.file = file

    def fail(self, path: str, message: str) -> None:
        self.errors.append(ConfigError(message, f"{self.file}: {path}" if path else self.file))

    def table(self, doc: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
        value = doc.get(key, {})
        if not isinstance(value, dict):
            self.fail(path, f"must be a table, not {_type_name(value)}")
            return {}
        return value

    def unknown(self, table: Mapping[str, Any], allowed: set[str] | frozenset[str], path: str) -> None:
        for key in table:
            if key not in allowed:
                where = f"{path}.{key}" if path else key
                hint = ", ".join(sorted(allowed))
                self.fail(where, f"unknown key (allowed: {hint})")

    def get(self, table: Mapping[str, Any], key: str, path: str, kind: type | tuple[type, ...],
            default: Any, check: Callable[[Any], str | None] | None = None) -> Any:
        if key not in table:
            return default
        value = table[key]
        where = f"{path}.{key}"
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # bool is an int in Python; TOML keeps them apart and so do we.
        ok = any(type(value) is k or (k is float and type(value) is int) for k in kinds)
        if not ok:
            expected = " or ".join(_KIND_NAMES.get(k, k.__name__) for k in kinds)
            self.fail(where, f"must be {expected}, not {_type_name(value)}")
            return default
        if check is not None:
            problem = check(value)
            if problem:
                self.fail(where, problem)
                return default
        return value

    def string_list(self, table: Mapping[str, Any], key: str, path: str,
                    default: tuple[str, ...]) -> tuple[str, ...]:
        value = self.get(table, key, path, list, None)
        if value is None:
            return default
        bad = [i for i, item in enumerate(value) if not isinstance(item, str) or not item]
        for i in bad:
            self.fail(f"{path}.{key}[{i}]", "must be a non-empty string")
        return tuple(item for item in value if isinstance(item, str) and item)


_KIND_NAMES: dict[type, str] = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
                                list: "an array", dict: "a table"}


def _type_name(value: Any) -> str:
    return _KIND_NAMES.get(type(value), type(value).__name__)


def _between(low: int, high: int) -> Callable[[Any], str | None]:
    return lambda v: None if low <= v <= high else f"must be between {low} and {high}, not {v}"


def _positive(v: Any) -> str | None:
    return None if v > 0 else f"must be greater than 0, not {v}"


def _non_negative(v: Any) -> str | None:
    return None if v >= 0 else f"must be 0 or more, not {v}"


def _non_empty(v: Any) -> str | None:
    return None if v.strip() else "must not be empty"


def _severity(v: Any) -> str | None:
    try:
        Severity.parse(v)
    except ValueError as e:
        return str(e)
    return None


def _one_of(*choices: str) -> Callable[[Any], str | None]:
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}, not {v!r}"


def _timezone(v: Any) -> str | None:
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {v!r} (use an IANA name such as 'Europe/Paris')"
    return None


def _org_url(v: Any) -> str | None:
    if not re.fullmatch(r"https://[A-Za-z0-9.-]+(:\d+)?/?", v):
        return f"must be the https:// address of the Okta org, such as https://example.okta.com, not {v!r}"
    return None


def _header_name(v: Any) -> str | None:
    return None if _HEADER_NAME.match(v) else f"{v!r} is not a valid HTTP header name"


def _listen(v: Any) -> str | None:
    host, _, port = v.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        return f"must be 'host:port', not {v!r}"
    return None


def _credential(name: str, credentials_dir: str | None) -> str | None:
    if not credentials_dir:
        return None
    candidate = Path(credentials_dir) / name
    try:
        return candidate.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def _secret_from(env_name: str, credential: str, environ: Mapping[str, str]) -> Secret | None:
    value = environ.get(env_name) or _credential(credential, environ.get("CREDENTIALS_DIRECTORY"))
    return Secret(value) if value else None


def _expand(text: str, where: str, reader: _Reader, environ: Mapping[str, str]) -> str:
    """Replace ``${NAME}`` with the environment variable NAME or the systemd credential NAME."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        value = environ.get(name) or _credential(name, environ.get("CREDENTIALS_DIRECTORY"))
        if not value:
            reader.fail(where, f"${{{name}}} is not set (as an environment variable or systemd credential)")
            return ""
        return value

    return _PLACEHOLDER.sub(substitute, text)


def _resolve(base: Path, text: str) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else base / path


def parse_config(doc: Mapping[str, Any], file: str, base: Path,
                 environ: Mapping[str, str] | None = None, *, resolve_secrets: bool = True) -> Settings:
    """Validate a parsed TOML document. Raises ErrorGroup with every problem found.

    ``resolve_secrets=False``: read no secret at all (no Okta secret, metrics token or channel URL; the
    settings then hold none), for commands that need none; everything else is validated as usual.
    """
    env: Mapping[str, str] = (os.environ if environ is None else environ) if resolve_secrets else {}
    errors: list[ConfigError] = []
    r = _Reader(errors, file)
    r.unknown(doc, set(SECTION_KEYS), "")

    t = r.table(doc, "server", "server")
    r.unknown(t, SECTION_KEYS["server"], "server")
    server = ServerSettings(
        host=r.get(t, "host", "server", str, "127.0.0.1", _non_empty),
        port=r.get(t, "port", "server", int, 8080, _between(1, 65535)),
        max_body_bytes=r.get(t, "max_body_bytes", "server", int, 1024 * 1024, _between(1024, 256 * 1024 * 1024)),
    )

    t = r.table(doc, "okta", "okta")
    r.unknown(t, SECTION_KEYS["okta"], "okta")
    current = _secret_from(SECRET_ENV, SECRET_CREDENTIAL, env)
    previous = _secret_from(PREVIOUS_SECRET_ENV, PREVIOUS_SECRET_CREDENTIAL, env)
    org_url = r.get(t, "org_url", "okta", str, None, _org_url)
    okta = OktaSettings(
        auth_header=r.get(t, "auth_header", "okta", str, "Authorization", _header_name),
        allow_unauthenticated=r.get(t, "allow_unauthenticated", "okta", bool, False),
        org_url=org_url.rstrip("/") if org_url else None,
        secrets=tuple(s for s in (current, previous) if s is not None),
    )
    if resolve_secrets and previous is not None and current is None:
        r.fail("okta", f"{PREVIOUS_SECRET_ENV} is set but {SECRET_ENV} is not; set the new secret too")

    t = r.table(doc, "storage", "storage")
    r.unknown(t, SECTION_KEYS["storage"], "storage")
    storage = StorageSettings(
        path=_resolve(base, r.get(t, "path", "storage", str, "sentinel.db", _non_empty)),
        retention_days=float(r.get(t, "retention_days", "storage", float, 90, _between(0, 36500))))

    t = r.table(doc, "rules", "rules")
    r.unknown(t, SECTION_KEYS["rules"], "rules")
    rules = RulesSettings(
        paths=tuple(_resolve(base, p) for p in r.string_list(t, "paths", "rules", ("rules",))),
        max_groups=r.get(t, "max_groups", "rules", int, 100_000, _between(1, 10_000_000)),
    )

    t = r.table(doc, "delivery", "delivery")
    r.unknown(t, SECTION_KEYS["delivery"], "delivery")
    delivery = DeliverySettings(
        retry_budget=timedelta(hours=r.get(t, "retry_budget_hours", "delivery", float, 24.0, _positive)),
        timezone=r.get(t, "timezone", "delivery", str, None, _timezone),
        fallback_channel=r.get(t, "fallback_channel", "delivery", str, "fallback", _non_empty),
    )

    channels: dict[str, ChannelSettings] = {}
    for name, table in r.table(doc, "channels", "channels").items():
        path = f"channels.{name}"
        if not _NAME.match(name):
            r.fail(path, "channel names use letters, digits, '-' and '_' only")
            continue
        if not isinstance(table, dict):
            r.fail(path, f"must be a table, not {_type_name(table)}")
            continue
        r.unknown(table, CHANNEL_KEYS, path)
        kind = r.get(table, "kind", path, str, "apprise", _one_of(*CHANNEL_KINDS))
        raw_urls = r.string_list(table, "urls", path, ())
        urls = tuple(Secret(_expand(u, f"{path}.urls[{i}]", r, env)) for i, u in enumerate(raw_urls)
                     ) if resolve_secrets else ()
        log_path = r.get(table, "path", path, str, None, _non_empty)
        declared_kind = table.get("kind", "apprise")
        if declared_kind == "apprise" and not raw_urls and "urls" not in table:
            r.fail(path, "an apprise channel needs 'urls' (a list of Apprise URLs)")
        if declared_kind == "log" and log_path is None:
            r.fail(path, "a log channel needs 'path' (the JSON-lines file alerts are appended to)")
        channels[name] = ChannelSettings(
            name=name, kind=kind, urls=urls,
            min_severity=Severity.parse(r.get(table, "min_severity", path, str, "info", _severity)),
            path=_resolve(base, log_path) if log_path else None,
            secret_names=tuple(dict.fromkeys(n for u in raw_urls for n in _PLACEHOLDER.findall(u))),
        )

    t = r.table(doc, "monitor", "monitor")
    r.unknown(t, SECTION_KEYS["monitor"], "monitor")
    monitor = MonitorSettings(
        feed_silence_minutes=r.get(t, "feed_silence_minutes", "monitor", int, 0, _non_negative))

    t = r.table(doc, "metrics", "metrics")
    r.unknown(t, SECTION_KEYS["metrics"], "metrics")
    require_token = r.get(t, "require_token", "metrics", bool, False)
    token = _secret_from(METRICS_TOKEN_ENV, METRICS_TOKEN_CREDENTIAL, env)
    if resolve_secrets and require_token and token is None:
        r.fail("metrics.require_token", f"is true but no token is set ({METRICS_TOKEN_ENV} or credential "
                                        f"{METRICS_TOKEN_CREDENTIAL})")
    metrics = MetricsSettings(
        enabled=r.get(t, "enabled", "metrics", bool, True),
        listen=r.get(t, "listen", "metrics", str, None, _listen),
        require_token=require_token, token=token,
    )

    t = r.table(doc, "logging", "logging")
    r.unknown(t, SECTION_KEYS["logging"], "logging")
    logging_settings = LoggingSettings(
        format=r.get(t, "format", "logging", str, "text", _one_of("text", "json")),
        level=r.get(t, "level", "logging", str, "INFO", _one_of("DEBUG", "INFO", "WARNING", "ERROR")),
    )

    if errors:
        raise ErrorGroup(errors)
    return Settings(source=Path(file), server=server, okta=okta, storage=storage, rules=rules,
                    delivery=delivery, channels=channels, monitor=monitor, metrics=metrics,
                    logging=logging_settings)


def secret_variables(settings: Settings) -> frozenset[str]:
    """The environment variables that hold (or lead to) a secret of these settings."""
    named = (name for channel in settings.channels.values() for name in channel.secret_names)
    return frozenset({SECRET_ENV, PREVIOUS_SECRET_ENV, METRICS_TOKEN_ENV, "CREDENTIALS_DIRECTORY", *named})


def secret_values(settings: Settings) -> list[str]:
    """Every secret these settings hold (the previous Okta secret too, while set): what logs must mask."""
    secrets = [s.reveal() for s in settings.okta.secrets]
    if settings.metrics.token is not None:
        secrets.append(settings.metrics.token.reveal())
    secrets += [url.reveal() for channel in settings.channels.values() for url in channel.urls]
    return secrets


def load_config(path: Path | str, environ: Mapping[str, str] | None = None, *,
                resolve_secrets: bool = True) -> Settings:
    """Read and validate a config file. Raises ErrorGroup (every problem, with its location).
    ``resolve_secrets=False``: see :func:`parse_config`."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ErrorGroup([ConfigError("no such file", str(file))]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ErrorGroup([ConfigError(f"cannot read: {e.__class__.__name__}", str(file))]) from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ErrorGroup([ConfigError(f"invalid TOML: {e}", str(file))]) from None
    return parse_config(doc, str(file), file.resolve().parent, environ, resolve_secrets=resolve_secrets)

