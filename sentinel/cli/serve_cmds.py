"""``sentinel serve``, ``sentinel check``, ``sentinel events``."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import os
import secrets
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from sentinel import log as sentinel_log
from sentinel import private_files
from sentinel.cli.common import (
    config_option,
    echo,
    echo_json,
    error_lines,
    fail,
    hook_url,
    load_settings,
    remove_address,
    with_db,
    write_address,
)
from sentinel.config import SECRET_ENV, Settings, load_config
from sentinel.errors import SentinelError
from sentinel.secret import Secret, short_secret_warnings
from sentinel.service import systemd
from sentinel.service.instance import InstanceClash, StoreLock, listen

if TYPE_CHECKING:
    import uvicorn

    from sentinel.cli.compose import Daemon

log = logging.getLogger("sentinel")


def _local_secret(path: Path) -> tuple[Secret, bool]:
    """Read the local-use secret file, creating it (mode 0600) with a random value if missing."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        value = path.read_text(encoding="utf-8").strip()
        if not value:
            fail(f"{path}: the secret file is empty; delete it to have a new one generated")
        return Secret(value), False
    value = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")
    return Secret(value), True


def _with_local_secret(settings: Settings, path: Path) -> Settings:
    if settings.okta.secrets:
        click.echo(f"{SECRET_ENV} is set; ignoring --secret-file {path}", err=True)
        return settings
    secret, created = _local_secret(path)
    url = hook_url(settings.server.host, settings.server.port)
    header = settings.okta.auth_header
    if created:
        # Printed once, to the terminal of the person who asked for it; never logged.
        click.echo(f"Generated a local Okta secret in {path} (kept out of git).\n"
                   f"  In Okta's Event Hook, set the header {header}: {secret.reveal()}")
    else:
        click.echo(f"Using the local Okta secret in {path} (its content is the {header} header value).")
    click.echo(f"  Try it: curl -H \"{header}: $(cat {path})\" -H 'x-okta-verification-challenge: hello' {url}")
    return dataclasses.replace(settings, okta=dataclasses.replace(settings.okta, secrets=(secret,)))


def _claim(settings: Settings) -> tuple[StoreLock, socket.socket, socket.socket | None, socket.socket | None]:
    """Before anything starts: the store, then the ports (main, metrics, triage page). A second instance on the
    same store hears so (with the first one's pid) even when its port is taken too; a taken port leaves nothing
    created."""
    lock = StoreLock(settings.storage.path)
    sockets: list[socket.socket] = []
    metrics_socket = ui_socket = None
    try:
        lock.acquire(create=False)
        sockets.append(listen(settings.server.host, settings.server.port, "[server] host and port"))
        if settings.metrics.enabled and settings.metrics.listen:
            host, _, port = settings.metrics.listen.rpartition(":")
            metrics_socket = listen(host.strip("[]"), int(port), "[metrics] listen")
            sockets.append(metrics_socket)
        if settings.ui.listen:
            host, _, port = settings.ui.listen.rpartition(":")
            ui_socket = listen(host.strip("[]"), int(port), "[ui] listen")
            sockets.append(ui_socket)
        lock.acquire()
    except InstanceClash as e:
        for sock in sockets:
            sock.close()
        lock.release()
        fail(str(e))
    return lock, sockets[0], metrics_socket, ui_socket


