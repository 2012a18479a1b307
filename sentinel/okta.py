"""The Okta Event Hook protocol, pure: the verification answer and parsing a delivery body.

A body that is not a delivery at all is a :class:`PayloadError` naming the JSON path (the caller
answers 400). A delivery whose individual events are malformed keeps the good events and returns the
bad ones as :class:`Quarantined` entries, so nothing is silently dropped.

What a valid body is has one definition, :func:`_load`: intake's check (:func:`check_delivery`, whose
msgspec fast path is never more lenient) and the detector's unpacking (:func:`parse_delivery`) both
apply it, so whatever intake acknowledges the detector can unpack.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from sentinel.errors import PayloadError
from sentinel.model import Event, parse_timestamp, stored_okta_time

VERIFICATION_HEADER = "x-okta-verification-challenge"
MAX_CHALLENGE_LENGTH = 512
MAX_UUID_LENGTH = 128
MAX_EVENT_TYPE_LENGTH = 256
# A UTF-16 surrogate (U+D800..U+DFFF), raw or as a JSON escape. Paired escapes decode to one character; a
# lone one (or raw surrogate bytes, which json lets through) is a str that cannot be encoded as UTF-8, so
# SQLite could never store it.
_SURROGATE = re.compile(r"[\ud800-\udfff]|\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
# The same test, fast: scanning a str for a character class costs as much as json.loads itself (~5 ns a
# character), so a UTF-8 body is checked as bytes, where surrogatepass writes U+D800..U+DFFF as ED A0..BF.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_UTF8_SURROGATE = re.compile(rb"\xed[\xa0-\xbf]")


class LongInteger(str):
    """An integer literal longer than Python converts (``sys.get_int_max_str_digits()``, 4,300 digits by
    default: converting is quadratic), kept as its text. Valid JSON, so a body holding one is valid; an
    element holding one is quarantined (it could not be read back from the store)."""


@dataclass(frozen=True, slots=True)
class Quarantined:
    """An event element that could not be accepted, kept verbatim for inspection."""

    path: str
    reason: str
    raw: str  # the element as JSON text


@dataclass(frozen=True, slots=True)
class Delivery:
    events: tuple[Event, ...]
    quarantined: tuple[Quarantined, ...]


def verification_answer(challenge: str) -> dict[str, str]:
    """The JSON body Okta expects back from the one-time verification GET."""
    return {"verification": challenge}


def valid_challenge(challenge: str | None) -> bool:
    return bool(challenge) and len(challenge or "") <= MAX_CHALLENGE_LENGTH


def check_delivery(body: bytes) -> int:
    """What intake checks before storing a body: JSON, an object, ``data.events`` an array. Returns the
    number of elements; each is checked later, when the body is unpacked (:func:`parse_delivery`)."""
    elements = _elements_quickly(body, "surrogatepass")
    return len(elements) if elements is not None else len(_load(body)[2])


class _Data(msgspec.Struct):
    events: list[msgspec.Raw]


class _Envelope(msgspec.Struct):
    data: _Data


# Validates the whole body as JSON but builds Python objects for the envelope only: each event is
# skipped over (checked, not decoded), about 8x faster than json.loads for a 10-event delivery.
_ENVELOPE = msgspec.json.Decoder(_Envelope)


def _elements_quickly(body: bytes, utf8_errors: str) -> list[msgspec.Raw] | None:
    """The raw text of each element of ``data.events`` when the body is a well-formed UTF-8 delivery;
    None for anything else, left to :func:`_load`, which has the last word and the precise error.

    Never more lenient than :func:`_load` (tests/test_okta_parse.py compares them on mutated bodies):
    msgspec refuses everything json.loads refuses except bad UTF-8 inside strings it skips, which is
    checked here first (``surrogatepass``: what _load accepts; ``strict``: raw surrogate bytes refused
    too, so that every element's text decodes). msgspec also refuses some bodies json.loads takes (NaN,
    lone \\uD800 escapes, a BOM, UTF-16): those take the slow path, with the same outcome as before.
    """
    if not body.isascii():
        try:
            body.decode("utf-8", utf8_errors)
        except UnicodeDecodeError:
            return None
    try:
        return _ENVELOPE.decode(body).data.events
    except (msgspec.DecodeError, RecursionError):  # ValidationError is a DecodeError
        return None


def parse_delivery(body: bytes) -> Delivery:
    """Parse an Event Hook POST body into events (good ones) and quarantined elements (bad ones)."""
    quick = _parse_quickly(body)
    return quick if quick is not None else parse_delivery_with_json(body)


def parse_delivery_with_json(body: bytes) -> Delivery:
    """:func:`parse_delivery` through ``json.loads`` (the definition, :func:`_load`): the path for every
    body the msgspec one is not sure to read the same way; also what tests and bench/ compare it with."""
    encoding, text, raw_events, long_integers = _load(body)
    sources = _element_texts(body, len(raw_events))
    events: list[Event] = []
    quarantined: list[Quarantined] = []
    seen: set[str] = set()
    if encoding.startswith("utf-8"):
        maybe_surrogates = _UTF8_SURROGATE.search(body) is not None or _SURROGATE_ESCAPE.search(text) is not None
    else:
        maybe_surrogates = _SURROGATE.search(text) is not None
    for index, raw in enumerate(raw_events):
        path = f"data.events[{index}]"
        source = sources[index] if sources else None
        try:
            if long_integers and _holds_long_integer(raw):
                raise PayloadError(f"contains an integer of more than {sys.get_int_max_str_digits()} digits", path)
            event = parse_event(raw, path, source)
            if maybe_surrogates and not _encodable(raw):
                raise PayloadError("contains an unpaired UTF-16 surrogate (\\uD800-\\uDFFF): not Unicode text", path)
        except PayloadError as e:
            quarantined.append(Quarantined(path=e.location, reason=e.message,
                                           raw=source if source is not None else _dump(raw)))
            continue
        if event.uuid in seen:  # the same event twice in one batch: keep the first
            continue
        seen.add(event.uuid)
        events.append(event)
    return Delivery(events=tuple(events), quarantined=tuple(quarantined))


# Generic msgspec decoding builds the same objects as json.loads (integers of any length Python converts
# included; longer ones it refuses, as they take the slow path), in one pass over each element's bytes.
_ELEMENT = msgspec.json.Decoder()


def decode_json(document: bytes | str) -> Any:
    """One JSON document as json.loads reads it, decoded by msgspec when it can (the detector's decode,
    shared with ``sentinel replay``); json.loads has the last word (NaN, lone surrogate escapes, integers
    past Python's limit) and raises the same errors as before."""
    try:
        return _ELEMENT.decode(document)
    except (msgspec.DecodeError, RecursionError):
        return json.loads(document)


def _parse_quickly(body: bytes) -> Delivery | None:
    """:func:`parse_delivery` for a well-formed UTF-8 body, each element read once by msgspec (no
    ``json.loads`` of the whole body, no second pass for each element's text); None for any body it is not
    sure to read exactly as :func:`_load` does, left to the slow path. Strict UTF-8 and msgspec's refusal
    of lone surrogate escapes mean every string is encodable, so there is no surrogate check to run."""
    elements = _elements_quickly(body, "strict")
    if elements is None:
        return None
    events: list[Event] = []
    quarantined: list[Quarantined] = []
    seen: set[str] = set()
    for index, element in enumerate(elements):
        source = str(element, "utf-8")
        event = _event_quickly(element, source)
        if event is None:  # not an event with good key fields, or not one to decode later: all of it now
            try:
                raw = _ELEMENT.decode(element)
            except (msgspec.DecodeError, RecursionError):
                return None
            try:
                event = parse_event(raw, f"data.events[{index}]", source)
            except PayloadError as e:
                quarantined.append(Quarantined(path=e.location, reason=e.message, raw=source))
                continue
        if event.uuid in seen:  # the same event twice in one batch: keep the first
            continue
        seen.add(event.uuid)
        events.append(event)
    return Delivery(events=tuple(events), quarantined=tuple(quarantined))


def event_quickly(document: bytes) -> Event | None:
    """One JSON document that is an Okta event with good key fields, as :func:`parse_delivery` reads an
    element: its body decoded when read. None for anything else, or anything it is not sure of (the
    caller decodes it whole, :func:`decode_json`, and checks it with :func:`parse_event`). What
    ``sentinel replay`` shares with the detector (issue 16)."""
    try:
        source = document.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return _event_quickly(document, source)  # msgspec checks the whole document as the envelope does


class _KeyFields(msgspec.Struct):
    uuid: str
    eventType: str  # the JSON key
    published: str


# An element's key fields, typed: the rest of it is skipped (checked, not decoded), 8x cheaper than decoding it.
_KEY_FIELDS = msgspec.json.Decoder(_KeyFields)


def _decode_later(source: str) -> Any:
    """:func:`decode_json` for a body read after unpacking. The key fields' decode has already gone through
    every level of it (msgspec's skipping counts nesting against the recursion limit as decoding does), but
    a read deeper in the stack has less room: a body nested near the limit is then decoded on a new
    thread, whose stack is emptier than unpacking's was, so it decodes there if it unpacked."""
    try:
        return decode_json(source)
    except RecursionError:
        return _on_a_fresh_stack(source)


def _on_a_fresh_stack(source: str) -> Any:
    outcome: list[tuple[bool, Any]] = []

    def run() -> None:
        try:
            outcome.append((True, decode_json(source)))
        except BaseException as e:  # raised again on the caller's thread
            outcome.append((False, e))

    thread = threading.Thread(target=run, name="sentinel-decode-deep", daemon=True)
    thread.start()
    thread.join()
    decoded, value = outcome[0]
    if not decoded:
        raise value
    return value


def _event_quickly(element: msgspec.Raw | bytes, source: str) -> Event | None:
    """The event of one element (already checked as JSON by :func:`_elements_quickly`) from its key fields
    alone, its body decoded when read, by :func:`decode_json` (the same objects the eager decode builds).
    None for anything :func:`parse_event` must look at (a field missing, not text, empty, too long, a time
    it must parse), or whose decoding later could go otherwise than now: an integer too long for Python
    (the element is quarantined). The caller then decodes it all. (Counting brackets to turn away nesting
    near the recursion limit cost 1.3 µs an event, 4% of the detector: :func:`_decode_later` instead.)"""
    try:
        key = _KEY_FIELDS.decode(element)
    except (msgspec.DecodeError, RecursionError):  # ValidationError is a DecodeError
        return None
    uuid, event_type, published = key.uuid, key.eventType, key.published
    if not (0 < len(uuid) <= MAX_UUID_LENGTH and 0 < len(event_type) <= MAX_EVENT_TYPE_LENGTH
            and 0 < len(published) <= 40 and uuid.strip() and event_type.strip()):
        return None
    try:
        moment = parse_timestamp(published)
    except ValueError:
        return None
    digits = sys.get_int_max_str_digits()
    if digits and len(source) > digits and re.search(f"[0-9]{{{digits + 1}}}", source):
        return None
    return Event.later(uuid, event_type, moment, source, _decode_later, stored_okta_time(published))


def _element_texts(body: bytes, count: int) -> list[str] | None:
    """Each element's JSON text as delivered, so that the store keeps it instead of serialising the
    parsed element again (44 µs an event); None for a body only json.loads takes, or with raw surrogate
    bytes, whose elements are serialised as before."""
    elements = _elements_quickly(body, "strict")
    if elements is None or len(elements) != count:  # both take the last of duplicate keys: never unequal
        return None
    return [bytes(element).decode("utf-8") for element in elements]


def _load(body: bytes) -> tuple[str, str, list[Any], bool]:
    """The one definition of a valid body: JSON (as ``json.loads`` reads it, integers of any length
    included), an object, ``data.events`` an array. Returns the encoding, the text, the elements, and
    whether some integer is a :class:`LongInteger`."""
    try:
        encoding = json.detect_encoding(body)
        text = body.decode(encoding, "surrogatepass")  # as json.loads(bytes) does
        doc, long_integers = _decode(text)
    except UnicodeDecodeError:
        raise PayloadError("body is not UTF-8 text", "$") from None
    except json.JSONDecodeError as e:
        raise PayloadError(f"malformed JSON at line {e.lineno} column {e.colno}", "$") from None
    except RecursionError:
        raise PayloadError("JSON nested too deeply", "$") from None
    if not isinstance(doc, dict):
        raise PayloadError(f"must be a JSON object, not {_json_type(doc)}", "$")
    data = doc.get("data")
    if not isinstance(data, dict):
        raise PayloadError("missing" if data is None else f"must be an object, not {_json_type(data)}", "data")
    raw_events = data.get("events")
    if not isinstance(raw_events, list):
        problem = "missing" if raw_events is None else f"must be an array, not {_json_type(raw_events)}"
        raise PayloadError(problem, "data.events")
    return encoding, text, raw_events, long_integers


def _decode(text: str) -> tuple[Any, bool]:
    try:
        return json.loads(text), False
    except json.JSONDecodeError:
        raise
    except ValueError:  # an integer too long for int(); msgspec takes it, so must this (rare: decode again)
        return json.loads(text, parse_int=_integer), True


def _integer(text: str) -> int | LongInteger:
    try:
        return int(text)
    except ValueError:
        return LongInteger(text)


def _holds_long_integer(value: Any) -> bool:
    stack = [value]  # not recursive: an element may be nested as deep as json.loads allows
    while stack:
        item = stack.pop()
        if isinstance(item, LongInteger):
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def parse_event(raw: Any, path: str = "event", source: str | None = None) -> Event:
    """Check the fields Sentinel relies on; everything else is kept as delivered. ``source``: the
    element's JSON text, if known."""
    if not isinstance(raw, dict):
        raise PayloadError(f"must be an object, not {_json_type(raw)}", path)
    uuid = _text(raw, "uuid", path, MAX_UUID_LENGTH)
    event_type = _text(raw, "eventType", path, MAX_EVENT_TYPE_LENGTH)
    published_text = _text(raw, "published", path, 40)
    try:
        published = parse_timestamp(published_text)
    except ValueError:
        raise PayloadError("not an ISO-8601 timestamp", f"{path}.published") from None
    return Event(uuid=uuid, event_type=event_type, published=published, data=raw, source=source)


def _text(raw: Mapping[str, Any], key: str, path: str, limit: int) -> str:
    value = raw.get(key)
    where = f"{path}.{key}"
    if value is None:
        raise PayloadError("missing", where)
    if not isinstance(value, str):
        raise PayloadError(f"must be a string, not {_json_type(value)}", where)
    if not value.strip():
        raise PayloadError("must not be empty", where)
    if len(value) > limit:
        raise PayloadError(f"longer than {limit} characters", where)
    return value


def _encodable(raw: Any) -> bool:
    """Whether every string in ``raw`` (keys included) can be written as UTF-8."""
    try:
        json.dumps(raw, ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, ValueError, RecursionError):
        return False
    return True


def _dump(raw: Any) -> str:
    try:
        text = json.dumps(raw, ensure_ascii=False, separators=(",", ":"))
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:  # lone surrogates: keep them as \uXXXX escapes (ASCII JSON)
        return json.dumps(raw, ensure_ascii=True, separators=(",", ":"))
    except (ValueError, RecursionError):
        return repr(raw)[:10_000]


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float, LongInteger)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
