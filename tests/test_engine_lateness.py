"""Late events (issue 13 point 3): the System Log poller brings events minutes after the hooks brought
others of the same moment. Windows are on event time and state is kept ``[rules] allowed_lateness`` past
its end, so a threshold whose events come partly by hook and partly by poll, out of order within the
allowance, fires exactly once; an event older than the allowance is left to single-event rules."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import THRESHOLD_RULES, make_event, spray_rule
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest

from sentinel.clock import FixedClock
from sentinel.config import RulesSettings, parse_config
from sentinel.errors import ErrorGroup
from sentinel.model import Event
from sentinel.okta import parse_event
from sentinel.rules import RuleSet, load_rules
from sentinel.rules.engine import evaluate
from sentinel.rules.engine_state import EVICTED_GROUPS, EXPIRED_GROUPS, TOO_LATE, EngineState
from sentinel.rules.evaluator import RuleEvaluator
from sentinel.service.detector import Detector, apply_report
from sentinel.service.metrics import Metrics
from sentinel.store import Store

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LATENESS = timedelta(minutes=15)  # the default allowance

RULES = ("""
"""
    + THRESHOLD_RULES
    + """
[[rules]]
id = "lock"
title = "Locked {actor.alternateId}"
severity = "medium"
event_types = ["user.account.lock"]

