"""Calibration speed-up from sharding: 1 process vs 2 local worker processes vs 2 Ray workers (local Ray).

Each variant is a fresh `edgecnn quantize` process; variants alternate within each round; the table shows the
median and the spread (min-max) of the whole command's wall time and of the calibration time the quantize
report gives (which includes Ray's start-up for the Ray variants). Every variant uses the same images, batch
and total threads (1 process x 2 threads, 2 workers x 1 thread). Writes benchmarks/results/ray_calibration.json.

    python benchmarks/ray_calibration.py [--rounds 5] [--samples 128] [--method entropy]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import CALIB, MODELS, SPEC  # noqa: E402

VARIANTS = {
    "1 process (2 threads)": ["--workers", "1"],
    "2 local processes (1 thread each)": ["--workers", "2", "--backend", "local"],
    "2 Ray workers (1 thread each)": ["--workers", "2", "--backend", "ray"],
}


def run_once(model: Path, args: list[str], samples: int, method: str, tmp: Path) -> dict[str, float]:
    out, rep = tmp / "q.onnx", tmp / "q.json"
    cmd = [sys.executable, "-m", "edgecnn", "quantize", str(model), "--calib", str(CALIB), "--preprocess", str(SPEC)]
    cmd += ["-o", str(out), "--json", str(rep), "--samples", str(samples), "--method", method, "--batch", "8", *args]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=REPO)
    wall = time.perf_counter() - t0
    report = json.loads(rep.read_text())
    return {"wall_s": wall, "calibrate_s": report["seconds_calibrate"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--samples", type=int, default=128)
    ap.add_argument("--method", default="entropy")
    ap.add_argument("--model", type=Path, default=MODELS / "resnet18.onnx")
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "ray_calibration.json")
    a = ap.parse_args()
    if not a.model.is_file():
        sys.exit(f"{a.model}: missing; build it with: python benchmarks/build_models.py")
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="edgecnn-bench-ray-") as tmp:
        for r in range(a.rounds):
            order = list(VARIANTS) if r % 2 == 0 else list(reversed(VARIANTS))  # alternate the order too
            for name in order:
                runs[name].append(run_once(a.model, VARIANTS[name], a.samples, a.method, Path(tmp)))
                print(f"round {r + 1}/{a.rounds} {name}: {runs[name][-1]['wall_s']:.1f} s", flush=True)
    rows = []
    base = statistics.median(x["wall_s"] for x in runs[next(iter(VARIANTS))])
    base_cal = statistics.median(x["calibrate_s"] for x in runs[next(iter(VARIANTS))])
    for name, xs in runs.items():
        wall = [x["wall_s"] for x in xs]
        cal = [x["calibrate_s"] for x in xs]
        rows.append(
            {
                "variant": name,
                "wall_median_s": statistics.median(wall),
                "wall_min_s": min(wall),
                "wall_max_s": max(wall),
                "calibrate_median_s": statistics.median(cal),
                "calibrate_min_s": min(cal),
                "calibrate_max_s": max(cal),
                "speedup_wall": base / statistics.median(wall),
                "speedup_calibrate": base_cal / statistics.median(cal),
            }
        )
    print(f"\n{a.model.name}, {a.samples} images, {a.method}, {a.rounds} alternating rounds (median, min-max)")
    print(f"{'variant':38} {'wall s':>20} {'calibrate s':>20} {'speed-up (wall / calib)':>24}")
    for row in rows:
        print(
            f"{row['variant']:38} {row['wall_median_s']:7.1f} ({row['wall_min_s']:.1f}-{row['wall_max_s']:.1f})"
            f"   {row['calibrate_median_s']:7.1f} ({row['calibrate_min_s']:.1f}-{row['calibrate_max_s']:.1f})"
            f"   {row['speedup_wall']:8.2f}x / {row['speedup_calibrate']:.2f}x"
        )
    from edgecnn.bench.machine import machine_facts

    a.json.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "schema_version": 1,
        "kind": "bench-ray-calibration",
        "model": a.model.name,
        "samples": a.samples,
        "method": a.method,
        "rounds": a.rounds,
        "machine": machine_facts(),
        "rows": rows,
        "raw": runs,
    }
    a.json.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
