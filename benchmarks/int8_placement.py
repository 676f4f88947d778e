#!/usr/bin/env python3
"""How should INT8 HardSwish/HardSigmoid run on ONNX Runtime? Three placements of the same calibration, measured.

    python benchmarks/int8_placement.py [--models mbv3-224,mbv3-block] [--samples 64] [--rounds 5] [--threads 2]

ONNX Runtime 1.32 has no QLinearHardSigmoid/QLinearHardSwish. For a MobileNetV3-style model (opset 10, so
HardSwish is written HardSigmoid·Mul) edgecnn writes, from one calibration (the same ranges for all):

  float-act   HardSigmoid in float between DequantizeLinear and QuantizeLinear (edgecnn's placement before
              this script; `--runtime ort-float-act`)
  lookup      a 256-entry table per activation: Cast(uint8 -> int32) + Gather on a constant table
              (`--runtime ort-lookup`)
  decompose   HardSigmoid(x) = Clip(alpha*x + beta, 0, 1) as one QLinearAdd (alpha folded into the input's
              DequantizeLinear scale, the Clip into the output Q's saturation); HardSwish adds a QLinearMul
              (`--runtime ort-decompose`)
  default     decompose, and the stem Conv on the image input stays float fused with its HardSwish
              (`--runtime ort`, the default)

and FP32. Every (variant) p50 runs in a fresh process through `benchmarks/runner.py` (>= 5 alternating rounds,
median and spread). Deterministic facts, measured once: what ORT executes after its graph optimizations (its
optimized model, counted: float HardSigmoid/HardSwish left, Transposes, Gathers, activation Q/DQ) and the
accuracy against FP32 on the evaluation images (output SQNR, top-1 agreement).

Models: `mbv3-224` (MobileNetV3-Small-style, 224x224, seeded weights, benchmarks/real_model_defs.py) and
`mbv3-block` (the fitted opset-10 block of tests/test_quantize_real.py), built by benchmarks/real_models.py.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import MODELS, ort_executed_graph
from runner import Variant, common_args, fmt_spread, latency, median, run_benchmark, settings_from, spread

NAME = "int8_placement"
PLACEMENTS = {"float-act": "ort-float-act", "lookup": "ort-lookup", "decompose": "ort-decompose", "default": "ort"}
WORK = MODELS / "real"


# ------------------------------------------------------------------ measured in the runner's children ---------
def measure(*, model: str, model_name: str, threads: int, batch: int) -> dict[str, Any]:
    return latency("ort", model, threads=threads, batch=batch, iterations=100)


def kernels(*, model: str, model_name: str, threads: int, batch: int, runs: int = 60) -> dict[str, Any]:
    """ORT's own profiler: the sum over nodes of each node's median kernel time (ms). Unlike a wall-clock p50 it
    leaves out the thread pool's waits, which dominate on a loaded machine."""
    import json
    import tempfile

    import numpy as np
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as t:
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.log_severity_level = 3
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(t) / "prof")
        s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        i = s.get_inputs()[0]
        x = np.random.default_rng(0).random([batch, *i.shape[1:]], dtype=np.float32)
        for _ in range(runs):
            s.run(None, {i.name: x})
        events = json.loads(Path(s.end_profiling()).read_text())
    per_node: dict[str, list[float]] = collections.defaultdict(list)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_node[e["name"]].append(e["dur"])
    warm = runs // 6
    return {"kernel_ms": sum(float(np.median(v[warm:])) for v in per_node.values()) / 1000}


def ort_graph(*, model: str, model_name: str, threads: int, batch: int) -> dict[str, Any]:
    """What ONNX Runtime executes after its optimizations (deterministic: counted once)."""
    g = ort_executed_graph(model, threads)
    ops = collections.Counter(n.op_type for n in g.node)
    inits = {i.name for i in g.initializer}
    act_qdq = sum(1 for n in g.node if n.op_type in ("QuantizeLinear", "DequantizeLinear") and n.input[0] not in inits)
    return {
        "float_hard_act": ops["HardSigmoid"] + ops["HardSwish"],
        "transpose": ops["Transpose"],
        "gather": ops["Gather"],
        "activation_qdq": act_qdq,
        "integer_ops": sum(v for k, v in ops.items() if k.startswith(("QLinear", "QGemm"))),
        "nodes": len(g.node),
    }


