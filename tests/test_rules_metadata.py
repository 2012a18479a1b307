"""Rule metadata: description, author, status, references, falsepositives, ATT&CK tags (named and linked in
alerts) and ``enabled = false`` (loaded, checked and tested, never evaluated)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from test_config import run_cli

from sentinel.errors import ErrorGroup
from sentinel.model import parse_timestamp
from sentinel.render.message import email_message, log_record, text_message
from sentinel.rules import lint, load_rules
from sentinel.rules.attack import AttackRef, attack_ref
from sentinel.rules.engine import EngineState, evaluate
from sentinel.rules.testing import event_from_dict, run_tests

RULE = """
id = "admin-app-access"
title = "{actor.alternateId} opened the admin console"
severity = "low"
description = "An admin signed in to the Okta admin console."
author = "Detection team"
status = "experimental"
references = ["https://developer.okta.com/docs/reference/api/event-types/"]
falsepositives = ["Scheduled admin work", "Help desk shifts"]
tags = ["attack.initial_access", "attack.t1078.004", "attack.g0016", "team.iam"]
event_types = ["user.session.start"]
#EXTRA

[[tests]]
name = "an admin opens the console"
event = { actor = { alternateId = "admin@example.com" } }
expect = true
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def test_metadata_is_loaded_onto_the_rule(tmp_path: Path) -> None:
    write(tmp_path, "r.toml", RULE)
    (rule,) = load_rules([tmp_path])
    assert (rule.description, rule.author, rule.status) == (
        "An admin signed in to the Okta admin console.", "Detection team", "experimental")
    assert rule.references == ("https://developer.okta.com/docs/reference/api/event-types/",)
    assert rule.falsepositives == ("Scheduled admin work", "Help desk shifts")
    assert rule.tags == ("attack.initial_access", "attack.t1078.004", "attack.g0016", "team.iam")
    assert lint(load_rules([tmp_path])) == []


def test_bad_metadata_is_reported_with_its_key(tmp_path: Path) -> None:
    write(tmp_path, "r.toml", RULE.replace('"experimental"', '"beta"').replace(
        '["https://developer.okta.com/docs/reference/api/event-types/"]', '["https://ok.example", "see wiki"]').replace(
        'falsepositives = ["Scheduled admin work", "Help desk shifts"]', 'falsepositives = "none"').replace(
        'author = "Detection team"', "author = 7"))
    with pytest.raises(ErrorGroup) as raised:
        load_rules([tmp_path])
    assert sorted(str(e) for e in raised.value.errors) == sorted(f"{tmp_path}/r.toml: {line}" for line in [
        "author: must be text",
        "falsepositives: must be a list of text",
        "references[1]: must be an http or https URL, got 'see wiki'",
        "status: unknown status 'beta' (known: stable, test, experimental, deprecated, unsupported)",
    ])


def test_lint_warns_about_a_mistyped_attack_tag_and_an_enabled_deprecated_rule(tmp_path: Path) -> None:
    text = RULE.replace('"attack.g0016"', '"attack.credential_acess"').replace(
        '"experimental"', '"deprecated"')
    write(tmp_path, "r.toml", text)
    mistyped = (f"{tmp_path}/r.toml: admin-app-access: tags[2]: 'attack.credential_acess' is not an ATT&CK "
                "tactic, technique (attack.t1110.003), group or software id")
    assert lint(load_rules([tmp_path])) == [
        mistyped, f"{tmp_path}/r.toml: admin-app-access: status: rule is deprecated but enabled"]
    write(tmp_path, "r.toml", text.replace('status = "deprecated"', 'status = "deprecated"\nenabled = false'))
    assert lint(load_rules([tmp_path])) == [mistyped]  # shipped switched off: fine


@pytest.mark.parametrize(("tag", "ref"), [
    ("attack.credential_access", AttackRef("TA0006", "Credential Access", "https://attack.mitre.org/tactics/TA0006/")),
    ("attack.credential-access", AttackRef("TA0006", "Credential Access", "https://attack.mitre.org/tactics/TA0006/")),
    ("attack.t1110.003", AttackRef("T1110.003", "Brute Force: Password Spraying",
                                   "https://attack.mitre.org/techniques/T1110/003/")),
    ("attack.T1098", AttackRef("T1098", "Account Manipulation", "https://attack.mitre.org/techniques/T1098/")),
    ("attack.t1059.001", AttackRef("T1059.001", "", "https://attack.mitre.org/techniques/T1059/001/")),
    ("attack.g0016", None),
    ("attack.t11", None),
    ("cve.2024-1234", None),
    ("credential_access", None),
])
def test_attack_tags_become_names_and_links(tag: str, ref: AttackRef | None) -> None:
    assert attack_ref(tag) == ref


def test_a_disabled_rule_is_loaded_and_tested_but_never_evaluated(tmp_path: Path) -> None:
    write(tmp_path, "r.toml", RULE.replace("#EXTRA", "enabled = false"))
    ruleset = load_rules([tmp_path])
    (rule,) = ruleset
    assert not rule.enabled
    assert [(r.passed, r.detail) for r in run_tests(ruleset)] == [(True, "expected an alert, got 1")]
    event = event_from_dict({"uuid": "u1", "eventType": "user.session.start",
                             "published": "2026-01-01T00:00:00Z", "actor": {"alternateId": "admin@example.com"}})
    alerts, _ = evaluate(ruleset, event, EngineState(), event.published)
    assert alerts == []
    listed = run_cli("rules", "list", str(tmp_path))
    assert listed.stdout.splitlines()[1].split() == ["admin-app-access", "low", "user.session.start", "no", "hook"]


def test_an_alert_names_and_links_the_rules_attack_tags_and_says_what_the_rule_is_for(tmp_path: Path) -> None:
    write(tmp_path, "r.toml", RULE)
    ruleset = load_rules([tmp_path])
    event = event_from_dict({"uuid": "u1", "eventType": "user.session.start",
                             "published": "2026-01-01T00:00:00Z", "actor": {"alternateId": "admin@example.com"}})
    (alert,) = evaluate(ruleset, event, EngineState(), parse_timestamp("2026-01-01T00:00:00Z"))[0]
    text = text_message(alert).body
    assert "Description:     An admin signed in to the Okta admin console." in text
    assert "ATT&CK:          TA0001 Initial Access; T1078.004 Valid Accounts: Cloud Accounts" in text
    assert "False positives: Scheduled admin work; Help desk shifts" in text
    assert text.endswith("MITRE ATT&CK:\n"
                         "  - TA0001 Initial Access: https://attack.mitre.org/tactics/TA0001/\n"
                         "  - T1078.004 Valid Accounts: Cloud Accounts: https://attack.mitre.org/techniques/T1078/004/")
    html = email_message(alert).html
    assert ('<a href="https://attack.mitre.org/techniques/T1078/004/">T1078.004 Valid Accounts: Cloud Accounts</a>'
            in html)
    record = json.loads(json.dumps(log_record(alert)))
    assert record["description"] == "An admin signed in to the Okta admin console."
    assert record["falsepositives"] == "Scheduled admin work; Help desk shifts"
    assert record["attack"] == [
        {"name": "TA0001 Initial Access", "url": "https://attack.mitre.org/tactics/TA0001/"},
        {"name": "T1078.004 Valid Accounts: Cloud Accounts", "url": "https://attack.mitre.org/techniques/T1078/004/"},
    ]
