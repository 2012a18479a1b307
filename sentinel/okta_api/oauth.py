"""OAuth 2.0 client credentials with ``private_key_jwt`` for an Okta service app, scope ``okta.logs.read``.

The client assertion (``iss`` = ``sub`` = client_id, ``aud`` = the token URL, a short ``exp``, a fresh
``jti``) is signed by PyJWT; the access token is kept until shortly before it expires.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
import jwt

from sentinel.clock import Clock
from sentinel.config import OktaApiSettings
from sentinel.okta_api.credentials import ApiCredentials
from sentinel.okta_api.errors import ApiError, AuthFailed, RetryableError
from sentinel.okta_api.okta_errors import describe_error

TOKEN_PATH = "/oauth2/v1/token"
SCOPE = "okta.logs.read"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME = 300  # Okta accepts at most one hour
REFRESH_BEFORE_EXPIRY = 120.0  # seconds (at most half the token's lifetime)


class TokenSource:
    """The bearer token for API requests: fetched when missing or about to expire, dropped on a 401."""

    def __init__(self, settings: OktaApiSettings, credentials: ApiCredentials, clock: Clock) -> None:
        if settings.client_id is None:
            raise ValueError("an OAuth token source needs [okta.api] client_id")
        self.token_url = settings.base_url + TOKEN_PATH
        self._client_id = settings.client_id
        self._key_id = settings.key_id
        self._credentials = credentials
        self._clock = clock
        self._token: str | None = None
        self._refresh_at = 0.0

    def __repr__(self) -> str:
        return f"TokenSource({self.token_url!r}, client_id={self._client_id!r})"

    def assertion(self) -> str:
        now = int(self._clock.now().timestamp())
        claims = {"iss": self._client_id, "sub": self._client_id, "aud": self.token_url, "iat": now,
                  "exp": now + ASSERTION_LIFETIME, "jti": uuid.uuid4().hex}
        headers = {"kid": self._key_id} if self._key_id else None
        return jwt.encode(claims, self._credentials.secret.reveal(), algorithm=self._credentials.algorithm,
                          headers=headers)

    def invalidate(self) -> None:
        self._token = None

    async def authorization(self, http: httpx.AsyncClient, on_response: Callable[[int], None]) -> str:
        """``Bearer …``, from the cache or a new token request."""
        if self._token is None or self._clock.monotonic() >= self._refresh_at:
            self._token = None
            self._token, lifetime = await self._fetch(http, on_response)
            self._refresh_at = self._clock.monotonic() + lifetime - min(REFRESH_BEFORE_EXPIRY, lifetime / 2)
        return f"Bearer {self._token}"

    async def _fetch(self, http: httpx.AsyncClient, on_response: Callable[[int], None]) -> tuple[str, float]:
        form = {"grant_type": "client_credentials", "scope": SCOPE, "client_assertion_type": JWT_BEARER,
                "client_assertion": self.assertion()}
        try:
            response = await http.post(self.token_url, data=form, headers={"Accept": "application/json"})
        except httpx.HTTPError as e:
            raise RetryableError(f"token request failed: {e.__class__.__name__}") from None
        on_response(response.status_code)
        status = response.status_code
        if status == 429 or status >= 500:
            raise RetryableError(f"token endpoint answered {status}", status)
        if status != 200:
            raise AuthFailed(f"the token endpoint refused the service app ({describe_error(response)})",
                             _token_hint(response), status)
        try:
            body = response.json()
            token, token_type, lifetime = body["access_token"], body.get("token_type", "Bearer"), body["expires_in"]
        except (ValueError, KeyError, TypeError):
            raise ApiError("the token endpoint answered 200 without an access_token and expires_in") from None
        if not isinstance(token, str) or not token or not isinstance(lifetime, int | float) or lifetime <= 0:
            raise ApiError("the token endpoint answered 200 without a usable access_token and expires_in")
        if str(token_type).lower() != "bearer":
            raise AuthFailed(f"the token endpoint issued a {str(token_type)[:20]!r} token",
                             "the service app requires DPoP: turn off \"Require Demonstrating Proof of Possession "
                             "(DPoP) header in token requests\" in its settings (Sentinel sends no DPoP proof)")
        return token, float(lifetime)


def _token_hint(response: httpx.Response) -> str:
    try:
        error = str(response.json().get("error", ""))
    except (ValueError, AttributeError):
        error = ""
    if error == "invalid_scope":
        return ("grant the okta.logs.read scope to the service app (Okta API Scopes tab; only a super admin "
                "can grant it)")
    if error in ("invalid_dpop_proof", "use_dpop_nonce"):
        return ("the service app requires DPoP: turn off \"Require Demonstrating Proof of Possession (DPoP) "
                "header in token requests\" in its settings (Sentinel sends no DPoP proof)")
    if error == "unauthorized_client":
        return "allow the Client Credentials grant for the service app"
    return ("check [okta.api] client_id and key_id, that the service app's public keys hold the public half of "
            "the private key Sentinel uses, and that this machine's clock is right")
