#!/usr/bin/env python3
"""How should an INT8 model's exact GELU run on ONNX Runtime? The chain as exported vs one contrib Gelu, measured.

    python benchmarks/gelu_placement.py [--blocks 6] [--samples 32] [--rounds 5] [--threads 2]

Exporters before opset 20 write GELU as Div(x, sqrt 2) -> Erf -> Add 1 -> Mul x -> Mul 0.5 (ConvNeXt, PP-OCRv6).
edgecnn keeps that chain as one float unit between a DequantizeLinear and a QuantizeLinear (no runtime here has
an integer Erf). ONNX Runtime fuses the chain into one `Gelu` kernel in a float model, but not between Q/DQ: its
EnsureUniqueDQForNodeUnit gives the Div and the Mul their own DQ, and GeluFusion needs one input. From one
calibration (the same ranges), edgecnn writes:

  chain     the five ops as exported, float between DQ and Q (`--runtime ort-gelu-ops`)
  default   one com.microsoft.Gelu between DQ and Q (`--runtime ort`, the default; ORT's own fused kernel)

and FP32. The model: a ConvNeXt-style network at 224x224 built here with seeded weights (4x4/4 stem, then
`--blocks` blocks of 7x7 depthwise conv -> LayerNormalization -> Linear 4C -> GELU -> Linear C -> layer scale ->
residual, 96 channels; global pool and a 1000-way Gemm), calibrated on the bundled images upscaled
(benchmarks/preprocess_224.toml). Every (variant) p50 runs in a fresh process through `benchmarks/runner.py`
(>= 5 alternating rounds, median and spread); what ORT executes (its optimized graph: Gelu and Erf kernels) and
the output SQNR against FP32 on the bundled eval images are measured once.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import MODELS, ort_executed_graph, output_accuracy, write_placements
from runner import Variant, common_args, latency, median, run_benchmark, settings_from, spread

NAME = "gelu_placement"
PLACEMENTS = {"chain": "ort-gelu-ops", "default": "ort"}
WORK = MODELS / "gelu"


# ------------------------------------------------------------------ measured in the runner's children ---------
def measure(*, model: str, threads: int, batch: int) -> dict[str, Any]:
    return latency("ort", model, threads=threads, batch=batch, iterations=60)


def ort_graph(*, model: str, threads: int, batch: int) -> dict[str, Any]:
    """What ONNX Runtime executes after its optimizations (deterministic: counted once)."""
    ops = collections.Counter(n.op_type for n in ort_executed_graph(model, threads).node)
    return {"gelu_kernels": ops["Gelu"], "erf_kernels": ops["Erf"], "integer_ops": sum(
        v for k, v in ops.items() if k.startswith(("QLinear", "QGemm", "MatMulInteger", "DynamicQuantize")))}  # fmt: skip


def accuracy(*, model: str, reference: str, n: int, threads: int, batch: int) -> dict[str, Any]:
    return output_accuracy(model, reference, n, threads)


# ------------------------------------------------------------------ parent side --------------------------------
def convnext_like(blocks: int, c: int = 96, seed: int = 0) -> Any:
    """A ConvNeXt-style float model (opset 17, the GELU written as its Erf chain), seeded weights."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits: list[onnx.TensorProto] = []

    def w(name: str, *shape: int, scale: float = 1.0, matmul: bool = False) -> str:
        """Seeded weights of shape [out, in, ...], scaled by 1/sqrt(fan-in); ``matmul``: stored [in, out]."""
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        arr = rng.normal(0.0, scale / np.sqrt(max(fan_in, 1)), shape).astype(np.float32)
        inits.append(numpy_helper.from_array(arr.T.copy() if matmul else arr, name))
        return name

    def const(name: str, value: Any) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    N = helper.make_node
    const("sqrt2", 2**0.5), const("one", 1.0), const("half", 0.5)
    nodes = [N("Conv", ["x", w("stem_w", c, 3, 4, 4), w("stem_b", c, scale=0.1)], ["h0"], kernel_shape=[4, 4],
               strides=[4, 4], name="stem")]  # fmt: skip
    h = "h0"
    for i in range(blocks):
        p = f"b{i}"
        ln_s = const(f"{p}_ln_s", 1.0 + 0.1 * rng.normal(size=c))
        nodes += [
            N("Conv", [h, w(f"{p}_dw_w", c, 1, 7, 7, scale=1.0), w(f"{p}_dwb", c, scale=0.1)], [f"{p}_dw"],
              kernel_shape=[7, 7], pads=[3] * 4, group=c, name=f"{p}_dwconv"),
            N("Transpose", [f"{p}_dw"], [f"{p}_t"], perm=[0, 2, 3, 1], name=f"{p}_to_nhwc"),
            N("LayerNormalization", [f"{p}_t", ln_s, w(f"{p}_ln_b", c, scale=0.1)], [f"{p}_ln"], axis=-1,
              name=f"{p}_ln"),
            N("MatMul", [f"{p}_ln", w(f"{p}_fc1", 4 * c, c, matmul=True)], [f"{p}_m1"], name=f"{p}_fc1"),
            N("Add", [f"{p}_m1", w(f"{p}_fc1b", 4 * c, scale=0.1)], [f"{p}_a1"], name=f"{p}_fc1_bias"),
            N("Div", [f"{p}_a1", "sqrt2"], [f"{p}_g0"], name=f"{p}_gelu_div"),
            N("Erf", [f"{p}_g0"], [f"{p}_g1"], name=f"{p}_gelu_erf"),
            N("Add", [f"{p}_g1", "one"], [f"{p}_g2"], name=f"{p}_gelu_add"),
            N("Mul", [f"{p}_a1", f"{p}_g2"], [f"{p}_g3"], name=f"{p}_gelu_mul"),
            N("Mul", [f"{p}_g3", "half"], [f"{p}_g4"], name=f"{p}_gelu_half"),
            N("MatMul", [f"{p}_g4", w(f"{p}_fc2", c, 4 * c, matmul=True)], [f"{p}_m2"], name=f"{p}_fc2"),
            N("Add", [f"{p}_m2", w(f"{p}_fc2b", c, scale=0.1)], [f"{p}_a2"], name=f"{p}_fc2_bias"),
            N("Mul", [f"{p}_a2", const(f"{p}_gamma", np.full(c, 0.5))], [f"{p}_ls"], name=f"{p}_layer_scale"),
            N("Transpose", [f"{p}_ls"], [f"{p}_back"], perm=[0, 3, 1, 2], name=f"{p}_to_nchw"),
            N("Add", [h, f"{p}_back"], [f"{p}_out"], name=f"{p}_residual"),
        ]  # fmt: skip
        h = f"{p}_out"
    nodes += [
        N("GlobalAveragePool", [h], ["pool"], name="pool"),
        N("Flatten", ["pool"], ["flat"], name="flatten"),
        N("Gemm", ["flat", w("head_w", 1000, c), w("head_b", 1000, scale=0.1)], ["logits"], transB=1, name="head"),
    ]
    g = helper.make_graph(
        nodes, "convnext_like", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 224, 224])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1000])], inits,
    )  # fmt: skip
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def write_variants(blocks: int, samples: int) -> dict[str, Path]:
    """FP32 plus the two INT8 placements (the same images and ranges)."""
    import onnx

    WORK.mkdir(parents=True, exist_ok=True)
    fp32 = WORK / f"convnext-like-{blocks}.onnx"
    onnx.save(convnext_like(blocks), str(fp32))
    return {"fp32": fp32, **write_placements(fp32, PLACEMENTS, samples)}


