"""A threshold's ``when``: arithmetic and comparisons over its named measures, parsed once at load.

``failures >= 20 and users >= 10 and failures / users <= 2``: numbers, measure names, ``+ - * /``, unary
``-``, comparisons (``< <= > >= == !=``), ``and``/``or``/``not`` and parentheses. No ``eval``: a small
recursive-descent parser builds a tree, and every problem (a bad token, an unknown measure, a comparison
where a number belongs) is a ``ValueError`` naming it. Evaluating never raises: a division by zero makes
the value undefined (None), a comparison with an undefined side is undefined, ``and``/``or``/``not`` follow
three-valued logic, and an undefined ``when`` does not fire ("no match", never a crash).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn

MAX_WHEN_CHARS = 1_000
MAX_DEPTH = 32  # nesting of parentheses and unary operators: a hostile rule must not exhaust the stack

_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d+)?|\.\d+)|([A-Za-z_][A-Za-z0-9_]*)|(<=|>=|==|!=|[<>+\-*/()]))")
_COMPARISONS = ("<=", ">=", "==", "!=", "<", ">")
_KEYWORDS = ("and", "or", "not")

Value = float | bool | None  # None: undefined (a division by zero somewhere below)


@dataclass(frozen=True, slots=True)
class Expr:
    """One node: ``op`` is "num", "ref", "neg", an arithmetic or comparison operator, "and", "or", "not"."""

    op: str
    children: tuple[Expr, ...] = ()
    number: float = 0.0
    name: str = ""

    @property
    def is_bool(self) -> bool:
        return self.op in _COMPARISONS or self.op in _KEYWORDS

    def evaluate(self, values: Mapping[str, float | None]) -> Value:
        op = self.op
        if op == "num":
            return self.number
        if op == "ref":
            return values.get(self.name)
        if op in ("and", "or"):
            results = [child.evaluate(values) for child in self.children]
            decisive = op == "or"  # True decides an "or", False an "and"
            if decisive in results:
                return decisive
            return None if None in results else not decisive
        if op == "not":
            inner = self.children[0].evaluate(values)
            return None if inner is None else not inner
        sides = [child.evaluate(values) for child in self.children]
        if any(side is None for side in sides):
            return None
        numbers = [float(side) for side in sides if side is not None]
        if op == "neg":
            return -numbers[0]
        left, right = numbers
        if op in _COMPARISONS:
            return _compare(op, left, right)
        if op == "/":
            return None if right == 0 else _finite(left / right)
        return _finite(left + right if op == "+" else left - right if op == "-" else left * right)

    def holds(self, values: Mapping[str, float | None]) -> bool:
        """Whether the expression is true for these measure values (undefined is not true)."""
        return self.evaluate(values) is True

    def arithmetic(self) -> list[Expr]:
        """The compound arithmetic sub-expressions (``failures / users``), outermost first: what an alert
        shows the value of next to the measures."""
        if self.op in ("num", "ref"):
            return []
        if not self.is_bool:
            return [self]
        return [found for child in self.children for found in child.arithmetic()]

    def text(self) -> str:
        if self.op == "num":
            return f"{self.number:g}"
        if self.op == "ref":
            return self.name
        if self.op == "neg":
            return "-" + _wrapped(self.children[0], self)
        if self.op == "not":
            return "not " + _wrapped(self.children[0], self)
        if self.op in _ARITHMETIC:  # a right operand of - or / keeps its parentheses at the same precedence
            left, right = self.children
            return f"{_wrapped(left, self)} {self.op} {_wrapped(right, self, self.op in ('-', '/'))}"
        return f" {self.op} ".join(_wrapped(child, self) for child in self.children)


_ARITHMETIC = {"+": 1, "-": 1, "*": 2, "/": 2}


def _wrapped(child: Expr, parent: Expr, right: bool = False) -> str:
    if child.op in ("and", "or"):
        needs = child.op != parent.op
    elif child.op in _ARITHMETIC and (parent.op in _ARITHMETIC or parent.op == "neg"):
        mine, theirs = _ARITHMETIC[child.op], _ARITHMETIC.get(parent.op, 3)
        needs = mine < theirs or (right and mine == theirs)
    else:
        needs = False
    return f"({child.text()})" if needs else child.text()


def _compare(op: str, left: float, right: float) -> bool:
    if op == "<":
        return left < right
    if op == "<=":
        return left <= right
    if op == ">":
        return left > right
    if op == ">=":
        return left >= right
    return left == right if op == "==" else left != right


def _finite(number: float) -> float | None:
    return number if math.isfinite(number) else None


def parse_when(text: object, measures: Sequence[str]) -> Expr:
    """Parse ``text`` over the measure names ``measures``; raise ValueError saying what is wrong where."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("must be non-empty text, e.g. \"failures >= 20 and failures / users <= 2\"")
    if len(text) > MAX_WHEN_CHARS:
        raise ValueError(f"longer than {MAX_WHEN_CHARS} characters")
    tokens: list[tuple[str, int]] = []
    position = 0
    while text[position:].strip():
        match = _TOKEN.match(text, position)
        if match is None:
            start = len(text) - len(text[position:].lstrip())
            raise ValueError(f"unexpected {text[start:start + 20]!r} at character {start + 1}")
        tokens.append((match.group(match.lastindex or 0), match.start(match.lastindex or 0)))
        position = match.end()
    parser = _Parser(tokens, tuple(measures), text)
    tree = parser.parse_or(0)
    if parser.position != len(tokens):
        parser.fail("unexpected")
    if parser.unknown:
        names = ", ".join(repr(n) for n in dict.fromkeys(parser.unknown))
        known = ", ".join(measures) or "none"
        raise ValueError(f"unknown measure{'s' if len(set(parser.unknown)) > 1 else ''} {names} "
                         f"(measures: {known})")
    if not parser.named:
        raise ValueError("names no measure: it would hold for every window or for none")
    if not tree.is_bool:
        raise ValueError(f"{text.strip()!r} is a number, not a test: compare it, e.g. '{text.strip()} >= 10'")
    return tree


