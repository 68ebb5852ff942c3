# From a fresh machine with Python 3.10+ and make:
#   make train                      # venv, install, then `kilnet train` (MNIST, 5 epochs)
#   make train ARGS="--epochs 1"    # ARGS go to `kilnet train`
#   make test                       # venv, install with test extras, then pytest on every core
#   make test ARGS="-k cli"         # ARGS go to pytest
#   make test JOBS=0                # one process (pytest-xdist off)
#
# The virtual environment is .venv (VENV=...); a stamp file inside it records that the install
# matches pyproject.toml, so later runs skip pip entirely until pyproject.toml changes.

PYTHON ?= python3
VENV ?= .venv
ARGS ?=
# pytest-xdist workers: the suite is mostly single-threaded XLA compilation, so one worker per
# core (capped at 4) cut it from 10.5 to 7.3 minutes on 2 cores. JOBS=0 runs in one process.
JOBS ?= auto --maxprocesses 4
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check --quiet
STAMP := $(VENV)/.kilnet-installed
TEST_STAMP := $(VENV)/.kilnet-installed-test

.PHONY: train test install install-test info clean-venv help
.DEFAULT_GOAL := help

help:
	@echo "make train   set up $(VENV) and run 'kilnet train' (ARGS=\"--epochs 1\" to pass options)"
	@echo "make test    set up $(VENV) with test dependencies and run the tests (ARGS for pytest)"
	@echo "make info    set up $(VENV) and run 'kilnet info'"

train: $(STAMP)
	$(BIN)/kilnet train $(ARGS)

# --durations: the slowest tests end the log, to keep the suite (and CI) short
test: $(TEST_STAMP)
	$(BIN)/python -m pytest -n $(JOBS) --durations=15 $(ARGS)

info: $(STAMP)
	$(BIN)/kilnet info

install: $(STAMP)
install-test: $(TEST_STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	@echo "Installing kilnet and its dependencies into $(VENV) ..."
	$(PIP) install -e .
	@touch $@

# The test install is a superset, so it also satisfies `make train`.
$(TEST_STAMP): pyproject.toml | $(BIN)/python
	@echo "Installing kilnet with its test dependencies into $(VENV) ..."
	$(PIP) install -e '.[test]'
	@touch $(STAMP) $@

clean-venv:
	rm -rf $(VENV)
