"""Alerts reach a person: each shipped config delivers, `sentinel check` names severities that reach no
channel, and `sentinel serve` says so loudly. Real daemons, real configs, real sample deliveries."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import pytest
from conftest import LOCK_RULE, alert_rules, envelope, wait_for
from daemon import Daemon, free_port, write_config
from test_config import run_cli

REPO = Path(__file__).resolve().parent.parent
SHIPPED = ["sentinel.toml", "systemd/sentinel.toml"]
GRANT = json.loads((REPO / "rules" / "data" / "privilege-grant-superadmin.json").read_text(encoding="utf-8"))
GRANT_RULE = "okta-admin-privilege-granted-user"
SECRET_ENV = {"SENTINEL_OKTA_SECRET": "x" * 32}


def shipped_copy(name: str, folder: Path) -> Path:
    """The shipped config as is, but for a free port, its state folder under ``folder/state`` and the
    repo's rules (``/var/lib/sentinel`` and ``/etc/sentinel/rules`` do not exist here)."""
    text = (REPO / name).read_text(encoding="utf-8")
    text, ports = re.subn(r"(?m)^port = \d+", f"port = {free_port()}", text)
    text, rules = re.subn(r'(?m)^paths = \["rules"\]', f'paths = ["{REPO / "rules"}"]', text)
    assert ports == 1 and rules == 1, "the shipped config changed shape: update this rewrite"
    text = text.replace("/var/lib/sentinel", str(folder / "state"))
    (folder / "state").mkdir(exist_ok=True)
    config = folder / "sentinel.toml"
    config.write_text(text, encoding="utf-8")
    return config


@pytest.mark.parametrize("name", SHIPPED)
def test_each_shipped_config_delivers_an_alert_to_its_log_channel(name: str, tmp_path: Path) -> None:
    daemon = Daemon(shipped_copy(name, tmp_path)).start()
    try:
        assert daemon.post(envelope(GRANT)).status_code == 204
        wait_for(lambda: GRANT_RULE in alert_rules(tmp_path), detail=daemon.log)
    finally:
        daemon.stop()
    (line,) = (tmp_path / "state" / "alerts.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(line)["uuid"] == GRANT["uuid"]
    assert "reach no channel" not in daemon.log()


@pytest.mark.parametrize("name", SHIPPED)
def test_sentinel_check_passes_on_each_shipped_config(name: str) -> None:
    r = run_cli("check", "--config", name, env=SECRET_ENV)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"ok: {name}:")
    assert "channel" not in r.stderr  # no routing warning either


def test_check_fails_naming_the_severities_no_channel_receives(tmp_path: Path) -> None:
    config = write_config(tmp_path, extra='min_severity = "high"\n')
    r = run_cli("check", "--config", str(config), env=SECRET_ENV)
    assert r.returncode == 1, r.stdout + r.stderr
    (line,) = [x for x in r.stderr.splitlines() if "reach no channel" in x]
    assert line.startswith(f"{config}: channels: alerts of severity info, low, medium reach no channel")
    assert "high" not in line.split("reach no channel")[0]


def test_check_fails_when_a_rule_names_only_channels_that_do_not_exist(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    (tmp_path / "rules" / "routed.toml").write_text(
        (REPO / "rules" / "okta-admin-privilege-granted.toml").read_text(encoding="utf-8")
        .replace('severity = "high"\ntags', 'severity = "high"\nchannels = ["pager"]\ntags', 1)
        .replace("data/", f"{REPO / 'rules' / 'data'}/"), encoding="utf-8")
    r = run_cli("check", "--config", str(config), env=SECRET_ENV)
    assert r.returncode == 1, r.stdout + r.stderr
    (line,) = [x for x in r.stderr.splitlines() if "reach no channel" in x]
    assert f"{GRANT_RULE}: channels:" in line and "'pager'" in line
    assert "alerts of severity high, critical reach no channel" in line
    assert "okta-admin-privilege-granted-group" not in r.stderr  # routed by severity: reaches the log channel


def test_check_warns_about_a_rule_channel_name_that_is_not_configured(tmp_path: Path) -> None:
    config = write_config(tmp_path, extra='\n[delivery]\nfallback_channel = "log"\n')
    (tmp_path / "rules" / "routed.toml").write_text(
        (REPO / "rules" / "okta-admin-privilege-granted.toml").read_text(encoding="utf-8")
        .replace('severity = "high"\ntags', 'severity = "high"\nchannels = ["log", "pagr"]\ntags', 1)
        .replace("data/", f"{REPO / 'rules' / 'data'}/"), encoding="utf-8")
    r = run_cli("check", "--config", str(config), env=SECRET_ENV)
    assert r.returncode == 0, r.stderr
    assert f"warning: {tmp_path / 'rules' / 'routed.toml'}: {GRANT_RULE}: channels: 'pagr' is not a configured " \
           "channel" in r.stderr


def test_check_warns_when_the_fallback_channel_does_not_exist(tmp_path: Path) -> None:
    config = write_config(tmp_path)  # no [delivery]: fallback_channel is "fallback", and there is none
    r = run_cli("check", "--config", str(config), env=SECRET_ENV)
    assert r.returncode == 0, r.stderr
    assert "warning: " in r.stderr and "delivery.fallback_channel: 'fallback' is not a configured channel" in r.stderr


@pytest.mark.proof
def test_serve_starts_but_logs_an_error_naming_unrouted_severities(tmp_path: Path) -> None:
    daemon = Daemon(write_config(tmp_path, extra='min_severity = "critical"\n')).start()
    try:
        lines = [x for x in daemon.log().splitlines() if "reach no channel" in x]
        assert len(lines) == 1, daemon.log()
        assert "ERROR" in lines[0] and "alerts of severity info, low, medium, high reach no channel" in lines[0]
        # A reload says it again, and names a rule whose own channels are all missing.
        (tmp_path / "rules" / "lock.toml").write_text(LOCK_RULE.replace('severity = "high"\n',
                                                                        'severity = "high"\nchannels = ["pgr"]\n'))
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reloaded: 1 rules" in daemon.log(), detail=daemon.log)
    finally:
        daemon.stop()
    lines = [x for x in daemon.log().splitlines() if "reach no channel" in x]
    assert len(lines) == 3 and all("ERROR" in x for x in lines), daemon.log()
    assert "test-lock: channels: 'pgr' is not a configured channel" in lines[2]
