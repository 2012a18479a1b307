"""Prometheus metrics. One registry per running daemon (not the global one), so tests can run many."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sentinel.rules.engine_state import DROPPED_ENTRIES, EVICTED_GROUPS, EXPIRED_GROUPS, MATCH_ERRORS


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.events_received = Counter("sentinel_events_received", "Events accepted and stored (new)", registry=r)
        self.events_duplicate = Counter("sentinel_events_duplicate", "Events already stored (Okta re-delivery)",
                                        registry=r)
        self.events_quarantined = Counter("sentinel_events_quarantined", "Malformed events kept in quarantine",
                                          registry=r)
        self.requests_rejected = Counter("sentinel_requests_rejected", "Hook requests rejected, by reason",
                                         ["reason"], registry=r)
        self.ingest_seconds = Histogram(
            "sentinel_ingest_seconds", "Time to check, parse and durably store one delivery", registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))
        self.events_pending = Gauge("sentinel_events_pending", "Events stored but not yet evaluated", registry=r)
        self.inbox_pending = Gauge("sentinel_inbox_pending", "Okta deliveries stored but not yet unpacked into "
                                   "events (a backlog the detector is working through)", registry=r)
        self.detector_up = Gauge("sentinel_detector_up", "1 while the detector runs (0: it exited and is being "
                                 "restarted; events wait in the store)", registry=r)
        self.detector_restarts = Gauge("sentinel_detector_restarts", "Times the detector process was restarted "
                                       "since the daemon started", registry=r)
        self.oldest_pending_age = Gauge("sentinel_oldest_pending_event_age_seconds",
                                        "Age of the oldest event waiting for evaluation (in the inbox or pending)",
                                        registry=r)
        self.evaluation_seconds = Histogram("sentinel_evaluation_seconds", "Time to evaluate one batch of events",
                                            registry=r)
        self.events_evaluated = Counter("sentinel_events_evaluated", "Events evaluated by the rule engine",
                                        registry=r)
        self.evaluation_errors = Counter("sentinel_evaluation_errors", "Events or batches whose evaluation failed "
                                         "(a bug: see the log for the event uuids)", registry=r)
        self.alerts = Counter("sentinel_alerts", "Alerts raised, by rule and severity", ["rule", "severity"],
                              registry=r)
        self.alerts_silenced = Counter("sentinel_alerts_silenced", "Alerts stored silenced (a silence or a "
                                       "maintenance window covered them; never sent), by rule and severity",
                                       ["rule", "severity"], registry=r)
        self.deliveries = Counter("sentinel_deliveries", "Delivery attempts, by channel and status",
                                  ["channel", "status"], registry=r)
        self.dead_deliveries = Gauge("sentinel_dead_deliveries", "Deliveries that gave up, by channel",
                                     ["channel"], registry=r)
        self.rule_state_groups = Gauge("sentinel_rule_state_groups", "Live groups in threshold/throttle state",
                                       registry=r)
        self.rule_state_dropped = Gauge("sentinel_rule_state_groups_dropped",
                                        "Groups dropped because the group cap was reached", registry=r)
        # What rule state let go, per rule (EngineState's counts, keyed by its kind names).
        self.rule_state_counts = {
            EVICTED_GROUPS: Counter("sentinel_rule_groups_evicted", "Live groups evicted because rule state "
                                    "was full ([rules] max_groups): windows lost, alerts may be missed",
                                    ["rule"], registry=r),
            EXPIRED_GROUPS: Counter("sentinel_rule_groups_expired", "Groups removed because their windows ended",
                                    ["rule"], registry=r),
            DROPPED_ENTRIES: Counter("sentinel_rule_entries_dropped", "Pending events forgotten (repeats of a "
                                     "value in a full distinct-count group)", ["rule"], registry=r),
            MATCH_ERRORS: Counter("sentinel_rule_match_errors", "Events skipped because the rule raised while "
                                  "matching (a bug)", ["rule"], registry=r),
        }
        self.last_event_time = Gauge("sentinel_last_event_received_timestamp_seconds",
                                     "When the newest event was received (Unix time)", registry=r)
        self.connections_open = Gauge("sentinel_connections_open", "HTTP connections open (hook and metrics "
                                      "listeners)", registry=r)
        self.connections_closed = Counter(
            "sentinel_connections_closed", "HTTP connections closed by the server's limits, by reason "
            "(header_timeout, header_too_large, evicted, refused)", ["reason"], registry=r)
        self.reload = Counter("sentinel_reloads", "Config/rule reloads, by result", ["result"], registry=r)
        self.rules_loaded = Gauge("sentinel_rules_loaded", "Rules in the active rule set", registry=r)

    def watch_readiness(self, checks: Callable[[], Mapping[str, bool]]) -> None:
        """``sentinel_ready{check}``: 1 while the readiness check passes, 0 while it fails; read from
        ``checks()`` at each scrape, so it is never stale."""
        self.registry.register(_Readiness(checks))


class _Readiness(Collector):
    def __init__(self, checks: Callable[[], Mapping[str, bool]]) -> None:
        self.checks = checks

    def collect(self) -> Iterable[Metric]:
        gauge = GaugeMetricFamily("sentinel_ready", "1 while a readiness check passes (as in /readyz), 0 while "
                                  "it fails; the reason is in the log", labels=["check"])
        for name, ok in self.checks().items():
            gauge.add_metric([name], 1.0 if ok else 0.0)
        yield gauge
