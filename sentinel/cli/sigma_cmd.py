"""``sentinel rules import-sigma PATH... --out DIR``: Sigma rules (Okta) to Sentinel TOML rules.

pySigma parses the YAML (sentinel/sigma converts, pure); this module reads and writes the files, adds
generated inline tests checked by the real engine, and reloads the output to prove it round-trips.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from sentinel.errors import ErrorGroup
from sentinel.rules.model import RuleSet

if TYPE_CHECKING:
    from sentinel.sigma.convert import ImportedRule

LIST_PLACEHOLDER = "placeholder.invalid"


@click.command("import-sigma")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write the TOML rules into (created if missing).")
@click.option("--disable", "disabled", multiple=True, metavar="NAME",
              help="Write this rule (Sigma file stem or id) with enabled = false; repeatable.")
@click.option("--no-tests", is_flag=True, help="Do not generate inline tests.")
def import_sigma(paths: tuple[Path, ...], out_dir: Path, disabled: tuple[str, ...], no_tests: bool) -> None:
    """Convert Sigma rules (files or folders of .yml) for Okta into Sentinel rules; exit 1 if one cannot be
    expressed (each such rule is named with the reason; the others are still written)."""
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
    out_dir.mkdir(parents=True, exist_ok=True)
    written = _write(imported, out_dir, set(disabled), tests=not no_tests)
    for problem in errors:
        click.echo(f"error: {problem.source}: {problem.reason}", err=True)
    click.echo(f"{written} rules written to {out_dir}, {len(errors)} not imported")
    if errors:
        sys.exit(1)


def _write(imported: list[ImportedRule], out_dir: Path, disabled: set[str], *, tests: bool) -> int:
    from sentinel.sigma.examples import example_tests
    from sentinel.sigma.writer import rule_text

    files: dict[str, Path] = {}
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
        files[rule.table["id"]] = path
    ruleset = _reload(out_dir)
    if tests:
        lists = {named.name: tuple(named.values) for named in ruleset.lists}
        by_id = {r.id: r for r in ruleset}
        for rule in imported:
            loaded = by_id[rule.table["id"]]
            rule.table["tests"] = example_tests(rule.table, lists, loaded.matches)
            if "threshold" in rule.table:
                rule.table.pop("tests")  # one event cannot show a threshold; write tests by hand
            files[rule.table["id"]].write_text(rule_text(rule.table, Path(rule.source).name), encoding="utf-8")
        _reload(out_dir)
    return len(files)


def _reload(out_dir: Path) -> RuleSet:
    from sentinel.rules import load_rules

    try:
        return load_rules([out_dir])
    except ErrorGroup as error:  # an importer bug: the written TOML must load
        for line in error.errors:
            click.echo(f"error: written rule does not load: {line}", err=True)
        sys.exit(1)


def register(group: click.Group) -> None:
    group.add_command(import_sigma)
