"""Docs are tested: the README shows the two set-up commands first and names every command, config key
and shipped rule, so nothing a user can type or set is undocumented."""

from __future__ import annotations

import os
import re
from pathlib import Path

import click
import pytest

from sentinel.cli import main
from sentinel.config import Settings, parse_config
from sentinel.config_keys import CHANNEL_KEYS, SECTION_KEYS, default, markdown_table
from sentinel.rules import load_rules
from sentinel.rules.engine_state import EngineState

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def command_paths(group: click.Group, prefix: str = "sentinel") -> list[str]:
    paths = []
    for name, command in group.commands.items():
        path = f"{prefix} {name}"
        if isinstance(command, click.Group):
            paths.extend(command_paths(command, path))
            if command.invoke_without_command:
                paths.append(path)
        else:
            paths.append(path)
    return paths


def test_setup_commands_come_first() -> None:
    quick_start = README.index("## Quick start")
    assert README.index("make run") > quick_start
    assert README.index("make test") > quick_start
    assert README.index("make run") < README.index("## Point Okta at it")


def test_every_cli_command_is_in_the_readme() -> None:
    missing = [p for p in command_paths(main) if f"`{p}" not in README]
    assert missing == []


def test_every_config_key_is_in_the_readme() -> None:
    keys = [f"[{section}] {key}" for section, names in SECTION_KEYS.items() for key in sorted(names)]
    keys += [f"[channels.NAME] {key}" for key in sorted(CHANNEL_KEYS)]
    missing = [k for k in keys if f"`{k}`" not in README]
    assert missing == []


def test_every_shipped_rule_is_in_the_readme() -> None:
    ids = [rule.id for rule in load_rules([ROOT / "rules"]).rules]
    assert [i for i in ids if f"`{i}`" not in README] == []


def test_secret_variables_are_documented() -> None:
    for name in ("SENTINEL_OKTA_SECRET", "SENTINEL_OKTA_SECRET_PREVIOUS", "SENTINEL_METRICS_TOKEN",
                 "okta-secret", "okta-secret-previous", "metrics-token", "SENTINEL_OKTA_API_TOKEN",
                 "SENTINEL_OKTA_API_PRIVATE_KEY", "okta-api-token", "okta-api-private-key", "SENTINEL_UI_PASSWORD",
                 "ui-password"):
        assert f"`{name}`" in README, name


def test_shell_examples_say_where_sentinel_is() -> None:
    # `make run` installs the command in .venv/bin, not on PATH: a copied line must work as written.
    blocks = re.findall(r"```sh\n(.*?)```", README, re.S)
    assert blocks
    bare = [line for block in blocks for line in block.splitlines() if re.match(r"\s*sentinel\b", line)]
    assert bare == []


def test_the_configuration_table_is_the_one_the_config_keys_make() -> None:
    # One table of keys (sentinel/config_keys.py) gives parsing, defaults and this README table.
    # After changing a key there: SENTINEL_UPDATE_README=1 .venv/bin/pytest tests/test_readme.py
    wanted = markdown_table()
    start = README.index("| key | default | meaning |\n")
    end = README.index("\n\n", start) + 1
    if os.environ.get("SENTINEL_UPDATE_README") == "1" and README[start:end] != wanted:
        (ROOT / "README.md").write_text(README[:start] + wanted + README[end:], encoding="utf-8")
        pytest.skip("README.md configuration table rewritten from sentinel/config_keys.py")
    assert README[start:end] == wanted


def test_the_documented_defaults_are_the_settings_defaults() -> None:
    # The settings a file with no keys gives are the defaults the table shows.
    settings = parse_config({"channels": {"c": {"kind": "log", "path": "a.jsonl"}}}, "t.toml", ROOT, {},
                            resolve_secrets=False)
    assert settings.server.port == default("server", "port") and settings.server.host == default("server", "host")
    assert settings.rules.max_groups == default("rules", "max_groups") == Settings().rules.max_groups
    assert settings.delivery.retry_budget == Settings().delivery.retry_budget
    assert settings.channels["c"].min_severity.label == default("channels.NAME", "min_severity")
    assert EngineState().max_groups == default("rules", "max_groups")


def test_the_pictures_the_readme_shows_exist() -> None:
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README)
    assert "docs/img/ui-alerts.png" in pictures and "docs/img/ui-alert.png" in pictures
    assert [p for p in pictures if not (ROOT / p).is_file()] == []
