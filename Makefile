# The two set-up commands of the README: `make demo` (the main job) and `make test` (the tests).
# Both bootstrap the virtual environment themselves; a second run reuses it.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.semires-installed
PYTEST_ARGS ?=

.PHONY: install test demo lock lint tables clean-venv

$(STAMP): pyproject.toml requirements.lock
	@echo "== installing the semires environment into $(VENV) (about 3 minutes the first time)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -U "pip>=26"
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

install: $(STAMP)

test: install
	$(PY) -m pytest -q $(PYTEST_ARGS)

demo: install
	bash scripts/demo.sh

lint: install
	$(VENV)/bin/ruff check semires components dags benchmarks tests

tables: install
	$(PY) benchmarks/make_tables.py

# Re-resolve the pins from pyproject.toml (needs the package registry).
lock:
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv && .lockenv/bin/pip install -q -U "pip>=26"
	.lockenv/bin/pip install -q -e ".[test]"
	{ head -2 requirements.lock; .lockenv/bin/pip freeze --exclude-editable; } > requirements.lock.new
	mv requirements.lock.new requirements.lock && rm -rf .lockenv

clean-venv:
	rm -rf $(VENV)
