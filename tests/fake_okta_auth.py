"""The OAuth 2.0 side of the fake Okta: client credentials with ``private_key_jwt`` at ``/oauth2/v1/token``.

Okta's service-app rules (docs/okta-system-log-api.md §3.2): the client assertion is a JWT signed with a key
whose public half is registered for the app, ``iss`` = ``sub`` = client_id, ``aud`` = the full token URL,
``exp`` in the future and at most one hour ahead, a ``jti`` never seen before; the granted scope must cover
``okta.logs.read``. The answer is a bearer access token with ``expires_in`` (3600 s at Okta). All signature
work is PyJWT's (with cryptography), none of it hand-written.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
LOGS_SCOPE = "okta.logs.read"
# Okta accepts RS256/384/512 and ES256/384/512 for private_key_jwt.
ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512"]
MAX_ASSERTION_LIFETIME = 3600


@dataclass(frozen=True)
class KeyPair:
    private_pem: str
    public_pem: str


def rsa_key_pair() -> KeyPair:
    return _pair(rsa.generate_private_key(public_exponent=65537, key_size=2048))


def ec_key_pair() -> KeyPair:
    return _pair(ec.generate_private_key(ec.SECP256R1()))


def _pair(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> KeyPair:
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return KeyPair(private, public)


def client_assertion(private_pem: str, client_id: str, token_url: str, *, alg: str = "RS256",
                     kid: str | None = None, lifetime: float = 300, jti: str | None = None,
                     now: float | None = None, **claims: Any) -> str:
    """A client assertion as a service app signs it (what the poller's OAuth path must produce)."""
    issued = time.time() if now is None else now
    payload: dict[str, Any] = {"iss": client_id, "sub": client_id, "aud": token_url,
                               "iat": int(issued), "exp": int(issued + lifetime),
                               "jti": jti or secrets.token_hex(16)}
    payload.update(claims)
    return jwt.encode(payload, private_pem, algorithm=alg, headers={"kid": kid} if kid else None)


@dataclass
class ServiceApp:
    client_id: str
    public_pem: str
    kid: str | None
    scopes: frozenset[str]


@dataclass
class AccessToken:
    client_id: str
    scopes: frozenset[str]
    expires_at: float


class OAuthError(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.description = status, error, description

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


@dataclass
class TokenIssuer:
    """Registered service apps, the ``jti`` values already used, and the access tokens handed out."""

    clock: Callable[[], float]
    token_lifetime: int = 3600
    apps: dict[str, ServiceApp] = field(default_factory=dict)
    used_jti: set[str] = field(default_factory=set)
    tokens: dict[str, AccessToken] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def register(self, client_id: str, public_pem: str, *, kid: str | None = None,
                 scopes: tuple[str, ...] = (LOGS_SCOPE,)) -> None:
        with self.lock:
            self.apps[client_id] = ServiceApp(client_id, public_pem, kid, frozenset(scopes))

    def exchange(self, form: dict[str, str], token_url: str) -> dict[str, Any]:
        """The token endpoint's answer to one form post, or OAuthError."""
        if form.get("grant_type") != "client_credentials":
            raise OAuthError(400, "unsupported_grant_type", "only client_credentials is supported")
        if form.get("client_assertion_type") != JWT_BEARER or not form.get("client_assertion"):
            raise OAuthError(401, "invalid_client", "a private_key_jwt client assertion is required")
        claims = self._verify(form["client_assertion"], token_url, form.get("client_id"))
        wanted = frozenset(form.get("scope", "").split())
        app = self.apps[claims["iss"]]
        if not wanted:
            raise OAuthError(400, "invalid_scope", "no scope requested")
        if not wanted <= app.scopes:
            raise OAuthError(400, "invalid_scope",
                             f"scopes not granted to the client: {' '.join(sorted(wanted - app.scopes))}")
        token = secrets.token_urlsafe(32)
        with self.lock:
            self.tokens[token] = AccessToken(app.client_id, wanted, self.clock() + self.token_lifetime)
        return {"token_type": "Bearer", "expires_in": self.token_lifetime, "access_token": token,
                "scope": " ".join(sorted(wanted))}

    def _verify(self, assertion: str, token_url: str, form_client_id: str | None) -> dict[str, Any]:
        try:
            unverified = jwt.decode(assertion, options={"verify_signature": False})
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError as exc:
            raise OAuthError(401, "invalid_client", f"malformed client assertion: {exc}") from None
        client_id = str(unverified.get("iss", ""))
        app = self.apps.get(client_id)
        if app is None or (form_client_id is not None and form_client_id != client_id):
            raise OAuthError(401, "invalid_client", "unknown client")
        if app.kid is not None and header.get("kid") not in (None, app.kid):
            raise OAuthError(401, "invalid_client", "no registered key with that kid")
        try:
            # exp is checked below against the fake's clock, which tests may move.
            claims: dict[str, Any] = jwt.decode(
                assertion, app.public_pem, algorithms=ALGORITHMS, audience=token_url, issuer=client_id,
                options={"require": ["iss", "sub", "aud", "exp", "jti"], "verify_exp": False,
                         "verify_iat": False, "verify_nbf": False})
        except jwt.PyJWTError as exc:
            raise OAuthError(401, "invalid_client", f"client assertion rejected: {exc}") from None
        if claims["sub"] != client_id:
            raise OAuthError(401, "invalid_client", "sub must equal the client_id")
        now = self.clock()
        exp = claims["exp"]
        if not isinstance(exp, int | float) or exp <= now:
            raise OAuthError(401, "invalid_client", "the client assertion has expired")
        if exp > now + MAX_ASSERTION_LIFETIME + 5:
            raise OAuthError(401, "invalid_client", "exp is more than one hour in the future")
        with self.lock:
            if claims["jti"] in self.used_jti:
                raise OAuthError(401, "invalid_client", "the client assertion's jti was already used")
            self.used_jti.add(str(claims["jti"]))
        return claims

    def bearer_problem(self, token: str, scope: str = LOGS_SCOPE) -> tuple[int, str] | None:
        """None when ``token`` may read logs now; otherwise (status, reason)."""
        with self.lock:
            found = next((t for k, t in self.tokens.items() if hmac.compare_digest(k, token)), None)
        if found is None or found.expires_at <= self.clock():
            return 401, "invalid or expired access token"
        if scope not in found.scopes:
            return 403, "insufficient_scope"
        return None

    def expire_all(self) -> None:
        """Every access token handed out so far stops working (as after its hour)."""
        with self.lock:
            for token in self.tokens.values():
                token.expires_at = 0
