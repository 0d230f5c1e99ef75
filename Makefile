# Everything a fresh machine needs (Python 3.11 with pip) is installed into .venv by these targets.
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test test-integration lint format bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## run: embedded PostgreSQL, migrations, API, worker and simulator; prints the demo merchant's keys
run: $(STAMP)
	TENDER_WEBHOOK_ALLOW_PRIVATE=true $(BIN)/tender up

## test: unit, integration (real PostgreSQL) and end-to-end (real processes) tests
test: $(STAMP)
	$(BIN)/pytest

## test-integration: the database-backed tests only (CI also runs these against an external PostgreSQL)
test-integration: $(STAMP)
	$(BIN)/pytest -m "integration or e2e"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check src
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format src

## bench: 2000 card payments, 50 clients, against a running `make run` (reads the keys it saved)
bench: $(STAMP)
	$(BIN)/python bench/payments.py --admin-key "$$(cat .tender/admin.key)"

clean:
	rm -rf $(VENV) .tender .pytest_cache .mypy_cache .ruff_cache
