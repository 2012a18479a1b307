"""Maintenance windows, pure: recurring windows (weekday of the window's start, crossing midnight, DST in the
window's zone), one-off windows, and the [[maintenance]] tables' checks as `sentinel check` reports them."""

from __future__ import annotations

import textwrap
import tomllib
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from sentinel.config import parse_config
from sentinel.errors import ErrorGroup
from sentinel.maintenance import Window, parse_times, parse_windows

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def window(times: str, weekdays: list[str] | None = None, timezone: str = "UTC") -> Window:
    table: dict[str, object] = {"name": "w", "rules": ["okta-*"], "times": times, "timezone": timezone}
    if weekdays is not None:
        table["weekdays"] = weekdays
    windows, problems = parse_windows([table])
    assert problems == []
    return windows[0]


def at(text: str, zone: ZoneInfo = ZoneInfo("UTC"), fold: int = 0) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=zone, fold=fold)


# 2026-03-06 is a Friday.
@pytest.mark.parametrize(("moment", "open_"), [
    ("2026-03-06T21:59:59", False),
    ("2026-03-06T22:00:00", True),  # opens Friday 22:00
    ("2026-03-06T23:59:59", True),
    ("2026-03-07T00:00:00", True),  # across midnight, into Saturday
    ("2026-03-07T01:59:59", True),
    ("2026-03-07T02:00:00", False),  # closes at 02:00
    ("2026-03-06T01:00:00", False),  # Friday 01:00 belongs to Thursday's window: Thursday is not listed
    ("2026-03-07T22:30:00", False),  # Saturday evening: Saturday is not listed
    ("2026-03-09T22:30:00", True),  # Monday
    ("2026-03-10T01:30:00", True),  # Tuesday early: Monday's window
])
def test_a_window_crossing_midnight_belongs_to_the_weekday_it_starts_on(moment: str, open_: bool) -> None:
    assert window("22:00-02:00", ["mon", "fri"]).open_at(at(moment)) is open_


@pytest.mark.parametrize(("times", "moment", "open_"), [
    ("09:00-17:00", "2026-03-06T08:59:00", False),
    ("09:00-17:00", "2026-03-06T09:00:00", True),
    ("09:00-17:00", "2026-03-06T16:59:59", True),
    ("09:00-17:00", "2026-03-06T17:00:00", False),
    ("00:00-24:00", "2026-03-06T00:00:00", True),  # the whole day
    ("00:00-24:00", "2026-03-06T23:59:59", True),
    ("22:00-24:00", "2026-03-06T23:59:59", True),
    ("22:00-24:00", "2026-03-07T00:00:00", False),
    ("23:30-00:30", "2026-03-07T00:15:00", True),
])
def test_times_of_day(times: str, moment: str, open_: bool) -> None:
    assert window(times).open_at(at(moment)) is open_  # no weekdays: every day


def test_the_weekday_is_taken_in_the_windows_zone_not_utc() -> None:
    # Friday 23:30 in New York is Saturday 04:30 UTC: a Friday window, seen from UTC on a Saturday.
    friday_night = window("23:00-23:59", ["fri"], "America/New_York")
    assert friday_night.open_at(at("2026-03-07T04:30:00"))
    assert not friday_night.open_at(at("2026-03-06T04:30:00"))  # Thursday night in New York


def test_the_same_wall_clock_window_moves_in_utc_with_dst() -> None:
    nightly = window("01:00-03:00", None, "Europe/Paris")
    assert nightly.open_at(at("2026-01-15T00:30:00"))  # winter: 01:30 CET
    assert not nightly.open_at(at("2026-07-15T01:30:00"))  # summer: 03:30 CEST, closed
    assert nightly.open_at(at("2026-07-15T00:30:00"))  # summer: 02:30 CEST


def test_spring_forward_a_window_ending_in_the_skipped_hour_ends_shifted_forward() -> None:
    # Paris, 2026-03-29: 02:00 CET jumps to 03:00 CEST. 02:30 never shows on a clock that night.
    until_half_past_two = window("01:00-02:30", ["sun"], "Europe/Paris")
    assert until_half_past_two.open_at(at("2026-03-29T01:59:00", PARIS))
    assert until_half_past_two.open_at(at("2026-03-29T03:29:00", PARIS))  # 02:30 CET == 03:30 CEST
    assert not until_half_past_two.open_at(at("2026-03-29T03:30:00", PARIS))
    span = until_half_past_two.span_starting(datetime(2026, 3, 29).date())
    assert span == (datetime(2026, 3, 29, 0, 0, tzinfo=UTC), datetime(2026, 3, 29, 1, 30, tzinfo=UTC))


