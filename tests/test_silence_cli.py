"""`sentinel silence add | list | expire` on a real store, and the detector honouring what they wrote: an
alert a silence covers is stored with status "silenced" (`sentinel alerts --json`) and gets no delivery, its
folded repeats too, and nothing is sent for it after the silence ends."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import make_event
from prometheus_client import generate_latest

from sentinel.cli import main
from sentinel.clock import FixedClock
from sentinel.config import load_config
from sentinel.okta import parse_event
from sentinel.rules.evaluator import RuleEvaluator
from sentinel.service.detector import Detector, apply_report
from sentinel.service.metrics import Metrics
from sentinel.service.silencing import SILENCE_REFRESH_SECONDS
from sentinel.store import Store

ROOT = Path(__file__).resolve().parent.parent


def write_config(folder: Path) -> Path:
    config = folder / "sentinel.toml"
    config.write_text(f"""
[storage]
path = "state/sentinel.db"
[rules]
paths = ["{ROOT / 'rules'}"]
[channels.log]
kind = "log"
path = "state/alerts.jsonl"
""", encoding="utf-8")
    return config


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = write_config(tmp_path)
    store = Store(tmp_path / "state" / "sentinel.db")  # the daemon made the tables
    store.start(datetime.now(UTC))
    store.close()
    return path


def cli(*args: str, ok: bool = True) -> str:
    result = CliRunner().invoke(main, list(args))
    assert (result.exit_code == 0) is ok, result.output
    return result.output


def test_add_prints_the_id_list_shows_it_expire_marks_it(config: Path) -> None:
    first = cli("silence", "add", "--config", str(config), "--rule", "okta-*", "--match",
                "actor.alternateId=jane@example.com", "--match", "client.ipAddress = 203.0.113.7", "--for", "2h",
                "--comment", "pen test tonight", "--author", "alice")
    assert first == "1\n"
    until = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    second = cli("silence", "add", "--config", str(config), "--rule", "okta-user-account-locked",
                 "--until", until.isoformat().replace("+00:00", "Z"), "--comment", "known noise")
    assert second == "2\n"
    listed = [json.loads(line) for line in cli("silence", "list", "--json", "--config", str(config)).splitlines()]
    assert [(s["id"], s["state"], s["rule"]) for s in listed] == [(2, "active", "okta-user-account-locked"),
                                                                  (1, "active", "okta-*")]
    assert listed[1]["matchers"] == [{"field": "actor.alternateId", "value": "jane@example.com"},
                                     {"field": "client.ipAddress", "value": "203.0.113.7"}]
    assert listed[1]["author"] == "alice" and listed[1]["comment"] == "pen test tonight"
    assert listed[0]["author"]  # the OS user name by default
    assert listed[0]["ends_at"] == until.strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    ends = datetime.fromisoformat(listed[1]["ends_at"].replace("Z", "+00:00"))
    starts = datetime.fromisoformat(listed[1]["starts_at"].replace("Z", "+00:00"))
    assert ends - starts == timedelta(hours=2)

    assert cli("silence", "expire", "1", "--config", str(config)) == "silence 1 expired\n"
    assert "already ended" in cli("silence", "expire", "1", "--config", str(config), ok=False)
    assert "no silence with id 7" in cli("silence", "expire", "7", "--config", str(config), ok=False)
    text = cli("silence", "list", "--config", str(config))
    lines = text.splitlines()
    assert len(lines) == 2 and "ACTIVE" in lines[0] and "EXPIRED" in lines[1]
    assert "okta-* actor.alternateId=jane@example.com client.ipAddress=203.0.113.7" in lines[1].replace("  ", " ")
    assert "by alice: pen test tonight" in lines[1]


@pytest.mark.parametrize(("args", "message"), [
    (["--rule", "r", "--comment", "c"], "give --for DURATION or --until TIME"),
    (["--rule", "r", "--comment", "c", "--for", "1h", "--until", "2099-01-01T00:00:00Z"], "one of them"),
    (["--rule", "r", "--comment", "c", "--for", "soon"], "--for: not a duration"),
    (["--rule", "r", "--comment", "c", "--until", "tomorrow"], "--until: 'tomorrow'"),
    (["--rule", "r", "--comment", "c", "--until", "2001-01-01T00:00:00Z"], "ends before it starts"),
    (["--rule", "r", "--comment", "c", "--for", "400d"], "at most 366 days"),
    (["--rule", "r", "--comment", " ", "--for", "1h"], "needs a comment"),
    (["--rule", "r", "--comment", "c", "--for", "1h", "--match", "actor.alternateId"], "use FIELD=VALUE"),
    (["--rule", "r", "--comment", "c", "--for", "1h", "--match", "actor..id=x"], "bad field path"),
])
def test_add_refuses_what_it_cannot_honour(config: Path, args: list[str], message: str) -> None:
    assert message in cli("silence", "add", "--config", str(config), *args, ok=False)
    assert cli("silence", "list", "--json", "--config", str(config)) == ""


def lock(uuid: str, who: str, at: datetime) -> dict[str, Any]:
    published = at.isoformat().replace("+00:00", "Z")
    return make_event(uuid, "user.account.lock", published,
                      actor={"id": "00u9", "type": "User", "alternateId": who, "displayName": who})


def test_the_detector_stores_covered_alerts_silenced_and_sends_nothing_for_them(config: Path) -> None:
    settings = load_config(config, resolve_secrets=False)
    cli("silence", "add", "--config", str(config), "--rule", "okta-user-*", "--match",
        "actor.alternateId=JANE@example.com", "--for", "1h", "--comment", "jane's phone, ticket 42")
    now = datetime.now(UTC)  # wall-clock time decides, not the events' (in one throttle hour)
    clock = FixedClock(now)
    hour = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

    async def scenario() -> None:
        store = Store(settings.storage.path)
        store.start(now)
        detector = Detector(store, RuleEvaluator.from_settings(settings.rules), lambda a: ["log"], clock,
                            on_report=lambda r: apply_report(metrics, r))
        try:
            async def evaluate(*events: dict[str, Any]) -> None:
                await store.ingest([parse_event(e) for e in events], [], clock.now())
                await detector.run_once()

            await evaluate(lock("e1", "jane@example.com", hour), lock("e2", "john@example.com", hour))
            await evaluate(lock("e3", "jane@example.com", hour + timedelta(minutes=5)))  # folds (throttle 1h)
            cli("silence", "expire", "1", "--config", str(config))
            clock.advance(timedelta(seconds=SILENCE_REFRESH_SECONDS))
            await evaluate(lock("e4", "jane@example.com", hour + timedelta(minutes=10)))  # still the same alert
            assert await store.due_deliveries("log", clock.now() + timedelta(days=1)) != []
        finally:
            store.close()

    metrics = Metrics()
    asyncio.run(scenario())
    exported = generate_latest(metrics.registry).decode()
    assert 'sentinel_alerts_silenced_total{rule="okta-user-account-locked",severity="medium"} 1.0' in exported
    assert 'sentinel_alerts_total{rule="okta-user-account-locked",severity="medium"} 2.0' in exported
    rows = {row["title"]: row for row in map(json.loads, cli("alerts", "--json", "--config", str(config)).splitlines())}
    jane, john = rows["Okta account jane@example.com locked out"], rows["Okta account john@example.com locked out"]
    assert (jane["status"], jane["silenced_by"], jane["count"]) == ("silenced", "silence 1", 3)
    assert (john["status"], john["silenced_by"]) == ("open", None)
    shown = json.loads(cli("alerts", "show", str(jane["id"]), "--json", "--config", str(config)))
    assert shown["deliveries"] == [] and shown["status"] == "silenced"
    assert [d["channel"] for d in json.loads(cli("alerts", "show", str(john["id"]), "--json", "--config",
                                                 str(config)))["deliveries"]] == ["log"]
    assert "[silenced: silence 1]" in cli("alerts", "--config", str(config))


def test_alerts_in_a_maintenance_window_are_stored_silenced_naming_it(tmp_path: Path) -> None:
    from sentinel.service.detector_runner import InProcessDetector

    config = write_config(tmp_path)
    config.write_text(config.read_text(encoding="utf-8") + """
