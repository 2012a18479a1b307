"""Which config a command reads, and which secrets it needs: the real CLI (click's runner on the real
``main``, and the real daemon in a subprocess) against real configs and a real store."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from conftest import LOCK_RULE, envelope, make_event, stored, wait_for
from daemon import Daemon, write_config
from test_readme import command_paths

from sentinel.cli import main

VAR = "SENTINEL_TEST_CHANNEL_TOKEN"
SIGMA_RULE = Path(__file__).parent / "data" / "sigma-okta" / "okta_api_token_created.yml"
# An Apprise channel whose URL holds a secret, as the README shows for Slack; port 9 (discard) on loopback.
CHANNEL = f'\n[channels.hook]\nurls = ["json://127.0.0.1:9/${{{VAR}}}"]\nmin_severity = "info"\n'
NEEDS_SECRETS = {"sentinel serve", "sentinel check", "sentinel notify test"}
# Everything else must work with the channel secret unset. The first of each pair reads only.
WITHOUT_SECRETS = {
    "sentinel events": ["events", "--json"],
    "sentinel quarantine": ["quarantine"],
    "sentinel alerts": ["alerts", "--json"],
    "sentinel alerts show": ["alerts", "show", "1"],
    "sentinel deliveries": ["deliveries"],
    "sentinel rules check": ["rules", "check"],
    "sentinel rules test": ["rules", "test"],
    "sentinel rules list": ["rules", "list"],
    "sentinel rules history": ["rules", "history", "okta-admin-console-new-country"],
    "sentinel replay": ["replay", "EVENTS"],
    "sentinel redeliver": ["redeliver", "--dead"],
    "sentinel demo": ["demo", "--url", "URL"],
    "sentinel silence list": ["silence", "list", "--json"],
    "sentinel silence add": ["silence", "add", "--rule", "okta-*", "--for", "1h", "--comment", "test"],
    "sentinel silence expire": ["silence", "expire", "1"],
    "sentinel rules import-sigma": ["rules", "import-sigma", "SIGMA", "--out", "SIGMA_OUT"],
    "sentinel backfill": ["backfill", "--since", "1h"],
}
# Commands that exit non-zero here for a reason of their own (never a missing channel secret).
FAILS_HERE = {"sentinel demo": "posts with a wrong secret on purpose: 401",
              "sentinel backfill": "the test config has no [okta.api] table to back-fill from"}


@pytest.fixture
def keep_sighup() -> Iterator[None]:
    # `serve` ignores SIGHUP from its first line; in-process, give pytest its handler back.
    handler = signal.getsignal(signal.SIGHUP)
    yield
    signal.signal(signal.SIGHUP, handler)


def test_every_command_is_classified() -> None:
    assert set(command_paths(main)) == NEEDS_SECRETS | set(WITHOUT_SECRETS)


@pytest.fixture
def store_with_an_alert(tmp_path: Path) -> Iterator[Daemon]:
    """A real daemon (given the channel secret) that stored an event and raised an alert."""
    config = write_config(tmp_path, extra=CHANNEL)
    (tmp_path / "rules" / "lock.toml").write_text(LOCK_RULE)
    daemon = Daemon(config, env={VAR: "token-value"}).start()
    assert daemon.post(envelope(make_event("lock-1", "user.account.lock"))).status_code == 204
    assert stored(tmp_path / "state" / "sentinel.db") == ["lock-1"]
    assert wait_for(lambda: (tmp_path / "state" / "alerts.jsonl").exists())
    yield daemon
    daemon.stop()


@pytest.mark.proof
def test_commands_without_secrets_work_with_a_channel_secret_unset(store_with_an_alert: Daemon,
                                                                   tmp_path: Path) -> None:
    config = str(store_with_an_alert.config)
    runner = CliRunner()
    saved = runner.invoke(main, ["events", "--json", "--config", config], env={VAR: None})
    events = tmp_path / "events.jsonl"
    events.write_text(saved.output)
    for path, args in WITHOUT_SECRETS.items():
        args = [{"EVENTS": str(events), "URL": store_with_an_alert.url + "/hooks/okta", "SIGMA": str(SIGMA_RULE),
                 "SIGMA_OUT": str(tmp_path / "imported")}.get(a, a) for a in args]
        result = runner.invoke(main, [*args, "--config", config], env={VAR: None, "SENTINEL_OKTA_SECRET": "x"})
        assert "is not set" not in result.output, f"{path}: {result.output}"
        if path not in FAILS_HERE:
            assert result.exit_code == 0, f"{path}: {result.output}"
        elif path == "sentinel backfill":
            assert "no [okta.api] table" in result.output, result.output
    assert json.loads(saved.output.splitlines()[0])["uuid"] == "lock-1"
    assert "test-lock" in runner.invoke(main, ["alerts", "--config", config], env={VAR: None}).output


@pytest.mark.proof
def test_serve_and_check_still_fail_clearly_on_a_missing_channel_secret(tmp_path: Path) -> None:
    config = write_config(tmp_path, extra=CHANNEL)
    missing = f"{config}: channels.hook.urls[0]: ${{{VAR}}} is not set"
    check = CliRunner().invoke(main, ["check", "--config", str(config)],
                               env={VAR: None, "SENTINEL_OKTA_SECRET": "s" * 40})
    assert check.exit_code == 1 and missing in check.output
    env = {k: v for k, v in Daemon(config).env.items() if k != VAR}
    serve = subprocess.run([sys.executable, "-m", "sentinel", "serve", "--config", str(config)], env=env,
                           capture_output=True, text=True, timeout=60)
    assert serve.returncode == 1 and missing in serve.stderr, serve.stderr
    assert "Traceback" not in serve.stderr


def test_check_fails_when_the_triage_page_has_no_password(tmp_path: Path) -> None:
    config = write_config(tmp_path, extra='\n[ui]\nlisten = "127.0.0.1:8081"\n')
    env = {"SENTINEL_OKTA_SECRET": "s" * 40, "SENTINEL_UI_PASSWORD": None, "CREDENTIALS_DIRECTORY": None}
    check = CliRunner().invoke(main, ["check", "--config", str(config)], env=env)
    assert check.exit_code == 1 and "ui.listen: the triage page needs a password" in check.output
    ok = CliRunner().invoke(main, ["check", "--config", str(config)], env={**env, "SENTINEL_UI_PASSWORD": "pw" * 20})
    assert ok.exit_code == 0, ok.output


def _arguments(path: str) -> list[str]:
    """The words after ``sentinel``, plus a value for each argument the command cannot run without."""
    words = path.split()[1:]
    command: click.Command = main
    for word in words:
        assert isinstance(command, click.Group)
        command = command.commands[word]
    values = []
    for param in command.params:
        if isinstance(param, click.Argument) and (param.required or param.nargs == 1):
            values.append("-" if isinstance(param.type, click.Path) else "1")
        elif isinstance(param, click.Option) and param.required:  # e.g. silence add --rule, --comment
            values += [param.opts[0], "1"]
    return [*words, *values]


@pytest.mark.parametrize("path", command_paths(main))
def test_every_command_reads_sentinel_config(path: str, tmp_path: Path, keep_sighup: None) -> None:
    missing = tmp_path / "elsewhere" / "sentinel.toml"
    result = CliRunner().invoke(main, _arguments(path), input="", env={"SENTINEL_CONFIG": str(missing)})
    assert result.exit_code != 0
    assert f"{missing}: no such file" in result.output, result.output


def test_every_command_has_the_one_shared_config_option() -> None:
    # One --config (sentinel/cli/common.py): the same name, default, variable and help on every command.
    shapes = set()
    for path in command_paths(main):
        command: click.Command = main
        for word in path.split()[1:]:
            assert isinstance(command, click.Group)
            command = command.commands[word]
        (option,) = [p for p in command.params if p.name == "config_path"]
        assert isinstance(option, click.Option)
        shapes.add((tuple(option.opts), option.envvar, option.default, option.help, option.show_default))
    assert shapes == {(("--config",), "SENTINEL_CONFIG", "sentinel.toml", "Configuration file (or $SENTINEL_CONFIG).",
                       True)}
