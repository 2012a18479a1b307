"""The pure engine: single-event alerts, thresholds, distinct counts, throttling, out-of-order events,
bounded memory, and a state that round-trips through the store's (key, JSON) rows."""

from __future__ import annotations

import json
import textwrap
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from conftest import THRESHOLD_RULES

from sentinel.model import Alert, Event, Severity
from sentinel.rules import RuleSet, load_rules
from sentinel.rules.engine import EngineState, evaluate

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

RULES = ("""
[[rules]]
id = "lock"
title = "Locked {actor.alternateId}"
severity = "medium"
event_types = ["user.account.lock"]
runbook = "call the user"
channels = ["slack"]

"""
    + THRESHOLD_RULES
    + """
[[rules]]
id = "report"
title = "Report by {actor.alternateId}"
severity = "low"
event_types = ["user.account.report_*", "user.account.report_suspicious_activity_by_enduser"]
group_by = ["actor.alternateId"]
[rules.throttle]
period = "1h"

[[rules]]
id = "prefixed"
title = "Privilege change"
severity = "info"
event_types = ["user.account.privilege.*"]
""")


@pytest.fixture(scope="module")
def ruleset(tmp_path_factory) -> RuleSet:
    folder = tmp_path_factory.mktemp("rules")
    (folder / "r.toml").write_text(textwrap.dedent(RULES).replace("user.account.report_*", "user.account.report.*"))
    return load_rules([folder])


counter = iter(range(1_000_000))


def event(event_type: str, at: datetime, user: str = "jane@example.com", ip: str = "192.0.2.1",
          result: str = "FAILURE", uuid: str | None = None) -> Event:
    uid = uuid or f"e{next(counter)}"
    data = {
        "uuid": uid,
        "eventType": event_type,
        "published": at.isoformat(),
        "actor": {"alternateId": user, "displayName": user.split("@")[0]},
        "client": {"ipAddress": ip, "geographicalContext": {"city": "Oslo", "country": "Norway"},
                   "userAgent": {"rawUserAgent": "curl/8"}},
        "outcome": {"result": result, "reason": "INVALID_CREDENTIALS"},
        "target": [{"type": "User", "alternateId": user, "displayName": "Jane", "id": "00u1"}],
    }
    return Event(uid, event_type, at, data)


def run(ruleset: RuleSet, events: list[Event], state: EngineState | None = None) -> tuple[list[Alert], EngineState]:
    state = state or EngineState()
    out: list[Alert] = []
    for item in events:
        alerts, state = evaluate(ruleset, item, state, item.published)
        out.extend(alerts)
    return out, state


def by_rule(alerts: list[Alert], rule_id: str) -> list[Alert]:
    return [a for a in alerts if a.rule_id == rule_id]


def test_single_event_rule_alerts_once_per_event_with_context(ruleset):
    alerts, state = run(ruleset, [event("user.account.lock", T0, uuid="u-1")])
    assert len(alerts) == 1
    alert = alerts[0]
    assert (alert.rule_id, alert.severity, alert.title, alert.count) == ("lock", Severity.MEDIUM,
                                                                         "Locked jane@example.com", 1)
    assert alert.key == "lock:u-1"
    assert alert.event_uuids == ("u-1",)
    assert alert.channels == ("slack",)
    context = alert.context.as_dict()  # the JSON the store keeps
    assert context["event_uuid"] == "u-1"
    assert context["actor"] == {"alternateId": "jane@example.com", "displayName": "jane"}
    assert context["targets"] == [{"type": "User", "alternateId": "jane@example.com", "displayName": "Jane",
                                   "id": "00u1"}]
    assert (context["client_ip"], context["city"], context["country"], context["user_agent"]) == (
        "192.0.2.1", "Oslo", "Norway", "curl/8")
    assert context["outcome_result"] == "FAILURE"
    assert context["published"] == "2026-03-01T12:00:00.000000Z"
    assert context["runbook"] == "call the user"
    assert context["samples"] == [{"uuid": "u-1", "published": "2026-03-01T12:00:00.000000Z",
                                   "actor": "jane@example.com", "ip": "192.0.2.1"}]
    json.dumps(context)  # plain JSON-able types only
    assert state.group_count == 0  # stateless rules keep nothing


