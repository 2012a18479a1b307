"""The store: the only SQL in Sentinel. Two SQLite files, WAL, durable group commits: the main database
(events, alerts, deliveries, rule state; one writer thread) and the inbox (deliveries as received;
appended to by intake, see appender.py, and pruned by the detector).

Callers speak the domain (events, alerts, deliveries); no SQL, connection or SQLite error leaves this
package: a SQLite error becomes a :class:`~sentinel.errors.StoreError` (the store failing) or a
:class:`~sentinel.errors.RecordRejected` (one record refused), saying what failed."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from sentinel.clock import Clock, SystemClock
from sentinel.errors import RecordRejected
from sentinel.model import Alert, Event, format_timestamp
from sentinel.okta import Delivery, Quarantined
from sentinel.render.digest import HeldAlert
from sentinel.silences import Silence
from sentinel.store import alerts, deliveries, events, inbox, poll_cursor, resolve, retention, silences, storm, triage
from sentinel.store.alerts import EvaluationResult
from sentinel.store.appender import Appender
from sentinel.store.cli_store import CliInbox, CliStore, open_for_cli, open_inbox_for_cli
from sentinel.store.database import Reader, Writer, as_sentinel_error, connect
from sentinel.store.deliveries import DueDelivery
from sentinel.store.events import IngestResult
from sentinel.store.poll_cursor import PollCursor
from sentinel.store.retention import Pruned
from sentinel.store.schema import migrate, prepare_new_store
from sentinel.store.triage import AlertFilter

T = TypeVar("T")

__all__ = ["AlertFilter", "CliInbox", "CliStore", "DueDelivery", "EvaluationResult", "IngestResult", "MonitorSnapshot",
           "PollCursor", "Pruned", "Store", "connect", "open_for_cli", "open_inbox_for_cli"]


@dataclass(frozen=True, slots=True)
class MonitorSnapshot:
    """The queues' state for the daemon's gauges: timestamps are the store's text (``format_timestamp``)."""

    pending_events: int
    oldest_pending: str | None
    last_received: str | None
    dead_deliveries: dict[str, int]
    inbox_waiting: int
    oldest_in_inbox: str | None
    last_in_inbox: str | None


