"""``sentinel backfill``: read a window of Okta's System Log into the store, beside a running daemon.

The work is in :mod:`sentinel.cli.backfill_run`, imported when the command runs: the API client, the poller
and the store would otherwise slow every other command's start."""

from __future__ import annotations

from pathlib import Path

import click

from sentinel.cli.common import config_option


@click.command("backfill")
@click.option("--since", "since_text", required=True, help="Start: an ISO-8601 time, or 2h, 7d ... ago.")
@click.option("--until", "until_text", default=None, help="End (default: now): an ISO-8601 time, or 30m ... ago.")
@config_option
def backfill_cmd(since_text: str, until_text: str | None, config_path: Path) -> None:
    """Read [since, until) from the System Log API into the store, while the daemon runs.

    Bounded requests on `published`, the event types the rules read; the running daemon's detector
    evaluates the events, and any it already has (from the hook or the poller) are dropped on uuid.
    Progress goes to stderr; the totals to stdout as JSON."""
    from sentinel.cli.backfill_run import run_backfill

    run_backfill(since_text, until_text, config_path)


def register(main: click.Group) -> None:
    main.add_command(backfill_cmd)
