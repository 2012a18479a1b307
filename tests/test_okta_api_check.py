"""``[okta.api]`` in sentinel.toml, and what ``sentinel check`` and ``sentinel check --probe`` say about it:
the real CLI (click's runner on the real ``main``) against the fake Okta (a real HTTP server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from daemon import write_config
from fake_okta import FakeOkta
from okta_api_helpers import rsa_keys
from test_config import load, problems

from sentinel.cli import main

TOKEN = "00CheckProbeTokenForTheFake1"
HOOK_SECRET = "s" * 40


# -- the table ------------------------------------------------------------------------------------------
def test_no_table_no_polling_and_its_defaults_when_present(tmp_path: Path) -> None:
    assert load(tmp_path, "").okta_api is None
    api = load(tmp_path, '[okta]\norg_url = "https://example.okta.com/"\n[okta.api]\n').okta_api
    assert api is not None
    assert (api.base_url, api.poll_interval_seconds, api.backfill_hours, api.client_id, api.key_id,
            api.rate_limit_share, api.max_lag_seconds) == ("https://example.okta.com", 60, 24.0, None, None, 0.5,
                                                           600)
    own = load(tmp_path, '[okta.api]\nbase_url = "https://other.okta.com"\nclient_id = "0oa1"\nkey_id = "k"\n'
                         "poll_interval_seconds = 5\nbackfill_hours = 0.5\nrate_limit_share = 1\n"
                         "max_lag_seconds = 120\n").okta_api
    assert own is not None and (own.base_url, own.client_id, own.key_id, own.poll_interval_seconds,
                                own.backfill_hours, own.rate_limit_share, own.max_lag_seconds) == (
        "https://other.okta.com", "0oa1", "k", 5, 0.5, 1.0, 120)


@pytest.mark.parametrize("loopback", ["http://127.0.0.1:8999", "http://localhost", "http://[::1]:80/"])
def test_plain_http_only_for_loopback(tmp_path: Path, loopback: str) -> None:
    api = load(tmp_path, f'[okta.api]\nbase_url = "{loopback}"\n').okta_api
    assert api is not None and api.base_url == loopback.rstrip("/")


BROKEN = [
    ("[okta.api]\n", ["okta.api: polling needs the org's address: set base_url here or [okta] org_url"]),
    ('[okta.api]\nbase_url = "http://example.okta.com"\n',
     ["okta.api.base_url: must be the https:// address of the Okta org (http:// only for a loopback address), "
      "not 'http://example.okta.com'"]),
    ('[okta.api]\nbase_url = "http://127.0.0.1.evil.example"\n', ["okta.api.base_url: must be the https://"]),
    ('[okta]\norg_url = "https://x.okta.com"\n[okta.api]\npoll_interval_seconds = 0\n',
     ["okta.api.poll_interval_seconds: must be between 1 and 86400, not 0"]),
    ('[okta]\norg_url = "https://x.okta.com"\n[okta.api]\nbackfill_hours = 2161\n',
     ["okta.api.backfill_hours: must be between 0 and 2160, not 2161"]),
    ('[okta]\norg_url = "https://x.okta.com"\n[okta.api]\nrate_limit_share = 0.05\n',
     ["okta.api.rate_limit_share: must be between 0.1 and 1.0, not 0.05"]),
    ('[okta]\norg_url = "https://x.okta.com"\n[okta.api]\ntoken = "inline"\n',
     ["okta.api.token: unknown key (allowed: backfill_hours, base_url, client_id, key_id, max_lag_seconds, "
      "poll_interval_seconds, rate_limit_share)"]),
    ('[okta]\napi = "yes"\n', ["okta.api: must be a table, not a string"]),
    ('["okta.api"]\nbase_url = "https://x.okta.com"\n', ["okta.api: unknown key (allowed: "]),
]


@pytest.mark.parametrize(("text", "expected"), BROKEN)
def test_every_problem_of_the_table_is_reported_with_its_place(tmp_path: Path, text: str,
                                                               expected: list[str]) -> None:
    found = problems(tmp_path, text)
    assert len(found) == len(expected) and all(f.startswith(e) for f, e in zip(found, expected, strict=True)), found


# -- sentinel check -------------------------------------------------------------------------------------
@pytest.fixture
def fake() -> Iterator[FakeOkta]:
    server = FakeOkta(api_token=TOKEN).start()
    yield server
    server.stop()


def check(tmp_path: Path, fake: FakeOkta, table: str, env: dict[str, str | None], *args: str):
    config = write_config(tmp_path, extra=f'\n[okta.api]\nbase_url = "{fake.base}"\n{table}')
    full_env: dict[str, str | None] = {"SENTINEL_OKTA_SECRET": HOOK_SECRET, "SENTINEL_OKTA_API_TOKEN": None,
                                       "SENTINEL_OKTA_API_PRIVATE_KEY": None, "CREDENTIALS_DIRECTORY": None, **env}
    return CliRunner().invoke(main, ["check", "--config", str(config), *args], env=full_env)


def test_check_says_which_credential_it_would_use_never_its_value(tmp_path: Path, fake: FakeOkta) -> None:
    result = check(tmp_path, fake, "", {"SENTINEL_OKTA_API_TOKEN": TOKEN})
    assert result.exit_code == 0, result.output
    assert f"okta api: polling {fake.base} every 60 s" in result.output
    assert "credential: API token (SSWS) from $SENTINEL_OKTA_API_TOKEN" in result.output
    assert TOKEN not in result.output and fake.requests == [], "check alone makes no request"

    keys = rsa_keys()
    oauth = check(tmp_path, fake, 'client_id = "0oaX"\n', {"SENTINEL_OKTA_API_PRIVATE_KEY": keys.private_pem,
                                                          "SENTINEL_OKTA_API_TOKEN": TOKEN})
    assert oauth.exit_code == 0, oauth.output
    assert ("credential: OAuth service app, private_key_jwt (RS256) with the key from "
            "$SENTINEL_OKTA_API_PRIVATE_KEY") in oauth.output
    assert keys.private_pem.splitlines()[1] not in oauth.output


def test_check_fails_without_the_credential(tmp_path: Path, fake: FakeOkta) -> None:
    result = check(tmp_path, fake, "", {})
    assert result.exit_code == 1
    assert "okta.api: no API token: set SENTINEL_OKTA_API_TOKEN or the systemd credential okta-api-token" in (
        result.output)
    bad_key = check(tmp_path, fake, 'client_id = "0oaX"\n', {"SENTINEL_OKTA_API_PRIVATE_KEY": "not a key"})
    assert bad_key.exit_code == 1 and "the private key in $SENTINEL_OKTA_API_PRIVATE_KEY is unusable" in (
        bad_key.output)


def test_probe_makes_one_request_and_reports_it(tmp_path: Path, fake: FakeOkta) -> None:
    result = check(tmp_path, fake, "", {"SENTINEL_OKTA_API_TOKEN": TOKEN}, "--probe")
    assert result.exit_code == 0, result.output
    assert f"probe: ok: HTTP 200 from {fake.base}/api/v1/logs, 0 event(s)" in result.output
    assert "rate limit 49 of 50 left" in result.output
    assert [(r.path, r.status, r.query["limit"]) for r in fake.requests] == [("/api/v1/logs", 200, ["1"])]


def test_probe_through_an_oauth_service_app(tmp_path: Path, fake: FakeOkta) -> None:
    keys = rsa_keys()
    fake.register_client("0oaProbe", keys.public_pem)
    result = check(tmp_path, fake, 'client_id = "0oaProbe"\n', {"SENTINEL_OKTA_API_PRIVATE_KEY": keys.private_pem},
                   "--probe")
    assert result.exit_code == 0, result.output
    assert "probe: ok: HTTP 200" in result.output
    assert [(r.path, r.status) for r in fake.requests] == [("/oauth2/v1/token", 200), ("/api/v1/logs", 200)]
    assert fake.requests[1].headers["authorization"] == "Bearer <redacted>"


def test_probe_reports_a_refusal_with_what_to_fix_and_exits_1(tmp_path: Path, fake: FakeOkta) -> None:
    wrong = "00WrongTokenButLongEnough12345"
    result = check(tmp_path, fake, "", {"SENTINEL_OKTA_API_TOKEN": wrong}, "--probe")
    assert result.exit_code == 1
    assert "probe: failed: Okta refused the System Log request (HTTP 401 E0000011: Invalid token provided)" in (
        result.output)
    assert "Security > API > Tokens" in result.output and wrong not in result.output
    assert len(fake.requests) == 1, "one request, no retry"
    fake.fail_every = 1
    failing = check(tmp_path, fake, "", {"SENTINEL_OKTA_API_TOKEN": TOKEN}, "--probe")
    assert failing.exit_code == 1 and "probe: failed: gave up after 1 attempts" in failing.output
    assert "HTTP 500 E0000009" in failing.output and len(fake.requests) == 2


def test_probe_without_the_table_is_a_problem(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    result = CliRunner().invoke(main, ["check", "--config", str(config), "--probe"],
                                env={"SENTINEL_OKTA_SECRET": HOOK_SECRET})
    assert result.exit_code == 1 and "--probe needs an [okta.api] table" in result.output


def test_the_api_credential_never_reaches_the_detector_process(tmp_path: Path) -> None:
    from sentinel.config import secret_variables
    from sentinel.service.detector_process import child_environment, child_settings

    settings = load(tmp_path, '[okta.api]\nbase_url = "https://x.okta.com"\n')
    environ = {"SENTINEL_OKTA_API_TOKEN": "tok", "SENTINEL_OKTA_API_PRIVATE_KEY": "pem",
               "CREDENTIALS_DIRECTORY": "/run/credentials/sentinel.service", "PATH": "/usr/bin"}
    assert {"SENTINEL_OKTA_API_TOKEN", "SENTINEL_OKTA_API_PRIVATE_KEY"} <= secret_variables(settings)
    assert child_environment(secret_variables(settings), environ) == {"PATH": "/usr/bin"}
    # The settings the child gets hold no credential at all: [okta.api] has none to give.
    assert child_settings(settings).okta_api == settings.okta_api
