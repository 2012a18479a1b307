"""The pure core never imports web, storage, notification, CLI or network libraries (checked in a fresh
interpreter per module, so one module's imports cannot hide another's)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

PURE_CORE = [
    "sentinel.errors", "sentinel.clock", "sentinel.model", "sentinel.okta", "sentinel.config", "sentinel.secret",
    "sentinel.alert_context", "sentinel.quarantine",
    "sentinel.rules", "sentinel.rules.operators", "sentinel.rules.conditions", "sentinel.rules.condition_parser",
    "sentinel.rules.templates", "sentinel.rules.model", "sentinel.rules.loader", "sentinel.rules.lint",
    "sentinel.rules.context", "sentinel.rules.engine", "sentinel.rules.engine_state", "sentinel.rules.testing",
    "sentinel.render.message", "sentinel.render.facts", "sentinel.render.safe_text", "sentinel.delivery.routing",
    "sentinel.service.monitor",
]
FORBIDDEN = {"starlette", "uvicorn", "sqlite_utils", "sqlite3", "apprise", "tenacity", "click", "requests",
             "httpx", "socket"}
PROBE = "import importlib, json, sys; importlib.import_module(sys.argv[1]); print(json.dumps(sorted(sys.modules)))"


def existing(modules: list[str]) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is not None]


@pytest.mark.parametrize("module", existing(PURE_CORE))
def test_pure_core_imports_no_edge_library(module):
    result = subprocess.run([sys.executable, "-c", PROBE, module], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    offenders = sorted({name.split(".")[0] for name in loaded} & FORBIDDEN)
    assert offenders == [], f"{module} pulls in {offenders}"


def test_the_probe_can_fail():
    result = subprocess.run([sys.executable, "-c", PROBE, "sentinel.cli"], capture_output=True, text=True,
                            timeout=60)
    assert "click" in json.loads(result.stdout)
