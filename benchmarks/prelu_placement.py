#!/usr/bin/env python3
"""How should an INT8 model's PRelu run on ONNX Runtime? A float island vs the integer form, measured.

    python benchmarks/prelu_placement.py [--width 32] [--samples 32] [--rounds 5] [--threads 2]

ONNX Runtime 1.32 has no integer PRelu (no QLinear op). Face detectors and recognizers (MTCNN, ArcFace-style
backbones) put a PRelu with one slope per channel after every convolution. From one calibration (the same images),
edgecnn writes:

  float     PRelu in float between a DequantizeLinear and a QuantizeLinear (`--runtime ort-prelu-float` in
            the API; edgecnn's placement before this script)
  default   PRelu(x) = x + (1 - slope)·Relu(-x): a QLinearMul by the constant slope - 1 whose output grid starts
            at 0 (its saturation is the Relu) and a QLinearAdd (`--runtime ort`, the default)

and FP32, ONNX Runtime's `quantize_static` (QDQ, per-channel, after `quant_pre_process`: "ort-static") and, on
OpenVINO, NNCF's quantize of the OpenVINO model ("nncf-ov"). With `--runtime openvino` (OpenVINO fuses PRelu
into the int8 convolution as a float post-op):

  ov-float    a Q/DQ between each Conv and its PRelu, the PRelu float (`--runtime openvino-prelu-float` in the API;
              the placement before this script)
  ov-default  no Q/DQ between them: Conv -> PRelu -> Q, as SiLU and HardSwish (`--runtime openvino`)

The model: an MTCNN/ArcFace-style network at 224x224 built here with seeded weights (a stride-2 stem,
then four stages of two 3x3 Conv -> PRelu, the first of each with stride 2, `--width` to 8x`--width` channels;
global pool, Gemm -> PRelu -> Gemm), calibrated on the bundled images upscaled (benchmarks/preprocess_224.toml).
Every (variant) p50 runs in a fresh process through `benchmarks/runner.py` (>= 5 alternating rounds, median and
spread); what ORT executes (its optimized graph: float PRelu and QLinear kernels) and the output SQNR against
FP32 on the bundled eval images are measured once.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CALIB, MODELS, SPEC, ort_executed_graph, ort_reader, output_accuracy, write_placements
from runner import Variant, common_args, latency, median, run_benchmark, settings_from, spread

NAME = "prelu_placement"
PLACEMENTS = {"float": "ort-prelu-float", "default": "ort"}
OV_PLACEMENTS = {"ov-float": "openvino-prelu-float", "ov-default": "openvino"}
# The peers, from the same images: ONNX Runtime's quantize_static (QDQ, per-channel, after quant_pre_process) on
# ORT, and NNCF's quantize of the OpenVINO model (default preset) on OpenVINO.
PEERS = {"ort-static": "ort", "nncf-ov": "openvino"}
WORK = MODELS / "prelu"


# ------------------------------------------------------------------ measured in the runner's children ---------
def measure(*, model: str, threads: int, batch: int, runtime: str = "ort") -> dict[str, Any]:
    """p50 on ONNX Runtime, or on OpenVINO with its default precision (bf16 where the CPU has it)."""
    return latency(runtime, model, threads=threads, batch=batch, iterations=60, openvino_hint=None)


def ort_graph(*, model: str, threads: int, batch: int) -> dict[str, Any]:
    """What ONNX Runtime executes after its optimizations (deterministic: counted once)."""
    ops = collections.Counter(n.op_type for n in ort_executed_graph(model, threads).node)
    return {
        "prelu_kernels": ops["PRelu"],
        "integer_ops": sum(v for k, v in ops.items() if k.startswith(("QLinear", "QGemm"))),
        "qdq": ops["QuantizeLinear"] + ops["DequantizeLinear"],
    }


def accuracy(*, model: str, reference: str, n: int, threads: int, batch: int, runtime: str = "ort") -> dict[str, Any]:
    return output_accuracy(model, reference, n, threads, runtime)


# ------------------------------------------------------------------ parent side --------------------------------
def prelu_net(width: int, seed: int = 0) -> Any:
    """An MTCNN/ArcFace-style float model (opset 13, PRelu with one slope per channel), seeded weights."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits: list[onnx.TensorProto] = []

    def w(name: str, *shape: int, scale: float = 1.0) -> str:
        """Seeded weights of shape [out, in, ...] (He-scaled for the PRelu that follows)."""
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        arr = rng.normal(0.0, scale * np.sqrt(2.0 / max(fan_in, 1)), shape).astype(np.float32)
        inits.append(numpy_helper.from_array(arr, name))
        return name

    def slope(name: str, c: int, rank: int) -> str:
        """PRelu slopes as trained nets have them: spread around 0.25, a few negative."""
        a = np.clip(rng.normal(0.25, 0.12, c), -0.1, 0.9).astype(np.float32)
        inits.append(numpy_helper.from_array(a.reshape(c, *([1] * (rank - 2))), name))
        return name

    N = helper.make_node
    nodes: list[onnx.NodeProto] = []
    h, cin = "x", 3

    def conv_prelu(name: str, cout: int, stride: int) -> None:
        nonlocal h, cin
        nodes.append(N("Conv", [h, w(f"{name}_w", cout, cin, 3, 3), w(f"{name}_b", cout, scale=0.05)],
                       [f"{name}_c"], kernel_shape=[3, 3], pads=[1] * 4, strides=[stride] * 2, name=name))  # fmt: skip
        nodes.append(N("PRelu", [f"{name}_c", slope(f"{name}_a", cout, 4)], [f"{name}_p"], name=f"{name}_prelu"))
        h, cin = f"{name}_p", cout

    conv_prelu("stem", width, 2)
    for i, mult in enumerate((1, 2, 4, 8)):
        conv_prelu(f"s{i}a", width * mult, 2)
        conv_prelu(f"s{i}b", width * mult, 1)
    emb = 4 * width
    nodes += [
        N("GlobalAveragePool", [h], ["pool"], name="pool"),
        N("Flatten", ["pool"], ["flat"], name="flatten"),
        N("Gemm", ["flat", w("fc1_w", emb, cin), w("fc1_b", emb, scale=0.05)], ["fc1"], transB=1, name="fc1"),
        N("PRelu", ["fc1", slope("fc1_a", emb, 2)], ["fc1_p"], name="fc1_prelu"),
        N("Gemm", ["fc1_p", w("head_w", 10, emb), w("head_b", 10, scale=0.05)], ["logits"], transB=1, name="head"),
    ]
    g = helper.make_graph(
        nodes, "prelu_net", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 224, 224])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])], inits,
    )  # fmt: skip
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def write_variants(width: int, samples: int) -> dict[str, Path]:
    """FP32, edgecnn's INT8 placements and the peers' files (the same images)."""
    import onnx

    WORK.mkdir(parents=True, exist_ok=True)
    fp32 = WORK / f"prelu-net-{width}.onnx"
    onnx.save(prelu_net(width), str(fp32))
    return {
        "fp32": fp32,
        **write_placements(fp32, {**PLACEMENTS, **OV_PLACEMENTS}, samples),
        **write_peers(fp32, samples),
    }


