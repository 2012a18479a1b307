"""The composition root of ``sentinel serve``: builds the daemon's narrow parts and wires them together.

Nothing below the CLI builds another part: each gets what it uses, here. The detector runs in a child
process (``child_detector``, what ``serve`` uses) or, for tests and tools, in this loop
(``InProcessDetector``, which has the same signature).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.types import ASGIApp

from sentinel import redaction
from sentinel.clock import Clock, SystemClock
from sentinel.config import Settings, secret_values
from sentinel.delivery.apprise_channel import build_channels
from sentinel.okta_api import SystemLogClient, load_api_credentials, request_lock_path
from sentinel.rules.evaluator import RuleEvaluator
from sentinel.rules.sources import polled_event_types
from sentinel.service.detector import DetectorReport, apply_report
from sentinel.service.detector_process import DetectorProcess
from sentinel.service.detector_runner import DetectorRunner
from sentinel.service.dispatchers import Dispatchers
from sentinel.service.health import Health
from sentinel.service.intake import Intake
from sentinel.service.lifecycle import Lifecycle
from sentinel.service.metrics import Metrics
from sentinel.service.monitor_loop import Monitor
from sentinel.service.poller import Poller
from sentinel.service.reloader import Reloader
from sentinel.service.ruleset import log_lint, log_routing
from sentinel.store import Store
from sentinel.web.app import create_app, create_metrics_app, metrics_route
from sentinel.web.hook_endpoint import OktaHookEndpoint

OnReport = Callable[[DetectorReport], None]
DetectorFactory = Callable[[Settings, RuleEvaluator, Store, Clock, OnReport], DetectorRunner]


def child_detector(settings: Settings, evaluator: RuleEvaluator, store: Store, clock: Clock,
                   on_report: OnReport) -> DetectorRunner:
    """The detector in its own process, so that intake keeps a core to itself under a burst. The child
    builds its own rules and store connections; ``evaluator`` here only checked the rules."""
    return DetectorProcess(settings, on_report)


@dataclass
class Daemon:
    settings: Settings
    clock: Clock
    store: Store
    metrics: Metrics
    health: Health
    detector: DetectorRunner
    dispatchers: Dispatchers
    monitor: Monitor
    intake: Intake
    reloader: Reloader
    lifecycle: Lifecycle
    poller: Poller | None = None


def compose(settings: Settings, reload_settings: Callable[[], Settings] | None = None, *,
            clock: Clock | None = None, detector: DetectorFactory = child_detector) -> Daemon:
    """Every part, built and checked before anything starts. Raises ErrorGroup on invalid rules or channels."""
    clock = clock or SystemClock()
    redaction.SECRETS.stage(secret_values(settings))
    evaluator = RuleEvaluator.from_settings(settings.rules)
    channels = build_channels(settings)
    redaction.SECRETS.apply_staged()  # these settings are in use: mask their secrets, no older ones
    log_lint(evaluator, polling=settings.okta_api is not None)
    log_routing(settings, evaluator)
    metrics = Metrics()
    store = Store(settings.storage.path, clock=clock)
    dispatchers = Dispatchers(channels, settings.delivery, store, clock, metrics, settings.channels)
    if settings.ui.listen is not None:  # a restart-only setting: reloads keep it
        dispatchers.ui_url = f"http://{settings.ui.listen}"

    def on_report(report: DetectorReport) -> None:
        apply_report(metrics, report)
        if report.new_alert_ids:
            dispatchers.wake()
        if report.unpacked_upto is not None:
            monitor.unpacked(report.unpacked_upto)

    runner = detector(settings, evaluator, store, clock, on_report)
    health = Health(store, runner.running)
    health.rule_count = evaluator.rule_count
    monitor = Monitor(settings, store, metrics, health, runner, dispatchers, clock)
    metrics.watch_readiness(health.ready_checks)
    metrics.rules_loaded.set(evaluator.rule_count)
    intake = Intake(settings.okta, settings.server.max_body_bytes, store, health, runner.wake, metrics, clock)
    poller = _poller(settings, evaluator, store, metrics, clock, runner.wake, monitor.inbox_waiting)
    if poller is not None:
        monitor.poll_status = poller.status
        health.poll_state = lambda: poller.status.readiness(clock.now())
    reloader = Reloader(settings, reload_settings, detector=runner, dispatchers=dispatchers, monitor=monitor,
                        health=health, metrics=metrics, poller=poller)
    reloader.rules = evaluator.ruleset.rules
    lifecycle = Lifecycle(store, health, runner, dispatchers, monitor, clock, poller)
    return Daemon(settings, clock, store, metrics, health, runner, dispatchers, monitor, intake, reloader, lifecycle,
                  poller)


def _poller(settings: Settings, evaluator: RuleEvaluator, store: Store, metrics: Metrics, clock: Clock,
            wake_detector: Callable[[], None], detector_backlog: Callable[[], Awaitable[int]]) -> Poller | None:
    """The System Log poller when ``[okta.api]`` is there. Its credential is read here, in the daemon's
    process (the detector process never sees it); a missing one stops the start (ConfigError)."""
    api = settings.okta_api
    if api is None:
        return None
    credentials = load_api_credentials(api)
    redaction.SECRETS.keep(credentials.secret_values())  # restart-only: no reload replaces it
    client = SystemLogClient(api, credentials, clock=clock, request_lock=request_lock_path(settings.storage.path),
                             on_response=lambda status: metrics.poll_requests.labels(str(status)).inc())
    return Poller(api, client, store, metrics, clock, polled_event_types(evaluator.ruleset), wake_detector,
                  detector_backlog)


def web_apps(daemon: Daemon) -> tuple[ASGIApp, Starlette | None]:
    """The main listener's app, and the metrics listener's when ``[metrics] listen`` gives it its own."""
    config = daemon.settings.metrics
    route = metrics_route(daemon.metrics, config.token if config.require_token else None)
    separate = config.listen is not None
    hook = OktaHookEndpoint(daemon.intake, daemon.metrics, daemon.clock)
    app = create_app(hook, daemon.health, daemon.lifecycle, route if config.enabled and not separate else None)
    return app, create_metrics_app(route) if config.enabled and separate else None


def ui_app(daemon: Daemon) -> Starlette | None:
    """The triage page's app, for its own listener (``[ui] listen``); None when it is off."""
    password = daemon.settings.ui.password
    if daemon.settings.ui.listen is None or password is None:
        return None
    from sentinel.web.ui.app import create_ui_app
    from sentinel.web.ui.sources import ReloadState, TriageSources

    reloader, health = daemon.reloader, daemon.health
    return create_ui_app(TriageSources(
        password=password, store=daemon.store, clock=daemon.clock,
        settings=lambda: reloader.settings, channels=lambda: daemon.dispatchers.channels,
        rules=lambda: reloader.rules, ready_checks=health.ready_checks, queues=daemon.monitor.queues,
        last_reload=lambda: ReloadState(reloader.last_reload_at, health.last_reload_ok),
        poll_state=health.poll_readiness))
