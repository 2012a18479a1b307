"""The layers hold: import-linter's contracts (pyproject.toml, ``[tool.importlinter]``) pass, and the pure
core they name loads no edge library at run time either (a fresh interpreter per module, so one module's
imports cannot hide another's, and an import made inside a function or a package's ``__init__`` counts).

The pure modules come from the forbidden contract itself, packages expanded to every module in them: a
module added to or renamed in a pure package is covered without editing a list here."""

from __future__ import annotations

import json
import pkgutil
import shutil
import subprocess
import sys
import tomllib
from importlib import import_module
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
PURE_CONTRACT = next(c for c in CONTRACTS if c["name"].startswith("The pure core"))
FORBIDDEN = set(PURE_CONTRACT["forbidden_modules"])
PROBE = "import importlib, json, sys; importlib.import_module(sys.argv[1]); print(json.dumps(sorted(sys.modules)))"


def expand(names: list[str]) -> list[str]:
    modules = []
    for name in names:
        modules.append(name)
        module = import_module(name)
        if hasattr(module, "__path__"):
            modules += [info.name for info in pkgutil.walk_packages(module.__path__, name + ".")]
    return sorted(set(modules))


PURE_CORE = expand(PURE_CONTRACT["source_modules"])


def test_import_linter_contracts_hold() -> None:
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint_imports, "import-linter is a test dependency: pip install -e '.[test]'"
    result = subprocess.run([lint_imports, "--no-cache"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(CONTRACTS)} kept, 0 broken" in result.stdout, result.stdout


def test_the_pure_core_is_what_the_architecture_says() -> None:
    # The rule language, rendering and the foundations are pure; a package dropped from the contract fails here.
    for package in ("sentinel.rules", "sentinel.render", "sentinel.okta", "sentinel.config", "sentinel.model"):
        assert package in PURE_CORE
    assert "sentinel.rules.engine" in PURE_CORE and "sentinel.render.message" in PURE_CORE


@pytest.mark.parametrize("module", PURE_CORE)
def test_pure_core_imports_no_edge_library(module: str) -> None:
    result = subprocess.run([sys.executable, "-c", PROBE, module], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    offenders = sorted({name.split(".")[0] for name in loaded} & FORBIDDEN)
    assert offenders == [], f"{module} pulls in {offenders}"


def test_the_probe_can_fail() -> None:
    result = subprocess.run([sys.executable, "-c", PROBE, "sentinel.cli"], capture_output=True, text=True,
                            timeout=60)
    assert "click" in json.loads(result.stdout)
