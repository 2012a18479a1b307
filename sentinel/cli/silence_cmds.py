"""``sentinel silence add | list | expire``: mute alerts known to be noise without editing rules.

Written through the one-shot store (``with_db``) beside a running daemon; its detector reads the active
silences again every few seconds (sentinel/service/detector.py), so a new one takes effect within 5 s."""

from __future__ import annotations

import getpass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click

from sentinel.cli.common import config_option, echo, echo_json, fail, load_settings, with_db
from sentinel.clock import SystemClock
from sentinel.config import Settings
from sentinel.model import format_timestamp, parse_timestamp
from sentinel.rules.durations import duration_seconds
from sentinel.silences import Silence, validate

if TYPE_CHECKING:
    from sentinel.store import CliStore

# A silence for longer than this is more likely a typo (``--for 30d`` meant 30m?) than a decision.
MAX_SILENCE = timedelta(days=366)
LISTED_AFTER_END = timedelta(days=7)


def os_user() -> str:
    """The author when --author is not given: the OS user name running the command."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no LOGNAME/USER and no passwd entry (a bare container)
        return "unknown"


def parse_match(text: str) -> tuple[str, str]:
    path, equals, value = text.partition("=")
    if not equals or not path.strip() or not value.strip():
        raise click.BadParameter(f"{text!r}: use FIELD=VALUE, e.g. actor.alternateId=jane@example.com")
    return path.strip(), value.strip()


def silence_record(silence: Silence, now: datetime) -> dict[str, object]:
    """A silence as `silence list --json` prints it (and the page shows it): times as the store's text."""
    ended = silence.ended_at()
    state = "active" if silence.active(now) else "pending" if now < silence.starts_at else "expired"
    return {
        "id": silence.id, "rule": silence.rule, "matchers": [{"field": p, "value": v} for p, v in silence.matchers],
        "starts_at": format_timestamp(silence.starts_at), "ends_at": format_timestamp(ended),
        "author": silence.author, "comment": silence.comment, "created_at": format_timestamp(silence.created_at),
        "expired_at": format_timestamp(silence.expired_at) if silence.expired_at else None, "state": state,
    }


@click.group()
def silence() -> None:
    """Silences: alerts they cover are stored (status "silenced") and never sent."""


@silence.command("add")
@config_option
@click.option("--rule", "rule", required=True, help="A rule id, or a glob such as 'okta-*'.")
@click.option("--match", "matches", multiple=True, metavar="FIELD=VALUE",
              help="A field path as rules write it and its value (text compared ignoring case); repeatable: "
                   "all must hold on one of the alert's events.")
@click.option("--for", "duration", metavar="DURATION", help="How long from now: 30m, 2h, 1d, 1h30m.")
@click.option("--until", "until", metavar="TIME", help="Until then: an RFC 3339 time, e.g. 2026-03-01T08:00:00Z.")
@click.option("--comment", required=True, help="Why (shown with the silence, for the team).")
@click.option("--author", default=None, help="Who (default: the OS user name running the command).")
def silence_add(config_path: Path, rule: str, matches: tuple[str, ...], duration: str | None, until: str | None,
                comment: str, author: str | None) -> None:
    """Add a silence; prints its id."""
    settings = load_settings(config_path, secrets=False)
    if (duration is None) == (until is None):
        fail("give --for DURATION or --until TIME (one of them)")
    now = SystemClock().now()
    if duration is not None:
        try:
            seconds = duration_seconds(duration.strip().lower())
        except ValueError as e:
            fail(f"--for: {e}")
        ends = now + timedelta(seconds=seconds)
    else:
        try:
            ends = parse_timestamp(until or "")
        except ValueError as e:
            fail(f"--until: {until!r}: {e} (use an RFC 3339 time such as 2026-03-01T08:00:00Z)")
    if ends - now > MAX_SILENCE:
        fail(f"a silence may last at most {MAX_SILENCE.days} days")
    matchers = tuple(parse_match(m) for m in matches)
    who = author if author is not None else os_user()
    problems = validate(rule, matchers, now, ends, who, comment)
    if problems:
        fail(problems)
    new = Silence(None, rule.strip(), matchers, now, ends, who.strip(), comment.strip(), now)
    click.echo(with_db(settings, lambda store: store.add_silence(new)))
    if not _matches_a_rule(settings, new.rule):
        click.echo(f"warning: --rule {new.rule!r} matches no rule loaded from the config's [rules] paths: "
                   "it silences nothing until such a rule exists", err=True)


def _matches_a_rule(settings: Settings, pattern: str) -> bool:
    """Whether the pattern names a loaded rule (True when the rules cannot be read: no false alarm)."""
    from fnmatch import fnmatchcase

    from sentinel.errors import SentinelError
    from sentinel.rules import load_rules

    try:
        ruleset = load_rules(settings.rules.paths)
    except (SentinelError, OSError):
        return True
    return any(fnmatchcase(r.id, pattern) for r in ruleset.rules)


@silence.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def silence_list(config_path: Path, as_json: bool) -> None:
    """Silences in force or to come, and those that ended in the last 7 days (marked), newest first."""
    settings = load_settings(config_path, secrets=False)
    now = SystemClock().now()
    silences = with_db(settings, lambda store: store.list_silences(now, LISTED_AFTER_END))
    for item in silences:
        record = silence_record(item, now)
        if as_json:
            echo_json(record)
            continue
        matchers = " ".join(f"{p}={v}" for p, v in item.matchers)
        span = f"{format_timestamp(item.starts_at)[:19]} → {format_timestamp(item.ended_at())[:19]}"
        echo(f"{item.id:>5}  {str(record['state']).upper():<8} {span}  {item.rule}"
             f"{'  ' + matchers if matchers else ''}  by {item.author}: {item.comment}")
    if not silences and not as_json:
        click.echo("no silences", err=True)


@silence.command("expire")
@config_option
@click.argument("silence_id", type=int)
def silence_expire(config_path: Path, silence_id: int) -> None:
    """End silence ID now (it stays listed, marked expired, for 7 days)."""
    settings = load_settings(config_path, secrets=False)
    now = SystemClock().now()

    def expire(store: CliStore) -> tuple[bool, Silence | None]:
        return store.expire_silence(silence_id, now), store.get_silence(silence_id)

    done, found = with_db(settings, expire)
    if found is None:
        fail(f"no silence with id {silence_id}")
    if not done:
        fail(f"silence {silence_id} had already ended ({format_timestamp(found.ended_at())})")
    click.echo(f"silence {silence_id} expired")


def register(main: click.Group) -> None:
    main.add_command(silence)
