"""Channels: send one alert to one configured channel and say how it went. Failure is a value.

An Apprise channel holds one ``apprise.Apprise`` object built at startup, one service per URL, each
tagged with its position so a retry goes only to the URLs that failed. Each URL gets the message
shape of its service: Slack Block Kit (``blocks=yes``), email HTML (Apprise derives the text part),
PagerDuty with a per-alert dedup key, severity and custom details (these are URL parameters in
Apprise, so a per-alert service is built from the parsed configured URL, never from URL text), and
a title plus plain text for anything else (``json://``, chat services).

Apprise's own retry is off; tenacity retries each attempt with exponential backoff and jitter.
Long outages are the outbox's job (``next_attempt_at`` in the store), not this module's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import apprise
from apprise.plugins.email import NotifyEmail
from apprise.plugins.pagerduty import NotifyPagerDuty
from apprise.plugins.slack import NotifySlack
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter
from tenacity.wait import wait_base

from sentinel import redaction
from sentinel.delivery.log_channel import LogChannel
from sentinel.errors import ConfigError, ErrorGroup
from sentinel.model import Alert, DeliveryOutcome, Severity
from sentinel.render.message import (
    DEFAULT_OPTIONS,
    RenderOptions,
    clean,
    email_message,
    pagerduty_message,
    resolved_message,
    slack_message,
    text_message,
)

log = logging.getLogger(__name__)
_url_to_dict: Any = apprise.plugins.url_to_dict  # untyped in Apprise
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]{0,20})://")


class Channel(Protocol):
    name: str
    kind: str
    min_severity: Severity

    def describe(self) -> list[str]:
        """The channel's destinations, masked."""
        ...

    def formats(self) -> list[tuple[str, str]]:
        """Each destination (masked) with the message format it gets: slack, email, pagerduty, text or log."""
        ...

    async def send(self, alert: Alert) -> DeliveryOutcome: ...

    async def send_each(self, alert: Alert) -> list[tuple[str, DeliveryOutcome]]:
        """One attempt per destination, no retry (``sentinel notify test``)."""
        ...

    async def resolve(self, alert: Alert, notes: bool) -> DeliveryOutcome:
        """resolve_after closed the alert's group: PagerDuty destinations get a ``resolve`` with the alert's
        dedup key; the others a short "resolved" note when ``notes`` (the channel's send_resolved)."""
        ...


class TransientSendError(Exception):
    """An attempt failed in a way a later attempt may not (Apprise FAILURE or TIMEOUT)."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    wait: wait_base = field(default_factory=lambda: wait_exponential_jitter(multiplier=1, max=30, jitter=1))
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep  # tests inject a recorder: no sleeping
    timeout: float = 30.0  # per Apprise call; a hung worker thread is abandoned, not awaited


def mask_unloadable(raw: str) -> str:
    """A URL Apprise cannot load has no privacy form: show only its scheme."""
    m = _SCHEME.match(raw.strip())
    return f"{m.group(1)}://****" if m else "****"


@contextlib.contextmanager
def _hiding(raw: str) -> Iterator[None]:
    """While a URL is parsed, every piece of it is masked in Apprise's logs (it may not load)."""
    with redaction.SECRETS.hiding(redaction.url_pieces(raw)):
        yield


@dataclass
class _Target:
    index: int
    tag: str
    kind: str  # slack | pagerduty | email | text
    masked: str
    args: dict[str, Any] = field(default_factory=dict, repr=False)  # parsed URL, for per-alert services


