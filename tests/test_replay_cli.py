"""``sentinel rules check|test|list`` and ``sentinel replay`` run as real subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACK = ROOT / "rules"
ENVELOPE = {
    "eventType": "com.okta.event_hook",
    "data": {"events": []},
}


def sentinel(*args: str, stdin: str | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sentinel", *args], input=stdin, capture_output=True, text=True, cwd=cwd, timeout=60
    )


def failure(uuid: str, user: str, minute: int, ip: str = "203.0.113.9") -> dict:
    return {
        "uuid": uuid,
        "eventType": "user.session.start",
        "published": f"2026-02-01T08:{minute:02d}:00.000Z",
        "actor": {"alternateId": user},
        "client": {"ipAddress": ip},
        "outcome": {"result": "FAILURE"},
    }


def test_check_accepts_the_pack():
    result = sentinel("rules", "check")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("rules OK")
    assert "Traceback" not in result.stderr


def test_check_prints_every_error_and_exits_1(tmp_path):
    (tmp_path / "a.toml").write_text('id = "a"\ntitle = "t"\nseverity = "loud"\nevent_types = ["x.y"]\nfoo = 1\n')
    (tmp_path / "b.toml").write_text("id = [\n")
    result = sentinel("rules", "check", str(tmp_path))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3
    assert any(line.startswith(f"{tmp_path / 'a.toml'}: severity: unknown severity 'loud'") for line in lines)
    assert any(line.startswith(f"{tmp_path / 'a.toml'}: foo: unknown field") for line in lines)
    assert any(line.startswith(f"{tmp_path / 'b.toml'}: invalid TOML") for line in lines)
    assert "Traceback" not in result.stderr


def test_check_warns_about_undeliverable_types(tmp_path):
    (tmp_path / "a.toml").write_text(
        'id = "a"\ntitle = "t"\nseverity = "low"\nevent_types = ["security.threat.detected"]\n'
    )
    result = sentinel("rules", "check", str(tmp_path))
    assert result.returncode == 0
    assert "'security.threat.detected' cannot be delivered by an Okta event hook" in result.stderr


def test_test_runs_inline_tests_and_summarises():
    result = sentinel("rules", "test", str(PACK))
    assert result.returncode == 0, result.stdout
    last = result.stdout.strip().splitlines()[-1]
    passed, failed = last.split(", ")
    assert int(passed.split()[0]) >= 30 and failed == "0 failed"


def test_test_fails_on_a_failing_inline_test(tmp_path):
    (tmp_path / "a.toml").write_text(
        'id = "a"\ntitle = "t"\nseverity = "low"\nevent_types = ["user.account.lock"]\n'
        '[[tests]]\nname = "wrong on purpose"\nevent = { eventType = "user.account.lock" }\nexpect = false\n'
        '[[tests]]\nname = "right"\nevent = { eventType = "user.account.lock" }\nexpect = true\n'
    )
    result = sentinel("rules", "test", str(tmp_path))
    assert result.returncode == 1
    assert "FAIL a: wrong on purpose: expected no alert, got 1" in result.stdout
    assert "PASS a: right" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "1 passed, 1 failed"


def test_list_shows_rules():
    result = sentinel("rules", "list")
    assert result.returncode == 0
    row = next(line for line in result.stdout.splitlines() if line.startswith("okta-api-token-created "))
    assert row.split() == ["okta-api-token-created", "medium", "system.api_token.create", "yes"]


def test_rules_paths_from_config(tmp_path):
    folder = tmp_path / "myrules"
    folder.mkdir()
    (folder / "a.toml").write_text('id = "only-one"\ntitle = "t"\nseverity = "low"\nevent_types = ["x.y"]\n')
    config = tmp_path / "sentinel.toml"
    config.write_text('[rules]\npaths = ["myrules"]\n')
    result = sentinel("rules", "list", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "only-one" in result.stdout and "okta-" not in result.stdout


def test_replay_reads_every_format_and_prints_alerts(tmp_path):
    users = [f"u{i}@example.com" for i in range(10)]
    events = [failure(f"s{i}", user, i) for i, user in enumerate(users)]
    lines = tmp_path / "events.jsonl"
    lines.write_text("\n".join(json.dumps(e) for e in events[:4]) + "\n")
    array = tmp_path / "events.json"
    array.write_text(json.dumps(events[4:7]))
    body = dict(ENVELOPE, data={"events": events[7:]})
    result = sentinel("replay", "--rules", str(PACK), str(lines), str(array), "-", stdin=json.dumps(body))
    assert result.returncode == 0, result.stderr
    alerts = [json.loads(line) for line in result.stdout.splitlines()]
    spray = [a for a in alerts if a["rule_id"] == "okta-password-spraying"]
    assert len(spray) == 1
    assert spray[0]["count"] == 10 and spray[0]["severity"] == "high"
    assert spray[0]["group_key"] == "client.ipAddress=203.0.113.9"
    assert sorted(spray[0]["event_uuids"]) == sorted(e["uuid"] for e in events)
    assert spray[0]["title"] == "Password spraying from 203.0.113.9: sign-in failures for many users"


def test_replay_orders_by_published_and_dedupes(tmp_path):
    events = [failure(f"b{i}", "jane@example.com", i) for i in range(10)]
    shuffled = list(reversed(events)) + events[:3]  # out of order, with redelivered duplicates
    path = tmp_path / "events.json"
    path.write_text(json.dumps(shuffled))
    result = sentinel("replay", str(path))
    alerts = [json.loads(line) for line in result.stdout.splitlines()]
    brute = [a for a in alerts if a["rule_id"] == "okta-brute-force-user"]
    assert len(brute) == 1 and brute[0]["count"] == 10
    assert brute[0]["first_seen"] == "2026-02-01T08:00:00.000000Z"


def test_replay_skips_bad_events_with_their_location(tmp_path):
    path = tmp_path / "mixed.jsonl"
    good = failure("g1", "a@x", 0)
    path.write_text(json.dumps(good) + "\nnot json\n" + json.dumps({"uuid": "x", "eventType": "t"}) + "\n")
    result = sentinel("replay", str(path))
    assert result.returncode == 0
    assert f"{path}: line 2: not JSON" in result.stderr
    assert f"{path}: line 3: event.published: missing" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("replay", "/nonexistent/events.json"), "cannot read"),
        (("replay", "--rules", "/nonexistent/rules", "-"), "no such file or directory"),
        (("rules", "list", "--config", "/nonexistent/sentinel.toml"), "no such file"),
    ],
)
def test_bad_input_is_one_clear_line(args, message):
    result = sentinel(*args, stdin="")
    assert result.returncode in (1, 2)
    assert message in result.stderr
    assert "Traceback" not in result.stderr
