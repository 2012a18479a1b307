# Two commands from a fresh clone: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= sentinel.toml
PORT ?=
HOST ?=

.PHONY: run test proof lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Reinstall when the project's metadata changes.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-run

# Starts the daemon on the shipped config (`make run PORT=9000 HOST=0.0.0.0` to override [server]). With no
# SENTINEL_OKTA_SECRET set, a local secret is generated in .okta-secret (git-ignored) and the header value
# to paste into Okta is printed. The daemon writes its URL to state/sentinel.url, where `sentinel demo` finds it.
run: $(VENV)/.installed-run
	@echo "The sentinel command is $(BIN)/sentinel; to type just 'sentinel': export PATH=\"$(CURDIR)/$(BIN):\$$PATH\""
	$(BIN)/sentinel serve --config $(CONFIG) --secret-file .okta-secret $(if $(PORT),--port $(PORT)) $(if $(HOST),--host $(HOST))

# mypy is strict on the package; the tests are type-checked too, but test functions may stay unannotated
# (their fixtures give the types).
lint: $(VENV)/.installed-test
	$(BIN)/ruff check sentinel tests
	$(BIN)/mypy sentinel
	$(BIN)/mypy --allow-untyped-defs --allow-incomplete-defs --allow-untyped-calls tests
	$(BIN)/lint-imports --no-cache

# Unit tests and a smoke subset of the real-daemon tests, a test file per xdist worker (under 2 minutes).
test: lint
	$(BIN)/sentinel rules test --config $(CONFIG)
	$(BIN)/pytest -q -m "not proof" -n 2 --dist loadfile

# The slow proofs (SIGKILL under load, hostile input, hostile rules: every file tests/test_proof_*.py) and the
# real-daemon tests beyond make test's smoke subset (marked @pytest.mark.proof); see tests/conftest.py.
# One process: the proofs' load and latency must not be shared with a second worker.
proof: $(VENV)/.installed-test
	$(BIN)/pytest -q -m proof

bench: $(VENV)/.installed-test
	$(BIN)/python bench/run_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