class AppriseChannel:
    kind = "apprise"

    def __init__(self, name: str, urls: Sequence[str], min_severity: Severity = Severity.INFO,
                 options: RenderOptions = DEFAULT_OPTIONS, policy: RetryPolicy = RetryPolicy(),
                 location: str = "") -> None:
        redaction.install()
        self.name, self.min_severity, self.options, self.policy = name, min_severity, options, policy
        self.asset = apprise.AppriseAsset(async_mode=True)
        self._apprise = apprise.Apprise(asset=self.asset)
        self._targets: list[_Target] = []
        errors: list[ConfigError] = []
        prefix = f"{location}: " if location else ""
        for i, raw in enumerate(urls):
            where = f"{prefix}channels.{name}.urls[{i}]"
            tag = f"sentinel-{i}"
            with _hiding(raw):
                args = _url_to_dict(raw)
                plugin: Any = apprise.Apprise.instantiate(dict(args), asset=self.asset, tag=tag) if args else None
            if plugin is None:
                errors.append(ConfigError(f"Apprise cannot load {mask_unloadable(raw)}", where))
                continue
            masked = plugin.url(privacy=True)
            redaction.SECRETS.stage(redaction.secret_parts(raw, masked))
            plugin.retry = 0  # retries are counted in one place: tenacity and the outbox
            kind = "text"
            if isinstance(plugin, NotifySlack):
                kind = "slack"
                if not plugin.template:
                    plugin.use_blocks = True  # Block Kit: header + mrkdwn section, colour by severity
                # Apprise's footer and icon are noise on a phone; kept only when the URL asks for them.
                if "footer=" not in raw.lower():
                    plugin.include_footer = False
                if "image=" not in raw.lower():
                    plugin.include_image = False
            elif isinstance(plugin, NotifyPagerDuty):
                kind = "pagerduty"
            elif isinstance(plugin, NotifyEmail):
                kind = "email"
            self._apprise.add(plugin)
            self._targets.append(_Target(i, tag, kind, masked, args if kind == "pagerduty" else {}))
        if errors:
            raise ErrorGroup(errors)

    def describe(self) -> list[str]:
        return [t.masked for t in self._targets]

    def formats(self) -> list[tuple[str, str]]:
        return [(t.masked, t.kind) for t in self._targets]

    async def send(self, alert: Alert) -> DeliveryOutcome:
        return await self._send_all(list(self._targets), alert, self._send_target)

    async def resolve(self, alert: Alert, notes: bool) -> DeliveryOutcome:
        targets = [t for t in self._targets if notes or t.kind == "pagerduty"]
        if not targets:  # e.g. the fallback's copy of a dead resolve, on a channel that takes none
            return DeliveryOutcome(ok=True, detail="no destination of this channel takes a resolve")
        return await self._send_all(targets, alert, self._resolve_target)

    async def _send_all(self, targets: list[_Target], alert: Alert,
                        send: Callable[[_Target, Alert], Awaitable[tuple[bool, str]]]) -> DeliveryOutcome:
        pending = list(targets)
        details: dict[int, str] = {}
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(TransientSendError), wait=self.policy.wait,
            stop=stop_after_attempt(max(1, self.policy.attempts)), sleep=self.policy.sleep, reraise=True,
        )
        with contextlib.suppress(TransientSendError):
            async for attempt in retrying:
                with attempt:
                    results = await asyncio.gather(*(send(t, alert) for t in pending))
                    failed = []
                    for target, (ok, detail) in zip(pending, results, strict=True):
                        details[target.index] = detail
                        if not ok:
                            failed.append(target)
                    pending = failed
                    if pending:
                        raise TransientSendError(len(pending))
        detail = "; ".join(details[i] for i in sorted(details)) or "no destinations"
        return DeliveryOutcome(ok=not pending and bool(targets), detail=redaction.redact(detail))

    async def send_each(self, alert: Alert) -> list[tuple[str, DeliveryOutcome]]:
        results = await asyncio.gather(*(self._send_target(t, alert) for t in self._targets))
        return [(t.masked, DeliveryOutcome(ok=ok, detail=redaction.redact(detail)))
                for t, (ok, detail) in zip(self._targets, results, strict=True)]

    async def _send_target(self, target: _Target, alert: Alert, resolve: bool = False) -> tuple[bool, str]:
        try:
            result = await (self._notify_resolved(target, alert) if resolve else self._notify(target, alert))
        except Exception as e:  # a plugin bug must not kill the dispatcher; the error is recorded
            log.warning("channel %s: %s raised %s", self.name, target.masked, type(e).__name__)
            return False, f"{target.masked}: error {type(e).__name__}"
        status = result.status.name.lower()
        if result:
            return True, f"{target.masked}: {status}"
        reasons = [e.message for e in result.logs() if e.level in ("WARNING", "ERROR")]
        why = f" ({clean(reasons[-1], 200)})" if reasons else ""
        return False, f"{target.masked}: {status}{why}"

    async def _resolve_target(self, target: _Target, alert: Alert) -> tuple[bool, str]:
        return await self._send_target(target, alert, resolve=True)

    async def _pagerduty(self, target: _Target, **args: Any) -> Any:
        """A PagerDuty service built for this one event (per-alert dedup key, action, details)."""
        once = apprise.Apprise(asset=self.asset)
        plugin = apprise.Apprise.instantiate({**target.args, **args}, asset=self.asset, tag=target.tag)
        if plugin is None:
            raise TransientSendError("pagerduty service could not be built")
        plugin.retry = 0
        once.add(plugin)
        return once

    async def _notify_resolved(self, target: _Target, alert: Alert) -> Any:
        common: dict[str, Any] = {"tag": target.tag, "timeout": self.policy.timeout}
        note = resolved_message(alert, self.options)
        if target.kind == "pagerduty":
            once = await self._pagerduty(target, action="resolve", dedup=pagerduty_message(alert, self.options)
                                         .dedup_key)
            return await once.async_notify(title=note.title, body=note.body, body_format=apprise.NotifyFormat.TEXT,
                                           notify_type=apprise.NotifyType.SUCCESS, **common)
        return await self._apprise.async_notify(title=note.title, body=note.body,
                                                body_format=apprise.NotifyFormat.TEXT,
                                                notify_type=apprise.NotifyType.SUCCESS, **common)

    async def _notify(self, target: _Target, alert: Alert) -> Any:
        common: dict[str, Any] = {"tag": target.tag, "timeout": self.policy.timeout}
        if target.kind == "slack":
            s = slack_message(alert, self.options)
            return await self._apprise.async_notify(
                title=s.header, body=s.text, notify_type=apprise.NotifyType(s.notify_type),
                body_format=apprise.NotifyFormat.MARKDOWN, **common)
        if target.kind == "email":
            m = email_message(alert, self.options)
            return await self._apprise.async_notify(
                title=m.subject, body=m.html, body_format=apprise.NotifyFormat.HTML, **common)
        if target.kind == "pagerduty":
            p = pagerduty_message(alert, self.options)
            once = await self._pagerduty(target, details={**(target.args.get("details") or {}), **p.details},
                                         dedup=p.dedup_key, severity=p.severity)
            return await once.async_notify(title=p.title, body=p.body, body_format=apprise.NotifyFormat.TEXT,
                                           **common)
        t = text_message(alert, self.options)
        return await self._apprise.async_notify(
            title=t.title, body=t.body, body_format=apprise.NotifyFormat.TEXT, **common)


def render_options(timezone: str | None, org_url: str | None) -> RenderOptions:
    return RenderOptions(tz=ZoneInfo(timezone) if timezone else None, tz_name=timezone, org_url=org_url)


def build_channels(settings: Any, policy: RetryPolicy = RetryPolicy()) -> dict[str, Channel]:
    """One Channel per ``[channels.NAME]``. Raises ErrorGroup naming every URL Apprise cannot load."""
    options = render_options(settings.delivery.timezone, settings.okta.org_url)
    location = str(settings.source) if settings.source else ""
    channels: dict[str, Channel] = {}
    errors: list[Any] = []
    for name, cs in settings.channels.items():
        if cs.kind == "log":
            channels[name] = LogChannel(name, cs.path, cs.min_severity, options)
            continue
        try:
            channels[name] = AppriseChannel(name, [u.reveal() for u in cs.urls], cs.min_severity, options,
                                            policy, location)
        except ErrorGroup as e:
            errors.extend(e.errors)
    if errors:
        raise ErrorGroup(errors)
    return channels
