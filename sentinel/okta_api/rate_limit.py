"""Okta's rate-limit headers, and how long to wait before the next request.

``X-Rate-Limit-Reset`` is epoch seconds on Okta's clock, so the wait is ``Reset − Date`` of the same
response (the local clock may be off), counted from when the response arrived. On a concurrency 429 Limit
and Remaining are both 0 and Reset is an estimate: nothing is divided by Limit. Sentinel's share of the
bucket: at most ``floor(limit × share)`` requests of each window counting everyone's use (``Limit −
Remaining``), so the rest stays free for other integrations of the org.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime

from sentinel.clock import Clock

# A Reset further away than this is not believed (Okta's windows are one minute).
MAX_RESET_WAIT = 300.0
# Wait at least this long after a 429 whose Reset is already past or missing, so as not to hammer.
MIN_429_WAIT = 1.0


@dataclass(frozen=True)
class RateLimit:
    limit: int
    remaining: int
    reset_in: float  # seconds from the response to the window's reset, by Okta's clock (Reset − Date)

    @classmethod
    def from_headers(cls, headers: Mapping[str, str], local_now: datetime) -> RateLimit | None:
        """None when the headers are missing or not numbers. No ``Date``: the local time stands in."""
        try:
            limit = int(headers["x-rate-limit-limit"])
            remaining = int(headers["x-rate-limit-remaining"])
            reset = int(headers["x-rate-limit-reset"])
        except (KeyError, ValueError):
            return None
        try:
            date = parsedate_to_datetime(headers["date"]).timestamp()
        except (KeyError, TypeError, ValueError, IndexError):
            date = local_now.timestamp()
        return cls(max(limit, 0), max(remaining, 0), min(max(reset - date, 0.0), MAX_RESET_WAIT))

    @property
    def concurrency(self) -> bool:
        """The 0/0/estimate form of a concurrency 429: no per-minute numbers to go by."""
        return self.limit == 0


class RateBudget:
    """The last rate-limit state seen and the waits it implies (times on the clock's monotonic scale)."""

    def __init__(self, share: float, clock: Clock) -> None:
        self._share = share
        self._clock = clock
        self.last: RateLimit | None = None
        self._reset_at = 0.0

    def record(self, rate: RateLimit | None) -> None:
        if rate is not None:
            self.last = rate
            self._reset_at = self._clock.monotonic() + rate.reset_in

    def allowed(self, limit: int) -> int:
        """Requests per window Sentinel may use: its share, at least one."""
        return max(1, math.floor(limit * self._share))

    def wait_before_next(self) -> float:
        """Seconds to wait before the next request: until the reset once our share of the window is used."""
        rate = self.last
        left = self._reset_at - self._clock.monotonic()
        if rate is None or left <= 0 or rate.concurrency:
            return 0.0
        return left if rate.limit - rate.remaining >= self.allowed(rate.limit) else 0.0

    def wait_after_429(self, rate: RateLimit | None) -> float:
        """Until the reset Okta gave (to the second), at least MIN_429_WAIT."""
        return max(rate.reset_in if rate is not None else 0.0, MIN_429_WAIT)