class _Parser:
    def __init__(self, tokens: list[tuple[str, int]], measures: tuple[str, ...], text: str) -> None:
        self.tokens, self.measures, self.text = tokens, measures, text
        self.position = 0
        self.unknown: list[str] = []
        self.named = False

    def peek(self) -> str | None:
        return self.tokens[self.position][0] if self.position < len(self.tokens) else None

    def fail(self, what: str) -> NoReturn:
        if self.position >= len(self.tokens):
            raise ValueError(f"{self.text.strip()!r} ends too soon")
        token, at = self.tokens[self.position]
        raise ValueError(f"{what} {token!r} at character {at + 1}")

    def take(self) -> str:
        token = self.tokens[self.position][0]
        self.position += 1
        return token

    def parse_or(self, depth: int) -> Expr:
        if depth > MAX_DEPTH:
            self.fail(f"nested more than {MAX_DEPTH} deep at")
        parts = [self.parse_and(depth)]
        while self.peek() == "or":
            self.take()
            parts.append(self.parse_and(depth))
        return self._logical("or", parts)

    def parse_and(self, depth: int) -> Expr:
        parts = [self.parse_not(depth)]
        while self.peek() == "and":
            self.take()
            parts.append(self.parse_not(depth))
        return self._logical("and", parts)

    def _logical(self, op: str, parts: list[Expr]) -> Expr:
        if len(parts) == 1:
            return parts[0]
        for part in parts:
            if not part.is_bool:
                raise ValueError(f"'{op}' joins tests, but {part.text()!r} is a number: compare it")
        return Expr(op, tuple(parts))

    def parse_not(self, depth: int) -> Expr:
        if self.peek() == "not":
            self.take()
            if depth > MAX_DEPTH:
                self.fail(f"nested more than {MAX_DEPTH} deep at")
            inner = self.parse_not(depth + 1)
            if not inner.is_bool:
                raise ValueError(f"'not' needs a test, but {inner.text()!r} is a number")
            return Expr("not", (inner,))
        return self.parse_comparison(depth)

    def parse_comparison(self, depth: int) -> Expr:
        left = self.parse_sum(depth)
        if self.peek() not in _COMPARISONS:
            return left
        op = self.take()
        right = self.parse_sum(depth)
        for side in (left, right):
            if side.is_bool:
                raise ValueError(f"'{op}' compares numbers, but {side.text()!r} is a test")
        if self.peek() in _COMPARISONS:
            self.fail("chained comparison: write 'a <= x and x <= b', not")
        return Expr(op, (left, right))

    def parse_sum(self, depth: int) -> Expr:
        node = self.parse_product(depth)
        while self.peek() in ("+", "-"):
            op = self.take()
            node = self._arithmetic(op, node, self.parse_product(depth))
        return node

    def parse_product(self, depth: int) -> Expr:
        node = self.parse_unary(depth)
        while self.peek() in ("*", "/"):
            op = self.take()
            node = self._arithmetic(op, node, self.parse_unary(depth))
        return node

    def _arithmetic(self, op: str, left: Expr, right: Expr) -> Expr:
        for side in (left, right):
            if side.is_bool:
                raise ValueError(f"'{op}' works on numbers, but {side.text()!r} is a test")
        return Expr(op, (left, right))

    def parse_unary(self, depth: int) -> Expr:
        if self.peek() == "-":
            self.take()
            if depth > MAX_DEPTH:
                self.fail(f"nested more than {MAX_DEPTH} deep at")
            inner = self.parse_unary(depth + 1)
            if inner.is_bool:
                raise ValueError(f"'-' works on numbers, but {inner.text()!r} is a test")
            return Expr("neg", (inner,))
        return self.parse_atom(depth)

    def parse_atom(self, depth: int) -> Expr:
        token = self.peek()
        if token is None:
            self.fail("")
        if token == "(":
            self.take()
            inner = self.parse_or(depth + 1)
            if self.peek() != ")":
                self.fail("expected ')' instead of" if self.peek() is not None else "")
            self.take()
            return inner
        if token[0].isdigit() or token[0] == ".":
            self.take()
            return Expr("num", number=float(token))
        if token[0].isalpha() or token[0] == "_":
            if token in _KEYWORDS:
                self.fail("unexpected")
            self.take()
            self.named = True
            if token not in self.measures:
                self.unknown.append(token)
            return Expr("ref", name=token)
        self.fail("unexpected")
