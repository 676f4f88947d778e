from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_MODEL = ROOT / "models" / "sample_cnn.onnx"
CALIB_DIR = ROOT / "calibration_data" / "calib"
EVAL_DIR = ROOT / "calibration_data" / "eval"


@pytest.fixture
def sample_model() -> Path:
    if not SAMPLE_MODEL.exists():
        pytest.fail(f"bundled model missing: {SAMPLE_MODEL}")
    return SAMPLE_MODEL
