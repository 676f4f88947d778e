#!/usr/bin/env python3
"""Does edgecnn's INT8 TFLite run faster than its FP32 TFLite on LiteRT (XNNPACK)? Goal: INT8 <= 0.6x FP32 p50.

    python benchmarks/tflite_int8.py [--models resnet18,mobilenetv2] [--threads 2] [--rounds 5] [--runs 50]
                                     [--calib-samples 32] [--results benchmarks/results]

The edgecnn half of `benchmarks/export.py` (same variants, same runner, same LiteRT timing function), without
onnx2tf, so it runs in minutes in edgecnn's own environment: each model (benchmarks/build_models.py,
1x3x224x224) becomes a float32 TFLite file and, through ``quantize`` (minmax, the first --calib-samples
bundled images through benchmarks/preprocess_224.toml), an INT8 TFLite file; both are checked against the
float ONNX model and timed on LiteRT, every measurement in a fresh process, in alternating rounds.
Writes `benchmarks/results/tflite_int8.json`; README blocks `bench:tflite_int8` and `bench:tflite_int8_verdict`.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import export

NAME = "tflite_int8"


def main(argv: list[str] | None = None) -> int:
    a = export.build_parser(__doc__ or "").parse_args(argv)
    return export.run(a, name=NAME, tools=("edgecnn",))


if __name__ == "__main__":
    sys.exit(main())