[[maintenance]]
name = "helpdesk hours"
rules = ["okta-user-account-*"]
times = "00:00-24:00"
timezone = "Pacific/Auckland"
""", encoding="utf-8")
    assert "ok:" in cli("check", "--config", str(config))
    settings = load_config(config, resolve_secrets=False)
    now = datetime.now(UTC)

    async def scenario() -> None:
        store = Store(settings.storage.path)
        store.start(now)
        runner = InProcessDetector(settings, RuleEvaluator.from_settings(settings.rules), store, FixedClock(now),
                                   lambda r: None)
        try:
            await store.ingest([parse_event(lock("e1", "jane@example.com", datetime(2026, 3, 1, tzinfo=UTC)))],
                               [], now)
            await runner.detector.run_once()
        finally:
            store.close()

    asyncio.run(scenario())
    (row,) = map(json.loads, cli("alerts", "--json", "--config", str(config)).splitlines())
    assert (row["status"], row["silenced_by"]) == ("silenced", "maintenance helpdesk hours")


def test_check_reports_a_bad_field_path_in_a_maintenance_match(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    config.write_text(config.read_text(encoding="utf-8") + """
[[maintenance]]
name = "n"
rules = ["*"]
times = "01:00-02:00"
match = { "actor..alternateId" = "x" }
""", encoding="utf-8")
    out = cli("check", "--config", str(config), ok=False)
    assert "maintenance[0].match.actor..alternateId: bad field path" in out


def test_check_warns_about_a_maintenance_rule_pattern_that_matches_no_rule(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    config.write_text(config.read_text(encoding="utf-8") + """
[[maintenance]]
name = "n"
rules = ["okta-user-*", "okta-polcy-*"]
times = "01:00-02:00"
""", encoding="utf-8")
    result = CliRunner().invoke(main, ["check", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "maintenance[0].rules: 'okta-polcy-*' matches no loaded rule" in result.output
    assert "'okta-user-*'" not in result.output


def test_add_warns_when_the_rule_matches_no_loaded_rule_but_adds_it(config: Path) -> None:
    result = CliRunner().invoke(main, ["silence", "add", "--config", str(config), "--rule", "okta-user-acount-*",
                                       "--for", "1h", "--comment", "typo"])
    assert result.exit_code == 0
    assert result.stdout == "1\n"
    assert "--rule 'okta-user-acount-*' matches no rule loaded" in result.stderr
    ok = CliRunner().invoke(main, ["silence", "add", "--config", str(config), "--rule", "okta-user-account-*",
                                   "--for", "1h", "--comment", "fine"])
    assert ok.stdout == "2\n" and ok.stderr == ""
