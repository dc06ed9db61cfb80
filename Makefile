# `make test` builds .venv from scratch when setup.py changes, then runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint run export clean

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

export: $(STAMP)
	$(BIN)/dogbreed-pipeline export --out pipeline_definition.json

# The whole pipeline locally at demo size, then the served model answers a test image.
run: $(STAMP)
	BIN=$(BIN) bin/demo

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
