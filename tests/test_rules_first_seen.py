"""First seen (new terms) on the pure engine: new vs known, lookback by event time, learn vs alert, bounds,
out-of-order events, the loader's checks, and a history that survives the store's rows and a reload."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel.errors import ErrorGroup
from sentinel.model import Alert, Event
from sentinel.rules import RuleSet, first_seen, load_rules
from sentinel.rules.engine import EngineState, evaluate
from sentinel.rules.engine_state import EVICTED_GROUPS, VALUES_FORGOTTEN, to_micros
from sentinel.rules.first_seen import history_rows
from sentinel.rules.model import Rule

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def first_seen_rule(new_group: str = "learn", lookback: str = "30d", max_values: int = 1000,
                    fields: str = '["client.geographicalContext.country"]', extra: str = "") -> str:
    return f"""
id = "new-country"
title = "{{actor.alternateId}} from {{client.geographicalContext.country}}"
severity = "medium"
event_types = ["user.session.start"]
group_by = ["actor.alternateId"]
condition = "ok"
{extra}
[detection.ok]
"outcome.result" = "SUCCESS"

[first_seen]
fields = {fields}
lookback = "{lookback}"
new_group = "{new_group}"
max_values = {max_values}
"""


def load(folder: Path, text: str) -> RuleSet:
    (folder / "rule.toml").write_text(text, encoding="utf-8")
    return load_rules([folder])


def problems(folder: Path, text: str) -> list[str]:
    with pytest.raises(ErrorGroup) as caught:
        load(folder, text)
    return [str(e) for e in caught.value.errors]


counter = iter(range(1_000_000))


def login(at: datetime, country: str | None = "Norway", user: str = "jane@example.com",
          result: str = "SUCCESS", asn: int = 2119) -> Event:
    uid = f"e{next(counter)}"
    geo = {"city": "Oslo"} if country is None else {"city": "Oslo", "country": country}
    data = {
        "uuid": uid, "eventType": "user.session.start", "published": at.isoformat(),
        "actor": {"alternateId": user, "type": "User"},
        "client": {"ipAddress": "192.0.2.1", "geographicalContext": geo},
        "securityContext": {"asNumber": asn},
        "outcome": {"result": result},
    }
    return Event(uid, "user.session.start", at, data)


def run(ruleset: RuleSet, events: list[Event], state: EngineState | None = None) -> tuple[list[Alert], EngineState]:
    state = state or EngineState()
    out: list[Alert] = []
    for item in events:
        alerts, state = evaluate(ruleset, item, state, item.published)
        out.extend(alerts)
    return out, state


def countries(alerts: list[Alert]) -> list[str | None]:
    return [a.context.country for a in alerts]


def history(state: EngineState, rule_id: str = "new-country") -> dict[str, dict[str, tuple[int, int, int]]]:
    """group → first value → (first, last, count), from the state's records as the CLI reads them."""
    found: dict[str, dict[str, tuple[int, int, int]]] = {}
    for key, record in state.groups.items():
        rule, _, group = key.partition("/")
        if rule == rule_id:
            found[group] = {next(iter(row.values.values())): (row.first_micros, row.last_micros, row.count)
                            for row in history_rows(group, record)}
    return found


@pytest.fixture
def learn_rule(tmp_path) -> RuleSet:
    return load(tmp_path, first_seen_rule())


def test_a_new_value_for_a_known_group_alerts_once(learn_rule):
    alerts, _ = run(learn_rule, [login(T0, "Norway"), login(T0 + DAY, "Norway"), login(T0 + 2 * DAY, "Brazil"),
                                 login(T0 + 3 * DAY, "Brazil"), login(T0 + 4 * DAY, "Norway")])
    assert countries(alerts) == ["Brazil"]
    alert = alerts[0]
    assert alert.rule_id == "new-country" and alert.count == 1
    assert alert.title == "jane@example.com from Brazil"
    assert alert.group_key == "actor.alternateId=jane@example.com"


def test_learn_a_group_with_no_history_does_not_alert(learn_rule):
    users = [f"user{i}@example.com" for i in range(50)]
    alerts, state = run(learn_rule, [login(T0, "Norway", user=u) for u in users])
    assert alerts == []  # a fresh store: every group learns its first value, none alerts
    assert len(history(state)) == 50


