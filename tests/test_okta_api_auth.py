"""The System Log client's credentials: SSWS, and OAuth client credentials with private_key_jwt (RSA and EC)
against the fake Okta's token endpoint, which verifies the assertion's signature, iss, sub, aud, exp and jti;
the token cache; credentials read like SENTINEL_OKTA_SECRET; secrets never in a log line or a repr."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fake_okta import FakeOkta
from fake_okta_auth import KeyPair
from okta_api_helpers import TOKEN, SimClock, ago, api_settings, ec_keys, make_client, rsa_keys, run, ssws
from test_fake_okta import NOW, events_at

from sentinel.config import OktaApiSettings
from sentinel.errors import ConfigError
from sentinel.okta_api import ApiCredentials, AuthFailed, SystemLogClient, load_api_credentials
from sentinel.okta_api.oauth import TokenSource

CLIENT_ID = "0oaSentinelPoller"


@pytest.fixture
def clock() -> SimClock:
    return SimClock()


@pytest.fixture
def fake(clock: SimClock) -> Iterator[FakeOkta]:
    server = FakeOkta(api_token=TOKEN, clock=clock, rate_limit=1000).start()
    server.add(events_at(ago(clock, minutes=10), 3))
    yield server
    server.stop()


def oauth(fake: FakeOkta, keys: KeyPair, key_id: str | None = "k1") -> tuple[OktaApiSettings, ApiCredentials]:
    settings = api_settings(fake, client_id=CLIENT_ID, key_id=key_id)
    return settings, load_api_credentials(settings, {"SENTINEL_OKTA_API_PRIVATE_KEY": keys.private_pem})


async def three_pages(client: SystemLogClient) -> list[int]:
    url = client.first_url(datetime.fromtimestamp(NOW, UTC) - timedelta(hours=1), limit=1)
    sizes = []
    for _ in range(3):
        page = await client.get_page(url)
        sizes.append(len(page.events))
        url = page.next_url or url
    return sizes


# -- SSWS -----------------------------------------------------------------------------------------------
def test_ssws_token_is_sent_as_okta_documents(fake, clock):
    assert run(make_client(fake, clock), three_pages) == [1, 1, 1]
    assert {r.headers["authorization"] for r in fake.requests} == {"SSWS <redacted>"}
    assert fake.to("/oauth2/v1/token") == []


# -- OAuth private_key_jwt ------------------------------------------------------------------------------
@pytest.mark.parametrize(("make_pair", "alg"), [(rsa_keys, "RS256"), (ec_keys, "ES256")])
def test_private_key_jwt_gets_a_token_the_fake_verified_and_reads_logs(fake, clock, make_pair, alg):
    keys = make_pair()
    fake.register_client(CLIENT_ID, keys.public_pem, kid="k1")
    settings, credentials = oauth(fake, keys)
    assert credentials.algorithm == alg
    statuses: list[int] = []
    client = SystemLogClient(settings, credentials, clock=clock, sleep=clock.sleep, on_response=statuses.append)
    assert run(client, three_pages) == [1, 1, 1]
    tokens = fake.to("/oauth2/v1/token")
    assert len(tokens) == 1 and tokens[0].status == 200, "one token for all three pages"
    form = tokens[0].form
    assert (form["grant_type"], form["scope"], form["client_assertion_type"]) == (
        "client_credentials", "okta.logs.read", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
    assert {r.headers["authorization"] for r in fake.to("/api/v1/logs")} == {"Bearer <redacted>"}
    assert statuses == [200, 200, 200, 200]


@pytest.mark.parametrize(("curve", "alg"), [(ec.SECP256R1(), "ES256"), (ec.SECP384R1(), "ES384")])
def test_client_assertion_claims(fake, clock, curve, alg):
    key = ec.generate_private_key(curve)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    settings, credentials = oauth(fake, KeyPair(pem, ""))
    source = TokenSource(settings, credentials, clock)
    first, second = source.assertion(), source.assertion()
    assert jwt.get_unverified_header(first) == {"alg": alg, "kid": "k1", "typ": "JWT"}
    claims = jwt.decode(first, key.public_key(), algorithms=[alg], audience=fake.token_url, issuer=CLIENT_ID,
                        options={"verify_exp": False, "verify_iat": False})
    assert claims["sub"] == CLIENT_ID and claims["aud"] == fake.base + "/oauth2/v1/token"
    assert claims["iat"] == int(clock.epoch) and 0 < claims["exp"] - claims["iat"] <= 3600
    assert claims["jti"] != jwt.decode(second, options={"verify_signature": False})["jti"]
    without_kid = TokenSource(api_settings(fake, client_id=CLIENT_ID), credentials, clock).assertion()
    assert "kid" not in jwt.get_unverified_header(without_kid)


def test_the_token_is_cached_refreshed_before_it_expires_and_after_a_401(fake, clock):
    keys = rsa_keys()
    fake.register_client(CLIENT_ID, keys.public_pem, kid="k1")
    settings, credentials = oauth(fake, keys)
    statuses: list[int] = []
    client = SystemLogClient(settings, credentials, clock=clock, sleep=clock.sleep, on_response=statuses.append)

    async def work(c: SystemLogClient) -> None:
        url = c.first_url(ago(clock, hours=1))
        await c.get_page(url)
        clock.advance(3600 - 121)
        await c.get_page(url)  # still valid for 121 s: kept
        clock.advance(2)
        await c.get_page(url)  # 119 s left: a new one first, never a 401
        fake.oauth.expire_all()  # revoked early: the 401 brings a fresh token and one more try
        await c.get_page(url)

    run(client, work)
    assert [r.status for r in fake.to("/oauth2/v1/token")] == [200, 200, 200]
    assert statuses == [200, 200, 200, 200, 200, 401, 200, 200]


@pytest.mark.parametrize(("setup", "hint"), [
    ("other key", "public keys hold the public half"),
    ("no scope", "okta.logs.read scope"),
    ("no role", "admin role"),
])
def test_oauth_refusals_are_auth_failed_with_what_to_fix(fake, clock, setup, hint):
    keys = rsa_keys()
    registered = ec_keys().public_pem if setup == "other key" else keys.public_pem
    fake.register_client(CLIENT_ID, registered, scopes=("okta.users.read",) if setup == "no scope" else
                         ("okta.logs.read",))
    fake.forbidden = setup == "no role"
    settings, credentials = oauth(fake, keys)
    client = SystemLogClient(settings, credentials, clock=clock, sleep=clock.sleep)
    with pytest.raises(AuthFailed) as info:
        run(client, lambda c: c.get_page(c.first_url(ago(clock, hours=1))))
    assert hint in info.value.hint and clock.sleeps == []


# -- credentials ----------------------------------------------------------------------------------------
def test_api_token_from_the_environment_or_a_systemd_credential(fake, tmp_path: Path):
    settings = api_settings(fake)
    from_env = load_api_credentials(settings, {"SENTINEL_OKTA_API_TOKEN": "env-token"})
    assert (from_env.kind, from_env.secret.reveal(), from_env.source) == ("ssws", "env-token",
                                                                          "$SENTINEL_OKTA_API_TOKEN")
    (tmp_path / "okta-api-token").write_text("cred-token\n")
    from_cred = load_api_credentials(settings, {"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert from_cred.secret.reveal() == "cred-token" and from_cred.source == "systemd credential okta-api-token"
    both = {"CREDENTIALS_DIRECTORY": str(tmp_path), "SENTINEL_OKTA_API_TOKEN": "env-token"}
    assert load_api_credentials(settings, both).secret.reveal() == "env-token"
    assert from_env.describe() == "API token (SSWS) from $SENTINEL_OKTA_API_TOKEN"
    with pytest.raises(ConfigError, match="SENTINEL_OKTA_API_TOKEN or the systemd credential okta-api-token"):
        load_api_credentials(settings, {})


def test_private_key_from_a_systemd_credential_and_unusable_keys(fake, tmp_path: Path):
    settings = api_settings(fake, client_id=CLIENT_ID)
    keys = ec_keys()
    (tmp_path / "okta-api-private-key").write_text(keys.private_pem)
    found = load_api_credentials(settings, {"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert found.kind == "private_key_jwt" and "systemd credential okta-api-private-key" in found.describe()
    with pytest.raises(ConfigError, match="SENTINEL_OKTA_API_PRIVATE_KEY or the systemd credential"):
        load_api_credentials(settings, {"SENTINEL_OKTA_API_TOKEN": "a token is not enough"})
    short = rsa.generate_private_key(public_exponent=65537, key_size=1024).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    garbage = "-----BEGIN PRIVATE KEY-----\nTm90QUtleUF0QWxsQnV0U2VjcmV0SXNo\n-----END PRIVATE KEY-----\n"
    for pem, why in ((short, "too short"), (garbage, "not an unencrypted PEM private key"),
                     (keys.public_pem, "not an unencrypted PEM private key")):
        with pytest.raises(ConfigError) as info:
            load_api_credentials(settings, {"SENTINEL_OKTA_API_PRIVATE_KEY": pem})
        assert why in str(info.value) and "Tm90QUtle" not in str(info.value)


# -- secrets stay secret ----------------------------------------------------------------------------------
def test_no_secret_in_logs_reprs_or_errors(clock, caplog):
    caplog.set_level(logging.DEBUG)
    keys = rsa_keys()
    fake = FakeOkta(api_token=TOKEN, clock=clock, fail_every=2).start()
    try:
        fake.add(events_at(ago(clock, minutes=10), 2))
        fake.register_client(CLIENT_ID, keys.public_pem, kid="k1")
        ssws_client = make_client(fake, clock)
        settings, credentials = oauth(fake, keys)
        oauth_client = SystemLogClient(settings, credentials, clock=clock, sleep=clock.sleep)
        run(ssws_client, three_pages)
        run(oauth_client, three_pages)
        shown = [repr(ssws_client), repr(oauth_client), repr(credentials), str(credentials), repr(ssws()),
                 credentials.describe()]
        fake.forbidden = True
        with pytest.raises(AuthFailed) as info:
            run(make_client(fake, clock), three_pages)
        shown += [str(info.value), repr(info.value)]
        access_tokens = list(fake.oauth.tokens)
    finally:
        fake.stop()
    assert "retrying in" in caplog.text, "the 500s were logged"
    text = caplog.text + "\n".join(shown)
    key_body = keys.private_pem.splitlines()[1]
    for secret in (TOKEN, key_body, *access_tokens):
        assert secret not in text
    assert re.search(r"eyJ[\w-]+\.eyJ[\w-]+\.", text) is None, "no JWT (client assertion) in a log line"


class DpopOkta(FakeOkta):
    """An org whose service app requires DPoP: a token request without a DPoP proof is refused (§3.3)."""

    def _token(self, form):
        return 400, {}, {"error": "invalid_dpop_proof", "error_description": "The DPoP proof JWT header is missing."}


def test_an_app_that_requires_dpop_is_auth_failed_saying_to_turn_it_off(clock):
    fake = DpopOkta(clock=clock).start()
    try:
        keys = rsa_keys()
        settings, credentials = oauth(fake, keys)
        statuses: list[int] = []
        client = SystemLogClient(settings, credentials, clock=clock, sleep=clock.sleep, on_response=statuses.append)
        with pytest.raises(AuthFailed) as info:
            run(client, lambda c: c.get_page(c.first_url(ago(clock, hours=1))))
    finally:
        fake.stop()
    assert "Require Demonstrating Proof of Possession" in info.value.hint and "invalid_dpop_proof" in str(info.value)
    assert statuses == [400] and fake.to("/api/v1/logs") == []
