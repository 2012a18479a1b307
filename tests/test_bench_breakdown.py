"""bench/breakdown.py measures the detector loop as the daemon runs it: with the daemon's logging.

Before, the bench set the ``sentinel`` loggers to WARNING, so the loop never paid for the INFO lines the
daemon writes for every batch it unpacks, and its figures flattered the detector (issue 16).
"""

from __future__ import annotations

import importlib
import logging
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sentinel import log as sentinel_log
from sentinel.config import load_config

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
breakdown = importlib.import_module("breakdown")  # a script of bench/, not a package


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    loggers = {name: logging.getLogger(name).level for name in ("sentinel", "sentinel.detector", "apprise")}
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
        if handler not in handlers:
            handler.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    for name, was in loggers.items():
        logging.getLogger(name).setLevel(was)


def _setup() -> tuple[int, int, list[str], str | None]:
    """What decides which detector lines are written and what each costs: the detector logger's effective
    level, the root level, the handler's filters and its format."""
    (handler,) = logging.getLogger().handlers
    formatter = handler.formatter
    return (logging.getLogger("sentinel.detector").getEffectiveLevel(), logging.getLogger().level,
            [type(f).__name__ for f in handler.filters], formatter._fmt if formatter is not None else None)


def test_the_bench_logs_as_the_daemon_does_for_the_shipped_configuration(
        tmp_path: Path, restored_logging: None) -> None:
    settings = load_config(ROOT / "sentinel.toml", environ={}, resolve_secrets=False)
    sentinel_log.configure(settings.logging.level, settings.logging.format)  # what the detector process does
    daemons = _setup()
    logging.getLogger("sentinel").setLevel(logging.WARNING)  # what the bench did before
    written = breakdown.log_as_the_daemon(tmp_path)
    assert _setup() == daemons
    assert daemons[0] == logging.getLevelName(settings.logging.level) == logging.INFO
    logging.getLogger("sentinel.detector").info("okta delivery 1: 10 events")
    logging.getLogger().handlers[0].flush()
    assert "INFO sentinel.detector: okta delivery 1: 10 events" in written.read_text(encoding="utf-8")


def test_the_detector_loop_bench_pays_for_the_lines_the_daemon_writes(
        tmp_path: Path, restored_logging: None, monkeypatch: pytest.MonkeyPatch) -> None:
    real = breakdown.log_as_the_daemon
    monkeypatch.setattr(breakdown, "log_as_the_daemon", lambda folder: real(tmp_path))  # kept after the run
    assert breakdown.detector_loop(3, fused=True) > 0
    lines = [line for line in (tmp_path / "detector.log").read_text(encoding="utf-8").splitlines()
             if "INFO sentinel.detector: okta deliver" in line]
    # Every delivery unpacked is told of (one line per delivery or per batch): 3 deliveries of 10 events.
    assert sum(int(m.group(1)) for line in lines if (m := re.search(r": (?:\d+ deliveries, )?(\d+) events", line))) \
        == 30, lines
