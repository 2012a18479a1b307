"""Frozen data types shared by every layer: events, alerts, severities, delivery outcomes."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from types import MappingProxyType
from typing import Any

from sentinel.alert_context import AlertContext


class Severity(IntEnum):
    """Alert severity, ordered so that ``>=`` means "at least as severe"."""

    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @classmethod
    def parse(cls, name: str) -> Severity:
        try:
            return cls[name.strip().upper()]
        except KeyError:
            allowed = ", ".join(s.label for s in cls)
            raise ValueError(f"unknown severity {name!r} (expected one of: {allowed})") from None

    @property
    def label(self) -> str:
        return self.name.lower()


_FRACTION = re.compile(r"(\.\d{1,6})\d*")


def parse_timestamp(text: str) -> datetime:
    """Parse Okta's ISO-8601 ``published`` (also Panther's ``YYYY-MM-DD hh:mm:ss.fffffffff``) to UTC.

    Raises ValueError for anything else. A timestamp without a zone is taken as UTC, as Okta's are.
    """
    # Okta's own form (``2024-01-01T12:34:56.789Z``, every event's ``published``) and the store's (the same
    # with microseconds) by fromisoformat alone, which reads their Z as UTC: the general path's regex,
    # replace and conversion cost 10x as much. What fromisoformat refuses here goes the general path
    # (tests/test_decode_fast_paths.py compares both).
    if type(text) is str and (len(text) == 24 or len(text) == 27) and text[-1] == "Z":
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            pass
    return _parse_timestamp_generally(text)


def _parse_timestamp_generally(text: str) -> datetime:
    """:func:`parse_timestamp` for every form (the definition; tests compare the fast path with it)."""
    if not isinstance(text, str) or not 10 <= len(text) <= 40:
        raise ValueError("not an ISO-8601 timestamp")
    cleaned = _FRACTION.sub(r"\1", text.strip(), count=1)  # fromisoformat takes at most 6 digits
    if cleaned.endswith(("Z", "z")):
        cleaned = cleaned[:-1] + "+00:00"
    parsed = datetime.fromisoformat(cleaned)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise ValueError("timestamp out of range") from None


def format_timestamp(moment: datetime) -> str:
    """Fixed-width UTC text (microseconds, ``Z``) so that text order is time order in the store.

    Not ``strftime("%Y")``: it does not pad years before 1000, and the text would neither sort nor parse.
    """
    if moment.tzinfo is UTC:  # every parsed event time: the same text in 2/3 of the time (per event stored)
        # %-formatting: an f-string with a format spec per field is slower than isoformat here.
        return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (  # noqa: UP031
            moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second, moment.microsecond)
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def stored_okta_time(text: str) -> str | None:
    """``format_timestamp(parse_timestamp(text))`` by slicing, for a ``text`` that parses and is in Okta's
    own form (``2024-01-01T12:34:56.789Z``, every event's ``published``); None for any other. fromisoformat
    reads only ASCII digits between those separators, so the parsed fields are the text's own."""
    if len(text) == 24 and text[4:20:3] == "--T::." and text[23] == "Z":
        return text[:23] + "000Z"
    return None


# What the ``data`` slot holds for an event whose body is decoded at each read (``Event.later``).
LATER: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Event:
    """One Okta System Log event (a LogEvent) as delivered, with its key fields lifted out.

    ``data`` is the whole event. An event made by :meth:`later` holds only its ``source``, and each read
    of ``data`` decodes it afresh: an event no rule reads is never decoded beyond its key fields, and
    one the engine reads is garbage as soon as the engine is done with it instead of living as long as
    its batch (measured: the detector's loop 43 against 53 µs an event, mostly the collector's passes
    over kept bodies; issue 16). So read ``data`` once and keep it while needed. ``data`` is therefore
    a property over its slot (set up below the class).
    """

    uuid: str
    event_type: str
    published: datetime
    data: Mapping[str, Any] = field(repr=False, compare=False)
    # The event's JSON text as delivered, when known: stored as is instead of serialising ``data`` again.
    source: str | None = field(default=None, repr=False, compare=False)
    # How ``data`` is decoded from ``source`` when it is LATER.
    decode: Callable[[str], Mapping[str, Any]] | None = field(default=None, repr=False, compare=False)
    # ``format_timestamp(published)``, when known from the delivered text (:func:`stored_okta_time`): the
    # store writes it for each event, and formatting costs 0.7 µs (issue 16). Not an init field, so an event
    # copied with another ``published`` (dataclasses.replace) has it None and is formatted.
    stored_published: str | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def later(cls, uuid: str, event_type: str, published: datetime, source: str,
              decode: Callable[[str], Mapping[str, Any]], stored_published: str | None = None) -> Event:
        """An event whose ``data`` is ``decode(source)``, decoded at each read; ``stored_published``, when
        given, must be ``format_timestamp(published)``."""
        # What ``cls(uuid, event_type, published, LATER, source, decode)`` makes, through the slots directly:
        # a frozen dataclass's __init__ sets each field through object.__setattr__, twice the time (issue 16).
        event = _new(cls)
        _UUID_SLOT.__set__(event, uuid)
        _EVENT_TYPE_SLOT.__set__(event, event_type)
        _PUBLISHED_SLOT.__set__(event, published)
        _DATA_SLOT.__set__(event, LATER)
        _SOURCE_SLOT.__set__(event, source)
        _DECODE_SLOT.__set__(event, decode)
        _STORED_PUBLISHED_SLOT.__set__(event, stored_published)
        return event


# The slots' own descriptors (slots=True): the property below wraps ``data``'s; Event.later sets them all.
_DATA_SLOT: Any = vars(Event)["data"]
_UUID_SLOT: Any = vars(Event)["uuid"]
_EVENT_TYPE_SLOT: Any = vars(Event)["event_type"]
_PUBLISHED_SLOT: Any = vars(Event)["published"]
_SOURCE_SLOT: Any = vars(Event)["source"]
_DECODE_SLOT: Any = vars(Event)["decode"]
_STORED_PUBLISHED_SLOT: Any = vars(Event)["stored_published"]
_new = object.__new__


def _read_data(event: Event) -> Mapping[str, Any]:
    data: Mapping[str, Any] = _DATA_SLOT.__get__(event, Event)
    if data is LATER and event.decode is not None and event.source is not None:
        return event.decode(event.source)  # not kept (see Event)
    return data


setattr(Event, "data", property(_read_data, _DATA_SLOT.__set__, doc="The whole event (decoded at each read if LATER)."))  # noqa: B010


@dataclass(frozen=True, slots=True)
class Alert:
    """What a rule reports. ``key`` is the idempotency key: the same key means the same alert.

    The engine emits an alert again with the same key when later events fold into it (threshold
    windows that keep counting, throttled repeats); the store then updates count and last_seen
    instead of creating (and delivering) a new one.
    """

    key: str
    rule_id: str
    severity: Severity
    title: str
    summary: str
    group_key: str
    first_seen: datetime
    last_seen: datetime
    count: int
    event_uuids: tuple[str, ...]
    # What the messages state: one event's facts, the rule's runbook, the window and distinct values.
    context: AlertContext = field(default_factory=AlertContext, compare=False)
    # Channels named by the rule; None routes by each channel's min_severity.
    channels: tuple[str, ...] | None = None
    # The rule's resolve_after in seconds: its group is resolved once quiet that long (None: never).
    resolve_after: int | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    """The result of one attempt to send one alert to one channel. Failure is a value, not an exception."""

    ok: bool
    detail: str = ""  # masked, safe to log
    retryable: bool = True
