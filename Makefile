# Every target creates .venv and installs the project on first use (and when pyproject changes).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DAGSTER_HOME ?= $(CURDIR)/.fintrack/dagster

.PHONY: demo test dev bench screenshot lint format clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is needed: make PYTHON=python3.11 ...")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,deploy]'
	@touch $(STAMP)

demo: $(STAMP)  ## the main job on the embedded default: no server, no network, no credentials
	@mkdir -p $(DAGSTER_HOME) && touch $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/fintrack demo

test: $(STAMP)  ## the whole suite (PostgreSQL on 127.0.0.1:5432 or FINTRACK_TEST_POSTGRES_URL)
	$(BIN)/pytest -n 2

dev: $(STAMP)  ## the Dagster UI on http://127.0.0.1:3000 with the demo's runs
	@mkdir -p $(DAGSTER_HOME) && touch $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -m fintrack_assets -h 127.0.0.1 -p 3000

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