def test_alert_mode_alerts_for_a_group_with_no_history(tmp_path):
    ruleset = load(tmp_path, first_seen_rule(new_group="alert"))
    alerts, _ = run(ruleset, [login(T0, "Norway"), login(T0 + DAY, "Norway"), login(T0, "Norway", user="bob@x")])
    assert countries(alerts) == ["Norway", "Norway"]
    assert [a.group_key for a in alerts] == ["actor.alternateId=jane@example.com", "actor.alternateId=bob@x"]


def test_groups_are_separate(learn_rule):
    alerts, _ = run(learn_rule, [login(T0, "Norway"), login(T0, "Brazil", user="bob@x"),
                                 login(T0 + DAY, "Brazil")])
    assert countries(alerts) == ["Brazil"]  # Brazil is known for bob, new for jane
    assert alerts[0].group_key == "actor.alternateId=jane@example.com"


def test_a_value_not_seen_for_longer_than_the_lookback_is_new_again(learn_rule):
    events = [login(T0, "Norway"), login(T0, "Brazil"), login(T0 + 29 * DAY, "Norway"),
              login(T0 + 31 * DAY, "Brazil")]  # Norway keeps the group's history alive
    alerts, _ = run(learn_rule, events)
    assert countries(alerts) == ["Brazil", "Brazil"]


def test_a_value_seen_within_the_lookback_is_known(learn_rule):
    alerts, _ = run(learn_rule, [login(T0, "Norway"), login(T0, "Brazil"), login(T0 + 29 * DAY, "Brazil")])
    assert countries(alerts) == ["Brazil"]  # only the first sighting


def test_the_lookback_is_event_time_not_arrival(learn_rule):
    # Delivered in one go (as a replay or a late batch would): 40 days of event time apart.
    alerts, _ = run(learn_rule, [login(T0, "Norway"), login(T0 + DAY, "Brazil"), login(T0 + 40 * DAY, "Brazil")])
    assert countries(alerts) == ["Brazil"]  # at T0+40d the group's history (Norway, Brazil at +1d) has lapsed


def test_a_group_whose_history_lapsed_learns_again(learn_rule):
    alerts, _ = run(learn_rule, [login(T0, "Norway"), login(T0 + 40 * DAY, "Brazil"),
                                 login(T0 + 41 * DAY, "Chile")])
    assert countries(alerts) == ["Chile"]  # back after 40 days: like a new group, learns first


def test_learning_happens_on_alerting_events_too(learn_rule):
    alerts, state = run(learn_rule, [login(T0, "Norway"), login(T0 + DAY, "Brazil"), login(T0 + 2 * DAY, "Brazil")])
    assert countries(alerts) == ["Brazil"]
    assert history(state)["actor.alternateId=jane@example.com"]["Brazil"][2] == 2


def test_events_outside_the_selection_neither_learn_nor_alert(learn_rule):
    alerts, _ = run(learn_rule, [login(T0, "Norway"), login(T0 + DAY, "Brazil", result="FAILURE"),
                                     login(T0 + 2 * DAY, "Brazil")])
    assert countries(alerts) == ["Brazil"]
    assert alerts[0].first_seen == T0 + 2 * DAY


def test_an_event_without_the_field_neither_learns_nor_alerts(learn_rule):
    alerts, state = run(learn_rule, [login(T0, None), login(T0 + DAY, "Norway"), login(T0 + 2 * DAY, None)])
    assert alerts == []  # Norway was the group's first value
    assert list(history(state)["actor.alternateId=jane@example.com"]) == ["Norway"]


def test_several_fields_make_one_value_tuple(tmp_path):
    ruleset = load(tmp_path, first_seen_rule(
        fields='["client.geographicalContext.country", "securityContext.asNumber"]'))
    alerts, state = run(ruleset, [login(T0, "Norway", asn=1), login(T0 + DAY, "Norway", asn=2),
                                  login(T0 + 2 * DAY, "Norway", asn=1), login(T0 + 3 * DAY, "Sweden", asn=1)])
    assert countries(alerts) == ["Norway", "Sweden"]  # Norway with a new ASN, then a new country
    record = next(iter(state.groups.values()))
    rows = list(history_rows("g", record))
    assert {tuple(r.values.items()) for r in rows} == {
        (("client.geographicalContext.country", c), ("securityContext.asNumber", a))
        for c, a in [("Norway", "1"), ("Norway", "2"), ("Sweden", "1")]}


