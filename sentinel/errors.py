"""The one error base class. Every error can say where it came from (file and key path)."""

from __future__ import annotations

from collections.abc import Iterable


class SentinelError(Exception):
    """Base of every error Sentinel raises on purpose.

    ``location`` is a file name and/or key path ("sentinel.toml: server.port",
    "data.events[3].uuid"); ``str()`` renders ``location: message``. Messages never carry secrets.
    """

    def __init__(self, message: str, location: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.location = location

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


class ConfigError(SentinelError):
    """One problem in a configuration file."""


class RuleError(SentinelError):
    """One problem in a rule file."""


class PayloadError(SentinelError):
    """An Okta delivery body that cannot be accepted at all (the location is a JSON path)."""


class StoreError(SentinelError):
    """The store could not do what was asked (disk full, locked, corrupt). The message says what failed."""


class RecordRejected(SentinelError):
    """The store refused one record (a constraint, a value SQLite cannot hold): that record's problem,
    not the store failing, so the caller sets the record aside instead of retrying it."""


class ErrorGroup(SentinelError):
    """Many problems found in one pass, reported together, one per line."""

    def __init__(self, errors: Iterable[SentinelError]) -> None:
        self.errors: tuple[SentinelError, ...] = tuple(errors)
        super().__init__("\n".join(str(e) for e in self.errors))

    def __str__(self) -> str:
        return self.message
