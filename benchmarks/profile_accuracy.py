#!/usr/bin/env python3
"""Does `edgecnn profile` add up? Its per-layer p50s plus the runtime's fixed cost per call, against what
`edgecnn bench`'s worker measures for the same model, runtime and threads (goal: within 10%).

    python benchmarks/profile_accuracy.py [--rounds 5] [--threads 1] [--runs 100] [--blocks 3]

Through `benchmarks/runner.py`: each (model, runtime) in a fresh process, >= 5 alternating rounds. Inside a
process, `--blocks` blocks of `profile` and of bench's worker alternate (who goes first alternates too), and
each side's quietest block is its time: noise on a shared machine only adds time, and one block's median can
move 40-96 us on the ~50 us bundled model. Models: the bundled sample CNN on ONNX Runtime and OpenVINO and
its `.tflite` export on LiteRT, and ResNet-18 (`benchmarks/build_models.py`) the same way. The unit tests
(tests/test_profile.py, tests/test_profile_litert.py) hold the same sum to a wider band on the bundled model
only, wide enough for a loaded CI machine and narrow enough that unscaled kernel times (2x there) fail.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import MODELS, REPO
from runner import Variant, common_args, fmt_spread, median, run_benchmark, settings_from

NAME = "profile_accuracy"
GOAL = 0.10
RUNTIMES = ("ort", "openvino", "litert")
MODEL_FILES = {"sample_cnn": REPO / "models" / "sample_cnn.onnx", "resnet18": MODELS / "resnet18.onnx"}


def measure(*, model: str, runtime: str, runs: int, blocks: int, threads: int, batch: int, **_: Any) -> dict[str, Any]:
    """Alternating blocks of profile and bench in this process; each side's quietest block (us) and their ratio."""
    from edgecnn.bench.worker import measure as bench_measure
    from edgecnn.profile.core import profile_model

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(model)
        if runtime == "litert":
            from edgecnn.export.to_tflite import onnx_to_tflite
            from edgecnn.graph.load import load_model

            loaded = load_model(path)
            path = Path(tmp) / f"{path.stem}.tflite"
            path.write_bytes(onnx_to_tflite(loaded.model, base_dir=loaded.path.parent).data)
        cfg = {"model": str(path), "runtime": runtime, "threads": threads, "warmup": 20, "iterations": runs}
        cache = Path(tmp) / "ceilings"
        sides: dict[str, list[float]] = {"profile": [], "bench": []}
        scale = []
        for i in range(blocks):
            for side in ("profile", "bench") if i % 2 == 0 else ("bench", "profile"):
                if side == "bench":
                    res = bench_measure(cfg)
                    sides["bench"].append(statistics.median(res["samples_ns"]) / 1e3)
                else:
                    rep = profile_model(path, runtime, threads=threads, runs=runs, cache_dir=cache)
                    sides["profile"].append(rep.accounted_us)
                    scale.append(rep.scale)
    p, b = min(sides["profile"]), min(sides["bench"])
    return {"profile_us": p, "bench_us": b, "ratio": p / b, "scale": statistics.median(scale)}


def _variants(models: list[str], runs: int, blocks: int) -> list[Variant]:
    return [
        Variant(
            name=f"{m}/{rt}",
            fn=f"{NAME}:measure",
            params={"model": str(MODEL_FILES[m]), "runtime": rt, "runs": runs, "blocks": blocks},
        )
        for m in models
        for rt in RUNTIMES
    ]


def _ok(ratio: float | None) -> bool:
    return ratio is not None and abs(ratio - 1) <= GOAL


def readme_table(payload: dict[str, Any]) -> str:
    s, mach = payload["settings"], payload["machine"]
    lines = [
        f"Median over {s['rounds']} alternating rounds [min-max over the rounds], each a fresh process with "
        f"{payload['blocks']} alternating blocks of {payload['runs']} runs per side; {s['threads']} thread(s), "
        f"{mach['cpu_model']}.",
        "",
        "| model | runtime | profile: layers + fixed cost (us) | bench p50 (us) | ratio | kernel-time scale | "
        f"within {GOAL:.0%} |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in payload["variants"]:
        n = v["name"]
        m, rt = n.split("/")
        r = median(payload, n, "ratio")
        lines.append(
            f"| {m} | {rt} | {fmt_spread(payload, n, 'profile_us', '.1f')} | {fmt_spread(payload, n, 'bench_us', '.1f')}"
            f" | {fmt_spread(payload, n, 'ratio', '.3f')} | {fmt_spread(payload, n, 'scale', '.2f')} | "
            f"{'met' if _ok(r) else 'NOT met'} |"
        )
    return "\n".join(lines)


def readme_verdict(payload: dict[str, Any]) -> str:
    names = [v["name"] for v in payload["variants"]]
    missed = [n for n in names if not _ok(median(payload, n, "ratio"))]
    if not missed:
        return f"Goal within {GOAL:.0%}: met on all {len(names)} (model, runtime) pairs."
    return f"Goal within {GOAL:.0%}: met on {len(names) - len(missed)} of {len(names)}; not on {', '.join(missed)}."


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100, help="profiled runs and bench iterations per block")
    ap.add_argument("--blocks", type=int, default=3, help="alternating blocks per side in each process")
    ap.add_argument("--models", default=",".join(MODEL_FILES), help=f"comma-separated, of {', '.join(MODEL_FILES)}")
    common_args(ap, threads=1)
    a = ap.parse_args()
    models = [m for m in a.models.split(",") if m]
    bad = [m for m in models if m not in MODEL_FILES]
    if bad:
        print(f"error: --models {','.join(bad)}: expected some of {', '.join(MODEL_FILES)}", file=sys.stderr)
        return 2
    missing = [str(MODEL_FILES[m]) for m in models if not MODEL_FILES[m].is_file()]
    if missing:
        print(f"error: {', '.join(missing)}: missing; run python benchmarks/build_models.py", file=sys.stderr)
        return 2
    payload = run_benchmark(
        NAME,
        _variants(models, a.runs, a.blocks),
        settings_from(a),
        extra={"runs": a.runs, "blocks": a.blocks},
        results=a.results,
    )
    print(readme_table(payload))
    print(readme_verdict(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
