"""Every file the daemon writes is owner-only (0600, folders 0700), even started with a umask of 022."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from conftest import LOCK_RULE, alert_rules, envelope, make_event, stored, wait_for
from daemon import Daemon, write_config

from sentinel import private_files


def modes(folder: Path) -> dict[str, int]:
    """Mode of the folder itself ('.') and of everything under it, by relative path."""
    found = {".": stat.S_IMODE(folder.stat().st_mode)}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            found[str(path.relative_to(folder))] = stat.S_IMODE(path.stat().st_mode)
    return found


def test_the_daemons_files_are_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    (tmp_path / "rules" / "lock.toml").write_text(LOCK_RULE)
    d = Daemon(config, umask=0o022).start()
    try:
        assert d.post(envelope(make_event("perm-1", "user.account.lock"))).status_code == 204
        assert wait_for(lambda: alert_rules(tmp_path) == ["test-lock"])
        db = tmp_path / "state" / "sentinel.db"
        assert wait_for(lambda: stored(db, "SELECT status FROM deliveries") == ["sent"])
        found = modes(tmp_path / "state")
    finally:
        d.stop()
    # Everything it writes, present (the walk proves something), none readable by anyone else.
    assert {"sentinel.db", "sentinel.db-wal", "sentinel.db-shm", "sentinel.inbox.db", "sentinel.inbox.db-wal",
            "sentinel.inbox.db-shm", "sentinel.db.lock", "sentinel.db.detector.lock", "alerts.jsonl"} <= set(found)
    assert {name: oct(mode) for name, mode in found.items()
            if mode != (0o700 if name == "." else 0o600)} == {}


def test_missing_folders_are_made_0700_and_existing_ones_left_alone(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)  # the operator's choice
    previous = os.umask(0o022)
    try:
        assert private_files.create_file(shared / "a" / "b" / "file")
        assert not private_files.create_file(shared / "a" / "b" / "file")  # there already: left as it is
    finally:
        os.umask(previous)
    assert modes(shared) == {".": 0o755, "a": 0o700, "a/b": 0o700, "a/b/file": 0o600}
