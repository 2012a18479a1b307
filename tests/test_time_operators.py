"""``hour_between`` and ``weekday_in`` (issue 14 point 8: Chronicle's "Okta User Login Out Of Hours"): the
event's own time on the local clock of ``timezone``, at the boundaries, across midnight and daylight saving;
the loader's errors; a rule with them on the pure engine."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sentinel.errors import ErrorGroup
from sentinel.model import Event
from sentinel.rules import load_rules
from sentinel.rules.conditions import compile_selection
from sentinel.rules.engine import EngineState, evaluate
from sentinel.rules.field_paths import ConditionError


def matches(spec: Mapping[str, object], published: object) -> bool:
    return compile_selection({"published": spec})({"published": published})


@pytest.mark.parametrize(("published", "expected"), [
    ("2026-03-02T17:59:59Z", False),
    ("2026-03-02T18:00:00Z", True),   # from is included
    ("2026-03-02T23:59:59Z", True),
    ("2026-03-03T00:00:00Z", True),   # wraps past midnight
    ("2026-03-03T06:59:59Z", True),
    ("2026-03-03T07:00:00Z", False),  # until is not
    ("2026-03-03T12:00:00.123456789Z", False),
])
def test_hour_between_wraps_midnight_and_includes_only_its_start(published, expected):
    assert matches({"hour_between": ["18:00", "07:00"]}, published) is expected


def test_hour_between_in_one_day_and_its_negation():
    office = {"hour_between": ["08:00", "18:00"]}
    assert matches(office, "2026-03-02T08:00:00Z") and not matches(office, "2026-03-02T18:00:00Z")
    assert matches({**office, "not": True}, "2026-03-02T18:00:00Z")


def test_the_timezone_is_applied_per_event_with_daylight_saving():
    berlin = {"hour_between": ["19:00", "07:00"], "timezone": "Europe/Berlin"}
    assert matches(berlin, "2026-03-02T18:00:00Z")  # 19:00 CET (UTC+1)
    assert not matches(berlin, "2026-03-02T17:30:00Z")  # 18:30 CET
    assert matches(berlin, "2026-07-02T17:00:00Z")  # 19:00 CEST (UTC+2)
    assert not matches(berlin, "2026-07-02T16:30:00Z")  # 18:30 CEST
    assert matches(berlin, "2026-07-02T19:00:00+02:00")  # an offset in the value is honoured


def test_weekday_in_reads_the_local_day():
    weekend = {"weekday_in": ["sat", "sunday"]}
    assert matches(weekend, "2026-03-07T12:00:00Z")  # a Saturday
    assert not matches(weekend, "2026-03-06T23:30:00Z")  # Friday in UTC...
    assert matches({**weekend, "timezone": "Europe/Berlin"}, "2026-03-06T23:30:00Z")  # ...Saturday in Berlin
    new_york = {**weekend, "timezone": "America/New_York"}
    assert matches(new_york, "2026-03-09T03:59:00Z")  # Sunday 23:59 EDT (daylight saving began 8 March)
    assert not matches(new_york, "2026-03-09T04:00:00Z")  # Monday 00:00 EDT (in EST it would still be Sunday)


@pytest.mark.parametrize("value", [None, "", "yesterday", 1772366400, {"at": "2026-03-07T12:00:00Z"}, "x" * 10_000])
def test_a_value_that_is_not_a_timestamp_does_not_match(value):
    assert not matches({"weekday_in": ["sat", "sun"]}, value)
    assert not matches({"hour_between": ["00:00", "23:59"]}, value)


@pytest.mark.parametrize(("spec", "message"), [
    ({"hour_between": "18:00"}, 'expects ["HH:MM", "HH:MM"]'),
    ({"hour_between": ["18:00", "7:00"]}, "expects times as \"HH:MM\", got '7:00'"),
    ({"hour_between": ["25:00", "07:00"]}, "no such time of day: '25:00'"),
    ({"hour_between": ["07:00", "07:00"]}, "from and until are the same time"),
    ({"weekday_in": ["sat", "caturday"]}, "expects weekdays (mon, tue, wed, thu, fri, sat, sun), got 'caturday'"),
    ({"weekday_in": ["sat"], "timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
    ({"weekday_in": ["sat"], "timezone": "../../etc/passwd"}, "timezone must be an IANA zone name"),
    ({"weekday_in": ["sat"], "timezone": 1}, "timezone must be an IANA zone name"),
    ({"contains": "x", "timezone": "UTC"}, "timezone applies to hour_between and weekday_in only"),
])
def test_bad_operands_are_load_errors(spec, message):
    with pytest.raises(ConditionError) as caught:
        compile_selection({"published": spec})
    assert [e.message for e in caught.value.errors if message in e.message], caught.value.errors


OUT_OF_HOURS = """
id = "out-of-hours"
title = "{actor.alternateId} signed in out of hours"
severity = "low"
event_types = ["user.session.start"]
condition = "signed_in and (night or weekend)"
[detection.signed_in]
"outcome.result" = "SUCCESS"
[detection.night]
published = { hour_between = ["19:00", "07:00"], timezone = "Europe/Berlin" }
[detection.weekend]
published = { weekday_in = ["sat", "sun"], timezone = "Europe/Berlin" }
"""


def test_a_rule_reads_the_event_time_not_the_clock(tmp_path: Path):
    (tmp_path / "rule.toml").write_text(OUT_OF_HOURS, encoding="utf-8")
    ruleset = load_rules([tmp_path])
    noon = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)  # the clock the engine is given: a Wednesday noon
    fired = []
    for published in ("2026-03-04T11:00:00Z", "2026-03-04T22:00:00Z", "2026-03-07T11:00:00Z"):
        data = {"uuid": published, "eventType": "user.session.start", "published": published,
                "actor": {"alternateId": "ann"}, "outcome": {"result": "SUCCESS"}}
        alerts, _ = evaluate(ruleset, Event(published, "user.session.start", noon, data), EngineState(), noon)
        fired.append(bool(alerts))
    assert fired == [False, True, True]


def test_rules_check_names_the_bad_zone(tmp_path: Path):
    (tmp_path / "rule.toml").write_text(OUT_OF_HOURS.replace("Europe/Berlin", "Europe/Berlinn", 1), encoding="utf-8")
    with pytest.raises(ErrorGroup) as caught:
        load_rules([tmp_path])
    assert [str(e).split(": ", 1)[1] for e in caught.value.errors] == [
        "detection.night.published.timezone: unknown time zone 'Europe/Berlinn' (an IANA name such as "
        "\"America/New_York\")"]


def test_the_docs_example_loads(tmp_path: Path):
    docs = (Path(__file__).resolve().parent.parent / "docs" / "rules.md").read_text(encoding="utf-8")
    example = docs.split("### Time of day and day of week", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "rule.toml").write_text(textwrap.dedent(example), encoding="utf-8")
    [rule] = load_rules([tmp_path]).rules
    assert rule.matcher({"outcome": {"result": "SUCCESS"}, "published": "2026-03-07T10:00:00Z"})
    assert not rule.matcher({"outcome": {"result": "SUCCESS"}, "published": "2026-03-04T10:00:00Z"})
