"""The boolean condition over named selections, Sigma-style, parsed once at load into a tree:
``selection and not (filter_a or 1 of filter_*)``, ``all of them``. Every name must be a selection."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sentinel.rules.conditions import Matcher, all_of, any_of
from sentinel.rules.field_paths import ConditionError

_TOKEN = re.compile(r"\s*(?:(\()|(\))|([A-Za-z0-9_*]+))")


@dataclass(frozen=True, slots=True)
class Node:
    op: str  # "ref", "and", "or", "not"
    name: str = ""
    children: tuple[Node, ...] = ()

    def compile(self, selections: Mapping[str, Matcher]) -> Matcher:
        if self.op == "ref":
            return selections[self.name]
        parts = tuple(child.compile(selections) for child in self.children)
        if self.op == "not":
            inner = parts[0]
            return lambda data: not inner(data)
        return all_of(parts) if self.op == "and" else any_of(parts)


def parse_condition(text: str, names: Sequence[str]) -> Node:
    """Parse ``sel and not (filter_a or 1 of filter_*)`` into a tree; every name must be a selection."""
    if not isinstance(text, str) or not text.strip():
        raise ConditionError("condition must be non-empty text")
    tokens: list[str] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if not match:
            raise ConditionError(f"unexpected {text[position:].strip()[:20]!r} in condition {text!r}")
        tokens.append(match.group(match.lastindex or 0))
        position = match.end()
    parser = _Parser(tokens, tuple(names), text)
    node = parser.parse_or()
    if parser.position != len(tokens):
        raise ConditionError(f"unexpected {tokens[parser.position]!r} in condition {text!r}")
    if len(parser.unknown) == 1:
        raise ConditionError(f"condition names unknown selection {parser.unknown[0]!r}")
    if parser.unknown:
        raise ConditionError(f"condition names unknown selections {', '.join(map(repr, parser.unknown))}")
    return node


class _Parser:
    def __init__(self, tokens: list[str], names: tuple[str, ...], text: str) -> None:
        self.tokens, self.names, self.text, self.position = tokens, names, text, 0
        self.unknown: list[str] = []  # all named in one message, after the whole condition is read

    def _peek(self) -> str:
        return self.tokens[self.position].lower() if self.position < len(self.tokens) else ""

    def _take(self) -> str:
        if self.position >= len(self.tokens):
            raise ConditionError(f"condition {self.text!r} ends too early")
        token = self.tokens[self.position]
        self.position += 1
        return token

    def parse_or(self) -> Node:
        children = [self.parse_and()]
        while self._peek() == "or":
            self._take()
            children.append(self.parse_and())
        return children[0] if len(children) == 1 else Node("or", children=tuple(children))

    def parse_and(self) -> Node:
        children = [self.parse_not()]
        while self._peek() == "and":
            self._take()
            children.append(self.parse_not())
        return children[0] if len(children) == 1 else Node("and", children=tuple(children))

    def parse_not(self) -> Node:
        if self._peek() == "not":
            self._take()
            return Node("not", children=(self.parse_not(),))
        return self.parse_atom()

    def parse_atom(self) -> Node:
        token = self._take()
        if token == "(":
            node = self.parse_or()
            if self._peek() != ")":
                raise ConditionError(f"missing ')' in condition {self.text!r}")
            self._take()
            return node
        if token.lower() in ("1", "any", "all") and self._peek() == "of":
            self._take()
            pattern = self._take()
            matched = self._expand(pattern)
            refs = tuple(Node("ref", name=n) for n in matched)
            return Node("and" if token.lower() == "all" else "or", children=refs)
        if token in ("and", "or", ")") or token.lower() in ("and", "or", "not", "of"):
            raise ConditionError(f"unexpected {token!r} in condition {self.text!r}")
        if token not in self.names and token not in self.unknown:
            self.unknown.append(token)
        return Node("ref", name=token)

    def _expand(self, pattern: str) -> list[str]:
        if pattern == "them":
            matched = list(self.names)
        else:
            regex = re.compile(re.escape(pattern).replace(r"\*", ".*") + r"\Z")
            matched = [n for n in self.names if regex.match(n)]
        if not matched:
            raise ConditionError(f"{pattern!r} in condition {self.text!r} matches no selection")
        return matched
