"""The built-in ``log`` channel: one JSON line per alert appended to a file, plus one log line.

Needs no external account, so ``make run`` shows alerts arriving. The write is flushed and fsynced
before the delivery counts as sent, so "sent" means "on disk".

Exactly once across a crash: a kill between the fsync and the store's "sent" has the line resent after
the restart. So the first write of a channel reads the file's tail once and remembers each alert's last
line there; a record identical to its alert's last line is already written and is not appended again.
Identical, not just the same alert_key: a reopened alert or a fallback report is a new record.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
from pathlib import Path
from typing import Any

from sentinel import private_files
from sentinel.model import Alert, DeliveryOutcome, Severity
from sentinel.render.message import DEFAULT_OPTIONS, RenderOptions, log_record, resolved_message

log = logging.getLogger("sentinel.alerts")

# The crash window is the one line in flight per channel: the tail holds it with room to spare, and is
# read once per channel (not per alert: alerts files grow large).
TAIL_BYTES = 64 * 1024


class LogChannel:
    kind = "log"

    def __init__(self, name: str, path: Path, min_severity: Severity = Severity.INFO,
                 options: RenderOptions = DEFAULT_OPTIONS) -> None:
        self.name = name
        self.path = path
        self.min_severity = min_severity
        self.options = options
        self._last: dict[str, bytes] | None = None  # alert_key -> its last line in the tail; read at first write

    def describe(self) -> list[str]:
        return [f"log://{self.path}"]

    def formats(self) -> list[tuple[str, str]]:
        return [(f"log://{self.path}", "log")]

    async def send(self, alert: Alert) -> DeliveryOutcome:
        """One alert, one line, one fsync (one line at a time: a crash leaves at most the line in flight
        unrecorded, and that one is not written again). Rendered and logged in a worker thread: never on
        the daemon's event loop."""
        return await self._send(alert, resolved=False)

    async def resolve(self, alert: Alert, notes: bool) -> DeliveryOutcome:
        """resolve_after closed the alert's group: a record saying so (with ``notes``, send_resolved)."""
        if not notes:
            return DeliveryOutcome(ok=True, detail=f"log://{self.path}: nothing to resolve")
        return await self._send(alert, resolved=True)

    async def send_each(self, alert: Alert) -> list[tuple[str, DeliveryOutcome]]:
        return [(f"log://{self.path}", await self.send(alert))]

    async def _send(self, alert: Alert, resolved: bool) -> DeliveryOutcome:
        try:
            written = await asyncio.to_thread(self._write, alert, resolved)
        except OSError as e:
            return DeliveryOutcome(ok=False, detail=f"log://{self.path}: {e.strerror or type(e).__name__}")
        return DeliveryOutcome(ok=True, detail=f"log://{self.path}: {'written' if written else 'already written'}")

    def _write(self, alert: Alert, resolved: bool) -> bool:
        record = log_record(alert, self.options)
        if resolved:
            note = resolved_message(alert, self.options)
            record.update(resolved=True, title=note.title, sentence=note.body)
        if not self._append(record):
            log.info("alert %s already in %s: not written again", record["alert_key"], self.path,
                     extra={"channel": self.name})
            return False
        if not resolved:
            log.info("alert %s [%s] %s: %s", record["rule_id"], record["severity"], record["title"],
                     record["sentence"], extra={"channel": self.name})
        return True

    def _append(self, record: dict[str, Any]) -> bool:
        """Append ``record`` unless it is already its alert's last line. False when already there."""
        key = record["alert_key"]
        line = json.dumps(record, ensure_ascii=False, sort_keys=True).encode() + b"\n"
        fd = private_files.open_append(self.path)
        with os.fdopen(fd, "ab") as fh:
            fcntl.flock(fd, fcntl.LOCK_EX)  # another channel on this file never sees our line half written
            try:
                if self._last is None:
                    self._last = _read_tail(fd)
                if self._last.get(key) == line:
                    return False
                fh.write(line)
                fh.flush()
                os.fsync(fd)
            except OSError:
                self._last = None  # a write may have stopped part-way: read the tail again before the next
                raise
            if key in self._last:  # only the tail's alerts are tracked: memory stays bounded
                self._last[key] = line
        return True


def _read_tail(fd: int) -> dict[str, bytes]:
    """Each alert_key's last line among the file's last TAIL_BYTES, once a torn last line is cut off.

    A torn line (a crash or a full disk mid-write) is a record never counted as sent: it is written again
    whole, so its part is cut, keeping the file one JSON object per line."""
    size = os.fstat(fd).st_size
    start = max(0, size - TAIL_BYTES)
    tail = os.pread(fd, size - start, start)
    end = tail.rfind(b"\n") + 1
    if end < len(tail):
        if end or not start:
            os.ftruncate(fd, start + end)
        else:  # a part longer than the tail: where it starts is unknown, so it stays, on its own line
            os.write(fd, b"\n")
    last: dict[str, bytes] = {}
    lines = tail[:end].split(b"\n")[:-1]
    for line in lines[1:] if start else lines:  # the tail's first line may be the end of a longer one
        try:
            key = json.loads(line)["alert_key"]
        except (ValueError, TypeError, KeyError):
            continue
        if isinstance(key, str):
            last[key] = line + b"\n"
    return last
