"""An Okta event element's key fields (uuid, eventType, published) decoded by msgspec, the rest of it skipped
(checked, not decoded); given field paths, also the values at those paths, in the same pass.

The paths are what a rule set's prefilter index reads (``RuleSet.field_paths``): with their values at hand,
the engine knows which rules on every event type may match an event without decoding its body, so an event
no rule will run on is never decoded whole (issue 14 point 9). Built by whoever holds both the rule set and
the parsing (the detector, ``sentinel replay``); this module knows nothing of rules. Pure.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from typing import Any

import msgspec


class KeyFields(msgspec.Struct):
    uuid: str
    eventType: str  # the JSON key
    published: str


KEY_NAMES = ("uuid", "eventType", "published")
_KEY_FIELDS = msgspec.json.Decoder(KeyFields)
# What an object on the way to a path may hold instead of an object: any JSON value (an array's elements are
# skipped, not decoded). Only whether it is an array matters (see FieldDecoder).
_NOT_AN_OBJECT = list[msgspec.Raw] | str | int | float | bool | None


class _Node:
    """One key of the paths' tree: whether a path ends here, and the keys below it."""

    __slots__ = ("children", "ends")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.ends = False


class FieldDecoder:
    """How to decode an element's key fields and the values at ``paths``, in one msgspec pass
    (``sentinel.okta`` does it for each element: see ``_event_quickly``).

    ``decode(element)``: msgspec's decode of the key fields (``uuid``, ``eventType``, ``published``) and the
    objects on the paths; ``get(decoded)``: the value at each path, as the prefilter index reads a field
    (``PrefilterIndex.admitted_values``): text as text; None where the path is missing or null, or runs into
    text, a number, a boolean or null on the way; anything else (a number, a boolean, an object at the path,
    an array at the path or on the way) as a value that is neither text nor None. ``get`` raises
    AttributeError where something other than an object is on the way: ``walk`` then reads the values key by
    key. Without paths, ``decode`` is the key fields' alone and ``get`` is None.
    """

    def __init__(self, paths: Iterable[tuple[str, ...]] = ()) -> None:
        self.paths: tuple[tuple[str, ...], ...] = tuple(paths)
        root = _Node()
        for path in self.paths:
            node = root
            for key in path:
                node = node.children.setdefault(key, _Node())
            node.ends = True
        names = {id(root): {key: key for key in KEY_NAMES}}  # each object's attribute for each of its keys
        # Bound C methods, called directly for every element unpacked: a Python method around them was a
        # large share of what the fields cost (measured: bench/sigma_rules.py).
        self.decode: Callable[[msgspec.Raw | bytes], Any] = (
            msgspec.json.Decoder(_struct_of(root, names, top=True)).decode if self.paths else _KEY_FIELDS.decode)
        self._attrs = tuple(_attrs_of(path, root, names) for path in self.paths)
        self.get: Callable[[Any], tuple[Any, ...]] | None = None
        if any(len(p) > 1 and p[0] in KEY_NAMES for p in self.paths):
            # A path on past a key field (text: the path is missing; attrgetter would read text's attributes).
            self.get = self.walk
        elif len(self.paths) == 1:
            one = operator.attrgetter(".".join(self._attrs[0]))
            self.get = lambda decoded: (one(decoded),)
        elif self.paths:  # one C call for all the paths
            self.get = operator.attrgetter(*(".".join(attrs) for attrs in self._attrs))

    def walk(self, decoded: Any) -> tuple[Any, ...]:
        return tuple(_walk(decoded, attrs) for attrs in self._attrs)


def _struct_of(node: _Node, names: dict[int, dict[str, str]], top: bool = False) -> type[msgspec.Struct]:
    """The Struct type of one object on the paths: its keys that paths go through or end at."""
    fields: list[tuple[str, Any, Any]] = [(key, str, msgspec.NODEFAULT) for key in KEY_NAMES] if top else []
    own = names.setdefault(id(node), {})
    rename = {}
    for index, (key, child) in enumerate(node.children.items()):
        if top and key in own:  # a key field: decoded as text already
            continue
        attr = own[key] = f"f{index}"
        rename[attr] = key
        if not child.children:
            fields.append((attr, Any, None))
            continue
        below = _struct_of(child, names)
        # A missing object on the way reads as an empty one (so attrgetter walks on), unless a path ends at
        # it: then missing must read as None.
        default = None if child.ends else msgspec.field(default_factory=below)
        fields.append((attr, below | _NOT_AN_OBJECT, default))
    return msgspec.defstruct("FieldsOf" + ("Event" if top else "Object"), fields, rename=rename, gc=False)


def _attrs_of(path: tuple[str, ...], root: _Node, names: dict[int, dict[str, str]]) -> tuple[str, ...]:
    attrs, node = [], root
    for key in path:  # below a key field (text, not decoded as an object) the key itself: never read
        attrs.append(names.get(id(node), {}).get(key, key))
        node = node.children[key]
    return tuple(attrs)


def _walk(decoded: Any, attrs: tuple[str, ...]) -> Any:
    node = decoded
    for attr in attrs:
        if not isinstance(node, msgspec.Struct):  # not an object on the way
            return node if type(node) is list else None  # an array admits every rule on the field
        node = getattr(node, attr)
    return node


# An element's key fields alone, typed: the rest of it is skipped (checked, not decoded), 8x cheaper than
# decoding it.
KEY_FIELDS_ONLY = FieldDecoder()
