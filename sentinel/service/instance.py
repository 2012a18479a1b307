"""What one ``sentinel serve`` claims before it starts anything: its store and its listening ports.

The store is claimed with an exclusive ``flock`` on ``<store>.lock``, which holds the pid of the
instance that has it. The kernel drops the lock when that process dies, however it dies, so a stale
file never blocks a start. Each clash is one :class:`InstanceClash` whose text is the whole story.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from pathlib import Path

from sentinel import private_files
from sentinel.errors import SentinelError

LISTEN_BACKLOG = 2048  # uvicorn's default


class InstanceClash(SentinelError):
    """Another process has what this instance needs (the store, a port)."""


def lock_path(db_path: Path) -> Path:
    """``state/sentinel.db`` -> ``state/sentinel.db.lock``."""
    return db_path.with_name(db_path.name + ".lock")


class StoreLock:
    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self.path = lock_path(db_path)
        self._fd = -1

    @property
    def held(self) -> bool:
        return self._fd >= 0

    def acquire(self, *, create: bool = True) -> bool:
        """Take the lock without waiting and write our pid in it. ``create=False``: only if the lock file
        exists already (False otherwise, with nothing created). Raises InstanceClash if another has it."""
        if self.held:
            return True
        if create:
            private_files.create_file(self.path)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            if create:
                raise
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"pid {holder}" if holder else "a process that has not written its pid yet"
            raise InstanceClash(f"another sentinel serve ({who}) is running on this store; "
                                f"lock file {self.path}", str(self.db_path)) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return True

    def release(self) -> None:
        if self.held:
            os.close(self._fd)  # closing drops the flock; the file stays (unlinking it would race a starter)
            self._fd = -1


def _read_pid(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


def listen(host: str, port: int, what: str) -> socket.socket:
    """A socket bound and listening on ``host:port`` (as uvicorn would bind it), ready for uvicorn.
    Raises InstanceClash with one line when the address is taken or unusable."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
    except OSError as e:
        sock.close()
        reason = "the port is in use (by another sentinel, or another program)" if e.errno == errno.EADDRINUSE \
            else (e.strerror or type(e).__name__)
        address = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
        raise InstanceClash(f"cannot listen on {address} ({what}): {reason}", "sentinel serve") from None
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(False)
    return sock
