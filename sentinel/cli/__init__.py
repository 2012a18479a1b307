"""The ``sentinel`` command line: the composition root. Each command group lives in its own module."""

from __future__ import annotations

import click

from sentinel import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sentinel")
def main() -> None:
    """Sentinel: security alerting for Okta Event Hooks."""


def _register() -> None:
    # Imported here so each module can import ``main`` without a cycle.
    from sentinel.cli import backfill_cmd, check_cmd, delivery_cmds, replay_cmd, rules_cmds, serve_cmds, silence_cmds

    for module in (serve_cmds, check_cmd, rules_cmds, replay_cmd, delivery_cmds, silence_cmds, backfill_cmd):
        module.register(main)


_register()
