"""Named lists: ``lists/NAME.txt`` and ``[lists]`` tables next to the rules, used by ``in_list`` and by
``{ list = "NAME" }`` operands; loaded, checked and reloaded with the rules."""

from __future__ import annotations

import signal
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import alert_rules, envelope, make_event, settled, wait_for
from daemon import Daemon, write_config
from test_config import run_cli

from sentinel.errors import ErrorGroup
from sentinel.rules import load_rules
from sentinel.rules.conditions import compile_selection
from sentinel.rules.field_paths import ConditionError
from sentinel.rules.lists import NamedList
from sentinel.rules.testing import run_tests


def named(name: str, *values: str) -> NamedList:
    return NamedList(name, values, tuple(f"{name}.txt line {i + 1}" for i in range(len(values))), f"{name}.txt")


LISTS = {
    "vip_users": named("vip_users", "ceo@example.com", "CFO@example.com"),
    "admin_prefixes": named("admin_prefixes", "admin-", "adm."),
    "admin_networks": named("admin_networks", "10.20.0.0/16", "2001:db8:20::/48"),
    "trusted_domains": named("trusted_domains", "@example.com", "@example.org"),
    "more_vips": named("more_vips", "board@example.com"),
}


def matches(spec: dict[str, Any], data: dict[str, Any]) -> bool:
    return compile_selection(spec, LISTS)(data)


def user(name: str, ip: str = "203.0.113.7") -> dict[str, Any]:
    return {"actor": {"alternateId": name}, "client": {"ipAddress": ip}}


# --- the engine: every string operator over a list ------------------------------------------------------


def test_in_list_is_equality_with_any_value_of_the_list() -> None:
    spec = {"actor.alternateId": {"in_list": "vip_users"}}
    assert matches(spec, user("ceo@example.com"))
    assert not matches(spec, user("ceo@example.com.evil"))
    # Case-insensitive by default (as Sigma); case_sensitive = true opts out.
    assert matches(spec, user("cfo@EXAMPLE.com"))
    assert matches({"actor.alternateId": {"in_list": "vip_users", "ignore_case": True}}, user("cfo@EXAMPLE.com"))
    assert not matches({"actor.alternateId": {"in_list": "vip_users", "case_sensitive": True}}, user("cfo@example.com"))


def test_in_list_takes_several_lists_and_not() -> None:
    several = {"actor.alternateId": {"in_list": ["vip_users", "more_vips"]}}
    assert matches(several, user("board@example.com")) and matches(several, user("ceo@example.com"))
    outside = {"actor.alternateId": {"in_list": "vip_users", "not": True}}
    assert matches(outside, user("intern@example.com")) and not matches(outside, user("ceo@example.com"))


def test_a_list_is_the_operand_of_startswith_endswith_contains_and_cidr() -> None:
    assert matches({"actor.alternateId": {"startswith": {"list": "admin_prefixes"}}}, user("adm.jane@x.com"))
    assert not matches({"actor.alternateId": {"startswith": {"list": "admin_prefixes"}}}, user("jane@x.com"))
    assert matches({"actor.alternateId": {"endswith": {"list": "trusted_domains"}}}, user("jane@example.org"))
    assert not matches({"actor.alternateId": {"endswith": {"list": "trusted_domains"}}}, user("jane@evil.org"))
    assert matches({"actor.alternateId": {"contains": {"list": "admin_prefixes"}}}, user("x-admin-y"))
    cidr = {"client.ipAddress": {"cidr": {"list": "admin_networks"}}}
    assert matches(cidr, user("a", "10.20.3.4")) and matches(cidr, user("a", "2001:db8:20::1"))
    assert not matches(cidr, user("a", "10.21.3.4"))
    assert matches({"actor.alternateId": {"equals": {"list": "vip_users"}}}, user("ceo@example.com"))
    assert matches({"actor.alternateId": {"glob": {"list": "admin_prefixes"}, "not": True}}, user("admin-x"))
    with_all = {"actor.alternateId": {"contains": {"list": "admin_prefixes"}, "all": True}}
    assert matches(with_all, user("admin-adm.x")) and not matches(with_all, user("admin-x"))


