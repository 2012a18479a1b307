"""Thresholds with named measures and a ``when`` over them (issue 14 point 8: ratios, sums, several counts
compared): each measure kind on the pure engine, firing at the boundary and not past it, division by zero
as no match, out-of-order delivery and a restart between any two events giving the same alerts, bounded
state, the loader's errors and what ``rules check`` and an alert say."""

from __future__ import annotations

import random
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from test_config import run_cli

from sentinel.errors import ErrorGroup
from sentinel.model import Alert, Event
from sentinel.render.message import text_message
from sentinel.rules import RuleSet, load_rules
from sentinel.rules.engine import MAX_MEASURED_ENTRIES, EngineState, evaluate
from sentinel.rules.engine_state import DROPPED_ENTRIES
from sentinel.rules.measure_expr import parse_when

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

SPRAY = """
id = "spray"
title = "spray from {client.ipAddress}"
severity = "high"
event_types = ["user.session.start"]
condition = "failed"
group_by = ["client.ipAddress"]

[detection.failed]
"outcome.result" = "FAILURE"

[threshold]
window = "10m"
when = "WHEN"

[threshold.measures]
failures = { count = true }
users = { distinct = "actor.alternateId" }
"""


def load(folder: Path, text: str) -> RuleSet:
    (folder / "rule.toml").write_text(textwrap.dedent(text), encoding="utf-8")
    return load_rules([folder])


def spray(folder: Path, when: str, measures: str = "") -> RuleSet:
    return load(folder, SPRAY.replace("WHEN", when) + measures)


counter = iter(range(10_000_000))


def event(seconds: float, user: str = "u1", ip: str = "203.0.113.9", result: str = "FAILURE",
          event_type: str = "user.session.start", **extra: Any) -> Event:
    uid = f"e{next(counter)}"
    at = T0 + timedelta(seconds=seconds)
    data = {"uuid": uid, "eventType": event_type, "published": at.isoformat().replace("+00:00", "Z"),
            "actor": {"alternateId": user}, "client": {"ipAddress": ip}, "outcome": {"result": result}, **extra}
    return Event(uid, event_type, at, data)


def run(ruleset: RuleSet, events: list[Event], state: EngineState | None = None) -> list[Alert]:
    state = state or EngineState()
    out: list[Alert] = []
    for item in events:
        alerts, state = evaluate(ruleset, item, state, item.published)
        out.extend(alerts)
    return out


def latest(alerts: list[Alert]) -> dict[str, Alert]:
    """Each alert key's last version (a fold re-emits the key with a larger count)."""
    return {a.key: a for a in alerts}


def spread(users: int, per_user: int, step: float = 10.0) -> list[Event]:
    """``users`` users failing ``per_user`` times each, one event every ``step`` seconds, users interleaved."""
    return [event(step * (round_ * users + n), user=f"user{n}") for round_ in range(per_user) for n in range(users)]


# --- firing at the boundary ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("users", "per_user", "fires"), [
    (10, 2, True),   # 20 failures, 10 users, 2 per user: every part met exactly
    (10, 1, False),  # 10 failures: too few
    (9, 2, False),   # 18 failures over 9 users
    (7, 3, True),    # 21 failures for 7 users, 3 each: fires when the 20th lands (3, 3, ..., 2 per user ≤ 2.86)
])
def test_count_distinct_and_their_ratio_fire_at_the_boundary(tmp_path, users, per_user, fires):
    ruleset = spray(tmp_path, "failures >= 20 and users >= 7 and failures / users <= 3")
    assert bool(run(ruleset, spread(users, per_user))) is fires


def test_a_ratio_just_past_its_bound_does_not_fire(tmp_path):
    ruleset = spray(tmp_path, "failures >= 20 and failures / users <= 2")
    # 20 failures by 10 users is exactly 2 per user: fires on the 20th event
    [alert] = latest(run(ruleset, spread(10, 2))).values()
    assert alert.count == 20
    assert dict(alert.context.measures) == {"failures": "20", "users": "10", "failures / users": "2"}
    # one user fails once more before the 20th: 20 failures by 9 users (2.22 per user) never fires, nor does
    # adding an 11th user's 21st failure make 21 / 10 = 2.1
    events = [event(i * 10.0, user=f"user{i % 9}") for i in range(20)] + [event(205.0, user="user10")]
    assert run(spray(tmp_path, "failures >= 20 and failures / users <= 2"), events) == []