def test_rules_for_other_types_are_not_consulted(ruleset):
    assert [r.id for r in ruleset.rules_for("user.account.lock")] == ["lock"]
    assert [r.id for r in ruleset.rules_for("user.account.privilege.grant")] == ["prefixed"]
    assert [r.id for r in ruleset.rules_for("user.account.report.x")] == ["report"]
    assert ruleset.rules_for("user.lifecycle.create") == ()
    alerts, _ = run(ruleset, [event("user.lifecycle.create", T0)])
    assert alerts == []


def test_threshold_fires_at_count_and_folds_later_matches(ruleset):
    events = [event("user.session.start", T0 + timedelta(minutes=i)) for i in range(5)]
    alerts = by_rule(run(ruleset, events)[0], "brute")
    assert [a.count for a in alerts] == [3, 4, 5]
    assert len({a.key for a in alerts}) == 1  # the same alert, growing
    final = alerts[-1]
    assert final.first_seen == T0 and final.last_seen == T0 + timedelta(minutes=4)
    assert final.event_uuids == tuple(e.uuid for e in events)
    assert final.group_key == "actor.alternateId=jane@example.com"
    assert final.context.window_seconds == 600


def test_threshold_needs_the_events_inside_one_window(ruleset):
    events = [event("user.session.start", T0 + timedelta(minutes=6 * i)) for i in range(5)]
    assert by_rule(run(ruleset, events)[0], "brute") == []


def test_threshold_counts_groups_separately_and_ignores_non_matching(ruleset):
    events = [event("user.session.start", T0 + timedelta(minutes=i), user=f"u{i % 2}@x") for i in range(4)]
    events.append(event("user.session.start", T0 + timedelta(minutes=5), user="u0@x", result="SUCCESS"))
    assert by_rule(run(ruleset, events)[0], "brute") == []


def test_out_of_order_delivery_fires_the_same_alert(ruleset):
    times = [T0 + timedelta(minutes=m) for m in (0, 2, 4)]
    in_order = [event("user.session.start", t, uuid=f"o{i}") for i, t in enumerate(times)]
    shuffled = [in_order[2], in_order[0], in_order[1]]
    first = by_rule(run(ruleset, in_order)[0], "brute")
    second = by_rule(run(ruleset, shuffled)[0], "brute")
    assert len(first) == len(second) == 1
    assert first[0].key == second[0].key
    assert first[0].first_seen == second[0].first_seen == T0
    assert sorted(first[0].event_uuids) == sorted(second[0].event_uuids)


def test_late_event_older_than_the_window_does_not_fire(ruleset):
    late = [event("user.session.start", T0 + timedelta(minutes=30)),
            event("user.session.start", T0 + timedelta(minutes=31)),
            event("user.session.start", T0)]
    assert by_rule(run(ruleset, late)[0], "brute") == []


def test_after_the_hold_a_new_alert_needs_the_threshold_again(ruleset):
    burst1 = [event("user.session.start", T0 + timedelta(minutes=i)) for i in range(3)]
    lone = [event("user.session.start", T0 + timedelta(minutes=20))]
    burst2 = [event("user.session.start", T0 + timedelta(minutes=40 + i)) for i in range(3)]
    alerts = by_rule(run(ruleset, burst1 + lone + burst2)[0], "brute")
    assert [a.count for a in alerts] == [3, 3]
    assert alerts[0].key != alerts[1].key


