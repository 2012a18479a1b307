"""Delivery commands: test a channel, inspect alerts and deliveries, re-queue, and a demo feed."""

from __future__ import annotations

import asyncio
import json
import os
import urllib.error
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click

from sentinel.cli.common import (
    address_file,
    config_option,
    echo,
    echo_json,
    echo_text,
    error_lines,
    fail,
    hook_url,
    load_settings,
    read_address,
    with_db,
)
from sentinel.clock import SystemClock
from sentinel.config import SECRET_ENV
from sentinel.errors import ErrorGroup
from sentinel.model import parse_timestamp
from sentinel.rules.durations import duration_seconds


def parse_since(text: str, now: datetime) -> datetime:
    """``30m``, ``2h``, ``7d``, ``1h30m`` (ago: the rules' duration syntax) or an ISO-8601 time."""
    try:
        return now - timedelta(seconds=duration_seconds(text.strip().lower()))
    except ValueError:
        pass
    try:
        return parse_timestamp(text)
    except ValueError:
        raise click.BadParameter("use e.g. 30m, 2h, 7d or an ISO-8601 time") from None


@click.group()
def notify() -> None:
    """Channel tools."""


@notify.command("test")
@config_option
@click.argument("channel")
def notify_test(config_path: Path, channel: str) -> None:
    """Send a sample alert to CHANNEL; print each destination's result (URLs masked)."""
    from sentinel.delivery.apprise_channel import build_channels

    settings = load_settings(config_path)
    if channel not in settings.channels:
        fail(f"{config_path}: channels: no channel named {channel!r} "
             f"(configured: {', '.join(settings.channels) or 'none'})")
    try:
        channels = build_channels(settings)
    except ErrorGroup as e:
        fail(error_lines(e))
    results = asyncio.run(channels[channel].send_each(sample_alert(SystemClock().now())))
    for url, outcome in results:
        echo(f"{'ok  ' if outcome.ok else 'FAIL'} {url}" + ("" if outcome.ok else f"  {outcome.detail}"))
    if not all(outcome.ok for _, outcome in results):
        raise SystemExit(1)


@click.group(invoke_without_command=True)
@config_option
@click.option("--since", help="Only alerts created since then: 30m, 2h, 7d or an ISO-8601 time.")
@click.option("--rule", "rule_id", help="Only alerts of this rule id.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def alerts(ctx: click.Context, config_path: Path, since: str | None, rule_id: str | None, limit: int,
           as_json: bool) -> None:
    """List alerts, newest first (``alerts show ID`` for one alert and its deliveries)."""
    if ctx.invoked_subcommand is not None:
        return
    settings = load_settings(config_path, secrets=False)
    after = parse_since(since, SystemClock().now()) if since else None
    rows = with_db(settings, lambda store: store.list_alerts(after, rule_id, limit))
    for row in rows:
        if as_json:
            echo_json(row)
        else:
            echo(f"{row['id']:>6}  {row['created_at'][:19]}  {row['severity']:<8}  {row['rule_id']}  "
                 f"{row['title']}" + (f"  (x{row['count']})" if row["count"] > 1 else "")
                 + (f"  [silenced: {row['silenced_by']}]" if row["status"] == "silenced" else "")
                 + ("  [resolved]" if row["status"] == "resolved" else ""))
    if not rows and not as_json:
        click.echo("no alerts", err=True)


@alerts.command("show")
@config_option
@click.argument("alert_id", type=int)
@click.option("--json", "as_json", is_flag=True)
def alerts_show(config_path: Path, alert_id: int, as_json: bool) -> None:
    """One alert: the message as sent, its context, and its deliveries."""
    from sentinel.delivery.apprise_channel import render_options
    from sentinel.render.message import facts as render_facts
    from sentinel.render.message import plain_text
    from sentinel.store.deliveries import alert_from_row

    settings = load_settings(config_path, secrets=False)
    row, deliveries = with_db(settings, lambda store: (store.get_alert(alert_id),
                                                        store.deliveries_for_alert(alert_id)))
    if row is None:
        fail(f"no alert with id {alert_id}")
    if as_json:
        echo_json({**row, "deliveries": deliveries})
        return
    options = render_options(settings.delivery.timezone, settings.okta.org_url)
    echo_text(plain_text(render_facts(alert_from_row(row), options)))
    echo("")
    echo(f"Alert key: {row['key']}")
    echo(f"Status: {row['status']}" + (f" ({row['silenced_by']}: never sent)" if row["silenced_by"] else ""))
    echo(f"Events: {', '.join(map(str, row['event_uuids']))}")
    echo("")
    echo("Deliveries:")
    for d in deliveries:
        echo("  " + _delivery_line(d))