def test_the_window_is_event_time(tmp_path):
    ruleset = spray(tmp_path, "failures >= 4 and users >= 2")
    assert run(ruleset, [event(0, "a"), event(200, "b"), event(400, "a"), event(600, "b")])  # 10 min exactly
    assert not run(ruleset, [event(0, "a"), event(200, "b"), event(400, "a"), event(601, "b")])


# --- division by zero and undefined values ------------------------------------------------------------------


@pytest.mark.parametrize("when", [
    "failures / denied > 1",
    "not (failures / denied > 1)",
    "failures >= 1 and failures / (users - users) < 5",
    "failures / denied > 1 or failures / denied <= 1",
])
def test_division_by_zero_is_no_match_never_a_crash(tmp_path, when):
    measures = 'denied = { count = true, where = "denied" }\n[detection.denied]\n"outcome.reason" = "DENIED"\n'
    ruleset = spray(tmp_path, when, measures)
    assert run(ruleset, spread(3, 3)) == []


def test_three_valued_logic_lets_a_defined_part_decide(tmp_path):
    measures = 'denied = { count = true, where = "denied" }\n[detection.denied]\n"outcome.reason" = "DENIED"\n'
    # the quotient is undefined, but "or" with a true part is true; "and" with a false part false
    assert run(spray(tmp_path, "failures / denied > 1 or failures >= 3", measures), spread(3, 1))
    assert parse_when("a / b > 1 and a > 5", ["a", "b"]).evaluate({"a": 1.0, "b": 0.0}) is False
    assert parse_when("a / b > 1 and a > 0", ["a", "b"]).evaluate({"a": 1.0, "b": 0.0}) is None


# --- each measure kind ----------------------------------------------------------------------------------------


KINDS = """
denied = { count = true, where = "denied" }
most = { max_per = "actor.alternateId" }
few = { distinct = "actor.alternateId", per_value = [1, 2] }
spent = { sum = "debugContext.debugData.cost" }
seconds = { span = true }
first_denied = { first = true, where = "denied" }
[detection.denied]
"outcome.reason" = "DENIED"
"""


def test_every_kind_of_measure_is_what_the_window_holds(tmp_path):
    ruleset = spray(tmp_path, "failures >= 6", KINDS)
    events = [
        event(0, "a", debugContext={"debugData": {"cost": "2.5"}}),
        event(30, "a", outcome={"result": "FAILURE", "reason": "DENIED"}),
        event(60, "a"),
        event(90, "b", debugContext={"debugData": {"cost": 4}}),
        event(120, "c", outcome={"result": "FAILURE", "reason": "DENIED"}, debugContext={"debugData": {"cost": "x"}}),
        event(150, "b"),
    ]
    [alert] = latest(run(ruleset, events)).values()
    assert dict(alert.context.measures) == {
        "failures": "6", "users": "3", "denied": "2", "most": "3", "few": "2", "spent": "6.50", "seconds": "150",
        "first_denied": "2026-03-01T12:00:30.000000Z"}


def test_where_selects_the_events_of_a_measure_and_first_last_order_them(tmp_path):
    text = """
        id = "replay"
        title = "session {authenticationContext.rootSessionId} replayed"
        severity = "high"
        event_types = ["user.session.start", "policy.evaluate_sign_on"]
        group_by = ["authenticationContext.rootSessionId"]
        [detection.start]
        eventType = "user.session.start"
        [threshold]
        window = "1h"
        when = "first_start < first_other and addresses > 1"
        [threshold.measures]
        first_start = { first = true, where = "start" }
        first_other = { first = true, where = "not start" }
        addresses = { distinct = "client.ipAddress" }
    """
    ruleset = load(tmp_path, text)
    session = {"rootSessionId": "idx1"}
    start = event(0, ip="198.51.100.1", event_type="user.session.start", authenticationContext=session)
    replay = event(60, ip="203.0.113.9", event_type="policy.evaluate_sign_on", authenticationContext=session)
    assert len(run(ruleset, [start, replay])) == 1
    # a sign-on evaluation from elsewhere before the session started: not a replay of it
    early = event(0, ip="203.0.113.9", event_type="policy.evaluate_sign_on", authenticationContext=session)
    late_start = event(60, ip="198.51.100.1", event_type="user.session.start", authenticationContext=session)
    assert run(ruleset, [early, late_start]) == []


# --- out of order and restarts --------------------------------------------------------------------------------


