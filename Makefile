# Every target creates .venv and installs the project on first use (and when pyproject changes).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DAGSTER_HOME ?= $(CURDIR)/.fintrack/dagster
# `make demo` fills the last six months and `make dev` shows them: both run with the same
# FINTRACK_START_DATE (the partitions' first day), fixed by the first of them to 182 days back
# and kept in .fintrack/demo_start_date until `make clean`. One set in the environment wins.
DEMO_START := .fintrack/demo_start_date
DEMO_ENV = FINTRACK_START_DATE=$${FINTRACK_START_DATE:-$$(cat $(DEMO_START))}

.PHONY: demo test dev bench screenshot lint format clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is needed: make PYTHON=python3.11 ...")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,deploy]'
	@touch $(STAMP)

$(DEMO_START):
	@mkdir -p $(@D)
	@$(PYTHON) -c 'import datetime as d; print(d.date.today() - d.timedelta(days=182))' > $@

demo: $(STAMP) $(DEMO_START)  ## the main job on the embedded default: no server, no network, no credentials
	$(DEMO_ENV) $(BIN)/fintrack demo

test: $(STAMP)  ## the whole suite (PostgreSQL on 127.0.0.1:5432 or FINTRACK_TEST_POSTGRES_URL)
	$(BIN)/pytest -n 2

dev: $(STAMP) $(DEMO_START)  ## the Dagster UI on http://127.0.0.1:3000 with the demo's runs
	$(DEMO_ENV) $(BIN)/fintrack ui

bench: $(STAMP)  ## the performance harness (benchmarks/README.md)
	$(BIN)/python -m benchmarks

screenshot: $(STAMP)  ## docs/images/asset-graph.png from the UI (needs Chromium: apt-get install chromium)
	$(BIN)/pip install --quiet -e '.[screenshot]'
	$(BIN)/python scripts/screenshot_asset_graph.py

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:  ## removes the demo's lake, warehouse and Dagster history (not .venv)
	rm -rf .fintrack