@click.command()
@config_option
@click.option("--status", type=click.Choice(["pending", "sent", "dead", "digested"]), help="Only this status.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--json", "as_json", is_flag=True)
def deliveries(config_path: Path, status: str | None, limit: int, as_json: bool) -> None:
    """List deliveries (alert × channel), newest first."""
    settings = load_settings(config_path, secrets=False)
    for row in with_db(settings, lambda store: store.list_deliveries(status, limit)):
        if as_json:
            echo_json(row)
        else:
            echo(f"{_delivery_line(row)}  alert {row['alert_id']}: {row['title']}")


@click.command()
@config_option
@click.argument("delivery_id", type=int, required=False)
@click.option("--dead", "all_dead", is_flag=True, help="Re-queue every dead delivery.")
def redeliver(config_path: Path, delivery_id: int | None, all_dead: bool) -> None:
    """Queue a delivery (or every dead one with --dead) again; the running daemon sends it."""
    if (delivery_id is None) == (not all_dead):
        fail("give a delivery ID or --dead (not both)")
    settings = load_settings(config_path, secrets=False)
    now = SystemClock().now()
    count = with_db(settings, lambda store: store.redeliver(now, delivery_id, all_dead))
    if delivery_id is not None and count == 0:
        fail(f"no delivery with id {delivery_id}")
    click.echo(f"{count} deliver{'y' if count == 1 else 'ies'} queued")


@click.command()
@config_option
@click.option("--url", help="The daemon's hook URL (default: the one the running daemon wrote beside its "
                            "store, else [server] in the config).")


@click.option("--secret-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help=f"Read the auth header value from this file (default: ${SECRET_ENV}).")
def demo(config_path: Path, url: str | None, secret_file: Path | None) -> None:
    """Post sample Okta deliveries (suspicious activity, rate limit, Super admin grant, password spray)."""
    from sentinel.cli.demo_events import demo_events, envelope

    settings = load_settings(config_path, secrets=False)
    target = url or read_address(settings) or hook_url(settings.server.host, settings.server.port)
    secret = (secret_file.read_text(encoding="utf-8").strip() if secret_file
              else os.environ.get(SECRET_ENV, ""))
    if not secret and not settings.okta.allow_unauthenticated:
        fail(f"no secret: set {SECRET_ENV} or pass --secret-file (the file `make run` printed)")
    now = SystemClock().now()
    failures = 0
    for label, events in demo_events(now):
        status = _post(target, settings.okta.auth_header, secret, envelope(events, now))
        failures += status != 204
        click.echo(f"{'sent' if status == 204 else 'FAILED'} {label}: {len(events)} event(s) -> {status}")
    if failures:
        if not url:
            click.echo(f"(sent to {target}: the address a running daemon writes to {address_file(settings)}, "
                       "else [server] in the config; --url overrides)", err=True)
        raise SystemExit(1)
    click.echo("watch the log channel (e.g. state/alerts.jsonl) or run: sentinel alerts")


def register(main: click.Group) -> None:
    main.add_command(notify)
    main.add_command(alerts)
    main.add_command(deliveries)
    main.add_command(redeliver)
    main.add_command(demo)


def _post(url: str, header: str, secret: str, body: dict[str, Any]) -> int | str:
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST",  # noqa: S310 - URL given by the operator
                                     headers={"Content-Type": "application/json", **({header: secret} if secret
                                                                                       else {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, OSError) as e:
        return f"unreachable ({getattr(e, 'reason', e)})"


def _delivery_line(d: dict[str, Any]) -> str:
    when = d.get("sent_at") or d.get("next_attempt_at") or ""
    if d["status"] == "digested":  # storm control held it back: the digest alert carries it
        return f"#{d['id']:<5} {d['channel']:<12} digested  held back in the storm digest (alert {d.get('digest_id')})"
    label = "sent" if d["status"] == "sent" else "next" if d["status"] == "pending" else "gave up"
    error = f"  last error: {d['last_error']}" if d.get("last_error") else ""
    kind = "  (resolve)" if d.get("kind") == "resolve" else ""
    return (f"#{d['id']:<5} {d['channel']:<12} {d['status']:<7} attempts={d['attempts']}  "
            f"{label} {str(when)[:19]}{error}{kind}")


def sample_alert(now: datetime) -> Any:
    from sentinel.alert_context import AlertContext, Party
    from sentinel.model import Alert, Severity, format_timestamp

    return Alert(
        key=f"sentinel-test:{now.timestamp()}", rule_id="sentinel-notify-test", severity=Severity.INFO,
        title="Sentinel test alert", summary="This is a test of the channel, sent by `sentinel notify test`.",
        group_key="test", first_seen=now, last_seen=now, count=1, event_uuids=("00000000-test",),
        context=AlertContext(
            event_type="sentinel.notify.test", event_uuid="00000000-test", published=format_timestamp(now),
            actor=Party(alternate_id="sentinel@localhost", display_name="Sentinel"),
            targets=(Party(alternate_id="test", display_name="this channel", type="Channel"),),
            outcome_result="SUCCESS", rule_id="sentinel-notify-test",
            runbook="Nothing to do: if you can read this, the channel works."),
    )