def test_out_of_order_a_late_event_finds_what_a_later_published_event_taught(learn_rule):
    # Brazil published at +2d arrives first (alerts); Brazil published at +1d arrives later: not new twice.
    alerts, state = run(learn_rule, [login(T0, "Norway"), login(T0 + 2 * DAY, "Brazil"), login(T0 + DAY, "Brazil")])
    assert countries(alerts) == ["Brazil"]
    first, last, count = history(state)["actor.alternateId=jane@example.com"]["Brazil"]
    assert (first, last, count) == (to_micros(T0 + DAY), to_micros(T0 + 2 * DAY), 2)


def test_out_of_order_an_event_before_the_group_had_history_learns(learn_rule):
    # Published before the group's first event: at its own time the group had no history.
    alerts, _ = run(learn_rule, [login(T0 + DAY, "Norway"), login(T0, "Brazil")])
    assert alerts == []


def test_a_late_event_still_finds_a_value_whose_lookback_ended_by_the_newest_event(learn_rule):
    # Norway last seen at T0; the group's newest event is T0+30d+10m; a late event from T0+29d23h arrives:
    # inside Norway's lookback at its own time, so Norway is known although the newest event is past it.
    events = [login(T0, "Norway"), login(T0, "Brazil"), login(T0 + 20 * DAY, "Chile"),
              login(T0 + 30 * DAY + timedelta(minutes=10), "Brazil"),
              login(T0 + 30 * DAY - timedelta(hours=1), "Norway")]
    alerts, _ = run(learn_rule, events)
    assert countries(alerts) == ["Brazil", "Chile", "Brazil"]  # Chile keeps the history; Norway is not new


def test_max_values_forgets_the_least_recently_seen_first_and_counts_it(tmp_path):
    ruleset = load(tmp_path, first_seen_rule(max_values=3))
    events = [login(T0 + i * timedelta(hours=1), c) for i, c in enumerate(["A", "B", "C"])]
    events += [login(T0 + 3 * timedelta(hours=1), "A"), login(T0 + 4 * timedelta(hours=1), "D")]  # B is oldest
    alerts, state = run(ruleset, [*events, login(T0 + 5 * timedelta(hours=1), "B"),
                                  login(T0 + 6 * timedelta(hours=1), "D")])
    assert countries(alerts) == ["B", "C", "D", "B"]  # B forgotten for D, so B is new again; D kept
    assert len(history(state)["actor.alternateId=jane@example.com"]) == 3
    assert state.rule_counts[VALUES_FORGOTTEN, "new-country"] == 2  # B for D, then C for B
    assert state.dropped_entries == 0


def test_the_total_is_bounded_by_max_groups_and_eviction_is_counted(learn_rule):
    state = EngineState(max_groups=10)
    _, state = run(learn_rule, [login(T0, "Norway", user=f"u{i}@x") for i in range(25)], state)
    assert state.group_count == 10
    assert state.rule_counts[EVICTED_GROUPS, "new-country"] == 15
    assert set(history(state)) == {f"actor.alternateId=u{i}@x" for i in range(15, 25)}  # least recent went


def test_a_threshold_window_about_to_fire_outlives_a_flood_of_first_seen_groups(tmp_path):
    threshold = """
id = "three-failures"
title = "failures"
severity = "high"
event_types = ["user.session.start"]
group_by = ["actor.alternateId"]
condition = "failed"
[detection.failed]
"outcome.result" = "FAILURE"
[threshold]
count = 3
window = "1h"
"""
    (tmp_path / "threshold.toml").write_text(threshold, encoding="utf-8")
    ruleset = load(tmp_path, first_seen_rule())
    state = EngineState(max_groups=20)
    at = T0 + timedelta(minutes=1)
    _, state = run(ruleset, [login(T0, user="victim@x", result="FAILURE"),
                             login(T0, user="victim@x", result="FAILURE")], state)
    _, state = run(ruleset, [login(at, "Norway", user=f"u{i}@x") for i in range(200)], state)
    alerts, state = run(ruleset, [login(at, user="victim@x", result="FAILURE")], state)
    assert [a.rule_id for a in alerts] == ["three-failures"]