def summary(alerts: list[Alert]) -> dict[str, tuple[int, tuple[str, ...], tuple[tuple[str, str], ...]]]:
    return {key: (a.count, tuple(sorted(a.event_uuids)), a.context.measures) for key, a in latest(alerts).items()}


def test_out_of_order_within_the_allowance_gives_the_alerts_of_ordered_delivery(tmp_path):
    ruleset = spray(tmp_path, "failures >= 12 and users >= 4 and failures / users <= 3")
    ordered = spread(5, 3, step=20.0) + [event(3600 + 20 * i, user=f"v{i % 4}") for i in range(12)]
    expected = summary(run(ruleset, ordered))
    assert len(expected) == 2
    rng = random.Random(14)
    for _ in range(40):
        shuffled = ordered[:]
        # each event late by up to 5 minutes (the allowance is 15): swap within a sliding neighbourhood
        shuffled.sort(key=lambda e: e.published + timedelta(seconds=rng.uniform(0, 300)))
        assert summary(run(ruleset, shuffled)) == expected


def test_state_survives_a_restart_between_any_two_events(tmp_path):
    ruleset = spray(tmp_path, "failures >= 12 and users >= 4 and failures / users <= 3", KINDS)
    events = spread(5, 3, step=20.0)
    expected = summary(run(ruleset, events))
    assert expected
    state, got = EngineState(), []
    rows: dict[str, str] = {}
    for item in events:
        alerts, state = evaluate(ruleset, item, state, item.published)
        got.extend(alerts)
        changed, deleted = state.take_changes()
        rows.update(changed)
        for key in deleted:
            rows.pop(key, None)
        state = EngineState.restore(rows.items())  # as the detector restarts from the stored rows
    assert summary(got) == expected


def test_a_group_kept_under_other_measures_starts_afresh(tmp_path):
    before = spray(tmp_path, "failures >= 4")
    state = EngineState()
    run(before, [event(0, "a"), event(10, "b"), event(20, "c")], state)
    after = spray(tmp_path, "failures >= 4", 'other = { distinct = "client.ipAddress" }\n')
    assert run(after, [event(30, "d")], state) == []  # the three earlier events were counted under other measures
    assert run(after, [event(40, "e"), event(50, "f"), event(60, "g")], state)


def test_a_group_never_holds_more_than_its_bound_and_counts_what_it_forgets(tmp_path):
    ruleset = spray(tmp_path, "failures >= 5 and users >= 100")  # one user's flood never meets it
    state = EngineState()
    flood = [event(i * 0.1, "a") for i in range(MAX_MEASURED_ENTRIES + 300)]
    assert run(ruleset, flood, state) == []
    [group] = state.groups.values()
    assert len(group["entries"]) == MAX_MEASURED_ENTRIES
    assert state.rule_counts[DROPPED_ENTRIES, "spray"] == 300


def test_the_throttle_is_the_hold_later_matches_fold(tmp_path):
    ruleset = load(tmp_path, SPRAY.replace("WHEN", "failures >= 3") + '[throttle]\nperiod = "1h"\n')
    alerts = run(ruleset, [event(0, "a"), event(60, "b"), event(120, "c"), event(1800, "d"), event(4000, "e")])
    assert [a.count for a in alerts] == [3, 4]  # the fourth folds; the fifth starts afresh
    assert len(latest(alerts)) == 1


# --- what the alert says ---------------------------------------------------------------------------------------


def test_the_alert_states_the_test_and_the_measures(tmp_path):
    ruleset = spray(tmp_path, "failures >= 20 and users >= 10 and failures / users <= 3")
    [alert] = latest(run(ruleset, spread(12, 2)[:20])).values()
    context = alert.context.as_dict()
    assert context["when"] == "failures >= 20 and users >= 10 and failures / users <= 3"
    assert context["measures"] == {"failures": "20", "users": "12", "failures / users": "1.67"}
    text = text_message(alert).body
    assert "the rule fires when failures >= 20 and users >= 10 and failures / users <= 3 within 10 min" in text
    assert "Measures:   failures 20, users 12, failures / users 1.67" in text.splitlines()


# --- the loader and rules check ---------------------------------------------------------------------------------


def problems(folder: Path, text: str) -> list[str]:
    with pytest.raises(ErrorGroup) as caught:
        load(folder, text)
    return [str(e).split(": ", 1)[1] for e in caught.value.errors]


