"""Silences: an on-call engineer's "don't send alerts like this one until then", and the pure matching.

A silence names a rule (an id or an ``fnmatch`` glob such as ``okta-*``) and optional matchers: field paths
as rules write them (``actor.alternateId``), each with a value. It silences an alert of a matching rule when
every matcher holds on one of the alert's events, text compared case-insensitively as rules do by default.
A silenced alert is stored and never sent. Maintenance windows ([[maintenance]], sentinel.maintenance) are
turned into silences while they are open (``window_silence``), so both are matched by the same code.

Pure: no clock (``now`` is passed in), no I/O; event fields are hostile input, matching never raises.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import Any

from sentinel.maintenance import Window
from sentinel.model import Alert
from sentinel.rules.field_paths import ConditionError, FieldPath
from sentinel.rules.operators import Options, Predicate, compile_equals

MAX_MATCHERS = 16
MAX_TEXT = 1_000


@dataclass(frozen=True)
class Silence:
    id: int | None
    rule: str  # a rule id or glob (fnmatch), e.g. "okta-*"
    matchers: tuple[tuple[str, str], ...]  # (field path as rules use it, value): all must hold on one event
    starts_at: datetime
    ends_at: datetime
    author: str
    comment: str
    created_at: datetime
    expired_at: datetime | None = None  # set by `silence expire`

    def active(self, now: datetime) -> bool:
        """Whether it silences alerts at ``now``: started, not ended, not expired by hand."""
        end = self.ends_at if self.expired_at is None else min(self.ends_at, self.expired_at)
        return self.starts_at <= now < end

    def ended_at(self) -> datetime:
        """When it stopped (or will stop) silencing: its end, or the moment it was expired if earlier."""
        return self.ends_at if self.expired_at is None else min(self.ends_at, self.expired_at)

    @property
    def label(self) -> str:
        """How an alert names what silenced it (``silence 7``; a maintenance window is ``maintenance NAME``)."""
        return f"silence {self.id}" if self.id is not None else self.comment


def validate(rule: str, matchers: Sequence[tuple[str, str]], starts_at: datetime, ends_at: datetime,
             author: str, comment: str) -> list[str]:
    """What is wrong with a silence about to be added (empty: nothing), one message per problem."""
    problems = []
    if not rule.strip():
        problems.append("the rule must be a rule id or a glob such as okta-*")
    if len(matchers) > MAX_MATCHERS:
        problems.append(f"at most {MAX_MATCHERS} matchers")
    for path, value in matchers:
        try:
            FieldPath.parse(path)
        except ConditionError as e:
            problems.append(f"match {path!r}: {e.message}")
        if not value:
            problems.append(f"match {path!r}: the value is empty (use FIELD=VALUE)")
    if ends_at <= starts_at:
        problems.append("the silence ends before it starts")
    if starts_at.tzinfo is None or ends_at.tzinfo is None:
        problems.append("start and end need a time zone")
    if not author.strip():
        problems.append("a silence needs an author")
    if not comment.strip():
        problems.append("a silence needs a comment (why it is muted)")
    if len(comment) > MAX_TEXT or len(author) > MAX_TEXT or len(rule) > MAX_TEXT:
        problems.append(f"rule, author and comment are at most {MAX_TEXT} characters")
    return problems


@lru_cache(maxsize=1024)
def _path(text: str) -> FieldPath | None:
    try:
        return FieldPath.parse(text)
    except ConditionError:
        return None  # validated when added; a stored path that no longer parses silences nothing


@lru_cache(maxsize=1024)
def _equals(value: str) -> Predicate:
    return compile_equals(value, Options(ignore_case=True))


def _holds(path_text: str, value: str, event: Mapping[str, Any]) -> bool:
    path = _path(path_text)
    if path is None or not value:
        return False
    predicate = _equals(value)
    return any(predicate(found) for found in path.values(event))


def matches(silence: Silence, alert: Alert, events: Sequence[Mapping[str, Any]]) -> bool:
    """Whether ``silence`` covers ``alert`` (ignoring time): the rule matches, and, if it has matchers,
    all of them hold on one of the alert's events."""
    if not fnmatchcase(alert.rule_id, silence.rule):
        return False
    if not silence.matchers:
        return True
    return any(all(_holds(path, value, event) for path, value in silence.matchers) for event in events)


def window_silence(window: Window, now: datetime) -> list[Silence]:
    """An open maintenance window as silences (one per rule pattern), in force at ``now``; none if it is closed.
    They carry no id, and name the window (``maintenance NAME``) on the alerts they cover."""
    if not window.open_at(now):
        return []
    label = f"maintenance {window.name}"
    return [Silence(None, rule, window.matchers, now, now + timedelta(microseconds=1), "sentinel.toml", label, now)
            for rule in window.rules]


def silencing(silences: Sequence[Silence], alert: Alert, events: Sequence[Mapping[str, Any]],
              now: datetime) -> Silence | None:
    """The first silence active at ``now`` that covers ``alert`` (whose events are ``events``), if any."""
    for silence in silences:
        if silence.active(now) and matches(silence, alert, events):
            return silence
    return None
