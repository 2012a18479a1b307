"""``sentinel rules check|test|list``: work with rules offline, without an Okta org."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import click

from sentinel.cli.common import config_option, config_was_given, error_lines, fail
from sentinel.config import load_config
from sentinel.errors import ErrorGroup
from sentinel.rules import lint, load_rules
from sentinel.rules.engine_state import DEFAULT_MAX_GROUPS
from sentinel.rules.model import RuleSet
from sentinel.rules.testing import run_tests

DEFAULT_RULES = (Path("rules"),)


def rule_paths_from(paths: Sequence[Path], config_path: Path) -> tuple[Sequence[Path], int]:
    """The rule paths and group cap: PATHs given, else the config's [rules], else ./rules.

    Unlike the store commands, these work without any config: with no --config (or $SENTINEL_CONFIG)
    and no ./sentinel.toml, PATH defaults to ./rules."""
    if paths:
        return paths, DEFAULT_MAX_GROUPS
    if not config_was_given() and not config_path.is_file():
        return DEFAULT_RULES, DEFAULT_MAX_GROUPS
    try:
        settings = load_config(config_path, resolve_secrets=False)  # rules need no secret
    except ErrorGroup as error:
        fail(error_lines(error), code=2)
    return settings.rules.paths, settings.rules.max_groups


def load_ruleset(paths: Sequence[Path]) -> RuleSet:
    try:
        return load_rules(paths)
    except ErrorGroup as error:
        fail(error_lines(error))


paths_argument = click.argument("paths", nargs=-1, type=click.Path(path_type=Path))


@click.group("rules")
def rules_group() -> None:
    """Validate, test and list detection rules."""


@rules_group.command("check")
@paths_argument
@config_option
def check(paths: tuple[Path, ...], config_path: Path) -> None:
    """Validate rule files; print every problem, one per line; exit 1 if any."""
    rule_paths, _ = rule_paths_from(paths, config_path)
    ruleset = load_ruleset(rule_paths)
    for warning in lint(ruleset):
        click.echo(f"warning: {warning}", err=True)
    echo_lists(ruleset)
    click.echo(f"{len(ruleset)} rules OK")


def echo_lists(ruleset: RuleSet) -> None:
    """One line per named list loaded with the rules: name, number of values, file."""
    for named in ruleset.lists:
        click.echo(f"list {named.name}: {len(named.values)} values ({named.source})")


@rules_group.command("test")
@paths_argument
@config_option
def test(paths: tuple[Path, ...], config_path: Path) -> None:
    """Run every rule's inline tests; exit 1 if one fails."""
    rule_paths, _ = rule_paths_from(paths, config_path)
    ruleset = load_ruleset(rule_paths)
    results = run_tests(ruleset)
    failed = 0
    for result in results:
        if result.passed:
            click.echo(f"PASS {result.rule_id}: {result.test.name}")
        else:
            failed += 1
            click.echo(f"FAIL {result.rule_id}: {result.test.name}: {result.detail} ({result.test.location})")
    click.echo(f"{len(results) - failed} passed, {failed} failed")
    if failed:
        sys.exit(1)


@rules_group.command("list")
@paths_argument
@config_option
def list_rules(paths: tuple[Path, ...], config_path: Path) -> None:
    """Show id, severity, event types and whether each rule is enabled; then the named lists."""
    rule_paths, _ = rule_paths_from(paths, config_path)
    ruleset = load_ruleset(rule_paths)
    rows = [(r.id, r.severity.label, ",".join(r.event_types), "yes" if r.enabled else "no") for r in ruleset]
    header = ("ID", "SEVERITY", "EVENT TYPES", "ENABLED")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
    for row in [header, *rows]:
        click.echo(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]}")
    echo_lists(ruleset)


def register(main: click.Group) -> None:
    """Add this module's commands to ``main``."""
    from sentinel.cli import sigma_cmd

    sigma_cmd.register(rules_group)
    main.add_command(rules_group)