def test_a_group_expires_with_its_lookback_through_the_shared_sweep(learn_rule):
    _, state = run(learn_rule, [login(T0, "Norway", user="gone@x")])
    record = state.groups["new-country/actor.alternateId=gone@x"]
    assert record["expires"] == to_micros(T0 + 30 * DAY)  # what the sweep (and its lateness allowance) reads
    _, state = run(learn_rule, [login(T0 + 31 * DAY, "Norway")], state)
    state.sweep()
    assert "new-country/actor.alternateId=gone@x" not in state.groups


def test_history_round_trips_through_the_stores_rows(learn_rule):
    _, state = run(learn_rule, [login(T0, "Norway"), login(T0 + DAY, "Brazil")])
    changed, _ = state.take_changes()
    restored = EngineState.restore(list(changed.items()))
    alerts, _ = run(learn_rule, [login(T0 + 2 * DAY, "Brazil"), login(T0 + 2 * DAY, "Chile")], restored)
    assert countries(alerts) == ["Chile"]


def test_a_reload_keeps_the_history(tmp_path, learn_rule):
    _, state = run(learn_rule, [login(T0, "Norway")])
    reloaded = load(tmp_path, first_seen_rule().replace('severity = "medium"', 'severity = "high"'))
    alerts, _ = run(reloaded, [login(T0 + DAY, "Norway"), login(T0 + DAY, "Chile")], state)
    assert countries(alerts) == ["Chile"]


def test_a_reload_that_changes_the_fields_starts_the_history_afresh(tmp_path, learn_rule):
    _, state = run(learn_rule, [login(T0, "Norway")])
    reloaded = load(tmp_path, first_seen_rule(fields='["client.ipAddress"]'))
    alerts, state = run(reloaded, [login(T0 + DAY, "Norway")], state)
    assert alerts == []  # the old values meant something else: the group learns again
    assert [list(r.values) for r in history_rows("g", next(iter(state.groups.values())))] == [["client.ipAddress"]]


def test_alert_keys_differ_per_value_and_repeat_across_runs(learn_rule):
    events = [login(T0, "Norway"), login(T0 + DAY, "Brazil"), login(T0 + DAY, "Chile")]
    first, _ = run(learn_rule, events)
    again, _ = run(learn_rule, events)
    assert len({a.key for a in first}) == 2
    assert [a.key for a in first] == [a.key for a in again]


def test_the_state_is_plain_json(learn_rule):
    _, state = run(learn_rule, [login(T0, 'Nor"way\u202e'), login(T0 + DAY, "Brazil")])
    for text in state.take_changes()[0].values():
        assert json.loads(text)["values"]


def rule_of(ruleset: RuleSet) -> Rule:
    return ruleset.rules[0]


def test_the_loader_reads_the_table(learn_rule):
    spec = rule_of(learn_rule).first_seen
    assert spec is not None
    assert ([p.text for p in spec.fields], spec.lookback_seconds, spec.new_group, spec.max_values) == (
        ["client.geographicalContext.country"], 30 * 86_400, "learn", 1000)


def test_the_loader_defaults(tmp_path):
    text = first_seen_rule().replace('new_group = "learn"\n', "").replace("max_values = 1000\n", "")
    spec = rule_of(load(tmp_path, text)).first_seen
    assert spec is not None and (spec.new_group, spec.max_values) == ("learn", 1000)


def test_lookback_may_reach_90_days_but_not_more(tmp_path):
    assert rule_of(load(tmp_path, first_seen_rule(lookback="90d"))).first_seen is not None
    assert problems(tmp_path, first_seen_rule(lookback="91d")) == [
        f"{tmp_path / 'rule.toml'}: first_seen.lookback: must be between 1 second and 90 days, got '91d'"]


