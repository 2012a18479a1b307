"""Secrets never reach a log line or a delivery detail: one registry, one mask, one logging filter.

What is masked (with ``****``):

* the secrets of the configuration in use: the Okta secret and the previous one during a rotation, the
  metrics token, every channel URL and the secret parts Apprise's privacy form hides in it;
* while a configuration is being loaded, the secrets of that one too (it may fail to load or be rejected);
* anything shaped like an Authorization value (``token=…``, ``Authorization: Bearer …``) or like an opaque
  token (20+ letters and digits), configured here or not.

The registry is *rebuilt*, not grown: a load stages the new secrets (:meth:`SecretRegistry.stage`); when the
daemon applies that configuration they replace the previous set (:meth:`SecretRegistry.apply_staged`), and
when it rejects it they are dropped (:meth:`SecretRegistry.discard_staged`). So a secret is masked exactly as
long as a live object may use it, and a secret from a configuration no longer in use stops being masked.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Iterable, Iterator
from urllib.parse import quote, unquote

MASK = "****"
MIN_SECRET_LENGTH = 4
_SPLIT = re.compile(r"[/:@?&=#,;+\s]+")
_NOT_SECRET = {"https", "http", "mailto", "mailtos", "json", "jsons", "slack", "pagerduty", "yes", "no"}
# Long opaque strings (webhook tokens, API keys) are masked even when not learnt from a URL.
_TOKEN_LIKE = re.compile(
    r"(?<![A-Za-z0-9_-])(?=[A-Za-z0-9_-]*\d)(?=[A-Za-z0-9_-]*[A-Za-z])[A-Za-z0-9_-]{20,}"
)
_AUTH_VALUE = re.compile(r"(?i)\b(authorization|x-api-key|token|apikey|api_key|password|secret)(\s*[:=]\s*)"
                         r"(bearer\s+|basic\s+|ssws\s+)?[^\s,;'\"}]+")
# Loggers whose records can contain a request URL or credentials (urllib3 logs ``POST /services/T/B/C``).
URL_LOGGERS = ("apprise", "urllib3.connectionpool", "requests")


def secret_parts(raw_url: str, privacy_url: str) -> set[str]:
    """The pieces of ``raw_url`` that Apprise's privacy form does not show (and their URL-encodings)."""
    shown = {p for p in _SPLIT.split(unquote(privacy_url)) if p}
    parts: set[str] = set()
    for piece in _SPLIT.split(unquote(raw_url)):
        if len(piece) >= MIN_SECRET_LENGTH and piece not in shown and piece.lower() not in _NOT_SECRET:
            parts.update({piece, quote(piece, safe="")})
    return parts


def url_pieces(raw_url: str) -> set[str]:
    """Every piece of a URL: what to hide while a URL that may not load is parsed."""
    return {p for p in re.split(r"[/:@?&=#,;+]+", raw_url) if len(p) >= MIN_SECRET_LENGTH}


class SecretRegistry:
    """The secrets to mask. Thread-safe: Apprise and urllib3 log from worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: frozenset[str] = frozenset()
        self._staged: frozenset[str] = frozenset()
        self._temporary: frozenset[str] = frozenset()
        self._kept: frozenset[str] = frozenset()
        self._pattern: re.Pattern[str] | None = None

    def stage(self, secrets: Iterable[str]) -> None:
        """Mask these from now on: secrets of a configuration being loaded (not yet applied)."""
        with self._lock:
            self._staged |= _usable(secrets)
            self._rebuild()

    def keep(self, secrets: Iterable[str]) -> None:
        """Mask these for the life of the process, whatever the reloads (a credential read once at start,
        like the System Log API's)."""
        with self._lock:
            self._kept |= _usable(secrets)
            self._rebuild()

    def apply_staged(self) -> None:
        """The staged configuration is now the one in use: its secrets replace the previous ones."""
        with self._lock:
            self._live, self._staged = self._staged, frozenset()
            self._rebuild()

    def discard_staged(self) -> None:
        """The staged configuration was rejected: the one in use stays, and so do its secrets."""
        with self._lock:
            self._staged = frozenset()
            self._rebuild()

    @contextlib.contextmanager
    def hiding(self, secrets: Iterable[str]) -> Iterator[None]:
        """Mask these only for the duration of the block (a URL being parsed that may not load)."""
        with self._lock:
            self._temporary = _usable(secrets)
            self._rebuild()
        try:
            yield
        finally:
            with self._lock:
                self._temporary = frozenset()
                self._rebuild()

    def known(self) -> frozenset[str]:
        with self._lock:
            return self._live | self._staged | self._temporary | self._kept

    def _rebuild(self) -> None:
        secrets = self._live | self._staged | self._temporary | self._kept
        # Longest first, so a secret that contains another is masked whole.
        ordered = sorted(secrets, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(s) for s in ordered)) if ordered else None

    def __call__(self, text: str) -> str:
        pattern = self._pattern
        if pattern is not None:
            text = pattern.sub(MASK, text)
        text = _TOKEN_LIKE.sub(MASK, text)
        return _AUTH_VALUE.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)


def _usable(secrets: Iterable[str]) -> frozenset[str]:
    return frozenset(s for s in secrets if len(s) >= MIN_SECRET_LENGTH)


class RedactingFilter(logging.Filter):
    """Rewrites a record's final message (exception text included) through a :class:`SecretRegistry`."""

    def __init__(self, registry: SecretRegistry) -> None:
        super().__init__()
        self.registry = registry

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not break logging
            message = str(record.msg)
        if record.exc_info and record.exc_info[1] is not None:
            # Folded into the message, so that every formatter (the JSON one too) shows it, masked.
            message += "\n" + logging.Formatter().formatException(record.exc_info)
        elif record.exc_text:
            message += "\n" + record.exc_text
        record.msg, record.args = self.registry(message), None
        record.exc_info, record.exc_text = None, None
        return True


SECRETS = SecretRegistry()
FILTER = RedactingFilter(SECRETS)


def redact(text: str) -> str:
    """``text`` with every known secret and token-looking string masked."""
    return SECRETS(text)


def install(loggers: Iterable[str] = URL_LOGGERS) -> None:
    """Put the filter on each logger that can carry a URL (idempotent). Logger filters see only records
    made on that logger; :func:`sentinel.log.configure` puts the same filter on the stderr handler."""
    for name in loggers:
        logger = logging.getLogger(name)
        if FILTER not in logger.filters:
            logger.addFilter(FILTER)
