"""Case rules of the rule language: which field tests fold case, and which fields people type.

Text operators (equals, in_list, contains, startswith, endswith, glob, equals_field) compare
case-insensitively by default, as Sigma does for plain values: a rule written the obvious way must not
silently miss ``Alice@Example.com``. ``case_sensitive = true`` (or the older ``ignore_case = false``) opts
out. ``regex`` stays as written (case-sensitive unless ``(?i)`` or ``ignore_case = true``), as Sigma's ``re``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

# Operators whose default is case-insensitive; regex is not among them (it stays as written).
FOLDING_OPERATORS = frozenset({"equals", "in_list", "contains", "startswith", "endswith", "glob", "equals_field"})

# Field paths whose values people type (names, logins, user agents, free-form debug data): a case-sensitive
# test on one of these misses case variants. A trailing ``.*`` covers every path below the prefix; element
# selectors (``target[type=User]``, ``target[0]``) are ignored when comparing, and decoders (``|kv``) too.
PEOPLE_TYPED_FIELDS: tuple[str, ...] = (
    "actor.alternateId",
    "actor.displayName",
    "target.alternateId",
    "target.displayName",
    "client.userAgent.rawUserAgent",
    "client.geographicalContext.city",
    "debugContext.debugData.*",
    "outcome.reason",
)


def folds_case(operator: str, spec: Mapping[str, object]) -> bool:
    """Whether ``operator`` in the field table ``spec`` compares case-insensitively."""
    ignore_case, case_sensitive = spec.get("ignore_case"), spec.get("case_sensitive")
    if operator in FOLDING_OPERATORS:
        return case_sensitive is not True and ignore_case is not False
    return ignore_case is True or case_sensitive is False


def contradiction(spec: Mapping[str, object]) -> str | None:
    """A message when ``ignore_case`` and ``case_sensitive`` are both set and disagree."""
    ignore_case, case_sensitive = spec.get("ignore_case"), spec.get("case_sensitive")
    if isinstance(ignore_case, bool) and isinstance(case_sensitive, bool) and ignore_case == case_sensitive:
        return f"ignore_case = {str(ignore_case).lower()} contradicts case_sensitive = {str(case_sensitive).lower()}"
    return None


_SELECTOR = re.compile(r"\[[^\]]*\]|\|\w+$")


def people_typed(path: str) -> bool:
    """Whether a field path reaches values people type (see PEOPLE_TYPED_FIELDS)."""
    plain = _SELECTOR.sub("", path.strip())
    return any(plain == field or (field.endswith(".*") and plain.startswith(field[:-1]))
               for field in PEOPLE_TYPED_FIELDS)


def _has_letters(operand: object) -> bool:
    values = operand if isinstance(operand, list) else [operand]
    return any(isinstance(v, str) and any(c.isalpha() for c in v) for v in values)


def case_sensitive_tests(detection: object) -> Iterator[tuple[str, str, str]]:
    """``(selection key, field path, operator)`` for each case-sensitive text test on a people-typed field
    in a rule's ``detection`` table (a regex counts unless it folds with ``(?i)`` or ignore_case)."""
    if not isinstance(detection, dict):
        return
    for name, selection in detection.items():
        tables = selection if isinstance(selection, list) else [selection]
        for position, table in enumerate(tables):
            if not isinstance(table, dict):
                continue
            where = f"{name}[{position}]" if isinstance(selection, list) else str(name)
            for path, spec in table.items():
                if not isinstance(path, str) or not people_typed(path):
                    continue
                fields = spec if isinstance(spec, dict) else {"equals": spec}
                for operator, operand in fields.items():
                    if operator not in FOLDING_OPERATORS and operator != "regex":
                        continue
                    if folds_case(operator, fields) or not _has_letters(operand):
                        continue
                    patterns = operand if isinstance(operand, list) else [operand]
                    if operator == "regex" and all(isinstance(p, str) and p.startswith("(?i)") for p in patterns):
                        continue
                    yield where, path, operator
