"""Rule state: one JSON-able record per (rule, group) of the stateful rules, bounded in number.

Changed records go to the store through ``EngineState.take_changes`` and come back through
``EngineState.restore``. The state also counts, per rule, what it had to let go (evicted and expired
groups, forgotten events, matcher errors); the detector takes those counts to log and export them.
Pure like the engine: no clock, no I/O, no logging.
"""

from __future__ import annotations

import heapq
import json
from collections import Counter, OrderedDict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sentinel.config_keys import default
from sentinel.durations import duration_seconds

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROS = 1_000_000
DEFAULT_MAX_GROUPS: int = default("rules", "max_groups")  # as [rules] max_groups: one number, one place
DEFAULT_ALLOWED_LATENESS_MICROS = duration_seconds(default("rules", "allowed_lateness")) * 1_000_000
SWEEP_EVERY = 1024
# Eviction tiers: a threshold group's progress toward its count, in tenths. A full state evicts from the
# lowest tier first (least recently updated first within it), so flooding new groups evicts the flood,
# not a window about to fire. Throttle groups and groups that already alerted have progress 0.
PROGRESS_TIERS = 10
# What EngineState counts per rule (the detector logs and exports them; the engine only counts).
EVICTED_GROUPS = "groups_evicted"  # live groups dropped because max_groups was reached: windows lost
EXPIRED_GROUPS = "groups_expired"  # groups removed because their windows ended (housekeeping)
DROPPED_ENTRIES = "entries_dropped"  # matching events forgotten from a group (repeats of a distinct value)
VALUES_FORGOTTEN = "values_forgotten"  # first-seen values dropped because a group held max_values
MATCH_ERRORS = "match_errors"  # a rule raised while matching (a bug; the event is skipped for it)
TOO_LATE = "events_too_late"  # older than watermark - allowed lateness: skipped by threshold rules
# An event stamped further than this past ``now`` does not move the watermark (a bad clock must not
# expire everyone's windows).
FUTURE_SKEW = timedelta(minutes=10)


def to_micros(moment: datetime) -> int:
    if moment.tzinfo is None:  # Okta's timestamps are UTC; never compare naive with aware
        moment = moment.replace(tzinfo=UTC)
    # The same integer as ``// timedelta(microseconds=1)``, in a third of its time (twice per event).
    since = moment - EPOCH
    return (since.days * 86_400 + since.seconds) * MICROS + since.microseconds


