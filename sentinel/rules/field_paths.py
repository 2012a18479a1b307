"""Field paths in rules, resolved on an event, and the error every rule construct raises.

Paths are dotted (``actor.alternateId``); an array matches if any element does; ``target[type=User]``
keeps the elements whose ``type`` is ``User``; ``target[0]`` picks one position; ``behaviors|kv`` and
``threatDetections|json`` decode a value Okta packed into a string. A missing field yields no values:
no match, never an error. Nothing here raises while matching an event.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sentinel.rules.values import DECODERS, as_text

# Arrays wider than this are only looked at up to this many elements (hostile events can be huge).
MAX_ELEMENTS = 256
MAX_DEPTH = 32

_EMPTY: tuple[Any, ...] = ()


class ConditionError(ValueError):
    """A rule construct that cannot be compiled; ``key`` is the sub-path where it was found.

    ``errors`` holds every problem found in the construct (this one first): a rule's author sees them
    all in one run, not one per run.
    """

    def __init__(self, message: str, key: str = "", errors: Sequence[ConditionError] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.key = key
        self.errors: tuple[ConditionError, ...] = tuple(errors) or (self,)

    @classmethod
    def of(cls, errors: Sequence[ConditionError]) -> ConditionError:
        """One error standing for all of ``errors`` (the first one's message and key)."""
        every = [inner for error in errors for inner in error.errors]
        return every[0] if len(every) == 1 else cls(every[0].message, every[0].key, every)

    def under(self, head: str) -> ConditionError:
        """The same problems, found under the sub-path ``head``."""
        return ConditionError.of([ConditionError(e.message, join(head, e.key)) for e in self.errors])


# --- field paths ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    kind: str  # "key", "index", "filter", "decode"
    key: str = ""
    index: int = 0
    value: str = ""


_SEGMENT = re.compile(r"^([^\[\]|]+)?((?:\[[^\]]*\])*)(?:\|(\w+))?$")
_BRACKET = re.compile(r"\[([^\]]*)\]")


def _split_path(text: str) -> list[str]:
    """Split on dots that are outside brackets, so ``target[alternateId=a.b@x.com]`` stays whole."""
    parts, depth, start = [], 0, 0
    for position, char in enumerate(text):
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        elif char == "." and depth == 0:
            parts.append(text[start:position])
            start = position + 1
    parts.append(text[start:])
    return parts


@dataclass(frozen=True, slots=True)
class FieldPath:
    text: str
    steps: tuple[Step, ...]
    simple_keys: tuple[str, ...] | None  # set when every step is a plain key: the fast path

    @classmethod
    def parse(cls, text: str) -> FieldPath:
        if not isinstance(text, str) or not text.strip():
            raise ConditionError("a field path must be non-empty text")
        steps: list[Step] = []
        for segment in _split_path(text.strip()):
            match = _SEGMENT.match(segment)
            if not match or not (match.group(1) or match.group(2)):
                raise ConditionError(f"bad field path {text!r} at {segment!r}")
            name, brackets, decoder = match.groups()
            if name:
                steps.append(Step("key", key=name))
            for inner in _BRACKET.findall(brackets or ""):
                steps.append(_bracket_step(inner, text))
            if decoder:
                if decoder not in DECODERS:
                    known = ", ".join(sorted(DECODERS))
                    raise ConditionError(f"unknown decoder |{decoder} in {text!r} (known: {known})")
                steps.append(Step("decode", key=decoder))
        if len(steps) > MAX_DEPTH:
            raise ConditionError(f"field path {text!r} is deeper than {MAX_DEPTH}")
        simple = tuple(s.key for s in steps) if all(s.kind == "key" for s in steps) else None
        return cls(text.strip(), tuple(steps), simple)

    def values(self, data: Any) -> Sequence[Any]:
        """Every non-null leaf value this path reaches (leaf arrays are flattened); empty when missing."""
        if self.simple_keys is not None:
            node = data
            for key in self.simple_keys:
                if type(node) is not dict:
                    break
                node = node.get(key)
            else:
                if node is None:
                    return _EMPTY
                if type(node) is list:
                    return [v for v in node[:MAX_ELEMENTS] if v is not None]
                return (node,)
            if type(node) is not list:
                return _EMPTY
            # An array on the way: fall back to the general walk (any-element semantics).
        return _resolve([data], self.steps)


def _bracket_step(inner: str, path: str) -> Step:
    inner = inner.strip()
    if re.fullmatch(r"-?\d+", inner):
        return Step("index", index=int(inner))
    key, equals, value = inner.partition("=")
    if not equals or not key.strip():
        raise ConditionError(f"bad element selector [{inner}] in {path!r} (use [0] or [key=value])")
    return Step("filter", key=key.strip(), value=value.strip())


def _resolve(nodes: list[Any], steps: Sequence[Step]) -> Sequence[Any]:
    for step in steps:
        found: list[Any] = []
        for node in nodes:
            _apply(step, node, found)
        if not found:
            return _EMPTY
        nodes = found
    leaves: list[Any] = []
    for node in nodes:
        if type(node) is list:
            leaves.extend(v for v in node[:MAX_ELEMENTS] if v is not None)
        elif node is not None:
            leaves.append(node)
    return leaves


def _apply(step: Step, node: Any, found: list[Any]) -> None:
    kind = step.kind
    if kind == "key":
        if type(node) is dict:
            value = node.get(step.key)
            if value is not None:
                found.append(value)
        elif type(node) is list:
            for element in node[:MAX_ELEMENTS]:
                if type(element) is dict:
                    value = element.get(step.key)
                    if value is not None:
                        found.append(value)
    elif kind == "index":
        if type(node) is list and -len(node) <= step.index < len(node):
            found.append(node[step.index])
    elif kind == "filter":
        elements = node[:MAX_ELEMENTS] if type(node) is list else [node]
        for element in elements:
            if type(element) is dict and as_text(element.get(step.key)) == step.value:
                found.append(element)
    elif kind == "decode" and type(node) is str:
        decoded = DECODERS[step.key](node)
        if decoded is not None:
            found.append(decoded)


def join(head: str, tail: str) -> str:
    if not tail:
        return head
    if tail.startswith("["):
        return head + tail
    return f"{head}.{tail}" if head else tail
