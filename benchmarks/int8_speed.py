#!/usr/bin/env python3
"""Why is ONNX Runtime's default INT8 not faster than FP32? An ablation, measured on the runtimes that ship.

    python benchmarks/int8_speed.py [--models resnet18,mobilenetv2] [--threads 2] [--samples 64] [--rounds 5]

For each model, writes INT8 variants with ONNX Runtime's quantizer and with edgecnn (once, before timing),
then measures through `benchmarks/runner.py`: every (variant, runtime) p50 in a fresh process, >= 5
alternating rounds, median and spread; the ratio to FP32 on the same runtime is the ratio of the medians.
It also counts what ORT actually executes after its graph optimizations (its optimized graph is saved and
counted; deterministic, measured once): integer ops (QLinearConv, QGemm, ...), float Conv/Gemm left,
BatchNormalization left, and standalone QuantizeLinear/DequantizeLinear nodes.

Variants:
  ort-default       quantize_static(QDQ, per_channel=True): S8S8, BN unfolded
  ort-preprocessed  the same after onnxruntime.quantization.quant_pre_process (BN folded)
  ort-u8s8          preprocessed, activations QUInt8 (the x86 VNNI layout)
  edgecnn-s8s8      edgecnn with int8 activations (the NPU scheme) on x86
  edgecnn           edgecnn's default for ORT/OpenVINO: BN folded, u8 activations x s8 per-channel weights
Calibration: the first --samples bundled images through benchmarks/preprocess_224.toml, minmax for all,
one image at a time for every tool (--batch). OpenVINO runs with the f32 precision hint edgecnn's adapter
uses; the precision the compiled model reports is recorded per run (`openvino_precision`).
"""

from __future__ import annotations

import argparse
import collections
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CALIB, MODELS, SPEC, ort_reader
from runner import Variant, common_args, latency, median, model_names, run_benchmark, settings_from, spread

NAME = "int8_speed"
RUNTIMES = ("ort", "openvino")
VARIANTS = ("fp32", "ort-default", "ort-preprocessed", "ort-u8s8", "edgecnn-s8s8", "edgecnn")
WORK = MODELS / "int8_speed"


def ort_variants(model: Path, tmp: Path, samples: int, batch: int) -> dict[str, Path]:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    def reader():  # a fresh reader for every quantize_static call
        return ort_reader(CALIB, samples, batch=batch)

    out: dict[str, Path] = {}
    out["ort-default"] = tmp / f"{model.stem}.ort_default.onnx"
    quantize_static(str(model), str(out["ort-default"]), reader(), quant_format=QuantFormat.QDQ, per_channel=True)
    pre = tmp / f"{model.stem}.pre.onnx"
    quant_pre_process(str(model), str(pre), skip_symbolic_shape=True)
    out["ort-preprocessed"] = tmp / f"{model.stem}.ort_pre.onnx"
    quantize_static(str(pre), str(out["ort-preprocessed"]), reader(), quant_format=QuantFormat.QDQ, per_channel=True)
    out["ort-u8s8"] = tmp / f"{model.stem}.ort_u8s8.onnx"
    quantize_static(
        str(pre), str(out["ort-u8s8"]), reader(), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
    )  # fmt: skip
    return out


def edgecnn_variants(model: Path, tmp: Path, samples: int, batch: int) -> dict[str, Path]:
    import onnx

    from edgecnn.preprocess import load_spec
    from edgecnn.quantize.api import QuantizeConfig, quantize
    from edgecnn.quantize.dataset import ImageDataset
    from edgecnn.quantize.params import INT8_SYMMETRIC, X86_CPU

    ds = ImageDataset.open(CALIB, load_spec(SPEC), samples)
    out: dict[str, Path] = {}
    for name, scheme in (("edgecnn-s8s8", replace(INT8_SYMMETRIC, quantize_outputs=False)), ("edgecnn", X86_CPU)):
        q, _ = quantize(model, ds, QuantizeConfig(scheme=scheme, batch=batch))
        out[name] = tmp / f"{model.stem}.{name}.onnx"
        onnx.save(q, str(out[name]))
    return out


# ------------------------------------------------------------------ measured in the runner's children ---------
def measure(*, model: str, runtime: str, threads: int, batch: int, **_: Any) -> dict[str, Any]:
    return latency(runtime, model, threads=threads, batch=batch)


def ort_graph(*, model: str, threads: int, batch: int, **_: Any) -> dict[str, Any]:
    """Op counts of the graph ORT runs after its optimizations (deterministic)."""
    import tempfile

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="edgecnn-int8speed-") as d:
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.log_severity_level = 3  # ORT warns that the saved optimized graph is machine-specific: that's the point
        so.optimized_model_filepath = str(Path(d) / "optimized.onnx")
        ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        ops = collections.Counter(n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node)
    integer = sum(v for k, v in ops.items() if k.startswith(("QLinear", "QGemm", "ConvInteger", "MatMulInteger")))
    return {
        "int_ops": integer,
        "float_conv_gemm": ops["Conv"] + ops["FusedConv"] + ops["Gemm"] + ops["FusedGemm"],
        "batchnorm": ops["BatchNormalization"],
        "qdq": ops["QuantizeLinear"] + ops["DequantizeLinear"],
    }


# ------------------------------------------------------------------ README rendering -----------------------------
def within_noise(payload: dict[str, Any], a: str, b: str, metric: str) -> bool:
    """``a`` is at most ``b`` or their [min, max] ranges over the rounds overlap."""
    ma, mb = median(payload, a, metric), median(payload, b, metric)
    sa, sb = spread(payload, a, metric), spread(payload, b, metric)
    if ma is None or mb is None or sa is None or sb is None:
        return False
    return ma <= mb or sa[0] <= sb[1]