@pytest.mark.parametrize(("when", "measures", "message"), [
    ("failure >= 20", "", "threshold.when: unknown measure 'failure' (measures: failures, users)"),
    ("failures >= 20 &&", "", "threshold.when: unexpected '&&' at character 16"),
    ("failures", "", "threshold.when: 'failures' is a number, not a test: compare it, e.g. 'failures >= 10'"),
    ("2 <= users <= 8", "", "threshold.when: chained comparison: write 'a <= x and x <= b', not '<=' at character 12"),
    ("1 > 0", "", "threshold.when: names no measure: it would hold for every window or for none"),
    ("failures >= 1", 'bad = { count = true, where = "nope" }\n',
     "threshold.measures.bad.where: condition names unknown selection 'nope'"),
    ("failures >= 1", 'bad = { count = true, distinct = "a" }\n',
     "threshold.measures.bad: names exactly one of count, distinct, sum, max_per, span, first, last "
     "(it names count, distinct)"),
    ("failures >= 1", 'bad = { count = true, per_value = [1, 2] }\n',
     "threshold.measures.bad.per_value: only with distinct (values having that many events each)"),
    ("failures >= 1", 'bad = { distinct = "a", per_value = [3, 2] }\n',
     "threshold.measures.bad.per_value: [least, most]: whole numbers from 1, least <= most, e.g. [2, 6]"),
    ("failures >= 1", 'bad = { sum = "a..b" }\n', "threshold.measures.bad.sum: bad field path"),
    ("failures >= 1", 'bad = { count = 1 }\n', "threshold.measures.bad.count: must be true"),
])
def test_the_loader_names_each_problem(tmp_path, when, measures, message):
    found = problems(tmp_path, SPRAY.replace("WHEN", when) + measures)
    assert len(found) == 1 and found[0].startswith(message), found


def test_count_and_distinct_do_not_mix_with_measures(tmp_path):
    text = SPRAY.replace('window = "10m"', 'window = "10m"\ncount = 5\ndistinct = "a"').replace("WHEN", "users > 1")
    assert [p.split(" (")[0] for p in problems(tmp_path, text)] == [
        "threshold.count: a threshold with measures has no count",
        "threshold.distinct: a threshold with measures has no distinct"]


def test_rules_check_prints_each_problem_and_accepts_a_good_rule(tmp_path):
    rule = tmp_path / "spray.toml"
    rule.write_text(SPRAY.replace("WHEN", "failures >= 20 and failures / user <= 2"), encoding="utf-8")
    result = run_cli("rules", "check", str(rule))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{rule}: threshold.when: unknown measure 'user' (measures: failures, users)"]
    rule.write_text(SPRAY.replace("WHEN", "failures >= 20 and failures / users <= 2"), encoding="utf-8")
    result = run_cli("rules", "check", str(rule))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "1 rules OK\n"


@pytest.mark.parametrize("text", [
    "few * 100 / users >= 80", "a - (b - c) > 1", "a / (b * c) > 1", "-(a + b) > 1 or not (a > 1 and b > 1)",
    "(a + b) * c > 1 and a != 2", "a - b - c == 0.5",
])
def test_the_when_as_the_alert_writes_it_parses_back_to_the_same_test(text):
    names = ["a", "b", "c", "few", "users"]
    parsed = parse_when(text, names)
    assert parse_when(parsed.text(), names) == parsed
    assert parsed.text() == text


def test_the_running_tally_gives_what_a_fresh_pass_gives(tmp_path):
    # An event in order updates the tally kept from the one before (EngineState.scratch); a late one, a
    # reload or a restart makes a fresh pass. Random streams, mostly in order, some late, three IPs and a
    # when that holds, stops holding and holds again: the same alerts either way, event by event.
    ruleset = spray(tmp_path, "failures >= 6 and users >= 3 and failures / users <= 2 and seconds >= 60",
                    KINDS)
    rng = random.Random(8)
    for _ in range(30):
        stream = []
        for i in range(150):
            late = rng.random() < 0.15
            at = i * 20.0 - (rng.uniform(0, 600) if late else 0)
            stream.append(event(at, user=f"u{rng.randrange(6)}", ip=f"203.0.113.{rng.randrange(3)}",
                                outcome={"result": "FAILURE", "reason": rng.choice(["DENIED", "BAD"])}))
        kept, fresh = EngineState(), EngineState()
        used = False
        for item in stream:
            with_tally, kept = evaluate(ruleset, item, kept, item.published)
            used = used or bool(kept.scratch)
            fresh.scratch.clear()
            without, fresh = evaluate(ruleset, item, fresh, item.published)
            assert [(a.key, a.count, a.context.measures) for a in with_tally] == [
                (a.key, a.count, a.context.measures) for a in without]
        assert used  # the running tally was in use