def test_distinct_count_needs_distinct_values(ruleset):
    same_user = [event("user.session.start", T0 + timedelta(seconds=i), user="a@x") for i in range(5)]
    assert by_rule(run(ruleset, same_user)[0], "spray") == []
    many = [event("user.session.start", T0 + timedelta(seconds=i), user=f"u{i}@x") for i in range(4)]
    alerts = by_rule(run(ruleset, many)[0], "spray")
    assert [a.context.distinct_count for a in alerts] == [3, 4]
    assert alerts[-1].context.distinct_values == ("u0@x", "u1@x", "u2@x", "u3@x")
    assert alerts[-1].group_key == "client.ipAddress=192.0.2.1"


def test_throttle_is_one_alert_per_group_and_period(ruleset):
    kind = "user.account.report_suspicious_activity_by_enduser"
    events = [event(kind, T0 + timedelta(minutes=m)) for m in (0, 10, 50)]
    events.append(event(kind, T0 + timedelta(minutes=20), user="other@x"))
    events.append(event(kind, T0 + timedelta(minutes=70)))
    alerts = by_rule(run(ruleset, events)[0], "report")
    jane = [a for a in alerts if "jane" in a.group_key]
    assert [a.count for a in jane] == [1, 2, 3, 1]
    assert len({a.key for a in jane[:3]}) == 1 and jane[3].key != jane[0].key
    assert len([a for a in alerts if "other" in a.group_key]) == 1


def test_a_rule_listed_twice_for_one_type_runs_once(ruleset):
    kind = "user.account.report_suspicious_activity_by_enduser"
    assert [r.id for r in ruleset.rules_for(kind)] == ["report"]


def test_state_round_trips_through_rows(ruleset):
    first_half = [event("user.session.start", T0 + timedelta(minutes=i), user=f"u{i}@x") for i in range(2)]
    second_half = [event("user.session.start", T0 + timedelta(minutes=2 + i), user=f"u{2 + i}@x") for i in range(2)]
    uninterrupted = run(ruleset, first_half + second_half)[0]

    _, state = run(ruleset, first_half)
    changed, deleted = state.take_changes()
    assert changed and not deleted
    assert state.take_changes() == ({}, set())  # changes are handed over once
    rows = [(key, text) for key, text in changed.items()]
    restored = EngineState.restore(rows)
    assert restored.group_count == state.group_count
    resumed = run(ruleset, second_half, restored)[0]
    assert [(a.key, a.count, a.event_uuids) for a in resumed] == [
        (a.key, a.count, a.event_uuids) for a in uninterrupted[-len(resumed):]
    ]


def test_restore_skips_broken_rows():
    state = EngineState.restore([("a", "{not json"), ("b", '{"seen": 5, "expires": 9}'), ("c", "[]")])
    assert state.group_count == 1 and state.watermark == 5


def test_live_groups_are_capped_with_a_counter(ruleset):
    state = EngineState(max_groups=3)
    events = [event("user.session.start", T0 + timedelta(seconds=i), user=f"u{i}@x", ip=f"10.0.0.{i}")
              for i in range(5)]
    _, state = run(ruleset, events, state)
    assert state.group_count == 3
    assert state.evicted_groups == state.dropped_groups == 7  # 10 groups (2 rules x 5), 3 kept
    changed, deleted = state.take_changes()
    assert len(changed) == 3 and len(deleted) == 7


def test_expired_groups_are_swept(ruleset):
    state = EngineState()
    _, state = run(ruleset, [event("user.session.start", T0, user="old@x", ip="10.9.9.9")], state)
    assert state.group_count == 2
    state.take_changes()
    _, state = run(ruleset, [event("user.account.lock", T0 + timedelta(hours=2))], state)
    state.sweep()
    assert state.group_count == 0 and state.expired_groups == 2
    assert len(state.take_changes()[1]) == 2


