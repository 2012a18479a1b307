"""``sentinel.toml`` → frozen settings.

Every problem is collected and reported at once as ``file: key.path: message``. Relative paths are
resolved against the config file's folder. Secrets come from the environment or systemd credentials
(``$CREDENTIALS_DIRECTORY``), never from the file, and are held as :class:`Secret`. Commands that use no
secret (listing events, alerts, rules) load with ``resolve_secrets=False``: no secret is read, so a missing
one is no error there; ``serve`` and ``check`` resolve them and fail on a missing one.

The keys themselves (type, default, check, meaning) are one table, :mod:`sentinel.config_keys`; this module
reads a file against it and builds the settings.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from sentinel.config_keys import CHANNEL_KEYS, CHANNEL_SECTION, SECTION_KEYS, ConfigKey, duration_of
from sentinel.config_keys import key as config_key
from sentinel.durations import duration_seconds
from sentinel.errors import ConfigError, ErrorGroup
from sentinel.maintenance import parse_windows
from sentinel.model import Severity
from sentinel.secret import Secret
from sentinel.settings import (
    ChannelSettings,
    DeliverySettings,
    DetectorSettings,
    LoggingSettings,
    MetricsSettings,
    MonitorSettings,
    OktaApiSettings,
    OktaSettings,
    RulesSettings,
    ServerSettings,
    Settings,
    StorageSettings,
    UiSettings,
)

__all__ = ["ChannelSettings", "DeliverySettings", "DetectorSettings", "LoggingSettings", "MetricsSettings",
           "MonitorSettings", "OktaApiSettings", "OktaSettings", "RulesSettings", "ServerSettings", "Settings",
           "StorageSettings", "UiSettings", "load_config", "parse_config", "secret_from", "secret_values",
           "secret_variables"]

SECRET_ENV = "SENTINEL_OKTA_SECRET"
PREVIOUS_SECRET_ENV = "SENTINEL_OKTA_SECRET_PREVIOUS"
SECRET_CREDENTIAL = "okta-secret"
PREVIOUS_SECRET_CREDENTIAL = "okta-secret-previous"
METRICS_TOKEN_ENV = "SENTINEL_METRICS_TOKEN"
METRICS_TOKEN_CREDENTIAL = "metrics-token"
API_TOKEN_ENV = "SENTINEL_OKTA_API_TOKEN"
API_TOKEN_CREDENTIAL = "okta-api-token"
API_PRIVATE_KEY_ENV = "SENTINEL_OKTA_API_PRIVATE_KEY"
API_PRIVATE_KEY_CREDENTIAL = "okta-api-private-key"
UI_PASSWORD_ENV = "SENTINEL_UI_PASSWORD"
UI_PASSWORD_CREDENTIAL = "ui-password"

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Tables inside a section: accepted as keys of their parent, read on their own (not listed as its keys).
_SUBTABLES = {parent: frozenset(name.partition(".")[2] for name in SECTION_KEYS if name.startswith(parent + "."))
              for parent in SECTION_KEYS if "." not in parent}


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

    def unknown(self, table: Mapping[str, Any], allowed: set[str] | frozenset[str], path: str,
                subtables: frozenset[str] = frozenset()) -> None:
        for key in table:
            if key not in allowed and key not in subtables:
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

    def take(self, table: Mapping[str, Any], path: str, key: ConfigKey) -> Any:
        """The value of one key of the table (its default if absent or invalid), checked as KEYS says."""
        if key.kind is list:
            return self.string_list(table, key.name, path, tuple(key.default or ()))
        return self.get(table, key.name, path, key.kind, key.default, key.check)

    def section(self, doc: Mapping[str, Any], name: str) -> Callable[[str], Any]:
        """A reader of the keys of ``[name]`` (unknown keys reported)."""
        t = self.table(doc, name, name)
        self.unknown(t, SECTION_KEYS[name], name, _SUBTABLES.get(name, frozenset()))
        return lambda key_name: self.take(t, name, config_key(name, key_name))

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


def _credential(name: str, credentials_dir: str | None) -> str | None:
    if not credentials_dir:
        return None
    candidate = Path(credentials_dir) / name
    try:
        return candidate.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def secret_from(env_name: str, credential: str, environ: Mapping[str, str]) -> Secret | None:
    """The environment variable ``env_name``, else the systemd credential ``credential``; None if neither."""
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


def _channel(r: _Reader, name: str, table: Any, base: Path, env: Mapping[str, str],
             resolve_secrets: bool) -> ChannelSettings | None:
    path = f"channels.{name}"
    if not _NAME.match(name):
        r.fail(path, "channel names use letters, digits, '-' and '_' only")
        return None
    if not isinstance(table, dict):
        r.fail(path, f"must be a table, not {_type_name(table)}")
        return None
    r.unknown(table, CHANNEL_KEYS, path)

    def get(key_name: str) -> Any:
        return r.take(table, path, config_key(CHANNEL_SECTION, key_name))

    kind = get("kind")
    raw_urls = get("urls")
    urls = tuple(Secret(_expand(u, f"{path}.urls[{i}]", r, env)) for i, u in enumerate(raw_urls)
                 ) if resolve_secrets else ()
    log_path = get("path")
    declared_kind = table.get("kind", "apprise")
    if declared_kind == "apprise" and not raw_urls and "urls" not in table:
        r.fail(path, "an apprise channel needs 'urls' (a list of Apprise URLs)")
    if declared_kind == "log" and log_path is None:
        r.fail(path, "a log channel needs 'path' (the JSON-lines file alerts are appended to)")
    return ChannelSettings(
        name=name, kind=kind, urls=urls,
        min_severity=Severity.parse(get("min_severity")),
        path=_resolve(base, log_path) if log_path else None,
        secret_names=tuple(dict.fromkeys(n for u in raw_urls for n in _PLACEHOLDER.findall(u))),
        storm_limit=get("storm_limit"), storm_window=duration_of(get("storm_window")),
        send_resolved=get("send_resolved"),
    )


def _okta(r: _Reader, doc: Mapping[str, Any], env: Mapping[str, str], resolve_secrets: bool) -> OktaSettings:
    get = r.section(doc, "okta")
    current = secret_from(SECRET_ENV, SECRET_CREDENTIAL, env)
    previous = secret_from(PREVIOUS_SECRET_ENV, PREVIOUS_SECRET_CREDENTIAL, env)
    org_url = get("org_url")
    okta = OktaSettings(
        auth_header=get("auth_header"),
        allow_unauthenticated=get("allow_unauthenticated"),
        org_url=org_url.rstrip("/") if org_url else None,
        secrets=tuple(s for s in (current, previous) if s is not None),
    )
    if resolve_secrets and previous is not None and current is None:
        r.fail("okta", f"{PREVIOUS_SECRET_ENV} is set but {SECRET_ENV} is not; set the new secret too")
    return okta


def _okta_api(r: _Reader, doc: Mapping[str, Any], org_url: str | None) -> OktaApiSettings | None:
    okta = doc.get("okta")
    if not isinstance(okta, dict) or "api" not in okta:
        return None
    table = r.table(okta, "api", "okta.api")
    r.unknown(table, SECTION_KEYS["okta.api"], "okta.api")

    def get(key_name: str) -> Any:
        return r.take(table, "okta.api", config_key("okta.api", key_name))

    base_url = get("base_url") or org_url
    if base_url is None and "base_url" not in table and isinstance(okta["api"], dict):
        r.fail("okta.api", "polling needs the org's address: set base_url here or [okta] org_url")
    return OktaApiSettings(
        base_url=(base_url or "").rstrip("/"), poll_interval_seconds=get("poll_interval_seconds"),
        backfill_hours=float(get("backfill_hours")), client_id=get("client_id"), key_id=get("key_id"),
        rate_limit_share=float(get("rate_limit_share")), max_lag_seconds=get("max_lag_seconds"))


def _metrics(r: _Reader, doc: Mapping[str, Any], env: Mapping[str, str], resolve_secrets: bool) -> MetricsSettings:
    get = r.section(doc, "metrics")
    require_token = get("require_token")
    token = secret_from(METRICS_TOKEN_ENV, METRICS_TOKEN_CREDENTIAL, env)
    if resolve_secrets and require_token and token is None:
        r.fail("metrics.require_token", f"is true but no token is set ({METRICS_TOKEN_ENV} or credential "
                                        f"{METRICS_TOKEN_CREDENTIAL})")
    return MetricsSettings(enabled=get("enabled"), listen=get("listen"), require_token=require_token, token=token)


def _ui(r: _Reader, doc: Mapping[str, Any], env: Mapping[str, str], resolve_secrets: bool) -> UiSettings:
    get = r.section(doc, "ui")
    listen = get("listen")
    password = secret_from(UI_PASSWORD_ENV, UI_PASSWORD_CREDENTIAL, env)
    if resolve_secrets and listen is not None and password is None:
        r.fail("ui.listen", f"the triage page needs a password: set {UI_PASSWORD_ENV} (or the systemd credential "
                            f"{UI_PASSWORD_CREDENTIAL}), or remove [ui] listen")
    return UiSettings(listen=listen, password=password if listen is not None else None)


def parse_config(doc: Mapping[str, Any], file: str, base: Path,
                 environ: Mapping[str, str] | None = None, *, resolve_secrets: bool = True) -> Settings:
    """Validate a parsed TOML document. Raises ErrorGroup with every problem found.

    ``resolve_secrets=False``: read no secret at all (no Okta secret, metrics token or channel URL; the
    settings then hold none), for commands that need none; everything else is validated as usual.
    """
    env: Mapping[str, str] = (os.environ if environ is None else environ) if resolve_secrets else {}
    errors: list[ConfigError] = []
    r = _Reader(errors, file)
    r.unknown(doc, {name for name in SECTION_KEYS if "." not in name}, "")

    get = r.section(doc, "server")
    server = ServerSettings(host=get("host"), port=get("port"), max_body_bytes=get("max_body_bytes"))

    okta = _okta(r, doc, env, resolve_secrets)
    okta_api = _okta_api(r, doc, okta.org_url)

    get = r.section(doc, "storage")
    storage = StorageSettings(path=_resolve(base, get("path")), retention_days=float(get("retention_days")))

    get = r.section(doc, "rules")
    rules = RulesSettings(paths=tuple(_resolve(base, p) for p in get("paths")), max_groups=get("max_groups"),
                          allowed_lateness=timedelta(seconds=duration_seconds(get("allowed_lateness"))))

    get = r.section(doc, "delivery")
    delivery = DeliverySettings(
        retry_budget=timedelta(hours=get("retry_budget_hours")),
        timezone=get("timezone"),
        fallback_channel=get("fallback_channel"),
    )

    channels: dict[str, ChannelSettings] = {}
    for name, table in r.table(doc, "channels", "channels").items():
        channel = _channel(r, name, table, base, env, resolve_secrets)
        if channel is not None:
            channels[name] = channel

    get = r.section(doc, "monitor")
    monitor = MonitorSettings(feed_silence_minutes=get("feed_silence_minutes"))

    get = r.section(doc, "detector")
    detector = DetectorSettings(cpu_priority=get("cpu_priority"), io_priority=get("io_priority"),
                                inbox_checkpoint=get("inbox_checkpoint"), yield_ms=float(get("yield_ms")))

    metrics = _metrics(r, doc, env, resolve_secrets)

    ui = _ui(r, doc, env, resolve_secrets)

    get = r.section(doc, "logging")
    logging_settings = LoggingSettings(format=get("format"), level=get("level"))

    windows, problems = parse_windows(doc.get("maintenance", []))
    for where, message in problems:
        r.fail(where, message)

    if errors:
        raise ErrorGroup(errors)
    return Settings(source=Path(file), server=server, okta=okta, okta_api=okta_api, storage=storage, rules=rules,
                    delivery=delivery, channels=channels, monitor=monitor, detector=detector, metrics=metrics, ui=ui,
                    logging=logging_settings, maintenance=tuple(windows))


def secret_variables(settings: Settings) -> frozenset[str]:
    """The environment variables that hold (or lead to) a secret of these settings."""
    named = (name for channel in settings.channels.values() for name in channel.secret_names)
    return frozenset({SECRET_ENV, PREVIOUS_SECRET_ENV, METRICS_TOKEN_ENV, API_TOKEN_ENV, API_PRIVATE_KEY_ENV,
                      UI_PASSWORD_ENV, "CREDENTIALS_DIRECTORY", *named})


def secret_values(settings: Settings) -> list[str]:
    """Every secret these settings hold (the previous Okta secret too, while set): what logs must mask."""
    secrets = [s.reveal() for s in settings.okta.secrets]
    if settings.metrics.token is not None:
        secrets.append(settings.metrics.token.reveal())
    if settings.ui.password is not None:
        secrets.append(settings.ui.password.reveal())
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
    except RecursionError:  # tomllib recurses once per nesting level
        raise ErrorGroup([ConfigError("invalid TOML: nested too deeply", str(file))]) from None
    return parse_config(doc, str(file), file.resolve().parent, environ, resolve_secrets=resolve_secrets)

