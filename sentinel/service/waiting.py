"""The one way a service loop sleeps: until any of its events is set, or a timeout."""

from __future__ import annotations

import asyncio


async def wait_for_any(seconds: float, *events: asyncio.Event) -> None:
    """Sleep up to ``seconds``, ending early when any of ``events`` is set (a stop or a wake-up).

    Returns normally either way; the caller looks at its events to tell why it woke.
    """
    waiters = {asyncio.ensure_future(event.wait()) for event in events}
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
