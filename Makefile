# Course tasks. `make` alone lists them.
#
# The virtual environment lives in .venv/ and is (re)built from requirements.txt whenever that
# file or pyproject.toml changes; the stamp .venv/.installed records the last good install.

.DEFAULT_GOAL := help
SHELL := /bin/bash

VENV := .venv
VENV_BIN := $(VENV)/bin
VENV_PY := $(VENV_BIN)/python
STAMP := $(VENV)/.installed

# Interpreter used to create .venv: the system's (an autograder runs kernels as an unprivileged
# user, who cannot execute an interpreter under /root such as pyenv's), else python3 on PATH.
# Override with `make PYTHON=/path/to/python3.x`.
PYTHON := $(firstword $(wildcard /usr/bin/python3.13 /usr/bin/python3.12 /usr/bin/python3.11) \
	$(shell command -v python3 2>/dev/null))

# `make lock` resolves for the oldest supported Python.
LOCK_PYTHON := /usr/bin/python3.11
UV := $(firstword $(wildcard $(VENV_BIN)/uv) $(shell command -v uv 2>/dev/null))

LAB_ARGS ?=
PYTEST_ARGS ?=
# pytest-xdist workers; each takes whole files (nbval runs a notebook's cells in order).
PYTEST_WORKERS ?= 2
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)

.PHONY: help lab test site browser bench sweep lock clean distclean

help:
	@echo "Targets:"
	@echo "  make lab        open the course (course/) in JupyterLab; extra options: LAB_ARGS=..."
	@echo "  make test       ruff check, ruff format --check, then pytest; extra options: PYTEST_ARGS=..., PYTEST_WORKERS=2 (0: one process)"
	@echo "                  (installs Debian's chromium for the browser tests when run as root)"
	@echo "  make site       build the reading site of the course into _site/ (open _site/index.html)"
	@echo "  make bench      run every benchmarks/bench_*.py, one after another"
	@echo "  make sweep      grade the solutions and known-wrong answers on many fresh hidden-test draws; SWEEP_ARGS=..."
	@echo "  make lock       regenerate requirements.txt from requirements.in (uv pip compile)"
	@echo "  make clean      remove build artefacts and caches (keeps .venv/)"
	@echo "  make distclean  clean, and remove .venv/ too"
	@echo "The first target that needs it creates .venv/ with $(or $(PYTHON),<no python3 found>)"
	@echo "(override with PYTHON=...) and installs requirements.txt and emlib into it."

$(STAMP): requirements.txt pyproject.toml
	@if [ ! -x $(VENV_PY) ]; then \
	  if [ -z "$(PYTHON)" ]; then \
	    echo "error: no Python interpreter found; install Python 3.11+ or run make PYTHON=/path/to/python3.11" >&2; \
	    exit 1; \
	  fi; \
	  if ! command -v "$(PYTHON)" >/dev/null; then \
	    echo "error: PYTHON=$(PYTHON) is not an executable; run make PYTHON=/path/to/python3.11" >&2; \
	    exit 1; \
	  fi; \
	  if ! "$(PYTHON)" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then \
	    echo "error: $(PYTHON) is not Python 3.11 or newer ($$("$(PYTHON)" --version 2>&1));" \
	      "run make PYTHON=/path/to/python3.11" >&2; \
	    exit 1; \
	  fi; \
	  echo "Creating $(VENV) with $(PYTHON)"; \
	  "$(PYTHON)" -m venv $(VENV) || exit 1; \
	fi
	@if $(VENV_PY) -m pip install -q uv; then \
	  set -x; \
	  $(VENV_BIN)/uv pip install --python $(VENV_PY) --compile-bytecode -r requirements.txt && \
	  $(VENV_BIN)/uv pip install --python $(VENV_PY) --no-deps -e .; \
	else \
	  echo "warning: could not install uv into $(VENV); falling back to pip (slower)" >&2; \
	  set -x; \
	  $(VENV_PY) -m pip install -r requirements.txt && \
	  $(VENV_PY) -m pip install --no-deps -e .; \
	fi
	@touch $@

# Students get nbgrader's Validate button without the instructor tools: ./start puts
# autograder/student_lab on JUPYTER_CONFIG_PATH (Binder and conda users go through it too).
lab: $(STAMP)
	./start $(VENV_BIN)/jupyter lab --notebook-dir=course $(ALLOW_ROOT) $(LAB_ARGS)

test: $(STAMP) browser
	$(VENV_BIN)/ruff check .
	$(VENV_BIN)/ruff format --check .
	export PATH="$(CURDIR)/$(VENV_BIN):$$PATH"; $(VENV_PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

site: $(STAMP)
	$(VENV_PY) -m course_site --out _site

# The browser tests (tests/test_site.py, tests/test_lab.py) drive Debian's chromium through
# its chromedriver. Install both when missing and possible (root with apt-get); otherwise say
# why those tests will be skipped. A failed install never fails `make test`.
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then \
	  :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "Installing Debian's chromium and chromium-driver for the browser tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null) || \
	    echo "warning: could not install chromium; the browser tests will be skipped" >&2; \
	else \
	  echo "note: chromium or chromedriver is missing and cannot be installed here" \
	    "(needs root and apt-get); the browser tests will be skipped" >&2; \
	fi

bench: $(STAMP)
	@set -e; found=; \
	for script in benchmarks/bench_*.py; do \
	  [ -e "$$script" ] || continue; \
	  found=1; \
	  echo "== $$script"; \
	  $(VENV_PY) "$$script"; \
	done; \
	[ -n "$$found" ] || echo "no benchmarks/bench_*.py yet"

sweep: $(STAMP)
	$(VENV_PY) -m tests.sweep_hidden_tests $(SWEEP_ARGS)

lock:
	@if [ -z "$(UV)" ]; then echo "error: uv not found; run make $(STAMP) first" >&2; exit 1; fi
	$(UV) pip compile --python $(LOCK_PYTHON) --no-header requirements.in -o requirements.txt

clean:
	rm -rf build/ dist/ *.egg-info .pytest_cache/ .ruff_cache/ .hypothesis/ _site/ tests/artifacts/
	find . -path ./$(VENV) -prune -o -path ./.git -prune -o \
	  \( -name __pycache__ -o -name .ipynb_checkpoints \) -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
