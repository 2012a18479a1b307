"""The rule set and channels a config names: built, checked, and their warnings logged.

Used at start (the CLI composes the daemon from them), by ``sentinel check`` and by each reload.
"""

from __future__ import annotations

import logging

from sentinel.config import Settings
from sentinel.delivery.apprise_channel import build_channels
from sentinel.delivery.routing import routing_report
from sentinel.errors import ErrorGroup
from sentinel.rules.evaluator import RuleEvaluator
from sentinel.rules.lint import lint

log = logging.getLogger("sentinel.service")


def check_channels(settings: Settings) -> list[str]:
    """Problems with the configured channels (URLs Apprise cannot load), one line each."""
    try:
        build_channels(settings)
    except ErrorGroup as e:
        return [str(error) for error in e.errors]
    return []


def log_lint(evaluator: RuleEvaluator, polling: bool = False) -> None:
    """``polling``: the System Log poller runs (an ``[okta.api]`` table), so poll-only types are no warning."""
    for warning in lint(evaluator.ruleset, polling=polling):
        log.warning("rule warning: %s", warning)
    log.info("loaded %d rules", evaluator.rule_count)


def log_routing(settings: Settings, evaluator: RuleEvaluator) -> None:
    """Alerts that would reach no channel: loud, but the daemon runs on (`sentinel check` fails on
    them). Refusing to start would lose Okta's deliveries too; this way alerts are at least stored."""
    report = routing_report(settings.channels, settings.delivery.fallback_channel, evaluator.ruleset.rules,
                            str(settings.source or ""))
    for problem in report.problems:
        log.error("%s", problem)
    for warning in report.warnings:
        log.warning("%s", warning)