def test_future_timestamps_do_not_expire_everyone(ruleset):
    state = EngineState()
    _, state = run(ruleset, [event("user.session.start", T0)], state)
    future = event("user.account.lock", T0 + timedelta(days=365))
    evaluate(ruleset, future, state, now=T0)
    state.sweep()
    assert state.group_count == 2


def test_alert_keys_are_deterministic_across_runs(ruleset):
    events = [event("user.session.start", T0 + timedelta(minutes=i), uuid=f"k{i}") for i in range(3)]
    assert by_rule(run(ruleset, events)[0], "brute")[0].key == by_rule(run(ruleset, events)[0], "brute")[0].key


def test_a_raising_rule_is_counted_not_propagated(ruleset, monkeypatch):
    rule = ruleset.rules_for("user.account.lock")[0]

    def explode(data):
        raise RuntimeError("bug")

    broken = RuleSet([rule.__class__(**{**{f: getattr(rule, f) for f in rule.__dataclass_fields__},
                                        "matcher": explode})])
    alerts, state = evaluate(broken, event("user.account.lock", T0), EngineState(), T0)
    assert alerts == [] and state.match_errors == 1


def test_engine_accepts_non_dict_mappings(ruleset):
    from types import MappingProxyType

    item = event("user.account.lock", T0)
    proxy = Event(item.uuid, item.event_type, item.published, MappingProxyType(dict(item.data)))
    assert len(evaluate(ruleset, proxy, EngineState(), T0)[0]) == 1


def big_threshold(folder, count: int, distinct: bool) -> RuleSet:
    """A rule file with a large threshold, through the real loader."""
    (folder / "big.toml").write_text(textwrap.dedent(f"""
        id = "big"
        title = "Many failures from {{client.ipAddress}}"
        severity = "high"
        event_types = ["user.session.start"]
        condition = "failed"
        group_by = ["client.ipAddress"]
        [detection.failed]
        "outcome.result" = "FAILURE"
        [threshold]
        count = {count}
        window = "1h"
        {'distinct = "actor.alternateId"' if distinct else ""}
    """))
    return load_rules([folder])


def test_a_count_above_2000_fires_at_its_count_and_not_before(tmp_path):
    ruleset = big_threshold(tmp_path, 2500, distinct=False)
    events = [event("user.session.start", T0 + timedelta(milliseconds=i)) for i in range(2500)]
    alerts, state = run(ruleset, events[:2499])
    assert alerts == []
    alerts, state = run(ruleset, events[2499:], state)
    assert [(a.rule_id, a.count) for a in alerts] == [("big", 2500)]
    assert alerts[0].first_seen == T0 and len(alerts[0].event_uuids) == 100
    assert state.dropped_entries == 0


def test_a_distinct_count_above_2000_fires_at_its_count_despite_repeats(tmp_path):
    ruleset = big_threshold(tmp_path, 2500, distinct=True)
    at = iter(T0 + timedelta(milliseconds=i) for i in range(10_000))
    users = [event("user.session.start", next(at), user=f"u{i}@x") for i in range(2499)]
    repeats = [event("user.session.start", next(at), user=f"u{i % 7}@x") for i in range(2000)]
    alerts, state = run(ruleset, users + repeats)
    assert alerts == []
    alerts, state = run(ruleset, [event("user.session.start", next(at), user="last@x")], state)
    # Under twice its count a group keeps every event: the alert counts them all.
    assert [(a.context.distinct_count, a.count) for a in alerts] == [(2500, 2500 + 2000)]
    assert state.dropped_entries == 0


