"""Helpers shared by CLI commands: loading config with one clear line per problem."""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, TypeVar

import click

from sentinel.config import Settings, load_config
from sentinel.errors import ErrorGroup, SentinelError

DEFAULT_CONFIG = "sentinel.toml"

config_option = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_CONFIG,
    show_default=True, envvar="SENTINEL_CONFIG", help="Configuration file.")


def fail(lines: list[str] | str, code: int = 1) -> NoReturn:
    for line in [lines] if isinstance(lines, str) else lines:
        click.echo(line, err=True)
    sys.exit(code)


def error_lines(error: SentinelError) -> list[str]:
    if isinstance(error, ErrorGroup):
        return [str(e) for e in error.errors]
    return [str(error)]


def load_settings(path: Path, *, secrets: bool = True) -> Settings:
    """The config, or exit with one line per problem. ``secrets=False`` for commands that use none
    (they then work where a channel's ``${VAR}`` is not set, e.g. root reading the store)."""
    try:
        return load_config(path, resolve_secrets=secrets)
    except ErrorGroup as e:
        fail(error_lines(e))


T = TypeVar("T")


def with_db(settings: Settings, fn: Callable[[sqlite3.Connection], T], write: bool = False) -> T:
    """Run ``fn`` on the store (in one transaction when ``write``); a missing store is a clear error."""
    from sentinel.store import open_for_cli

    try:
        conn = open_for_cli(settings.storage.path)
    except FileNotFoundError as e:
        fail(str(e))
    try:
        if write:
            conn.execute("BEGIN IMMEDIATE")
            result = fn(conn)
            conn.execute("COMMIT")
            return result
        return fn(conn)
    except sqlite3.OperationalError as e:
        if "no such table" in str(e):
            fail(f"{settings.storage.path}: nothing stored yet (the daemon has not created the tables)")
        raise
    finally:
        conn.close()
