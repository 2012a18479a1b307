"""What can go wrong talking to the System Log API. Every message is safe to log: no secret, no
Authorization value, no client assertion or access token (only statuses, Okta error codes and what to fix)."""

from __future__ import annotations


class ApiError(Exception):
    """The request failed and retrying it now would not help (or the retry budget ran out)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AuthFailed(ApiError):
    """401/403 from the API or the token endpoint. ``hint`` says what to fix; not retried here."""

    def __init__(self, message: str, hint: str, status: int | None = None) -> None:
        super().__init__(f"{message}; {hint}", status)
        self.hint = hint


class CursorRejected(ApiError):
    """400 on a request that carried an ``after`` cursor: Okta no longer honours it (too old or unknown)."""


class RetryableError(ApiError):
    """429, 5xx or a network error: retried with a wait (``wait``: seconds the server asked for, if any)."""

    def __init__(self, message: str, status: int | None = None, wait: float | None = None) -> None:
        super().__init__(message, status)
        self.wait = wait
