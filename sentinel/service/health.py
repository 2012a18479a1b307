"""Readiness: what ``/readyz``, ``sentinel_ready{check}`` and the systemd status are made of.

The flags are set by the parts that know (intake on each delivery stored, the lifecycle at start,
the reloader); the details of a failure are logged where it happens.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from sentinel.errors import StoreError
from sentinel.store import Store

log = logging.getLogger("sentinel.service")
READY_CHECK_TIMEOUT_SECONDS = 2.0


class Health:
    def __init__(self, store: Store, detector_running: Callable[[], bool]) -> None:
        self._store = store
        self._detector_running = detector_running
        self.store_ok = False  # intake's last write to the store succeeded (set by each delivery stored)
        self.store_check_ok = True  # the last live check (``/readyz``) could take a write transaction
        self.rules_loaded = False
        self.last_reload_ok = True  # the last reload, if any, was applied (not rejected, not crashed)
        self.rule_count = 0  # rules in the active rule set (the detector's, once it runs)
        # The System Log poller's state for /readyz (None: no [okta.api]); never makes the daemon unready:
        # hook intake works without it.
        self.poll_state: Callable[[], dict[str, Any]] | None = None

    def poll_readiness(self) -> dict[str, Any] | None:
        return self.poll_state() if self.poll_state is not None else None

    def delivery_stored(self) -> None:
        if not self.store_ok:
            log.warning("store: deliveries are stored again")
            self.store_ok = True

    def delivery_failed(self) -> None:
        self.store_ok = False  # /readyz says "store: failing" until a delivery is stored

    async def check_store(self) -> None:
        """Can both store files take a write transaction now (no lock held elsewhere, no stuck writer)?
        For /readyz, and by the monitor while it fails. It cannot clear a failed delivery (``store_ok``):
        an empty transaction commits on a full disk too; only a delivery stored again does."""
        try:
            async with asyncio.timeout(READY_CHECK_TIMEOUT_SECONDS):
                await self._store.check_writable()
        except (StoreError, TimeoutError) as e:
            if self.store_check_ok:
                log.error("the store cannot take a write transaction: %s", str(e) or "timed out")
            self.store_check_ok = False
            return
        if not self.store_check_ok:
            log.info("the store takes write transactions again")
        self.store_check_ok = True

    def ready_checks(self) -> dict[str, bool]:
        """Each readiness check by name (the ``/readyz`` fields and ``sentinel_ready{check}``): True when
        it passes. ``last_reload`` is reported but does not make the daemon unready: it runs on."""
        return {"store": self.store_ok and self.store_check_ok, "rules_loaded": self.rules_loaded,
                "detector": self._detector_running(), "last_reload": self.last_reload_ok}
