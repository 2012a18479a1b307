"""What one detector pass did (:class:`DetectorReport`), and how the daemon turns it into metrics.

Plain data: the report crosses from the detector process to the daemon's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sentinel.service.metrics import Metrics


@dataclass
class DetectorReport:
    """What one pass did, for metrics and for waking the dispatchers. Plain data: it crosses processes."""

    received: int = 0
    duplicate: int = 0
    quarantined: int = 0
    evaluated: int = 0
    errors: int = 0
    evaluation_seconds: list[float] = field(default_factory=list)
    groups: int | None = None
    dropped: int | None = None
    alerts: list[tuple[str, str]] = field(default_factory=list)  # (rule id, severity) of each new alert
    # (kind, rule id) → what rule state let go in this pass (sentinel.engine_state's kinds).
    rule_state_counts: dict[tuple[str, str], int] = field(default_factory=dict)
    new_alert_ids: list[int] = field(default_factory=list)
    silenced: list[tuple[str, str]] = field(default_factory=list)  # (rule id, severity) of each new silenced alert
    unpacked_upto: int | None = None  # inbox rows up to this id are in the main database now

    def __bool__(self) -> bool:
        return self != DetectorReport()


def apply_report(metrics: Metrics, report: DetectorReport) -> None:
    metrics.events_received.inc(report.received)
    metrics.events_duplicate.inc(report.duplicate)
    metrics.events_quarantined.inc(report.quarantined)
    metrics.events_evaluated.inc(report.evaluated)
    metrics.evaluation_errors.inc(report.errors)
    for seconds in report.evaluation_seconds:
        metrics.evaluation_seconds.observe(seconds)
    if report.groups is not None:
        metrics.rule_state_groups.set(report.groups)
    if report.dropped is not None:
        metrics.rule_state_dropped.set(report.dropped)
    for rule_id, severity in report.alerts:
        metrics.alerts.labels(rule_id, severity).inc()
    for rule_id, severity in report.silenced:
        metrics.alerts_silenced.labels(rule_id, severity).inc()
    for (kind, rule_id), count in report.rule_state_counts.items():
        counter = metrics.rule_state_counts.get(kind)
        if counter is not None:
            counter.labels(rule_id).inc(count)
