"""What the benchmark scripts share: paths, the 224x224 PreprocessSpec, and an ORT calibration reader."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SPEC = REPO / "benchmarks" / "preprocess_224.toml"
CALIB = REPO / "calibration_data" / "calib"
EVAL = REPO / "calibration_data" / "eval"
MODELS = REPO / "benchmarks" / "models"


def ort_reader(
    images: Path, n: int, spec_path: Path = SPEC, input_name: str = "input", *, batch: int = 1
):  # -> CalibrationDataReader
    """ONNX Runtime's calibration reader over the first ``n`` images, through the same PreprocessSpec as edgecnn,
    ``batch`` images per call (the model's batch dimension must then be dynamic)."""
    import numpy as np
    from onnxruntime.quantization import CalibrationDataReader

    from edgecnn.preprocess import list_images, load_spec

    spec = load_spec(spec_path)
    files = list_images(images)[:n]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([files[i : i + batch] for i in range(0, len(files), batch)])

        def get_next(self):  # -> dict[str, np.ndarray] | None
            chunk = next(self.it, None)
            return None if chunk is None else {input_name: np.stack([spec.load(p) for p in chunk])}

    return Reader()