def test_a_flood_of_one_value_neither_hides_a_spray_nor_is_kept_whole(tmp_path):
    """One user, then 5000 failures of another from the same IP: the group forgets repeats (and counts
    them), never a distinct value, so the third user still completes the spray."""
    ruleset = big_threshold(tmp_path, 3, distinct=True)
    at = iter(T0 + timedelta(milliseconds=i) for i in range(10_000))
    first = event("user.session.start", next(at), user="v0@x")
    flood = [event("user.session.start", next(at), user="noise@x") for _ in range(5000)]
    alerts, state = run(ruleset, [first, *flood])
    assert alerts == []
    group = state.groups["big/client.ipAddress=192.0.2.1"]
    assert len(group["entries"]) <= 2000 and set(group["values"]) == {"v0@x", "noise@x"}
    assert state.rule_counts["entries_dropped", "big"] == state.dropped_entries == 5001 - len(group["entries"])
    alerts, state = run(ruleset, [event("user.session.start", next(at), user="last@x")], state)
    assert [a.context.distinct_count for a in alerts] == [3]


def test_a_flood_of_new_groups_evicts_the_flood_not_a_spray_about_to_fire(ruleset):
    """The state is full (50 groups); 500 failures from fresh IPs and users each open two groups. The
    spray one user short of its count must survive them: evicting least-recently-used lost it."""
    at = iter(T0 + timedelta(milliseconds=i) for i in range(10_000))
    spray = [event("user.session.start", next(at), user=f"v{i}@x", ip="198.51.100.9") for i in range(2)]
    flood = [event("user.session.start", next(at), user=f"f{i}@x", ip=f"10.0.{i // 256}.{i % 256}")
             for i in range(500)]
    alerts, state = run(ruleset, spray + flood, EngineState(max_groups=50))
    assert by_rule(alerts, "spray") == []
    assert state.group_count == 50 and state.evicted_groups == 1 + 2 + 2 * 500 - 50  # spray, 2 brute, flood
    alerts, state = run(ruleset, [event("user.session.start", next(at), user="v2@x", ip="198.51.100.9")], state)
    assert [a.group_key for a in by_rule(alerts, "spray")] == ["client.ipAddress=198.51.100.9"]


def test_what_the_state_lets_go_is_counted_per_rule_and_handed_over_once(ruleset, monkeypatch):
    state = EngineState(max_groups=3)
    events = [event("user.session.start", T0 + timedelta(seconds=i), user=f"u{i}@x", ip=f"10.0.0.{i}")
              for i in range(5)]
    _, state = run(ruleset, events, state)
    assert state.take_rule_counts() == {("groups_evicted", "brute"): 4, ("groups_evicted", "spray"): 3}
    assert state.take_rule_counts() == {}  # handed over once; the totals stay
    assert (state.evicted_groups, state.rule_counts["groups_evicted", "brute"]) == (7, 4)

    _, state = run(ruleset, [event("user.account.lock", T0 + timedelta(hours=2))], state)
    state.sweep()
    assert state.take_rule_counts() == {("groups_expired", "brute"): 1, ("groups_expired", "spray"): 2}

    lock = ruleset.rules_for("user.account.lock")[0]
    broken = RuleSet([replace(lock, matcher=lambda data: 1 / 0)])
    for _ in range(3):
        evaluate(broken, event("user.account.lock", T0), state, T0)
    assert state.take_rule_counts() == {("match_errors", "lock"): 3}
    assert state.match_errors == 3 and state.expired_groups == 3


def test_a_restored_state_still_spares_the_group_about_to_fire(ruleset):
    at = iter(T0 + timedelta(milliseconds=i) for i in range(10_000))
    spray = [event("user.session.start", next(at), user=f"v{i}@x", ip="198.51.100.9") for i in range(2)]
    _, state = run(ruleset, spray)
    restored = EngineState.restore(state.take_changes()[0].items(), max_groups=50)
    flood = [event("user.session.start", next(at), user=f"f{i}@x", ip=f"10.0.{i // 256}.{i % 256}")
             for i in range(100)]
    last = event("user.session.start", next(at), user="v2@x", ip="198.51.100.9")
    alerts, _ = run(ruleset, [*flood, last], restored)
    assert [a.group_key for a in by_rule(alerts, "spray")] == ["client.ipAddress=198.51.100.9"]