@pytest.mark.parametrize(("table", "message"), [
    ('fields = []\nlookback = "1d"', "first_seen.fields: is required: a non-empty list of field paths"),
    ('fields = "country"\nlookback = "1d"', "first_seen.fields: is required: a non-empty list of field paths"),
    ('fields = ["a..b"]\nlookback = "1d"', "first_seen.fields[0]:"),
    ('fields = ["country"]', "first_seen.lookback: is required"),
    ('fields = ["country"]\nlookback = "soon"', "first_seen.lookback: not a duration"),
    ('fields = ["country"]\nlookback = "1d"\nnew_group = "ignore"', 'first_seen.new_group: must be "learn" or'),
    ('fields = ["country"]\nlookback = "1d"\nmax_values = 0', "first_seen.max_values: must be a whole number"),
    ('fields = ["country"]\nlookback = "1d"\nmax_values = 20000', "first_seen.max_values: must be a whole number"),
    ('fields = ["country"]\nlookback = "1d"\nlimit = 3', "first_seen.limit: unknown field"),
])
def test_the_loader_names_each_problem(tmp_path, table, message):
    text = f'id = "x"\ntitle = "x"\nseverity = "low"\nevent_types = ["user.session.start"]\n[first_seen]\n{table}\n'
    found = problems(tmp_path, text)
    assert len(found) == 1 and message in found[0], found


def test_first_seen_with_a_threshold_or_throttle_is_an_error(tmp_path):
    text = first_seen_rule(extra='[throttle]\nperiod = "1h"\n[threshold]\ncount = 2\nwindow = "1h"\n')
    found = problems(tmp_path, text)
    assert [f.split(": ", 1)[1] for f in found] == [
        "first_seen: cannot be combined with threshold (a first-seen rule alerts once per new value)",
        "first_seen: cannot be combined with throttle (a first-seen rule alerts once per new value)"]


def test_a_first_seen_table_that_is_not_a_table(tmp_path):
    text = 'id = "x"\ntitle = "x"\nseverity = "low"\nevent_types = ["user.session.start"]\nfirst_seen = 3\n'
    assert [f.split(": ", 1)[1] for f in problems(tmp_path, text)] == [
        "first_seen: must be a table with fields and lookback"]


def test_a_reload_that_turns_the_rule_into_a_threshold_starts_its_groups_afresh(tmp_path, learn_rule):
    _, state = run(learn_rule, [login(T0, "Norway")])
    threshold = first_seen_rule().split("[first_seen]")[0] + '[threshold]\ncount = 2\nwindow = "1h"\n'
    alerts, state = run(load(tmp_path, threshold), [login(T0 + DAY, "Norway"), login(T0 + DAY, "Chile")], state)
    assert [a.count for a in alerts] == [2]  # not a KeyError on the first-seen record
    assert state.match_errors == 0


def test_without_group_by_the_rule_keeps_one_history(tmp_path):
    ruleset = load(tmp_path, first_seen_rule().replace('group_by = ["actor.alternateId"]\n', ""))
    alerts, state = run(ruleset, [login(T0, "Norway"), login(T0, "Norway", user="bob@x"),
                                  login(T0 + DAY, "Chile", user="carol@x")])
    assert countries(alerts) == ["Chile"]
    assert list(state.groups) == ["new-country/"]


def test_history_rows_ignore_records_of_other_kinds():
    threshold_record = {"entries": [[1, "u", None]], "episode": None, "seen": 1, "expires": 2}
    assert list(history_rows("g", threshold_record)) == []
    broken = {"fields": ["a"], "values": {"not json": [1, 2, 3], '["x"]': [1, 2], '["y"]': [1, 5, 2]}}
    assert [(r.values, r.last_micros) for r in history_rows("g", broken)] == [({"a": "y"}, 5)]


def test_values_compare_exactly_case_included(learn_rule):
    alerts, _ = run(learn_rule, [login(T0, "Norway"), login(T0 + DAY, "NORWAY")])
    assert countries(alerts) == ["NORWAY"]  # a case variant is a new value: noise at worst, never a miss


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet=st.sampled_from('"\\\n\x00\x1f\x7f\u2028é\ud800a/ '), max_size=8), min_size=1,
                max_size=3))
def test_a_value_key_is_the_json_of_the_values(values):
    """Keys stored before value_key built them from json's string encoder must still be found."""
    assert first_seen.value_key(values) == json.dumps(values, ensure_ascii=False, separators=(",", ":"))
