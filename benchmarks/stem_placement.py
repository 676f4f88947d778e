#!/usr/bin/env python3
"""Should a YOLO stem (Conv on the image input + SiLU) run in INT8 or float on ONNX Runtime? Both, measured.

    python benchmarks/stem_placement.py [--models yolo320,det-block] [--samples 64] [--rounds 5] [--threads 2]

The first Conv of a detector reads the 3-channel image. In INT8 on ONNX Runtime 1.32 it is a QLinearConv with
K = 3 * 3 * 3 (a poor fit for the int8 GEMM), then QLinearSigmoid + QLinearMul for its SiLU, on the largest
activation of the model. In float, ORT runs it as an NCHWc Conv and fuses the SiLU into one QuickGelu kernel,
and one QuantizeLinear follows. From one calibration (the same images, the same method) edgecnn writes:

  int-stem   the stem Conv and its SiLU in integer like every other layer (`--runtime ort-int-silu-stem`,
             edgecnn's placement before this script)
  default    the stem Conv and its SiLU kept float, the first Q after them (`--runtime ort`, the default)

and FP32. Every p50 (100 timed runs, inputs bound once) and every ORT kernel-time sum (ORT's own profiler,
which leaves out the thread pool's waits) runs in a fresh process through `benchmarks/runner.py`, >= 5
alternating rounds, median and spread. Measured once: the output SQNR against FP32 on the evaluation images,
per output (a detector's box and class heads), and what ORT executes (integer ops, Transposes, activation Q/DQ).

Models: `yolo320` (YOLOv8n widths at 320x320, seeded weights, benchmarks/real_model_defs.py) and `det-block`
(the fitted SiLU/Split/Concat detector block of tests/test_quantize_real.py), built by benchmarks/real_models.py.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from int8_placement import latency_cells, placement_cells, write_variants
from runner import Variant, common_args, median, pick_names, run_benchmark, settings_from, variant_of

NAME = "stem_placement"
PLACEMENTS = {"int-stem": "ort-int-silu-stem", "default": "ort"}
MODEL_NAMES = ("yolo320", "det-block")


def accuracy(*, model: str, model_name: str, reference: str, data: str, n: int, threads: int, batch: int) -> dict:
    """Output SQNR (dB) against the FP32 model, per output, over ``n`` evaluation images."""
    import numpy as np

    from edgecnn.preprocess import list_images, load_spec
    from edgecnn.runtimes import open_session

    spec = load_spec(Path(data) / "preprocess.toml")
    xs = [spec.load(p)[None] for p in list_images(Path(data))[:n]]
    ref_s, got_s = open_session("ort", reference, threads=threads), open_session("ort", model, threads=threads)
    name = ref_s.inputs()[0].name
    refs, gots = zip(*[(ref_s.run({name: x}), got_s.run({name: x})) for x in xs], strict=True)
    out: dict[str, Any] = {}
    for k in range(len(refs[0])):
        r = np.concatenate([o[k] for o in refs]).astype(np.float64)
        g = np.concatenate([o[k] for o in gots]).astype(np.float64)
        out[f"sqnr_db_{k}"] = float(10 * np.log10(np.sum(r**2) / max(np.sum((r - g) ** 2), 1e-30)))
    out["outputs"] = len(refs[0])
    return out


def readme_table(payload: dict[str, Any]) -> str:
    rows = [
        "| model | variant | ORT p50 ms [min-max] | / FP32 | ORT kernel ms [min-max] | / FP32 | output SQNR dB "
        "| integer ops | Transposes | activation Q/DQ |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in payload["models"]:
        for v in ("fp32", *PLACEMENTS):
            cells = latency_cells(payload, m, v)
            n = median(payload, f"{m}/{v}/accuracy", "outputs")
            sq = [median(payload, f"{m}/{v}/accuracy", f"sqnr_db_{k}") for k in range(int(n or 0))]
            cells.append(" / ".join(f"{x:.1f}" for x in sq if x is not None) if v != "fp32" and sq else "-")
            g = [median(payload, f"{m}/{v}/ort-graph", k) for k in ("integer_ops", "transpose", "activation_qdq")]
            cells += [f"{int(x)}" if x is not None else "-" for x in g]
            rows.append(f"| {m} | {v} | {' | '.join(cells)} |")
    return "\n".join(rows)


def _rounds(payload: dict[str, Any], variant: str, metric: str) -> list[float]:
    return [float(r[metric]) for r in variant_of(payload, variant).get("rounds", []) if metric in r]


def verdict(payload: dict[str, Any]) -> str:
    """The default (float stem) against the integer stem, round by round (the rounds alternate, so each pair ran
    close in time): the median of the per-round ratios, their range, and edgecnn bench's rule for "faster"
    (edgecnn.bench.stats.rounds_verdict: beyond 5% and every round on the same side)."""
    from edgecnn.bench.stats import round_ratios, rounds_verdict

    said = {"faster": "faster", "slower": "SLOWER", "same": "the same within 5%", "disagree": "the rounds disagree"}
    parts = []
    for m in payload["models"]:
        words = []
        for var, metric, what in (("ort", "p50_ms", "p50"), ("ort-kernels", "kernel_ms", "ORT kernel time")):
            r = round_ratios(
                _rounds(payload, f"{m}/int-stem/{var}", metric), _rounds(payload, f"{m}/default/{var}", metric)
            )
            if not r:
                words.append(f"{what} not measured")
                continue
            mid = statistics.median(r)
            words.append(
                f"{what} {1 / mid:.2f}x the integer stem's (per round {1 / max(r):.2f}-{1 / min(r):.2f}x: "
                f"{said[rounds_verdict(mid, r)]})"
            )
        n = int(median(payload, f"{m}/default/accuracy", "outputs") or 0)
        d = [
            (median(payload, f"{m}/default/accuracy", f"sqnr_db_{k}") or 0.0)
            - (median(payload, f"{m}/int-stem/accuracy", f"sqnr_db_{k}") or 0.0)
            for k in range(n)
        ]
        words.append("output SQNR " + " / ".join(f"{x:+.1f}" for x in d) + " dB")
        parts.append(f"{m}: the float SiLU stem's " + ", ".join(words))
    return "; ".join(parts) + "."


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODEL_NAMES))
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--eval", type=int, default=64, help="evaluation images for the output SQNR")
    common_args(ap)
    a = ap.parse_args()
    import real_models

    names = pick_names("--models", a.models, MODEL_NAMES)
    if names is None:
        return 2
    variants: list[Variant] = []
    facts: list[Variant] = []
    for name in names:
        real_models.build(name, 64, 64)
        print(f"writing the INT8 stem placements of {name} ...", file=sys.stderr, flush=True)
        paths = write_variants(name, a.samples, PLACEMENTS, prefix="int8-stem")
        cells, once = placement_cells(name, paths, a.eval, f"{NAME}:accuracy")
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
