#!/usr/bin/env python3
"""edgecnn's harness vs OpenVINO's benchmark_app on the same model, threads and iteration count.

    python benchmarks/harness_vs_benchmark_app.py [--model benchmarks/models/resnet18.onnx] [--threads 2]
                                                  [--iterations 200] [--tiny-iterations 3000] [--rounds 5]

Through `benchmarks/runner.py`: each tool runs in a fresh process, >= 5 alternating rounds, median and
spread. Reports the ratio of edgecnn's p50 to benchmark_app's median (goal: within 5%) and the harness's
per-iteration overhead (goal: under 20 us), measured two ways:

* loop overhead: wall time of the timed loop / N minus the mean timed sample (cost outside the timed call);
* call overhead: p50 difference against benchmark_app on a trivial model, where inference is ~20 us and
  any Python cost inside the timed call (benchmark_app times in C++) is visible.

Both tools compile with PERFORMANCE_HINT=LATENCY, INFERENCE_NUM_THREADS=--threads and
INFERENCE_PRECISION_HINT=f32 (what edgecnn's adapter uses); the precision benchmark_app reports is recorded.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import MODELS, REPO
from runner import Variant, common_args, median, run_benchmark, settings_from, spread

NAME = "harness_vs_benchmark_app"
TOOLS = ("edgecnn", "benchmark_app")
_LINE = re.compile(r"^\[ INFO \]\s+(Median|Average|Min|Max):\s+([0-9.]+)\s+(ms|us)", re.M)
_PREC = re.compile(r"INFERENCE_PRECISION_HINT:\s*(\S+)")


def benchmark_app(*, model: str, threads: int, batch: int, iterations: int, **_: Any) -> dict[str, Any]:
    exe = shutil.which("benchmark_app", path=str(Path(sys.executable).parent)) or shutil.which("benchmark_app")
    if exe is None:
        raise SystemExit("benchmark_app not found; it ships with the openvino package (pip install openvino)")
    with tempfile.TemporaryDirectory(prefix="edgecnn-bapp-") as d:
        cfg = Path(d) / "cpu.json"
        # The same compile config the edgecnn OpenVINO adapter uses.
        cfg.write_text(json.dumps({"CPU": {
            "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": str(threads), "INFERENCE_PRECISION_HINT": "f32",
        }}))  # fmt: skip
        proc = subprocess.run(
            [exe, "-m", model, "-d", "CPU", "-hint", "latency", "-api", "sync", "-niter", str(iterations),
             "-b", str(batch), "-load_config", str(cfg)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark_app failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    vals = {k.lower(): float(v) / (1000.0 if unit == "us" else 1.0) for k, v, unit in _LINE.findall(proc.stdout)}
    prec = _PREC.search(proc.stdout)
    return {
        "p50_ms": vals["median"],
        "mean_ms": vals["average"],
        "min_ms": vals["min"],
        "max_ms": vals["max"],
        "openvino_precision": prec.group(1).lower() if prec else "?",
    }


def edgecnn(*, model: str, threads: int, batch: int, iterations: int, **_: Any) -> dict[str, Any]:
    from edgecnn.bench import run_bench

    # benchmark_app does one untimed first inference and no other warm-up: do the same.
    r = run_bench(Path(model), "openvino", threads=threads, warmup=0, iterations=iterations)
    s = r.stats
    return {
        "p50_ms": s.p50_ms,
        "mean_ms": s.mean_ms,
        "min_ms": s.min_ms,
        "max_ms": s.max_ms,
        "loop_us": r.loop_overhead_ns / 1e3,
        "openvino_precision": "f32",  # edgecnn's adapter passes INFERENCE_PRECISION_HINT=f32
    }


def tiny_model(folder: Path) -> Path:
    sys.path.insert(0, str(REPO / "tests"))
    from onnx_builders import save, small_cnn  # tests/onnx_builders.py

    folder.mkdir(parents=True, exist_ok=True)
    return save(small_cnn(), folder / "tiny_cnn.onnx")


def overheads(payload: dict[str, Any]) -> dict[str, float]:
    """p50 ratio on the real model, loop overhead and call overhead (us), from the medians."""
    names = payload["models"]
    big, tiny = names["model"], names["tiny"]
    ratio = median(payload, f"{big}/edgecnn", "p50_ms") / median(payload, f"{big}/benchmark_app", "p50_ms")
    loop_us = median(payload, f"{big}/edgecnn", "loop_us")
    call_us = (median(payload, f"{tiny}/edgecnn", "p50_ms") - median(payload, f"{tiny}/benchmark_app", "p50_ms")) * 1e3
    return {"p50_ratio": ratio, "loop_us": loop_us, "call_us": call_us, "total_us": loop_us + call_us}


def readme_table(payload: dict[str, Any]) -> str:
    s, mach = payload["settings"], payload["machine"]
    names = payload["models"]
    lines = [
        f"Median over {s['rounds']} alternating rounds, each tool in a fresh process [min-max over the rounds]; "
        f"{s['threads']} threads, batch {s['batch']}, OpenVINO {mach['versions']['openvino']} CPU (f32 hint for "
        f"both), {payload['iterations']['model']} iterations ({names['tiny']}: {payload['iterations']['tiny']}); "
        f"{mach['cpu_model']} ({mach['cores_logical']} cores).",
        "",
        "| model | metric (ms) | edgecnn | benchmark_app | ratio |",
        "|---|---|---|---|---|",
    ]
    for m in (names["model"], names["tiny"]):
        for k in ("p50", "mean", "min", "max"):
            e, b = median(payload, f"{m}/edgecnn", f"{k}_ms"), median(payload, f"{m}/benchmark_app", f"{k}_ms")
            se, sb = spread(payload, f"{m}/edgecnn", f"{k}_ms"), spread(payload, f"{m}/benchmark_app", f"{k}_ms")
            if e is None or b is None or se is None or sb is None:
                continue
            ratio = f"{e / b:.3f}"
            if k == "p50" and m == names["model"]:
                ratio = f"**{ratio}**"
            lines.append(
                f"| {m} | {k} | {e:.4f} [{se[0]:.4f}-{se[1]:.4f}] | {b:.4f} [{sb[0]:.4f}-{sb[1]:.4f}] | {ratio} |"
            )
    o = overheads(payload)
    lines += [
        "",
        f"p50 ratio {o['p50_ratio']:.3f} ({'within' if abs(o['p50_ratio'] - 1) <= 0.05 else 'OUTSIDE'} the 5% goal). "
        f"Per-iteration overhead: {o['loop_us']:.2f} us outside the timed call + {o['call_us']:.2f} us inside it "
        f"(the tiny model's p50 difference; benchmark_app times in C++) = {o['total_us']:.2f} us "
        f"({'under' if o['total_us'] < 20 else 'OVER'} the 20 us goal).",
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default = MODELS / "resnet18.onnx"
    ap.add_argument("--model", type=Path, default=default if default.exists() else REPO / "models" / "sample_cnn.onnx")
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--tiny-iterations", type=int, default=3000)
    common_args(ap)
    a = ap.parse_args()
    settings = settings_from(a)
    tiny = tiny_model(MODELS / "harness")
    variants = []
    for path, iters in ((a.model, a.iterations), (tiny, a.tiny_iterations)):
        for tool in TOOLS:
            params = {"model": str(path), "iterations": iters}
            variants.append(Variant(name=f"{path.stem}/{tool}", fn=f"{NAME}:{tool}", params=params))
    extra = {
        "models": {"model": a.model.stem, "tiny": tiny.stem},
        "iterations": {"model": a.iterations, "tiny": a.tiny_iterations},
    }
    payload = run_benchmark(NAME, variants, settings, extra=extra, results=a.results)
    print(readme_table(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
