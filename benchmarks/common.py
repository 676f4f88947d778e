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


def ort_reader(images: Path, n: int, spec_path: Path = SPEC, input_name: str = "input"):  # -> CalibrationDataReader
    """ONNX Runtime's calibration reader over the first ``n`` images, through the same PreprocessSpec as edgecnn."""
    from onnxruntime.quantization import CalibrationDataReader

    from edgecnn.preprocess import list_images, load_spec

    spec = load_spec(spec_path)
    files = list_images(images)[:n]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(files)

        def get_next(self):  # -> dict[str, np.ndarray] | None
            p = next(self.it, None)
            return None if p is None else {input_name: spec.load(p)[None]}

    return Reader()
