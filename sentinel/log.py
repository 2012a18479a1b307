"""Logging for journald (stderr): one line per event of interest, optional JSON, secrets redacted.

Redaction happens in a handler filter, so it covers every logger, Sentinel's and its libraries'
(Apprise logs URLs and keys at debug level). Values registered with :func:`register_secret` are
replaced with ``***`` in the final message, as is anything shaped like an Authorization header value.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from datetime import UTC, datetime

_secrets: set[str] = set()
_lock = threading.Lock()
_pattern: re.Pattern[str] | None = None
_AUTH_VALUE = re.compile(r"(?i)\b(authorization|x-api-key|token|apikey|api_key|password|secret)(\s*[:=]\s*)"
                         r"(bearer\s+|basic\s+|ssws\s+)?[^\s,;'\"}]+")
MIN_SECRET_LENGTH = 4


def register_secret(value: str) -> None:
    """Never let this value reach a log line."""
    global _pattern
    if len(value) < MIN_SECRET_LENGTH:
        return
    with _lock:
        _secrets.add(value)
        ordered = sorted(_secrets, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(s) for s in ordered))


def redact(text: str) -> str:
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub("***", text)
    return _AUTH_VALUE.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
            record.exc_text = None
        record.msg = redact(message)
        record.args = None
        return True


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
    handler.addFilter(RedactingFilter())
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