def accuracy(*, model: str, model_name: str, reference: str, data: str, n: int, threads: int, batch: int) -> dict:
    import numpy as np

    from edgecnn.preprocess import list_images, load_spec
    from edgecnn.runtimes import open_session

    spec = load_spec(Path(data) / "preprocess.toml")
    xs = [spec.load(p)[None] for p in list_images(Path(data))[:n]]
    ref_s, got_s = open_session("ort", reference, threads=threads), open_session("ort", model, threads=threads)
    name = ref_s.inputs()[0].name
    ref = np.concatenate([ref_s.run({name: x})[0] for x in xs]).astype(np.float64)
    got = np.concatenate([got_s.run({name: x})[0] for x in xs]).astype(np.float64)
    sqnr = 10 * np.log10(np.sum(ref**2) / max(np.sum((ref - got) ** 2), 1e-30))
    return {"sqnr_db": float(sqnr), "agreement_pct": float(100 * np.mean(ref.argmax(1) == got.argmax(1)))}


# ------------------------------------------------------------------ parent side --------------------------------
def write_variants(
    name: str, samples: int, placements: dict[str, str] = PLACEMENTS, prefix: str = "int8"
) -> dict[str, Path]:
    """FP32 plus the INT8 ``placements`` (variant -> ``--runtime``), from one calibration pass per placement
    (same images, same ranges), written as ``PREFIX-VARIANT.onnx`` beside the model."""
    import onnx

    from edgecnn.preprocess import load_spec
    from edgecnn.quantize.api import QuantizeConfig, quantize
    from edgecnn.quantize.dataset import ImageDataset
    from edgecnn.quantize.params import X86_CPU

    d = WORK / name
    fp32 = d / "model.onnx"
    ds = ImageDataset.open(d / "calib", load_spec(d / "calib" / "preprocess.toml"), samples)
    out = {"fp32": fp32}
    for v, runtime in placements.items():
        q, _ = quantize(fp32, ds, QuantizeConfig(runtime=runtime, scheme=X86_CPU))
        out[v] = d / f"{prefix}-{v}.onnx"
        onnx.save(q, str(out[v]))
    return out


def latency_cells(payload: dict[str, Any], m: str, v: str) -> list[str]:
    """Variant ``v`` of model ``m``: ORT p50 and ORT kernel time, each 'median [min-max]' and / FP32's median."""
    out = []
    for var, metric in (("ort", "p50_ms"), ("ort-kernels", "kernel_ms")):
        base, val = median(payload, f"{m}/fp32/{var}", metric), median(payload, f"{m}/{v}/{var}", metric)
        out += [fmt_spread(payload, f"{m}/{v}/{var}", metric), f"{val / base:.2f}x" if val and base else "-"]
    return out


def placement_cells(
    name: str, paths: dict[str, Path], eval_n: int, accuracy: str
) -> tuple[list[Variant], list[Variant]]:
    """The runner's cells for one model's ``paths`` (variant -> file): ORT p50 and kernel time (every round),
    what ORT executes and the accuracy (``accuracy``: "MODULE:fn", on ``eval_n`` images of the model's eval/),
    measured once."""
    variants: list[Variant] = []
    facts: list[Variant] = []
    for v, path in paths.items():
        p = {"model": str(path), "model_name": name}
        variants.append(Variant(name=f"{name}/{v}/ort", fn=f"{NAME}:measure", params=p))
        variants.append(Variant(name=f"{name}/{v}/ort-kernels", fn=f"{NAME}:kernels", params=p))
        facts.append(Variant(name=f"{name}/{v}/ort-graph", fn=f"{NAME}:ort_graph", params=p, rounds=1))
        acc = {**p, "reference": str(paths["fp32"]), "data": str(WORK / name / "eval"), "n": eval_n}
        facts.append(Variant(name=f"{name}/{v}/accuracy", fn=accuracy, params=acc, rounds=1))
    return variants, facts


