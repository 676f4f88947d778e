#!/usr/bin/env python3
"""Is FP16 faster than FP32 here? edgecnn's FP16 model against the float model on the CPU runtimes.

    python benchmarks/fp16_speed.py [--models resnet18,mobilenetv2] [--threads 2] [--rounds 5]

Writes the FP16 model with edgecnn (`quantize --precision fp16`: float16 weights and compute, float32 inputs
and outputs, a block list kept in float32) once, then measures through `benchmarks/runner.py`: every
(model, precision, runtime) p50 in a fresh process, >= 5 alternating rounds, median and spread.
Runtimes:
  ort               ONNX Runtime CPU EP
  openvino          OpenVINO CPU with INFERENCE_PRECISION_HINT=f32, as edgecnn's adapter compiles it
  openvino-default  OpenVINO CPU with its own default hint (bf16 on CPUs with AMX, f32 elsewhere)
The precision each OpenVINO run actually used (the compiled model's INFERENCE_PRECISION_HINT) is recorded.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import MODELS
from runner import Variant, common_args, latency, median, model_names, run_benchmark, settings_from, spread

NAME = "fp16_speed"
RUNTIMES = ("ort", "openvino", "openvino-default")
PRECISIONS = ("fp32", "fp16")
WORK = MODELS / "fp16_speed"


def write_fp16(model: Path) -> Path:
    import onnx

    from edgecnn.quantize.api import Precision, QuantizeConfig, quantize

    q, _ = quantize(model, None, QuantizeConfig(precision=Precision.FP16))
    out = WORK / f"{model.stem}.fp16.onnx"
    onnx.save(q, str(out))
    return out


def measure(*, model: str, runtime: str, threads: int, batch: int, iterations: int = 100, **_: Any) -> dict[str, Any]:
    warmup = max(3, iterations // 7)
    if runtime == "openvino-default":
        return latency(
            "openvino", model, threads=threads, batch=batch, iterations=iterations, warmup=warmup, openvino_hint=None
        )
    return latency(runtime, model, threads=threads, batch=batch, iterations=iterations, warmup=warmup)


def readme_table(payload: dict[str, Any]) -> str:
    s, mach = payload["settings"], payload["machine"]
    lines = [
        f"p50 in ms: median over {s['rounds']} alternating rounds, each a fresh process of {payload['iterations']} timed runs "
        f"[min-max over the rounds]; {s['threads']} threads, batch {s['batch']}; {mach['cpu_model']} "
        f"({mach['cores_logical']} cores; {mach['cpu_flags']}), ORT {mach['versions']['onnxruntime']}, "
        f"OpenVINO {mach['versions']['openvino']}. `fp16 / fp32` is the ratio of the medians (> 1: FP16 slower). "
        "`OpenVINO ran in` is the compiled model's INFERENCE_PRECISION_HINT."
        f" Load average {mach['loadavg_before'][0]:.1f} before, {mach['loadavg_after'][0]:.1f} after (a shared machine).",
        "",
        "| model | runtime | OpenVINO ran in | p50 FP32 ms | p50 FP16 ms | fp16 / fp32 |",
        "|---|---|---|---|---|---|",
    ]
    for m in model_names(payload):
        for rt in RUNTIMES:
            cells, meds = [], {}
            for p in PRECISIONS:
                name = f"{m}/{p}/{rt}"
                meds[p], sp = median(payload, name, "p50_ms"), spread(payload, name, "p50_ms")
                cells.append("-" if meds[p] is None or sp is None else f"{meds[p]:.2f} [{sp[0]:.2f}-{sp[1]:.2f}]")
            ratio = "-" if not meds["fp32"] or meds["fp16"] is None else f"{meds['fp16'] / meds['fp32']:.2f}x"
            ran = "-"
            if rt != "ort":
                facts = [
                    str(v["facts"].get("openvino_precision"))
                    for v in payload["variants"]
                    if v["name"] in (f"{m}/fp32/{rt}", f"{m}/fp16/{rt}")
                ]
                ran = " / ".join(dict.fromkeys(facts))
            lines.append(f"| {m} | {rt} | {ran} | {cells[0]} | {cells[1]} | {ratio} |")
    return "\n".join(lines)


def readme_verdict(payload: dict[str, Any]) -> str:
    """Where FP16 is faster or slower than FP32 beyond noise (the [min, max] ranges over the rounds do not overlap)."""
    faster, slower, same = [], [], []
    for m in model_names(payload):
        for rt in RUNTIMES:
            a, b = f"{m}/fp32/{rt}", f"{m}/fp16/{rt}"
            sa, sb = spread(payload, a, "p50_ms"), spread(payload, b, "p50_ms")
            ma, mb = median(payload, a, "p50_ms"), median(payload, b, "p50_ms")
            if sa is None or sb is None or ma is None or mb is None:
                continue
            label = f"{m} on {rt} ({mb / ma:.2f}x)"
            (faster if sb[1] < sa[0] else slower if sb[0] > sa[1] else same).append(label)
    parts = [
        f"FP16 faster than FP32 beyond noise: {', '.join(faster) if faster else 'none'}",
        f"slower beyond noise: {', '.join(slower) if slower else 'none'}",
        f"within noise: {', '.join(same) if same else 'none'}",
    ]
    return "; ".join(parts) + "."


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet18,mobilenetv2")
    ap.add_argument("--iterations", type=int, default=100, help="timed runs per measurement")
    common_args(ap)
    a = ap.parse_args()
    settings = settings_from(a)
    WORK.mkdir(parents=True, exist_ok=True)
    variants: list[Variant] = []
    for name in a.models.split(","):
        model = MODELS / f"{name}.onnx"
        if not model.exists():
            print(f"error: {model} not found; run: python benchmarks/build_models.py", file=sys.stderr)
            return 2
        paths = {"fp32": model, "fp16": write_fp16(model)}
        for p in PRECISIONS:
            for rt in RUNTIMES:
                params = {"model": str(paths[p]), "runtime": rt, "model_name": name, "iterations": a.iterations}
                variants.append(Variant(name=f"{name}/{p}/{rt}", fn=f"{NAME}:measure", params=params))
    payload = run_benchmark(NAME, variants, settings, extra={"iterations": a.iterations}, results=a.results)
    print(readme_table(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
