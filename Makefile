# The two set-up commands of the README: `make demo` (the main job) and `make test` (the tests).
# Both bootstrap the virtual environment themselves; a second run reuses it.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.semires-installed
# This machine's pip config lists local wheel mirrors that pip warns about once per package.
QUIET_PIP := 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
PYTEST_ARGS ?=

.PHONY: install test demo lock lint tables clean-venv

$(STAMP): pyproject.toml requirements.lock
	@echo "== installing the semires environment into $(VENV) (about 3 minutes the first time)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -U "pip>=26" $(QUIET_PIP)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.lock $(QUIET_PIP)
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e . $(QUIET_PIP)
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
