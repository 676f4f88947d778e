#!/usr/bin/env python3
"""Why is ONNX Runtime's default INT8 not faster than FP32? An ablation, measured on the runtimes that ship.

    python benchmarks/int8_speed.py [--models resnet18,mobilenetv2] [--threads 2] [--samples 64]

For each model, writes INT8 variants with ONNX Runtime's quantizer and with edgecnn, then for each variant:
p50 latency on ORT (CPU EP) and OpenVINO (CPU) at --threads, the ratio to FP32 on the same runtime, and
what ORT actually executes after its graph optimizations (its optimized graph is saved and counted):
integer ops (QLinearConv, QGemm, ...), float Conv/Gemm left, BatchNormalization left, and standalone
QuantizeLinear/DequantizeLinear nodes (each a float<->int8 conversion of a whole tensor).

Variants:
  ort-default       quantize_static(QDQ, per_channel=True): S8S8, BN unfolded (the seed's measurement)
  ort-preprocessed  the same after onnxruntime.quantization.quant_pre_process (BN folded)
  ort-u8s8          preprocessed, activations QUInt8 (the x86 VNNI layout)
  edgecnn-s8s8      edgecnn with int8 activations (the NPU scheme) on x86
  edgecnn           edgecnn's default for ORT/OpenVINO: BN folded, u8 activations x s8 per-channel weights,
                    Relu/Clip folded into the quantized op, int32 bias, shape ops sharing their input's scale
Calibration: the first --samples bundled images through benchmarks/preprocess_224.toml, minmax for all.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CALIB, MODELS, SPEC, ort_reader


def ort_variants(model: Path, tmp: Path, samples: int) -> dict[str, Path]:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    def reader():  # a fresh reader for every quantize_static call
        return ort_reader(CALIB, samples)

    out: dict[str, Path] = {}
    out["ort-default"] = tmp / "ort_default.onnx"
    quantize_static(str(model), str(out["ort-default"]), reader(), quant_format=QuantFormat.QDQ, per_channel=True)
    pre = tmp / "pre.onnx"
    quant_pre_process(str(model), str(pre), skip_symbolic_shape=True)
    out["ort-preprocessed"] = tmp / "ort_pre.onnx"
    quantize_static(str(pre), str(out["ort-preprocessed"]), reader(), quant_format=QuantFormat.QDQ, per_channel=True)
    out["ort-u8s8"] = tmp / "ort_u8s8.onnx"
    quantize_static(
        str(pre), str(out["ort-u8s8"]), reader(), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
    )  # fmt: skip
    return out


def edgecnn_variants(model: Path, tmp: Path, samples: int) -> dict[str, Path]:
    from edgecnn.preprocess import load_spec
    from edgecnn.quantize.api import QuantizeConfig, quantize
    from edgecnn.quantize.dataset import ImageDataset
    from edgecnn.quantize.params import INT8_SYMMETRIC, X86_CPU

    ds = ImageDataset.open(CALIB, load_spec(SPEC), samples)
    out: dict[str, Path] = {}
    for name, scheme in (("edgecnn-s8s8", replace(INT8_SYMMETRIC, quantize_outputs=False)), ("edgecnn", X86_CPU)):
        q, _ = quantize(model, ds, QuantizeConfig(scheme=scheme))
        out[name] = tmp / f"{name}.onnx"
        onnx.save(q, str(out[name]))
    return out


def ort_executes(path: Path, tmp: Path, threads: int) -> dict[str, int]:
    """Op counts of the graph ORT runs after its optimizations."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3  # ORT warns that the saved optimized graph is machine-specific: it is, that's the point
    so.optimized_model_filepath = str(tmp / f"{path.stem}.ort_optimized.onnx")
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    ops = collections.Counter(n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node)
    integer = sum(v for k, v in ops.items() if k.startswith(("QLinear", "QGemm", "ConvInteger", "MatMulInteger")))
    return {
        "integer ops": integer,
        "float Conv/Gemm": ops["Conv"] + ops["FusedConv"] + ops["Gemm"] + ops["FusedGemm"],
        "BatchNorm": ops["BatchNormalization"],
        "Q/DQ": ops["QuantizeLinear"] + ops["DequantizeLinear"],
    }


def p50_ms(path: Path, runtime: str, threads: int, iters: int = 100) -> float:
    from edgecnn.runtimes import open_session, random_feeds

    sess = open_session(runtime, path, threads=threads)
    feeds = random_feeds(sess.inputs())
    for _ in range(15):
        sess.run(feeds)
    ts = []
    for _ in range(iters):
        t = time.perf_counter_ns()
        sess.run(feeds)
        ts.append(time.perf_counter_ns() - t)
    return float(np.median(ts)) / 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet18,mobilenetv2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--samples", type=int, default=64)
    a = ap.parse_args()
    print(
        "| model | variant | p50 ORT ms | vs FP32 | p50 OpenVINO ms | vs FP32 | ORT runs: int ops | float Conv/Gemm | BN | Q/DQ |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in a.models.split(","):
        model = MODELS / f"{name}.onnx"
        if not model.exists():
            print(f"error: {model} not found; run: python benchmarks/build_models.py", file=sys.stderr)
            return 2
        with tempfile.TemporaryDirectory() as t:
            tmp = Path(t)
            variants = {"fp32": model, **ort_variants(model, tmp, a.samples), **edgecnn_variants(model, tmp, a.samples)}
            base = {rt: p50_ms(model, rt, a.threads) for rt in ("ort", "openvino")}
            for v, path in variants.items():
                lat = base if v == "fp32" else {rt: p50_ms(path, rt, a.threads) for rt in ("ort", "openvino")}
                ex = ort_executes(path, tmp, a.threads)
                print(
                    f"| {name} | {v} | {lat['ort']:.2f} | {lat['ort'] / base['ort']:.2f}x | {lat['openvino']:.2f} | "
                    f"{lat['openvino'] / base['openvino']:.2f}x | {ex['integer ops']} | {ex['float Conv/Gemm']} | "
                    f"{ex['BatchNorm']} | {ex['Q/DQ']} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
