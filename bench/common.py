"""Shared helpers for the benchmarks: event factories, child processes, a small HTTP/1.1 client, figures.

Nothing here talks to anything but 127.0.0.1. Every child process started through :class:`Processes`
is terminated (then killed) when the ``with`` block ends, on success, failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import os
import platform
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sentinel.store.inbox import inbox_path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DATA = BENCH / "data"
SECRET = "bench-secret-0123456789abcdef0123"
HOST = "127.0.0.1"
STALE_SECONDS = 3.0  # reuse a keep-alive connection only if idle for less (uvicorn closes them after 5 s)


# --- results -------------------------------------------------------------------------------------


@dataclass
class Target:
    """One checked target: ``value`` compared with ``limit`` (``higher`` is better or not)."""

    name: str
    value: float
    limit: float
    unit: str
    higher_is_better: bool = True

    @property
    def met(self) -> bool:
        return self.value >= self.limit if self.higher_is_better else self.value <= self.limit

    def line(self) -> str:
        op = ">=" if self.higher_is_better else "<="
        verdict = "PASS" if self.met else "MISS"
        return f"{verdict}  {self.name}: {self.value:,.1f} {self.unit} (target {op} {self.limit:,.0f} {self.unit})"


@dataclass
class Report:
    bench: str
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *args: Any, **kwargs: Any) -> Target:
        target = Target(*args, **kwargs)
        self.targets.append(target)
        print(target.line(), flush=True)
        return target

    def write(self, path: str | None) -> None:
        if path:
            Path(path).write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")


def arguments(doc: str | None, extra: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run (about a minute)")
    parser.add_argument("--json", metavar="FILE", help="also write the checked targets to FILE (for run_all)")
    if extra is not None:
        extra(parser)
    return parser.parse_args()


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[f"{c:,.1f}" if isinstance(c, float) else
                                            f"{c:,}" if isinstance(c, int) else str(c) for c in row]
                                           for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def rss_mb(pid: int | str = "self") -> float:
    """Resident set size (VmRSS) in MiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time used so far by process ``pid`` (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine() -> dict[str, str]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"nproc": str(os.cpu_count()), "cpu": cpu, "python": platform.python_version()}


def pin_to(cpu: int, pid: int = 0) -> None:
    """Run a process (this one by default) on one CPU (when the machine has more than one)."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > cpu:
        for task in Path(f"/proc/{pid or os.getpid()}/task").iterdir():  # every thread of it
            os.sched_setaffinity(int(task.name), {cpu})


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def detector_pid(daemon_pid: int) -> int:
    """The daemon's detector process (``sentinel serve`` starts exactly one child)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = children(daemon_pid)
        if found:
            return found[0]
        time.sleep(0.05)
    raise RuntimeError(f"daemon {daemon_pid} has no detector process")


def backlog(folder: Path) -> tuple[int, int]:
    """(deliveries not yet unpacked, events not yet evaluated) in the store under ``folder/state``."""
    db = folder / "state" / "sentinel.db"
    inbox = inbox_path(db)
    main = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    box = sqlite3.connect(f"file:{inbox}?mode=ro", uri=True, timeout=10)
    try:
        generation = box.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0]
        row = main.execute("SELECT last_id FROM inbox_cursor WHERE generation = ?", (generation,)).fetchone()
        waiting = box.execute("SELECT count(*) FROM received WHERE id > ?", (row[0] if row else 0,)).fetchone()[0]
        pending = main.execute("SELECT count(*) FROM events WHERE evaluated_at IS NULL").fetchone()[0]
        return int(waiting), int(pending)
    finally:
        main.close()
        box.close()


