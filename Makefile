# kms-decommission: the two commands are `make demo` and `make test`.
#
#   make local   start the local stack (KMS emulator + Step Functions + Lambda) on port $(LOCAL_PORT)
#   make demo    decommission a CloudHSM and an external key store end to end on the local stack
#   make test    every check: cargo fmt/clippy/test, the bounded fuzz run, ruff, the module-cycle
#                check, sam validate --lint, checkov and the least-privilege tests on the template's
#                IAM, asl-validator, the local-stack unit tests, the end-to-end state machine tests,
#                and the deploy build (make deploy-build)
#   make deploy-build   what `sam deploy` uploads: sam build (one release build for every
#                function; ARCH=arm64 for Graviton), then check each function's bootstrap
#   make fuzz-long   libFuzzer runs of every fuzz target, FUZZ_SECONDS each (docs/fuzzing.md)
#
# Python tools (moto, cargo-lambda, aws-sam-cli, awscli, pytest, ruff) go into .venv, pinned by
# requirements-dev.txt; Node tools (asl-validator) into node_modules, pinned by package-lock.json.
# checkov (make test's iam-lint phase) goes into its own .venv-checkov, pinned by
# requirements-checkov.txt (its dependencies conflict with .venv's); the phase installs it itself.
# All are installed on first use and reinstalled only when their pin file changes.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
VENV_PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.requirements-installed
NODE_STAMP := node_modules/.package-lock-installed
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.requirements-installed
LOCAL_PORT ?= 4566
CHECKS ?=

export LOCAL_PORT
export SAM_CLI_TELEMETRY := 0
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help tools iam-lint-tools local demo test e2e soak fuzz-long deploy-build lambda-bootstraps sam-artifacts-dir

help:
	@sed -n '1,17p' Makefile

$(VENV_STAMP): requirements-dev.txt
	@test -x $(VENV_PY) || $(PYTHON) -m venv $(VENV)
	$(VENV_PY) -m pip install --disable-pip-version-check --quiet --requirement requirements-dev.txt
	@touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(CHECKOV_STAMP): requirements-checkov.txt
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --disable-pip-version-check --quiet --requirement requirements-checkov.txt
	@touch $@

## tools: install the pinned Python and Node tools (quick when already installed)
tools: $(VENV_STAMP) $(NODE_STAMP)

## iam-lint-tools: install checkov into .venv-checkov (make test's iam-lint phase runs this first)
iam-lint-tools: $(CHECKOV_STAMP)

## local: run the local stack until Ctrl-C (extra flags: make local ARGS="--day-seconds 5 --verbose")
local: $(VENV_STAMP)
	$(VENV_PY) -m local.stack --port $(LOCAL_PORT) $(ARGS)

## demo: decommission demo stores end to end on a fresh local stack
demo: $(VENV_STAMP)
	$(VENV_PY) -m local.demo --port $(LOCAL_PORT) $(ARGS)

## test: every check, phase by phase (one phase: make test CHECKS="e2e")
test: tools
	$(VENV_PY) -m tools.check $(CHECKS)

## soak: the full fault soak (docs/reliability.md), not part of make test: make soak SOAK_ARGS="--runs 50 --seed 7"
SOAK_ARGS ?= --runs 50
soak: $(VENV_STAMP)
	$(VENV_PY) tests/e2e/soak.py $(SOAK_ARGS)

## e2e: only the end-to-end state machine tests
e2e: tools
	$(VENV_PY) -m tools.check e2e

# ---------------------------------------------------------------------------------------------
# Long fuzzing runs (docs/fuzzing.md): cargo fuzz on stable Rust, without a sanitizer (`-s none`;
# the code under test has no `unsafe`) and with 16 codegen units instead of cargo fuzz's 1 (the
# cold build of the instrumented AWS SDK is the long part: 33 minutes on 2 cores shared with other
# builds). Each target reads its committed corpus, fuzz/corpus/<t>/, writes what it finds to
# fuzz/runs/<t>/ and crashes to fuzz/artifacts/<t>/ (neither committed).
# ---------------------------------------------------------------------------------------------
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?= webhook tag_event state_document execution_input cancel_input arn emulator_request
CARGO_FUZZ := cargo fuzz run -s none --codegen-units 16

## fuzz-long: FUZZ_SECONDS (600) of libFuzzer per target of FUZZ_TARGETS (all), one after another
fuzz-long:
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	@set -e; for t in $(FUZZ_TARGETS); do \
	    mkdir -p fuzz/runs/$$t; \
	    echo "=== fuzz $$t for $(FUZZ_SECONDS) s"; \
	    (cd fuzz && $(CARGO_FUZZ) $$t runs/$$t corpus/$$t -- \
	        -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -print_final_stats=1); \
	done

# ---------------------------------------------------------------------------------------------
# Deploy build. Every function in template.yaml has `BuildMethod: makefile`, and samconfig.toml
# makes `sam build` build in the source tree (build_in_source) without its cache (cargo's is
# better): for each function, sam runs `make build-<LogicalId>` here with ARTIFACTS_DIR set. The
# first one runs one `cargo lambda build --release --bins` for all nine binaries; the others find
# them up to date (a second each). Then each target copies its function's bootstrap (the binary
# named by Metadata.BuildProperties.Binary). Tools come from .venv (cargo-lambda, zig), so plain
# `.venv/bin/sam build` works without .venv/bin on PATH.
# ---------------------------------------------------------------------------------------------
ARCH ?= x86_64
CARGO_LAMBDA_TARGET_x86_64 := --x86-64
CARGO_LAMBDA_TARGET_arm64 := --arm64
LAMBDA_DIR = $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)/lambda/$(ARCH)

## deploy-build: sam build (as `sam deploy` expects it, ARCH=x86_64|arm64), then check every function's bootstrap
deploy-build: $(VENV_STAMP)
	ARCH=$(ARCH) $(VENV)/bin/sam build --parameter-overrides Architecture=$(ARCH)
	$(VENV_PY) scripts/deploy_build.py check --arch $(ARCH) --lambda-dir $(LAMBDA_DIR)

## lambda-bootstraps: one release build of every function binary into $(LAMBDA_DIR)/<binary>/bootstrap
lambda-bootstraps: $(VENV_STAMP)
	@test -n "$(CARGO_LAMBDA_TARGET_$(ARCH))" || { echo "ARCH=$(ARCH): use x86_64 or arm64" >&2; exit 2; }
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" cargo lambda build --release --package kms-decommission --bins \
	    $(CARGO_LAMBDA_TARGET_$(ARCH)) --lambda-dir $(LAMBDA_DIR)

sam-artifacts-dir:
	@test -n "$$ARTIFACTS_DIR" || { echo "sam build runs the build-<LogicalId> targets (ARTIFACTS_DIR is unset): make deploy-build" >&2; exit 2; }

# sam build runs these, one per function (build-PlanDecommissionFunction, ...).
build-%: sam-artifacts-dir lambda-bootstraps
	@binary=$$($(VENV_PY) scripts/deploy_build.py binary $*) && mkdir -p "$$ARTIFACTS_DIR" \
	    && cp "$(LAMBDA_DIR)/$$binary/bootstrap" "$$ARTIFACTS_DIR/bootstrap" \
	    && echo "$*: $$binary -> $$ARTIFACTS_DIR/bootstrap"
