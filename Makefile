# Two entry points: `make run` and `make test`. Everything else is a step they share.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SAMPLE_SEED := 7
SAMPLE_CARDHOLDERS := 1500

.PHONY: run test lint typecheck pytest system-deps install sample-data bench clean

run: install sample-data
	$(BIN)/nba validate data_samples

test: install
	$(BIN)/ruff check nba training api tests bench
	$(BIN)/ruff format --check nba training api tests bench
	$(BIN)/mypy nba api training
	$(BIN)/python -m pytest

system-deps:
	bash scripts/install-system-deps.sh

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml scripts/install-system-deps.sh
	bash scripts/install-system-deps.sh
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# The committed sample world; regenerating with the same seed gives the same rows (a test checks it).
sample-data: install
	@test -f data_samples/cardholders.csv || $(BIN)/nba generate --cardholders $(SAMPLE_CARDHOLDERS) \
		--seed $(SAMPLE_SEED) --out data_samples --format csv

bench: install
	$(BIN)/python bench/bench_generate.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
