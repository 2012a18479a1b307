"""The daemon's narrow parts, as ``sentinel serve`` composes them (sentinel/cli/compose.py), and the HTTP
layer reaching the daemon only through the parts it is handed."""

from __future__ import annotations

import ast
import asyncio
import gc
import shutil
from pathlib import Path

import pytest
from daemon import SECRET, write_config

from sentinel.cli.compose import compose
from sentinel.config import Settings, load_config
from sentinel.service.detector import Detector
from sentinel.service.detector_process import DetectorProcess
from sentinel.service.detector_runner import InProcessDetector

REPO = Path(__file__).resolve().parent.parent
WEB = REPO / "sentinel" / "web"
# What belongs to the daemon's parts, not to HTTP: the store, the settings as a whole, the health flags.
DAEMON_STATE = {"store", "settings", "health", "store_ok", "store_check_ok", "rules_loaded", "last_reload_ok"}


def _detectors() -> set[int]:
    gc.collect()
    return {id(o) for o in gc.get_objects() if isinstance(o, Detector)}


def test_serve_builds_the_detector_process_and_no_idle_in_process_detector(tmp_path: Path) -> None:
    settings = load_config(write_config(tmp_path), {"SENTINEL_OKTA_SECRET": SECRET})
    before = _detectors()
    daemon = compose(settings, lambda: settings)  # what `sentinel serve` calls
    try:
        assert isinstance(daemon.detector, DetectorProcess)
        assert _detectors() - before == set()
    finally:
        daemon.store.close()


def test_in_process_reload_swaps_the_rules_and_keeps_serving(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    environ = {"SENTINEL_OKTA_SECRET": SECRET}
    daemon = compose(load_config(config, environ), lambda: load_config(config, environ),
                     detector=InProcessDetector)
    runner = daemon.detector
    assert isinstance(runner, InProcessDetector)

    async def scenario() -> None:
        await daemon.lifecycle.start()
        try:
            assert daemon.health.ready_checks() == {"store": True, "rules_loaded": True, "detector": True,
                                                    "last_reload": True}
            assert daemon.health.rule_count == 0
            shutil.copy(REPO / "rules" / "okta-api-token-created.toml", tmp_path / "rules")
            assert await daemon.reloader.reload()
            assert daemon.health.rule_count == 1 and runner.detector.evaluator.rule_count == 1  # type: ignore[attr-defined]
            assert daemon.dispatchers.running() and [d.name for d in daemon.dispatchers.dispatchers] == ["log"]
            assert daemon.lifecycle.healthy()
            (tmp_path / "rules" / "broken.toml").write_text("[[rule]\n", encoding="utf-8")
            assert not await daemon.reloader.reload()
            assert daemon.health.ready_checks()["last_reload"] is False and daemon.health.rule_count == 1
        finally:
            await daemon.lifecycle.stop()

    asyncio.run(scenario())


def test_storm_digests_link_to_the_triage_page_when_it_is_on(tmp_path: Path) -> None:
    environ = {"SENTINEL_OKTA_SECRET": SECRET, "SENTINEL_UI_PASSWORD": "pw"}
    (tmp_path / "on").mkdir()
    (tmp_path / "off").mkdir()
    on = load_config(write_config(tmp_path / "on", extra='\n[ui]\nlisten = "127.0.0.1:8081"\n'), environ)
    off = load_config(write_config(tmp_path / "off"), environ)
    for settings, url in ((on, "http://127.0.0.1:8081"), (off, None)):
        daemon = compose(settings, detector=InProcessDetector)
        try:
            assert daemon.dispatchers.ui_url == url
        finally:
            daemon.store.close()


def test_the_http_layer_touches_no_daemon_state() -> None:
    offenders = []
    for path in sorted(WEB.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in DAEMON_STATE:
                offenders.append(f"{path.name}:{node.lineno}: .{node.attr}")
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sentinel.store"):
                offenders.append(f"{path.name}:{node.lineno}: imports {node.module}")
    assert offenders == []


def test_a_reload_that_crashes_keeps_the_previous_configuration_running(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # No input is known to crash a reload any more (a TOML nested too deeply, which did, is now rejected):
    # the reload's own source of settings raises what nothing foresaw, as a bug would.
    config = write_config(tmp_path)
    environ = {"SENTINEL_OKTA_SECRET": SECRET}
    settings = load_config(config, environ)

    def crashing() -> Settings:
        raise RuntimeError("a bug in reading the settings")

    daemon = compose(settings, crashing, detector=InProcessDetector)

    async def scenario() -> None:
        await daemon.lifecycle.start()
        try:
            assert not await daemon.reloader.reload()
            assert daemon.health.ready_checks()["last_reload"] is False
            assert daemon.dispatchers.running() and daemon.lifecycle.healthy()
        finally:
            await daemon.lifecycle.stop()

    with caplog.at_level("ERROR", logger="sentinel.service"):
        asyncio.run(scenario())
    assert "reload crashed; running on the previous configuration" in caplog.text
