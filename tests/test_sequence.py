"""Sequence rules on the pure engine: order, counts, within and window edges, absence, out-of-order
events, duplicates, interleaved groups, per-step join fields, throttle, the cap, restore, and the
loader's errors (each naming the file and key path)."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sentinel.errors import ErrorGroup
from sentinel.model import Alert, Event
from sentinel.rules import RuleSet, load_rules
from sentinel.rules.engine import EngineState, evaluate
from sentinel.rules.sequence_spec import MAX_STEP_EVENTS

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

FATIGUE = """
id = "fatigue"
title = "Push fatigue for {actor.alternateId}"
severity = "high"
event_types = ["push.deny", "push.accept"]
group_by = ["actor.alternateId"]
[detection.denied]
eventType = "push.deny"
[detection.accepted]
eventType = "push.accept"
[sequence]
@WINDOW@
[[sequence.steps]]
selection = "denied"
count = 3
within = "10m"
[[sequence.steps]]
selection = "accepted"
within = "10m"
@EXTRA@
"""

REVERT = """
id = "no-revert"
title = "MFA off for {target[type=User].alternateId}, not turned back on"
severity = "medium"
event_types = ["mfa.off", "mfa.on"]
group_by = ["target[type=User].alternateId"]
[detection.off]
eventType = "mfa.off"
[detection.on]
eventType = "mfa.on"
[sequence]
[[sequence.steps]]
selection = "off"
[[sequence.steps]]
selection = "on"
absent = true
within = "1h"
"""

JOINED = """
id = "reset-then-grant"
title = "Reset then grant"
severity = "high"
event_types = ["reset", "grant"]
group_by = ["target.alternateId"]
[detection.reset]
eventType = "reset"
[detection.grant]
eventType = "grant"
[sequence]
[[sequence.steps]]
selection = "reset"
[[sequence.steps]]
selection = "grant"
group_by = ["debugContext.debugData.user"]
within = "24h"
"""


def ruleset(tmp_path: Path, text: str) -> RuleSet:
    path = tmp_path / "rule.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_rules([path])


def fatigue(tmp_path: Path, window: str = "", extra: str = "") -> RuleSet:
    return ruleset(tmp_path, fatigue_text(window, extra))


def fatigue_text(window: str = "", extra: str = "") -> str:
    return FATIGUE.replace("@WINDOW@", window).replace("@EXTRA@", extra)


def event(kind: str, seconds: float, user: str = "jane@example.com", uuid: str | None = None,
          **data: object) -> Event:
    published = T0 + timedelta(seconds=seconds)
    uuid = uuid or f"{kind}-{user}-{seconds}"
    body = {"uuid": uuid, "eventType": kind, "published": published.isoformat(),
            "actor": {"alternateId": user}, "target": [{"type": "User", "alternateId": user}], **data}
    return Event(uuid=uuid, event_type=kind, published=published, data=body)


class Run:
    """Feeds events through the engine with one state, collecting the latest version of each alert."""

    def __init__(self, rules: RuleSet, state: EngineState | None = None) -> None:
        self.rules = rules
        self.state = state or EngineState()
        self.alerts: dict[str, Alert] = {}
        self.raised: list[Alert] = []

    def feed(self, *events: Event, now: datetime | None = None) -> list[Alert]:
        new = []
        for each in events:
            alerts, self.state = evaluate(self.rules, each, self.state, now or each.published)
            for alert in alerts:
                self.alerts[alert.key] = alert
            new.extend(alerts)
        self.raised.extend(new)
        return new


def denies(*seconds: float, user: str = "jane@example.com") -> list[Event]:
    return [event("push.deny", s, user) for s in seconds]


# --- order and counts -------------------------------------------------------------------------


def test_three_denies_then_an_accept_fires_once_with_every_step_in_order(tmp_path):
    run = Run(fatigue(tmp_path))
    assert run.feed(*denies(0, 60, 120)) == []
    [alert] = run.feed(event("push.accept", 180))
    assert alert.rule_id == "fatigue"
    assert alert.event_uuids == ("push.deny-jane@example.com-0", "push.deny-jane@example.com-60",
                                 "push.deny-jane@example.com-120", "push.accept-jane@example.com-180")
    assert alert.count == 4
    assert alert.first_seen == T0 and alert.last_seen == T0 + timedelta(seconds=180)
    steps = alert.context.steps
    assert [(s.step, s.name, s.count) for s in steps] == [(1, "denied", 3), (2, "accepted", 1)]
    assert steps[1].uuids == ("push.accept-jane@example.com-180",)
    assert alert.context.as_dict()["sequence_steps"][0]["uuids"] == list(alert.event_uuids[:3])
    assert alert.group_key == "actor.alternateId=jane@example.com"


def test_two_denies_are_not_enough(tmp_path):
    run = Run(fatigue(tmp_path))
    assert run.feed(*denies(0, 60), event("push.accept", 120)) == []


def test_an_accept_before_the_denies_is_not_a_sequence(tmp_path):
    run = Run(fatigue(tmp_path))
    assert run.feed(event("push.accept", 0), *denies(10, 20, 30)) == []


def test_more_denies_than_needed_take_the_latest_run(tmp_path):
    run = Run(fatigue(tmp_path))
    [alert] = run.feed(*denies(0, 30, 60, 90, 120), event("push.accept", 150))
    assert alert.event_uuids[:3] == tuple(f"push.deny-jane@example.com-{s}" for s in (60, 90, 120))


def test_a_second_accept_after_the_alert_does_not_fire_again(tmp_path):
    run = Run(fatigue(tmp_path))
    run.feed(*denies(0, 30, 60), event("push.accept", 90))
    assert run.feed(event("push.accept", 120)) == []
    assert len(run.raised) == 1


def test_a_new_round_of_denies_fires_a_second_alert(tmp_path):
    run = Run(fatigue(tmp_path))
    run.feed(*denies(0, 30, 60), event("push.accept", 90))
    [second] = run.feed(*denies(100, 110, 120), event("push.accept", 130))
    assert len(run.alerts) == 2
    assert second.event_uuids[0] == "push.deny-jane@example.com-100"


# --- within and window edges ------------------------------------------------------------------


def test_denies_just_inside_the_counted_within_fire(tmp_path):
    run = Run(fatigue(tmp_path))
    assert len(run.feed(*denies(0, 300, 600), event("push.accept", 601))) == 1


def test_denies_just_outside_the_counted_within_do_not(tmp_path):
    run = Run(fatigue(tmp_path))
    assert run.feed(*denies(0, 300, 600.001), event("push.accept", 601)) == []


def test_accept_just_inside_within_after_the_last_deny_fires(tmp_path):
    run = Run(fatigue(tmp_path))
    assert len(run.feed(*denies(0, 1, 2), event("push.accept", 602))) == 1


def test_accept_just_outside_within_after_the_last_deny_does_not(tmp_path):
    run = Run(fatigue(tmp_path))
    assert run.feed(*denies(0, 1, 2), event("push.accept", 602.001)) == []


def test_the_overall_window_bounds_first_to_last(tmp_path):
    rules = fatigue(tmp_path, window='window = "12m"')
    assert Run(rules).feed(*denies(0, 60, 120), event("push.accept", 720)) != []
    assert Run(rules).feed(*denies(0, 60, 120), event("push.accept", 720.5)) == []


def test_a_window_alone_bounds_later_steps(tmp_path):
    text = fatigue_text('window = "5m"').replace('within = "10m"\n[[sequence.steps]]\n'
                                                                    'selection = "accepted"\nwithin = "10m"',
                                                                    'within = "10m"\n[[sequence.steps]]\n'
                                                                    'selection = "accepted"')
    rules = ruleset(tmp_path, text)
    assert Run(rules).feed(*denies(0, 1, 2), event("push.accept", 300)) != []
    assert Run(rules).feed(*denies(0, 1, 2), event("push.accept", 301)) == []


def test_events_at_the_same_instant_are_not_ordered(tmp_path):
    run = Run(fatigue(tmp_path))
    assert run.feed(*denies(0, 1, 2), event("push.accept", 2)) == []


# --- out of order, duplicates, groups ---------------------------------------------------------


def test_a_deny_arriving_late_still_completes_the_sequence(tmp_path):
    run = Run(fatigue(tmp_path))
    late = event("push.deny", 60)
    run.feed(*denies(0, 120), event("push.accept", 180))
    [alert] = run.feed(late, now=T0 + timedelta(seconds=300))
    assert alert.event_uuids[1] == late.uuid
    assert alert.event_uuids[-1] == "push.accept-jane@example.com-180"


def test_the_accept_arriving_before_the_last_deny_still_fires(tmp_path):
    run = Run(fatigue(tmp_path))
    run.feed(*denies(0, 60))
    run.feed(event("push.accept", 180))
    assert len(run.feed(event("push.deny", 120), now=T0 + timedelta(seconds=200))) == 1


def test_a_duplicate_deny_counts_once(tmp_path):
    run = Run(fatigue(tmp_path))
    same = event("push.deny", 0)
    assert run.feed(same, same, same, event("push.deny", 60), event("push.accept", 90)) == []


def test_redelivered_events_after_an_alert_do_not_fire_it_again(tmp_path):
    run = Run(fatigue(tmp_path))
    sequence = [*denies(0, 30, 60), event("push.accept", 90)]
    run.feed(*sequence)
    assert run.feed(*sequence) == []
    assert len(run.raised) == 1


def test_interleaved_users_are_separate_groups(tmp_path):
    run = Run(fatigue(tmp_path))
    a, b = "a@example.com", "b@example.com"
    mixed = [event("push.deny", 0, a), event("push.deny", 1, b), event("push.deny", 2, a),
             event("push.deny", 3, b), event("push.accept", 4, b), event("push.deny", 5, a),
             event("push.accept", 6, a)]
    alerts = run.feed(*mixed)
    assert [x.group_key for x in alerts] == [f"actor.alternateId={a}"]
    assert all(u.endswith(("-0", "-2", "-5", "-6")) for u in alerts[0].event_uuids)


def test_an_event_without_the_join_field_joins_nothing(tmp_path):
    run = Run(fatigue(tmp_path))
    nobody = [Event(uuid=f"n{i}", event_type="push.deny", published=T0 + timedelta(seconds=i),
                    data={"eventType": "push.deny"}) for i in range(3)]
    accept = Event(uuid="n9", event_type="push.accept", published=T0 + timedelta(seconds=9),
                   data={"eventType": "push.accept"})
    assert run.feed(*nobody, accept) == []
    assert run.state.group_count == 0


def test_per_step_group_by_joins_differently_named_fields(tmp_path):
    run = Run(ruleset(tmp_path, JOINED))
    reset = event("reset", 0, "jane@example.com")
    other = event("grant", 60, "admin@example.com", debugContext={"debugData": {"user": "bob@example.com"}})
    grant = event("grant", 120, "admin@example.com", debugContext={"debugData": {"user": "jane@example.com"}})
    assert run.feed(reset, other) == []
    [alert] = run.feed(grant)
    assert alert.group_key == "target.alternateId=jane@example.com"
    assert alert.event_uuids == (reset.uuid, grant.uuid)


def test_per_step_group_by_respects_within(tmp_path):
    run = Run(ruleset(tmp_path, JOINED))
    grant = event("grant", 86_401, "admin@example.com", debugContext={"debugData": {"user": "jane@example.com"}})
    assert run.feed(event("reset", 0), grant) == []


# --- absence ----------------------------------------------------------------------------------


def test_absence_fires_on_the_next_event_of_any_type_after_the_deadline(tmp_path):
    run = Run(ruleset(tmp_path, REVERT))
    off = event("mfa.off", 0)
    assert run.feed(off, event("unrelated.type", 3599)) == []
    [alert] = run.feed(event("unrelated.type", 3601))
    assert alert.rule_id == "no-revert"
    assert alert.event_uuids == (off.uuid,)
    assert alert.title == "MFA off for jane@example.com, not turned back on"
    assert alert.context.event_uuid == off.uuid
    steps = alert.context.steps
    assert [(s.name, s.absent) for s in steps] == [("off", False), ("on", True)]
    assert steps[1].last == "2026-03-01T13:00:00.000000Z"
    assert run.feed(event("unrelated.type", 7200)) == []


def test_absence_does_not_fire_when_the_step_happens_in_time(tmp_path):
    run = Run(ruleset(tmp_path, REVERT))
    run.feed(event("mfa.off", 0), event("mfa.on", 3600), event("unrelated.type", 9000))
    assert run.raised == []


def test_absence_step_too_late_does_not_cancel(tmp_path):
    run = Run(ruleset(tmp_path, REVERT))
    assert len(run.feed(event("mfa.off", 0), event("mfa.on", 3600.5))) == 1


def test_absence_step_for_another_group_does_not_cancel(tmp_path):
    run = Run(ruleset(tmp_path, REVERT))
    run.feed(event("mfa.off", 0), event("mfa.on", 60, "bob@example.com"), event("x", 4000))
    assert [a.group_key for a in run.raised] == ["target[type=User].alternateId=jane@example.com"]


def test_absence_step_arriving_late_but_before_the_deadline_passes_cancels(tmp_path):
    run = Run(ruleset(tmp_path, REVERT))
    run.feed(event("mfa.on", 60), now=T0 + timedelta(seconds=60))  # the re-enable is delivered first
    run.feed(event("mfa.off", 0), event("x", 5000))
    assert run.raised == []


def test_the_deadline_waits_for_event_time_not_for_now(tmp_path):
    run = Run(ruleset(tmp_path, REVERT))
    run.feed(event("mfa.off", 0))
    # An event stamped before the deadline does not fire it, whatever the wall clock says ...
    assert run.feed(event("x", 100), now=T0 + timedelta(days=2)) == []
    # ... and an event stamped far in the future moves the watermark only as far as now + the allowed skew.
    assert run.feed(event("x", 86_400), now=T0 + timedelta(seconds=60)) == []
    assert len(run.feed(event("x", 3700), now=T0 + timedelta(seconds=3700))) == 1


def test_absence_survives_a_restore_and_fires_once(tmp_path):
    rules = ruleset(tmp_path, REVERT)
    first = Run(rules)
    first.feed(event("mfa.off", 0))
    changes, _ = first.state.take_changes()
    second = Run(rules, EngineState.restore(changes.items()))
    [alert] = second.feed(event("x", 3601))
    assert alert.event_uuids == ("mfa.off-jane@example.com-0",)
    assert second.feed(event("x", 3700)) == []


# --- throttle, bounds, restore ----------------------------------------------------------------


def test_throttle_folds_sequences_starting_within_the_period(tmp_path):
    rules = fatigue(tmp_path, extra='[throttle]\nperiod = "1h"')
    run = Run(rules)
    run.feed(*denies(0, 30, 60), event("push.accept", 90))
    run.feed(*denies(100, 110, 120), event("push.accept", 130))
    assert len(run.alerts) == 1
    [alert] = run.alerts.values()
    assert alert.count == 8
    run.feed(*denies(3700, 3710, 3720), event("push.accept", 3730))
    assert len(run.alerts) == 2


def test_a_group_keeps_at_most_the_cap_of_events_per_step(tmp_path):
    run = Run(fatigue(tmp_path))
    run.feed(*denies(*(i * 0.5 for i in range(MAX_STEP_EVENTS * 3))))
    [group] = run.state.groups.values()
    assert len(group["steps"][0]) == MAX_STEP_EVENTS
    assert group["steps"][0][-1][0] > group["steps"][0][0][0]
    assert len(run.feed(event("push.accept", MAX_STEP_EVENTS * 1.5))) == 1


def test_records_set_expires_in_event_time_so_the_sweep_ages_them_out(tmp_path):
    run = Run(fatigue(tmp_path))
    run.feed(*denies(0))
    [group] = run.state.groups.values()
    assert group["expires"] == (T0 + timedelta(minutes=20)).timestamp() * 1_000_000
    # Kept for the lateness allowance past its expiry ([rules] allowed_lateness), then swept.
    run.state.watermark = group["expires"] + run.state.allowed_lateness_micros
    run.state.sweep()
    assert run.state.group_count == 1
    run.state.watermark = group["expires"] + run.state.allowed_lateness_micros + 1
    run.state.sweep()
    assert run.state.group_count == 0


def test_partial_sequences_survive_a_restore(tmp_path):
    rules = fatigue(tmp_path)
    first = Run(rules)
    first.feed(*denies(0, 30))
    changes, _ = first.state.take_changes()
    second = Run(rules, EngineState.restore(changes.items()))
    assert len(second.feed(event("push.deny", 60), event("push.accept", 90))) == 1


def test_a_reloaded_rule_set_without_the_rule_drops_its_deadlines(tmp_path):
    run = Run(ruleset(tmp_path, REVERT))
    run.feed(event("mfa.off", 0))
    other = tmp_path / "other"
    other.mkdir()
    run.rules = ruleset(other, fatigue_text())
    assert run.feed(event("push.deny", 4000)) == []
    assert run.state.deadlines == []


# --- inline tests -----------------------------------------------------------------------------


def test_inline_tests_run_sequences_with_published_times(tmp_path):
    from sentinel.rules.testing import run_tests

    text = fatigue_text(extra=textwrap.dedent("""
        [[tests]]
        name = "fatigue"
        expect = 1
        events = [
          { eventType = "push.deny", published = "2026-01-01T00:00:00Z", actor = { alternateId = "j" } },
          { eventType = "push.deny", published = "2026-01-01T00:01:00Z", actor = { alternateId = "j" } },
          { eventType = "push.deny", published = "2026-01-01T00:02:00Z", actor = { alternateId = "j" } },
          { eventType = "push.accept", published = "2026-01-01T00:03:00Z", actor = { alternateId = "j" } },
        ]
        [[tests]]
        name = "accept too late"
        expect = false
        events = [
          { eventType = "push.deny", published = "2026-01-01T00:00:00Z", actor = { alternateId = "j" } },
          { eventType = "push.deny", published = "2026-01-01T00:01:00Z", actor = { alternateId = "j" } },
          { eventType = "push.deny", published = "2026-01-01T00:02:00Z", actor = { alternateId = "j" } },
          { eventType = "push.accept", published = "2026-01-01T00:13:00Z", actor = { alternateId = "j" } },
        ]
        """))
    results = run_tests(ruleset(tmp_path, text))
    assert [(r.test.name, r.passed, r.detail) for r in results] == [
        ("fatigue", True, "expected 1 alert(s), got 1"), ("accept too late", True, "expected no alert, got 0")]


# --- the loader -------------------------------------------------------------------------------


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "bad.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    with pytest.raises(ErrorGroup) as caught:
        load_rules([path])
    return [str(e) for e in caught.value.errors]


HEAD = """
id = "s"
title = "t"
severity = "low"
event_types = ["a", "b"]
group_by = ["actor.alternateId"]
[detection.a]
eventType = "a"
[detection.b]
eventType = "b"
"""


@pytest.mark.parametrize(("body", "where", "message"), [
    ('[sequence]\n[[sequence.steps]]\nselection = "a"', "sequence.steps", "2 to 10 steps"),
    ('[sequence]\n[[sequence.steps]]\nselection = "a"\n[[sequence.steps]]\nselection = "zz"\nwithin = "1m"',
     "sequence.steps[1].selection", "unknown selection 'zz'"),
    ('[sequence]\n[[sequence.steps]]\nselection = "a"\n[[sequence.steps]]\nselection = "b"',
     "sequence.steps[1].within", "is required unless [sequence] window"),
    ('[sequence]\n[[sequence.steps]]\nselection = "a"\nabsent = true\nwithin = "1m"\n[[sequence.steps]]\n'
     'selection = "b"\nwithin = "1m"', "sequence.steps[0].absent", "only the last step"),
    ('[sequence]\n[[sequence.steps]]\nselection = "a"\n[[sequence.steps]]\nselection = "b"\nabsent = true',
     "sequence.steps[1].within", "an absent step needs within"),
    ('[sequence]\n[[sequence.steps]]\nselection = "a"\ncount = 0\n[[sequence.steps]]\nselection = "b"\n'
     'within = "1m"', "sequence.steps[0].count", "from 1 to 64"),
    ('[sequence]\n[[sequence.steps]]\nselection = "a"\ncount = 3\n[[sequence.steps]]\nselection = "b"\n'
     'within = "1m"', "sequence.steps[0].within", "a counted first step needs within"),
    ('[sequence]\n[[sequence.steps]]\nselection = "a"\nwithin = "1m"\n[[sequence.steps]]\nselection = "b"\n'
     'within = "1m"', "sequence.steps[0].within", "give count > 1"),
    ('[sequence]\n[[sequence.steps]]\nselection = "a"\n[[sequence.steps]]\nselection = "b"\nwithin = "1m"\n'
     'group_by = ["x", "y"]', "sequence.steps[1].group_by", "as many fields as the rule's group_by (1)"),
    ('[sequence]\n[[sequence.steps]]\nselection = "a"\ncondition = "a"\n[[sequence.steps]]\nselection = "b"\n'
     'within = "1m"', "sequence.steps[0]", "exactly one of selection"),
    ('[sequence]\n[[sequence.steps]]\ncondition = "a and nope"\n[[sequence.steps]]\nselection = "b"\n'
     'within = "1m"', "sequence.steps[0].condition", "nope"),
    ('[sequence]\nwindow = "9d"\nsteps = []', "sequence.window", "between 1 second and 7 days"),
    ('[sequence]\nlength = 3\n[[sequence.steps]]\nselection = "a"\n[[sequence.steps]]\nselection = "b"\n'
     'within = "1m"', "sequence.length", "unknown field"),
    ('[sequence]\n[[sequence.steps]]\nselection = "a"\nwhen = 1\n[[sequence.steps]]\nselection = "b"\n'
     'within = "1m"', "sequence.steps[0].when", "unknown field"),
])
def test_sequence_problems_name_the_file_and_key_path(tmp_path, body, where, message):
    found = problems(tmp_path, HEAD + body)
    assert any(f"bad.toml: {where}: " in p and message in p for p in found), found


def test_a_sequence_rule_has_no_condition_or_threshold(tmp_path):
    body = ('condition = "a"\n[threshold]\ncount = 2\nwindow = "1m"\n[sequence]\n[[sequence.steps]]\n'
            'selection = "a"\n[[sequence.steps]]\nselection = "b"\nwithin = "1m"')
    found = problems(tmp_path, HEAD.replace('[detection.a]', body + '\n[detection.a]', 1))
    assert any("bad.toml: condition: a sequence rule has no condition" in p for p in found), found
    assert any("bad.toml: threshold: a sequence rule has no threshold" in p for p in found), found


def test_a_step_condition_combines_selections(tmp_path):
    text = HEAD + ('[detection.quiet]\n"outcome.result" = "SKIPPED"\n[sequence]\n[[sequence.steps]]\n'
                   'selection = "a"\n[[sequence.steps]]\ncondition = "b and not quiet"\nwithin = "1m"')
    run = Run(ruleset(tmp_path, text))
    assert run.feed(event("a", 0), event("b", 10, outcome={"result": "SKIPPED"})) == []
    assert len(run.feed(event("b", 20))) == 1


def test_a_stored_record_of_another_shape_is_started_afresh(tmp_path):
    rules = fatigue(tmp_path)
    key = "fatigue/actor.alternateId=jane@example.com"
    junk = {"seen": 1, "expires": 2, "entries": [], "steps": [[], [], []], "pending": [{"deadline": "x"}]}
    run = Run(rules, EngineState.restore([(key, json.dumps(junk))]))
    assert len(run.feed(*denies(0, 30, 60), event("push.accept", 90))) == 1


def test_a_reloaded_rule_with_other_steps_ignores_the_old_record(tmp_path):
    run = Run(fatigue(tmp_path))
    run.feed(*denies(0, 30))
    other = tmp_path / "other"
    other.mkdir()
    run.rules = ruleset(other, fatigue_text().replace(
        '[[sequence.steps]]\nselection = "accepted"',
        '[[sequence.steps]]\nselection = "denied"\nwithin = "10m"\n[[sequence.steps]]\nselection = "accepted"'))
    sequence = run.rules.rules[0].sequence
    assert sequence is not None and len(sequence.steps) == 3
    assert run.feed(*denies(60, 70, 80, 90), event("push.accept", 100)) != []


def test_a_stored_deadline_of_a_changed_rule_does_not_raise(tmp_path):
    key = "no-revert/target[type=User].alternateId=jane@example.com"
    junk = {"seen": 1, "expires": 10**18, "pending": [{"deadline": 5}, "junk"]}
    run = Run(ruleset(tmp_path, REVERT), EngineState.restore([(key, json.dumps(junk))]))
    assert run.feed(event("x", 10)) == []


def test_an_absence_alert_renders_its_steps_and_round_trips_through_json(tmp_path):
    from sentinel.alert_context import AlertContext
    from sentinel.render.facts import facts

    run = Run(ruleset(tmp_path, REVERT))
    [alert] = run.feed(event("mfa.off", 0), event("x", 3601))
    lines = dict(facts(alert).lines())
    assert lines["Sequence"] == "1 off: 1 event, 2026-03-01 12:00:00 UTC; 2 then no on until 2026-03-01 13:00:00 UTC"
    assert AlertContext.from_dict(alert.context.as_dict()) == alert.context


def test_a_flood_of_new_groups_does_not_evict_a_waiting_deadline(tmp_path):
    run = Run(ruleset(tmp_path, REVERT), EngineState(max_groups=10))
    run.feed(event("mfa.off", 0))
    run.feed(*(event("mfa.on", 1 + i / 100, f"u{i}@example.com") for i in range(200)))
    assert run.state.evicted_groups > 0
    assert len(run.feed(event("x", 3601))) == 1


# --- the search from the inserted event (sentinel/rules/sequence_search.py) -------------------------------


def test_late_denies_complete_a_sequence_whose_accept_came_first(tmp_path):
    """The accept is already stored when the denies arrive late: the search goes forward from the step
    the new event lands in."""
    run = Run(fatigue(tmp_path))
    assert run.feed(event("push.accept", 200)) == []
    assert run.feed(*denies(100, 30)) == []
    [alert] = run.feed(*denies(60))
    assert alert.event_uuids == tuple(e.uuid for e in [*denies(30, 60, 100), event("push.accept", 200)])


def test_a_late_deny_between_two_stored_ones_completes_the_run(tmp_path):
    run = Run(fatigue(tmp_path))
    assert run.feed(*denies(0, 120), event("push.accept", 180)) == []
    [alert] = run.feed(*denies(60))
    assert alert.count == 4 and alert.first_seen == T0 and alert.last_seen == T0 + timedelta(seconds=180)


def test_an_absence_step_still_cancels_and_fires_with_the_search_from_the_inserted_event(tmp_path):
    rules = ruleset(tmp_path, REVERT)
    run = Run(rules)
    assert run.feed(event("mfa.off", 0), event("mfa.on", 600)) == []  # turned back on: cancelled
    assert run.feed(event("mfa.off", 4000)) == []
    [alert] = run.feed(event("unrelated", 4000 + 3601))  # the deadline passed: fires on any event
    assert alert.event_uuids == (event("mfa.off", 4000).uuid,)


OVERLAP = """
id = "overlap"
title = "Overlap"
severity = "low"
event_types = ["x.a", "x.b"]
group_by = ["actor.alternateId"]
[detection.any]
eventType = ["x.a", "x.b"]
[detection.b]
eventType = "x.b"
[sequence]
window = "5m"
[[sequence.steps]]
selection = "any"
count = 2
[[sequence.steps]]
selection = "b"
"""


def test_an_event_in_two_steps_is_searched_for_in_both(tmp_path):
    run = Run(ruleset(tmp_path, OVERLAP))
    assert run.feed(event("x.a", 0), event("x.b", 10)) == []  # the b is the 2nd "any", and no b after it
    [alert] = run.feed(event("x.b", 20))  # a b: the run of two "any" before it, then itself as the b
    assert alert.event_uuids == (event("x.a", 0).uuid, event("x.b", 10).uuid, event("x.b", 20).uuid)


def test_a_record_saved_without_its_timing_is_searched_whole_once_and_fires_once(tmp_path):
    """Records saved before the search noted the counts and times they were built under: restored, the
    first insertion searches everything; the sequence still fires once across the restart."""
    rules = fatigue(tmp_path)
    first = Run(rules)
    first.feed(*denies(0, 60))
    changes, _ = first.state.take_changes()
    saved = {key: json.dumps({k: v for k, v in json.loads(text).items() if k != "timing"})
             for key, text in changes.items()}
    second = Run(rules, EngineState.restore(saved.items()))
    assert second.feed(*denies(120)) == []
    [alert] = second.feed(event("push.accept", 180))
    assert alert.count == 4
    assert second.feed(event("push.accept", 190)) == []


def test_a_reload_that_widens_within_finds_a_sequence_among_stored_events(tmp_path):
    """Events stored under ``within = 10m`` that make a sequence under ``within = 20m``: after the reload
    the group's next event fires it, as a search of everything after every event always did."""
    narrow = fatigue(tmp_path)
    run = Run(narrow)
    assert run.feed(*denies(0, 60, 120), event("push.accept", 120 + 900)) == []  # 15 minutes: too late
    wide = ruleset(tmp_path, fatigue_text().replace('within = "10m"\n[[sequence.steps]]\nselection = "accepted"\n'
                                                    'within = "10m"', 'within = "10m"\n[[sequence.steps]]\n'
                                                    'selection = "accepted"\nwithin = "20m"'))
    narrow_sequence, wide_sequence = narrow.rules[0].sequence, wide.rules[0].sequence
    assert narrow_sequence is not None and wide_sequence is not None
    assert wide_sequence.timing != narrow_sequence.timing
    run.rules = wide
    [alert] = run.feed(*denies(3000))  # a deny that joins nothing: the stored sequence fires
    assert alert.count == 4 and alert.last_seen == T0 + timedelta(seconds=1020)
