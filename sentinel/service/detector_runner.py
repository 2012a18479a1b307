"""Where the detector runs, behind one interface: in a child process (``sentinel serve``:
sentinel/service/detector_process.py) or as a task in the daemon's own loop (tests, tools)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from sentinel.clock import Clock
from sentinel.config import Settings
from sentinel.delivery.routing import route
from sentinel.model import Alert
from sentinel.rules.evaluator import RuleEvaluator
from sentinel.service.detector import Detector, DetectorReport
from sentinel.silences import Silence, window_silence
from sentinel.store import Store


class DetectorRunner(Protocol):
    restarts: int

    async def start(self) -> int:
        """Load the state and start detecting; returns the rule count."""

    def wake(self) -> None: ...

    def running(self) -> bool: ...

    def healthy(self) -> bool:
        """For the watchdog: running, or about to be restarted."""

    async def reload(self, settings: Settings, evaluator: RuleEvaluator) -> tuple[bool, str]:
        """Take the new rules (already checked by the caller) for the next batch: (applied, problem)."""

    async def stop(self) -> None: ...


class InProcessDetector:
    """The detector as a task in this process's loop. ``detector`` is there to be driven step by step."""

    def __init__(self, settings: Settings, evaluator: RuleEvaluator, store: Store, clock: Clock,
                 on_report: Callable[[DetectorReport], None]) -> None:
        self._settings = settings
        self.detector = Detector(store, evaluator, self._route, clock, on_report=on_report,
                                 retention=settings.storage.retention, maintenance=self._windows)
        self._rule_count = evaluator.rule_count
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.restarts = 0

    def _route(self, alert: Alert) -> Sequence[str]:
        return route(alert, self._settings.channels)

    def _windows(self, now: datetime) -> list[Silence]:
        return [s for window in self._settings.maintenance for s in window_silence(window, now)]

    async def start(self) -> int:
        await self.detector.load_state()
        self._task = asyncio.create_task(self.detector.run(self._stop), name="detector")
        return self._rule_count

    def wake(self) -> None:
        self.detector.wake()

    def running(self) -> bool:
        return True  # it runs in the loop that asks; a crashed loop is the watchdog's business (healthy)

    def healthy(self) -> bool:
        return self._task is None or not self._task.done()

    async def reload(self, settings: Settings, evaluator: RuleEvaluator) -> tuple[bool, str]:
        current = self.detector.evaluator
        if isinstance(current, RuleEvaluator):  # carry rule state over to the rules that stay
            evaluator = current.successor(evaluator.ruleset, settings.rules.max_groups)
        self._settings = settings
        self.detector.swap(evaluator, self._route)
        self._rule_count = evaluator.rule_count
        return True, ""

    async def stop(self) -> None:
        """Finish the current batch and stop."""
        self._stop.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
