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

.PHONY: install browser test demo lock lint tables clean-venv

$(STAMP): pyproject.toml requirements.lock
	@echo "== installing the semires environment into $(VENV) (about 3 minutes the first time)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -U "pip>=26" $(QUIET_PIP)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.lock $(QUIET_PIP)
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e . $(QUIET_PIP)
	@touch $(STAMP)

install: $(STAMP)

# The browser test (tests/pipeline/test_e2e.py) opens the MLflow UI in headless Chromium: installed
# from the system's packages when missing and make runs as root (CI's fresh machine), else skipped.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "== installing chromium (headless browser of the MLflow UI test)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "== no chromium and not root: the browser test will be skipped (apt-get install chromium)"; fi

test: install browser
	$(PY) -m pytest -q $(PYTEST_ARGS)

demo: install
	bash scripts/demo.sh

lint: install
	$(VENV)/bin/ruff check semires components dags benchmarks scripts tests

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
