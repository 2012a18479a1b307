"""Named lists of values kept next to the rules: ``lists/NAME.txt`` files and ``[lists]`` tables in TOML.

A rule names a list instead of repeating its values (``in_list = "vip_users"``, ``cidr = { list = "admin_nets" }``);
the lists are read by the same loader call as the rules, so a reload picks up their changes too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from sentinel.rules.problems import Problems

LIST_FOLDER = "lists"  # text lists are *.txt files in a folder of this name anywhere under a rules folder
MAX_LIST_VALUES = 100_000
MAX_VALUE_CHARS = 4_096
MAX_LIST_BYTES = 32 << 20  # checked before reading, so a stray huge file costs nothing
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


@dataclass(frozen=True, slots=True)
class NamedList:
    name: str
    values: tuple[str, ...]
    places: tuple[str, ...]  # where each value was written ("file line 3", "file: lists.name[2]")
    source: str  # the file the list came from


def list_text_files(paths: Iterable[str | Path]) -> list[Path]:
    """``*.txt`` files in ``lists`` folders under the given folders, and ``*.txt`` files named directly."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*.txt") if p.parent.name == LIST_FOLDER and p.is_file()))
        elif path.is_file() and path.suffix == ".txt":
            files.append(path)
    return files


def _check_value(value: str, place: str, problems: Problems, key: str) -> bool:
    if len(value) > MAX_VALUE_CHARS:
        problems.add(key, f"{place}: value longer than {MAX_VALUE_CHARS} characters")
        return False
    return True


def read_text_list(file: Path, problems: Problems) -> NamedList | None:
    """One value per line; blank lines and lines starting with ``#`` are skipped; spaces around a value
    are trimmed."""
    name = file.stem
    if not _NAME.fullmatch(name):
        problems.add("", "a list's file name must be letters, digits, '.', '_' or '-' (at most 128), then .txt")
        return None
    try:
        size = file.stat().st_size
        if size > MAX_LIST_BYTES:
            problems.add("", f"list file is {size} bytes (at most {MAX_LIST_BYTES})")
            return None
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        problems.add("", f"cannot read list: {error}")
        return None
    values: list[str] = []
    places: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        value = line.strip()
        if not value or value.startswith("#"):
            continue
        if _check_value(value, f"line {number}", problems, f"line {number}"):
            values.append(value)
            places.append(f"{file} line {number}")
    return _finish(name, values, places, str(file), "", problems)


def read_toml_lists(table: object, file: Path, problems: Problems) -> list[NamedList]:
    """``[lists]`` with ``name = ["value", ...]`` entries."""
    if not isinstance(table, dict):
        problems.add("lists", "must be a table of name = [values]")
        return []
    found = []
    for name, values in table.items():
        key = f"lists.{name}"
        if not _NAME.fullmatch(name):
            problems.add(key, "list names are letters, digits, '.', '_' or '-' (at most 128)")
            continue
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            problems.add(key, "must be a list of text")
            continue
        good = [(v, f"{file}: {key}[{i}]") for i, v in enumerate(values)
                if _check_value(v, f"[{i}]", problems, key)]
        named = _finish(name, [v for v, _ in good], [p for _, p in good], str(file), key, problems)
        if named is not None:
            found.append(named)
    return found


def _finish(name: str, values: list[str], places: list[str], source: str, key: str,
            problems: Problems) -> NamedList | None:
    if not values:
        problems.add(key, f"list {name!r} is empty")
        return None
    if len(values) > MAX_LIST_VALUES:
        problems.add(key, f"list {name!r} has {len(values)} values (at most {MAX_LIST_VALUES})")
        return None
    return NamedList(name, tuple(values), tuple(places), source)


def resolve(names: object, lists: Mapping[str, NamedList]) -> list[NamedList]:
    """The lists ``names`` (one name or a list of names) refer to; ValueError for a bad or unknown name."""
    wanted = names if isinstance(names, list) else [names]
    if not wanted or not all(isinstance(n, str) for n in wanted):
        raise ValueError("expects a list name (or a list of list names)")
    found = []
    for name in map(str, wanted):
        named = lists.get(name)
        if named is None:
            known = ", ".join(sorted(lists)[:20]) or "none loaded"
            raise ValueError(f"unknown list {name!r} (lists: {known})")
        found.append(named)
    return found



def names_used(spec: object) -> set[str]:
    """The list names a rule's detection refers to (``in_list = ...`` and ``{ list = ... }``), for the
    unused-list warning; a field literally called ``list`` may be counted too, which only hides a warning."""
    found: set[str] = set()
    if isinstance(spec, dict):
        for key, value in spec.items():
            if key in ("in_list", "list"):
                found.update(n for n in (value if isinstance(value, list) else [value]) if isinstance(n, str))
            else:
                found |= names_used(value)
    elif isinstance(spec, list):
        for item in spec:
            found |= names_used(item)
    return found
