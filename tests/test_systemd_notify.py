"""sd_notify against a real AF_UNIX datagram socket standing in for systemd's NOTIFY_SOCKET."""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sentinel.service import systemd


class FakeSystemd:
    """Binds a datagram socket and collects (arrival time, message) in a background thread."""

    def __init__(self, address: str) -> None:
        self.env_value = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(0.05)
        self.messages: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            with self._lock:
                self.messages.append((time.monotonic(), data.decode()))

    def received(self) -> list[str]:
        with self._lock:
            return [m for _, m in self.messages]

    def arrival_times(self) -> list[float]:
        with self._lock:
            return [t for t, _ in self.messages]

    def wait_for(self, count: int, timeout: float = 2.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.received()) < count:
            time.sleep(0.01)
        return self.received()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # AF_UNIX paths are limited to 108 bytes; pytest's tmp_path can be longer than that.
    with tempfile.TemporaryDirectory(prefix="sdn") as d:
        yield Path(d)


@pytest.fixture(params=["path", "abstract"])
def fake(request: pytest.FixtureRequest, short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSystemd]:
    address = str(short_dir / "notify") if request.param == "path" else f"@sentinel-test-{uuid.uuid4().hex}"
    server = FakeSystemd(address)
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield server
    server.close()


def test_messages_arrive_in_order_on_path_and_abstract_sockets(fake: FakeSystemd) -> None:
    assert systemd.notify("STATUS=hello")
    assert systemd.ready("serving")
    assert systemd.stopping()
    assert fake.wait_for(3) == ["STATUS=hello", "READY=1\nSTATUS=serving", "STOPPING=1"]


def test_reloading_carries_the_monotonic_time_of_sending(fake: FakeSystemd) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert systemd.reloading("reloading rules")
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    [message] = fake.wait_for(1)
    fields = dict(line.split("=", 1) for line in message.splitlines())
    assert fields["RELOADING"] == "1"
    assert fields["STATUS"] == "reloading rules"
    assert before <= int(fields["MONOTONIC_USEC"]) <= after


def test_a_status_text_cannot_inject_other_assignments(fake: FakeSystemd) -> None:
    assert systemd.status("bad\nREADY=1")
    assert systemd.ready("two\nlines")
    assert fake.wait_for(2) == ["STATUS=bad READY=1", "READY=1\nSTATUS=two lines"]


def test_extend_timeout_is_sent_in_microseconds(fake: FakeSystemd) -> None:
    assert systemd.extend_timeout(2.5)
    assert fake.wait_for(1) == ["EXTEND_TIMEOUT_USEC=2500000"]


def test_without_notify_socket_every_call_is_a_quiet_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.notify("READY=1") is False
    assert systemd.ready("x") is False
    assert systemd.reloading() is False
    assert systemd.stopping() is False


@pytest.mark.parametrize("address", ["/nonexistent-dir/notify", "@sentinel-nobody-listens", "vsock:2:1234"])
def test_an_unreachable_socket_returns_false_instead_of_raising(address: str) -> None:
    assert systemd.notify("READY=1", environ={"NOTIFY_SOCKET": address}) is False


@pytest.mark.parametrize(("env", "expected"), [
    ({}, None),
    ({"WATCHDOG_USEC": "30000000"}, 30.0),
    ({"WATCHDOG_USEC": "400000", "WATCHDOG_PID": str(os.getpid())}, 0.4),
    ({"WATCHDOG_USEC": "400000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),  # meant for another process
    ({"WATCHDOG_USEC": "400000", "WATCHDOG_PID": "x"}, None),
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
])
def test_watchdog_interval_from_the_environment(env: dict[str, str], expected: float | None) -> None:
    assert systemd.watchdog_interval(env) == expected


def _run_watchdog(seconds: float, is_healthy: Callable[[], bool]) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(systemd.watchdog(stop, is_healthy))
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.wait_for(task, timeout=2)

    asyncio.run(main())


def test_watchdog_pings_every_half_interval_while_healthy(fake: FakeSystemd,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # 0.2 s: a ping every 0.1 s
    _run_watchdog(1.0, lambda: True)
    pings = fake.wait_for(5)
    assert set(pings) == {"WATCHDOG=1"}
    # About 10 expected (t = 0, 0.1, … 0.9); generous bounds for a loaded CI machine.
    assert 5 <= len(pings) <= 14, pings


def test_watchdog_sends_nothing_while_unhealthy(fake: FakeSystemd, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "100000")
    _run_watchdog(0.5, lambda: False)
    time.sleep(0.1)
    assert fake.received() == []


def test_watchdog_stops_pinging_when_health_is_lost_and_resumes_when_it_returns(
        fake: FakeSystemd, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "100000")  # a ping every 0.05 s
    healthy = True
    phases: list[tuple[float, bool]] = []

    def is_healthy() -> bool:
        return healthy

    async def main() -> None:
        nonlocal healthy
        stop = asyncio.Event()
        task = asyncio.create_task(systemd.watchdog(stop, is_healthy))
        await asyncio.sleep(0.3)
        healthy = False
        phases.append((time.monotonic(), False))
        await asyncio.sleep(0.4)
        healthy = True
        phases.append((time.monotonic(), True))
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.wait_for(task, timeout=2)

    asyncio.run(main())
    time.sleep(0.1)
    times = fake.arrival_times()
    lost, back = phases[0][0], phases[1][0]
    assert len([t for t in times if t < lost]) >= 2
    assert [t for t in times if lost < t < back] == []
    assert len([t for t in times if t > back]) >= 2


def test_a_raising_health_check_counts_as_unhealthy(fake: FakeSystemd, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "100000")

    def broken() -> bool:
        raise RuntimeError("writer thread gone")

    _run_watchdog(0.3, broken)
    assert fake.received() == []


def test_watchdog_returns_at_once_without_a_watchdog(fake: FakeSystemd) -> None:
    async def main() -> None:
        await asyncio.wait_for(systemd.watchdog(asyncio.Event(), lambda: True), timeout=1)

    asyncio.run(main())
    assert fake.received() == []


def test_watchdog_ends_promptly_when_stopped_even_with_a_long_interval(fake: FakeSystemd) -> None:
    async def main() -> float:
        stop = asyncio.Event()
        task = asyncio.create_task(systemd.watchdog(stop, lambda: True, interval=120))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        stop.set()
        await asyncio.wait_for(task, timeout=2)
        return time.monotonic() - started

    assert asyncio.run(main()) < 1.0
    assert fake.wait_for(1) == ["WATCHDOG=1"]