def test_unknown_list_and_bad_values_are_named() -> None:
    with pytest.raises(ConditionError) as unknown:
        compile_selection({"actor.alternateId": {"in_list": "vip_user"}}, LISTS)
    assert [(e.key, e.message) for e in unknown.value.errors] == [
        ('"actor.alternateId".in_list',
         "unknown list 'vip_user' (lists: admin_networks, admin_prefixes, more_vips, trusted_domains, vip_users)")]
    with pytest.raises(ConditionError) as bad:
        compile_selection({"client.ipAddress": {"cidr": {"list": ["admin_networks", "vip_users"]}}}, LISTS)
    assert [(e.key, e.message) for e in bad.value.errors] == [
        ('"client.ipAddress".cidr', "list 'vip_users' (vip_users.txt line 1): not a CIDR network: 'ceo@example.com'"),
        ('"client.ipAddress".cidr', "list 'vip_users' (vip_users.txt line 2): not a CIDR network: 'CFO@example.com'"),
    ]
    with pytest.raises(ConditionError) as extra:
        compile_selection({"actor.alternateId": {"startswith": {"list": "admin_prefixes", "lsit": 1}}}, LISTS)
    assert extra.value.message == "a list operand is { list = \"name\" } only; unknown key 'lsit'"


# --- the real loader with a real lists folder -------------------------------------------------------------

RULE = """
id = "vip-sign-in-from-outside"
title = "VIP {actor.alternateId} signed in from outside the admin networks"
severity = "high"
event_types = ["user.session.start"]
condition = "vip and not admin_network and not service"

[detection.vip]
"actor.alternateId" = { in_list = "vip_users", ignore_case = true }

[detection.admin_network]
"client.ipAddress" = { cidr = { list = "admin_networks" } }

[detection.service]
"actor.alternateId" = { startswith = { list = "service_prefixes" } }

[[tests]]
name = "a VIP from outside"
event = { actor = { alternateId = "CEO@example.com" }, client = { ipAddress = "198.51.100.4" } }
expect = true

[[tests]]
name = "a VIP from an admin network"
event = { actor = { alternateId = "ceo@example.com" }, client = { ipAddress = "10.20.9.9" } }
expect = false

[[tests]]
name = "someone else"
event = { actor = { alternateId = "intern@example.com" }, client = { ipAddress = "198.51.100.4" } }
expect = false
"""

VIP_LIST = "# people whose sign-ins we watch\nceo@example.com\n\n  cfo@example.com  \n"


def rules_folder(root: Path, vips: str = VIP_LIST) -> Path:
    folder = root / "rules"
    (folder / "lists").mkdir(parents=True, exist_ok=True)
    (folder / "vip.toml").write_text(RULE)
    (folder / "lists" / "vip_users.txt").write_text(vips)
    (folder / "lists" / "admin_networks.txt").write_text("10.20.0.0/16\n# v6 office\n2001:db8:20::/48\n")
    (folder / "service-lists.toml").write_text('[lists]\nservice_prefixes = ["svc-", "scim-"]\n')
    return folder


def test_the_loader_reads_text_and_toml_lists_next_to_the_rules(tmp_path: Path) -> None:
    folder = rules_folder(tmp_path)
    ruleset = load_rules([folder])
    assert [r.id for r in ruleset] == ["vip-sign-in-from-outside"]
    assert {n.name: n.values for n in ruleset.lists} == {
        "admin_networks": ("10.20.0.0/16", "2001:db8:20::/48"),
        "vip_users": ("ceo@example.com", "cfo@example.com"),
        "service_prefixes": ("svc-", "scim-"),
    }
    assert [(r.test.name, r.passed, r.detail) for r in run_tests(ruleset)] == [
        ("a VIP from outside", True, "expected an alert, got 1"),
        ("a VIP from an admin network", True, "expected no alert, got 0"),
        ("someone else", True, "expected no alert, got 0"),
    ]


def test_rules_check_and_list_report_the_lists(tmp_path: Path) -> None:
    folder = rules_folder(tmp_path)
    checked = run_cli("rules", "check", str(folder))
    assert checked.returncode == 0, checked.stderr
    assert [line for line in checked.stderr.splitlines() if "list" in line] == []
    assert checked.stdout.splitlines() == [
        f"list admin_networks: 2 values ({folder}/lists/admin_networks.txt)",
        f"list vip_users: 2 values ({folder}/lists/vip_users.txt)",
        f"list service_prefixes: 2 values ({folder}/service-lists.toml)",
        "1 rules OK",
    ]
    listed = run_cli("rules", "list", str(folder))
    assert f"list vip_users: 2 values ({folder}/lists/vip_users.txt)" in listed.stdout.splitlines()