def write_peers(fp32: Path, samples: int) -> dict[str, Path]:
    """The peers' INT8 files of ``fp32`` from the same calibration images and PreprocessSpec."""
    import nncf
    import openvino as ov
    from onnxruntime.quantization import QuantFormat, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from edgecnn.preprocess import list_images, load_spec

    spec = load_spec(SPEC)
    xs = [spec.load(p)[None] for p in list_images(CALIB)[:samples]]

    out = {"ort-static": fp32.with_name(fp32.stem + "-int8-ort-static.onnx")}
    pre = fp32.with_name(fp32.stem + "-ort-pre.onnx")
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    quantize_static(
        str(pre),
        str(out["ort-static"]),
        ort_reader(CALIB, samples, SPEC, "x"),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
    )
    out["nncf-ov"] = fp32.with_name(fp32.stem + "-int8-nncf-ov.xml")
    q = nncf.quantize(ov.Core().read_model(str(fp32)), nncf.Dataset(xs), subset_size=samples)
    ov.save_model(q, str(out["nncf-ov"]))
    return out


def readme_table(payload: dict[str, Any]) -> str:
    m = payload["model"]
    rows = [
        "| model | runtime | variant | p50 ms [min-max] | / FP32 | SQNR dB | top-1 agreement | ORT float PRelu | "
        "ORT integer ops | ORT Q/DQ |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for rt, variants in (
        ("ort", ("fp32", *PLACEMENTS, "ort-static")),
        ("openvino", ("fp32", *OV_PLACEMENTS, "nncf-ov")),
    ):
        base = median(payload, f"{m}/fp32/{rt}", "p50_ms")
        for v in variants:
            val, sp = median(payload, f"{m}/{v}/{rt}", "p50_ms"), spread(payload, f"{m}/{v}/{rt}", "p50_ms")
            p50 = f"{val:.2f} [{sp[0]:.2f}-{sp[1]:.2f}]" if val is not None and sp else "-"
            ratio = f"{val / base:.2f}x" if val and base else "-"
            sq, ag = (median(payload, f"{m}/{v}/accuracy", k) for k in ("sqnr_db", "agreement_pct"))
            g = [median(payload, f"{m}/{v}/ort-graph", k) for k in ("prelu_kernels", "integer_ops", "qdq")]
            cnt = [f"{int(x)}" if x is not None and rt == "ort" else "-" for x in g]
            sq_s = "-" if v == "fp32" or sq is None else f"{sq:.1f}" + (" (OV)" if rt == "openvino" else "")
            ag_s = "-" if v == "fp32" or ag is None else f"{ag:.1f}%"
            label = "OpenVINO (default: bf16 here)" if rt == "openvino" else "ORT"
            rows.append(f"| {m} | {label} | {v} | {p50} | {ratio} | {sq_s} | {ag_s} | {' | '.join(cnt)} |")
    return "\n".join(rows)


