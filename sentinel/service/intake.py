"""What ``/hooks/okta`` needs from the daemon: the secrets to compare, the body stored durably in the
inbox, and the detector woken to unpack it. Nothing here parses: the endpoint checks, the detector splits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from sentinel.clock import Clock
from sentinel.config import OktaSettings
from sentinel.errors import StoreError
from sentinel.service.health import Health
from sentinel.service.metrics import Metrics
from sentinel.store import Store


class Intake:
    def __init__(self, okta: OktaSettings, max_body: int, store: Store, health: Health,
                 wake_detector: Callable[[], None], metrics: Metrics, clock: Clock) -> None:
        self.okta = okta
        self.auth_header = okta.auth_header.lower().encode("latin-1")
        self.max_body = max_body
        self._store = store
        self._health = health
        self._wake_detector = wake_detector
        self._metrics = metrics
        self._clock = clock
        self._wake_scheduled = False

    def authorized(self, presented: bytes | None) -> bool:
        okta = self.okta
        if not okta.secrets:
            return okta.allow_unauthenticated
        if presented is None:
            return False
        # Header bytes are Latin-1 text (as Starlette reads them); a secret is compared as UTF-8.
        candidate = presented if presented.isascii() else presented.decode("latin-1").encode("utf-8")
        # Check every secret so the time taken does not say which one (or whether any) is close.
        results = [secret.matches(candidate) for secret in okta.secrets]
        return any(results)

    async def store_delivery(self, body: bytes) -> None:
        """Store the delivery in the inbox, durably, and have the detector unpack it. Raises StoreError
        (readiness then says "store: failing" until a delivery is stored again)."""
        try:
            await self._store.receive(body)
        except StoreError:
            self._health.delivery_failed()
            raise
        self._health.delivery_stored()
        # One wake-up for all the deliveries stored in one turn of the event loop.
        if not self._wake_scheduled:
            self._wake_scheduled = True
            asyncio.get_running_loop().call_soon(self._wake)

    def _wake(self) -> None:
        self._wake_scheduled = False
        self._metrics.last_event_time.set(self._clock.now().timestamp())  # once a loop turn, not per request
        self._wake_detector()