def test_spring_forward_night_is_an_hour_shorter_in_real_time() -> None:
    overnight = window("22:00-06:00", ["sat"], "Europe/Paris")
    opens, closes = overnight.span_starting(datetime(2026, 3, 28).date())  # type: ignore[misc]
    assert closes - opens == timedelta(hours=7)
    assert overnight.open_at(at("2026-03-29T05:59:00", PARIS))
    assert not overnight.open_at(at("2026-03-29T06:00:00", PARIS))


def test_fall_back_the_repeated_hour_is_inside_a_window_spanning_it_and_the_night_is_longer() -> None:
    # Paris, 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:00-03:00 happens twice.
    overnight = window("22:00-06:00", ["sat"], "Europe/Paris")
    opens, closes = overnight.span_starting(datetime(2026, 10, 24).date())  # type: ignore[misc]
    assert closes - opens == timedelta(hours=9)
    assert overnight.open_at(at("2026-10-25T02:30:00", PARIS, fold=0))
    assert overnight.open_at(at("2026-10-25T02:30:00", PARIS, fold=1))
    assert overnight.open_at(at("2026-10-25T05:59:59", PARIS))


def test_fall_back_a_window_ending_in_the_repeated_hour_ends_at_its_first_occurrence() -> None:
    until_half_past_two = window("01:00-02:30", ["sun"], "Europe/Paris")
    assert until_half_past_two.open_at(at("2026-10-25T02:29:00", PARIS, fold=0))  # first pass, CEST
    assert not until_half_past_two.open_at(at("2026-10-25T02:29:00", PARIS, fold=1))  # second pass, CET
    # Compared in UTC, not as wall-clock times (same tzinfo would compare 02:29 == 02:29 either way).
    assert not until_half_past_two.open_at(at("2026-10-25T01:29:00"))  # == 02:29 CET


def test_new_york_dst_weekday_windows() -> None:
    weekday_mornings = window("06:00-07:00", ["mon", "tue", "wed", "thu", "fri"], "America/New_York")
    assert weekday_mornings.open_at(at("2026-03-06T11:30:00"))  # Friday, EST: 06:30
    assert weekday_mornings.open_at(at("2026-03-09T10:30:00"))  # Monday after the change, EDT: 06:30
    assert not weekday_mornings.open_at(at("2026-03-09T11:30:00"))  # 07:30 EDT
    assert not weekday_mornings.open_at(at("2026-03-08T10:30:00"))  # Sunday


def test_one_off_windows() -> None:
    windows, problems = parse_windows([{"name": "upgrade", "rules": ["okta-policy-*"],
                                        "start": "2026-03-01T22:00:00+01:00", "end": datetime(2026, 3, 2, 1, 0,
                                                                                              tzinfo=UTC)}])
    assert problems == []
    (upgrade,) = windows
    assert not upgrade.open_at(at("2026-03-01T20:59:59"))
    assert upgrade.open_at(at("2026-03-01T21:00:00"))
    assert upgrade.open_at(at("2026-03-01T23:00:00", PARIS))
    assert not upgrade.open_at(at("2026-03-02T01:00:00"))


