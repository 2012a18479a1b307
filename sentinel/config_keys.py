"""The configuration keys, in one table: type, default, check and meaning of each.

Parsing (:mod:`sentinel.config`), the settings' defaults and the README's configuration table all come from
:data:`KEYS`; ``tests/test_readme.py`` checks the README's table is :func:`markdown_table` (run it with
``SENTINEL_UPDATE_README=1`` to rewrite the table after changing a key here).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sentinel.durations import duration_seconds
from sentinel.model import Severity

Check = Callable[[Any], "str | None"]
CHANNEL_KINDS = ("apprise", "log")
CHANNEL_SECTION = "channels.NAME"
MAINTENANCE_SECTION = "maintenance"  # an array of tables: [[maintenance]], read by sentinel.maintenance
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")


def _between(low: int, high: int) -> Check:
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


def _one_of(*choices: str) -> Check:
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}, not {v!r}"


def _timezone(v: Any) -> str | None:
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {v!r} (use an IANA name such as 'Europe/Paris')"
    return None


def _duration_up_to(most_seconds: int, shown: str) -> Check:
    def check(v: Any) -> str | None:
        try:
            seconds = duration_seconds(v)
        except ValueError as e:
            return str(e)
        return None if 0 <= seconds <= most_seconds else f"must be between 0s and {shown}, not {v!r}"
    return check


def duration_of(text: str) -> timedelta:
    """``"5m"``, ``"1h30m"`` → a timedelta (the one duration syntax, :mod:`sentinel.durations`)."""
    return timedelta(seconds=duration_seconds(text))


def _duration(v: Any) -> str | None:
    try:
        return None if duration_of(v) > timedelta(0) else f"must be longer than 0, not {v!r}"
    except ValueError as e:
        return str(e)


def _org_url(v: Any) -> str | None:
    if not re.fullmatch(r"https://[A-Za-z0-9.-]+(:\d+)?/?", v):
        return f"must be the https:// address of the Okta org, such as https://example.okta.com, not {v!r}"
    return None


def _api_base_url(v: Any) -> str | None:
    # https only: the API credential travels in every request. Plain http is for a loopback test server.
    if re.fullmatch(r"https://[A-Za-z0-9.-]+(:\d+)?/?", v):
        return None
    if re.fullmatch(r"http://(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|localhost|\[::1\])(:\d+)?/?", v):
        return None
    return f"must be the https:// address of the Okta org (http:// only for a loopback address), not {v!r}"


def _share(v: Any) -> str | None:
    return None if 0.1 <= v <= 1.0 else f"must be between 0.1 and 1.0, not {v}"


def _header_name(v: Any) -> str | None:
    return None if _HEADER_NAME.match(v) else f"{v!r} is not a valid HTTP header name"


def _listen(v: Any) -> str | None:
    host, _, port = v.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        return f"must be 'host:port', not {v!r}"
    return None


@dataclass(frozen=True)
class ConfigKey:
    """One key of ``sentinel.toml``. ``default`` is the value as it would be written in the file (None:
    unset); ``kind`` is list for an array of non-empty strings."""

    section: str  # "server", or "channels.NAME" for the keys of each channel table
    name: str
    kind: type
    default: Any
    check: Check | None
    doc: str

    @property
    def title(self) -> str:
        return f"[{self.section}] {self.name}"


KEYS: tuple[ConfigKey, ...] = (
    ConfigKey("server", "host", str, "127.0.0.1", _non_empty,
              "listen address (`sentinel serve --host` overrides)"),
    ConfigKey("server", "port", int, 8080, _between(1, 65535),
              "listen port (`sentinel serve --port` overrides)"),
    ConfigKey("server", "max_body_bytes", int, 1024 * 1024, _between(1024, 256 * 1024 * 1024),
              "largest accepted delivery body"),
    ConfigKey("okta", "auth_header", str, "Authorization", _header_name,
              "the header Okta sends the secret in"),
    ConfigKey("okta", "allow_unauthenticated", bool, False, None,
              "run with no secret (warns at startup); for throwaway tests only"),
    ConfigKey("okta", "org_url", str, None, _org_url,
              "`https://example.okta.com`; enables System Log links in alerts"),
    ConfigKey("okta.api", "base_url", str, None, _api_base_url,
              "the org the System Log is polled from, `https://` (plain `http://` only on loopback, for tests); "
              "default: `[okta] org_url`. The `[okta.api]` table's presence turns polling on"),
    ConfigKey("okta.api", "poll_interval_seconds", int, 60, _between(1, 86_400),
              "pause between polls once caught up"),
    ConfigKey("okta.api", "backfill_hours", float, 24, _between(0, 90 * 24),
              "how far back the first start reads (at most Okta's 90-day retention)"),
    ConfigKey("okta.api", "client_id", str, None, _non_empty,
              "OAuth service app (private_key_jwt, scope `okta.logs.read`); unset: an API token (SSWS)"),
    ConfigKey("okta.api", "key_id", str, None, _non_empty,
              "`kid` of the service app's key, when its JWKS holds several"),
    ConfigKey("okta.api", "rate_limit_share", float, 0.5, _share,
              "share of the org's `/api/v1/logs` rate limit Sentinel may use (0.1–1.0), leaving the rest to "
              "other integrations"),
    ConfigKey("okta.api", "max_lag_seconds", int, 600, _between(1, 7 * 86_400),
              "alert when polling has failed or lagged behind for longer than this"),
    ConfigKey("storage", "path", str, "sentinel.db", _non_empty,
              "the SQLite store; the inbox `NAME.inbox.db` lives beside it"),
    ConfigKey("storage", "retention_days", float, 90, _between(0, 36500),
              "prune events, quarantined elements and delivered alerts stored longer ago than this (Okta's own "
              "System Log keeps 90 days); fractions allowed; `0` keeps everything"),
    ConfigKey("rules", "paths", list, ("rules",), None,
              "rule files or folders of `*.toml`"),
    ConfigKey("rules", "max_groups", int, 100_000, _between(1, 10_000_000),
              "cap on live threshold/throttle groups in memory (about 1 KB each). When full, a group whose windows "
              "ended goes first, else the one furthest from firing, so flooding new groups does not push out a "
              "window about to fire: the attacker has to fill all `max_groups` with groups as close to firing. "
              "Higher costs memory and makes that dearer; evictions are logged and counted per rule "
              "([docs/rules.md](docs/rules.md#thresholds-distinct-counts-and-throttling))"),
    ConfigKey("rules", "allowed_lateness", str, "15m", _duration_up_to(86_400, "24h"),
              "how late (event time behind the newest event seen) an event may arrive and still count toward "
              "threshold and throttle windows: their state is kept this much longer. Covers the System Log "
              "poller's lag behind the hooks; at most `24h` "
              "([docs/rules.md](docs/rules.md#thresholds-distinct-counts-and-throttling))"),
    ConfigKey("delivery", "retry_budget_hours", float, 24, _positive,
              "after this a delivery is dead and reported on the fallback channel"),
    ConfigKey("delivery", "timezone", str, None, _timezone,
              "also show event times in this IANA zone"),
    ConfigKey("delivery", "fallback_channel", str, "fallback", _non_empty,
              "channel that also receives reports of dead deliveries (it gets ordinary alerts by its `min_severity`"
              " too)"),
    ConfigKey(CHANNEL_SECTION, "kind", str, "apprise", _one_of(*CHANNEL_KINDS),
              "`apprise` or `log` (built-in JSON-lines file)"),
    ConfigKey(CHANNEL_SECTION, "urls", list, None, None,
              "Apprise URLs; `${VAR}` parts come from the environment or systemd credentials"),
    ConfigKey(CHANNEL_SECTION, "min_severity", str, "info", _severity,
              "lowest severity routed to this channel"),
    ConfigKey(CHANNEL_SECTION, "path", str, None, _non_empty,
              "for `kind = \"log\"`: the JSON-lines file"),
    ConfigKey(CHANNEL_SECTION, "storm_limit", int, 0, _non_negative,
              "storm control: more alerts than this within `storm_window` and the channel gets one digest of the "
              "rest instead (critical alerts are always sent on their own); `0` = off; e.g. `20` for a chat "
              "channel (log channels never are)"),
    ConfigKey(CHANNEL_SECTION, "storm_window", str, "5m", _duration,
              "storm control's window (`30s`, `5m`, `1h`); the digest is sent when it ends"),
    ConfigKey(CHANNEL_SECTION, "send_resolved", bool, False, None,
              "also send a short \"resolved\" note when a rule's `resolve_after` closes an alert group (PagerDuty "
              "URLs always get their `resolve`)"),
    ConfigKey(MAINTENANCE_SECTION, "name", str, None, _non_empty,
              "each `[[maintenance]]` table is a window; alerts in it are stored silenced, naming it (see "
              "[On call](#on-call))"),
    ConfigKey(MAINTENANCE_SECTION, "rules", list, None, None, "rule ids or globs (`okta-*`) the window covers"),
    ConfigKey(MAINTENANCE_SECTION, "match", dict, None, None,
              "optional table of field path = value; all must hold on one of the alert's events"),
    ConfigKey(MAINTENANCE_SECTION, "weekdays", list, None, None,
              "recurring: the days a window starts on (`[\"mon\", \"fri\"]`; default every day)"),
    ConfigKey(MAINTENANCE_SECTION, "times", str, None, None,
              "recurring: `\"22:00-02:00\"` (may cross midnight; `24:00` ends at midnight)"),
    ConfigKey(MAINTENANCE_SECTION, "timezone", str, "UTC", _timezone, "recurring: the IANA zone of `times`"),
    ConfigKey(MAINTENANCE_SECTION, "start", str, None, None, "one-off: RFC 3339 start (with an offset)"),
    ConfigKey(MAINTENANCE_SECTION, "end", str, None, None, "one-off: RFC 3339 end (with an offset)"),
    ConfigKey("detector", "cpu_priority", str, "low", _one_of("idle", "low", "normal"),
              "the detector process's CPU priority: `low` (nice +5, so intake answers Okta first), `idle` "
              "(SCHED_IDLE, nice 19 where refused: measured no better, and worse with `inbox_checkpoint = "
              "\"restart\"`, whose brief lock on the inbox anything can then preempt; docs/benchmarks.md), `normal`"),
    ConfigKey("detector", "io_priority", str, "normal", _one_of("idle", "normal"),
              "the detector process's disk priority: `idle` (ioprio class idle) or `normal`. Measured: `idle` "
              "delays the inbox checkpoints intake relies on and lengthens intake's tail (docs/benchmarks.md)"),
    ConfigKey("detector", "inbox_checkpoint", str, "restart", _one_of("restart", "passive"),
              "how the detector empties the inbox's WAL: `restart` (passive copies, each synced, up to five a "
              "second while it prunes a backlog, then once a second, or sooner when the WAL is long, more copies "
              "to catch up with intake's appends and a short RESTART so intake's next commit starts the WAL "
              "over: intake copies it only past 64 MB, off its request path) or `passive`"),
    ConfigKey("detector", "yield_ms", float, 0, _between(0, 100),
              "pause between the detector's batches while intake is receiving (0: none)"),
    ConfigKey("monitor", "feed_silence_minutes", int, 0, _non_negative,
              "alert when no event arrived for this long (0 = off)"),
    ConfigKey("metrics", "enabled", bool, True, None,
              "serve `/metrics` (Prometheus)"),
    ConfigKey("metrics", "listen", str, None, _listen,
              "`host:port` to serve `/metrics` on its own address"),
    ConfigKey("metrics", "require_token", bool, False, None,
              "require `Authorization: Bearer $SENTINEL_METRICS_TOKEN`"),
    ConfigKey("ui", "listen", str, None, _listen,
              "`host:port` of the triage page (`/ui/`; absent: off); needs `SENTINEL_UI_PASSWORD` or the "
              "systemd credential `ui-password`"),
    ConfigKey("logging", "format", str, "text", _one_of("text", "json"),
              "`text` or `json` (one object per line)"),
    ConfigKey("logging", "level", str, "INFO", _one_of("DEBUG", "INFO", "WARNING", "ERROR"),
              "`DEBUG`, `INFO`, `WARNING`, `ERROR`"),
)
_BY_NAME = {(k.section, k.name): k for k in KEYS}
# Every key the file may hold, by table ("channels" holds one table of CHANNEL_KEYS per channel; a dotted
# section such as "okta.api" is a table inside its parent, not a top-level one).
SECTION_KEYS: dict[str, frozenset[str]] = {
    section: frozenset(k.name for k in KEYS if k.section == section)
    for section in dict.fromkeys("channels" if k.section == CHANNEL_SECTION else k.section for k in KEYS)
}
CHANNEL_KEYS = frozenset(k.name for k in KEYS if k.section == CHANNEL_SECTION)


def key(section: str, name: str) -> ConfigKey:
    return _BY_NAME[(section, name)]


def default(section: str, name: str) -> Any:
    """A key's default as written in the file (for the settings dataclasses)."""
    return key(section, name).default


def _shown(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, tuple):
        return f"`{json.dumps(list(value))}`"
    return f"`{value}`"


def markdown_table() -> str:
    """The README's configuration table (its header row included), one row per key."""
    rows = ["| key | default | meaning |", "|---|---|---|"]
    rows += [f"| `{k.title}` | {_shown(k.default)} | {k.doc} |" for k in KEYS]
    return "\n".join(rows) + "\n"
