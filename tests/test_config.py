"""sentinel.toml: defaults, overrides, secrets, and every problem reported at once with its location."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from sentinel.config import load_config, secret_values
from sentinel.errors import ErrorGroup
from sentinel.model import Severity

ROOT = Path(__file__).parent.parent


def load(tmp_path: Path, text: str, environ: dict[str, str] | None = None):
    path = tmp_path / "sentinel.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, environ or {})


def problems(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ErrorGroup) as info:
        load(tmp_path, text, environ)
    prefix = str(tmp_path / "sentinel.toml") + ": "
    return [str(e).removeprefix(prefix) for e in info.value.errors]


def test_empty_file_gives_the_documented_defaults(tmp_path: Path) -> None:
    s = load(tmp_path, "")
    assert (s.server.host, s.server.port, s.server.max_body_bytes) == ("127.0.0.1", 8080, 1024 * 1024)
    assert s.okta.auth_header == "Authorization"
    assert s.okta.allow_unauthenticated is False
    assert s.okta.secrets == ()
    assert s.storage.path == tmp_path / "sentinel.db"
    assert s.rules.paths == (tmp_path / "rules",)
    assert s.delivery.retry_budget == timedelta(hours=24)
    assert dict(s.channels) == {}


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    s = load(tmp_path, '[storage]\npath = "state/x.db"\n[rules]\npaths = ["a", "/abs/b"]\n')
    assert s.storage.path == tmp_path / "state" / "x.db"
    assert s.rules.paths == (tmp_path / "a", Path("/abs/b"))


def test_secrets_come_from_environment_and_are_masked(tmp_path: Path) -> None:
    s = load(tmp_path, "", {"SENTINEL_OKTA_SECRET": "s3cret-value", "SENTINEL_OKTA_SECRET_PREVIOUS": "old-value"})
    assert [x.reveal() for x in s.okta.secrets] == ["s3cret-value", "old-value"]
    assert "s3cret-value" not in repr(s) and "s3cret-value" not in str(s.okta)
    assert "old-value" not in f"{s.okta.secrets[1]}"


def test_secret_from_systemd_credentials_directory(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "okta-secret").write_text("from-credential\n")
    (creds / "SLACK_TOKEN").write_text("T1/B2/C3")
    s = load(tmp_path, '[channels.slack]\nurls = ["slack://${SLACK_TOKEN}"]\n', {"CREDENTIALS_DIRECTORY": str(creds)})
    assert s.okta.secrets[0].reveal() == "from-credential"
    assert s.channels["slack"].urls[0].reveal() == "slack://T1/B2/C3"
    assert "T1/B2/C3" not in repr(s.channels["slack"])


def test_environment_wins_over_credential(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "okta-secret").write_text("cred")
    s = load(tmp_path, "", {"CREDENTIALS_DIRECTORY": str(creds), "SENTINEL_OKTA_SECRET": "env"})
    assert s.okta.secrets[0].reveal() == "env"


BROKEN = [
    ("[server]\nport = 0\n", ["server.port: must be between 1 and 65535, not 0"]),
    ('[server]\nport = "8080"\n', ["server.port: must be an integer, not a string"]),
    ("[server]\nhost = true\n", ["server.host: must be a string, not true or false"]),
    ("[server]\nmax_body_bytes = 10\n", ["server.max_body_bytes: must be between 1024 and 268435456, not 10"]),
    ("[server]\nprot = 1\n", ["server.prot: unknown key (allowed: host, max_body_bytes, port)"]),
    ("[serer]\n", ["serer: unknown key (allowed: channels, delivery, detector, logging, maintenance, metrics, "
                   "monitor, okta, rules, server, storage, ui)"]),
    ("server = 1\n", ["server: must be a table, not an integer"]),
    ('[okta]\nauth_header = "Bad Header"\n', ["okta.auth_header: 'Bad Header' is not a valid HTTP header name"]),
    ('[okta]\nallow_unauthenticated = "yes"\n', ["okta.allow_unauthenticated: must be true or false, not a string"]),
    ('[okta]\norg_url = "http://x.okta.com"\n',
     ["okta.org_url: must be the https:// address of the Okta org, such as https://example.okta.com, "
      "not 'http://x.okta.com'"]),
    ('[okta]\nsecret = "inline"\n', ["okta.secret: unknown key (allowed: allow_unauthenticated, auth_header, "
                                     "org_url)"]),
    ('[rules]\npaths = "rules"\n', ["rules.paths: must be an array, not a string"]),
    ('[rules]\npaths = ["ok", 3]\n', ["rules.paths[1]: must be a non-empty string"]),
    ('[delivery]\ntimezone = "Mars/Base"\n',
     ["delivery.timezone: unknown time zone 'Mars/Base' (use an IANA name such as 'Europe/Paris')"]),
    ("[delivery]\nretry_budget_hours = 0\n", ["delivery.retry_budget_hours: must be greater than 0, not 0"]),
    ('[channels.slack]\nurls = ["slack://${NOPE}"]\n',
     ["channels.slack.urls[0]: ${NOPE} is not set (as an environment variable or systemd credential)"]),
    ('[channels.x]\nkind = "sms"\nurls = ["a://"]\n', ["channels.x.kind: must be one of apprise, log, not 'sms'"]),
    ('[channels.x]\nmin_severity = "urgent"\nurls = ["a://"]\n',
     ["channels.x.min_severity: unknown severity 'urgent' (expected one of: info, low, medium, high, critical)"]),
    ("[channels.x]\n", ["channels.x: an apprise channel needs 'urls' (a list of Apprise URLs)"]),
    ('[channels.x]\nkind = "log"\n',
     ["channels.x: a log channel needs 'path' (the JSON-lines file alerts are appended to)"]),
    ('[channels."bad name"]\nurls = ["a://"]\n',
     ["channels.bad name: channel names use letters, digits, '-' and '_' only"]),
    ('[logging]\nformat = "xml"\n', ["logging.format: must be one of text, json, not 'xml'"]),
    ("[metrics]\nrequire_token = true\n",
     ["metrics.require_token: is true but no token is set (SENTINEL_METRICS_TOKEN or credential metrics-token)"]),
    ('[metrics]\nlisten = "9108"\n', ["metrics.listen: must be 'host:port', not '9108'"]),
]


@pytest.mark.parametrize(("text", "expected"), BROKEN)
def test_broken_config_messages(tmp_path: Path, text: str, expected: list[str]) -> None:
    assert problems(tmp_path, text) == expected


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = '[server]\nport = -1\nhost = 5\n[storage]\npath = 1\nextra = 2\n[channels.a]\nkind = "x"\n'
    found = problems(tmp_path, text)
    assert [f.split(":")[0] for f in found] == ["server.host", "server.port", "storage.extra", "storage.path",
                                                "channels.a.kind"]


def test_previous_secret_alone_is_an_error(tmp_path: Path) -> None:
    assert problems(tmp_path, "", {"SENTINEL_OKTA_SECRET_PREVIOUS": "x"}) == [
        "okta: SENTINEL_OKTA_SECRET_PREVIOUS is set but SENTINEL_OKTA_SECRET is not; set the new secret too"]


def test_toml_nested_too_deeply_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    # tomllib recurses once per level: 5,000 levels raised RecursionError through `sentinel check`.
    assert problems(tmp_path, "x = " + "[" * 5000 + "]" * 5000 + "\n") == ["invalid TOML: nested too deeply"]


def test_invalid_toml_names_the_file_and_line(tmp_path: Path) -> None:
    found = problems(tmp_path, "[server\nport = 1\n")
    assert len(found) == 1 and found[0].startswith("invalid TOML: ") and "line 1" in found[0]


def test_shipped_config_is_valid() -> None:
    s = load_config(ROOT / "sentinel.toml", {})
    assert s.channels["log"].kind == "log"
    assert s.channels["log"].min_severity is Severity.INFO
    assert s.storage.path == ROOT / "state" / "sentinel.db"


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    import os

    environ = {k: v for k, v in os.environ.items() if not k.startswith("SENTINEL_")}
    environ.update(env or {})
    return subprocess.run([sys.executable, "-m", "sentinel", *args], capture_output=True, text=True, env=environ,
                          cwd=cwd or ROOT, timeout=60)


def test_check_command_reports_all_problems_and_exits_1(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[server]\nport = 0\n[okta]\nfoo = 1\n")
    r = run_cli("check", "--config", str(config))
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        f"{config}: server.port: must be between 1 and 65535, not 0",
        f"{config}: okta.foo: unknown key (allowed: allow_unauthenticated, auth_header, org_url)",
    ]


def test_check_command_accepts_the_shipped_config() -> None:
    r = run_cli("check", "--config", "sentinel.toml", env={"SENTINEL_OKTA_SECRET": "x" * 20})
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok: sentinel.toml:")


def test_check_missing_file(tmp_path: Path) -> None:
    r = run_cli("check", "--config", str(tmp_path / "nope.toml"))
    assert r.returncode == 1
    assert r.stderr.strip() == f"{tmp_path / 'nope.toml'}: no such file"


def test_the_triage_page_needs_a_password(tmp_path: Path) -> None:
    text = '[ui]\nlisten = "127.0.0.1:8081"\n'
    assert problems(tmp_path, text) == [
        "ui.listen: the triage page needs a password: set SENTINEL_UI_PASSWORD (or the systemd credential "
        "ui-password), or remove [ui] listen"]
    s = load(tmp_path, text, {"SENTINEL_UI_PASSWORD": "pw"})
    assert s.ui.listen == "127.0.0.1:8081" and s.ui.password is not None and s.ui.password.reveal() == "pw"
    assert "pw" in secret_values(s)  # masked in logs like every other secret
    # Commands that read no secret do not need it.
    assert load_config(tmp_path / "sentinel.toml", {}, resolve_secrets=False).ui.password is None


def test_the_ui_password_comes_from_a_systemd_credential(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "ui-password").write_text("from-credential\n")
    s = load(tmp_path, '[ui]\nlisten = "127.0.0.1:8081"\n', {"CREDENTIALS_DIRECTORY": str(creds)})
    assert s.ui.password is not None and s.ui.password.reveal() == "from-credential"


def test_no_ui_section_means_no_page(tmp_path: Path) -> None:
    s = load(tmp_path, "", {"SENTINEL_UI_PASSWORD": "pw"})
    assert s.ui.listen is None and s.ui.password is None
    assert problems(tmp_path, '[ui]\nlisten = "8081"\n') == ["ui.listen: must be 'host:port', not '8081'"]