@pytest.mark.parametrize(("text", "expected"), [
    ("22:00-02:00", (time(22), time(2))), ("9:05 - 17:30", (time(9, 5), time(17, 30))),
    ("00:00-24:00", (time(0), time(0))),
])
def test_parse_times(text: str, expected: tuple[time, time]) -> None:
    assert parse_times(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("22:00", "HH:MM-HH:MM"), ("25:00-02:00", "not a time of day"), ("10:00-10:00", "same time"),
    ("10:60-11:00", "not a time of day"), (None, "HH:MM-HH:MM"), ("24:00-01:00", "not a time of day"),
])
def test_parse_times_refuses(text: str | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_times(text)


def check(toml: str) -> list[str]:
    """The config problems of a [[maintenance]] document, as `sentinel check` prints them."""
    try:
        parse_config(tomllib.loads(textwrap.dedent(toml)), "sentinel.toml", Path("."), {}, resolve_secrets=False)
    except ErrorGroup as e:
        return [str(error) for error in e.errors]
    return []


def test_valid_tables_load_into_settings() -> None:
    doc = """
        [[maintenance]]
        name = "nightly deploy"
        rules = ["okta-policy-*", "okta-api-token-created"]
        match = { "actor.alternateId" = "deploy-bot@example.com", "securityContext.isProxy" = false }
        weekdays = ["mon", "Tuesday"]
        times = "22:00-02:00"
        timezone = "Europe/Paris"

        [[maintenance]]
        name = "okta upgrade"
        rules = ["*"]
        start = 2026-03-01T22:00:00Z
        end = "2026-03-02T02:00:00+00:00"
    """
    assert check(doc) == []
    settings = parse_config(tomllib.loads(textwrap.dedent(doc)), "f", Path("."), {}, resolve_secrets=False)
    nightly, upgrade = settings.maintenance
    assert nightly.weekdays == {0, 1} and nightly.timezone == "Europe/Paris"
    assert nightly.matchers == (("actor.alternateId", "deploy-bot@example.com"), ("securityContext.isProxy", "false"))
    assert upgrade.start == datetime(2026, 3, 1, 22, tzinfo=UTC) and not upgrade.recurring


@pytest.mark.parametrize(("table", "message"), [
    ('rules = ["x"]\ntimes = "22:00-02:00"', "sentinel.toml: maintenance[0].name: each window needs a name"),
    ('name = "n"\ntimes = "22:00-02:00"', "maintenance[0].rules: must be a non-empty array"),
    ('name = "n"\nrules = ["x"]', "maintenance[0]: needs times (with weekdays and timezone) or start and end"),
    ('name = "n"\nrules = ["x"]\ntimes = "22-02"', "maintenance[0].times: must be 'HH:MM-HH:MM'"),
    ('name = "n"\nrules = ["x"]\ntimes = "22:00-02:00"\ntimezone = "Mars/Olympus"',
     "maintenance[0].timezone: unknown time zone 'Mars/Olympus'"),
    ('name = "n"\nrules = ["x"]\ntimes = "22:00-02:00"\nweekdays = ["fry"]', "unknown weekday 'fry'"),
    ('name = "n"\nrules = ["x"]\nstart = "2026-03-01T22:00:00Z"', "maintenance[0].end: a one-off window needs both"),
    ('name = "n"\nrules = ["x"]\nstart = "2026-03-01T22:00:00"\nend = "2026-03-02T22:00:00Z"',
     "maintenance[0].start: 2026-03-01T22:00:00 has no UTC offset"),
    ('name = "n"\nrules = ["x"]\nstart = 2026-03-02T22:00:00Z\nend = 2026-03-01T22:00:00Z', "is not after start"),
    ('name = "n"\nrules = ["x"]\nstart = 2026-03-01T22:00:00Z\nend = 2026-03-02T22:00:00Z\ntimes = "01:00-02:00"',
     "not both"),
    ('name = "n"\nrules = ["x"]\ntimes = "22:00-02:00"\nmatch = { "a" = [1] }', "match.a: must be a text"),
    ('name = "n"\nrules = ["x"]\ntimes = "22:00-02:00"\nwhen = "always"', "maintenance[0].when: unknown key"),
])
def test_bad_tables_are_reported_clearly(table: str, message: str) -> None:
    problems = check(f"[[maintenance]]\n{table}\n")
    assert any(message in p for p in problems), problems


def test_duplicate_names_and_a_table_instead_of_an_array() -> None:
    same = '[[maintenance]]\nname = "n"\nrules = ["x"]\ntimes = "01:00-02:00"\n'
    assert any("'n' is used by another window" in p for p in check(same + same))
    assert any("write [[maintenance]]" in p for p in check('[maintenance]\nname = "n"\n'))


def test_match_takes_dotted_keys_as_field_paths() -> None:
    doc = """
        [[maintenance]]
        name = "n"
        rules = ["*"]
        times = "01:00-02:00"
        match.actor.alternateId = "bot@example.com"
        match."target[type=User].alternateId" = "x@example.com"
    """
    settings = parse_config(tomllib.loads(textwrap.dedent(doc)), "f", Path("."), {}, resolve_secrets=False)
    assert settings.maintenance[0].matchers == (("actor.alternateId", "bot@example.com"),
                                                ("target[type=User].alternateId", "x@example.com"))