def _serve(settings: Settings, reload_settings: Callable[[], Settings]) -> None:
    _lock, main_socket, metrics_socket, ui_socket = _claim(settings)  # held for the process's life; first: fail fast

    from sentinel.cli.compose import compose

    _start_logging(settings)
    try:
        daemon = compose(settings, reload_settings)
    except SentinelError as e:
        fail(error_lines(e))

    server, metrics_server, ui_server = _servers(settings, daemon, with_metrics=metrics_socket is not None)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        started = asyncio.Event()

        async def reload_when_started() -> None:
            await started.wait()
            await daemon.reloader.reload()

        # Installed before the server starts: a SIGHUP's default action would kill the process.
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(reload_when_started()))
        serving = asyncio.create_task(server.serve(sockets=[main_socket]), name="http")
        while not server.started and not serving.done():
            await asyncio.sleep(0.02)
        if serving.done():  # start-up failed (store unusable): uvicorn has logged why
            await serving
            sys.exit(3)
        extras = [(extra_server, asyncio.create_task(extra_server.serve(sockets=[sock]), name=name))
                  for name, extra_server, sock in (("metrics", metrics_server, metrics_socket),
                                                   ("ui", ui_server, ui_socket))
                  if extra_server is not None and sock is not None]
        stop = asyncio.Event()
        watchdog = asyncio.create_task(systemd.watchdog(stop, daemon.lifecycle.healthy), name="watchdog")
        log.info("sentinel listening on http://%s:%d/hooks/okta (store %s)", settings.server.host,
                 settings.server.port, settings.storage.path)
        if ui_server is not None:
            log.info("triage page on http://%s/ui/", settings.ui.listen)
        started.set()
        try:
            log.info("address written to %s (for `sentinel demo`)", write_address(settings))
        except OSError as e:
            log.warning("could not write the address file (`sentinel demo` then needs --url): %s", e)
        # Everything loaded so far (libraries, rules) lives as long as the process: keep it out of the
        # collector's full passes, which otherwise stall the loop for tens of milliseconds.
        gc.freeze()
        systemd.ready(f"listening on {settings.server.host}:{settings.server.port}, "
                      f"{daemon.health.rule_count} rules")
        try:
            await serving
        finally:
            stop.set()
            for extra_server, task in extras:
                extra_server.should_exit = True
                await task
            await watchdog

    # The loop uvicorn would pick itself (uvloop when installed): ``server.serve()`` inside a plain
    # ``asyncio.run`` would otherwise run on the slower stdlib loop.
    with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
        runner.run(main())


def _start_logging(settings: Settings) -> None:
    """Logging as configured, and the warnings about the Okta secret (never its value)."""
    sentinel_log.configure(settings.logging.level, settings.logging.format)
    for warning in short_secret_warnings(settings.okta.secrets):
        log.warning("%s", warning)
    if not settings.okta.secrets:
        log.warning("running WITHOUT authentication ([okta] allow_unauthenticated = true): anyone who can "
                    "reach %s:%d can post events", settings.server.host, settings.server.port)


