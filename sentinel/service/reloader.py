"""SIGHUP: re-read config and rules; hand them to the detector, the dispatchers and the monitor only
if everything is valid. Sections a running process cannot change wait for the next restart."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from sentinel import redaction
from sentinel.config import Settings, secret_values
from sentinel.delivery.apprise_channel import build_channels
from sentinel.errors import ErrorGroup, SentinelError
from sentinel.rules.evaluator import RuleEvaluator
from sentinel.rules.model import Rule
from sentinel.rules.sources import polled_event_types
from sentinel.service import systemd
from sentinel.service.detector_runner import DetectorRunner
from sentinel.service.dispatchers import Dispatchers
from sentinel.service.health import Health
from sentinel.service.metrics import Metrics
from sentinel.service.monitor_loop import Monitor
from sentinel.service.poller import Poller
from sentinel.service.ruleset import log_lint, log_routing

log = logging.getLogger("sentinel.service")
# Settings a reload cannot change in a running process.
RESTART_ONLY = ("server", "okta", "okta_api", "storage", "metrics", "ui")


class Reloader:
    def __init__(self, settings: Settings, reload_settings: Callable[[], Settings] | None, *,
                 detector: DetectorRunner, dispatchers: Dispatchers, monitor: Monitor, health: Health,
                 metrics: Metrics, poller: Poller | None = None) -> None:
        self.settings = settings
        self._reload_settings = reload_settings
        self._detector = detector
        self._dispatchers = dispatchers
        self._monitor = monitor
        self._health = health
        self._metrics = metrics
        self._poller = poller
        self._lock = asyncio.Lock()
        self.rules: tuple[Rule, ...] = ()  # the rules in use (set by compose, then by each reload applied)
        self.last_reload_at: datetime | None = None  # when a reload last finished, applied or not

    async def reload(self) -> bool:
        """Re-read config and rules; swap them in only if everything is valid. Never drops an event:
        the detector finishes its batch with the old rules and takes the new ones for the next. A reload
        that fails, or crashes, leaves the previous configuration running and says so (``/readyz``)."""
        if self._reload_settings is None:
            return False
        async with self._lock:
            systemd.reloading("reloading configuration and rules")
            self.last_reload_at = datetime.now(UTC)
            try:
                return await self._reload(self._reload_settings)
            except Exception:  # a bug or an input nothing foresaw: logged, and the daemon runs on
                log.exception("reload crashed; running on the previous configuration")
                if not self._dispatchers.running():  # stopped before the crash: alerts must still go out
                    self._dispatchers.start()
                return self._failed()

    def _failed(self) -> bool:
        self._health.last_reload_ok = False
        redaction.SECRETS.discard_staged()  # the previous settings stay in use, and masked
        self._metrics.reload.labels("failed").inc()
        systemd.ready("reload failed; running on the previous configuration")
        return False

    async def _reload(self, reload_settings: Callable[[], Settings]) -> bool:
        try:
            settings = reload_settings()
            redaction.SECRETS.stage(secret_values(settings))
            evaluator = RuleEvaluator.from_settings(settings.rules)
            channels = build_channels(settings)
        except SentinelError as e:
            for error in e.errors if isinstance(e, ErrorGroup) else (e,):
                log.error("reload rejected: %s", error)
            return self._failed()
        for section in RESTART_ONLY:
            if getattr(settings, section) != getattr(self.settings, section):
                log.warning("reload: [%s] changed; it takes effect at the next restart", section)
        settings = _keep_restart_only(settings, self.settings)
        applied, problem = await self._detector.reload(settings, evaluator)
        if not applied:
            log.error("reload rejected by the detector process: %s", problem)
            return self._failed()
        log_lint(evaluator, polling=settings.okta_api is not None)
        log_routing(settings, evaluator)
        await self._dispatchers.stop()
        self.settings = settings
        self.rules = evaluator.ruleset.rules
        self._dispatchers.use(channels, settings.delivery, settings.channels)
        redaction.SECRETS.apply_staged()  # these settings are in use: mask their secrets, no older ones
        self._monitor.use(settings)
        if self._poller is not None:
            self._poller.use_event_types(polled_event_types(evaluator.ruleset))
        self._health.rule_count = evaluator.rule_count
        self._dispatchers.start()
        self._metrics.rules_loaded.set(evaluator.rule_count)
        self._health.last_reload_ok = True
        self._metrics.reload.labels("ok").inc()
        log.info("reloaded: %d rules, %d channels", evaluator.rule_count, len(channels))
        systemd.ready(f"running: {evaluator.rule_count} rules")
        return True


def _keep_restart_only(new: Settings, old: Settings) -> Settings:
    return dataclasses.replace(new, **{section: getattr(old, section) for section in RESTART_ONLY})
