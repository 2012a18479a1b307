"""The poller's side of the store: a System Log page and the cursor after it commit in one inbox
transaction; the page is unpacked like a hook delivery; ``sentinel backfill`` appends beside the daemon."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import make_event

from sentinel.errors import StoreError
from sentinel.okta import parse_delivery
from sentinel.store import PollCursor, Store, open_inbox_for_cli
from sentinel.store.inbox import inbox_path

NOW = datetime(2026, 1, 1, tzinfo=UTC)
SOURCE = "https://example.okta.com"


def rows(db: Path) -> list[bytes]:
    conn = sqlite3.connect(inbox_path(db))
    try:
        return [bytes(r[0]) for r in conn.execute("SELECT body FROM received ORDER BY id")]
    finally:
        conn.close()


def page_body(*uuids: str) -> bytes:
    """A page as Okta's API sends it: a JSON array of LogEvents (spacing and key order Okta's, not ours)."""
    return json.dumps([make_event(u, "security.threat.detected") for u in uuids], indent=1).encode()


def test_a_page_and_its_cursor_are_stored_together_and_read_back_after_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    cursor = PollCursor(SOURCE, f"{SOURCE}/api/v1/logs?after=abc&limit=1000", None,
                        ("security.threat.detected", "zone.update"), NOW)
    store = Store(db)
    store.start(NOW)
    try:
        assert asyncio.run(store.poll_cursor(SOURCE)) is None
        asyncio.run(store.record_polled_page(page_body("p-1", "p-2"), cursor, NOW))
    finally:
        store.close()
    again = Store(db)
    again.start(NOW)
    try:
        assert asyncio.run(again.poll_cursor(SOURCE)) == cursor
        assert asyncio.run(again.poll_cursor("https://other.okta.com")) is None
    finally:
        again.close()
    (stored,) = rows(db)
    delivery = parse_delivery(stored)  # the detector's one unpacking path
    assert [e.uuid for e in delivery.events] == ["p-1", "p-2"] and not delivery.quarantined
    assert page_body("p-1", "p-2") in stored  # the page exactly as received


def test_an_empty_page_moves_only_the_cursor_and_every_type_is_none(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    store = Store(db)
    store.start(NOW)
    try:
        first = PollCursor(SOURCE, f"{SOURCE}/api/v1/logs?after=1", None, None, None)
        asyncio.run(store.record_polled_page(None, first, NOW))
        second = PollCursor(SOURCE, f"{SOURCE}/api/v1/logs?after=2", f"{SOURCE}/resume", None, NOW)
        asyncio.run(store.record_polled_page(None, second, NOW))
        assert asyncio.run(store.poll_cursor(SOURCE)) == second
    finally:
        store.close()
    assert rows(db) == []


def test_when_the_cursor_cannot_be_written_the_page_is_not_stored_either(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    store = Store(db)
    store.start(NOW)
    conn = sqlite3.connect(inbox_path(db))
    conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON poll_cursor BEGIN SELECT RAISE(ABORT, 'refused'); END")
    conn.commit()
    conn.close()
    try:
        with pytest.raises(StoreError):
            asyncio.run(store.record_polled_page(page_body("lost"), PollCursor(SOURCE, "u"), NOW))
        asyncio.run(store.receive(b'{"data":{"events":[]}}'))  # the inbox writer goes on
        assert asyncio.run(store.poll_cursor(SOURCE)) is None
    finally:
        store.close()
    assert rows(db) == [b'{"data":{"events":[]}}']


def test_backfill_appends_pages_beside_a_running_store(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    with pytest.raises(FileNotFoundError, match="has the daemon run"):
        open_inbox_for_cli(db)
    store = Store(db)
    store.start(NOW)
    try:
        cli = open_inbox_for_cli(db)
        try:
            cli.append_page(page_body("b-1"), NOW)
            asyncio.run(store.receive(b'{"data":{"events":[]}}'))  # the daemon's intake is not blocked
            cli.append_page(page_body("b-2"), NOW)
        finally:
            cli.close()
        assert [e.uuid for b in rows(db) for e in parse_delivery(b).events] == ["b-1", "b-2"]
    finally:
        store.close()