def readme_table(payload: dict[str, Any]) -> str:
    m = payload["model"]
    rows = [
        "| model | variant | ORT p50 ms [min-max] | / FP32 | SQNR dB | ORT Gelu kernels | ORT Erf kernels |",
        "|---|---|---|---|---|---|---|",
    ]
    base = median(payload, f"{m}/fp32/ort", "p50_ms")
    for v in ("fp32", *PLACEMENTS):
        val, sp = median(payload, f"{m}/{v}/ort", "p50_ms"), spread(payload, f"{m}/{v}/ort", "p50_ms")
        p50 = f"{val:.2f} [{sp[0]:.2f}-{sp[1]:.2f}]" if val is not None and sp else "-"
        ratio = f"{val / base:.2f}x" if val and base else "-"
        sq = median(payload, f"{m}/{v}/accuracy", "sqnr_db")
        g = [median(payload, f"{m}/{v}/ort-graph", k) for k in ("gelu_kernels", "erf_kernels")]
        cnt = [f"{int(x)}" if x is not None else "-" for x in g]
        sq_s = "-" if v == "fp32" or sq is None else f"{sq:.1f}"
        rows.append(f"| {m} | {v} | {p50} | {ratio} | {sq_s} | {cnt[0]} | {cnt[1]} |")
    return "\n".join(rows)


def verdict(payload: dict[str, Any]) -> str:
    m = payload["model"]
    ours, old = median(payload, f"{m}/default/ort", "p50_ms"), median(payload, f"{m}/chain/ort", "p50_ms")
    if ours is None or old is None:
        return f"{m}: not measured."
    o_sp, c_sp = spread(payload, f"{m}/default/ort", "p50_ms"), spread(payload, f"{m}/chain/ort", "p50_ms")
    overlap = o_sp is not None and c_sp is not None and o_sp[0] <= c_sp[1] and c_sp[0] <= o_sp[1]
    state = "within noise" if overlap else ("faster" if ours < old else "SLOWER")
    base = median(payload, f"{m}/fp32/ort", "p50_ms")
    vs = f": INT8 p50 {ours / base:.2f}x FP32, the exported chain {old / base:.2f}x" if base else ""
    return f"{m}: one contrib Gelu is {old / ours:.2f}x the speed of the exported chain on ORT INT8 ({state}){vs}."


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--blocks", type=int, default=6, help="ConvNeXt blocks (96 channels at 56x56)")
    ap.add_argument("--samples", type=int, default=32, help="calibration images")
    ap.add_argument("--eval", type=int, default=64, help="evaluation images for SQNR")
    common_args(ap)
    a = ap.parse_args()
    if not 1 <= a.blocks <= 64:
        print(f"error: --blocks {a.blocks}; expected 1..64", file=sys.stderr)
        return 2
    model = f"convnext-like-{a.blocks}"
    print(f"writing {model} and its INT8 placements ...", file=sys.stderr, flush=True)
    paths = write_variants(a.blocks, a.samples)
    variants: list[Variant] = []
    facts: list[Variant] = []
    for v, path in paths.items():
        p = {"model": str(path)}
        variants.append(Variant(name=f"{model}/{v}/ort", fn=f"{NAME}:measure", params=p))
        facts.append(Variant(name=f"{model}/{v}/ort-graph", fn=f"{NAME}:ort_graph", params=p, rounds=1))
        if v != "fp32":
            acc = {**p, "reference": str(paths["fp32"]), "n": a.eval}
            facts.append(Variant(name=f"{model}/{v}/accuracy", fn=f"{NAME}:accuracy", params=acc, rounds=1))
    payload = run_benchmark(
        NAME,
        [*variants, *facts],
        settings_from(a),
        extra={"model": model, "blocks": a.blocks, "calibration_samples": a.samples, "placements": PLACEMENTS},
        results=a.results,
    )
    print(readme_table(payload))
    print("\n" + verdict(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