def drain(folder: Path, timeout: float = 300.0) -> float:
    """Seconds until the detector has unpacked and evaluated everything stored (NaN: not within timeout)."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if backlog(folder) == (0, 0):
            return time.monotonic() - began
        time.sleep(0.05)
    return float("nan")


# --- events --------------------------------------------------------------------------------------


def template(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def make_event(base: dict[str, Any], uuid: str, published: str, *, event_type: str | None = None,
               user: str | None = None, ip: str | None = None, result: str | None = None) -> dict[str, Any]:
    """A copy of ``base`` with its identity rewritten (the rest stays as Okta delivered it)."""
    event = copy.deepcopy(base)
    event["uuid"] = uuid
    event["published"] = published
    if event_type:
        event["eventType"] = event_type
    if user is not None:
        event.setdefault("actor", {})["alternateId"] = user
    if ip is not None:
        client = event.get("client") or {}
        client["ipAddress"] = ip
        event["client"] = client
    if result is not None:
        event["outcome"] = {"result": result, "reason": None if result == "SUCCESS" else "INVALID_CREDENTIALS"}
    return event


def envelope(events: list[dict[str, Any]]) -> dict[str, Any]:
    return {"eventType": "com.okta.event_hook", "eventTypeVersion": "1.0", "cloudEventsVersion": "0.1",
            "source": "https://example.okta.com/api/v1/eventHooks/whoBench", "eventId": "bench",
            "eventTime": "2026-01-01T00:00:00.000Z", "contentType": "application/json",
            "data": {"events": events}}


PLACEHOLDER = "@@N@@"
TIME_PATTERN = re.compile(r"@@P(\d+)@@")
TIME_BASE = 1_767_225_600  # 2026-01-01T00:00:00Z
TIME_STEP_MS = 50  # request n's event i is published at TIME_BASE + n * 50 ms + i ms


def batch_template(size: int, base: str = "session-start.json") -> str:
    """A delivery body of ``size`` events with placeholders filled per request by :func:`fill`: the uuids
    contain ``@@N@@`` (so every request carries new events and the store really inserts them, not just
    ignores duplicates) and ``published`` is ``@@P<i>@@`` (distinct times, as real events have)."""
    sample = template(base)
    events = [make_event(sample, f"{PLACEHOLDER}-{i}", f"@@P{i}@@",
                         user=f"user{i}@example.com", ip=f"198.51.100.{i % 250 + 1}") for i in range(size)]
    return json.dumps(envelope(events))


def fill(body: str, prefix: str, n: int) -> bytes:
    """Request ``n``'s body from a :func:`batch_template` (what bench/ingest.py's wrk script does in Lua)."""
    def published(match: re.Match[str]) -> str:
        ms = n * TIME_STEP_MS + int(match.group(1))
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(TIME_BASE + ms // 1000)) + f".{ms % 1000:03}Z"

    return TIME_PATTERN.sub(published, body.replace(PLACEHOLDER, f"{prefix}-{n}")).encode()


# --- processes -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def taskset(cpu: int | None) -> list[str]:
    if cpu is None or (os.cpu_count() or 1) <= cpu or not _which("taskset"):
        return []
    return ["taskset", "-c", str(cpu)]


def _which(name: str) -> bool:
    return any((Path(p) / name).exists() for p in os.environ.get("PATH", "").split(os.pathsep))


class Processes:
    """Starts child processes and always ends them: SIGTERM, then SIGKILL after a grace period."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Processes:
        # SIGTERM to the benchmark becomes SystemExit, so the ``finally`` clean-up runs.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(self.procs):
            self.stop(proc)

    def start(self, argv: list[str], *, log: Path, env: dict[str, str] | None = None,
              cwd: Path | None = None) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                    stdin=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    @staticmethod
    def stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def wait_http(port: int, path: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not come up:\n{log.read_text(errors='replace')[-3000:]}")


def sentinel_config(folder: Path, port: int, *, rules: str | Path = ROOT / "rules", channels: str = "",
                    level: str = "INFO", extra: str = "") -> Path:
    """A Sentinel config with the store under ``folder`` (WAL, synchronous=FULL as always); ``extra``:
    more tables (e.g. ``[detector]``)."""
    if not channels:
        channels = '[channels.log]\nkind = "log"\npath = "state/alerts.jsonl"\n'
    config = folder / "sentinel.toml"
    config.write_text(f"""
[server]
host = "{HOST}"
port = {port}

[storage]
path = "state/sentinel.db"

[rules]
paths = ["{rules}"]
max_groups = 100000

{channels}

[logging]
level = "{level}"

{extra}
""", encoding="utf-8")
    return config


def start_sentinel(procs: Processes, folder: Path, config: Path, port: int, *, cpu: int | None = None,
                   launcher: list[str] | None = None, env: dict[str, str] | None = None,
                   ) -> subprocess.Popen[bytes]:
    """``python -m sentinel serve --config`` (or ``launcher``), as ``make run`` starts it."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SENTINEL_")}
    full_env["SENTINEL_OKTA_SECRET"] = SECRET
    full_env.update(env or {})
    argv = launcher or [sys.executable, "-m", "sentinel"]
    log = folder / "sentinel.log"
    proc = procs.start([*taskset(cpu), *argv, "serve", "--config", str(config)], log=log, env=full_env, cwd=folder)
    wait_http(port, "/healthz", proc, log)
    return proc


def start_bare(procs: Processes, folder: Path, port: int, *, cpu: int | None = None,
               durable: bool = False, check: bool = False) -> subprocess.Popen[bytes]:
    """``bench/bare_app.py``: json.loads and 204; with ``check``, Sentinel's parse instead; with
    ``durable``, Sentinel's parse and a durable commit of the body."""
    log = folder / "bare.log"
    extra = ["--durable", str(folder / "bare.inbox.db")] if durable else ["--check"] if check else []
    proc = procs.start([*taskset(cpu), sys.executable, str(BENCH / "bare_app.py"), "--port", str(port), *extra],
                       log=log)
    wait_http(port, "/healthz", proc, log)
    return proc


# --- a small HTTP/1.1 keep-alive client (asyncio), for fixed-rate and fallback closed-loop load --------


def request_bytes(path: str, body: bytes, headers: dict[str, str]) -> bytes:
    head = [f"POST {path} HTTP/1.1", f"Host: {HOST}", f"Content-Length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(HOST, port)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def send(self, raw: bytes) -> int:
        """Send one request, read the whole answer; return the status code."""
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length:
            await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        self.writer.close()


@dataclass
class LoadResult:
    sent: int
    ok: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    max_lag_ms: float = 0.0  # how late the client itself started a request (fixed rate only)
    unfinished: int = 0  # still unanswered ``drain_seconds`` after the last scheduled send (fixed rate only)
    # The slowest answered requests: (seconds from the start at which each was scheduled, latency ms), so a
    # stall can be placed in time (fixed rate only).
    slowest: list[tuple[float, float]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def p(self, q: float) -> float:
        return percentile(self.latencies_ms, q)


async def open_loop(port: int, make: Callable[[int], bytes], rate: float, seconds: float,
                    max_connections: int = 512, ok_status: int = 204, drain_seconds: float = 10.0,
                    on_sent: Callable[[int, float], None] | None = None) -> LoadResult:
    """Send request ``i`` at ``start + i / rate`` whatever happened to earlier ones (open loop).

    Latency is measured from the *scheduled* send time, so a stalled server cannot hide its stall by
    slowing the client down (no coordinated omission). Idle keep-alive connections are reused; a new
    one is opened when all are busy, up to ``max_connections``. Requests still unanswered
    ``drain_seconds`` after the last scheduled send are abandoned and counted as errors.
    """
    clock = time.perf_counter  # uvloop's loop.time() only has millisecond resolution
    idle: list[tuple[Connection, float]] = []
    opened = 0
    slots = asyncio.Semaphore(max_connections)
    latencies: list[float] = []
    timeline: list[tuple[float, float]] = []
    errors = 0
    total = int(rate * seconds)
    start = clock() + 0.05
    max_lag = 0.0

    async def one(i: int, scheduled: float) -> None:
        nonlocal opened, errors
        async with slots:
            conn = None
            while idle and conn is None:
                conn, last_used = idle.pop()
                if clock() - last_used > STALE_SECONDS:  # the server may have closed it (keep-alive timeout)
                    conn.close()
                    conn = None
            try:
                if conn is None:
                    conn = await Connection.open(port)
                    opened += 1
                if on_sent is not None:
                    on_sent(i, scheduled)
                status = await conn.send(make(i))
            except (OSError, asyncio.IncompleteReadError, ValueError):
                errors += 1
                if conn is not None:
                    conn.close()
                return
            latencies.append((clock() - scheduled) * 1000)
            timeline.append((scheduled - start, latencies[-1]))
            if status != ok_status:
                errors += 1
            idle.append((conn, clock()))

    tasks: set[asyncio.Task[None]] = set()
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            max_lag = max(max_lag, -delay)
        task = asyncio.create_task(one(i, scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    unfinished = 0
    if tasks:
        _, late = await asyncio.wait(list(tasks), timeout=drain_seconds)
        # An overloaded server: give up on what is still waiting, counted as errors with the time waited
        # so far (a lower bound), so the percentiles show the overload instead of hiding it.
        now = clock()
        for task in late:
            task.cancel()
        unfinished = len(late)
        latencies.extend([(now - start - total / rate) * 1000] * unfinished)
        errors += unfinished
    elapsed = clock() - start
    for conn, _ in idle:
        conn.close()
    latencies.sort()
    slowest = sorted(timeline, key=lambda t: t[1])[-5:][::-1]
    return LoadResult(total, len(latencies) - errors, errors, elapsed, latencies, max_lag * 1000, unfinished,
                      slowest)


async def closed_loop(port: int, make: Callable[[int], bytes], connections: int, seconds: float,
                      ok_status: int = 204) -> LoadResult:
    """``connections`` clients, each sending its next request as soon as the previous answer arrives."""
    clock = time.perf_counter
    latencies: list[float] = []
    counter = 0
    errors = 0
    deadline = clock() + seconds

    async def client() -> None:
        nonlocal counter, errors
        conn = await Connection.open(port)
        try:
            while clock() < deadline:
                counter += 1
                raw = make(counter)
                sent = clock()
                status = await conn.send(raw)
                latencies.append((clock() - sent) * 1000)
                if status != ok_status:
                    errors += 1
        finally:
            conn.close()

    started = clock()
    await asyncio.gather(*(client() for _ in range(connections)))
    elapsed = clock() - started
    latencies.sort()
    return LoadResult(len(latencies), len(latencies) - errors, errors, elapsed, latencies)


def run_async(coro: Any) -> Any:
    """Run a coroutine on uvloop when installed (a faster client), else asyncio."""
    with contextlib.suppress(ImportError):
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


@contextlib.contextmanager
def timer() -> Iterator[Callable[[], float]]:
    started = time.perf_counter()
    yield lambda: time.perf_counter() - started
