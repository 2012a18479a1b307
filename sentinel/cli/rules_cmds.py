"""``sentinel rules check|test|list``: work with rules offline, without an Okta org; ``rules history``: what a
first-seen rule has learned, read from the store."""

from __future__ import annotations

import json
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from sentinel.cli.common import (
    config_option,
    config_was_given,
    echo,
    echo_json,
    error_lines,
    fail,
    load_settings,
    with_db,
)
from sentinel.config import RulesSettings, load_config, parse_config
from sentinel.errors import ErrorGroup
from sentinel.model import format_timestamp
from sentinel.rules import lint, load_rules
from sentinel.rules.engine_state import from_micros
from sentinel.rules.first_seen import HistoryRow, history_rows
from sentinel.rules.model import RuleSet
from sentinel.rules.sources import rule_source
from sentinel.rules.testing import run_tests

DEFAULT_RULES = (Path("rules"),)


def rule_paths_from(paths: Sequence[Path], config_path: Path) -> tuple[Sequence[Path], int]:
    """The rule paths and group cap: PATHs given, else the config's [rules], else ./rules.

    Unlike the store commands, these work without any config: with no --config (or $SENTINEL_CONFIG)
    and no ./sentinel.toml, PATH defaults to ./rules."""
    settings = rules_settings_from(paths, config_path)
    return settings.paths, settings.max_groups


def rules_settings_from(paths: Sequence[Path], config_path: Path) -> RulesSettings:
    """The ``[rules]`` settings the rule commands use, with PATHs given replacing its paths (see
    :func:`rule_paths_from`)."""
    if paths:
        return RulesSettings(paths=tuple(paths))
    if not config_was_given() and not config_path.is_file():
        return RulesSettings(paths=DEFAULT_RULES)
    try:
        doc = _config_doc(config_path)
        if doc is None:
            load_config(config_path)  # cannot read or parse it: raises, saying why
        settings = parse_config(_without_poller(doc or {}), str(config_path), config_path.resolve().parent,
                                resolve_secrets=False)  # rules need no secret
    except ErrorGroup as error:
        fail(error_lines(error), code=2)
    return settings.rules


def polling_configured(paths: Sequence[Path], config_path: Path) -> bool:
    """Whether the config the rules come from has an ``[okta.api]`` table (the System Log poller runs)."""
    if paths and not config_was_given():
        return False
    doc = _config_doc(config_path)
    okta = doc.get("okta") if doc else None
    return isinstance(okta, dict) and isinstance(okta.get("api"), dict)


def _config_doc(config_path: Path) -> dict[str, Any] | None:
    try:
        return tomllib.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError):
        return None


def _without_poller(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The config without ``[okta.api]``: the poller's table is `sentinel check`'s to validate; the rules
    commands only ask whether it is there."""
    okta = doc.get("okta")
    if not isinstance(okta, dict) or "api" not in okta:
        return dict(doc)
    return {**doc, "okta": {k: v for k, v in okta.items() if k != "api"}}


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
    for warning in lint(ruleset, polling=polling_configured(paths, config_path)):
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
@click.option("--json", "as_json", is_flag=True, help="One JSON object per rule, one per line.")
def list_rules(paths: tuple[Path, ...], config_path: Path, as_json: bool) -> None:
    """Show id, severity, event types, whether each rule is enabled and which feed brings its events
    (hook, poll, both: the System Log poller runs when the config has [okta.api]); then the named lists."""
    rule_paths, _ = rule_paths_from(paths, config_path)
    ruleset = load_ruleset(rule_paths)
    polling = polling_configured(paths, config_path)
    if as_json:
        for r in ruleset:
            click.echo(json.dumps({"id": r.id, "severity": r.severity.label, "event_types": list(r.event_types),
                                   "enabled": r.enabled, "source": rule_source(r, polling)}))
        return
    rows = [(r.id, r.severity.label, ",".join(r.event_types), "yes" if r.enabled else "no", rule_source(r, polling))
            for r in ruleset]
    header = ("ID", "SEVERITY", "EVENT TYPES", "ENABLED", "SOURCE")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        click.echo(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]:<{widths[3]}}  "
                   f"{row[4]}")
    echo_lists(ruleset)


@rules_group.command("history")
@click.argument("rule_id", metavar="RULE")
@click.option("--group", "group", help="Only this group (its key as shown, e.g. actor.alternateId=jane@example.com).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per value.")
@config_option
def history(rule_id: str, group: str | None, as_json: bool, config_path: Path) -> None:
    """What a first-seen rule has learned, per group: values, first and last seen (event time), counts.

    Reads the store the daemon writes (read-only; works while it runs); shows what it last committed."""
    settings = load_settings(config_path, secrets=False)
    _check_first_seen_rule(rule_id, settings.rules.paths)
    rows = with_db(settings, lambda store: store.rule_state(rule_id))
    groups: list[tuple[str, list[HistoryRow]]] = []
    for key, text in rows:
        if group is not None and key != group:
            continue
        try:
            record = json.loads(text)
        except ValueError:
            continue
        learned = list(history_rows(key, record)) if isinstance(record, dict) else []
        if learned:
            groups.append((key, learned))
    for key, learned in groups:
        if not as_json:
            echo(f"{key or '(all events)'}: {len(learned)} value{'s' if len(learned) != 1 else ''}")
        for row in learned:
            first, last = (format_timestamp(from_micros(m)) for m in (row.first_micros, row.last_micros))
            if as_json:
                echo_json({"rule_id": rule_id, "group": key, "values": row.values, "first_seen": first,
                           "last_seen": last, "count": row.count})
            else:
                shown = ", ".join(f"{field}={value}" for field, value in row.values.items())
                echo(f"  {shown}  first {first}  last {last}  count {row.count}")
    if not groups:
        where = f" for group {group!r}" if group is not None else ""
        click.echo(f"no first-seen history for rule {rule_id!r}{where} in {settings.storage.path}", err=True)


def _check_first_seen_rule(rule_id: str, paths: Sequence[Path]) -> None:
    """Fail if the configured rules name ``rule_id`` as a rule that is not first seen; say so (and go on) if
    they do not name it: its history stays in the store until its look-back ends."""
    try:
        ruleset = load_rules(paths)
    except ErrorGroup:
        return  # the store is still worth reading; `rules check` names the problems
    rule = next((r for r in ruleset.rules if r.id == rule_id), None)
    if rule is None:
        echo(f"warning: no loaded rule has id {rule_id!r} (a removed rule's history expires with its look-back)",
             err=True)
    elif rule.first_seen is None:
        fail(f"rule {rule_id!r} is not a first-seen rule (it has no [first_seen] table)")


def register(main: click.Group) -> None:
    """Add this module's commands to ``main``."""
    from sentinel.cli import sigma_cmd

    sigma_cmd.register(rules_group)
    main.add_command(rules_group)
