# Two commands do all set-up on a fresh machine with Python 3.11 (see README):
#   make demo   installs into .venv and runs the whole pipeline (edgecnn run examples/pipeline.toml) into out/run
#   make test   installs into .venv and runs ruff and the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
OUT    := out
EC     := $(BIN)/edgecnn

.PHONY: demo test lint bench install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(EC) run examples/pipeline.toml --out $(OUT)/run --force

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Benchmarks against the peers (minutes; not part of the tests).
bench: $(STAMP)
	$(BIN)/python -m pip install -q -e ".[dev,bench]"
	$(BIN)/python benchmarks/build_models.py
	$(BIN)/python benchmarks/int8_speed.py
	$(BIN)/python benchmarks/calibration.py
	$(BIN)/python benchmarks/harness_vs_benchmark_app.py
	$(BIN)/python benchmarks/export.py --setup-onnx2tf
	$(BIN)/python benchmarks/export.py

clean:
	rm -rf $(OUT) .pytest_cache .ruff_cache
