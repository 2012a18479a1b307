"""``sentinel rules check|test|list`` and ``sentinel replay`` run as real subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

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


def failure(uuid: str, user: str, minute: int, ip: str = "203.0.113.9") -> dict[str, Any]:
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
    assert row.split() == ["okta-api-token-created", "medium", "system.api_token.create", "yes", "hook"]


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


def _demo_bodies() -> list[dict[str, Any]]:
    """The hook bodies `sentinel demo` posts (a real daemon answers them 204: tests/test_demo_replay.py)."""
    from datetime import UTC, datetime

    from sentinel.cli.demo_events import demo_events, envelope

    now = datetime.now(UTC)
    return [envelope(events, now) for _, events in demo_events(now)]


DEMO_RULES = ["okta-admin-privilege-granted-user", "okta-org-rate-limit-warning", "okta-password-spraying",
              "okta-user-reported-suspicious-activity"]


@pytest.mark.parametrize("layout", ["one body per line", "one pretty-printed body per file",
                                    "pretty-printed bodies one after another"])
def test_replay_reads_hook_bodies(tmp_path, layout):
    bodies = _demo_bodies()
    if layout == "one body per line":
        files = [tmp_path / "bodies.jsonl"]
        files[0].write_text("".join(json.dumps(body) + "\n" for body in bodies))
    elif layout == "one pretty-printed body per file":
        files = [tmp_path / f"body{i}.json" for i in range(len(bodies))]
        for file, body in zip(files, bodies):
            file.write_text(json.dumps(body, indent=2))
    else:
        files = [tmp_path / "bodies.json"]
        files[0].write_text("\n".join(json.dumps(body, indent=2) for body in bodies))
    result = sentinel("replay", "--rules", str(PACK), *map(str, files))
    assert result.returncode == 0, result.stderr
    assert sorted(json.loads(line)["rule_id"] for line in result.stdout.splitlines()) == DEMO_RULES
    assert "replayed 15 event(s)" in result.stderr


def test_replay_streams_arrays_and_reports_where_one_breaks(tmp_path):
    events = [failure(f"a{i}", f"u{i}@example.com", i) for i in range(12)]
    pages = tmp_path / "pages.json"  # System Log API pages, one after another; the last one cut short
    pages.write_text(json.dumps(events[:6], indent=2) + "\n" + json.dumps(events[6:])[:-20])
    result = sentinel("replay", "--rules", str(PACK), str(pages))
    assert result.returncode == 0, result.stderr
    assert f"{pages}: not JSON after element 10" in result.stderr
    assert "the rest of the file was not read" in result.stderr
    assert "replayed 11 event(s), 1 item(s) skipped" in result.stderr


@pytest.mark.parametrize("content", [b"", b"\n\n", b"hello\nworld\n", b"{not json\n\x00\xff\n",
                                     b"[1, 2, 3]", b'{"uuid": "x"}\n' * 3, bytes(range(256)) * 40])
def test_replay_that_reads_no_event_fails_clearly(tmp_path, content):
    path = tmp_path / "garbage"
    path.write_bytes(content)
    result = sentinel("replay", str(path))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(f"no events read from {path}: ")
    assert "Traceback" not in result.stderr


@pytest.mark.proof
def test_replay_shows_a_progress_bar_only_on_a_terminal(tmp_path):
    import os
    import pty

    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(failure(f"p{i}", "a@x", i % 60)) + "\n" for i in range(2000)))
    leader, follower = pty.openpty()
    with subprocess.Popen([sys.executable, "-m", "sentinel", "replay", str(path)], cwd=ROOT, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=follower) as proc:
        os.close(follower)
        screen = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed: the process is gone
                break
            if not chunk:
                break
            screen += chunk
        assert proc.stdout is not None
        stdout = proc.stdout.read()
    os.close(leader)
    assert proc.returncode == 0
    assert b"replaying" in screen and b"100%" in screen
    assert b"replaying" not in stdout  # alerts only on stdout
    piped = sentinel("replay", str(path))
    assert "replaying" not in piped.stderr and "%" not in piped.stderr
