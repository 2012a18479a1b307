"""Reading rule files: every problem of a file is collected as ``file: key.path: message``."""

from __future__ import annotations

from sentinel.errors import RuleError
from sentinel.model import Severity


class Problems:
    """Collects ``RuleError``s for one file; ``key`` paths are joined with dots."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.errors: list[RuleError] = []

    def add(self, key: str, message: str) -> None:
        location = f"{self.source}: {key}" if key else self.source
        self.errors.append(RuleError(message, location))


def severity(value: object, key: str, problems: Problems) -> Severity | None:
    try:
        if not isinstance(value, str):
            raise ValueError(f"unknown severity {value!r} (expected one of: info, low, medium, high, critical)")
        return Severity.parse(value)
    except ValueError as error:
        problems.add(key, str(error))
        return None
