"""Secrets as a type: masked in repr/str/format, revealed only where they are used."""

from __future__ import annotations

import hmac


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
