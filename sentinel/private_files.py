"""Files and folders Sentinel creates are owner-only (files 0600, folders 0700), whatever the umask.

The store holds every Okta event (names, addresses, devices) and alerts.jsonl the alerts about them;
outside systemd (whose unit sets ``UMask=0077``) a usual umask of 022 would leave them readable by
every local user. Existing files and folders are left as they are: their mode is the operator's.
"""

from __future__ import annotations

import os
from pathlib import Path

FILE_MODE = 0o600
FOLDER_MODE = 0o700
# For a whole process: files created by code that does not go through this module (a library's) too.
UMASK = 0o077


def make_folders(folder: Path) -> None:
    """Create ``folder`` and each missing parent, 0700."""
    missing: list[Path] = []
    while not folder.exists():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    for path in reversed(missing):
        try:
            path.mkdir(mode=FOLDER_MODE)
        except FileExistsError:  # made meanwhile by someone else: theirs
            continue
        os.chmod(path, FOLDER_MODE)  # mkdir's mode is masked by the umask


def create_file(path: Path) -> bool:
    """Create ``path`` empty and 0600 if it does not exist (its folders too). True when created.

    Called before SQLite opens a database: SQLite makes a new database 0644 minus the umask, and gives
    the ``-wal`` and ``-shm`` files it makes later the database's mode.
    """
    make_folders(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, FILE_MODE)  # the open's mode is masked by the umask
    finally:
        os.close(fd)
    return True


def open_append(path: Path) -> int:
    """A descriptor appending to ``path`` (and reading it), created 0600 (with its folders) if missing."""
    create_file(path)
    return os.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
