"""The engine → render contract: what an alert's messages may state, as typed, frozen values.

The engine fills an :class:`AlertContext` when it raises an alert; every message format reads it through
:mod:`sentinel.render_facts`. The store keeps it as JSON (``as_dict``/``from_dict``): the keys written
are the ones alerts always had (``alerts show --json`` and stored rows), so the JSON is a stable contract
and a misspelt field is a type error, not a silently empty line. Values are event text: hostile.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Party:
    """An actor or a target as the event names it (None where the event had nothing)."""

    alternate_id: str | None = None
    display_name: str | None = None
    type: str | None = None
    id: str | None = None

    def as_dict(self, with_type: bool) -> dict[str, Any]:
        """Okta's key names; ``type`` always for targets (as stored alerts have it), else only when known."""
        out: dict[str, Any] = {"type": self.type} if with_type or self.type is not None else {}
        out.update(alternateId=self.alternate_id, displayName=self.display_name)
        if self.id is not None:
            out["id"] = self.id
        return out

    @classmethod
    def from_dict(cls, raw: Any) -> Party:
        if not isinstance(raw, Mapping):
            return cls(alternate_id=_text(raw))
        return cls(_text(raw.get("alternateId")), _text(raw.get("displayName")), _text(raw.get("type")),
                   _text(raw.get("id")))


@dataclass(frozen=True, slots=True)
class Sample:
    """One of the first events an alert counted: who, from where, when."""

    uuid: str
    published: str
    actor: str | None = None
    ip: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"uuid": self.uuid, "published": self.published, "actor": self.actor, "ip": self.ip}

    @classmethod
    def from_dict(cls, raw: Any) -> Sample | None:
        if not isinstance(raw, Mapping):
            return None
        actor = raw.get("actor")
        if isinstance(actor, Mapping):  # a full actor object: its alternate id is what a sample shows
            actor = actor.get("alternateId") or actor.get("displayName")
        return cls(_text(raw.get("uuid")) or "", _text(raw.get("published")) or "", _text(actor), _text(raw.get("ip")))


@dataclass(frozen=True, slots=True)
class StepEvents:
    """One step of a sequence alert: the events it took, in time order (none for an absence step,
    whose first/last are the time it was waited for)."""

    step: int
    name: str
    count: int = 0
    first: str = ""
    last: str = ""
    uuids: tuple[str, ...] = ()
    absent: bool = False

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"step": self.step, "name": self.name, "count": self.count, "first": self.first,
                               "last": self.last, "uuids": list(self.uuids)}
        if self.absent:
            out["absent"] = True
        return out

    @classmethod
    def from_dict(cls, raw: Any) -> StepEvents | None:
        if not isinstance(raw, Mapping):
            return None
        return cls(_int(raw.get("step")) or 0, _text(raw.get("name")) or "", _int(raw.get("count")) or 0,
                   _text(raw.get("first")) or "", _text(raw.get("last")) or "", _texts(raw.get("uuids")),
                   raw.get("absent") is True)


