#!/usr/bin/env python3
"""edgecnn's harness vs OpenVINO's benchmark_app on the same model, threads and iteration count.

    python benchmarks/harness_vs_benchmark_app.py [--model benchmarks/models/resnet18.onnx] [--threads 2]
                                                  [--iterations 200] [--tiny-iterations 3000] [--rounds 5]

Through `benchmarks/runner.py`: each tool runs in a fresh process, >= 5 alternating rounds, median and
spread. Reports the ratio of edgecnn's p50 to benchmark_app's median, with its
per-round spread, against issue 15's goals: p50 within 3% on ResNet-18 and within 10% on a tiny CNN (where
inference is ~20 us and any cost inside the timed call shows). edgecnn's samples come from the clock `bench`
uses for OpenVINO -- the infer request's own C++ clock, read after each call -- and the same calls timed with
Python's perf_counter_ns are kept beside them, so the Python->C++ call cost stays visible. Nothing is subtracted.

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
from common import MODELS, REPO, tiny_model, vs_peer_rows
from runner import Variant, common_args, median, run_benchmark, settings_from

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
        # perf_counter_ns around the same calls: what a Python clock would have reported
        "wall_p50_ms": r.wall_p50_ns / 1e6 if r.clock == "runtime" else s.p50_ms,
        "loop_us": r.loop_overhead_ns / 1e3,
        "clock": r.clock,
        "clock_name": r.clock_name or "Python time.perf_counter_ns",
        "clock_resolution_ns": r.clock_resolution_ns,
        "openvino_precision": "f32",  # edgecnn's adapter passes INFERENCE_PRECISION_HINT=f32
    }


GOALS = {"model": 0.03, "tiny": 0.10}  # issue 15: p50 within 3% on ResNet-18, within 10% on the tiny CNN


def round_ratios(payload: dict[str, Any], model: str, metric: str = "p50_ms") -> list[float]:
    """edgecnn / benchmark_app per round (both ran in the same alternating round)."""
    by = {v["name"]: {r["round"]: r for r in v["rounds"] if r.get("status") == "ok"} for v in payload["variants"]}
    e, b = by.get(f"{model}/edgecnn", {}), by.get(f"{model}/benchmark_app", {})
    return [e[k][metric] / b[k]["p50_ms"] for k in sorted(set(e) & set(b)) if metric in e[k]]


def overheads(payload: dict[str, Any]) -> dict[str, float]:
    """p50 ratios (edgecnn's clock, and perf_counter around the same call) and the loop cost, from the medians."""
    names = payload["models"]
    out: dict[str, float] = {}
    for key in ("model", "tiny"):
        m = names[key]
        b = median(payload, f"{m}/benchmark_app", "p50_ms")
        out[f"{key}_ratio"] = median(payload, f"{m}/edgecnn", "p50_ms") / b
        wall = median(payload, f"{m}/edgecnn", "wall_p50_ms")
        out[f"{key}_wall_ratio"] = (wall / b) if wall is not None else float("nan")
        out[f"{key}_call_us"] = ((wall or 0.0) - median(payload, f"{m}/edgecnn", "p50_ms")) * 1e3
    out["loop_us"] = median(payload, f"{names['model']}/edgecnn", "loop_us")
    return out


def readme_table(payload: dict[str, Any]) -> str:
    s, mach = payload["settings"], payload["machine"]
    names = payload["models"]
    la, lb = mach.get("loadavg_before") or [], mach.get("loadavg_after") or []
    lines = [
        f"Median over {s['rounds']} alternating rounds, each tool in a fresh process [min-max over the rounds]; "
        f"{s['threads']} threads, batch {s['batch']}, OpenVINO {mach['versions']['openvino']} CPU (f32 hint for "
        f"both), {payload['iterations']['model']} iterations ({names['tiny']}: {payload['iterations']['tiny']}); "
        f"{mach['cpu_model']} ({mach['cores_logical']} cores)"
        + (f"; 1-min load average {la[0]:.1f} before, {lb[0]:.1f} after." if la and lb else "."),
        "",
        "| model | metric (ms) | edgecnn | benchmark_app | ratio |",
        "|---|---|---|---|---|",
    ]
    lines += vs_peer_rows(payload, [names["model"], names["tiny"]], "benchmark_app", peer_digits=4, bold_p50=True)
    o = overheads(payload)
    facts = next((v.get("facts", {}) for v in payload["variants"] if v["name"].endswith("/edgecnn")), {})
    lines += ["", readme_verdict(payload, o, facts)]
    return "\n".join(lines)


def readme_verdict(payload: dict[str, Any], o: dict[str, float], facts: dict[str, Any]) -> str:
    names = payload["models"]
    parts = []
    for key in ("model", "tiny"):
        m, goal, r = names[key], GOALS[key], o[f"{key}_ratio"]
        rr = round_ratios(payload, m)
        met = abs(r - 1) <= goal
        parts.append(
            f"{m}: p50 ratio {r:.3f} (per round {min(rr):.3f}-{max(rr):.3f}), goal within {goal:.0%}: "
            f"{'met' if met else 'NOT met'}"
        )
    clock = facts.get("clock", "perf_counter")
    how = (
        f"edgecnn's samples are the runtime clock (C++): {facts.get('clock_name', '')}, resolution "
        f"{median(payload, names['tiny'] + '/edgecnn', 'clock_resolution_ns') or 0:.0f} ns, read after each call"
        if clock == "runtime"
        else "edgecnn's samples are Python's perf_counter_ns around the call"
    )
    wall = (
        f" Python perf_counter_ns around the same calls gives p50 ratios {o['model_wall_ratio']:.3f} and "
        f"{o['tiny_wall_ratio']:.3f} ({o['tiny_call_us']:.2f} us per call on {names['tiny']}: the Python->C++ call "
        "and GIL hand-over, outside the runtime's clock)."
        if clock == "runtime"
        else ""
    )
    return "; ".join(parts) + f". {how}.{wall} Loop cost outside the clock: {o['loop_us']:.2f} us per iteration."


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