def verdicts(payload: dict[str, Any]) -> dict[str, list[str]]:
    """Which claims the numbers support: edgecnn fastest or within noise of the fastest; INT8 never slower."""
    out: dict[str, list[str]] = {"fastest_or_noise": [], "not_fastest": [], "int8_not_slower": [], "int8_slower": []}
    for m in model_names(payload):
        for rt in RUNTIMES:
            meds = {v: median(payload, f"{m}/{v}/{rt}", "p50_ms") for v in VARIANTS}
            quant = {v: x for v, x in meds.items() if v != "fp32" and x is not None}
            if not quant or meds["fp32"] is None or meds["edgecnn"] is None:
                continue
            best = min(quant, key=lambda v: quant[v])
            ok = within_noise(payload, f"{m}/edgecnn/{rt}", f"{m}/{best}/{rt}", "p50_ms")
            out["fastest_or_noise" if ok else "not_fastest"].append(f"{m}/{rt}")
            slower = meds["edgecnn"] > meds["fp32"]
            out["int8_slower" if slower else "int8_not_slower"].append(f"{m}/{rt}")
    return out


def readme_table(payload: dict[str, Any]) -> str:
    s = payload["settings"]
    mach = payload["machine"]
    prec = sorted(
        {str(v["facts"].get("openvino_precision")) for v in payload["variants"] if v["name"].endswith("/openvino")}
    )
    lines = [
        f"p50 in ms: median over {s['rounds']} alternating rounds, each a fresh process of 100 timed runs "
        f"[min-max over the rounds]; {s['threads']} threads, batch {s['batch']}; {mach['cpu_model']} "
        f"({mach['cores_logical']} cores; {mach['cpu_flags']}), ORT {mach['versions']['onnxruntime']}, "
        f"OpenVINO {mach['versions']['openvino']} (float layers ran in {', '.join(prec)}). `vs FP32` is the ratio "
        "of the medians."
        f" Load average {mach['loadavg_before'][0]:.1f} before, {mach['loadavg_after'][0]:.1f} after (a shared machine).",
        "",
        "| model | variant | p50 ORT ms | vs FP32 | p50 OpenVINO ms | vs FP32 | ORT runs: int ops | float Conv/Gemm | BN | Q/DQ |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in model_names(payload):
        base = {rt: median(payload, f"{m}/fp32/{rt}", "p50_ms") for rt in RUNTIMES}
        for v in VARIANTS:
            cells = []
            for rt in RUNTIMES:
                name = f"{m}/{v}/{rt}"
                med, sp = median(payload, name, "p50_ms"), spread(payload, name, "p50_ms")
                if med is None or sp is None or not base[rt]:
                    cells += ["-", "-"]
                    continue
                cells += [f"{med:.2f} [{sp[0]:.2f}-{sp[1]:.2f}]", f"{med / base[rt]:.2f}x"]
            g = {
                k: median(payload, f"{m}/{v}/ort-graph", k) for k in ("int_ops", "float_conv_gemm", "batchnorm", "qdq")
            }
            counts = [("-" if x is None else str(int(x))) for x in g.values()]
            label = f"**{v}**" if v == "edgecnn" else v
            lines.append(f"| {m} | {label} | " + " | ".join(cells + counts) + " |")
    return "\n".join(lines)


def readme_verdict(payload: dict[str, Any]) -> str:
    """The sentence beside the table, computed from it."""
    v = verdicts(payload)
    parts = []
    if v["fastest_or_noise"] and not v["not_fastest"]:
        parts.append(
            "edgecnn's output is the fastest INT8 variant or within noise of the fastest (its p50 range over "
            "the rounds overlaps the fastest's) for every model on both runtimes"
        )
    else:
        parts.append(
            "edgecnn's output is the fastest INT8 variant or within noise of it for "
            f"{', '.join(v['fastest_or_noise']) or 'no model/runtime'}, and NOT for {', '.join(v['not_fastest'])}"
        )
    if v["int8_not_slower"] and not v["int8_slower"]:
        parts.append("its INT8 is not slower than FP32 (median p50) for any of these models on either runtime")
    else:
        parts.append(f"its INT8 is slower than FP32 (median p50) for {', '.join(v['int8_slower'])}")
    return "; ".join(parts) + "."


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet18,mobilenetv2")
    ap.add_argument("--samples", type=int, default=64)
    common_args(ap)
    a = ap.parse_args()
    settings = settings_from(a)
    WORK.mkdir(parents=True, exist_ok=True)
    variants: list[Variant] = []
    graphs: list[Variant] = []
    for name in a.models.split(","):
        model = MODELS / f"{name}.onnx"
        if not model.exists():
            print(f"error: {model} not found; run: python benchmarks/build_models.py", file=sys.stderr)
            return 2
        print(f"writing the INT8 variants of {name} ...", file=sys.stderr, flush=True)
        paths = {
            "fp32": model,
            **ort_variants(model, WORK, a.samples, a.batch),
            **edgecnn_variants(model, WORK, a.samples, a.batch),
        }
        for v in VARIANTS:
            for rt in RUNTIMES:
                params = {"model": str(paths[v]), "runtime": rt, "model_name": name}
                variants.append(Variant(name=f"{name}/{v}/{rt}", fn=f"{NAME}:measure", params=params))
            params = {"model": str(paths[v]), "model_name": name}
            graphs.append(Variant(name=f"{name}/{v}/ort-graph", fn=f"{NAME}:ort_graph", params=params, rounds=1))
    payload = run_benchmark(
        NAME, [*variants, *graphs], settings, extra={"calibration_samples": a.samples}, results=a.results
    )
    print(readme_table(payload))
    print("\n" + readme_verdict(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
