"""Helpers shared by CLI commands: loading config with one clear line per problem, the daemon's address file,
and output that never hands event text to the terminal raw (see :mod:`sentinel.safe_text`)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from sentinel.config import Settings, load_config
from sentinel.errors import ErrorGroup, SentinelError, StoreError
from sentinel.render.safe_text import inert, inert_lines, json_line

if TYPE_CHECKING:
    from sentinel.store import CliStore

DEFAULT_CONFIG = "sentinel.toml"

# The one --config option of every command. The rule commands (rules, replay) also work with no config:
# when it was not given and ./sentinel.toml does not exist, they read ./rules (see config_was_given).
config_option = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_CONFIG,
    show_default=True, envvar="SENTINEL_CONFIG", help="Configuration file (or $SENTINEL_CONFIG).")


def config_was_given() -> bool:
    """Whether the running command's --config came from the command line or $SENTINEL_CONFIG."""
    context = click.get_current_context(silent=True)
    source = context.get_parameter_source("config_path") if context is not None else None
    return source is not None and source is not click.core.ParameterSource.DEFAULT


def echo(line: str, err: bool = False) -> None:
    """One line that may hold event text: a newline or escape sequence in it is shown, not acted on."""
    click.echo(inert(line), err=err)


def echo_text(text: str) -> None:
    """Text composed of lines (ours); each line made inert, so only our own line breaks remain."""
    click.echo(inert_lines(text))


def echo_json(value: Any) -> None:
    """One JSON object per line, every control and bidi character \\u-escaped."""
    click.echo(json_line(value))


def fail(lines: list[str] | str, code: int = 1) -> NoReturn:
    for line in [lines] if isinstance(lines, str) else lines:
        echo(line, err=True)
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


def with_db(settings: Settings, fn: Callable[[CliStore], T]) -> T:
    """Run ``fn`` on the store; a missing or empty store, or one that fails, is a clear error."""
    from sentinel.store import open_for_cli

    try:
        store = open_for_cli(settings.storage.path)
    except (FileNotFoundError, StoreError) as e:
        fail(str(e))
    try:
        return fn(store)
    except StoreError as e:
        fail(str(e))
    finally:
        store.close()


def address_file(settings: Settings) -> Path:
    """Where a running daemon says which URL it listens on (``state/sentinel.url`` for ``state/sentinel.db``),
    so ``sentinel demo`` finds a daemon started with ``--port``/``--host``."""
    store = settings.storage.path
    return store.with_name(f"{store.stem}.url")


def hook_url(host: str, port: int) -> str:
    """The URL a client on this machine uses for a daemon listening on ``host:port``."""
    # A wildcard listener is reached on loopback.
    reachable = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104
    return f"http://{f'[{reachable}]' if ':' in reachable else reachable}:{port}/hooks/okta"


def write_address(settings: Settings) -> Path:
    """Write the hook URL to the address file, owner-only (0600), replacing it atomically."""
    path = address_file(settings)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(hook_url(settings.server.host, settings.server.port) + "\n")
    os.replace(temporary, path)
    return path


def remove_address(settings: Settings) -> None:
    with contextlib.suppress(OSError):
        address_file(settings).unlink()


def read_address(settings: Settings) -> str | None:
    """The URL a running daemon wrote for this config's store, if any."""
    try:
        url = address_file(settings).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return url if url.startswith(("http://", "https://")) else None
