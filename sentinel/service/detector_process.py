"""The detector in a process of its own, so intake's event loop has a CPU core (and a GIL) to itself.

The daemon (:class:`DetectorProcess`) starts ``python -m sentinel.detector_process``, hands it the
settings it needs over a socket pair, and from then on only wakes it (a byte on a pipe, never blocking
intake) and receives :class:`~sentinel.detector.DetectorReport` objects back for its metrics and its
dispatchers. The two talk through the store otherwise: the child unpacks the inbox and writes events,
alerts and rule state to the main database. If the child dies it is started again; nothing is lost,
since everything it had not committed is still in the store.

The child gets no secrets: the Okta secrets, the metrics token, the UI password and the channel URLs are
removed from its settings, and every variable that holds a secret from its environment. It runs only
Sentinel's own code: ``python -P`` keeps the working directory off ``sys.path`` (``-m`` would put it first, so a folder
named ``sentinel`` there would be imported instead).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import dataclasses
import fcntl
import gc
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Collection, Mapping
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sentinel.config import MetricsSettings, OktaSettings, Settings, UiSettings, secret_variables
from sentinel.service.detector import DetectorReport
from sentinel.service.detector_priority import lower_cpu_priority, lower_io_priority

if TYPE_CHECKING:
    from sentinel.service.detector import Detector
    from sentinel.store import Store

log = logging.getLogger("sentinel.detector")
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 15.0
RESTART_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)
HEALTHY_RUN_SECONDS = 60.0  # a child that ran this long resets the restart back-off
PR_SET_PDEATHSIG = 1


def child_settings(settings: Settings) -> Settings:
    """What the child may know: no Okta secret, no metrics token, no UI password, no channel URL (it only
    routes)."""
    channels = {name: dataclasses.replace(channel, urls=()) for name, channel in settings.channels.items()}
    return dataclasses.replace(settings, okta=OktaSettings(allow_unauthenticated=True), metrics=MetricsSettings(),
                               ui=UiSettings(), channels=channels)


def child_environment(secret_names: Collection[str], environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The daemon's environment without a secret: no variable the config names as one (channel ``${NAMES}``
    included), no ``CREDENTIALS_DIRECTORY``, no ``SENTINEL_`` variable at all (the child's settings come
    over the socket), and no ``PYTHONPATH`` entry relative to the working directory."""
    env = {k: v for k, v in environ.items() if k not in secret_names and not k.startswith("SENTINEL_")}
    if "PYTHONPATH" in env:
        kept = [entry for entry in env["PYTHONPATH"].split(os.pathsep) if os.path.isabs(entry)]
        if kept:
            env["PYTHONPATH"] = os.pathsep.join(kept)
        else:
            del env["PYTHONPATH"]
    return env


