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


class ScriptedPauses:
    """The watchdog's wait between pings, scripted: each pause records its length, lets the test check the
    pings so far (``on_pause(turn)``) and stops the watchdog after ``turns`` pauses. No time passes."""

    def __init__(self, turns: int, on_pause: Callable[[int], None] = lambda turn: None) -> None:
        self.turns = turns
        self.on_pause = on_pause
        self.lengths: list[float] = []

    async def __call__(self, stop_event: asyncio.Event, seconds: float) -> None:
        self.lengths.append(seconds)
        self.on_pause(len(self.lengths) - 1)
        if len(self.lengths) >= self.turns:
            stop_event.set()


def _run_watchdog(pauses: ScriptedPauses, is_healthy: Callable[[], bool]) -> None:
    async def main() -> None:
        await asyncio.wait_for(systemd.watchdog(asyncio.Event(), is_healthy, pause=pauses), timeout=5)

    asyncio.run(main())


def test_watchdog_pings_every_half_interval_while_healthy(fake: FakeSystemd,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # 0.2 s: a ping every 0.1 s
    pauses = ScriptedPauses(turns=10)
    _run_watchdog(pauses, lambda: True)
    assert pauses.lengths == [0.1] * 10
    assert fake.wait_for(10) == ["WATCHDOG=1"] * 10  # one before each pause


def test_watchdog_sends_nothing_while_unhealthy(fake: FakeSystemd, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "100000")
    pauses = ScriptedPauses(turns=5)
    _run_watchdog(pauses, lambda: False)
    assert pauses.lengths == [0.05] * 5  # it kept checking, at the same cadence
    systemd.status("marker")  # anything sent before this datagram has arrived once it has
    assert fake.wait_for(1) == ["STATUS=marker"]


def test_watchdog_stops_pinging_when_health_is_lost_and_resumes_when_it_returns(
        fake: FakeSystemd, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "100000")  # a ping every 0.05 s
    healthy_turns = [True, True, True, False, False, False, False, True, True, True]
    turn = -1

    def is_healthy() -> bool:
        nonlocal turn
        turn += 1
        return healthy_turns[turn]

    def check_pings(paused_after: int) -> None:
        expected = sum(healthy_turns[:paused_after + 1])  # a ping for each healthy turn so far, no more
        assert len(fake.wait_for(expected)) == expected, (paused_after, fake.received())

    pauses = ScriptedPauses(turns=len(healthy_turns), on_pause=check_pings)
    _run_watchdog(pauses, is_healthy)
    assert turn == len(healthy_turns) - 1
    assert fake.received() == ["WATCHDOG=1"] * 6


def test_a_raising_health_check_counts_as_unhealthy(fake: FakeSystemd, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "100000")

    def broken() -> bool:
        raise RuntimeError("writer thread gone")

    pauses = ScriptedPauses(turns=3)
    _run_watchdog(pauses, broken)
    assert len(pauses.lengths) == 3  # the watchdog task lived on
    systemd.status("marker")
    assert fake.wait_for(1) == ["STATUS=marker"]


def test_watchdog_returns_at_once_without_a_watchdog(fake: FakeSystemd) -> None:
    async def main() -> None:
        await asyncio.wait_for(systemd.watchdog(asyncio.Event(), lambda: True), timeout=1)

    asyncio.run(main())
    assert fake.received() == []


def test_watchdog_ends_promptly_when_stopped_even_with_a_long_interval(fake: FakeSystemd) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(systemd.watchdog(stop, lambda: True, interval=120))  # the real pause: 60 s
        await asyncio.sleep(0)  # one turn: the first ping, then into the pause
        assert fake.wait_for(1) == ["WATCHDOG=1"]
        stop.set()
        await asyncio.wait_for(task, timeout=5)  # raises TimeoutError if the pause ignored the stop

    asyncio.run(main())
    assert fake.wait_for(1) == ["WATCHDOG=1"]
