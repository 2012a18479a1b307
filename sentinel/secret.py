"""Secrets as a type: masked in repr/str/format, revealed only where they are used."""

from __future__ import annotations

import hmac
from collections.abc import Sequence

# A short value can be guessed by anyone who can reach the hook; `make run` and the README make 43 characters.
MIN_SECRET_LENGTH = 32


class Secret:
    """A secret value. Printing, logging or formatting it shows ``***``; ``reveal()`` gives the text."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def matches(self, candidate: bytes) -> bool:
        """Constant-time comparison, so response timing says nothing about the secret."""
        return hmac.compare_digest(self._value.encode("utf-8"), candidate)

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __format__(self, spec: str) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("a Secret is not to be pickled")


def short_secret_warnings(secrets: Sequence[Secret]) -> list[str]:
    """One line per Okta secret (current, then previous) shorter than MIN_SECRET_LENGTH; never the value."""
    labels = ("the Okta secret", "the previous Okta secret")
    return [f"{label} is shorter than {MIN_SECRET_LENGTH} characters, so it is easier to guess; make a new one with "
            "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
            for label, secret in zip(labels, secrets, strict=False) if len(secret.reveal()) < MIN_SECRET_LENGTH]
