"""``sentinel rules check|test|list`` and ``sentinel replay``: work with rules offline, without an Okta org."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import click

from sentinel.cli.common import echo, echo_json, error_lines, fail
from sentinel.config import load_config
from sentinel.errors import ErrorGroup
from sentinel.rule_model import RuleSet
from sentinel.rule_replay import ReadReport, alert_json, read_events, replay
from sentinel.rule_tests import run_tests
from sentinel.rules import lint, load_rules

DEFAULT_RULES = (Path("rules"),)

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Read the rule paths from [rules] paths of this configuration file.",
)


def _rule_paths(paths: Sequence[Path], config_path: Path | None) -> tuple[Sequence[Path], int]:
    if paths:
        return paths, 100_000
    if config_path is not None:
        try:
            settings = load_config(config_path)
        except ErrorGroup as error:
            fail(error_lines(error), code=2)
        return settings.rules.paths, settings.rules.max_groups
    return DEFAULT_RULES, 100_000


def _load(paths: Sequence[Path]) -> RuleSet:
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
def check(paths: tuple[Path, ...], config_path: Path | None) -> None:
    """Validate rule files (default: ./rules); print every problem, one per line; exit 1 if any."""
    rule_paths, _ = _rule_paths(paths, config_path)
    ruleset = _load(rule_paths)
    for warning in lint(ruleset):
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"{len(ruleset)} rules OK")


@rules_group.command("test")
@paths_argument
@config_option
def test(paths: tuple[Path, ...], config_path: Path | None) -> None:
    """Run every rule's inline tests; exit 1 if one fails."""
    rule_paths, _ = _rule_paths(paths, config_path)
    ruleset = _load(rule_paths)
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
def list_rules(paths: tuple[Path, ...], config_path: Path | None) -> None:
    """Show id, severity, event types and whether each rule is enabled."""
    rule_paths, _ = _rule_paths(paths, config_path)
    ruleset = _load(rule_paths)
    rows = [(r.id, r.severity.label, ",".join(r.event_types), "yes" if r.enabled else "no") for r in ruleset]
    header = ("ID", "SEVERITY", "EVENT TYPES", "ENABLED")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
    for row in [header, *rows]:
        click.echo(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]}")


@click.command("replay")
@click.option("--rules", "rule_paths", multiple=True, type=click.Path(path_type=Path), help="Rule file or folder.")
@config_option
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, allow_dash=True))
def replay_command(rule_paths: tuple[Path, ...], config_path: Path | None, files: tuple[Path, ...]) -> None:
    """Run saved events (JSON lines, JSON arrays or hook POST bodies; - for stdin) through the rules.

    Events are evaluated in published order with event time as the clock; one JSON object per alert is
    printed. Nothing is sent and nothing is stored.
    """
    paths, max_groups = _rule_paths(rule_paths, config_path)
    ruleset = _load(paths)
    report = ReadReport()
    for file in files:
        source = "<stdin>" if str(file) == "-" else str(file)
        try:
            text = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            fail(f"{source}: cannot read: {error.__class__.__name__}: {getattr(error, 'strerror', '') or error}")
        read_events(text, source, report)
    for problem in report.problems:
        echo(f"skipped: {problem}", err=True)
    for alert in replay(ruleset, report.events, max_groups=max_groups):
        echo_json(alert_json(alert))


def register(main: click.Group) -> None:
    """Add this module's commands to ``main``."""
    main.add_command(rules_group)
    main.add_command(replay_command)
