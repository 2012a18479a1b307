"""Hostile event text (terminal escapes, bidi overrides, forged rows, Slack markup) posted to the real daemon
stays inert in every CLI command's output, in alerts.jsonl and in the rendered Slack message and email."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from apprise.plugins.slack import NotifySlack
from click.testing import CliRunner
from conftest import alert_rules, envelope, make_event, wait_for
from daemon import Daemon

from sentinel.cli import main
from sentinel.render import message as render
from sentinel.render.safe_text import has_unsafe
from sentinel.store import open_for_cli
from sentinel.store.deliveries import alert_from_row

OSC_TITLE, CLEAR, RLO = "\x1b]0;pwned\x07", "\x1b[2J", "\u202e"
FORGED_ROW = "\n#99    slack        sent    attempts=1  sent 2026-01-01 00:00:00  alert 1: all clear"
MARKUP = "*bold* <!channel> <https://evil.example|click> _it_ ~x~ `code`"
NAME = f"Mallory{OSC_TITLE} {MARKUP} {RLO}exe.txt"
LOGIN = f"mallory@example.com{CLEAR}{FORGED_ROW}\u2028\u2066\u200b\ufeff\x9b"
AGENT = f"curl/8{CLEAR}{OSC_TITLE}{RLO}"
HOSTILE = make_event(
    f"evil-{RLO}-uuid", "user.account.lock",
    actor={"id": "00u1", "type": "User", "alternateId": LOGIN, "displayName": NAME},
    client={"ipAddress": "203.0.113.66", "userAgent": {"rawUserAgent": AGENT}},
    outcome={"result": f"FAILURE{CLEAR}", "reason": f"LOCKED_OUT{FORGED_ROW}"},
    displayMessage=f"Max sign in attempts exceeded{OSC_TITLE}",
)
MALFORMED = {"eventType": "user.account.lock", "displayMessage": f"no uuid{OSC_TITLE}{RLO}{FORGED_ROW}"}

COMMANDS = [["events"], ["events", "--json"], ["alerts"], ["alerts", "--json"], ["alerts", "show", "1"],
            ["alerts", "show", "1", "--json"], ["deliveries"], ["deliveries", "--json"], ["quarantine"],
            ["quarantine", "--json"]]


@pytest.fixture(scope="module")
def hostile_daemon(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A real daemon (one lock-out rule, log channel) that stored and alerted on the hostile event."""
    from conftest import LOCK_RULE
    from daemon import write_config

    folder = tmp_path_factory.mktemp("hostile")
    config = write_config(folder)
    (folder / "rules" / "lock.toml").write_text(LOCK_RULE)
    daemon = Daemon(config).start()
    try:
        assert daemon.post(envelope(HOSTILE, MALFORMED)).status_code == 204
        wait_for(lambda: alert_rules(folder) == ["test-lock"], detail=daemon.log)
    finally:
        daemon.stop()
    return daemon


def strings(value: Any) -> Any:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def lines(output: str) -> list[str]:
    return [line for line in output.split("\n") if line]  # only "\n": other breaks must not be there at all


def unsafe(text: str) -> list[str]:
    """Lines of ``text`` holding a control, bidi or invisible character (our own line breaks aside)."""
    return [line for line in lines(text) if has_unsafe(line)]


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_cli_output_carries_no_raw_control_or_bidi_character(hostile_daemon: Daemon, args: list[str]) -> None:
    # color=True: click strips some ANSI codes when not writing to a terminal; an operator has a terminal.
    result = CliRunner().invoke(main, [*args, "--config", str(hostile_daemon.config)], color=True)
    assert result.exit_code == 0, result.output
    out = lines(result.output)
    assert out, args
    for line in out:
        assert not unsafe(line), f"{args}: {line!r}"
        assert "\x1b" not in line and RLO not in line
    if "--json" in args:
        # Still JSON, and the values are the stored ones: the escapes are JSON's, undone by any reader.
        rows = [json.loads(line) for line in out]
        values = list(strings(rows))
        if args[0] == "quarantine":  # the body is the element's JSON text as delivered: look inside it too
            values += list(strings([json.loads(row["body"]) for row in rows]))
        assert any(OSC_TITLE in v or CLEAR in v or RLO in v for v in values), args
    elif args[0] in ("events", "alerts", "deliveries", "quarantine") and args[-1] != "1":
        assert len(out) == 1, f"{args}: a forged row: {out}"  # one stored item, one line
    else:  # alerts show: the forged row is inside the escaped value, not a line of its own
        assert not any(line.startswith("#99") for line in out), out


def test_alerts_jsonl_written_by_the_log_channel_is_inert(hostile_daemon: Daemon) -> None:
    text = (hostile_daemon.config.parent / "state" / "alerts.jsonl").read_text(encoding="utf-8")
    assert len(lines(text)) == 1 and not unsafe(text)
    record = json.loads(text)
    assert "\\x1b]0;pwned\\x07" in record["sentence"] and "\\u202e" in record["uuid"]


def stored_alert(daemon: Daemon) -> Any:
    store = open_for_cli(daemon.config.parent / "state" / "sentinel.db")
    try:
        row = store.get_alert(1)
    finally:
        store.close()
    assert row is not None
    return alert_from_row(row)


def test_slack_message_shows_event_markup_as_text(hostile_daemon: Daemon) -> None:
    slack = render.slack_message(stored_alert(hostile_daemon))
    sent = NotifySlack._commonmark_to_slack(slack.text)  # the mrkdwn Apprise posts to Slack
    assert not unsafe(sent) and not unsafe(slack.header)
    assert "<!channel>" not in sent and "<https://evil.example" not in sent
    assert "&lt;!channel&gt;" in sent and "&lt;https://evil.example|click&gt;" in sent
    for styled in ("*bold*", "_it_", "~x~", "`code`"):
        assert styled not in sent, styled
    assert "\u2217bold\u2217" in sent and "\u02cdit\u02cd" in sent
    # Our own markup still works: bold labels and the link to the event.
    assert "*Actor:*" in sent


def test_email_subject_is_one_line_without_controls(hostile_daemon: Daemon) -> None:
    mail = render.email_message(stored_alert(hostile_daemon))
    assert "\r" not in mail.subject and "\n" not in mail.subject and not has_unsafe(mail.subject)
    assert not unsafe(mail.html) and not unsafe(mail.text)


def test_the_hostile_input_was_stored_raw(hostile_daemon: Daemon) -> None:
    """The neutralising happens on output: the store keeps the event exactly as Okta sent it."""
    conn = sqlite3.connect(hostile_daemon.config.parent / "state" / "sentinel.db")
    try:
        body = json.loads(conn.execute("SELECT body FROM events").fetchone()[0])
    finally:
        conn.close()
    assert body["actor"]["displayName"] == NAME and body["actor"]["alternateId"] == LOGIN
    assert Path(hostile_daemon.config).exists()