class Store:
    """Async access to the SQLite files for the daemon and the detector process. Each method is one job:
a write runs in the writer thread, in one transaction group-committed with others; a read in the reader
thread. The main database has two writers, this process and the other (detector or daemon), serialised
by SQLite's lock: see docs/architecture.md, "Store".

    ``intake=False`` is the detector process's view: it never appends to the inbox (the intake process
    is the inbox's only writer), and it does not migrate (the intake process did, before starting it).
    """

    def __init__(self, path: Path, *, intake: bool = True, clock: Clock | None = None) -> None:
        self.path = path
        clock = clock or SystemClock()
        self.inbox_path = inbox.inbox_path(path)
        self.intake = intake
        self._writer = Writer(path)
        self._reader = Reader(path)
        self._inbox_writer = Appender(self.inbox_path, lambda: format_timestamp(clock.now())) if intake else None
        self._inbox_reader = Reader(self.inbox_path)
        # The detector's side of the inbox: deleting what it has unpacked (a lost prune is redone).
        # secure_delete FAST, not the ON some builds default to (Debian's): zeroing each deleted body's
        # pages wrote it out again and made the checkpoint copy it (4.6 µs of CPU an event, more than the
        # rest of pruning). What is deleted is kept in the main database (events, quarantine) anyway, and
        # intake reuses the freed pages at once. When its commit, not intake's, is the one that starts a
        # long WAL over, it cuts the file back as intake's would (store/appender.py says why that matters).
        self._inbox_pruner = Writer(self.inbox_path, durable=False, secure_delete="FAST",
                                    wal_limit_pages=inbox.INTAKE_CHECKPOINT_FRAMES)
        self.inbox_generation = ""
        self._started = False

    def start(self, now: datetime) -> list[int]:
        """Create or migrate the schema (intake side), then start the writers. Returns the migrations applied."""
        applied: list[int] = []
        try:
            if self.intake:
                conn = connect(self.path)
                try:
                    prepare_new_store(conn)  # a new store only: before its first table
                    applied = migrate(conn, format_timestamp(now))
                finally:
                    conn.close()
            conn = connect(self.inbox_path)
            try:
                self.inbox_generation = inbox.prepare(conn) if self.intake else inbox.generation(conn)
            finally:
                conn.close()
        except sqlite3.Error as e:
            raise as_sentinel_error(e, f"opening {self.path}") from e
        self._writer.start()
        self._inbox_pruner.start()
        if self._inbox_writer is not None:
            self._inbox_writer.start()
        self._started = True
        return applied

    async def _write(self, fn: Callable[[sqlite3.Connection], T], what: str = "write") -> T:
        """Run ``fn`` in the writer thread inside a transaction; returns after its durable commit."""
        return await self._writer.run(fn, what)

    async def _read(self, fn: Callable[[sqlite3.Connection], T], what: str = "read") -> T:
        return await self._reader.run(fn, what)

    # --- the detector: inbox → events → evaluation -------------------------------------------------

    async def unpacked_upto(self) -> int:
        """The last inbox id whose deliveries are in the main database (0: none of this inbox's)."""
        generation = self.inbox_generation
        return await self._read(lambda c: inbox.unpacked_upto(c, generation), "reading the inbox cursor")

    async def waiting_deliveries(self, after: int) -> list[tuple[int, str, bytes]]:
        """The next stored delivery bodies after inbox id ``after``: (id, received_at, body), oldest first."""
        return await self._inbox_reader.run(lambda c: inbox.waiting(c, after), "reading the inbox")

    async def record_unpacked(self, last_id: int, unpacked: Sequence[tuple[str, Delivery]]) -> list[IngestResult]:
        """Store the events and quarantined elements of unpacked deliveries (received_at, delivery) and move
        the inbox cursor to ``last_id``, in one transaction."""
        generation = self.inbox_generation
        return await self._write(lambda c: inbox.record_unpacked(c, generation, last_id, unpacked),
                                 "storing unpacked deliveries")

    async def record_unpacked_evaluated(
            self, last_id: int, unpacked: Sequence[tuple[str, Delivery]], evaluated: int,
            new_alerts: Sequence[Alert], route: Callable[[Alert], Sequence[str]], state_changes: Mapping[str, str],
            state_deleted: Iterable[str], at: datetime,
            silenced: Mapping[str, str] | None = None) -> tuple[list[IngestResult], EvaluationResult]:
        """One transaction: unpacked deliveries whose ``evaluated`` new events were evaluated before being
        stored (they are stored evaluated, never pending), their alerts (``silenced`` as in
        :meth:`record_evaluation`) and rule-state changes, and the inbox cursor. Raises RecordRejected,
        rolling it all back, if the store did not take exactly those events as new (then nothing of it
        happened: the caller goes the pending way)."""
        generation = self.inbox_generation

        def write(c: sqlite3.Connection) -> tuple[list[IngestResult], EvaluationResult]:
            results = inbox.record_unpacked(c, generation, last_id, unpacked, at)
            if sum(r.new for r in results) != evaluated:
                raise RecordRejected("the events stored are not the ones evaluated")
            result = alerts.record_evaluation(c, [], new_alerts, route, state_changes, state_deleted, at, silenced)
            return results, replace(result, evaluated=evaluated)
        return await self._write(write, "storing and recording evaluated deliveries")

    async def record_evaluated_ahead(
            self, evaluated: Sequence[tuple[str, Sequence[Event]]], new_alerts: Sequence[Alert],
            route: Callable[[Alert], Sequence[str]], state_changes: Mapping[str, str],
            state_deleted: Iterable[str], at: datetime, silenced: Mapping[str, str] | None = None,
            ) -> EvaluationResult:
        """One transaction: part of a batch that :meth:`record_unpacked_evaluated` finishes, its new events
        (received_at text, events) stored evaluated with their alerts and rule-state changes, the inbox
        cursor not moved (issue 16: a back-fill page in short transactions). A crash before the batch's
        last part unpacks its deliveries again, and these events, stored, are neither stored nor evaluated
        again. Raises RecordRejected, rolling it back, if any of them was stored already."""
        def write(c: sqlite3.Connection) -> EvaluationResult:
            stamp = format_timestamp(at)
            new = sum(events.store_delivery(c, part, (), received, stamp).new for received, part in evaluated)
            if new != sum(len(part) for _, part in evaluated):
                raise RecordRejected("the events stored are not the ones evaluated")
            result = alerts.record_evaluation(c, [], new_alerts, route, state_changes, state_deleted, at, silenced)
            return replace(result, evaluated=new)
        return await self._write(write, "recording evaluated events ahead of their inbox cursor")

    async def stored_uuids(self, uuids: Sequence[str]) -> set[str]:
        return await self._read(lambda c: events.stored_uuids(c, uuids), "reading stored uuids")

    async def ingest(self, new_events: Sequence[Event], quarantined: Sequence[Quarantined],
                     received_at: datetime) -> IngestResult:
        """Store one delivery's events (a uuid already stored adds nothing) and quarantined elements."""
        return await self._write(lambda c: events.ingest(c, new_events, quarantined, received_at), "storing events")

    async def pending_uuids(self, limit: int) -> list[str]:
        """Events not yet evaluated, oldest ``published`` first."""
        return await self._read(lambda c: events.pending_uuids(c, limit), "reading pending events")

    async def events_by_uuid(self, uuids: Sequence[str]) -> dict[str, Event]:
        return await self._read(lambda c: events.events_by_uuid(c, uuids), "reading events")

    async def load_rule_state(self) -> list[tuple[str, str]]:
        return await self._read(alerts.load_rule_state, "reading rule state")

    async def record_evaluation(self, event_uuids: Sequence[str], new_alerts: Sequence[Alert],
                                route: Callable[[Alert], Sequence[str]], state_changes: Mapping[str, str],
                                state_deleted: Iterable[str], at: datetime,
                                silenced: Mapping[str, str] | None = None) -> EvaluationResult:
        """One transaction: the alerts, a delivery per alert × routed channel (none for a silenced one), the
        rule-state changes, and the events marked evaluated (see alerts.record_evaluation)."""
        return await self._write(lambda c: alerts.record_evaluation(
            c, event_uuids, new_alerts, route, state_changes, state_deleted, at, silenced),
            "recording an evaluation")

    async def prune_expired(self, cutoff: datetime) -> Pruned:
        """One retention step: a chunk of rows stored before ``cutoff`` (see retention.py)."""
        return await self._write(lambda c: retention.prune_expired(c, cutoff), "pruning expired rows")

    async def reclaim_space(self) -> int:
        """Give a chunk of free pages back to the file system; returns how many."""
        return await self._write(retention.reclaim_space, "reclaiming free pages")

    # --- the dispatchers: the outbox ----------------------------------------------------------------

    async def due_deliveries(self, channel: str, now: datetime, limit: int = 20) -> list[DueDelivery]:
        return await self._read(lambda c: deliveries.due_deliveries(c, channel, now, limit), "reading due deliveries")

    async def next_due(self, channel: str) -> datetime | None:
        return await self._read(lambda c: deliveries.next_due(c, channel), "reading the next due delivery")

    async def mark_sent(self, delivery_id: int, at: datetime, detail: str = "") -> bool:
        """Record a delivery as sent; False if it was no longer pending."""
        return await self._write(lambda c: deliveries.mark_sent(c, delivery_id, at, detail),
                                 f"marking delivery {delivery_id} sent")

    async def schedule_retry(self, delivery_id: int, error: str, next_attempt: datetime, at: datetime) -> bool:
        return await self._write(lambda c: deliveries.schedule_retry(c, delivery_id, error, next_attempt, at),
                                 f"scheduling delivery {delivery_id} again")

    async def mark_dead(self, delivery_id: int, error: str, at: datetime, fallback: str | None = None) -> bool:
        """Give up on a delivery; with a fallback channel, queue the alert there to report it."""
        return await self._write(lambda c: deliveries.mark_dead(c, delivery_id, error, at, fallback),
                                 f"marking delivery {delivery_id} dead")

    async def redeliver(self, at: datetime, delivery_id: int | None = None, all_dead: bool = False) -> int:
        return await self._write(lambda c: deliveries.redeliver(c, at, delivery_id, all_dead),
                                 "queueing deliveries again")

    async def deliveries_for_alert(self, alert_id: int) -> list[dict[str, Any]]:
        return await self._read(lambda c: deliveries.deliveries_for_alert(c, alert_id), "reading deliveries")

    async def list_deliveries(self, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        return await self._read(lambda c: deliveries.list_deliveries(c, status, limit), "listing deliveries")

    # --- resolve_after (sentinel/store/resolve.py) ----------------------------------------------------

    async def resolve_quiet(self, now: datetime, channels: Sequence[str]) -> list[int]:
        """Resolve the alert groups quiet for their resolve_after; a 'resolve' delivery per channel given
        that was sent the group's alert. Returns the alerts carrying a resolve."""
        return await self._write(lambda c: resolve.resolve_quiet(c, now, channels), "resolving quiet groups")

    # --- storm control (sentinel/store/storm.py) -------------------------------------------------------

    async def sent_since(self, channel: str, since: datetime) -> int:
        return await self._read(lambda c: storm.sent_since(c, channel, since), "counting sent alerts")

    async def hold_for_digest(self, delivery_id: int, channel: str, at: datetime, window: timedelta) -> int | None:
        """Hold a pending delivery in the channel's open digest (see storm.hold_for_digest)."""
        return await self._write(lambda c: storm.hold_for_digest(c, delivery_id, channel, at, window),
                                 f"holding delivery {delivery_id} for a digest")

    async def digest_contents(self, digest_id: int) -> list[HeldAlert]:
        return await self._read(lambda c: storm.digest_contents(c, digest_id), "reading a digest")

    # --- silences (sentinel/silences.py) -------------------------------------------------------------

    async def add_silence(self, silence: Silence) -> int:
        return await self._write(lambda c: silences.add_silence(c, silence), "adding a silence")

    async def list_silences(self, now: datetime,
                            include_expired_for: timedelta = timedelta(days=7)) -> list[Silence]:
        """Active and future silences, and those ended less than ``include_expired_for`` ago; newest first."""
        return await self._read(lambda c: silences.list_silences(c, now, include_expired_for), "listing silences")

    async def active_silences(self, now: datetime) -> list[Silence]:
        return await self._read(lambda c: silences.active_silences(c, now), "reading silences")

    async def get_silence(self, silence_id: int) -> Silence | None:
        return await self._read(lambda c: silences.get_silence(c, silence_id), "reading a silence")

    async def expire_silence(self, silence_id: int, at: datetime) -> bool:
        return await self._write(lambda c: silences.expire_silence(c, silence_id, at),
                                 f"expiring silence {silence_id}")

    # --- the triage page (sentinel/web/ui) ----------------------------------------------------------

    async def triage_alerts(self, where: AlertFilter, limit: int = 200) -> list[dict[str, Any]]:
        """Alerts newest first, with status and acknowledgement."""
        return await self._read(lambda c: triage.list_alerts(c, where, limit), "listing alerts")

    async def get_alert(self, alert_id: int) -> dict[str, Any] | None:
        """One alert (its rendering context included), its status and acknowledgement; None: no such alert."""
        def read(c: sqlite3.Connection) -> dict[str, Any] | None:
            row = deliveries.get_alert(c, alert_id)
            return None if row is None else {**row, **triage.alert_status(c, alert_id)}
        return await self._read(read, "reading an alert")

    async def acknowledge(self, alert_id: int, by: str, at: datetime) -> bool:
        """Record who acknowledged the alert and when; False if unknown or already acknowledged."""
        return await self._write(lambda c: triage.acknowledge(c, alert_id, by, at), "acknowledging an alert")

    async def alert_counts_by_rule(self, since: datetime) -> dict[str, int]:
        return await self._read(lambda c: triage.counts_by_rule(c, since), "counting alerts")

    async def rule_activity(self, since: datetime) -> dict[str, tuple[str, int]]:
        """Per rule that fired: (last fired, alerts since ``since``)."""
        return await self._read(lambda c: triage.rule_activity(c, since), "reading rule activity")

    async def deliveries_by_channel(self) -> dict[str, dict[str, int]]:
        """Pending and dead deliveries per channel."""
        return await self._read(triage.deliveries_by_channel, "counting deliveries")

    # --- the daemon's gauges ------------------------------------------------------------------------

    async def monitor_snapshot(self, channels: Sequence[str], inbox_after: int) -> MonitorSnapshot:
        """The queues' state (one read of each file)."""
        names = list(channels)
        (pending, oldest), last, dead = await self._read(lambda c: (
            events.pending_summary(c), events.last_received(c), {n: deliveries.dead_count(c, n) for n in names}),
            "reading the queues")
        (waiting, oldest_waiting), last_in_inbox = await self._inbox_reader.run(
            lambda c: (inbox.backlog(c, inbox_after), inbox.last_received(c)), "reading the inbox")
        return MonitorSnapshot(pending, oldest, last, dead, waiting, oldest_waiting, last_in_inbox)

    async def receive(self, body: bytes, received_at: datetime | None = None) -> None:
        """Append a delivery body to the inbox; returns after its durable commit. ``received_at``
        defaults to the clock's time when the group commit carrying it starts."""
        if self._inbox_writer is None:
            raise RuntimeError("this store does not take deliveries (intake=False)")
        await self._inbox_writer.append(body, format_timestamp(received_at) if received_at else None)

    # --- the System Log poller: its pages and cursor, in the inbox --------------------------------------

    async def poll_cursor(self, source: str) -> PollCursor | None:
        """Where polling ``source`` stands (None: it never has)."""
        return await self._inbox_reader.run(lambda c: poll_cursor.read(c, source), "reading the poll cursor")

    async def record_polled_page(self, page_body: bytes | None, cursor: PollCursor,
                                 received_at: datetime | None = None) -> None:
        """A System Log page (the JSON array as received; None: no events) into the inbox, and the cursor
        that follows it, in one durable transaction (see store/poll_cursor.py)."""
        if self._inbox_writer is None:
            raise RuntimeError("this store does not take deliveries (intake=False)")
        body = poll_cursor.as_delivery(page_body) if page_body is not None else None
        await self._inbox_writer.append(body, format_timestamp(received_at) if received_at else None,
                                        also=lambda conn, now: poll_cursor.write(conn, cursor, now))

    async def inbox_waiting(self, after: int, most: int = 100) -> int:
        """How many inbox deliveries come after id ``after`` (not yet unpacked), counting at most ``most``
        (a cheap question however long the backlog)."""
        return await self._inbox_reader.run(lambda c: inbox.waiting_count(c, after, most), "reading the inbox")

    async def prune_inbox(self, upto: int) -> int:
        """Drop (a chunk of) the inbox rows up to ``upto``, already unpacked into the main database."""
        return await self._inbox_pruner.run(lambda conn: inbox.prune(conn, upto), "pruning the inbox")

    async def checkpoint_inbox(self, restart: bool = False, due: bool = True) -> bool:
        """Copy the inbox's WAL into its file without blocking intake; ``restart``: and start it over
        if ``due`` or the WAL is long (see inbox.checkpoint). Returns whether it was started over."""
        return await self._inbox_reader.run(lambda c: inbox.checkpoint(c, restart, due), "checkpointing the inbox")

    async def _read_inbox(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._inbox_reader.run(fn, "reading the inbox")

    async def check_writable(self) -> None:
        """Both files take a write transaction now (for /readyz)."""
        await self._write(lambda conn: conn.execute("SELECT 1").fetchone(), "a write probe")
        if self._inbox_writer is not None:
            await self._inbox_writer.probe()

    def healthy(self) -> bool:
        return self._writer.alive() and self._inbox_pruner.alive() and \
            (self._inbox_writer is None or self._inbox_writer.alive())

    @property
    def commits(self) -> int:
        return self._writer.commits

    def close(self) -> None:
        if self._started:
            if self._inbox_writer is not None:
                self._inbox_writer.close()
            self._inbox_pruner.stop()
            self._writer.stop()
            self._reader.stop()
            self._inbox_reader.stop()
            self._started = False
