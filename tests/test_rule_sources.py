"""Which feed brings each rule its events (issue 13 point 6): the event types the poller asks Okta for (and
the filter it sends), each rule's source (hook, poll, both) in ``sentinel rules list``, and ``rules check``
not warning about hook eligibility when the config has ``[okta.api]``."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fake_okta import FakeOkta
from test_config import run_cli
from test_fake_okta import NOW, TOKEN, Clock, events_at

from sentinel.rules import RuleSet, load_rules
from sentinel.rules.lint import hook_eligible_types
from sentinel.rules.sources import MAX_FILTER_TERMS, filter_expression, polled_event_types, rule_source

ROOT = Path(__file__).resolve().parent.parent
PACK = ROOT / "rules"
POLL_ONLY = {"okta-threatinsight-threat-detected", "okta-impersonation-session-started", "okta-network-zone-changed",
             "okta-event-hook-delivery-failed", "okta-threatinsight-attack-started",
             "okta-mfa-factor-disabled-org-wide", "okta-admin-console-new-country",
             # rules/sigma: Sigma's network zone, ThreatInsight, admin console behaviour, impersonation and
             # app sign-on policy rules (the last shipped off)
             "9f308120-69ed-4506-abde-ac6da81f4310", "5c82f0b9-3c6d-477f-a318-0e14a1df73e0",
             "a0b38b70-3cb5-484b-a4eb-c4d8e7bcc0a9", "fe04b26b-0ac4-45d7-9404-4b9f16a440a9",
             "8f668cc4-c18e-45fe-ad00-624a981cf88a"}
# Enabled rules/sigma rules that name no event type (Sigma's proxy, password-health and alternateId rules).
SIGMA_EVERY_TYPE = {"9058ca8b-f397-4fd1-a9fa-2b7aad4d6309", "0d58814b-1660-4d31-8c93-d1086ed24cba",
                    "91b76b84-8589-47aa-9605-c837583b82a9"}


@pytest.fixture(scope="module")
def pack() -> RuleSet:
    """Everything shipped: the hand-written pack and rules/sigma."""
    return load_rules([PACK])


@pytest.fixture(scope="module")
def hand_pack() -> RuleSet:
    """The hand-written pack alone (rules/*.toml), as a config without rules/sigma loads it."""
    return load_rules(sorted(p for p in PACK.iterdir() if p.suffix == ".toml"))


def rules(tmp_path: Path, *event_type_lists: list[str], enabled: tuple[bool, ...] = ()) -> RuleSet:
    text = ""
    for i, types in enumerate(event_type_lists):
        on = enabled[i] if i < len(enabled) else True
        text += textwrap.dedent(f"""
            [[rules]]
            id = "r{i}"
            title = "t"
            severity = "low"
            enabled = {str(on).lower()}
            event_types = {json.dumps(types)}
            """)
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    return load_rules([path])


# -- the types to poll and the filter ---------------------------------------------------------------------


def test_the_shipped_rules_poll_every_type_for_the_sigma_rules_that_name_none(pack: RuleSet) -> None:
    assert {rule.id for rule in pack if rule.enabled and "*" in rule.event_types} == SIGMA_EVERY_TYPE
    assert polled_event_types(pack) is None


def test_the_pack_polls_exactly_the_types_its_rules_read(hand_pack: RuleSet) -> None:
    types = polled_event_types(hand_pack)
    assert types is not None and list(types) == sorted(set(types))
    read = {t for rule in hand_pack if rule.enabled for t in rule.event_types}
    assert set(types) == read  # the pack has no exact type under one of its own prefixes
    assert {"security.threat.detected", "event_hook.delivery", "iam.role.*"} <= set(types)


def test_a_rule_reading_every_type_polls_everything(tmp_path: Path) -> None:
    assert polled_event_types(rules(tmp_path, ["user.session.start"], ["*"])) is None


def test_disabled_rules_and_types_under_a_polled_prefix_add_nothing(tmp_path: Path) -> None:
    ruleset = rules(tmp_path, ["iam.role.*", "iam.role.create"], ["zone.update"], ["*"], enabled=(True, True, False))
    assert polled_event_types(ruleset) == ("iam.role.*", "zone.update")


def test_too_many_types_for_one_filter_poll_everything(tmp_path: Path) -> None:
    many = [f"custom.type{i}.made" for i in range(MAX_FILTER_TERMS + 1)]
    assert polled_event_types(rules(tmp_path, many)) is None
    assert polled_event_types(rules(tmp_path, many[:MAX_FILTER_TERMS])) is not None


def test_the_filter_names_exact_types_and_prefixes() -> None:
    assert filter_expression(("iam.role.*", "zone.update")) == 'eventType sw "iam.role." or eventType eq "zone.update"'


def test_a_quote_or_backslash_in_a_type_cannot_break_out_of_its_string() -> None:
    hostile = 'x" or eventType pr or eventType eq "\\'
    expression = filter_expression((hostile,))
    assert expression == 'eventType eq "x\\" or eventType pr or eventType eq \\"\\\\"'
    assert json.loads(expression.removeprefix("eventType eq ")) == hostile


@pytest.fixture
def fake() -> Iterator[FakeOkta]:
    server = FakeOkta(api_token=TOKEN, clock=Clock(NOW), rate_limit=1000).start()
    yield server
    server.stop()


def test_okta_returns_what_the_rules_read_for_the_packs_filter(fake: FakeOkta, hand_pack: RuleSet) -> None:
    """The filter for the shipped pack, sent to the fake System Log (which implements eq, sw and or as Okta
    documents them), returns exactly the stored events whose type some rule reads."""
    events = events_at(datetime.fromtimestamp(NOW, UTC) - timedelta(hours=1), 60)
    fake.add(events)
    pack = hand_pack
    types = polled_event_types(pack)
    assert types is not None
    with httpx.Client(base_url=fake.base, headers={"Authorization": f"SSWS {TOKEN}"}, timeout=5) as http:
        response = http.get("/api/v1/logs", params={"filter": filter_expression(types), "limit": "1000"})
    assert response.status_code == 200, response.text
    got = [event["uuid"] for event in response.json()]
    wanted = [e["uuid"] for e in events if pack.rules_for(e["eventType"])]
    assert got == wanted and 0 < len(wanted) < len(events)


# -- each rule's source --------------------------------------------------------------------------------------


def test_each_rule_says_which_feed_brings_its_events(pack: RuleSet) -> None:
    eligible = hook_eligible_types()
    assert "security.threat.detected" not in eligible and "user.account.lock" in eligible
    for rule in pack:
        expected_with = "poll" if rule.id in POLL_ONLY else "both"
        assert rule_source(rule, polling=True) == expected_with, rule.id
        assert rule_source(rule, polling=False) == ("poll" if rule.id in POLL_ONLY else "hook"), rule.id


def test_a_rule_mixing_hook_and_poll_types_is_both_and_a_prefix_counts_by_its_types(tmp_path: Path) -> None:
    mixed, prefix_poll, star = rules(tmp_path, ["user.account.lock", "zone.update"], ["zone.*"], ["*"])
    assert (rule_source(mixed, True), rule_source(mixed, False)) == ("both", "hook")
    assert (rule_source(prefix_poll, True), rule_source(prefix_poll, False)) == ("poll", "poll")
    assert (rule_source(star, True), rule_source(star, False)) == ("both", "hook")


# -- through the CLI, on the shipped config and a copy with [okta.api] ------------------------------------


@pytest.fixture(scope="module")
def polling_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped sentinel.toml with an [okta.api] table (rules paths made absolute for the copy)."""
    folder = tmp_path_factory.mktemp("polling")
    text = (ROOT / "sentinel.toml").read_text(encoding="utf-8")
    assert 'paths = ["rules"]' in text
    text = text.replace('paths = ["rules"]', f"paths = [{json.dumps(str(PACK))}]")
    text += '\n[okta.api]\nbase_url = "https://example.okta.com"\npoll_interval_seconds = 60\n'
    config = folder / "sentinel.toml"
    config.write_text(text, encoding="utf-8")
    return config


def listed_sources(*args: str) -> dict[str, str]:
    result = run_cli("rules", "list", "--json", *args)
    assert result.returncode == 0, result.stderr
    return {row["id"]: row["source"] for row in map(json.loads, result.stdout.splitlines())}


def test_rules_list_shows_the_source_on_the_shipped_config_and_with_polling(polling_config: Path) -> None:
    shipped = listed_sources("--config", str(ROOT / "sentinel.toml"))
    assert shipped["okta-brute-force-user"] == "hook" and shipped["okta-threatinsight-threat-detected"] == "poll"
    assert {rule for rule, source in shipped.items() if source == "poll"} == POLL_ONLY
    polled = listed_sources("--config", str(polling_config))
    assert set(polled) == set(shipped)
    assert {rule: source for rule, source in polled.items() if source != "both"} == dict.fromkeys(POLL_ONLY, "poll")
    table = run_cli("rules", "list", "--config", str(polling_config)).stdout.splitlines()
    assert table[0].split() == ["ID", "SEVERITY", "EVENT", "TYPES", "ENABLED", "SOURCE"]
    assert next(row for row in table if row.startswith("okta-network-zone-changed ")).split()[-1] == "poll"


def test_rules_check_warns_about_hook_eligibility_only_without_the_poller(polling_config: Path) -> None:
    shipped = run_cli("rules", "check", "--config", str(ROOT / "sentinel.toml"))
    assert shipped.returncode == 0, shipped.stderr
    warned = {line.split(": ")[2] for line in shipped.stderr.splitlines() if "needs System Log polling" in line}
    # Sigma's policy rule also reads policy.lifecycle.delete, which no hook delivers, beside types one does;
    # okta-mfa-push-exhaustion likewise system.push.send_factor_verify_push beside user.authentication.auth_via_mfa.
    assert warned == POLL_ONLY | {"1667a172-ed4c-463c-9969-efd92195319a", "okta-mfa-push-exhaustion"}
    polled = run_cli("rules", "check", "--config", str(polling_config))
    assert polled.returncode == 0, polled.stderr
    assert "event hook" not in polled.stderr and polled.stdout.strip().endswith("rules OK")
