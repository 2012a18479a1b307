"""A threshold's ``distinct`` over several fields counts distinct combinations: a second value of any field
makes a second combination (what okta-session-roaming needs: two countries or two ASNs)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sentinel.errors import ErrorGroup
from sentinel.model import Alert, Event
from sentinel.rules import RuleSet, load_rules
from sentinel.rules.engine import EngineState, evaluate

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def rule(distinct: str, count: int = 2) -> str:
    return f"""
id = "roaming"
title = "roaming {{authenticationContext.externalSessionId}}"
severity = "high"
event_types = ["user.authentication.sso"]
group_by = ["authenticationContext.externalSessionId"]
[threshold]
count = {count}
window = "1h"
distinct = {distinct}
"""


def load(folder: Path, text: str) -> RuleSet:
    (folder / "rule.toml").write_text(text, encoding="utf-8")
    return load_rules([folder])


counter = iter(range(1_000_000))


def sso(minutes: int, country: str | None, asn: int | None, session: str = "idx1") -> Event:
    uid = f"s{next(counter)}"
    at = T0 + timedelta(minutes=minutes)
    geo = {} if country is None else {"country": country}
    data = {"uuid": uid, "eventType": "user.authentication.sso", "published": at.isoformat(),
            "authenticationContext": {"externalSessionId": session}, "client": {"geographicalContext": geo},
            "securityContext": {"asNumber": asn}}
    return Event(uid, "user.authentication.sso", at, data)


def alerts_of(ruleset: RuleSet, events: list[Event]) -> list[Alert]:
    state, out = EngineState(), []
    for item in events:
        alerts, state = evaluate(ruleset, item, state, item.published)
        out.extend(alerts)
    return out


BOTH = '["client.geographicalContext.country", "securityContext.asNumber"]'


@pytest.mark.parametrize(("events", "fires"), [
    ([sso(0, "Canada", 577), sso(10, "Netherlands", 577)], True),  # another country
    ([sso(0, "Canada", 577), sso(10, "Canada", 16276)], True),  # another network
    ([sso(0, "Canada", 577), sso(10, "Canada", 577), sso(20, "Canada", 577)], False),
    ([sso(0, "Canada", 577), sso(10, "Netherlands", 577, session="idx2")], False),  # two sessions
    ([sso(0, "Canada", 577), sso(10, None, 3215)], False),  # a missing field: not counted
    ([sso(0, "Canada", 577), sso(10, "France", None)], False),
    ([sso(0, "Canada", 577), sso(70, "France", 3215)], False),  # not within the window
])
def test_distinct_over_two_fields_counts_combinations(tmp_path, events, fires):
    assert bool(alerts_of(load(tmp_path, rule(BOTH)), events)) is fires


def test_the_alert_names_the_combination_and_its_values(tmp_path):
    [alert] = alerts_of(load(tmp_path, rule(BOTH)), [sso(0, "Canada", 577), sso(10, "Canada", 16276)])
    context = alert.context
    assert context.distinct_field == "(client.geographicalContext.country, securityContext.asNumber)"
    assert (context.distinct_count, context.distinct_values) == (2, ("Canada / 577", "Canada / 16276"))


def test_one_field_in_a_list_is_the_same_as_a_string(tmp_path):
    events = [sso(0, "Canada", 577), sso(10, "Canada", 16276), sso(20, "France", 16276)]
    listed = alerts_of(load(tmp_path, rule('["client.geographicalContext.country"]')), events)
    plain = alerts_of(load(tmp_path, rule('"client.geographicalContext.country"')), events)
    assert [a.key for a in listed] == [a.key for a in plain] and len(listed) == 1
    assert listed[0].context.distinct_field == "client.geographicalContext.country"


@pytest.mark.parametrize(("distinct", "message"), [
    ("[]", "threshold.distinct: a list of 1 to 4 field paths"),
    ('["a", "b", "c", "d", "e"]', "threshold.distinct: a list of 1 to 4 field paths"),
    ('["a", "b..c"]', "threshold.distinct[1]: bad field path"),
])
def test_the_loader_checks_the_list(tmp_path, distinct, message):
    with pytest.raises(ErrorGroup) as caught:
        load(tmp_path, rule(distinct))
    found = [str(e) for e in caught.value.errors]
    assert len(found) == 1 and message in found[0], found