def readme_table(payload: dict[str, Any]) -> str:
    rows = [
        "| model | variant | ORT p50 ms [min-max] | / FP32 | ORT kernel ms [min-max] | / FP32 | SQNR dB | agreement "
        "| float HardSigmoid left | Transposes | activation Q/DQ |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in payload["models"]:
        cells = []
        for v in ("fp32", *PLACEMENTS):
            cells.append((v, latency_cells(payload, m, v)))
        for v, cell in cells:
            g = {k: median(payload, f"{m}/{v}/ort-graph", k) for k in ("float_hard_act", "transpose", "activation_qdq")}
            acc = {k: median(payload, f"{m}/{v}/accuracy", k) for k in ("sqnr_db", "agreement_pct")}
            sq = f"{acc['sqnr_db']:.1f}" if acc["sqnr_db"] is not None else "-"
            ag = f"{acc['agreement_pct']:.1f}%" if acc["agreement_pct"] is not None else "-"
            cnt = [f"{int(x)}" if x is not None else "-" for x in g.values()]
            rows.append(f"| {m} | {v} | {' | '.join(cell)} | {sq} | {ag} | {' | '.join(cnt)} |")
    return "\n".join(rows)


def verdict(payload: dict[str, Any]) -> str:
    """Goal: the default placement's INT8 p50 below FP32's, with range overlap reported as noise."""
    parts = []
    for m in payload["models"]:
        base = median(payload, f"{m}/fp32/ort", "p50_ms")
        ours = median(payload, f"{m}/default/ort", "p50_ms")
        old = median(payload, f"{m}/float-act/ort", "p50_ms")
        if base is None or ours is None or old is None:
            parts.append(f"{m}: not measured")
            continue
        b_sp, o_sp = spread(payload, f"{m}/fp32/ort", "p50_ms"), spread(payload, f"{m}/default/ort", "p50_ms")
        overlap = b_sp is not None and o_sp is not None and o_sp[0] <= b_sp[1] and b_sp[0] <= o_sp[1]
        state = "goal met" if ours < base and not overlap else ("within noise" if overlap else "NOT met")
        kb, ko = (
            median(payload, f"{m}/fp32/ort-kernels", "kernel_ms"),
            median(payload, f"{m}/default/ort-kernels", "kernel_ms"),
        )
        kern = f", ORT kernel time {ko / kb:.2f}x FP32" if kb and ko else ""
        parts.append(
            f"{m}: edgecnn's default INT8 p50 is {ours / base:.2f}x FP32 on ORT ({state}{kern}; "
            f"the float-island placement: {old / base:.2f}x p50)"
        )
    return "; ".join(parts) + "."


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mbv3-224,mbv3-block")
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--eval", type=int, default=64, help="evaluation images for SQNR/agreement")
    common_args(ap)
    a = ap.parse_args()
    import real_models

    names = a.models.split(",")
    bad = [n for n in names if n not in ("mbv3-224", "mbv3-block")]
    if bad:
        print(f"error: --models {','.join(bad)}; valid: mbv3-224, mbv3-block", file=sys.stderr)
        return 2
    variants: list[Variant] = []
    facts: list[Variant] = []
    for name in names:
        real_models.build(name, 64, 64)
        print(f"writing the INT8 placements of {name} ...", file=sys.stderr, flush=True)
        cells, once = placement_cells(name, write_variants(name, a.samples), a.eval, f"{NAME}:accuracy")
        variants += cells
        facts += once
    payload = run_benchmark(
        NAME,
        [*variants, *facts],
        settings_from(a),
        extra={"models": names, "calibration_samples": a.samples, "placements": PLACEMENTS},
        results=a.results,
    )
    print(readme_table(payload))
    print("\n" + verdict(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
