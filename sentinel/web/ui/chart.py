"""The alerts page's chart: alerts per rule over the last 24 hours as horizontal bars, laid out here and
drawn as SVG by the template (so every label goes through Jinja's escaping). No script, no external file."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

BAR_HEIGHT = 18
GAP = 6
LABEL_WIDTH = 260
BAR_WIDTH = 300
MAX_BARS = 15


@dataclass(frozen=True)
class Bar:
    rule: str
    count: int
    y: int
    width: int


@dataclass(frozen=True)
class Chart:
    bars: tuple[Bar, ...]
    height: int
    label_width: int = LABEL_WIDTH
    width: int = LABEL_WIDTH + BAR_WIDTH + 60
    others: int = 0  # alerts of the rules beyond MAX_BARS


def rule_chart(counts: Mapping[str, int]) -> Chart:
    """One bar per rule, most alerts first, widths relative to the largest count."""
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    shown, rest = ranked[:MAX_BARS], ranked[MAX_BARS:]
    top = max((n for _, n in shown), default=0)
    bars = tuple(Bar(rule, n, i * (BAR_HEIGHT + GAP), max(1, round(BAR_WIDTH * n / top)) if top else 0)
                 for i, (rule, n) in enumerate(shown))
    return Chart(bars=bars, height=max(BAR_HEIGHT, len(bars) * (BAR_HEIGHT + GAP)),
                 others=sum(n for _, n in rest))
