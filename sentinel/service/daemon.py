"""The running daemon's parts and their lifecycle: store, detector, dispatchers, monitor, reload, stop.

The detector runs in this process (``detector_process=False``: tests, one-shot tools) or in a child
process (``sentinel serve``), so that intake keeps a core to itself under a burst.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sentinel import redaction
from sentinel.clock import Clock, SystemClock
from sentinel.config import Settings, secret_values
from sentinel.delivery.apprise_channel import Channel, build_channels
from sentinel.delivery.routing import route, routing_report
from sentinel.errors import ErrorGroup, SentinelError, StoreError
from sentinel.model import Alert, parse_timestamp
from sentinel.rules.evaluator import RuleEvaluator
from sentinel.rules.lint import lint
from sentinel.service import systemd
from sentinel.service.detector import Detector, DetectorReport, apply_report
from sentinel.service.detector_process import DetectorProcess
from sentinel.service.dispatch import Dispatcher, start_dispatchers
from sentinel.service.metrics import Metrics
from sentinel.service.monitor import feed_alert
from sentinel.service.waiting import wait_for_any
from sentinel.store import Store, inbox
from sentinel.store.alerts import record_evaluation
from sentinel.store.deliveries import dead_count
from sentinel.store.events import last_received, pending_summary

log = logging.getLogger("sentinel.service")
MONITOR_INTERVAL_SECONDS = 5.0
DISPATCH_STOP_GRACE_SECONDS = 5.0
READY_CHECK_TIMEOUT_SECONDS = 2.0
# Settings a reload cannot change in a running process.
RESTART_ONLY = ("server", "okta", "storage", "metrics")


@dataclass
class Health:
    """What readiness is made of (``Service.ready_checks``); the details of a failure are logged."""

    store_ok: bool = False  # intake's last write to the store succeeded (set by each delivery stored)
    store_check_ok: bool = True  # the last live check (``/readyz``) could take a write transaction
    rules_loaded: bool = False
    last_reload_ok: bool = True  # the last reload, if any, was applied (not rejected, not crashed)


def check_channels(settings: Settings) -> list[str]:
    """Problems with the configured channels (URLs Apprise cannot load), one line each."""
    try:
        build_channels(settings)
    except ErrorGroup as e:
        return [str(error) for error in e.errors]
    return []


class Service:
    def __init__(self, settings: Settings, clock: Clock | None = None,
                 reload_settings: Callable[[], Settings] | None = None, *, detector_process: bool = False) -> None:
        self.settings = settings
        redaction.SECRETS.stage(secret_values(settings))
        self.clock = clock or SystemClock()
        self.metrics = Metrics()
        self.store = Store(settings.storage.path, clock=self.clock)
        self.health = Health()
        self._reload_settings = reload_settings
        # Rules and channels are built (and checked) before anything starts; both raise ErrorGroup.
        evaluator = RuleEvaluator.from_settings(settings.rules)
        self.channels: dict[str, Channel] = build_channels(settings)
        redaction.SECRETS.apply_staged()  # these settings are in use: mask their secrets, no older ones
        self._log_lint(evaluator)
        self._log_routing(settings, evaluator)
        self.detector = Detector(self.store, evaluator, self._route, self.clock, on_report=self._on_report,
                                 retention=settings.storage.retention)
        self.detector_process = DetectorProcess(settings, self._on_report) if detector_process else None
        self.metrics.watch_readiness(self.ready_checks)
        self._rule_count = evaluator.rule_count
        self.metrics.rules_loaded.set(evaluator.rule_count)
        self._unpacked_upto = 0
        self._wake_scheduled = False
        self._stop = asyncio.Event()
        self._dispatch_stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._dispatch_tasks: list[asyncio.Task[None]] = []
        self.dispatchers: list[Dispatcher] = []
        self._reload_lock = asyncio.Lock()
        self._silent_since: datetime | None = None

    @staticmethod
    def _log_lint(evaluator: RuleEvaluator) -> None:
        for warning in lint(evaluator.ruleset):
            log.warning("rule warning: %s", warning)
        log.info("loaded %d rules", evaluator.rule_count)

    @staticmethod
    def _log_routing(settings: Settings, evaluator: RuleEvaluator) -> None:
        """Alerts that would reach no channel: loud, but the daemon runs on (`sentinel check` fails on
        them). Refusing to start would lose Okta's deliveries too; this way alerts are at least stored."""
        report = routing_report(settings.channels, settings.delivery.fallback_channel, evaluator.ruleset.rules,
                                str(settings.source or ""))
        for problem in report.problems:
            log.error("%s", problem)
        for warning in report.warnings:
            log.warning("%s", warning)

    def _route(self, alert: Alert) -> Sequence[str]:
        return route(alert, self.settings.channels)

    def _alerts_created(self, alert_ids: list[int]) -> None:
        for dispatcher in self.dispatchers:
            dispatcher.wake()

    def _on_report(self, report: DetectorReport) -> None:
        apply_report(self.metrics, report)
        if report.new_alert_ids:
            self._alerts_created(report.new_alert_ids)
        if report.unpacked_upto is not None:
            self._unpacked_upto = max(self._unpacked_upto, report.unpacked_upto)

    def delivery_stored(self) -> None:
        """Intake stored a delivery in the inbox: have the detector unpack it (one wake-up for all the
        deliveries stored in one turn of the event loop)."""
        if not self._wake_scheduled:
            self._wake_scheduled = True
            asyncio.get_running_loop().call_soon(self._wake_detector)

    def _wake_detector(self) -> None:
        self._wake_scheduled = False
        self.metrics.last_event_time.set(self.clock.now().timestamp())  # once a loop turn, not per request
        if self.detector_process is not None:
            self.detector_process.wake()
        else:
            self.detector.wake()

    def _start_dispatchers(self) -> None:
        self._dispatch_stop = asyncio.Event()
        # A fallback that names no channel gets no report rows: nothing would ever send them.
        fallback = self.settings.delivery.fallback_channel
        self.dispatchers, self._dispatch_tasks = start_dispatchers(
            self.channels, self.store, self.clock, self._dispatch_stop, budget=self.settings.delivery.retry_budget,
            fallback=fallback if fallback in self.channels else None, metrics=self.metrics)

    async def _stop_dispatchers(self) -> None:
        """Let sends in flight finish for a moment, then cancel them: a cancelled delivery stays
        pending in the store and is sent again later, so stopping never waits on a slow channel."""
        self._dispatch_stop.set()
        if self._dispatch_tasks:
            _, slow = await asyncio.wait(self._dispatch_tasks, timeout=DISPATCH_STOP_GRACE_SECONDS)
            for task in slow:
                task.cancel()
            await asyncio.gather(*self._dispatch_tasks, return_exceptions=True)
        self._dispatch_tasks = []

    async def start(self) -> None:
        applied = self.store.start(self.clock.now())
        if applied:
            log.info("store %s: applied migrations %s", self.settings.storage.path, applied)
        self.health.store_ok = True
        generation = self.store.inbox_generation
        self._unpacked_upto = await self.store.read(lambda conn: inbox.unpacked_upto(conn, generation))
        if self.detector_process is not None:
            self._rule_count = await self.detector_process.start()
        else:
            await self.detector.load_state()
            self._tasks.append(asyncio.create_task(self.detector.run(self._stop), name="detector"))
        self.health.rules_loaded = True
        # One task per channel; pending deliveries left by a previous run are picked up at once.
        self._start_dispatchers()
        self._tasks.append(asyncio.create_task(self._monitor(), name="monitor"))

    def metrics_rules(self) -> int:
        return self._rule_count

    async def check_store(self) -> None:
        """Can both store files take a write transaction now (no lock held elsewhere, no stuck writer)?
        For /readyz, and by the monitor while it fails. It cannot clear a failed delivery (``store_ok``):
        an empty transaction commits on a full disk too; only a delivery stored again does."""
        health = self.health
        try:
            async with asyncio.timeout(READY_CHECK_TIMEOUT_SECONDS):
                await self.store.check_writable()
        except (StoreError, TimeoutError) as e:
            if health.store_check_ok:
                log.error("the store cannot take a write transaction: %s", str(e) or "timed out")
            health.store_check_ok = False
            return
        if not health.store_check_ok:
            log.info("the store takes write transactions again")
        health.store_check_ok = True

    def ready_checks(self) -> dict[str, bool]:
        """Each readiness check by name (the ``/readyz`` fields and ``sentinel_ready{check}``): True when
        it passes. ``last_reload`` is reported but does not make the daemon unready: it runs on."""
        health = self.health
        return {"store": health.store_ok and health.store_check_ok, "rules_loaded": health.rules_loaded,
                "detector": self.detector_running(), "last_reload": health.last_reload_ok}

    def detector_running(self) -> bool:
        return self.detector_process is None or self.detector_process.running()

    def healthy(self) -> bool:
        """For the systemd watchdog: the loop runs (we are called from it), the writer threads live, and
        the detector runs (or is about to be restarted)."""
        process_ok = self.detector_process is None or self.detector_process.healthy()
        return self.store.healthy() and process_ok and not any(t.done() for t in self._tasks)

    async def reload(self) -> bool:
        """Re-read config and rules; swap them in only if everything is valid. Never drops an event:
        the detector finishes its batch with the old rules and takes the new ones for the next. A reload
        that fails, or crashes, leaves the previous configuration running and says so (``/readyz``)."""
        if self._reload_settings is None:
            return False
        async with self._reload_lock:
            systemd.reloading("reloading configuration and rules")
            try:
                return await self._reload(self._reload_settings)
            except Exception:  # a bug or an input nothing foresaw: logged, and the daemon runs on
                log.exception("reload crashed; running on the previous configuration")
                if not self._dispatch_tasks:  # stopped before the crash: alerts must still go out
                    self._start_dispatchers()
                return self._reload_failed()

    def _reload_failed(self) -> bool:
        self.health.last_reload_ok = False
        redaction.SECRETS.discard_staged()  # the previous settings stay in use, and masked
        self.metrics.reload.labels("failed").inc()
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
            return self._reload_failed()
        for section in RESTART_ONLY:
            if getattr(settings, section) != getattr(self.settings, section):
                log.warning("reload: [%s] changed; it takes effect at the next restart", section)
        if self.detector_process is not None:
            applied, problem = await self.detector_process.reload(_keep_restart_only(settings, self.settings))
            if not applied:
                log.error("reload rejected by the detector process: %s", problem)
                return self._reload_failed()
        else:
            current = self.detector.evaluator
            if isinstance(current, RuleEvaluator):
                evaluator = current.successor(evaluator.ruleset, settings.rules.max_groups)
        self._log_lint(evaluator)
        self._log_routing(settings, evaluator)
        await self._stop_dispatchers()
        self.settings = _keep_restart_only(settings, self.settings)
        self.channels = channels
        redaction.SECRETS.apply_staged()
        if self.detector_process is None:
            self.detector.swap(evaluator, self._route)
        self._rule_count = evaluator.rule_count
        self._start_dispatchers()
        self.metrics.rules_loaded.set(evaluator.rule_count)
        self.health.last_reload_ok = True
        self.metrics.reload.labels("ok").inc()
        log.info("reloaded: %d rules, %d channels", evaluator.rule_count, len(channels))
        systemd.ready(f"running: {evaluator.rule_count} rules")
        return True

    async def _monitor(self) -> None:
        """Refresh the gauges that come from the store, and watch the feed for silence."""
        while not self._stop.is_set():
            try:
                await self._monitor_once()
            except Exception as e:  # monitoring must never take the daemon down
                log.warning("monitor: %s", e)
            await wait_for_any(MONITOR_INTERVAL_SECONDS, self._stop)

    async def _monitor_once(self) -> None:
        now = self.clock.now()
        if not self.health.store_check_ok:  # keep sentinel_ready{check="store"} current without /readyz
            await self.check_store()
        names = list(self.channels)
        (pending, oldest), last, dead = await self.store.read(
            lambda conn: (pending_summary(conn), last_received(conn), {n: dead_count(conn, n) for n in names}))
        upto = self._unpacked_upto
        (waiting, oldest_waiting), last_in_inbox = await self.store.read_inbox(
            lambda conn: (inbox.backlog(conn, upto), inbox.last_received(conn)))
        self.metrics.events_pending.set(pending)
        self.metrics.inbox_pending.set(waiting)
        self.metrics.detector_up.set(1 if self.detector_running() else 0)
        if self.detector_process is not None:
            self.metrics.detector_restarts.set(self.detector_process.restarts)
        # The oldest of either queue: an event waits first in the inbox, then as a pending event.
        oldest = min((t for t in (oldest, oldest_waiting) if t), default=None)
        last = max((t for t in (last, last_in_inbox) if t), default=None)
        self.metrics.oldest_pending_age.set((now - parse_timestamp(oldest)).total_seconds() if oldest else 0)
        for channel, count in dead.items():
            self.metrics.dead_deliveries.labels(channel).set(count)
        if last is not None:
            self.metrics.last_event_time.set(parse_timestamp(last).timestamp())
        minutes = self.settings.monitor.feed_silence_minutes
        if minutes <= 0:
            return
        alert, self._silent_since = feed_alert(parse_timestamp(last) if last else None, self._silent_since, now,
                                               timedelta(minutes=minutes))
        if alert is not None:
            log.warning("%s", alert.title)
            route_alert = self._route
            result = await self.store.write(
                lambda conn: record_evaluation(conn, [], [alert], route_alert, {}, set(), now))
            self._alerts_created(result.new_alerts)

    async def stop(self) -> None:
        """Finish the current batch, stop the loops, close the store; pending work stays stored."""
        systemd.stopping("finishing the current batch")
        self._stop.set()
        await self._stop_dispatchers()
        if self.detector_process is not None:
            await self.detector_process.stop()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self.store.close()


def _keep_restart_only(new: Settings, old: Settings) -> Settings:
    import dataclasses

    return dataclasses.replace(new, **{section: getattr(old, section) for section in RESTART_ONLY})
