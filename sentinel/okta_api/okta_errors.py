"""Okta's error bodies, shortened to something safe to log."""

from __future__ import annotations

import re

import httpx

_UNPRINTABLE = re.compile(r"[^\x20-\x7e]+")
MAX_TEXT = 200


def _clean(value: object) -> str:
    text = _UNPRINTABLE.sub(" ", str(value)).strip()
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "…"


def describe_error(response: httpx.Response) -> str:
    """``HTTP 401 E0000011: Invalid token provided`` (Okta API) or ``HTTP 400 invalid_scope: …`` (OAuth)."""
    parts = [f"HTTP {response.status_code}"]
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = body.get("errorCode") or body.get("error")
        summary = body.get("errorSummary") or body.get("error_description")
        if code:
            parts.append(_clean(code) + (":" if summary else ""))
        if summary:
            parts.append(_clean(summary))
    return " ".join(parts)

