"""``sentinel replay``: stream saved events through the rules and print the alerts; nothing is sent or stored."""

from __future__ import annotations

import contextlib
import gc
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import click

from sentinel.cli.common import config_option, echo, echo_json, fail
from sentinel.cli.rules_cmds import load_ruleset, rules_settings_from
from sentinel.rules.replay import Replay, alert_json
from sentinel.rules.replay_input import ReadReport, read_events

# A file of garbage must not flood the terminal: the first problems are shown, the rest counted.
SHOWN_PROBLEMS = 50


class _Problems:
    def __init__(self) -> None:
        self.shown = 0

    def __call__(self, message: str) -> None:
        self.shown += 1
        if self.shown <= SHOWN_PROBLEMS:
            echo(f"skipped: {message}", err=True)


def _open(file: Path) -> tuple[str, BinaryIO, int | None]:
    """(name, binary stream, size if known); a file that cannot be opened is one clear line and exit 1."""
    if str(file) == "-":
        return "<stdin>", sys.stdin.buffer, None
    try:
        stream = file.open("rb")
        info = os.fstat(stream.fileno())
    except OSError as error:
        fail(f"{file}: cannot read: {error.__class__.__name__}: {error.strerror or error}")
    return str(file), stream, info.st_size if stat.S_ISREG(info.st_mode) else None


@contextlib.contextmanager
def _progress(total: int | None) -> Iterator[Any]:
    """A bar on stderr when it is a terminal (and the size is known); otherwise nothing is drawn."""
    if total is None or not sys.stderr.isatty():
        yield None
        return
    with click.progressbar(length=total, label="replaying", file=sys.stderr, show_eta=True,
                           show_percent=True) as bar:
        yield bar


@click.command("replay")
@click.option("--rules", "rule_paths", multiple=True, type=click.Path(path_type=Path), help="Rule file or folder.")
@config_option
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, allow_dash=True))
def replay_command(rule_paths: tuple[Path, ...], config_path: Path, files: tuple[Path, ...]) -> None:
    """Stream saved events through the rules: JSON lines, JSON arrays, hook POST bodies or
    `sentinel events --json` output (- for stdin).

    Events are evaluated in file order with event time as the clock (the engine's windows accept
    out-of-order events); one JSON object per alert is printed once the alert is final. Nothing is sent
    and nothing is stored. Exits 1 when no event could be read.
    """
    settings = rules_settings_from(rule_paths, config_path)
    ruleset = load_ruleset(settings.paths)
    # The rules live as long as the run: keep them out of the collector's full passes.
    gc.freeze()
    inputs = [_open(file) for file in files]
    sizes = [size for _, _, size in inputs]
    total = None if any(size is None for size in sizes) else sum(size or 0 for size in sizes)
    report = ReadReport(on_problem=_Problems())
    run = Replay(ruleset, settings.max_groups, settings.allowed_lateness)
    with _progress(total) as bar:
        for source, stream, _ in inputs:
            try:
                for event in read_events(stream, source, report, bar.update if bar is not None else None):
                    for alert in run.feed(event):
                        echo_json(alert_json(alert))
            except OSError as error:
                fail(f"{source}: cannot read: {error.__class__.__name__}: {error.strerror or error}")
            finally:
                if stream is not sys.stdin.buffer:
                    stream.close()
        for alert in run.finish():
            echo_json(alert_json(alert))
    if report.skipped > SHOWN_PROBLEMS:
        click.echo(f"skipped: … and {report.skipped - SHOWN_PROBLEMS} more", err=True)
    if report.events == 0:
        where = ", ".join(source for source, _, _ in inputs)
        fail(f"no events read from {where}: " + (
            f"all {report.skipped} item(s) were skipped (see above); replay reads JSON lines, JSON arrays, "
            "Okta hook bodies and `sentinel events --json` output" if report.skipped else "the input is empty"))
    summary = f"replayed {run.evaluated} event(s)"
    if run.duplicates:
        summary += f", {run.duplicates} duplicate(s) skipped"
    if report.skipped:
        summary += f", {report.skipped} item(s) skipped"
    click.echo(summary, err=True)


def register(main: click.Group) -> None:
    main.add_command(replay_command)
