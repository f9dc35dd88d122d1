# Flowkeeper developer tasks (GNU make). `make help` lists them.

PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv test lint bench run clean

help:
	@echo "make venv    create $(VENV) and install Flowkeeper with its test extras"
	@echo "make test    run the test suite in parallel (PYTEST_ARGS='...' to pass options)"
	@echo "make lint    ruff check + mypy --strict"
	@echo "make bench   run the engine benchmark"
	@echo "make run     start the service on ./flowkeeper.db with the examples deployed"
	@echo "make clean   remove caches and build output (keeps $(VENV))"

venv: $(STAMP)

$(BIN)/python:
	$(PY) -m venv $(VENV)

# Reinstall only when pyproject.toml changed since the last install.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e '.[test]'
	touch $@

test: venv
	$(BIN)/pytest -n auto -q $(PYTEST_ARGS) tests/

# Both tools run even if the first fails, so one run shows every problem.
# $(wildcard bench): bench/ may not exist yet and ruff fails on a missing path.
lint: venv
	@status=0; \
	echo "$(BIN)/ruff check src tests $(wildcard bench)"; \
	$(BIN)/ruff check src tests $(wildcard bench) || status=1; \
	echo "$(BIN)/mypy --strict src"; \
	$(BIN)/mypy --strict src || status=1; \
	exit $$status

bench: venv
	$(BIN)/python bench/engine.py

run: venv
	$(BIN)/flowkeeper serve --migrate --deploy examples

clean:
	rm -rf build dist .pytest_cache .mypy_cache .ruff_cache
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +
