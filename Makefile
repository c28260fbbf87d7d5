# twm: `make demo` (set up, train a small model on CPU, analyse it, write the report) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.twm-installed

.PHONY: help setup demo test test-full lint bench clean
help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)  ## create .venv (CPU torch 2.13.0 first, then twm and its dev extras)

demo: $(STAMP)  ## train a small model on CPU, analyse it, print the report
	$(PY) -m twm.demo

test: $(STAMP)  ## the test suite CI runs (under 10 minutes on 2 cores)
	$(PY) -m pytest -q

lint: $(STAMP)  ## ruff
	$(PY) -m ruff check twm tests benchmarks

bench: $(STAMP)  ## benchmarks (not tests)
	$(PY) benchmarks/sample_speed.py

clean:  ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache
