# The same commands for people and CI. Each target creates .venv on demand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench soak screenshots clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.run-deps: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[examples]'
	touch $@

$(VENV)/.test-deps: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@ $(VENV)/.run-deps

## run: the ML example end to end, in the foreground, on the embedded SQLite store
run: $(VENV)/.run-deps
	$(BIN)/orchestrator run ml_training --dags-folder examples

## test: lint, type-check, and the whole test suite
test: $(VENV)/.test-deps lint
	$(BIN)/pytest

lint: $(VENV)/.test-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## bench: scheduling overhead, a 100,000-element expand, deferral, a daemon's file burst and idle cost, DAG loading, web UI pages, the WAL under steady load (prints figures)
bench: $(VENV)/.test-deps
	$(BIN)/python bench/scheduling_overhead.py
	$(BIN)/python bench/expand_scale.py
	$(BIN)/python bench/deferral.py
	$(BIN)/python bench/file_watch.py
	$(BIN)/python bench/burst.py
	$(BIN)/python bench/idle_daemon.py
	$(BIN)/python bench/webhooks.py
	$(BIN)/python bench/wal_growth.py
	$(BIN)/python bench/dag_loading.py
	$(BIN)/python bench/ui.py

## soak: the random kill -9 crash test for 30 rounds (300 files) instead of 3, on a fresh seed
## (printed) or on CRASH_SEED=n to replay one
soak: $(VENV)/.test-deps
	CRASH_ROUNDS=30 $(BIN)/pytest tests/daemon/test_crash.py -k random -p no:randomly

## screenshots: the web UI in light and dark, on a daemon running the examples, into
## docs/screenshots/ (needs Chromium at /usr/bin/chromium)
screenshots: $(VENV)/.test-deps
	$(BIN)/python docs/screenshots.py

clean:
	rm -rf $(VENV) .orchestrator .pytest_cache .mypy_cache .ruff_cache
