"""Who may use the triage page: one shared password (``[ui]``), typed into the login form (a signed session
cookie follows) or sent by scripts as HTTP Basic (any user name). Failed attempts are limited per client
address; every form carries a CSRF token tied to the session. The password is compared in constant time and
never logged."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import Request

from sentinel.secret import Secret

SESSION_USER = "user"
SESSION_CSRF = "csrf"
CSRF_FIELD = "csrf"
MAX_USER_LENGTH = 64


@dataclass(frozen=True)
class LimitPolicy:
    failures: int = 5  # failed attempts allowed per address within ``window_seconds``
    window_seconds: float = 60.0
    addresses: int = 10_000  # addresses tracked at most (the oldest forgotten first)


class LoginLimiter:
    """Failed logins per client address in a sliding window; past the limit, every attempt from that address
    is refused (even with the right password) until the window has passed."""

    def __init__(self, policy: LimitPolicy = LimitPolicy(), clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, address: str) -> deque[float]:
        now = self._clock()
        times = self._failures.get(address)
        if times is None:
            return deque()
        while times and now - times[0] >= self.policy.window_seconds:
            times.popleft()
        if not times:
            del self._failures[address]
        return times

    def retry_after(self, address: str) -> int:
        """0 when ``address`` may try; else the seconds until it may."""
        times = self._recent(address)
        if len(times) < self.policy.failures:
            return 0
        return max(1, int(self.policy.window_seconds - (self._clock() - times[0])) + 1)

    def failed(self, address: str) -> None:
        times = self._failures.setdefault(address, deque())
        times.append(self._clock())
        self._failures.move_to_end(address)
        while len(times) > self.policy.failures:
            times.popleft()
        while len(self._failures) > self.policy.addresses:
            self._failures.popitem(last=False)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def password_matches(password: Secret, candidate: str) -> bool:
    """Constant-time, and blind to the length too: both sides are hashed to one size before the compare."""
    expected = hashlib.sha256(password.reveal().encode("utf-8", "surrogateescape")).digest()
    given = hashlib.sha256(candidate.encode("utf-8", "surrogateescape")).digest()
    return hmac.compare_digest(expected, given)


def basic_credentials(request: Request) -> tuple[str, str] | None:
    """(user, password) from an ``Authorization: Basic`` header; None when absent or malformed."""
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def display_user(name: str) -> str:
    """A user name as typed (who acknowledged, who silenced): one line, bounded; 'on-call' when blank."""
    text = " ".join(name.split())[:MAX_USER_LENGTH]
    return text or "on-call"


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made on first use (the login form gets one before any login)."""
    token = request.session.get(SESSION_CSRF)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session[SESSION_CSRF] = token
    return token


def csrf_ok(request: Request, presented: object) -> bool:
    expected = request.session.get(SESSION_CSRF)
    return isinstance(expected, str) and isinstance(presented, str) and \
        hmac.compare_digest(expected.encode(), presented.encode())
