# Developer and CI entry points. CI runs exactly `make test` (see .ci/run).
#
#   make test         venv + Debian services + ruff + import layers + mypy + pytest (unit,
#                     integration, faults)
#   make run          the zero-setup demo (`homecare demo`; installs the package with its demo
#                     extra only: the embedded broker)
#   make bench        every benchmark; results in bench/results/
#   make chaos        the guarantees together at volume: 1M messages, kills, broker, database
#                     and upstream outages, one ledger (~20-25 min; RELIABILITY.md; not in test)
#   make soak         30 minutes at a steady load: RSS, queue depths, latency, plot
#   make venv         create .venv and install the package with its test extra (which has the
#                     demo extra in it)
#   make bytecode     the project's .pyc written ahead (run by test, run, bench, chaos, soak)
#   make system-deps  install the missing Debian packages (mosquitto, influxdb, ...)
#   make lint         ruff check, and the import layers (lint-imports, pyproject.toml)
#   make typecheck    mypy (configured in pyproject.toml)

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Re-install only when the dependencies may have changed. The runtime alone is
# `pip install .` (what a hub installs, deploy/README.md); each target adds its extra.
STAMP := $(VENV)/.installed-test
DEMO_STAMP := $(VENV)/.installed-demo
PYTEST_ARGS ?=

export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PIP_NO_INPUT := 1

.PHONY: test run bench chaos soak screenshots venv system-deps lint typecheck pytest clean bytecode

# mypy (half a minute, its output at the end) runs beside pytest's first minute, which is
# mostly servers starting: the suite's wall time less that half minute. Either failing fails.
test: venv system-deps lint bytecode
	@$(MAKE) --no-print-directory -j2 typecheck pytest

venv: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@ $(DEMO_STAMP)

$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[demo]'
	touch $@

system-deps:
	bash scripts/setup-system.sh

# The project's bytecode, written ahead (only what changed): with PYTHONDONTWRITEBYTECODE set,
# as in some CI environments, every gateway start compiled ~110 modules from source again,
# about 0.3 s of each restart (profiled: chaos's ingest resumed after a kill).
bytecode: | $(BIN)/python
	$(BIN)/python -m compileall -q -j 0 devices alerts gateway homecare simulators

lint: venv
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-logo --no-cache

typecheck: venv
	$(BIN)/mypy

# pytest exits 5 when it collected no tests: that fails the build like any other non-zero.
# Five workers (pytest-xdist), one test file each at a time, the longest files first
# (tests/conftest.py): half of the suite's time is integration tests waiting on their own
# servers (settling, restarts, timeouts), so more workers than cores fill the waits on a 2-core
# machine (measured: three workers 27 min against two 33 on a loaded machine; three used 20
# CPU-minutes in 21 minutes of two cores, the rest waiting; five 14:10 against three 20:42 on
# the same busy machine, 2026-12-02). PYTEST_WORKERS=0: one process.
PYTEST_WORKERS ?= 5
pytest: venv system-deps
	@rc=0; $(BIN)/pytest $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile \
		--no-loadscope-reorder) \
		$(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make: pytest collected no tests" >&2; fi; \
	exit $$rc

run: $(DEMO_STAMP) bytecode
	$(BIN)/homecare demo

BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): pyproject.toml | $(STAMP)
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	touch $@

bench: venv system-deps bytecode $(BENCH_STAMP)
	$(BIN)/python -m bench

# Results in bench/results/chaos.{json,md} and chaos-soak.{json,md,svg}; each exits non-zero when
# a guarantee is broken. Options: CHAOS_ARGS='--quick' (a minute), '--messages N --kills K
# --db-outage-s S ...'; SOAK_ARGS='--minutes M --rate R'. See `python -m bench.chaos --help`.
CHAOS_ARGS ?=
SOAK_ARGS ?=

chaos: venv system-deps bytecode
	$(BIN)/python -m bench.chaos $(CHAOS_ARGS)

soak: venv system-deps bytecode
	$(BIN)/python -m bench.chaos soak $(SOAK_ARGS)

# The console screenshots in docs/ (the tests write them only when asked), and the supervision
# report's (a seeded month rendered and captured by tests/report_screenshot.py, no test).
screenshots: venv system-deps
	UPDATE_DOCS_SCREENSHOTS=1 $(BIN)/pytest -q tests/integration/test_console_browser.py \
		-k test_dispatcher_sees_a_fall
	$(BIN)/python -m tests.report_screenshot --out docs/supervision-report.png

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
