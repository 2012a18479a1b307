"""The built-in ``log`` channel: one JSON line per alert appended to a file, plus one log line.

Needs no external account, so ``make run`` shows alerts arriving. The write is flushed and fsynced
before the delivery counts as sent, so "sent" means "on disk".
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path

from sentinel import private_files
from sentinel.model import Alert, DeliveryOutcome, Severity
from sentinel.render.message import DEFAULT_OPTIONS, RenderOptions, log_record, resolved_message

log = logging.getLogger("sentinel.alerts")


class LogChannel:
    kind = "log"

    def __init__(self, name: str, path: Path, min_severity: Severity = Severity.INFO,
                 options: RenderOptions = DEFAULT_OPTIONS) -> None:
        self.name = name
        self.path = path
        self.min_severity = min_severity
        self.options = options

    def describe(self) -> list[str]:
        return [f"log://{self.path}"]

    def formats(self) -> list[tuple[str, str]]:
        return [(f"log://{self.path}", "log")]

    async def send(self, alert: Alert) -> DeliveryOutcome:
        """One alert, one line, one fsync (one line at a time: a crash leaves at most the line in flight
        to be written again). Rendered and logged in a worker thread: never on the daemon's event loop."""
        try:
            await asyncio.to_thread(self._write, alert)
        except OSError as e:
            return DeliveryOutcome(ok=False, detail=f"log://{self.path}: {e.strerror or type(e).__name__}")
        return DeliveryOutcome(ok=True, detail=f"log://{self.path}: written")

    def _write(self, alert: Alert) -> None:
        record = log_record(alert, self.options)
        self._append(json.dumps(record, ensure_ascii=False, sort_keys=True))
        log.info("alert %s [%s] %s: %s", record["rule_id"], record["severity"], record["title"],
                 record["sentence"], extra={"channel": self.name})

    async def resolve(self, alert: Alert, notes: bool) -> DeliveryOutcome:
        """resolve_after closed the alert's group: a record saying so (with ``notes``, send_resolved)."""
        if not notes:
            return DeliveryOutcome(ok=True, detail=f"log://{self.path}: nothing to resolve")
        note = resolved_message(alert, self.options)
        record = {**log_record(alert, self.options), "resolved": True, "title": note.title, "sentence": note.body}
        try:
            await asyncio.to_thread(self._append, json.dumps(record, ensure_ascii=False, sort_keys=True))
        except OSError as e:
            return DeliveryOutcome(ok=False, detail=f"log://{self.path}: {e.strerror or type(e).__name__}")
        return DeliveryOutcome(ok=True, detail=f"log://{self.path}: written")

    async def send_each(self, alert: Alert) -> list[tuple[str, DeliveryOutcome]]:
        return [(f"log://{self.path}", await self.send(alert))]

    def _append(self, line: str) -> None:
        with os.fdopen(private_files.open_append(self.path), "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())