def _servers(settings: Settings, daemon: Daemon, *,
             with_metrics: bool) -> tuple[uvicorn.Server, uvicorn.Server | None, uvicorn.Server | None]:
    """The main listener's server and, with their own sockets, the metrics listener's and the triage page's;
    one connection guard."""
    import uvicorn

    from sentinel.cli.compose import ui_app, web_apps
    from sentinel.web.http_guard import MAX_CONNECTIONS, ConnectionGuard, connection_cap

    class QuietServer(uvicorn.Server):
        """The metrics listener and the triage page: the main server alone handles SIGTERM/SIGINT (the last handler
        installed would otherwise win, and the main server would never hear the signal)."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    class MainServer(uvicorn.Server):
        """Says it stopped listening first thing on shutdown: uvicorn re-raises SIGTERM once it has
        stopped, which ends the process before any code after ``serve()``."""

        async def shutdown(self, sockets: Any = None) -> None:
            remove_address(settings)
            await super().shutdown(sockets)

    # One guard for both listeners: their connections share the process's file descriptors.
    closed = daemon.metrics.connections_closed
    guard = ConnectionGuard(connection_cap(), on_close=lambda reason: closed.labels(reason).inc())
    daemon.metrics.connections_open.set_function(lambda: len(guard.open))
    if guard.max_connections < MAX_CONNECTIONS:
        log.warning("the file-descriptor limit (RLIMIT_NOFILE) allows only %d connections, not %d: raise "
                    "LimitNOFILE=", guard.max_connections, MAX_CONNECTIONS)

    def server_for(app: Any, host: str, port: int, kind: type[uvicorn.Server] = uvicorn.Server) -> uvicorn.Server:
        # No WebSocket endpoint, so ws="none": an upgraded connection would also escape the guard.
        return kind(uvicorn.Config(
            app, host=host, port=port, log_config=None, access_log=False, lifespan="on",
            timeout_keep_alive=5, server_header=False, http=guard.protocol(), ws="none"))

    app, metrics_app = web_apps(daemon)
    server = server_for(app, settings.server.host, settings.server.port, MainServer)
    metrics_server = None
    if with_metrics and metrics_app is not None and settings.metrics.listen:
        host, _, port = settings.metrics.listen.rpartition(":")
        metrics_server = server_for(metrics_app, host.strip("[]"), int(port), QuietServer)
    triage = ui_app(daemon)
    ui_server = None
    if triage is not None and settings.ui.listen:
        host, _, port = settings.ui.listen.rpartition(":")
        ui_server = server_for(triage, host.strip("[]"), int(port), QuietServer)
    return server, metrics_server, ui_server


@click.command()
@config_option
@click.option("--host", help="Listen address (overrides [server] host).")
@click.option("--port", type=click.IntRange(1, 65535), help="Listen port (overrides [server] port).")
@click.option("--secret-file", type=click.Path(dir_okay=False, path_type=Path),
              help="For local use: read the Okta secret from this file, generating it if missing. "
                   f"Ignored when {SECRET_ENV} is set.")
def serve(config_path: Path, host: str | None, port: int | None, secret_file: Path | None) -> None:
    """Run the daemon: receive Okta Event Hooks, detect, alert."""
    # A reload requested while starting is moot (the config is read below): don't die of it.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    os.umask(private_files.UMASK)  # whatever else gets created (by a library too) is owner-only
    settings = load_settings(config_path)
    server = settings.server
    settings = dataclasses.replace(settings, server=dataclasses.replace(
        server, host=host or server.host, port=port or server.port))
    if secret_file is not None:
        settings = _with_local_secret(settings, secret_file)
    if not settings.okta.secrets and not settings.okta.allow_unauthenticated:
        fail([f"{config_path}: okta: no Okta secret configured: set {SECRET_ENV} (or the systemd "
              "credential 'okta-secret'); for local use pass --secret-file; to run without "
              "authentication set [okta] allow_unauthenticated = true"])

    def reload_settings() -> Settings:
        # Same overrides as at start; raises ErrorGroup, which the service reports and survives.
        fresh = load_config(config_path)
        fresh = dataclasses.replace(fresh, server=settings.server)
        if secret_file is not None and not fresh.okta.secrets:
            fresh = dataclasses.replace(fresh, okta=settings.okta)
        return fresh

    _serve(settings, reload_settings)


@click.command()
@config_option
@click.option("--last", default=20, show_default=True, type=click.IntRange(1, 100_000),
              help="How many of the newest events.")


@click.option("--type", "event_type", help="Only this eventType (a trailing * matches a prefix).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, with the full event.")
def events(config_path: Path, last: int, event_type: str | None, as_json: bool) -> None:
    """List stored events, oldest first."""
    rows = with_db(load_settings(config_path, secrets=False), lambda store: store.list_events(last, event_type))
    for row in rows:
        if as_json:
            echo_json(row)
        else:
            echo(_event_line(row))


@click.command()
@config_option
@click.option("--last", default=20, show_default=True, type=click.IntRange(1, 100_000),
              help="How many of the newest entries.")


@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, with the element as received.")
def quarantine(config_path: Path, last: int, as_json: bool) -> None:
    """List malformed events kept from deliveries, one record per delivery: id, when, JSON paths,
    reasons, the elements."""
    rows = with_db(load_settings(config_path, secrets=False), lambda store: store.list_quarantine(last))
    for row in rows:
        if as_json:
            echo_json(row)
        else:
            echo(_quarantine_line(row))


def register(main: click.Group) -> None:
    main.add_command(serve)
    main.add_command(events)
    main.add_command(quarantine)


def _quarantine_line(row: dict[str, Any]) -> str:
    # One record holds all of a delivery's bad elements: paths and reasons can be long too (--json: in full).
    return "  ".join([str(row["id"]), row["received_at"], _cut(row["path"], 300), _cut(row["reason"], 500),
                      _cut(row["body"], 200)])


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _event_line(row: dict[str, Any]) -> str:
    body = row["body"]
    actor = body.get("actor") if isinstance(body.get("actor"), dict) else {}
    outcome = body.get("outcome") if isinstance(body.get("outcome"), dict) else {}
    status = "evaluated" if row["evaluated_at"] else "pending"
    return "  ".join([row["published"], row["event_type"], str(actor.get("alternateId", "-")),
                      str(outcome.get("result", "-")), row["uuid"], status])
