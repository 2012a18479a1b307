"""``sentinel rules import-sigma PATH... --out DIR``: Sigma rules (Okta) to Sentinel TOML rules.

pySigma parses the YAML (sentinel/sigma converts, pure); this module reads and writes the files, adds
generated inline tests checked by the real engine, and reloads the output to prove it round-trips.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from sentinel.cli.common import config_option
from sentinel.errors import ErrorGroup
from sentinel.rules.model import RuleSet

if TYPE_CHECKING:
    from sentinel.sigma.convert import ImportedRule

LIST_PLACEHOLDER = "placeholder.invalid"


@click.command("import-sigma")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write the TOML rules into (created if missing).")
@click.option("--disable", "disabled", multiple=True, metavar="NAME",
              help="Write this rule (Sigma file stem or id) with enabled = false; repeatable.")
@click.option("--no-tests", is_flag=True, help="Do not generate inline tests.")
@config_option
def import_sigma(paths: tuple[Path, ...], out_dir: Path, disabled: tuple[str, ...], no_tests: bool,
                 config_path: Path) -> None:
    """Convert Sigma rules (files or folders of .yml) for Okta into Sentinel rules; exit 1 if one cannot be
    expressed (each such rule is named with the reason; the others are still written). With a config,
    the configured rules are loaded with the new ones afterwards, and any clash (a rule id already in use)
    is named."""
    from sentinel.cli.rules_cmds import rules_settings_from

    configured = rules_settings_from((), config_path)  # a config named but missing fails before any work
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        click.echo(f"error: no such file or folder: {', '.join(missing)}", err=True)
        sys.exit(2)
    # pySigma is imported here so other commands do not pay for it at start-up.
    from sigma.collection import SigmaCollection
    from sigma.exceptions import SigmaError

    from sentinel.sigma import convert_collection

    try:
        collection = SigmaCollection.load_ruleset(list(paths), collect_errors=True)
        collection.resolve_rule_references()
    except SigmaError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)
    imported, errors = convert_collection(collection)
    unknown = set(disabled) - {r.name for r in imported} - {str(r.table["id"]) for r in imported}
    if unknown:  # a typo would ship a noisy rule switched on
        click.echo(f"error: --disable names no imported rule: {', '.join(sorted(unknown))}", err=True)
        sys.exit(1)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = _write(imported, out_dir, set(disabled), tests=not no_tests)
    problems = [f"{e.source}: {e.reason}" for e in errors]
    problems += [f"{rule.source}: {reason}" for rule, reason in written if reason]
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    click.echo(f"{sum(1 for _, reason in written if not reason)} rules written to {out_dir}, "
               f"{len(problems)} not imported")
    for clash in _clashes(configured.paths, out_dir):
        click.echo(f"warning: with the configured rules: {clash}", err=True)
    if problems:
        sys.exit(1)


def _write(imported: list[ImportedRule], out_dir: Path, disabled: set[str], *,
           tests: bool) -> list[tuple[ImportedRule, str]]:
    """Write each rule, load it back (with the lists), add generated tests; each rule with "" or the reason
    its output did not load (that file is removed: an importer gap, reported like any other)."""
    from sentinel.sigma.examples import example_tests
    from sentinel.sigma.writer import rule_text

    results: list[tuple[ImportedRule, str]] = []
    for rule in imported:
        if rule.name in disabled or rule.table["id"] in disabled:
            rule.table["enabled"] = False
        for name in rule.lists:
            list_file = out_dir / "lists" / f"{name}.txt"
            if not list_file.exists():
                list_file.parent.mkdir(parents=True, exist_ok=True)
                list_file.write_text(f"# Values for the Sigma placeholder %{name}% (one a line). Replace the\n"
                                     f"# placeholder below with your own values.\n{LIST_PLACEHOLDER}\n")
                click.echo(f"note: {rule.name} uses the placeholder %{name}%: fill in {list_file}", err=True)
        path = out_dir / f"{rule.name}.toml"
        path.write_text(rule_text(rule.table, Path(rule.source).name), encoding="utf-8")
        loaded, reason = _load_one(path, out_dir)
        if loaded is not None and tests and not {"threshold", "sequence"} & set(rule.table):  # one event cannot
            # show a threshold or a sequence: those get their tests by hand
            lists = {named.name: tuple(named.values) for named in loaded.lists}
            rule.table["tests"] = example_tests(rule.table, lists, loaded.rules[0].matches)
            path.write_text(rule_text(rule.table, Path(rule.source).name), encoding="utf-8")
            loaded, reason = _load_one(path, out_dir)
        if loaded is None:
            path.unlink()
        results.append((rule, reason))
    return results


def _load_one(path: Path, out_dir: Path) -> tuple[RuleSet | None, str]:
    from sentinel.rules import load_rules

    lists = out_dir / "lists"
    try:
        return load_rules([path, lists] if lists.is_dir() else [path]), ""
    except ErrorGroup as error:
        return None, "the converted rule does not load: " + "; ".join(str(e) for e in error.errors)


def register(group: click.Group) -> None:
    group.add_command(import_sigma)


def _clashes(configured: tuple[Path, ...], out_dir: Path) -> list[str]:
    """What stops the configured rules loading together with the imported ones (a duplicate id, most
    likely): the daemon would refuse the reload, so say it now."""
    from sentinel.rules import load_rules

    paths = list(configured)
    if not any(out_dir.resolve().is_relative_to(p.resolve()) for p in configured if p.is_dir()):
        paths.append(out_dir)
    try:
        load_rules(paths)
    except ErrorGroup as error:
        return [str(e) for e in error.errors]
    return []
