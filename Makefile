# kms-decommission: the two commands are `make demo` and `make test`.
#
#   make local   start the local stack (KMS emulator + Step Functions + Lambda) on port $(LOCAL_PORT)
#   make demo    decommission a CloudHSM and an external key store end to end on the local stack
#   make test    every check: cargo fmt/clippy/test, ruff, sam validate --lint, asl-validator, the
#                local-stack unit tests and the end-to-end state machine tests
#
# Python tools (moto, cargo-lambda, aws-sam-cli, awscli, pytest, ruff) go into .venv, pinned by
# requirements-dev.txt; Node tools (asl-validator) into node_modules, pinned by package-lock.json.
# Both are installed on first use and reinstalled only when their pin file changes.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
VENV_PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.requirements-installed
NODE_STAMP := node_modules/.package-lock-installed
LOCAL_PORT ?= 4566
CHECKS ?=

export LOCAL_PORT
export SAM_CLI_TELEMETRY := 0
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help tools local demo test e2e

help:
	@sed -n '1,12p' Makefile

$(VENV_STAMP): requirements-dev.txt
	@test -x $(VENV_PY) || $(PYTHON) -m venv $(VENV)
	$(VENV_PY) -m pip install --disable-pip-version-check --quiet --requirement requirements-dev.txt
	@touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

## tools: install the pinned Python and Node tools (quick when already installed)
tools: $(VENV_STAMP) $(NODE_STAMP)

## local: run the local stack until Ctrl-C (extra flags: make local ARGS="--day-seconds 5 --verbose")
local: $(VENV_STAMP)
	$(VENV_PY) -m local.stack --port $(LOCAL_PORT) $(ARGS)

## demo: decommission demo stores end to end on a fresh local stack
demo: $(VENV_STAMP)
	$(VENV_PY) -m local.demo --port $(LOCAL_PORT) $(ARGS)

## test: every check, phase by phase (one phase: make test CHECKS="e2e")
test: tools
	$(VENV_PY) -m tools.check $(CHECKS)

## e2e: only the end-to-end state machine tests
e2e: tools
	$(VENV_PY) -m tools.check e2e
