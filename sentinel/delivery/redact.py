"""Masking of channel secrets in log records and delivery details.

Apprise, requests and urllib3 log request URLs and error text that can carry webhook tokens and keys
(urllib3 logs ``POST /services/T/B/C`` at DEBUG). The secret parts of each configured URL are learnt
by comparing it with Apprise's privacy form: whatever the privacy form hides is a secret.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from urllib.parse import quote, unquote

MASK = "****"
_SPLIT = re.compile(r"[/:@?&=#,;+\s]+")
# Long opaque strings (webhook tokens, API keys) are masked even when not learnt from a URL.
_TOKEN_LIKE = re.compile(
    r"(?<![A-Za-z0-9_-])(?=[A-Za-z0-9_-]*\d)(?=[A-Za-z0-9_-]*[A-Za-z])[A-Za-z0-9_-]{20,}"
)
_NOT_SECRET = {"https", "http", "mailto", "mailtos", "json", "jsons", "slack", "pagerduty", "yes", "no"}
# Loggers whose records can contain a request URL or credentials.
LOGGERS = ("apprise", "urllib3.connectionpool", "requests")


def secret_parts(raw_url: str, privacy_url: str) -> set[str]:
    """The pieces of ``raw_url`` that Apprise's privacy form does not show (and their URL-encodings)."""
    shown = {p for p in _SPLIT.split(unquote(privacy_url)) if p}
    parts: set[str] = set()
    for piece in _SPLIT.split(unquote(raw_url)):
        if len(piece) >= 4 and piece not in shown and piece.lower() not in _NOT_SECRET:
            parts.update({piece, quote(piece, safe="")})
    # The whole userinfo (user:password) is a secret when the privacy form hides part of it.
    return parts


class Redactor:
    """Replaces known secrets and token-looking strings. Thread-safe: Apprise logs from worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()
        self._temporary: tuple[str, ...] = ()

    def learn(self, secrets: Iterable[str]) -> None:
        with self._lock:
            merged = set(self._secrets) | {s for s in secrets if len(s) >= 4}
            # Longest first, so a secret that contains another is masked whole.
            self._secrets = tuple(sorted(merged, key=len, reverse=True))

    def learn_temporarily(self, secrets: Iterable[str]) -> None:
        """Mask these until :meth:`forget_temporary` (a URL being parsed that may fail to load)."""
        with self._lock:
            self._temporary = tuple(sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True))

    def forget_temporary(self) -> None:
        with self._lock:
            self._temporary = ()

    def __call__(self, text: str) -> str:
        for secret in self._temporary + self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return _TOKEN_LIKE.sub(MASK, text)


class RedactingFilter(logging.Filter):
    """A logging filter that rewrites a record's message through a :class:`Redactor`."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not break logging
            message = str(record.msg)
        masked = self.redactor(message)
        if masked != message or record.args:
            record.msg, record.args = masked, None
        if record.exc_info and record.exc_info[1] is not None:
            # Exception text (e.g. a requests error with the URL) is rendered later by handlers.
            record.exc_text = self.redactor(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


REDACTOR = Redactor()
_FILTER = RedactingFilter(REDACTOR)


def install(loggers: Iterable[str] = LOGGERS) -> None:
    """Attach the shared filter (idempotent). Logger filters see only records made on that logger,
    so it goes on each logger that can carry a URL; Apprise's plugins all log on ``apprise``."""
    for name in loggers:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
