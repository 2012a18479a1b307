"""systemd integration: readiness, reload/stop state and the watchdog, over the sd_notify protocol.

The protocol (sd_notify(3)) is one AF_UNIX datagram of newline-separated ``KEY=VALUE`` lines sent to
``$NOTIFY_SOCKET``; a leading ``@`` names a socket in the abstract namespace. Outside systemd there is no
``NOTIFY_SOCKET`` and every call is a no-op that returns False, so callers never need to check first.
Standard library only: libsystemd's bindings are not needed for a few datagrams.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping

from sentinel.service.waiting import wait_for_any

log = logging.getLogger(__name__)

# Bound the send: systemd's socket has a large queue, but a stuck receiver must not stall the event loop.
_SEND_TIMEOUT_SECONDS = 1.0


def _address(raw: str) -> str | None:
    if raw.startswith("@"):
        return "\0" + raw[1:]
    if raw.startswith("/"):
        return raw
    # systemd >= 254 also accepts vsock: addresses; the 252 we target only uses AF_UNIX.
    return None


def notify(message: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send one sd_notify message. True if it was sent, False without systemd or when sending failed."""
    env = os.environ if environ is None else environ
    raw = env.get("NOTIFY_SOCKET")
    if not raw:
        return False
    address = _address(raw)
    if address is None:
        log.warning("NOTIFY_SOCKET=%r is not an AF_UNIX address; not notifying systemd", raw)
        return False
    data = message.encode("utf-8")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(_SEND_TIMEOUT_SECONDS)
            sock.connect(address)
            sent = sock.send(data)
    except OSError as e:
        log.warning("could not notify systemd at %s: %s", raw, e)
        return False
    return sent == len(data)


def _with_status(head: str, status: str | None) -> str:
    if status is None:
        return head
    # A newline would start a new assignment: a status text must not be able to send READY=1 or worse.
    return f"{head}\nSTATUS={' '.join(status.splitlines())}"


def ready(status: str | None = None, environ: Mapping[str, str] | None = None) -> bool:
    """Startup (or a reload) is complete: Type=notify makes `systemctl start` wait for this."""
    return notify(_with_status("READY=1", status), environ)


def reloading(status: str | None = None, environ: Mapping[str, str] | None = None) -> bool:
    """A reload has begun; send ready() when it is done, whether the new config was taken or not.

    MONOTONIC_USEC= is only required by Type=notify-reload (systemd >= 253), which uses it to match the
    RELOADING=1 to the SIGHUP it sent; systemd 252 with Type=notify ignores it. Always sending it lets the
    unit move to notify-reload later with no code change.
    """
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify(_with_status(f"RELOADING=1\nMONOTONIC_USEC={usec}", status), environ)


def stopping(status: str | None = None, environ: Mapping[str, str] | None = None) -> bool:
    """Shutdown has begun (shown by `systemctl status` while in-flight work finishes)."""
    return notify(_with_status("STOPPING=1", status), environ)


def status(text: str, environ: Mapping[str, str] | None = None) -> bool:
    """Free-form one-line status for `systemctl status`."""
    return notify(f"STATUS={' '.join(text.splitlines())}", environ)


def extend_timeout(seconds: float, environ: Mapping[str, str] | None = None) -> bool:
    """Ask for more time than TimeoutStartSec=/TimeoutStopSec= (e.g. during a long store migration)."""
    return notify(f"EXTEND_TIMEOUT_USEC={max(0, round(seconds * 1_000_000))}", environ)


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """The watchdog timeout in seconds (WatchdogSec=), or None when no watchdog is set for this process."""
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    # WATCHDOG_PID names the process the watchdog is meant for; an inherited one belongs to someone else.
    pid = env.get("WATCHDOG_PID")
    if pid:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    return usec / 1_000_000


def _healthy(is_healthy: Callable[[], bool]) -> bool:
    try:
        return bool(is_healthy())
    except Exception:
        # A broken health check is unhealthy, not a reason for the watchdog task to die silently.
        log.exception("health check for the systemd watchdog raised")
        return False


async def wait_or_stop(stop_event: asyncio.Event, seconds: float) -> None:
    """Wait ``seconds`` of the event loop's time, or less when ``stop_event`` is set meanwhile."""
    await wait_for_any(seconds, stop_event)


async def watchdog(stop_event: asyncio.Event, is_healthy: Callable[[], bool], *,
                   interval: float | None = None, environ: Mapping[str, str] | None = None,
                   pause: Callable[[asyncio.Event, float], Awaitable[None]] = wait_or_stop) -> None:
    """Send WATCHDOG=1 every half interval while ``is_healthy()``, until ``stop_event`` is set.

    Running on the event loop makes each ping a liveness proof of the loop itself; ``is_healthy`` adds the
    parts the loop does not see (the store's writer thread, the detector). When pings stop, systemd kills
    the process after WatchdogSec= and Restart=on-failure starts it again. ``interval`` overrides
    WATCHDOG_USEC (seconds). Returns at once when there is no watchdog. ``pause(stop_event, seconds)`` is the
    wait between pings (the loop's clock); tests give a scripted one instead of sleeping.
    """
    period = watchdog_interval(environ) if interval is None else interval
    if period is None or period <= 0:
        return
    unhealthy = False
    while not stop_event.is_set():
        if _healthy(is_healthy):
            if unhealthy:
                log.warning("healthy again: resuming systemd watchdog pings")
                unhealthy = False
            notify("WATCHDOG=1", environ)
        elif not unhealthy:
            unhealthy = True
            log.error("not healthy: withholding systemd watchdog pings; systemd restarts the service "
                      "if this lasts %.0f s", period)
        await pause(stop_event, period / 2)
