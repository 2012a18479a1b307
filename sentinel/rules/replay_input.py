"""Saved events for ``sentinel replay``, read as a stream: memory follows the largest single document, never
the file's size.

A file is one of:

- JSON lines: one document per line (an Okta LogEvent, a ``sentinel events --json`` row, a hook body
  ``{"data": {"events": [...]}}`` or an array of those); a line that is not JSON is reported and skipped;
- one or more JSON arrays (a whole-file array, Okta System Log API pages one after another), streamed
  element by element;
- one or more whole JSON objects spread over several lines (a pretty-printed hook body or ``jq .`` output),
  each read whole.

The first line decides: ``[`` means arrays; a line that is a whole JSON document means JSON lines; a ``{``
that does not close on its line means whole objects. After a syntax error inside an array or a multi-line
object the rest of that file cannot be trusted, so reading stops there (and says so).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import ijson

from sentinel.errors import PayloadError
from sentinel.model import Event
from sentinel.okta import decode_json, event_quickly, parse_event

PROGRESS_EVERY_BYTES = 1 << 20


@dataclass
class ReadReport:
    """Counts for the whole run; each skipped item goes to ``on_problem`` as ``source: location: message``."""

    on_problem: Callable[[str], None] = field(default=lambda _: None)
    events: int = 0
    skipped: int = 0

    def problem(self, message: str) -> None:
        self.skipped += 1
        self.on_problem(message)


class _CountingReader:
    """A binary stream that reports how many bytes were read (for a progress bar), and can put back bytes
    already read (the first line, when it turns out to begin a multi-line document)."""

    def __init__(self, stream: BinaryIO, on_bytes: Callable[[int], None] | None) -> None:
        self._stream = stream
        self._on_bytes = on_bytes
        self._pending = 0
        self._head = b""

    def _count(self, data: bytes) -> bytes:
        if self._on_bytes is not None:
            self._pending += len(data)
            if self._pending >= PROGRESS_EVERY_BYTES or not data:
                self._on_bytes(self._pending)
                self._pending = 0
        return data

    def unread(self, data: bytes) -> None:
        self._head = data + self._head

    def read(self, size: int = -1) -> bytes:
        if self._head:
            cut = len(self._head) if size < 0 else size
            head, self._head = self._head[:cut], self._head[cut:]
            return head
        return self._count(self._stream.read(size))

    def readline(self) -> bytes:
        if self._head:
            line, newline, rest = self._head.partition(b"\n")
            if newline:
                self._head = rest
                return line + newline
            self._head = b""
            return line + self.readline()
        return self._count(self._stream.readline())

    def finish(self) -> None:
        if self._on_bytes is not None and self._pending:
            self._on_bytes(self._pending)
            self._pending = 0


def is_hook_body(document: Any) -> bool:
    return isinstance(document, dict) and isinstance(document.get("data"), dict) and "events" in document["data"]


def _is_events_row(document: Any) -> bool:
    """A line of ``sentinel events --json``: the event is under ``body``."""
    return (isinstance(document, dict) and isinstance(document.get("body"), dict) and "event_type" in document
            and "eventType" not in document)


def elements(document: Any, where: str = "") -> Iterator[tuple[Any, str]]:
    """The events inside one JSON document (a hook body, an events row, an array of these, or one event),
    each with its location (``data.events[3]``, ``[7]``)."""
    if is_hook_body(document):
        events = document["data"]["events"]
        if isinstance(events, list):
            for index, raw in enumerate(events):
                yield raw, f"{where}data.events[{index}]"
        else:
            yield events, f"{where}data.events"
    elif _is_events_row(document):
        yield document["body"], f"{where}body"
    elif isinstance(document, list):
        for index, raw in enumerate(document):
            yield from elements(raw, f"{where}[{index}].") if is_hook_body(raw) or _is_events_row(raw) else [
                (raw, f"{where}[{index}]")]
    else:
        yield document, where.rstrip(".") or "event"


def _events_of(document: Any, prefix: str, source: str, report: ReadReport) -> Iterator[Event]:
    for raw, location in elements(document):
        try:
            event = parse_event(raw, location or "event")
        except PayloadError as error:
            report.problem(f"{source}: {prefix}{error}")
            continue
        report.events += 1
        yield event


def read_events(stream: BinaryIO, source: str, report: ReadReport,
                on_bytes: Callable[[int], None] | None = None) -> Iterator[Event]:
    """Yield each usable event of ``stream`` in file order; report anything skipped, with its location."""
    reader = _CountingReader(stream, on_bytes)
    try:
        yield from _read(reader, source, report)
    finally:
        reader.finish()


def _read(reader: _CountingReader, source: str, report: ReadReport) -> Iterator[Event]:
    number = 0
    first = True
    while line := reader.readline():
        number += 1
        text = line.strip()
        if not text:
            continue
        if first and text.startswith(b"["):
            reader.unread(line)
            yield from _read_arrays(reader, source, report)
            return
        if b'"data"' not in text:  # (a hook body is read as one below)
            event = event_quickly(text)  # the detector's fast path: replay runs at its rate
            if event is not None:
                first = False
                report.events += 1
                yield event
                continue
        try:
            document = decode_json(text)  # the detector's decode
        except ValueError as error:  # UnicodeDecodeError included
            if first and text.startswith(b"{"):
                reader.unread(line)
                yield from _read_objects(reader, source, report, number)
                return
            first = False
            report.problem(f"{source}: line {number}: not JSON ({_reason(error)})")
            continue
        first = False
        yield from _events_of(document, f"line {number}: ", source, report)


def _read_arrays(reader: _CountingReader, source: str, report: ReadReport) -> Iterator[Event]:
    index = -1
    try:
        for index, element in enumerate(ijson.items(reader, "item", multiple_values=True, use_float=True)):
            yield from _events_of(element, f"element {index}: ", source, report)
    except (ijson.JSONError, UnicodeDecodeError) as error:
        report.problem(f"{source}: not JSON after element {index} ({_reason(error)}); the rest of the file "
                       "was not read")


def _read_objects(reader: _CountingReader, source: str, report: ReadReport, line: int) -> Iterator[Event]:
    index = -1
    try:
        for index, document in enumerate(ijson.items(reader, "", multiple_values=True, use_float=True)):
            yield from _events_of(document, f"document {index + 1}: " if index else "", source, report)
    except (ijson.JSONError, UnicodeDecodeError) as error:
        where = f"line {line}" if index < 0 else f"after document {index + 1}"
        report.problem(f"{source}: {where}: not JSON ({_reason(error)}); the rest of the file was not read")


def _reason(error: Exception) -> str:
    # ijson's messages quote the input around the error: keep them to one short line.
    return " ".join(str(error).split())[:200]