def test_a_flood_costs_the_entries_it_adds_not_a_pass_over_the_window(tmp_path):
    # Counted, not timed: with the running tally, an in-order event of a group at its bound touches a
    # constant number of entries; the fresh pass would touch all 2,000 each time.
    from sentinel.rules import measures

    ruleset = spray(tmp_path, "failures >= 5 and users >= 100")
    state = EngineState()
    run(ruleset, [event(i * 0.1, "a") for i in range(MAX_MEASURED_ENTRIES + 10)], state)
    touched = 0
    original = measures._Tally.add

    def counting(self, entry, sign):
        nonlocal touched
        touched += 1
        original(self, entry, sign)

    measures._Tally.add = counting  # type: ignore[method-assign]
    try:
        run(ruleset, [event(300 + i * 0.1, "a") for i in range(100)], state)
    finally:
        measures._Tally.add = original  # type: ignore[method-assign]
    assert touched <= 100 * 3


def test_the_stored_context_gives_back_the_test_and_the_measures(tmp_path):
    from sentinel.alert_context import AlertContext

    [alert] = latest(run(spray(tmp_path, "failures >= 4 and failures / users <= 2"), spread(2, 2))).values()
    again = AlertContext.from_dict(alert.context.as_dict())
    assert again == alert.context
    assert again.measures == (("failures", "4"), ("users", "2"), ("failures / users", "2"))
    assert AlertContext.from_dict({"when": 3, "measures": ["x"]}).measures == ()  # junk in a stored row


@pytest.mark.parametrize("when", [
    "(" * 200 + "failures > 1" + ")" * 200, "not " * 200 + "failures > 1", "- " * 200 + "failures > 1",
    "failures > 1 and " * 80 + "users > 1",
])
def test_a_hostile_when_is_a_load_error_or_a_test_never_a_crash(tmp_path, when):
    try:
        ruleset = spray(tmp_path, when)
    except ErrorGroup as error:
        assert all("threshold.when" in str(e) for e in error.errors)
        return
    run(ruleset, spread(3, 3))


def test_the_docs_examples_load_and_the_first_fires(tmp_path):
    docs = (Path(__file__).resolve().parent.parent / "docs" / "rules.md").read_text(encoding="utf-8")
    section = docs.split("### Measures: ratios and several counts", 1)[1].split("\n## ", 1)[0]
    blocks = [part.split("```", 1)[0] for part in section.split("```toml\n")[1:]]
    assert len(blocks) == 4
    (tmp_path / "rule.toml").write_text(blocks[0], encoding="utf-8")
    ruleset = load_rules([tmp_path])
    failures = [event(i * 10.0, user=f"user{i % 12}", outcome={"result": "FAILURE", "reason": "INVALID_CREDENTIALS"})
                for i in range(24)]
    [alert] = latest(run(ruleset, failures)).values()
    assert dict(alert.context.measures)["failures / users"] == "1.67"
    header = SPRAY.split("[threshold]", 1)[0] + (
        '[detection.push]\neventType = "system.push.send_factor_verify_push"\n'
        '[detection.accepted]\n"outcome.result" = "SUCCESS"\n[detection.denied]\n"outcome.result" = "FAILURE"\n')
    for block in blocks[1:]:
        (tmp_path / "rule.toml").write_text(header + block, encoding="utf-8")
        [rule] = load_rules([tmp_path]).rules
        assert rule.threshold is not None and rule.threshold.when is not None


def test_long_values_are_counted_apart_and_kept_short(tmp_path):
    ruleset = spray(tmp_path, "users >= 3")
    state = EngineState()
    long_a, long_b = "a" * 5000 + "@example.com", "a" * 5000 + "@example.org"  # the same first 5000 characters
    assert run(ruleset, [event(0, long_a), event(10, long_b)], state) == []
    [group] = state.groups.values()
    assert all(len(value) <= 48 for _, _, values in group["entries"] for value in values if isinstance(value, str))
    assert run(ruleset, [event(20, "short@example.com")], state)
