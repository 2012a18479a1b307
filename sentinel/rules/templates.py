"""Alert title / summary templates: literal text with ``{field.path}`` placeholders, parsed at load.

Rendering only looks values up through ``FieldPath`` (no format strings, no attribute access), so an
event cannot inject anything; a missing field renders as ``?``; long values are cut.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sentinel.rules.field_paths import ConditionError, FieldPath
from sentinel.rules.values import as_text

MISSING = "?"
MAX_VALUE_CHARS = 200
MAX_VALUES = 5


@dataclass(frozen=True, slots=True)
class Template:
    text: str
    parts: tuple[str | FieldPath, ...]

    @classmethod
    def parse(cls, text: str) -> Template:
        parts: list[str | FieldPath] = []
        literal: list[str] = []
        position = 0
        while position < len(text):
            char = text[position]
            if char in "{}" and text[position : position + 2] in ("{{", "}}"):
                literal.append(char)
                position += 2
                continue
            if char == "}":
                raise ConditionError(f"unmatched '}}' in template {text!r} (write '}}}}' for a literal brace)")
            if char == "{":
                end = text.find("}", position)
                if end < 0:
                    raise ConditionError(f"unclosed '{{' in template {text!r}")
                if literal:
                    parts.append("".join(literal))
                    literal = []
                parts.append(FieldPath.parse(text[position + 1 : end]))
                position = end + 1
                continue
            literal.append(char)
            position += 1
        if literal:
            parts.append("".join(literal))
        return cls(text, tuple(parts))

    def render(self, data: Any) -> str:
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            texts = [t for v in part.values(data)[:MAX_VALUES] if (t := as_text(v)) is not None]
            rendered = ", ".join(t[:MAX_VALUE_CHARS] for t in texts)
            out.append(rendered.replace("\n", " ").replace("\r", " ") if rendered else MISSING)
        return "".join(out)