def test_rules_check_reports_every_bad_list_with_file_and_key(tmp_path: Path) -> None:
    folder = rules_folder(tmp_path, vips="# nobody yet\n\n")
    (folder / "lists" / "admin_networks.txt").write_text("10.20.0.0/16\n\noffice\n")
    (folder / "lists" / "broken.txt").write_bytes(b"ok\n\xff\xfe\n")
    (folder / "lists" / "bad name.txt").write_text("a\n")
    with (folder / "lists" / "huge.txt").open("wb") as huge:
        huge.truncate((32 << 20) + 1)  # sparse: nothing is written, and nothing should be read
    (folder / "mixed.toml").write_text('id = "m"\n[lists]\nok = ["a"]\n')
    (folder / "more-lists.toml").write_text(
        '[lists]\nservice_prefixes = ["x-"]\nempty = []\nnumbers = [1, 2]\n"bad name" = ["a"]\n')
    (folder / "uses.toml").write_text(textwrap.dedent("""
        id = "uses-unknown"
        title = "t"
        severity = "low"
        event_types = ["user.session.start"]
        condition = "sel"
        [detection.sel]
        "actor.alternateId" = { in_list = "vip_user" }
        """))
    result = run_cli("rules", "check", str(folder))
    assert result.returncode == 1
    assert sorted(result.stderr.splitlines()) == sorted([
        f"{folder}/lists/broken.txt: cannot read list: 'utf-8' codec can't decode byte 0xff in position 3: "
        "invalid start byte",
        f"{folder}/lists/vip_users.txt: list 'vip_users' is empty",
        f"{folder}/lists/bad name.txt: a list's file name must be letters, digits, '.', '_' or '-' (at most 128), "
        "then .txt",
        f"{folder}/lists/huge.txt: list file is 33554433 bytes (at most 33554432)",
        f"{folder}/mixed.toml: id: a file with [lists] holds only lists (put rules in their own files)",
        f"{folder}/service-lists.toml: lists.service_prefixes: duplicate list name 'service_prefixes' "
        f"(also in {folder}/more-lists.toml)",
        f"{folder}/more-lists.toml: lists.empty: list 'empty' is empty",
        f"{folder}/more-lists.toml: lists.numbers: must be a list of text",
        f"{folder}/more-lists.toml: lists.bad name: list names are letters, digits, '.', '_' or '-' (at most 128)",
        f"{folder}/uses.toml: detection.sel.\"actor.alternateId\".in_list: unknown list 'vip_user' (lists: "
        "admin_networks, ok, service_prefixes)",
        f"{folder}/vip.toml: detection.vip.\"actor.alternateId\".in_list: unknown list 'vip_users' (lists: "
        "admin_networks, ok, service_prefixes)",
        f"{folder}/vip.toml: detection.admin_network.\"client.ipAddress\".cidr: list 'admin_networks' "
        f"({folder}/lists/admin_networks.txt line 3): not a CIDR network: 'office'",
    ])


def test_a_txt_file_named_as_a_path_is_a_list(tmp_path: Path) -> None:
    folder = rules_folder(tmp_path)
    extra = tmp_path / "watch.txt"
    extra.write_text("x@example.com\n")
    ruleset = load_rules([folder, extra])
    assert "watch" in {n.name for n in ruleset.lists}
    with pytest.raises(ErrorGroup):
        load_rules([folder / "vip.toml"])  # the rule alone: its lists are not loaded


# --- reload: SIGHUP re-reads the lists with the rules -------------------------------------------------


@pytest.mark.proof
def test_sighup_picks_up_a_changed_list(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    rules_folder(tmp_path)
    daemon = Daemon(config).start()
    try:
        outside: dict[str, Any] = {"client": {"ipAddress": "198.51.100.4", "userAgent": {"rawUserAgent": "curl/8"}}}
        first = make_event("cto-1", actor={"alternateId": "cto@example.com", "type": "User"}, **outside)
        assert daemon.post(envelope(first)).status_code == 204
        assert wait_for(lambda: settled(tmp_path / "state" / "sentinel.db"))
        assert alert_rules(tmp_path) == []
        (tmp_path / "rules" / "lists" / "vip_users.txt").write_text(VIP_LIST + "cto@example.com\n")
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "reloaded: 1 rules" in daemon.log())
        second = make_event("cto-2", actor={"alternateId": "cto@example.com", "type": "User"}, **outside)
        assert daemon.post(envelope(second)).status_code == 204
        assert wait_for(lambda: alert_rules(tmp_path) == ["vip-sign-in-from-outside"])
    finally:
        daemon.stop()


def test_rules_check_warns_about_a_list_no_rule_uses(tmp_path: Path) -> None:
    folder = rules_folder(tmp_path)
    (folder / "lists" / "old_vendors.txt").write_text("vendor@example.net\n")
    checked = run_cli("rules", "check", str(folder))
    assert checked.returncode == 0, checked.stderr
    assert f"warning: {folder}/lists/old_vendors.txt: list 'old_vendors' is not used by any rule" in (
        checked.stderr.splitlines())