class DetectorProcess:
    """The daemon's side of the child process."""

    def __init__(self, settings: Settings, on_report: Callable[[DetectorReport], None]) -> None:
        self._settings = child_settings(settings)
        # Every secret variable any config so far named: a reload may drop a channel, not its variable.
        self._secret_names = set(secret_variables(settings))
        self._on_report = on_report
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._wake_fd = -1
        self._ready: asyncio.Future[int] | None = None
        self._reload_reply: asyncio.Future[tuple[bool, str, int]] | None = None
        self._stopping = False
        self._restart: asyncio.TimerHandle | None = None
        self._failures = 0
        self._started_at = 0.0
        self.rule_count = 0
        self.restarts = 0

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def healthy(self) -> bool:
        """Running, or waiting to be restarted (the daemon keeps taking events meanwhile)."""
        return self.running() or (self._restart is not None and not self._stopping)

    async def start(self) -> int:
        """Start the child and wait until it has loaded its state. Returns its rule count."""
        loop = asyncio.get_running_loop()
        parent, child = socket.socketpair()
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_write, False)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-P", "-m", "sentinel.service.detector_process",
                 "--conn-fd", str(child.fileno()), "--wake-fd", str(wake_read), "--parent", str(os.getpid()),
                 "--cpu-priority", self._settings.detector.cpu_priority,
                 "--io-priority", self._settings.detector.io_priority],
                pass_fds=(child.fileno(), wake_read), env=child_environment(self._secret_names),
                stdin=subprocess.DEVNULL)
        finally:
            child.close()
            os.close(wake_read)
        self._conn = Connection(parent.detach())
        self._wake_fd = wake_write
        self._ready = loop.create_future()
        self._conn.send(("settings", self._settings))
        loop.add_reader(self._conn.fileno(), self._readable)
        self._started_at = loop.time()
        try:
            self.rule_count = await asyncio.wait_for(asyncio.shield(self._ready), START_TIMEOUT_SECONDS)
        except BaseException:
            self._close()
            raise
        log.info("detector process %d running with %d rules", self._proc.pid, self.rule_count)
        return self.rule_count

    def wake(self) -> None:
        if self._wake_fd < 0:
            return
        try:
            os.write(self._wake_fd, b"w")
        except (BlockingIOError, BrokenPipeError):
            pass  # full: a wake is already waiting; broken: the child is gone and will be restarted

    async def reload(self, settings: Settings, evaluator: object = None) -> tuple[bool, str]:
        """Hand the child a new rule set (it builds its own ``evaluator`` from it). Returns (applied, problem)."""
        self._settings = child_settings(settings)
        self._secret_names |= secret_variables(settings)
        if not self.running() or self._conn is None:
            return True, ""  # a restart picks the new settings up
        self._reload_reply = asyncio.get_running_loop().create_future()
        self._conn.send(("reload", self._settings))
        try:
            ok, problem, count = await asyncio.wait_for(self._reload_reply, START_TIMEOUT_SECONDS)
        except TimeoutError:
            return False, "the detector process did not answer the reload"
        if ok:
            self.rule_count = count
        return ok, problem

    async def stop(self) -> None:
        """Ask the child to finish its batch and exit; kill it if it does not in time."""
        self._stopping = True
        if self._restart is not None:
            self._restart.cancel()
            self._restart = None
        proc = self._proc
        if proc is not None and proc.poll() is None and self._conn is not None:
            try:
                self._conn.send(("stop",))
            except OSError:
                pass
            try:
                await asyncio.wait_for(asyncio.to_thread(proc.wait), STOP_TIMEOUT_SECONDS)
            except TimeoutError:
                log.error("detector process %d did not stop in %.0f s; killed", proc.pid, STOP_TIMEOUT_SECONDS)
                proc.kill()
                await asyncio.to_thread(proc.wait)
        self._close()

    def _close(self) -> None:
        if self._conn is not None:
            try:
                asyncio.get_running_loop().remove_reader(self._conn.fileno())
            except (RuntimeError, ValueError, OSError):
                pass
            self._conn.close()
            self._conn = None
        if self._wake_fd >= 0:
            os.close(self._wake_fd)
            self._wake_fd = -1

    def _readable(self) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            while conn.poll():
                self._handle(conn.recv())
        except (EOFError, OSError):
            self._child_gone()

    def _handle(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "report":
            self._on_report(message[1])
        elif kind == "ready" and self._ready is not None and not self._ready.done():
            self._ready.set_result(int(message[1]))
        elif kind == "failed" and self._ready is not None and not self._ready.done():
            self._ready.set_exception(RuntimeError(f"detector process failed to start: {message[1]}"))
        elif kind == "reloaded" and self._reload_reply is not None and not self._reload_reply.done():
            self._reload_reply.set_result((bool(message[1]), str(message[2]), int(message[3])))

    def _child_gone(self) -> None:
        proc = self._proc
        self._close()
        if self._stopping or proc is None:
            return
        try:
            code = proc.wait(timeout=5)  # it closed its end: it is exiting
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        loop = asyncio.get_running_loop()
        if loop.time() - self._started_at >= HEALTHY_RUN_SECONDS:
            self._failures = 0
        delay = RESTART_DELAYS[min(self._failures, len(RESTART_DELAYS) - 1)]
        self._failures += 1
        log.error("detector process %d exited (code %s); restarting in %.0f s. Intake goes on: events wait in "
                  "the store", proc.pid, code, delay)
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(RuntimeError(f"detector process exited (code {code}) while starting"))
        self._restart = loop.call_later(delay, lambda: asyncio.ensure_future(self._restart_now()))

    async def _restart_now(self) -> None:
        self._restart = None
        if self._stopping:
            return
        self.restarts += 1
        try:
            await self.start()
        except Exception as e:
            log.error("detector process: restart failed: %s", e)
            if not self._stopping and self._restart is None:
                self._child_gone()


# ---- the child -------------------------------------------------------------------------------------


async def _child(conn: Connection, wake_fd: int, priority_error: str | None = None) -> None:
    from sentinel import log as sentinel_log
    from sentinel.delivery.routing import route

    kind, settings = conn.recv()
    assert kind == "settings"
    sentinel_log.configure(settings.logging.level, settings.logging.format)
    if priority_error is not None:
        logging.getLogger("sentinel.detector").warning(
            "could not lower the detector's priority as configured (%s): it competes more with intake", priority_error)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def routes(alert: Any) -> list[str]:
        return route(alert, settings.channels)

    def windows(now: Any) -> list[Any]:  # the [[maintenance]] windows of the current settings (reload swaps them)
        from sentinel.silences import window_silence

        return [s for window in settings.maintenance for s in window_silence(window, now)]

    def send(message: tuple[Any, ...]) -> None:
        try:
            conn.send(message)
        except OSError:
            stop.set()  # the daemon is gone

    # One detector per store, ever: a detector left by a daemon that was killed could otherwise still
    # be finishing a batch while the next one loads its state (and an event would be evaluated twice).
    lock = await asyncio.to_thread(_exclusive_lock, settings.storage.path)
    detector, store = await _start_detector(settings, routes, send)
    detector.silencer.maintenance = windows
    detector.checkpoint_restart = settings.detector.inbox_checkpoint == "restart"
    detector.yield_seconds = settings.detector.yield_ms / 1000
    gc.freeze()  # as the daemon does: long-lived objects out of the collector's full passes

    def wakes() -> None:
        try:
            data = os.read(wake_fd, 4096)
        except BlockingIOError:
            return
        if not data:  # the daemon closed its end
            loop.remove_reader(wake_fd)
            stop.set()
            return
        detector.wake()

    def commands() -> None:
        nonlocal settings
        try:
            while conn.poll():
                message = conn.recv()
                if message[0] == "stop":
                    stop.set()
                elif message[0] == "reload":
                    settings = message[1]  # ``routes`` reads the channels from here
                    send(_reload_rules(detector, settings, routes))
        except (EOFError, OSError):
            loop.remove_reader(conn.fileno())
            stop.set()

    os.set_blocking(wake_fd, False)
    loop.add_reader(wake_fd, wakes)
    loop.add_reader(conn.fileno(), commands)
    try:
        await detector.run(stop)
    finally:
        store.close()
        os.close(lock)


async def _start_detector(settings: Settings, routes: Callable[[Any], list[str]],
                          send: Callable[[tuple[Any, ...]], None]) -> tuple[Detector, Store]:
    """The detector on the store, its rule state loaded; the daemon is told it is ready, or why not."""
    from sentinel.clock import SystemClock
    from sentinel.rules.evaluator import RuleEvaluator
    from sentinel.service.detector import Detector
    from sentinel.store import Store

    clock = SystemClock()
    store = Store(settings.storage.path, intake=False)
    try:
        evaluator = RuleEvaluator.from_settings(settings.rules)
        store.start(clock.now())
        detector = Detector(store, evaluator, routes, clock, on_report=lambda r: send(("report", r)),
                            retention=settings.storage.retention)
        await detector.load_state()
    except Exception as e:
        send(("failed", f"{type(e).__name__}: {e}"))
        store.close()
        raise
    send(("ready", evaluator.rule_count))
    return detector, store


def _reload_rules(detector: Detector, settings: Settings, routes: Callable[[Any], list[str]]) -> tuple[Any, ...]:
    """Swap in the rules of reloaded settings, carrying the live state over; the reply for the daemon."""
    from sentinel.rules.evaluator import RuleEvaluator

    try:
        fresh = RuleEvaluator.from_settings(settings.rules)
    except Exception as e:
        return ("reloaded", False, str(e), 0)
    current = detector.evaluator
    successor = current.successor(fresh.ruleset, settings.rules.max_groups, settings.rules.allowed_lateness) \
        if isinstance(current, RuleEvaluator) else fresh
    detector.swap(successor, routes)
    return ("reloaded", True, "", successor.rule_count)


def _exclusive_lock(db_path: Path) -> int:
    """Hold an exclusive lock on ``<db>.detector.lock`` for the life of this process (waiting for it)."""
    fd = os.open(db_path.with_name(db_path.name + ".detector.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _die_with_parent(parent: int) -> None:
    """Linux: be killed when the daemon dies, even by SIGKILL, rather than run on unsupervised."""
    # Not Linux, or no ctypes: the socket's EOF still stops this process after its batch.
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the daemon died before the line above
        os._exit(1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Sentinel's detector process (started by `sentinel serve`)")
    parser.add_argument("--conn-fd", type=int, required=True)
    parser.add_argument("--wake-fd", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--cpu-priority", default="low")
    parser.add_argument("--io-priority", default="normal")
    args = parser.parse_args(argv)
    _die_with_parent(args.parent)
    # Answering Okta within its 3 s comes first: detection catches up after a burst (events wait in the
    # store). Before any thread starts, so every thread inherits it; the unit's syscall filter allows it.
    problems = [p for p in (lower_cpu_priority(args.cpu_priority), lower_io_priority(args.io_priority)) if p]
    priority_error = "; ".join(problems) or None
    # The daemon decides when this process stops (it says "stop", or its end of the socket closes):
    # Ctrl-C in a terminal and systemd's SIGTERM reach the whole group, and the daemon must not see
    # its detector exit before it has begun to stop. A SIGHUP reload is the daemon's to handle.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    conn = Connection(args.conn_fd)
    try:
        asyncio.run(_child(conn, args.wake_fd, priority_error))
    except Exception:
        logging.getLogger("sentinel.detector").exception("detector process failed")
        sys.exit(1)


if __name__ == "__main__":
    main()
