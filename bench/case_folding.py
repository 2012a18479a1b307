"""What the case-insensitive default of text operators costs (docs/rules.md "Case"): one field test,
compiled by the real loader path, timed folded (the default) and with ``case_sensitive = true``, on the
values of a realistic sign-in event. A micro-benchmark: it prints ns per test and the ratio, never fails.

    .venv/bin/python bench/case_folding.py
"""

from __future__ import annotations

import time
from typing import Any

from sentinel.rules.conditions import compile_selection

EVENT: dict[str, Any] = {
    "eventType": "user.session.start",
    "actor": {"alternateId": "Alice.Smith@Example.com", "displayName": "Alice Smith"},
    "outcome": {"result": "SUCCESS"},
    "client": {"userAgent": {"rawUserAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
                                             "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"}},
}

TESTS: list[tuple[str, str, str, object]] = [
    ("equals, enum, no match", "outcome.result", "equals", "FAILURE"),
    ("equals, enum, match", "outcome.result", "equals", "SUCCESS"),
    ("equals, login, no match", "actor.alternateId", "equals", ["bob@example.com", "eve@example.com"]),
    ("contains, user agent", "client.userAgent.rawUserAgent", "contains", "python-requests"),
    ("endswith, login", "actor.alternateId", "endswith", "@evil.example"),
]


def per_test_ns(spec: dict[str, Any], rounds: int = 200_000) -> float:
    matcher = compile_selection(spec)
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        for _ in range(rounds):
            matcher(EVENT)
        best = min(best, time.process_time() - start)
    return best / rounds * 1e9


def main() -> None:
    print(f"{'test':28} {'sensitive':>10} {'folded':>10} {'ratio':>6}")
    for name, path, operator, operand in TESTS:
        sensitive = per_test_ns({path: {operator: operand, "case_sensitive": True}})
        folded = per_test_ns({path: {operator: operand}})
        print(f"{name:28} {sensitive:8.0f}ns {folded:8.0f}ns {folded / sensitive:6.2f}")


if __name__ == "__main__":
    main()
