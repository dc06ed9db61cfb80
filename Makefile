# `make test` builds .venv from scratch when setup.py changes, then runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint run export clean container-env

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The container-parity tier runs our scripts in venvs that mirror the training, inference and
# Ray Serve images: bin/container-env builds each once (Python 3.12, the Ray Serve one 3.13;
# 5 to 7.5 GB each), then just prints it.
test: $(STAMP)
	$(BIN)/ruff check .
	training=$$(bin/container-env training) && inference=$$(bin/container-env inference) && \
	ray_serve=$$(bin/container-env ray-serve) && \
	DOGBREED_CONTAINER_PYTHON="$$training/bin/python" \
	DOGBREED_INFERENCE_PYTHON="$$inference/bin/python" \
	DOGBREED_RAY_SERVE_PYTHON="$$ray_serve/bin/python" $(BIN)/python -m pytest

container-env:
	bin/container-env training
	bin/container-env inference
	bin/container-env ray-serve

export: $(STAMP)
	$(BIN)/dogbreed-pipeline export --out pipeline_definition.json

# The whole pipeline locally at demo size, then the served model answers a test image;
# `make run INPUT=DIR_OR_ZIP [ARGS="run-local options"]` does the same on your own images
# (run-local --preset laptop).
run: $(STAMP)
	INPUT="$(INPUT)" ARGS="$(ARGS)" BIN=$(BIN) bin/demo

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
