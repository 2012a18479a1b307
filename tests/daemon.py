"""Run the real daemon (``python -m sentinel serve``) in a subprocess on a free port, for tests."""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

SECRET = "test-secret-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(folder: Path, extra: str = "", port: int | None = None, rules: str = "rules") -> Path:
    """A config in ``folder`` with a fresh port, a store and log channel under ``folder/state``."""
    port = port or free_port()
    config = folder / "sentinel.toml"
    config.write_text(
        f"""
[server]
host = "127.0.0.1"
port = {port}

[storage]
path = "state/sentinel.db"

[rules]
paths = ["{rules}"]

[channels.log]
kind = "log"
path = "state/alerts.jsonl"
{extra}
""",
        encoding="utf-8",
    )
    (folder / rules).mkdir(exist_ok=True)
    return config


class Daemon:
    def __init__(self, config: Path, env: dict[str, str] | None = None, secret: str | None = SECRET,
                 command: list[str] | None = None, umask: int = -1, port: int | None = None,
                 nofile: int | None = None) -> None:
        """``command``: how `sentinel` is run: ``python -m sentinel`` by default, the installed script as the
        systemd unit does, or tests/e2e_launch.py (Apprise pointed at a capture server).
        ``port``: start with ``serve --port PORT`` (as ``make run PORT=…`` does) instead of the config's.
        ``nofile``: the daemon's file-descriptor limit (RLIMIT_NOFILE), as systemd's LimitNOFILE= sets it."""
        self.config = config
        self.command = command or [sys.executable, "-m", "sentinel"]
        self.umask = umask  # -1: the test process's
        self.nofile = nofile
        self.env = dict(os.environ)
        self.env.pop("SENTINEL_OKTA_SECRET", None)
        self.env.pop("SENTINEL_OKTA_SECRET_PREVIOUS", None)
        if secret is not None:
            self.env["SENTINEL_OKTA_SECRET"] = secret
        self.env.update(env or {})
        self.secret = secret
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = config.parent / "daemon.log"
        text = config.read_text(encoding="utf-8")
        self.port = port or int(text.split("port = ", 1)[1].split()[0])
        self.args = ["--port", str(port)] if port else []
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> Daemon:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [*self.command, "serve", "--config", str(self.config), *self.args],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.config.parent, umask=self.umask,
            preexec_fn=self._limit_fds if self.nofile is not None else None,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=0.5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"daemon did not start:\n{self.log()}")

    def _limit_fds(self) -> None:
        assert self.nofile is not None
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    def headers(self, **extra: str) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.secret:
            headers["Authorization"] = self.secret
        headers.update(extra)
        return headers

    def post(self, body: Any, **kwargs: Any) -> httpx.Response:
        content = body if isinstance(body, (bytes, str)) else __import__("json").dumps(body)
        headers = kwargs.pop("headers", None) or self.headers()
        return httpx.post(f"{self.url}/hooks/okta", content=content, headers=headers, timeout=10, **kwargs)

    def alive(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode if self.proc else 0
