"""Imported rules as TOML text: a header saying where the rule came from, then ``tomli_w`` output (so
every value is escaped by a TOML writer, and the text round-trips through the loader)."""

from __future__ import annotations

from typing import Any

import tomli_w

_ORDER = ("id", "title", "severity", "enabled", "status", "description", "author", "tags", "references",
          "falsepositives", "event_types", "group_by", "condition", "threshold", "sequence", "detection",
          "tests")


def rule_text(table: dict[str, Any], source_name: str, extra_header: tuple[str, ...] = ()) -> str:
    ordered = {key: table[key] for key in _ORDER if key in table}
    ordered.update({k: v for k, v in table.items() if k not in ordered})
    header = [f"# Imported from the Sigma rule {source_name} by `sentinel rules import-sigma`.",
              "# Sigma rules are under the Detection Rule License 1.1: keep the author and references.",
              *extra_header]
    return "\n".join(header) + "\n\n" + tomli_w.dumps(ordered)
