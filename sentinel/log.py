"""Logging for journald (stderr): one line per event of interest, optional JSON, secrets redacted.

Redaction happens in a handler filter, so it covers every logger, Sentinel's and its libraries'
(Apprise logs URLs and keys at debug level): :mod:`sentinel.redaction` says what is masked.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from sentinel import redaction


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(level: str = "INFO", fmt: str = "text") -> None:
    """Send every logger to stderr through the redacting filter. Safe to call again (on reload)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(redaction.FILTER)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        # journald adds its own timestamps; a terminal user still wants one.
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Apprise is chatty and may echo URLs; keep it at warning unless debugging.
    logging.getLogger("apprise").setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
