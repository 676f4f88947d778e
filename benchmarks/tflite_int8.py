#!/usr/bin/env python3
"""Does edgecnn's INT8 TFLite run faster than its FP32 TFLite on LiteRT (XNNPACK)? Goal: INT8 <= 0.6x FP32 p50.

    python benchmarks/tflite_int8.py [--models resnet18,mobilenetv2] [--threads 2] [--rounds 5] [--runs 30]
                                     [--samples 32] [--json out.json]

For each model (benchmarks/build_models.py, 1x3x224x224): the float ONNX becomes a float32 TFLite file, and
edgecnn's QDQ model (``quantize``, minmax, the first --samples bundled images through
benchmarks/preprocess_224.toml) becomes an INT8 TFLite file, both through ``onnx_to_tflite``. Latency:
each variant runs in a fresh child process (LiteRT interpreter, XNNPACK, --threads), rounds alternate
the order of the variants, each child does 5 warm-up runs then --runs timed runs; the table shows the
median of all samples, the spread (p10..p90) and INT8/FP32. Each conversion also runs in its own child
process: wall time of the ``onnx_to_tflite`` call and the child's peak RSS (VmHWM, imports included).
A quick check; the README benchmark against onnx2tf lives in benchmarks/export.py.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CALIB, MODELS, REPO, SPEC

CHILD = r"""
import json, sys, time
import numpy as np
from ai_edge_litert.interpreter import Interpreter
path, threads, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
it = Interpreter(model_path=path, num_threads=threads)
it.allocate_tensors()
d = it.get_input_details()[0]
x = np.random.default_rng(0).standard_normal(d["shape"]).astype(d["dtype"])
it.set_tensor(d["index"], x)
for _ in range(5):
    it.invoke()
out = []
for _ in range(runs):
    t = time.perf_counter_ns()
    it.invoke()
    out.append((time.perf_counter_ns() - t) / 1e6)
print(json.dumps(out))
"""


CONVERT = r"""
import json, sys, time
t0 = time.perf_counter()
import onnx
from edgecnn.export.to_tflite import onnx_to_tflite
src, dst = sys.argv[1], sys.argv[2]
t1 = time.perf_counter()
ex = onnx_to_tflite(onnx.load(src))
t2 = time.perf_counter()
open(dst, "wb").write(ex.data)
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(json.dumps({"convert_s": t2 - t1, "process_s": time.perf_counter() - t0, "peak_rss_mib": hwm / 1024}))
"""


def convert(name: str, work: Path, samples: int) -> tuple[dict[str, Path], dict[str, dict[str, float]]]:
    """Quantize with edgecnn (in this process), then convert each variant in a fresh child (time, VmHWM)."""
    sys.path.insert(0, str(REPO))
    import onnx

    from edgecnn.preprocess import load_spec
    from edgecnn.quantize.api import QuantizeConfig, quantize
    from edgecnn.quantize.dataset import ImageDataset

    src = MODELS / f"{name}.onnx"
    if not src.exists():
        subprocess.run([sys.executable, str(REPO / "benchmarks" / "build_models.py"), "--models", name], check=True)
    q, _ = quantize(src, ImageDataset.open(CALIB, load_spec(SPEC), samples), QuantizeConfig())
    qpath = work / f"{name}_qdq.onnx"
    onnx.save(q, str(qpath))
    paths = {"fp32": work / f"{name}_fp32.tflite", "int8": work / f"{name}_int8.tflite"}
    stats = {}
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for v, model in (("fp32", src), ("int8", qpath)):
        r = subprocess.run(
            [sys.executable, "-c", CONVERT, str(model), str(paths[v])], capture_output=True, text=True, env=env
        )
        if r.returncode != 0:
            raise SystemExit(f"conversion of {model} failed: {r.stderr.strip().splitlines()[-1]}")
        stats[v] = json.loads(r.stdout.strip().splitlines()[-1])
    return paths, stats


def measure(path: Path, threads: int, runs: int) -> list[float]:
    r = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(threads), str(runs)], capture_output=True, text=True, check=True
    )
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet18,mobilenetv2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="edgecnn-tflite-bench-") as tmp:
        for name in args.models.split(","):
            paths, conv = convert(name, Path(tmp), args.samples)
            samples: dict[str, list[float]] = {"fp32": [], "int8": []}
            for r in range(args.rounds):
                order = ["fp32", "int8"] if r % 2 == 0 else ["int8", "fp32"]
                for v in order:
                    samples[v] += measure(paths[v], args.threads, args.runs)
            row = {"model": name, "threads": args.threads, "rounds": args.rounds, "runs": args.runs}
            for v, s in samples.items():
                a = np.asarray(s)
                row[v] = {
                    "p50_ms": float(np.median(a)),
                    "p10_ms": float(np.percentile(a, 10)),
                    "p90_ms": float(np.percentile(a, 90)),
                    "size_bytes": paths[v].stat().st_size,
                    **conv[v],
                }
            row["int8_over_fp32"] = row["int8"]["p50_ms"] / row["fp32"]["p50_ms"]
            results.append(row)
    print(f"{'model':<12} {'FP32 p50 ms (p10..p90)':>26} {'INT8 p50 ms (p10..p90)':>26} {'INT8/FP32':>10}  goal <= 0.6")
    for r in results:
        f, i = r["fp32"], r["int8"]
        print(
            f"{r['model']:<12} {f['p50_ms']:>9.2f} ({f['p10_ms']:.2f}..{f['p90_ms']:.2f}) "
            f"{i['p50_ms']:>9.2f} ({i['p10_ms']:.2f}..{i['p90_ms']:.2f}) {r['int8_over_fp32']:>10.2f}  "
            f"{'met' if r['int8_over_fp32'] <= 0.6 else 'NOT met'}"
        )
    print(f"\n{'model':<12} {'variant':<8} {'convert s':>10} {'peak RSS MiB':>13} {'file MiB':>9}")
    for r in results:
        for v in ("fp32", "int8"):
            c = r[v]
            print(
                f"{r['model']:<12} {v:<8} {c['convert_s']:>10.2f} {c['peak_rss_mib']:>13.0f} "
                f"{c['size_bytes'] / 2**20:>9.1f}"
            )
    if args.json:
        args.json.write_text(json.dumps({"schema_version": 1, "results": results}, indent=2))


if __name__ == "__main__":
    main()