@dataclass(frozen=True, slots=True)
class AlertContext:
    """What the messages of one alert state.

    The event fields (type, uuid, time, actor, targets, client, outcome) all describe **one** event, the
    one whose evaluation produced this version of the alert; the rest describes the rule and the count.
    """

    # The event
    event_type: str = ""
    event_uuid: str = ""
    published: str = ""  # ISO-8601 UTC, as stored
    actor: Party = Party()
    targets: tuple[Party, ...] = ()
    client_ip: str | None = None
    city: str | None = None
    country: str | None = None
    user_agent: str | None = None
    outcome_result: str | None = None
    outcome_reason: str | None = None
    display_message: str | None = None
    # The rule
    rule_id: str = ""
    description: str = ""
    runbook: str = ""
    references: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    falsepositives: tuple[str, ...] = ()  # the rule's known benign causes, for the responder
    author: str = ""  # the rule's author: shown because some rule licences (Sigma's DRL 1.1) require it
    # Grouping and counting
    group_key: str = ""  # "path=value; ..." as the engine keys the group
    group_by: tuple[str, ...] = ()  # the rule's group_by paths
    samples: tuple[Sample, ...] = ()
    window_seconds: int | None = None  # threshold rules only
    threshold: int | None = None
    distinct_field: str | None = None  # distinct-count thresholds only
    distinct_count: int | None = None  # how many distinct values the alert counted
    distinct_values: tuple[str, ...] = ()  # the first of them, in the order seen
    throttle_seconds: int | None = None
    steps: tuple[StepEvents, ...] = ()  # sequence rules only: each step's events, in step order
    # Measured thresholds only: the test that fired, and (name, value as text) of each measure of the window
    # that met it, then of each compound arithmetic in the test ("failures / users", "2.58")
    when: str = ""
    measures: tuple[tuple[str, str], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """JSON-able, with the keys stored alerts have always had (optional ones only when set)."""
        out: dict[str, Any] = {
            "event_type": self.event_type,
            "event_uuid": self.event_uuid,
            "published": self.published,
            "actor": self.actor.as_dict(with_type=False),
            "targets": [t.as_dict(with_type=True) for t in self.targets],
            "client_ip": self.client_ip,
            "city": self.city,
            "country": self.country,
            "user_agent": self.user_agent,
            "outcome_result": self.outcome_result,
            "outcome_reason": self.outcome_reason,
            "display_message": self.display_message,
            "rule_id": self.rule_id,
            "description": self.description,
            "runbook": self.runbook,
            "references": list(self.references),
            "tags": list(self.tags),
            "group_key": self.group_key,
            "group_by": list(self.group_by),
            "samples": [s.as_dict() for s in self.samples],
        }
        if self.window_seconds is not None:
            out.update(window_seconds=self.window_seconds, threshold=self.threshold)
        if self.distinct_field is not None:
            out.update(distinct_field=self.distinct_field, distinct_count=self.distinct_count,
                       distinct_values=list(self.distinct_values))
        if self.throttle_seconds is not None:
            out["throttle_seconds"] = self.throttle_seconds
        if self.falsepositives:
            out["falsepositives"] = list(self.falsepositives)
        if self.author:
            out["author"] = self.author
        if self.steps:
            out["sequence_steps"] = [s.as_dict() for s in self.steps]
        if self.when:
            out.update(when=self.when, measures=dict(self.measures))
        return out

    @classmethod
    def from_dict(cls, raw: Any) -> AlertContext:
        """Back from stored JSON; anything missing or of the wrong type becomes empty, never an error."""
        if not isinstance(raw, Mapping):
            return cls()
        targets = raw.get("targets")
        samples = raw.get("samples")
        return cls(
            event_type=_text(raw.get("event_type")) or "",
            event_uuid=_text(raw.get("event_uuid")) or "",
            published=_text(raw.get("published")) or "",
            actor=Party.from_dict(raw.get("actor")) if raw.get("actor") is not None else Party(),
            targets=tuple(Party.from_dict(t) for t in targets if t is not None) if isinstance(targets, list) else (),
            client_ip=_text(raw.get("client_ip")),
            city=_text(raw.get("city")),
            country=_text(raw.get("country")),
            user_agent=_text(raw.get("user_agent")),
            outcome_result=_text(raw.get("outcome_result")),
            outcome_reason=_text(raw.get("outcome_reason")),
            display_message=_text(raw.get("display_message")),
            rule_id=_text(raw.get("rule_id")) or "",
            description=_text(raw.get("description")) or "",
            runbook=_text(raw.get("runbook")) or "",
            references=_texts(raw.get("references")),
            tags=_texts(raw.get("tags")),
            falsepositives=_texts(raw.get("falsepositives")),
            author=_text(raw.get("author")) or "",
            group_key=_text(raw.get("group_key")) or "",
            group_by=_texts(raw.get("group_by")),
            samples=tuple(s for s in map(Sample.from_dict, samples) if s) if isinstance(samples, list) else (),
            window_seconds=_int(raw.get("window_seconds")),
            threshold=_int(raw.get("threshold")),
            distinct_field=_text(raw.get("distinct_field")),
            distinct_count=_int(raw.get("distinct_count")),
            distinct_values=_texts(raw.get("distinct_values")),
            throttle_seconds=_int(raw.get("throttle_seconds")),
            steps=_steps(raw.get("sequence_steps")),
            when=_text(raw.get("when")) or "",
            measures=_pairs(raw.get("measures")),
        )


def _pairs(raw: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, Mapping):
        return ()
    return tuple((str(k), v) for k, v in ((k, _text(v)) for k, v in raw.items()) if v is not None)


def _steps(raw: Any) -> tuple[StepEvents, ...]:
    if not isinstance(raw, list):
        return ()
    return tuple(s for s in map(StepEvents.from_dict, raw) if s is not None)


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (Mapping, list, tuple, set, bool)):
        return None
    return str(value)


def _texts(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)):
        return tuple(t for t in map(_text, value) if t is not None)
    return ()


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return int(value)
    except (OverflowError, ValueError):  # inf, nan
        return None
