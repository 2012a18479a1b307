"""The System Log API credential: an API token (SSWS) or a service app's private key (``private_key_jwt``).

Read from the environment or systemd credentials exactly like ``SENTINEL_OKTA_SECRET`` (never from the file),
held as :class:`~sentinel.secret.Secret`, and read only by the daemon's main process, never the detector's.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sentinel.config import (
    API_PRIVATE_KEY_CREDENTIAL,
    API_PRIVATE_KEY_ENV,
    API_TOKEN_CREDENTIAL,
    API_TOKEN_ENV,
    OktaApiSettings,
    secret_from,
)
from sentinel.errors import ConfigError
from sentinel.secret import Secret

# private_key_jwt algorithm by key: Okta accepts RS256/384/512 and ES256/384/512.
_EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}


@dataclass(frozen=True)
class ApiCredentials:
    """``kind`` "ssws": ``secret`` is the API token; "private_key_jwt": the PEM private key, signed with
    ``algorithm``. ``source`` names where it was read (a variable or credential name, never the value)."""

    kind: Literal["ssws", "private_key_jwt"]
    secret: Secret
    source: str
    algorithm: str = ""

    def describe(self) -> str:
        if self.kind == "ssws":
            return f"API token (SSWS) from {self.source}"
        return f"OAuth service app, private_key_jwt ({self.algorithm}) with the key from {self.source}"

    def secret_values(self) -> list[str]:
        """What logs must mask."""
        return [self.secret.reveal()]


def _source(env_name: str, credential: str, environ: Mapping[str, str]) -> str:
    return f"${env_name}" if environ.get(env_name) else f"systemd credential {credential}"


def signing_algorithm(pem: str) -> str:
    """The JWS algorithm for a PEM private key; ValueError if it is not an RSA or EC (P-256/384/521) key."""
    try:
        key = serialization.load_pem_private_key(pem.encode("utf-8"), password=None)
    except (ValueError, TypeError) as e:
        # The exception text may quote the key material: say only what kind of failure it was.
        raise ValueError(f"not an unencrypted PEM private key ({e.__class__.__name__})") from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < 2048:
            raise ValueError(f"an RSA key of {key.key_size} bits is too short (2048 at least)")
        return "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in _EC_ALGORITHMS:
        return _EC_ALGORITHMS[key.curve.name]
    raise ValueError("not an RSA or EC (P-256, P-384, P-521) private key")


def load_api_credentials(settings: OktaApiSettings,
                         environ: Mapping[str, str] = os.environ) -> ApiCredentials:
    """The credential ``[okta.api]`` asks for. Raises ConfigError saying what to set (never a value)."""
    if settings.client_id is not None:
        key = secret_from(API_PRIVATE_KEY_ENV, API_PRIVATE_KEY_CREDENTIAL, environ)
        if key is None:
            raise ConfigError(f"client_id is set but no private key is: set {API_PRIVATE_KEY_ENV} or the systemd "
                              f"credential {API_PRIVATE_KEY_CREDENTIAL} (PEM, RSA or EC)", "okta.api")
        source = _source(API_PRIVATE_KEY_ENV, API_PRIVATE_KEY_CREDENTIAL, environ)
        try:
            algorithm = signing_algorithm(key.reveal())
        except ValueError as e:
            raise ConfigError(f"the private key in {source} is unusable: {e}", "okta.api") from None
        return ApiCredentials("private_key_jwt", key, source, algorithm)
    token = secret_from(API_TOKEN_ENV, API_TOKEN_CREDENTIAL, environ)
    if token is None:
        raise ConfigError(f"no API token: set {API_TOKEN_ENV} or the systemd credential {API_TOKEN_CREDENTIAL} "
                          "(or client_id, to use an OAuth service app)", "okta.api")
    return ApiCredentials("ssws", token, _source(API_TOKEN_ENV, API_TOKEN_CREDENTIAL, environ))
