"""One index over the prefilters of the rules that read every event type (``sentinel.rules.prefilter``).

Each field some prefilter tests is read once per event, whatever the number of rules on it: the equality
prefilters on a field share one dict from folded value to the rules that want it, and the substring
prefilters on a field share one fold and one pass over their distinct folded needles. ``admitted(data)``
says which rules may match: exactly the rules whose own ``Prefilter.admits(data)`` is true (tests hold the
two to the same answer). Pure.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import Any

from sentinel.rules.prefilter import Prefilter

_NOTHING: frozenset[Any] = frozenset()
# Per field, the answers for the texts seen last (raw text → the rules it admits): most events repeat a few
# values (displayMessage, legacyEventType), whose answer then costs one dict lookup, no fold and no search.
# Bounded: full, it starts afresh; texts longer than this are answered without being kept.
ANSWERS_KEPT = 4096
ANSWER_TEXT_CHARS = 256


class _FieldProbe:
    """The prefilters on one field path: which rules a text value of the field admits."""

    __slots__ = ("answers", "equal", "every", "keys", "lengths", "longest", "needles")

    def __init__(self, keys: tuple[str, ...]) -> None:
        self.keys = keys
        self.equal: dict[str, frozenset[Hashable]] = {}  # folded operand → the equality rules wanting it
        self.longest = -1  # a value longer than every equality operand cannot fold to one (folding never shortens)
        self.lengths: frozenset[int] = _NOTHING  # ASCII text folds to text as long: other lengths equal no operand
        self.needles: tuple[tuple[str, frozenset[Hashable]], ...] = ()  # (folded needle, substring rules)
        self.every: frozenset[Hashable] = _NOTHING  # every rule on the field: a non-text value admits them all
        self.answers: dict[str, frozenset[Hashable]] = {}

    def add(self, key: Hashable, prefilter: Prefilter) -> None:
        self.every |= {key}
        if prefilter.operator == "equals":
            for text in prefilter.texts:
                self.equal[text] = self.equal.get(text, _NOTHING) | {key}
                self.longest = max(self.longest, len(text))
                self.lengths |= {len(text)}
            return
        needles = dict(self.needles)
        for text in prefilter.texts:
            needles[text] = needles.get(text, _NOTHING) | {key}
        # Shortest first: the cheapest searches come first; order does not change the answer.
        self.needles = tuple(sorted(needles.items(), key=lambda item: (len(item[0]), item[0])))

    def may_equal(self, text: str) -> bool:
        """Whether ``text`` can fold to an equality operand, by its length alone (no fold, no hash)."""
        return len(text) in self.lengths if text.isascii() else len(text) <= self.longest

    def answer(self, text: str) -> frozenset[Hashable]:
        """The rules ``text`` admits: one fold, one lookup among the equality operands, one pass over the
        distinct needles (kept for the next event with the same text)."""
        folded = None
        found: frozenset[Hashable] = _NOTHING
        if self.may_equal(text):
            folded = text.casefold()
            found = self.equal.get(folded, _NOTHING)
        if self.needles:
            if folded is None:
                folded = text.casefold()
            for needle, wanting in self.needles:
                if needle in folded:
                    found = found | wanting
        if len(text) <= ANSWER_TEXT_CHARS:
            if len(self.answers) >= ANSWERS_KEPT:
                self.answers.clear()
            self.answers[text] = found
        return found


class PrefilterIndex:
    """The prefilters of many rules, each given with a key (``admitted`` answers with the keys).

    Holds a bounded cache of answers per field; otherwise treat as immutable (a reload builds a new one)."""

    def __init__(self, prefilters: Iterable[tuple[Hashable, Prefilter]]) -> None:
        probes: dict[tuple[str, ...], _FieldProbe] = {}
        for key, prefilter in prefilters:
            probes.setdefault(prefilter.keys, _FieldProbe(prefilter.keys)).add(key, prefilter)
        self.probes = tuple(probes.values())
        # For the loop: top-level fields (the key, the cached answers, the probe, whether it tests equality
        # only, the operands' lengths, the longest), then the deeper ones (the keys walked before the last
        # one first).
        self._top = tuple((p.keys[0], p.answers, p, not p.needles, p.lengths, p.longest)
                          for p in self.probes if len(p.keys) == 1)
        self._deep = tuple((p.keys[:-1], p.keys[-1], p.answers, p, not p.needles, p.lengths, p.longest)
                           for p in self.probes if len(p.keys) > 1)

    def __bool__(self) -> bool:
        return bool(self.probes)

    @property
    def fields(self) -> int:
        """How many distinct fields are read per event."""
        return len(self.probes)

    def admitted(self, data: Mapping[str, Any]) -> frozenset[Hashable]:
        """The keys of the rules whose prefilter admits ``data``: the field is missing or null, or text
        that equals (contains) none of the rule's values, rules a rule out; an array or another non-text
        value on the way, or on the field, admits every rule on that field (the rule decides)."""
        found: frozenset[Hashable] = _NOTHING
        for last, answers, probe, equality_only, lengths, longest in self._top:
            node: Any = data.get(last)
            if type(node) is str:
                if equality_only and (len(node) not in lengths if node.isascii() else len(node) > longest):
                    continue  # no operand this long (as probe.may_equal): neither hashed nor folded
                wanted = answers.get(node)
                if wanted is None:
                    wanted = probe.answer(node)
                if wanted:
                    found = found | wanted if found else wanted
            elif node is not None:  # an array or a number, boolean or object: lenient comparisons
                found = found | probe.every if found else probe.every
        for path, last, answers, probe, equality_only, lengths, longest in self._deep:
            node = data
            for key in path:
                node = node.get(key)
                if type(node) is not dict:
                    if type(node) is list:  # an array on the way: any element may match
                        found = found | probe.every if found else probe.every
                    break  # text, a number or nothing on the way: the field is missing
            else:
                node = node.get(last)
                if type(node) is str:
                    if equality_only and (len(node) not in lengths if node.isascii() else len(node) > longest):
                        continue  # no operand this long (as probe.may_equal): neither hashed nor folded
                    wanted = answers.get(node)
                    if wanted is None:
                        wanted = probe.answer(node)
                    if wanted:
                        found = found | wanted if found else wanted
                elif node is not None:  # an array or a number, boolean or object: lenient comparisons
                    found = found | probe.every if found else probe.every
        return found
