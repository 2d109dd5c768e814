# Two entry points: `make run` and `make test`. Everything else is a step they share
# (`make test-fast` is the quick loop while working: the tests not marked slow, no linters).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
SAMPLE_SEED := 7
SAMPLE_CARDHOLDERS := 3000

# `make run PORT=8001` or `NBA_PORT=8001 make run` (the command line wins); the same for HOST / NBA_HOST.
HOST ?= $(or $(NBA_HOST),127.0.0.1)
PORT ?= $(or $(NBA_PORT),8000)

.PHONY: run test test-fast system-deps install install-test sample-data model profiles bench clean

run: install sample-data model profiles
	@echo "Model in service: $$(cat models/CURRENT); profile snapshot: $$(cat profiles/CURRENT)."
	@echo "Agent panel:  http://$(HOST):$(PORT)/agent?cardholder_id=$$($(BIN)/python -c \
		"import pyarrow.parquet as pq; print(pq.read_table('data_samples/cardholders.parquet', columns=['cardholder_id'])[0][0])")&call_reason=general"
	@echo "API docs:     http://$(HOST):$(PORT)/docs    metrics: http://$(HOST):$(PORT)/metrics"
	$(BIN)/nba serve --host $(HOST) --port $(PORT) --models-dir models --profiles-dir profiles \
		--data-dir data_samples --database-url sqlite:///var/feedback.db

test: install-test
	$(BIN)/ruff check nba training api tests bench
	$(BIN)/ruff format --check nba training api tests bench
	$(BIN)/mypy nba api training
	$(BIN)/python -m pytest --durations=40

test-fast: install-test
	$(BIN)/python -m pytest -m "not slow" -n auto -q

# What running needs (scripts/apt-run.txt, the package); the tests add scripts/apt-test.txt and the
# [test] extra (pytest, ruff, mypy, Playwright, ...).
system-deps:
	bash scripts/install-system-deps.sh run test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): $(BIN)/python pyproject.toml scripts/install-system-deps.sh scripts/apt-run.txt
	bash scripts/install-system-deps.sh run
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $(RUN_STAMP)

$(TEST_STAMP): $(RUN_STAMP) scripts/apt-test.txt
	bash scripts/install-system-deps.sh run test
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(TEST_STAMP)

install: $(RUN_STAMP)

install-test: $(TEST_STAMP)

# The committed sample world; regenerating with the same seed gives the same rows (a test checks it).
sample-data: install
	@test -f data_samples/cardholders.parquet || $(BIN)/nba generate --cardholders $(SAMPLE_CARDHOLDERS) \
		--seed $(SAMPLE_SEED) --out data_samples --format parquet --oracle var/data_samples.oracle.parquet
	$(BIN)/nba validate data_samples

# A model trained on the sample data, put in service, unless one already is.
model: sample-data
	@test -f models/CURRENT || $(BIN)/nba train --data data_samples --out models --promote

# The sample cardholders' profile snapshot for the model in service, unless one is in service already.
profiles: model
	@test -f profiles/CURRENT || $(BIN)/nba profiles build --data data_samples --model models --out profiles --promote

bench: install-test
	$(BIN)/python bench/bench_generate.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
