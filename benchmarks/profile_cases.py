#!/usr/bin/env python3
"""Issue 15's YOLO cases, reproduced: does `edgecnn profile --compare` name the layers and the reason?

    python benchmarks/profile_cases.py [--calib 32] [--runs 40] [--rounds 5] [--threads 2]

The YOLOv8n-style detector at 320x320 of `benchmarks/real_model_defs.py` (built once by
`benchmarks/real_models.py`'s `build`, with its calibration images), quantized three ways by the same
functions `real_models.py` uses, then profiled with `profile --compare` (the API behind the CLI):

  a  edgecnn INT8 (ORT scheme) vs FP32, both on ONNX Runtime;
  b  edgecnn INT8 (OpenVINO scheme) vs FP32 on OpenVINO with its default precision (bf16 on AMX CPUs), which
     is what a user gets without options;
  c  ONNX Runtime's own quantize_static (QDQ, per-channel, after quant_pre_process) vs FP32 on ONNX Runtime.

Through `benchmarks/runner.py`: each (case, round) in a fresh process, >= 5 alternating rounds; every round
records the INT8/FP32 end-to-end ratio, the time of the layers that got slower, and the sentences (the last
round's are kept as facts). The README block renders the ratios and the sentences from the JSON.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import MODELS
from runner import Variant, common_args, median, run_benchmark, settings_from, spread

NAME = "profile_cases"
WORK = MODELS / "real" / "yolo320"
CASES = {
    "a": ("edgecnn INT8 vs FP32 on ONNX Runtime", "ort", "edgecnn", "f32"),
    "b": ("edgecnn INT8 vs FP32 on OpenVINO, default precision", "openvino", "edgecnn-ov", "default"),
    "c": ("ONNX Runtime quantize_static INT8 vs FP32 on ONNX Runtime", "ort", "ort", "f32"),
}


def case(*, base: str, other: str, runtime: str, ov_precision: str, runs: int, threads: int, batch: int) -> dict:
    """One `profile --compare` in this (fresh) process."""
    from edgecnn.profile.compare import compare_profiles
    from edgecnn.profile.core import profile_model

    kw = {"threads": threads, "runs": runs, "warmup": 5, "ov_precision": ov_precision, "roofline": False}
    a = profile_model(base, runtime, **kw)
    b = profile_model(other, runtime, **kw)
    cmp = compare_profiles(a, b)
    slower = sum(r.delta_us for r in cmp.rows if r.delta_us > 0)
    return {
        "fp32_p50_us": a.e2e_p50_us,
        "int8_p50_us": b.e2e_p50_us,
        "int8_over_fp32": b.e2e_p50_us / a.e2e_p50_us,
        "slower_layers_us": slower,
        "float_layers_in_int8": float(sum(1 for r in cmp.rows if r.other_precision in ("fp32", "bf16", "fp16"))),
        "fp32_precision": a.precision_used,
        "sentences": " | ".join(cmp.sentences),
    }


# file names the report speaks in (profile --compare names the models by their file stems)
NAMES = {"fp32": "yolo320_fp32", "edgecnn": "yolo320_edgecnn_int8_ort", "edgecnn-ov": "yolo320_edgecnn_int8_ov",
         "ort": "yolo320_ort_quantize_static_int8"}  # fmt: skip


def quantized(variant: str, calib_n: int) -> Path:
    """The INT8 model of ``variant`` (real_models.py's quantizers), made once, under its report name."""
    import shutil

    import real_models as rm

    made = WORK / "int8" / f"{variant}.onnx"
    if not made.exists():
        made.parent.mkdir(parents=True, exist_ok=True)
        rm.child_quantize(variant, WORK / "model.onnx", WORK / "calib", calib_n, made)
    out = WORK / "cases" / f"{NAMES[variant]}.onnx"
    if not out.exists() or out.stat().st_mtime < made.stat().st_mtime:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(made, out)
    return out


def readme_table(payload: dict[str, Any]) -> str:
    s, mach = payload["settings"], payload["machine"]
    la, lb = mach.get("loadavg_before") or [0.0], mach.get("loadavg_after") or [0.0]
    lines = [
        f"yolo320 (YOLOv8n-style, 320x320), {s['threads']} threads, {payload['runs']} profiled runs per model, median over "
        f"{s['rounds']} alternating rounds in fresh processes [min-max]; onnxruntime {mach['versions'].get('onnxruntime')}, "
        f"OpenVINO {mach['versions'].get('openvino')}; {mach['cpu_model']}; 1-min load average {la[0]:.1f} before, "
        f"{lb[0]:.1f} after.",
        "",
        "| case | runtime | FP32 ran in | FP32 p50 ms | INT8 p50 ms | INT8/FP32 | compute layers in float |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, (label, rt, _, _) in CASES.items():
        v = f"{key}/{rt}"
        r, sr = median(payload, v, "int8_over_fp32"), spread(payload, v, "int8_over_fp32")
        if r is None or sr is None:
            lines.append(f"| {key}: {label} | {rt} | - | - | - | failed | - |")
            continue
        facts = next(x.get("facts", {}) for x in payload["variants"] if x["name"] == v)
        lines.append(
            f"| {key}: {label} | {rt} | {facts.get('fp32_precision', '?')} | {median(payload, v, 'fp32_p50_us') / 1e3:.2f} | "
            f"{median(payload, v, 'int8_p50_us') / 1e3:.2f} | {r:.2f}x [{sr[0]:.2f}-{sr[1]:.2f}] | "
            f"{median(payload, v, 'float_layers_in_int8'):.0f} |"
        )
    return "\n".join(lines)


def readme_sentences(payload: dict[str, Any]) -> str:
    """What `profile --compare` said in each case (its last round), verbatim."""
    out = []
    for key, (label, rt, _, _) in CASES.items():
        v = next((x for x in payload["variants"] if x["name"] == f"{key}/{rt}"), {})
        last = [r for r in v.get("rounds", []) if r.get("status") == "ok"][-1:]
        said = [f"  - {t}" for t in str(last[0].get("sentences", "") if last else "").split(" | ") if t]
        out += [f"- **{key}: {label}**", *(said or ["  - (no result)"])]
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calib", type=int, default=32, help="calibration images for the quantizers")
    ap.add_argument("--runs", type=int, default=40, help="profiled runs per model")
    common_args(ap)
    a = ap.parse_args()
    settings = settings_from(a)
    import shutil

    import real_models as rm

    rm.build("yolo320", a.calib, 8)
    base = WORK / "cases" / f"{NAMES['fp32']}.onnx"
    base.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(WORK / "model.onnx", base)
    variants = []
    for key, (_, rt, qvariant, prec) in CASES.items():
        params = {"base": str(base), "other": str(quantized(qvariant, a.calib)), "runtime": rt, "ov_precision": prec,
                  "runs": a.runs}  # fmt: skip
        variants.append(Variant(name=f"{key}/{rt}", fn=f"{NAME}:case", params=params))
    payload = run_benchmark(NAME, variants, settings, extra={"runs": a.runs}, results=a.results)
    print(readme_table(payload))
    print()
    print(readme_sentences(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
