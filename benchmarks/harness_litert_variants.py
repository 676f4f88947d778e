"""Call-level timing study (not yet on benchmarks/runner.py): edgecnn's harness vs OpenVINO's benchmark_app and LiteRT's
litert-benchmark on the same model, threads and
iteration count.

Runs the two alternately (ABAB..., fresh process per run, >= 5 rounds) so that drift in machine load hits
both, and prints a table with the ratio of edgecnn's p50 to benchmark_app's median (goals: within 3% on
ResNet-18, within 10% on a tiny CNN), the spread of the per-round ratios, the timer's resolution, and the
harness's per-iteration overhead, measured two ways:

* loop overhead: wall time of the timed loop / N minus the mean timed sample (cost outside the timed call);
* call overhead: p50 difference against benchmark_app on a trivial model, where inference is ~20 us and
  any Python cost inside the timed call (benchmark_app times in C++) is visible.

LiteRT: the same model exported with edgecnn's converter (``onnx_to_tflite``), edgecnn's harness
(``Interpreter`` C++ ``Invoke``, inputs set once) against ``litert-benchmark`` from the ai-edge-litert wheel
(its CompiledModel ``run_by_name`` with buffers created once, timed in Python with ``perf_counter``). That
tool prints and writes milliseconds with two decimals: its p50 has a 10 us resolution, so on the tiny CNN the
ratio is coarse and the script says so.

``--variants`` also times, on the tiny CNN, each way of calling each runtime (fresh process per variant,
alternating rounds): what keeps only the inference call inside the timer.

The machine's load average is printed at the start and the end: on a shared machine it explains spreads.

    .venv/bin/python benchmarks/harness_vs_benchmark_app.py [--model benchmarks/models/resnet18.onnx] [--variants]
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


def litert_benchmark(model: Path, threads: int, iterations: int) -> dict[str, float]:
    exe = shutil.which("litert-benchmark", path=str(Path(sys.executable).parent)) or shutil.which("litert-benchmark")
    if exe is None:
        raise SystemExit("litert-benchmark not found; it ships with the ai-edge-litert package")
    with tempfile.TemporaryDirectory() as d:
        js = Path(d) / "r.json"
        proc = subprocess.run(
            [exe, "--model", str(model), "--num_runs", str(iterations), "--warmup_runs", "1",
             "--num_threads", str(threads), "--result_json", str(js)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if proc.returncode != 0 or not js.is_file():
            raise SystemExit(f"litert-benchmark failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        lat = json.loads(js.read_text())["latency"]
    return {"p50": lat["median_ms"], "mean": lat["avg_ms"], "min": lat["min_ms"], "max": lat["max_ms"]}


def edgecnn_litert(model: Path, threads: int, iterations: int) -> dict[str, float]:
    r = run_bench(model, "litert", threads=threads, warmup=1, iterations=iterations)
    s = r.stats
    return {"p50": s.p50_ms, "mean": s.mean_ms, "min": s.min_ms, "max": s.max_ms, "loop_us": r.loop_overhead_ns / 1e3}


def to_tflite(onnx_path: Path, folder: Path) -> Path:
    from edgecnn.export.to_tflite import onnx_to_tflite
    from edgecnn.graph.load import load_model

    loaded = load_model(onnx_path)
    out = folder / f"{onnx_path.stem}.tflite"
    out.write_bytes(onnx_to_tflite(loaded.model, base_dir=loaded.path.parent).data)
    return out


# -- ways of calling each runtime (--variants) -------------------------------------------------------------
VARIANTS = {
    "ort: InferenceSession.run(feeds)": "ort_run",
    "ort: run_with_iobinding (Python wrapper)": "ort_iobinding_py",
    "ort: C++ run_with_iobinding, bound OrtValues [edgecnn]": "ort_iobinding_cpp",
    "openvino: InferRequest.infer(feeds)": "ov_infer_feeds",
    "openvino: InferRequest.infer() preset tensors": "ov_infer_py",
    "openvino: C++ _infer, preset tensors [edgecnn]": "ov_infer_cpp",
    "openvino: start_async() + wait()": "ov_async",
    "litert: Interpreter.invoke()": "litert_invoke_py",
    "litert: C++ Invoke, tensors set once [edgecnn]": "litert_invoke_cpp",
}


def _variant_call(kind: str, onnx_path: Path, tflite_path: Path):  # -> zero-argument call
    import functools

    import numpy as np

    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    if kind.startswith("ort"):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        if kind == "ort_run":
            return lambda: sess.run(None, {name: x})
        b = sess.io_binding()
        b.bind_cpu_input(name, x)
        o = sess.get_outputs()[0]
        b.bind_ortvalue_output(o.name, ort.OrtValue.ortvalue_from_shape_and_type(o.shape, np.float32))
        if kind == "ort_iobinding_py":
            return functools.partial(sess.run_with_iobinding, b)
        call = functools.partial(sess._sess.run_with_iobinding, b._iobinding, None)
        call.keep = b  # type: ignore[attr-defined]  # the binding (and its output OrtValue) must outlive the loop
        return call
    if kind.startswith("ov"):
        import openvino as ov

        core = ov.Core()
        cm = core.compile_model(str(onnx_path), "CPU", {"INFERENCE_NUM_THREADS": "1", "PERFORMANCE_HINT": "LATENCY",
                                                        "INFERENCE_PRECISION_HINT": "f32"})  # fmt: skip
        req = cm.create_infer_request()
        if kind == "ov_infer_feeds":
            return lambda: req.infer({0: x})
        req.set_input_tensor(ov.Tensor(x, shared_memory=True))
        if kind == "ov_infer_py":
            return req.infer
        if kind == "ov_async":
            return lambda: (req.start_async(), req.wait())
        from openvino._pyopenvino import InferRequest as _Req

        return functools.partial(_Req.infer, req, {}, True, False)
    from ai_edge_litert import interpreter as litert

    it = litert.Interpreter(model_path=str(tflite_path), num_threads=1)
    it.allocate_tensors()
    d = it.get_input_details()[0]
    it.set_tensor(d["index"], x.transpose(0, 2, 3, 1).copy() if len(d["shape"]) == 4 and d["shape"][3] == 3 else x)
    return it.invoke if kind == "litert_invoke_py" else it._interpreter.Invoke


def _variant_worker(kind: str, onnx_path: Path, tflite_path: Path, iterations: int) -> None:
    import gc
    import time

    call = _variant_call(kind, onnx_path, tflite_path)
    for _ in range(200):
        call()
    pc = time.perf_counter_ns
    samples = [0] * iterations
    gc.disable()
    for i in range(iterations):
        t0 = pc()
        call()
        samples[i] = pc() - t0
    print(json.dumps({"p50_us": statistics.median(samples) / 1e3}))


def variants(onnx_path: Path, tflite_path: Path, iterations: int, rounds: int) -> dict[str, list[float]]:
    """Each variant in a fresh process, rounds alternating the order: p50 in microseconds per round."""
    out: dict[str, list[float]] = {k: [] for k in VARIANTS}
    names = list(VARIANTS)
    for i in range(rounds):
        for label in names if i % 2 == 0 else names[::-1]:
            proc = subprocess.run(
                [sys.executable, __file__, "--variant-worker", VARIANTS[label], str(onnx_path), str(tflite_path),
                 str(iterations)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            out[label].append(json.loads(proc.stdout.strip().splitlines()[-1])["p50_us"])
    return out


def timer_facts() -> dict[str, float]:
    """The same clock the worker reads (perf_counter_ns): smallest step and the cost of an empty timed call."""
    from edgecnn.bench.worker import timer_resolution

    return timer_resolution()


def compare(
    model: Path, threads: int, iterations: int, rounds: int, *, litert: bool = False
) -> dict[str, list[dict[str, float]]]:
    """Alternating rounds of edgecnn and the peer tool (benchmark_app, or litert-benchmark for a .tflite)."""
    ours, peer = (edgecnn_litert, litert_benchmark) if litert else (edgecnn, benchmark_app)
    runs: dict[str, list[dict[str, float]]] = {"edgecnn": [], "benchmark_app": []}
    for i in range(rounds):
        order = ("edgecnn", "benchmark_app") if i % 2 == 0 else ("benchmark_app", "edgecnn")
        for tool in order:
            fn = ours if tool == "edgecnn" else peer
            runs[tool].append(fn(model, threads, iterations))
    return runs


def tiny_model(folder: Path) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from onnx_builders import save, small_cnn  # tests/onnx_builders.py

    return save(small_cnn(), folder / "tiny_cnn.onnx")


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "--variant-worker":
        _variant_worker(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), int(sys.argv[5]))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default = ROOT / "benchmarks" / "models" / "resnet18.onnx"
    ap.add_argument("--model", type=Path, default=default if default.exists() else ROOT / "models" / "sample_cnn.onnx")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5, help="alternating runs of each tool (>= 5)")
    ap.add_argument("--tiny-iterations", type=int, default=3000)
    ap.add_argument("--no-litert", action="store_true", help="skip edgecnn vs litert-benchmark")
    ap.add_argument("--variants", action="store_true", help="time each way of calling each runtime (tiny CNN)")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()
    if args.rounds < 5:
        ap.error("--rounds must be at least 5 (alternating rounds are what make the ratio robust to load drift)")

    load_start = os.getloadavg()
    print(f"model {args.model.name}, OpenVINO CPU, {args.threads} thread(s), {args.iterations} iterations, "
          f"{args.rounds} alternating rounds per tool; load average at start {load_start[0]:.2f} "
          f"(1 min), {load_start[1]:.2f} (5 min) on {os.cpu_count()} cores")  # fmt: skip
    runs = compare(args.model, args.threads, args.iterations, args.rounds)
    lite: dict[str, dict[str, list[dict[str, float]]]] = {}
    var: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as d:
        tiny = tiny_model(Path(d))
        tiny_runs = compare(tiny, 1, args.tiny_iterations, args.rounds)
        tiny_tfl = to_tflite(tiny, Path(d))
        if not args.no_litert:
            big_tfl = to_tflite(args.model, Path(d))
            lite[args.model.stem] = compare(big_tfl, args.threads, args.iterations, args.rounds, litert=True)
            lite["tiny_cnn"] = compare(tiny_tfl, 1, args.tiny_iterations, args.rounds, litert=True)
        if args.variants:
            var = variants(tiny, tiny_tfl, args.tiny_iterations, args.rounds)
    load_end = os.getloadavg()

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
    if lite:
        print(
            f"\nLiteRT ({args.model.stem} and tiny_cnn exported with edgecnn's converter): edgecnn vs litert-benchmark"
        )
        print(f"{'model':<14}{'metric (ms)':<14}{'edgecnn':>12}{'litert-bench':>15}{'ratio':>9}")
        for name, rs in lite.items():
            for k in ("p50", "mean", "min", "max"):
                e, b = med(rs["edgecnn"], k), med(rs["benchmark_app"], k)
                print(f"{name:<14}{k:<14}{e:>12.4f}{b:>15.4f}{e / b if b else float('nan'):>9.3f}")
        for name, rs in lite.items():
            line = ratio_line(name, rs, 0.03 if name != "tiny_cnn" else 0.10)
            print(line.replace("benchmark_app", "litert-benchmark"))
        print("litert-benchmark reports ms with 2 decimals (10 us steps): on tiny_cnn its p50 is that coarse.")
    if var:
        print(f"\nWays of calling each runtime on tiny_cnn (1 thread, {args.tiny_iterations} iterations, fresh "
              f"process per variant, {args.rounds} alternating rounds): p50 us, median (min-max over rounds)")  # fmt: skip
        for label, vals in var.items():
            print(f"  {label:<58}{statistics.median(vals):>8.2f}  ({min(vals):.2f}-{max(vals):.2f})")
    print(f"\nload average at end: {load_end[0]:.2f} (1 min), {load_end[1]:.2f} (5 min), {load_end[2]:.2f} (15 min)")
    if args.json:
        from edgecnn.fsutil import atomic_write_text

        payload = {"schema_version": 1, "kind": "harness_vs_peer", "load_start": load_start, "load_end": load_end,
                   "openvino": {args.model.stem: runs, "tiny_cnn": tiny_runs}, "litert": lite, "variants_p50_us": var,
                   "timer": t}  # fmt: skip
        atomic_write_text(args.json, json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
