# Everything a fresh machine needs (Python 3.11 with pip) is installed into .venv by these targets.
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The browser tests' Chromium, from Debian's package (tests/browser/conftest.py launches it from here).
CHROMIUM := /usr/bin/chromium
# The benchmark's HTTP load generator, from Debian's package.
WRK := /usr/bin/wrk

.PHONY: run test test-integration fuzz browser lint format bench bench-client clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## run: embedded PostgreSQL, migrations, API, worker and simulator; prints the demo merchant's keys
run: $(STAMP)
	TENDER_WEBHOOK_ALLOW_PRIVATE=true $(BIN)/tender up

## browser: Debian's Chromium, which the browser tests drive through Playwright (never Playwright's own
## download, which a closed network refuses). Fails loudly when it cannot be installed: CI must run those tests.
browser: $(CHROMIUM)

$(CHROMIUM):
	@set -e; \
	if [ "$$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi; \
	echo "== installing Debian's chromium (for the browser tests)"; \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium \
	  || { echo "== apt-get update (no package lists yet?), then again"; \
	       $$sudo apt-get update && $$sudo env DEBIAN_FRONTEND=noninteractive \
	       apt-get install -y --no-install-recommends chromium; }; \
	test -x $(CHROMIUM) || { echo "chromium installed but $(CHROMIUM) is missing" >&2; exit 1; }

## test: unit, integration (real PostgreSQL), end-to-end (real processes) and browser (headless Chromium) tests
test: $(STAMP) $(CHROMIUM)
	$(BIN)/pytest

## test-integration: the database-backed tests only (CI also runs these against an external PostgreSQL)
test-integration: $(STAMP) $(CHROMIUM)
	$(BIN)/pytest -m "integration or e2e"

## fuzz: Schemathesis against the app's own OpenAPI (real PostgreSQL, fixed seed, bounded examples): any 5xx
## fails, and so does an operation the fuzzer never got past authentication or look-ups; prints a status table
fuzz: $(STAMP)
	$(BIN)/pytest -m fuzz tests/fuzz

## lint: ruff, strict mypy, and the layers as import contracts (pyproject.toml [tool.importlinter])
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check src
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format src

## bench: a fresh `tender up` in a temporary data dir, the bare FastAPI baseline, 20 s of wrk load, the drain, CPU per
## process; one table, JSON and a chart in bench/results/ (BENCH_ARGS="--workers 1,2,4" for the scale-out curve)
bench: $(STAMP) $(WRK)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

## bench-client: bench/payments.py (Python client, webhooks too) against a running `make run`
bench-client: $(STAMP)
	$(BIN)/python bench/payments.py --admin-key "$$(cat .tender/admin.key)"

$(WRK):
	@set -e; \
	if [ "$$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi; \
	echo "== installing Debian's wrk (the benchmark's load generator)"; \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends wrk \
	  || { $$sudo apt-get update && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends wrk; }

clean:
	rm -rf $(VENV) .tender .pytest_cache .mypy_cache .ruff_cache
