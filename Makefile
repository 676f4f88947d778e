# Two commands do all set-up on a fresh machine with Python 3.11 (see README):
#   make demo   installs into .venv and runs inspect -> quantize -> check -> bench -> drift -> export -> gate
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
	mkdir -p $(OUT)
	$(EC) inspect models/sample_cnn.onnx --json $(OUT)/inspect.json --top 8
	$(EC) quantize models/sample_cnn.onnx --calib calibration_data/calib -o $(OUT)/sample_cnn.int8.onnx --json $(OUT)/quantize.json
	$(EC) quantize models/sample_cnn.onnx --precision fp16 -o $(OUT)/sample_cnn.fp16.onnx
	$(EC) check $(OUT)/sample_cnn.int8.onnx --target intel-cpu --target arm-cpu-xnnpack --target ethos-u55 --json $(OUT)/check.json --markdown $(OUT)/check.md
	$(EC) quantize models/sample_cnn.onnx --calib calibration_data/calib -o $(OUT)/sample_cnn.ethos-u55.onnx --target ethos-u55
	$(EC) check $(OUT)/sample_cnn.ethos-u55.onnx --target ethos-u55 --target edgetpu --strict
	$(EC) bench models/sample_cnn.onnx $(OUT)/sample_cnn.fp16.onnx $(OUT)/sample_cnn.int8.onnx -r ort -r openvino --threads 2 -n 300 --compare --json $(OUT)/bench.json
	$(EC) drift models/sample_cnn.onnx $(OUT)/sample_cnn.int8.onnx --data calibration_data/eval --json $(OUT)/drift.json --plot $(OUT)/drift_layers.png --markdown $(OUT)/drift.md
	$(EC) bench $(OUT)/sample_cnn.int8.onnx -r ort --threads 1 -n 300 --json $(OUT)/bench_int8.json
	$(EC) export $(OUT)/sample_cnn.int8.onnx -o $(OUT)/sample_cnn.int8.tflite --json $(OUT)/export_tflite.json
	$(EC) export $(OUT)/sample_cnn.ethos-u55.onnx --target ethos-u55 -o $(OUT)/sample_cnn.ethos-u55.tflite --json $(OUT)/export_u55.json
	$(EC) export models/sample_cnn.onnx -o $(OUT)/sample_cnn.xml --json $(OUT)/export_openvino.json
	$(EC) bench models/sample_cnn.onnx $(OUT)/sample_cnn.int8.tflite -r litert --threads 2 -n 300 --input calibration_data/eval --json $(OUT)/bench_litert.json
	$(EC) gate --policy examples/gate-policy.toml --drift $(OUT)/drift.json --bench $(OUT)/bench_int8.json --baseline $(OUT)/baseline.json --update-baseline --markdown $(OUT)/gate.md --junit $(OUT)/gate.xml

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
