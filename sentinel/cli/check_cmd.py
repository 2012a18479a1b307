"""``sentinel check [--probe]``: the configuration, rules, channels, maintenance windows and the System Log
credential, checked without starting anything."""

from __future__ import annotations

from pathlib import Path

import click

from sentinel.cli.common import config_option, echo, error_lines, fail, load_settings
from sentinel.config import SECRET_ENV, Settings
from sentinel.errors import SentinelError
from sentinel.secret import short_secret_warnings


def check_windows(settings: Settings, config: str) -> list[str]:
    """The [[maintenance]] match tables' field paths, checked as rules' are (config.py, below the rule
    language, checked the rest)."""
    from sentinel.rules.field_paths import ConditionError, FieldPath

    problems = []
    for index, window in enumerate(settings.maintenance):
        for path, _ in window.matchers:
            try:
                FieldPath.parse(path)
            except ConditionError as e:
                problems.append(f"{config}: maintenance[{index}].match.{path}: {e.message}")
    return problems


def idle_windows(settings: Settings, rule_ids: list[str] | None, config: str) -> list[str]:
    """A [[maintenance]] rule pattern that matches no loaded rule silences nothing: most likely a typo."""
    from fnmatch import fnmatchcase

    if rule_ids is None:
        return []
    return [f"{config}: maintenance[{index}].rules: {pattern!r} matches no loaded rule"
            for index, window in enumerate(settings.maintenance) for pattern in window.rules
            if not any(fnmatchcase(rule_id, pattern) for rule_id in rule_ids)]


@click.command()
@config_option
@click.option("--probe", is_flag=True, help="Also make one real System Log request with [okta.api]'s credential.")
def check(config_path: Path, probe: bool) -> None:
    """Validate the configuration, rules and channels; exit 1 with every problem."""
    settings = load_settings(config_path)
    problems: list[str] = []
    from sentinel.cli import okta_api_check

    api_credentials = None
    if settings.okta_api is not None:
        from sentinel.okta_api import load_api_credentials

        try:
            api_credentials = load_api_credentials(settings.okta_api)
        except SentinelError as e:
            problems.append(f"{config_path}: {e}")
    elif probe:
        problems.append(f"{config_path}: --probe needs an [okta.api] table (there is nothing to probe)")
    from sentinel.rules.evaluator import RuleEvaluator
    from sentinel.service.ruleset import check_channels

    try:
        evaluator = RuleEvaluator.from_settings(settings.rules)
    except SentinelError as e:
        problems.extend(error_lines(e))
        evaluator = None
    problems.extend(check_channels(settings))
    problems.extend(check_windows(settings, str(config_path)))
    from sentinel.delivery.routing import routing_report

    routing = routing_report(settings.channels, settings.delivery.fallback_channel,
                             evaluator.ruleset.rules if evaluator is not None else (), str(config_path))
    problems.extend(routing.problems)
    if problems:
        fail(problems)
    for warning in short_secret_warnings(settings.okta.secrets):
        click.echo(f"warning: {warning}", err=True)
    from sentinel.rules import lint

    for warning in lint(evaluator.ruleset, polling=settings.okta_api is not None) if evaluator is not None else []:
        click.echo(f"warning: {warning}", err=True)
    for warning in routing.warnings:
        click.echo(f"warning: {warning}", err=True)
    for warning in idle_windows(settings, [r.id for r in evaluator.ruleset.rules] if evaluator else None,
                                str(config_path)):
        click.echo(f"warning: {warning}", err=True)
    rules = getattr(evaluator, "rule_count", 0)
    auth = "secret set" if settings.okta.secrets else (
        "NO secret (allow_unauthenticated)" if settings.okta.allow_unauthenticated else
        f"no secret yet ({SECRET_ENV} must be set to serve)")
    click.echo(f"ok: {config_path}: {rules} rules, {len(settings.channels)} channels, auth: {auth}")
    if settings.okta_api is not None and api_credentials is not None:
        click.echo(okta_api_check.describe(settings.okta_api, api_credentials))
        if probe:
            worked, line = okta_api_check.probe(settings.okta_api, api_credentials)
            if not worked:
                fail(line)
            echo(line)


def register(main: click.Group) -> None:
    main.add_command(check)
