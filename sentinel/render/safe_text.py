"""Hostile text made inert for a terminal, a JSON line or a Slack message. Pure: no I/O.

Every event field is attacker-controlled: a display name can carry ``ESC ]0;title BEL`` (sets the
terminal title), ``ESC [2J`` (clears the screen), U+202E (reverses what follows), or a newline that forges
a table row. Such characters — controls (C0, DEL, C1), format characters (bidi embeddings, overrides and
isolates, zero-width characters, BOM, tag characters), line and paragraph separators, lone surrogates —
are shown as visible escapes (``\\x1b``, ``\\u202e``) instead of being acted on: the operator sees that
something was there, and nothing is interpreted.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

# Cc: C0, DEL and C1 controls; Cf: format (bidi controls, ZWSP/ZWJ/LRM/RLM, BOM, tags, ...);
# Cs: lone surrogates; Zl/Zp: U+2028 and U+2029.
UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
# Printable ASCII cannot be unsafe: only the rest is looked up (most text never reaches the lookup).
_NOT_PLAIN = re.compile(r"[^\x20-\x7e]")


def is_unsafe(char: str) -> bool:
    return unicodedata.category(char) in UNSAFE_CATEGORIES


def _escape(char: str) -> str:
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    return _escape(char) if is_unsafe(char) else char


def inert(text: str) -> str:
    """One line of text with every control, bidi and invisible format character shown as an escape."""
    return _NOT_PLAIN.sub(_visible, text)


def inert_lines(text: str) -> str:
    """Text we composed line by line: each line made inert, our own line breaks kept."""
    return "\n".join(inert(line) for line in text.split("\n"))


def has_unsafe(text: str) -> bool:
    return any(is_unsafe(c) for c in _NOT_PLAIN.findall(text))


def _json_escape(match: re.Match[str]) -> str:
    char = match.group()
    if not is_unsafe(char):
        return char
    code = ord(char)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000  # JSON spells characters past the BMP as a UTF-16 surrogate pair
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def json_line(value: Any) -> str:
    """One line of JSON, readable (``ensure_ascii=False``) yet with every unsafe character \\u-escaped.

    ``json.dumps`` escapes only C0 controls when ``ensure_ascii`` is off; DEL, C1, bidi and the rest would
    reach the terminal raw. They can only occur inside JSON strings, where a ``\\uXXXX`` escape means the
    same character, so the value a JSON reader gets is unchanged.
    """
    text = json.dumps(value, ensure_ascii=False, default=str)
    return _NOT_PLAIN.sub(_json_escape, text)


# --- Slack mrkdwn -------------------------------------------------------------------------------------
# Slack has no escape for its formatting characters; like jsx-slack's <Escape>, event text gets a
# look-alike instead, so ``*bold*`` or ``~strike~`` stays literal. An underscore is swapped only where
# it could open or close italics (next to a non-word character): ``first_last@example.com`` stays as is.
_MRKDWN_LOOKALIKES = str.maketrans({"*": "\u2217", "~": "\u223c", "`": "\u02cb"})
_ITALIC_UNDERSCORE = re.compile(r"(?<!\w)_|_(?!\w)")


def mrkdwn_inert(text: str) -> str:
    """Swap Slack's formatting characters (``* ~ ` _``, a leading ``>``) for look-alikes.

    ``< > &`` are not touched here: they are entity-escaped on the way to Slack (``&lt;`` ``&gt;``
    ``&amp;``), which makes ``<!channel>`` and ``<https://x|label>`` plain text.
    """
    text = _ITALIC_UNDERSCORE.sub("\u02cd", text.translate(_MRKDWN_LOOKALIKES))
    stripped = text.lstrip(" ")
    if stripped.startswith(">"):  # a quote marker at the start of a line
        text = text[: len(text) - len(stripped)] + "\uff1e" + stripped[1:]
    return text
