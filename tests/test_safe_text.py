"""The neutraliser: control, bidi and invisible characters become visible escapes; JSON stays the same value."""

from __future__ import annotations

import json
import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel.render.safe_text import has_unsafe, inert, inert_lines, json_line, mrkdwn_inert

HOSTILE = {
    "\x1b]0;pwned\x07": "\\x1b]0;pwned\\x07",  # OSC: set the terminal title
    "\x1b[2J": "\\x1b[2J",  # clear the screen
    "\x9b2J": "\\x9b2J",  # the same through the C1 CSI
    "a\x7fb": "a\\x7fb",
    "evil\u202etxt.exe": "evil\\u202etxt.exe",  # right-to-left override
    "\u2066x\u2069": "\\u2066x\\u2069",  # isolates
    "a\u200bb\u200fc": "a\\u200bb\\u200fc",  # zero-width space, right-to-left mark
    "row\nforged": "row\\nforged",
    "row\r\n#2 forged": "row\\r\\n#2 forged",
    "line\u2028sep\u2029": "line\\u2028sep\\u2029",
    "\ufeffbom": "\\ufeffbom",
    "tag\U000e0041": "tag\\U000e0041",
    "lone\ud800": "lone\\ud800",
}


def test_hostile_characters_become_visible_escapes() -> None:
    for raw, shown in HOSTILE.items():
        assert inert(raw) == shown
        assert not has_unsafe(inert(raw)) and has_unsafe(raw)


def test_ordinary_text_is_left_alone() -> None:
    for text in ("José Müller", "山田 太郎", "\U0001f534 HIGH", "a\\x1b literal backslash", "tab-free ascii ~*_`<>&"):
        assert inert(text) == text


def test_composed_lines_keep_their_breaks() -> None:
    assert inert_lines("first\nsecond\x1b[2J") == "first\nsecond\\x1b[2J"


def test_json_line_escapes_what_json_dumps_leaves_raw_and_means_the_same() -> None:
    value = {"name": "Mallory\u202e\x9b\x7f\u2028 \U000e0041 José", "n": 1}
    line = json_line(value)
    assert json.loads(line) == value
    assert not has_unsafe(line) and "\n" not in line and "José" in line
    assert "\\u202e" in line and "\\u009b" in line and "\\udb40\\udc41" in line


def test_slack_formatting_characters_become_look_alikes() -> None:
    assert mrkdwn_inert("*bold* _it_ ~gone~ `code`") == (
        "\u2217bold\u2217 \u02cdit\u02cd \u223cgone\u223c \u02cbcode\u02cb")
    assert mrkdwn_inert("> quoted") == "\uff1e quoted"
    assert mrkdwn_inert("first_last@example.com") == "first_last@example.com"  # no italics inside a word


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_nothing_unsafe_survives(text: str) -> None:
    shown = inert(text)
    assert not any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") for c in shown)
    assert json.loads(json_line(text)) == text and not has_unsafe(json_line(text))
