"""edgecnn's harness vs OpenVINO's benchmark_app on the same model, threads and iteration count.

Runs the two alternately (ABAB..., fresh process per run, >= 5 rounds) so that drift in machine load hits
both, and prints a table with the ratio of edgecnn's p50 to benchmark_app's median (goals: within 3% on
ResNet-18, within 10% on a tiny CNN), the spread of the per-round ratios, the timer's resolution, and the
harness's per-iteration overhead, measured two ways:

* loop overhead: wall time of the timed loop / N minus the mean timed sample (cost outside the timed call);
* call overhead: p50 difference against benchmark_app on a trivial model, where inference is ~20 us and
  any Python cost inside the timed call (benchmark_app times in C++) is visible.

    .venv/bin/python benchmarks/harness_vs_benchmark_app.py [--model benchmarks/models/resnet18.onnx]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgecnn.bench import run_bench  # noqa: E402

_LINE = re.compile(r"^\[ INFO \]\s+(Median|Average|Min|Max):\s+([0-9.]+)\s+(ms|us)", re.M)


def benchmark_app(model: Path, threads: int, iterations: int) -> dict[str, float]:
    exe = shutil.which("benchmark_app", path=str(Path(sys.executable).parent)) or shutil.which("benchmark_app")
    if exe is None:
        raise SystemExit("benchmark_app not found; it ships with the openvino package (pip install openvino)")
    with tempfile.TemporaryDirectory() as d:
        cfg = Path(d) / "cpu.json"
        # The same compile config the edgecnn OpenVINO adapter uses.
        cfg.write_text(json.dumps({"CPU": {
            "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": str(threads), "INFERENCE_PRECISION_HINT": "f32",
        }}))  # fmt: skip
        proc = subprocess.run(
            [exe, "-m", str(model), "-d", "CPU", "-hint", "latency", "-api", "sync", "-niter", str(iterations),
             "-load_config", str(cfg)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"benchmark_app failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    vals = {k.lower(): float(v) / (1000.0 if unit == "us" else 1.0) for k, v, unit in _LINE.findall(proc.stdout)}
    return {"p50": vals["median"], "mean": vals["average"], "min": vals["min"], "max": vals["max"]}


def edgecnn(model: Path, threads: int, iterations: int) -> dict[str, float]:
    # benchmark_app does one untimed first inference and no other warm-up: do the same.
    r = run_bench(model, "openvino", threads=threads, warmup=0, iterations=iterations)
    s = r.stats
    return {"p50": s.p50_ms, "mean": s.mean_ms, "min": s.min_ms, "max": s.max_ms, "loop_us": r.loop_overhead_ns / 1e3}


def timer_facts() -> dict[str, float]:
    """The same clock the worker reads (perf_counter_ns): smallest step and the cost of an empty timed call."""
    from edgecnn.bench.worker import timer_resolution

    return timer_resolution()


def compare(model: Path, threads: int, iterations: int, rounds: int) -> dict[str, list[dict[str, float]]]:
    runs: dict[str, list[dict[str, float]]] = {"edgecnn": [], "benchmark_app": []}
    for i in range(rounds):
        order = ("edgecnn", "benchmark_app") if i % 2 == 0 else ("benchmark_app", "edgecnn")
        for tool in order:
            fn = edgecnn if tool == "edgecnn" else benchmark_app
            runs[tool].append(fn(model, threads, iterations))
    return runs


def tiny_model(folder: Path) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from onnx_builders import save, small_cnn  # tests/onnx_builders.py

    return save(small_cnn(), folder / "tiny_cnn.onnx")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default = ROOT / "benchmarks" / "models" / "resnet18.onnx"
    ap.add_argument("--model", type=Path, default=default if default.exists() else ROOT / "models" / "sample_cnn.onnx")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5, help="alternating runs of each tool (>= 5)")
    ap.add_argument("--tiny-iterations", type=int, default=3000)
    args = ap.parse_args()
    if args.rounds < 5:
        ap.error("--rounds must be at least 5 (alternating rounds are what make the ratio robust to load drift)")

    print(f"model {args.model.name}, OpenVINO CPU, {args.threads} thread(s), {args.iterations} iterations, "
          f"{args.rounds} alternating rounds per tool")  # fmt: skip
    runs = compare(args.model, args.threads, args.iterations, args.rounds)
    with tempfile.TemporaryDirectory() as d:
        tiny = tiny_model(Path(d))
        tiny_runs = compare(tiny, 1, args.tiny_iterations, args.rounds)

    def med(rs: list[dict[str, float]], k: str) -> float:
        return statistics.median(r[k] for r in rs)

    print(f"\n{'model':<14}{'metric (ms)':<14}{'edgecnn':>12}{'benchmark_app':>15}{'ratio':>9}")
    for name, rs in ((args.model.stem, runs), ("tiny_cnn", tiny_runs)):
        for k in ("p50", "mean", "min", "max"):
            e, b = med(rs["edgecnn"], k), med(rs["benchmark_app"], k)
            print(f"{name:<14}{k:<14}{e:>12.4f}{b:>15.4f}{e / b:>9.3f}")

    def ratio_line(name: str, rs: dict[str, list[dict[str, float]]], goal: float) -> str:
        ratio = med(rs["edgecnn"], "p50") / med(rs["benchmark_app"], "p50")
        per = [e["p50"] / b["p50"] for e, b in zip(rs["edgecnn"], rs["benchmark_app"], strict=True)]
        verdict = "OK" if abs(ratio - 1) <= goal else "OVER"
        return (
            f"p50 ratio edgecnn/benchmark_app on {name}: {ratio:.3f} (rounds {min(per):.3f}-{max(per):.3f}: "
            f"{', '.join(f'{x:.3f}' for x in per)}) -> {verdict} (goal within {goal:.0%})"
        )

    print()
    print(ratio_line(args.model.stem, runs, 0.03))
    print(ratio_line("tiny_cnn", tiny_runs, 0.10))
    call_us = (med(tiny_runs["edgecnn"], "p50") - med(tiny_runs["benchmark_app"], "p50")) * 1e3
    loop_us = med(runs["edgecnn"], "loop_us")
    t = timer_facts()
    print(f"per-iteration harness overhead: {loop_us:.2f} us outside the timed call + {call_us:.2f} us inside it "
          f"(tiny-model p50 difference) = {loop_us + call_us:.2f} us")  # fmt: skip
    print(f"timer: perf_counter_ns, smallest step {t['timer_resolution_ns']:.0f} ns, empty timed call "
          f"{t['timer_empty_call_ns']:.0f} ns (declared resolution {t['timer_declared_resolution_ns']:.0f} ns)")  # fmt: skip


if __name__ == "__main__":
    main()