def from_micros(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


class EngineState:
    """Per-(rule, group) records for stateful rules, bounded in number, with change tracking."""

    def __init__(self, max_groups: int = DEFAULT_MAX_GROUPS,
                 allowed_lateness_micros: int = DEFAULT_ALLOWED_LATENESS_MICROS) -> None:
        if max_groups < 1:
            raise ValueError("max_groups must be at least 1")
        if allowed_lateness_micros < 0:
            raise ValueError("allowed_lateness_micros must be 0 or more")
        self.max_groups = max_groups
        # How far behind the watermark an event may be and still count: a record outlives its "expires"
        # by this much, so events the poller brings minutes after the hooks still find their windows.
        self.allowed_lateness_micros = allowed_lateness_micros
        self.groups: OrderedDict[str, dict[str, Any]] = OrderedDict()  # least recently used first
        self._tiers: list[OrderedDict[str, None]] = [OrderedDict() for _ in range(PROGRESS_TIERS + 1)]
        self._tier_of: dict[str, int] = {}
        self.watermark = 0  # the latest plausible event time seen, microseconds
        self.rule_counts: Counter[tuple[str, str]] = Counter()  # (kind, rule id) → count, since start
        self._untaken: Counter[tuple[str, str]] = Counter()  # the same, since take_rule_counts
        self._changed: set[str] = set()
        self._deleted: set[str] = set()
        self._since_sweep = 0
        # (deadline micros, group key) of sequences waiting for an absent step: a heap, rebuilt from the
        # groups' "pending" records on restore; an entry whose group or record is gone is skipped.
        self.deadlines: list[tuple[int, str]] = []
        # Group key → what a rule may keep beside its record to save work (a measured threshold's running
        # tally); never saved, rebuilt from the record when missing, dropped with the group.
        self.scratch: dict[str, Any] = {}
        # The latest plausible event time for the ``now`` last given: the detector passes one ``now`` per batch.
        self._future_of: tuple[datetime | None, int] = (None, 0)

    @property
    def group_count(self) -> int:
        return len(self.groups)

    def tally(self, kind: str, rule_id: str, n: int = 1) -> None:
        if n:
            self.rule_counts[kind, rule_id] += n
            self._untaken[kind, rule_id] += n

    def take_rule_counts(self) -> dict[tuple[str, str], int]:
        """(kind, rule id) → count since the last call: what the detector logs and exports."""
        taken, self._untaken = dict(self._untaken), Counter()
        return taken

    def total(self, kind: str) -> int:
        return sum(n for (counted, _), n in self.rule_counts.items() if counted == kind)

    @property
    def evicted_groups(self) -> int:
        return self.total(EVICTED_GROUPS)

    @property
    def expired_groups(self) -> int:
        return self.total(EXPIRED_GROUPS)

    @property
    def dropped_entries(self) -> int:
        return self.total(DROPPED_ENTRIES)

    @property
    def match_errors(self) -> int:
        return self.total(MATCH_ERRORS)

    @property
    def dropped_groups(self) -> int:
        """Live groups thrown away because ``max_groups`` was reached (their windows were lost)."""
        return self.evicted_groups

    def take_changes(self) -> tuple[dict[str, str], set[str]]:
        """Group key → JSON text for groups changed since the last call, and keys deleted since then."""
        changed = {k: json.dumps(self.groups[k], separators=(",", ":")) for k in self._changed if k in self.groups}
        deleted = self._deleted - changed.keys()
        self._changed, self._deleted = set(), set()
        return changed, deleted

    @classmethod
    def restore(cls, rows: Iterable[tuple[str, str]], max_groups: int = DEFAULT_MAX_GROUPS,
                allowed_lateness_micros: int = DEFAULT_ALLOWED_LATENESS_MICROS) -> EngineState:
        """Rebuild from the store's (key, JSON) rows; unreadable rows are skipped (and counted)."""
        state = cls(max_groups, allowed_lateness_micros)
        records = []
        for key, text in rows:
            try:
                record = json.loads(text)
            except ValueError:
                state.tally(MATCH_ERRORS, _rule_of(key))
                continue
            if isinstance(record, dict) and isinstance(record.get("seen"), int):
                records.append((record["seen"], key, record))
        for seen, key, record in sorted(records, key=lambda r: r[0])[-max_groups:]:
            state.groups[key] = record
            state._place(key, record)
            state.watermark = max(state.watermark, seen)
            for pending in record.get("pending") or ():
                if isinstance(pending, dict) and isinstance(pending.get("deadline"), int):
                    heapq.heappush(state.deadlines, (pending["deadline"], key))
        return state

    def group(self, key: str) -> dict[str, Any] | None:
        record = self.groups.get(key)
        if record is not None:
            self.groups.move_to_end(key)
        return record

    def put(self, key: str, record: dict[str, Any]) -> None:
        if key not in self.groups and len(self.groups) >= self.max_groups:
            victim, expired = self._victim()
            self._remove(victim)
            self.tally(EXPIRED_GROUPS if expired else EVICTED_GROUPS, _rule_of(victim))
        self.groups[key] = record
        self.groups.move_to_end(key)
        self._place(key, record)
        self._changed.add(key)

    def _place(self, key: str, record: dict[str, Any]) -> None:
        """File the group under its progress tier, as that tier's most recently updated."""
        progress = record.get("progress", 0)
        tier = 0
        if isinstance(progress, int | float) and progress > 0:  # NaN or junk in a stored row: tier 0
            tier = PROGRESS_TIERS if progress >= 1 else int(progress * PROGRESS_TIERS)
        old = self._tier_of.get(key)
        if old is not None and old != tier:
            del self._tiers[old][key]
        self._tiers[tier][key] = None
        self._tiers[tier].move_to_end(key)
        self._tier_of[key] = tier

    def _remove(self, key: str) -> None:
        del self.groups[key]
        self.scratch.pop(key, None)
        del self._tiers[self._tier_of.pop(key)][key]
        self._deleted.add(key)
        self._changed.discard(key)

    def _victim(self) -> tuple[str, bool]:
        """The least recently used group if its windows ended, else the least recently updated group
        of the lowest progress tier. Returns (key, expired)."""
        oldest = next(iter(self.groups))
        if self.ended(self.groups[oldest]):
            return oldest, True
        return next(iter(next(tier for tier in self._tiers if tier))), False

    def next_watermark(self, micros: int, now: datetime) -> int:
        """The watermark once an event stamped ``micros`` is observed at ``now``."""
        at, future = self._future_of
        if at is not now:
            future = to_micros(now + FUTURE_SKEW)
            self._future_of = (now, future)
        return max(self.watermark, min(micros, future))

    def observe(self, micros: int, now: datetime) -> None:
        self.watermark = self.next_watermark(micros, now)
        self._since_sweep += 1
        # A sweep scans every group: spacing sweeps by the group count keeps its cost per event constant.
        if self._since_sweep >= max(SWEEP_EVERY, len(self.groups) // 8):
            self.sweep()

    @property
    def horizon(self) -> int:
        """The oldest event time that can still count: the watermark less the allowed lateness."""
        return self.watermark - self.allowed_lateness_micros

    def ended(self, record: dict[str, Any]) -> bool:
        """Whether no event that can still count can reach the record: its windows ended before the horizon."""
        expires = record.get("expires", 0)
        return not isinstance(expires, int) or expires < self.horizon

    def sweep(self) -> None:
        """Remove every group whose windows ended before the horizon (watermark less allowed lateness)."""
        self._since_sweep = 0
        expired = [k for k, record in self.groups.items() if self.ended(record)]
        for key in expired:
            self._remove(key)
            self.tally(EXPIRED_GROUPS, _rule_of(key))


def _rule_of(state_key: str) -> str:
    """The rule id of a ``rule/group`` state key (rule ids never contain '/')."""
    return state_key.partition("/")[0]
