"""An inbox row's body as a delivery for the detector: unpacked by the one definition of a valid body
(``sentinel.okta``), or quarantined whole with the reason; never lost, never retried forever."""

from __future__ import annotations

import logging

from sentinel.errors import PayloadError
from sentinel.okta import Delivery, Quarantined, parse_delivery

__all__ = ["MAX_REASON_CHARS", "quarantined_whole", "unpack_body"]

log = logging.getLogger("sentinel.detector")
MAX_REASON_CHARS = 500


def unpack_body(row_id: int, body: bytes) -> Delivery:
    """A stored body as a delivery. Intake checked it with the same definition of a valid body, so a
    body that fails here (a bug, a limit nobody foresaw, a file edited by hand) is quarantined whole,
    with the reason, rather than lost or retried forever."""
    try:
        return parse_delivery(body)
    except PayloadError as e:
        return quarantined_whole(row_id, body, e.location, e.message)
    except Exception as e:
        log.exception("okta delivery %d: unpacking failed; quarantined whole", row_id)
        return quarantined_whole(row_id, body, "$", f"cannot be unpacked: {type(e).__name__}: {e}")


def quarantined_whole(row_id: int, body: bytes, location: str, reason: str) -> Delivery:
    # The reason may quote hostile text (an exception's message): kept short and storable as UTF-8.
    reason = reason.encode("utf-8", "backslashreplace").decode("utf-8")[:MAX_REASON_CHARS]
    return Delivery(events=(), quarantined=(
        Quarantined(path=f"delivery {row_id}: {location}", reason=reason,
                    raw=body.decode("utf-8", "backslashreplace")),))