[[rules]]
id = "locks-throttled"
title = "Locks of {actor.alternateId}"
severity = "medium"
event_types = ["user.account.lock"]
group_by = ["actor.alternateId"]
[rules.throttle]
period = "1m"
""")


@pytest.fixture(scope="module")
def ruleset(tmp_path_factory: pytest.TempPathFactory) -> RuleSet:
    path = tmp_path_factory.mktemp("rules") / "rules.toml"
    path.write_text(RULES, encoding="utf-8")
    return load_rules([path])


def failure(uuid: str, at: datetime, user: str = "jane@example.com", ip: str = "203.0.113.9") -> Event:
    return Event(uuid, "user.session.start", at,
                 {"uuid": uuid, "eventType": "user.session.start", "published": at.isoformat(),
                  "actor": {"alternateId": user}, "client": {"ipAddress": ip}, "outcome": {"result": "FAILURE"}})


def lock(uuid: str, at: datetime, user: str = "jane@example.com") -> Event:
    return Event(uuid, "user.account.lock", at, {"uuid": uuid, "eventType": "user.account.lock",
                                                 "published": at.isoformat(), "actor": {"alternateId": user}})


def run(ruleset: RuleSet, events: list[Event], state: EngineState | None = None,
        rule: str | None = None) -> dict[str, set[str]]:
    """Feed ``events`` in the order given, each at its own event time as ``now``; alert key → the uuids of
    its latest version (of ``rule`` only, when named)."""
    state = state if state is not None else EngineState()
    found: dict[str, set[str]] = {}
    for event in events:
        alerts, state = evaluate(ruleset, event, state, event.published)
        for alert in alerts:
            if rule is None or alert.rule_id == rule:
                found[alert.key] = set(alert.event_uuids)
    return found


def partition(found: dict[str, set[str]]) -> set[frozenset[str]]:
    return {frozenset(uuids) for uuids in found.values()}


# -- hook and poll together -------------------------------------------------------------------------------


def test_a_window_completed_by_a_polled_event_after_newer_hook_events_fires(ruleset: RuleSet) -> None:
    """Hook: failures at 0 and 1 min, then one at 14 min (the window of the first two has passed). The
    poller brings the 2-minute failure 13 minutes late: 0, 1, 2 is a full window and must fire."""
    hook = [failure("h0", T0), failure("h1", T0 + timedelta(minutes=1)), failure("h14", T0 + timedelta(minutes=14))]
    polled = [failure("p2", T0 + timedelta(minutes=2))]
    found = run(ruleset, hook + polled, rule="brute")
    assert partition(found) == {frozenset({"h0", "h1", "p2"})}


def test_late_polled_events_fold_into_their_own_alert_after_a_later_one_fired(ruleset: RuleSet) -> None:
    """The hook fires burst A, then burst B of the same user fires; the poller then brings the rest of A
    (11 minutes late): it joins A's alert, neither B's nor a new one."""
    a = [T0 + timedelta(seconds=20 * i) for i in range(6)]
    hook_a = [failure(f"h{i}", a[i]) for i in (0, 2, 4)]
    hook_b = [failure(f"b{i}", T0 + timedelta(minutes=11, seconds=20 * i)) for i in range(3)]
    polled_a = [failure(f"p{i}", a[i]) for i in (1, 3, 5)]
    found = run(ruleset, hook_a + hook_b + polled_a, rule="brute")
    assert partition(found) == {frozenset({"h0", "h2", "h4", "p1", "p3", "p5"}), frozenset({"b0", "b1", "b2"})}
    in_order = run(ruleset, sorted(hook_a + hook_b + polled_a, key=lambda e: e.published), rule="brute")
    assert set(found) == set(in_order)  # the same alert keys too


def test_a_late_event_folds_into_a_throttle_period_already_alerted(ruleset: RuleSet) -> None:
    state = EngineState()
    run(ruleset, [lock("l0", T0), lock("l5", T0 + timedelta(minutes=5))], state)
    late = run(ruleset, [lock("l0b", T0 + timedelta(seconds=10))], state, rule="locks-throttled")
    first = run(ruleset, [lock("l0", T0)], rule="locks-throttled")
    assert set(late) == set(first)
    assert next(iter(late.values())) == {"l0", "l0b"}  # one period, one alert, both events


# -- any order within the allowance gives the same alerts ------------------------------------------------

WINDOW = timedelta(minutes=10)
HOLD = WINDOW  # no throttle: an alert takes what follows for one window


@st.composite
def bursts(draw: st.DrawFn, distinct: bool) -> tuple[list[Event], list[frozenset[str]]]:
    """Bursts of failures, each within 4 minutes, 15+ minutes apart (none reaches another's window or hold),
    each event delivered by hook (on time) or by the poller (up to just under the allowance late): the events
    in arrival order, and the uuids of each burst big enough to fire."""
    arrivals: list[tuple[datetime, int, Event]] = []
    expected = []
    start = T0
    for b in range(draw(st.integers(1, 4))):
        start += timedelta(minutes=draw(st.integers(15, 30)))
        size = draw(st.integers(1, 6))
        uuids = []
        for i in range(size):
            at = start + timedelta(seconds=draw(st.integers(0, 240)))
            uuid = f"b{b}e{i}"
            user = f"user{i}@example.com" if distinct else "jane@example.com"
            delay = timedelta(seconds=draw(st.sampled_from([0, 0, 1, 60, 300, 899])))
            arrivals.append((at + delay, draw(st.integers(0, 1000)), failure(uuid, at, user=user)))
            uuids.append(uuid)
        if size >= 3:
            expected.append(frozenset(uuids))
    return [event for _, _, event in sorted(arrivals, key=lambda a: a[:2])], expected


@settings(max_examples=100, deadline=None)
@given(bursts(distinct=False))
def test_any_hook_and_poll_interleaving_fires_each_burst_exactly_once(ruleset: RuleSet, case: Any) -> None:
    events, expected = case
    found = run(ruleset, events, rule="brute")
    assert sorted(partition(found), key=sorted) == sorted(expected, key=sorted)
    in_order = run(ruleset, sorted(events, key=lambda e: e.published), rule="brute")
    assert partition(found) == partition(in_order)


@settings(max_examples=100, deadline=None)
@given(bursts(distinct=True))
def test_distinct_counts_fire_each_burst_exactly_once_in_any_interleaving(ruleset: RuleSet, case: Any) -> None:
    events, expected = case
    found = run(ruleset, events, rule="spray")
    assert sorted(partition(found), key=sorted) == sorted(expected, key=sorted)


@settings(max_examples=100, deadline=None)
@given(st.randoms(use_true_random=False), st.integers(3, 8))
def test_every_order_of_one_burst_gives_one_alert_with_every_event(ruleset: RuleSet, rng: random.Random,
                                                                     size: int) -> None:
    events = [failure(f"e{i}", T0 + timedelta(seconds=rng.randint(0, 540))) for i in range(size)]
    rng.shuffle(events)
    found = run(ruleset, events, rule="brute")
    assert partition(found) == {frozenset(e.uuid for e in events)}


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1800), st.sampled_from([0, 0, 30, 300, 899]), st.integers(0, 2)),
                min_size=1, max_size=12))
def test_throttle_periods_take_the_same_events_in_any_order_within_the_allowance(ruleset: RuleSet,
                                                                                  timings: Any) -> None:
    """Throttle-only (1-minute periods): late locks still fold into their own period's alert, so the alerts
    and the events each holds are those of ordered delivery, however far behind (within the allowance)."""
    arrivals = []
    for i, (second, delay, user) in enumerate(timings):
        event = lock(f"l{i}", T0 + timedelta(seconds=second), user=f"user{user}@example.com")
        arrivals.append((event.published + timedelta(seconds=delay), i, event))
    events = [event for _, _, event in sorted(arrivals, key=lambda a: a[:2])]
    found = run(ruleset, events, rule="locks-throttled")
    assert found == run(ruleset, sorted(events, key=lambda e: e.published), rule="locks-throttled")


# -- past the allowance ------------------------------------------------------------------------------------


def test_an_event_older_than_the_allowance_is_skipped_by_thresholds_and_counted(ruleset: RuleSet) -> None:
    """A back-fill hours behind: its failures could only half-fill windows whose other events are gone, so
    threshold rules skip them (and count them); single-event rules still alert on them."""
    state = EngineState()
    run(ruleset, [failure("now", T0 + timedelta(hours=3))], state)
    old = [failure(f"old{i}", T0 + timedelta(seconds=i)) for i in range(5)] + [lock("old-lock", T0)]
    found = run(ruleset, old, state)
    assert {key.partition(":")[0] for key in found} == {"lock", "locks-throttled"}
    assert state.rule_counts[TOO_LATE, "brute"] == 5
    assert state.rule_counts[TOO_LATE, "spray"] == 5


def test_the_allowance_is_measured_from_the_newest_event_time(ruleset: RuleSet) -> None:
    state = EngineState(allowed_lateness_micros=int(LATENESS.total_seconds()) * 1_000_000)
    run(ruleset, [failure("now", T0 + LATENESS)], state)
    found = run(ruleset, [failure(f"e{i}", T0 + timedelta(seconds=i)) for i in range(3)], state, rule="brute")
    assert len(found) == 1  # exactly the allowance late: still counts
    state = EngineState(allowed_lateness_micros=0)
    run(ruleset, [failure("now", T0 + timedelta(seconds=3))], state)
    assert run(ruleset, [failure(f"e{i}", T0 + timedelta(seconds=i)) for i in range(3)], state) == {}


# -- state ages out by event time, the allowance later ---------------------------------------------------


def test_sweep_keeps_a_group_until_its_end_plus_the_allowance() -> None:
    state = EngineState(allowed_lateness_micros=60_000_000)
    state.put("r/g", {"seen": 0, "expires": 1_000_000})
    state.watermark = 60_000_000 + 1_000_000
    state.sweep()
    assert state.group_count == 1
    state.watermark += 1
    state.sweep()
    assert state.group_count == 0 and state.rule_counts[EXPIRED_GROUPS, "r"] == 1


def test_eviction_takes_a_group_within_the_allowance_as_live() -> None:
    state = EngineState(max_groups=1, allowed_lateness_micros=60_000_000)
    state.put("r/g", {"seen": 0, "expires": 1_000_000})
    state.watermark = 30_000_000  # past its end, within the allowance: late events may still come for it
    state.put("r/h", {"seen": 30_000_000, "expires": 40_000_000})
    assert state.rule_counts[EVICTED_GROUPS, "r"] == 1 and state.rule_counts[EXPIRED_GROUPS, "r"] == 0


def test_a_stored_group_with_one_episode_is_read_and_folds(ruleset: RuleSet) -> None:
    """Rule state saved before this change holds one ``episode``: restored, a late event folds into it."""
    state = EngineState()
    run(ruleset, [failure(f"e{i}", T0 + timedelta(seconds=i)) for i in range(3)], state)
    rows = []
    for key, text in state.take_changes()[0].items():
        record = json.loads(text)
        if "episodes" in record:
            episodes = record.pop("episodes")
            record["episode"] = episodes[-1] if episodes else None
        rows.append((key, json.dumps(record)))
    restored = EngineState.restore(rows)
    found = run(ruleset, [failure("late", T0 + timedelta(seconds=30))], restored, rule="brute")
    assert partition(found) == {frozenset({"e0", "e1", "e2", "late"})}


# -- configuration -----------------------------------------------------------------------------------------


def rules_settings(text: str) -> RulesSettings:
    return parse_config({"rules": {"allowed_lateness": text}} if text else {}, "sentinel.toml", Path("."),
                        {}, resolve_secrets=False).rules


def test_allowed_lateness_defaults_to_15_minutes_and_reaches_the_engine() -> None:
    assert rules_settings("").allowed_lateness == LATENESS
    assert rules_settings("2h").allowed_lateness == timedelta(hours=2)
    evaluator = RuleEvaluator.from_settings(RulesSettings(paths=(ROOT / "rules",), allowed_lateness=timedelta(hours=2)))
    assert evaluator.state.allowed_lateness_micros == 7_200_000_000
    evaluator.restore([])
    assert evaluator.state.allowed_lateness_micros == 7_200_000_000
    successor = evaluator.successor(evaluator.ruleset, evaluator.max_groups, timedelta(minutes=1))
    assert successor.state is evaluator.state and successor.state.allowed_lateness_micros == 60_000_000
    assert successor.successor(successor.ruleset, 5).state.allowed_lateness_micros == 60_000_000  # None keeps it


@pytest.mark.parametrize(("text", "problem"), [
    ("25h", "must be between 0s and 24h"),
    ("soon", "not a duration"),
])
def test_allowed_lateness_is_a_duration_of_at_most_a_day(text: str, problem: str) -> None:
    with pytest.raises(ErrorGroup) as caught:
        rules_settings(text)
    (error,) = caught.value.errors
    assert "rules.allowed_lateness" in str(error) and problem in str(error)


# -- replay of the shipped pack over real event shapes ---------------------------------------------------


def test_replay_of_hook_then_late_poll_deliveries_alerts_brute_force_once(tmp_path: Path) -> None:
    """The shipped brute-force rule's own ten failures (rules/data), as Sentinel receives them with the
    poller 14 minutes behind the hook: the first six by hook, then a newer failure by hook 20 minutes after
    the first (past its 15-minute window), then the last four by poll. ``sentinel replay`` (file order is
    arrival order) must print one brute-force alert holding all ten."""
    burst = json.loads((ROOT / "rules/data/brute-force-one-user.json").read_text(encoding="utf-8"))
    first = datetime.fromisoformat(burst[0]["published"])
    newer = dict(burst[5], uuid="brute-later", published=(first + timedelta(minutes=20)).isoformat())
    assert 'window = "15m"' in (ROOT / "rules/okta-brute-force-user.toml").read_text(encoding="utf-8")
    arrival = [*burst[:6], newer, *burst[6:]]
    lines = tmp_path / "arrivals.jsonl"
    lines.write_text("".join(json.dumps(event) + "\n" for event in arrival), encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "sentinel", "replay", "--rules", str(ROOT / "rules"), str(lines)],
                            capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    alerts = [json.loads(line) for line in result.stdout.splitlines()]
    brute = [a for a in alerts if a["rule_id"] == "okta-brute-force-user"]
    assert len(brute) == 1
    assert set(brute[0]["event_uuids"]) >= {event["uuid"] for event in burst}
    # The same arrivals under a config allowing no lateness: the polled four are too late to count.
    config = tmp_path / "sentinel.toml"
    rules = json.dumps(str(ROOT / "rules"))
    config.write_text(f'[rules]\npaths = [{rules}]\nallowed_lateness = "0s"\n', encoding="utf-8")
    strict = subprocess.run([sys.executable, "-m", "sentinel", "replay", "--config", str(config), str(lines)],
                            capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert strict.returncode == 0, strict.stderr
    assert not [line for line in strict.stdout.splitlines() if "okta-brute-force-user" in line]


# -- what the detector makes of too-late events --------------------------------------------------------------


def test_too_late_events_reach_the_metrics_and_the_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Real rules, store and detector: failures three hours behind the newest are counted per rule as
    ``sentinel_rule_events_too_late_total`` and logged once, saying what to do about it."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "spray.toml").write_text(spray_rule("spray"), encoding="utf-8")
    evaluator = RuleEvaluator(load_rules([tmp_path / "rules"]), max_groups=100)
    metrics, clock = Metrics(), FixedClock(T0 + timedelta(hours=3))
    caplog.set_level(logging.INFO, logger="sentinel.detector")

    def failure_at(uuid: str, at: datetime) -> Event:
        return parse_event(make_event(uuid, published=at.isoformat().replace("+00:00", "Z"),
                                      client={"ipAddress": "10.0.0.1"}, actor={"alternateId": f"{uuid}@example.com"},
                                      outcome={"result": "FAILURE"}))

    async def scenario() -> None:
        store = Store(tmp_path / "s.db")
        store.start(clock.now())
        detector = Detector(store, evaluator, lambda a: ["log"], clock, on_report=lambda r: apply_report(metrics, r))
        await detector.load_state()
        try:
            for events in ([failure_at("now", clock.now())], [failure_at(f"old{i}", T0) for i in range(2)]):
                await store.ingest(events, [], clock.now())
                assert await detector.run_once() == len(events)
        finally:
            store.close()

    asyncio.run(scenario())
    assert 'sentinel_rule_events_too_late_total{rule="spray"} 2.0' in generate_latest(metrics.registry).decode()
    logged = [r.getMessage() for r in caplog.records if "late events not counted" in r.getMessage()]
    assert logged == ["rule spray: 2 late events not counted: they were older than the newest event time less "
                      "[rules] allowed_lateness (raise it to cover a longer poller back-fill; `sentinel replay` "
                      "re-runs a past window)"]