def verdict(payload: dict[str, Any]) -> str:
    m = payload["model"]
    ours, old = median(payload, f"{m}/default/ort", "p50_ms"), median(payload, f"{m}/float/ort", "p50_ms")
    base = median(payload, f"{m}/fp32/ort", "p50_ms")
    if ours is None or old is None or base is None:
        return f"{m}: not measured."
    o_sp, c_sp = spread(payload, f"{m}/default/ort", "p50_ms"), spread(payload, f"{m}/float/ort", "p50_ms")
    b_sp = spread(payload, f"{m}/fp32/ort", "p50_ms")

    def vs(a: tuple[float, float] | None, b: tuple[float, float] | None, faster: bool) -> str:
        if a is not None and b is not None and a[0] <= b[1] and b[0] <= a[1]:
            return "within noise"
        return "faster" if faster else "SLOWER"

    sq = {v: median(payload, f"{m}/{v}/accuracy", "sqnr_db") for v in (*PLACEMENTS, *OV_PLACEMENTS)}
    cost = f"; output SQNR {sq['default']:.1f} dB against {sq['float']:.1f} dB" if sq["default"] and sq["float"] else ""
    out = (
        f"{m}: the integer PRelu is {old / ours:.2f}x the speed of the float island on ORT INT8 "
        f"({vs(o_sp, c_sp, ours < old)}); INT8 p50 {ours / base:.2f}x FP32 ({vs(o_sp, b_sp, ours < base)}), "
        f"the float island {old / base:.2f}x{cost}."
    )
    ov, ov_old = (
        median(payload, f"{m}/ov-default/openvino", "p50_ms"),
        median(payload, f"{m}/ov-float/openvino", "p50_ms"),
    )
    if ov and ov_old and sq["ov-default"] is not None and sq["ov-float"] is not None:
        a, b = (
            spread(payload, f"{m}/ov-default/openvino", "p50_ms"),
            spread(payload, f"{m}/ov-float/openvino", "p50_ms"),
        )
        out += (
            f" On OpenVINO, PRelu as a post-op of its int8 convolution: output SQNR {sq['ov-default']:.1f} dB against "
            f"{sq['ov-float']:.1f} dB with a Q/DQ between them, p50 {ov / ov_old:.2f}x ({vs(a, b, ov < ov_old)})."
        )
    for peer, ours_v, rt, name in (
        ("ort-static", "default", "ort", "ONNX Runtime's quantize_static"),
        ("nncf-ov", "ov-default", "openvino", "NNCF"),
    ):
        p, e = median(payload, f"{m}/{peer}/{rt}", "p50_ms"), median(payload, f"{m}/{ours_v}/{rt}", "p50_ms")
        ps, es = median(payload, f"{m}/{peer}/accuracy", "sqnr_db"), sq[ours_v]
        if p is None or e is None or ps is None or es is None:
            out += f" {name}: not measured."
            continue
        a, b = spread(payload, f"{m}/{ours_v}/{rt}", "p50_ms"), spread(payload, f"{m}/{peer}/{rt}", "p50_ms")
        out += (
            f" Against {name} on {'ORT' if rt == 'ort' else 'OpenVINO'}: p50 {e / p:.2f}x its ({vs(a, b, e < p)}), "
            f"output SQNR {es:.1f} vs {ps:.1f} dB."
        )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--width", type=int, default=32, help="channels of the first stage (x2 per stage)")
    ap.add_argument("--samples", type=int, default=32, help="calibration images")
    ap.add_argument("--eval", type=int, default=64, help="evaluation images for SQNR")
    common_args(ap)
    a = ap.parse_args()
    if not 4 <= a.width <= 256:
        print(f"error: --width {a.width}; expected 4..256", file=sys.stderr)
        return 2
    model = f"prelu-net-{a.width}"
    print(f"writing {model} and its INT8 placements ...", file=sys.stderr, flush=True)
    paths = write_variants(a.width, a.samples)
    variants: list[Variant] = []
    facts: list[Variant] = []
    for v, path in paths.items():
        p = {"model": str(path)}
        rt = "openvino" if v in OV_PLACEMENTS or PEERS.get(v) == "openvino" else "ort"
        for r in ("ort", "openvino") if v == "fp32" else (rt,):
            variants.append(Variant(name=f"{model}/{v}/{r}", fn=f"{NAME}:measure", params={**p, "runtime": r}))
        if rt == "ort":
            facts.append(Variant(name=f"{model}/{v}/ort-graph", fn=f"{NAME}:ort_graph", params=p, rounds=1))
        if v != "fp32":
            acc = {**p, "reference": str(paths["fp32"]), "n": a.eval, "runtime": rt}
            facts.append(Variant(name=f"{model}/{v}/accuracy", fn=f"{NAME}:accuracy", params=acc, rounds=1))
    payload = run_benchmark(
        NAME,
        [*variants, *facts],
        settings_from(a),
        extra={
            "model": model,
            "width": a.width,
            "calibration_samples": a.samples,
            "placements": {**PLACEMENTS, **OV_PLACEMENTS},
        },
        results=a.results,
    )
    print(readme_table(payload))
    print("\n" + verdict(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
