"""What ``sentinel backfill`` does (its command, light to import, is :mod:`sentinel.cli.backfill_cmd`)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

from sentinel.cli.common import echo, echo_json, error_lines, fail, load_settings
from sentinel.cli.delivery_cmds import parse_since
from sentinel.clock import SystemClock
from sentinel.errors import SentinelError, StoreError
from sentinel.model import format_timestamp
from sentinel.okta_api import ApiError, SystemLogClient, load_api_credentials, request_lock_path
from sentinel.rules.evaluator import RuleEvaluator
from sentinel.rules.sources import polled_event_types
from sentinel.service.backfill import BackfillProgress, backfill
from sentinel.service.poller import RETENTION, requestable_types
from sentinel.store import CliInbox, open_inbox_for_cli


def run_backfill(since_text: str, until_text: str | None, config_path: Path) -> None:
    settings = load_settings(config_path, secrets=False)  # it sends nothing: channel secrets may be unset
    api = settings.okta_api
    if api is None:
        fail(f"{config_path}: no [okta.api] table: back-filling needs the System Log API (see README)")
    clock = SystemClock()
    now = clock.now()
    since = parse_since(since_text, now)
    until = parse_since(until_text, now) if until_text else now
    if since >= until:
        fail(f"--since ({format_timestamp(since)}) must be before --until ({format_timestamp(until)})")
    oldest = now - RETENTION + timedelta(minutes=1)
    if since < oldest:
        echo(f"backfill: Okta keeps 90 days; reading from {format_timestamp(oldest)}", err=True)
        since = oldest
    try:
        credentials = load_api_credentials(api)
        types = requestable_types(polled_event_types(RuleEvaluator.from_settings(settings.rules).ruleset))
    except SentinelError as e:
        fail(error_lines(e))
    try:
        inbox = open_inbox_for_cli(settings.storage.path)
    except (FileNotFoundError, StoreError) as e:
        fail(str(e))
    try:
        client = SystemLogClient(api, credentials, clock=clock, request_lock=request_lock_path(settings.storage.path))
        done = asyncio.run(_run(client, inbox, since, until, types, clock))
    except (ApiError, StoreError) as e:
        fail(f"backfill stopped: {e} (pages read so far are stored; run it again from there)")
    finally:
        inbox.close()
    echo_json({"since": format_timestamp(since), "until": format_timestamp(until), "pages": done.pages,
               "events": done.events, "event_types": list(types) if types is not None else "all"})


async def _run(client: SystemLogClient, inbox: CliInbox, since: datetime, until: datetime,
               types: tuple[str, ...] | None, clock: SystemClock) -> BackfillProgress:
    def progress(done: BackfillProgress) -> None:
        newest = format_timestamp(done.newest) if done.newest else "-"
        echo(f"backfill: {done.pages} pages, {done.events} events, up to {newest}", err=True)

    try:
        return await backfill(client, since, until, types, inbox.append_page, clock, progress)
    finally:
        await client.aclose()


