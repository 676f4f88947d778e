#!/usr/bin/env python3
"""Calibration speed-up from sharding: 1 process vs 2 local worker processes vs 2 Ray workers (a local Ray).

    python benchmarks/ray_calibration.py [--samples 128] [--method entropy] [--rounds 5]

Measured through `benchmarks/runner.py`: each (variant, round) is a fresh process that runs edgecnn's
`quantize()` on ResNet-18 (benchmarks/build_models.py) with the same images, batch and total threads (the
single process gets all threads; each of N workers gets threads / N). Reported: the whole quantize call and
its calibration part (which includes starting Ray for the Ray variant), median and min-max over >= 5
alternating rounds. The merged statistics are identical in every variant (tests/test_calib_distributed.py);
this measures only time. Writes benchmarks/results/ray_calibration.json; the README block is rendered from it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CALIB, MODELS, SPEC
from runner import Variant, common_args, median, run_benchmark, settings_from, spread

NAME = "ray_calibration"
VARIANTS = (
    ("1 process", 1, "local"),
    ("2 local processes", 2, "local"),
    ("2 Ray workers", 2, "ray"),
)


def measure(*, model: str, samples: int, method: str, workers: int, backend: str, threads: int, batch: int) -> dict:
    """One quantize() call in this (fresh) process; times in seconds."""
    from edgecnn.preprocess import load_spec
    from edgecnn.quantize.api import QuantizeConfig, quantize
    from edgecnn.quantize.dataset import ImageDataset
    from edgecnn.quantize.estimators import parse_method

    ds = ImageDataset.open(CALIB, load_spec(SPEC), samples)
    cfg = QuantizeConfig(
        method=parse_method(method),
        batch=8,
        threads=max(1, threads // workers),
        workers=workers,
        backend=backend,
    )
    t0 = time.perf_counter()
    _, report = quantize(Path(model), ds, cfg)
    return {"quantize_s": time.perf_counter() - t0, "calibrate_s": report.seconds_calibrate}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_args(ap)
    ap.add_argument("--samples", type=int, default=128)
    ap.add_argument("--method", default="entropy")
    a = ap.parse_args()
    model = MODELS / "resnet18.onnx"
    if not model.is_file():
        sys.exit(f"{model}: missing; build it with: python benchmarks/build_models.py")
    variants = [
        Variant(
            name=name,
            fn="ray_calibration:measure",
            params={"model": str(model), "samples": a.samples, "method": a.method, "workers": w, "backend": b},
        )
        for name, w, b in VARIANTS
    ]
    payload = run_benchmark(
        NAME, variants, settings_from(a), extra={"model": model.name, "samples": a.samples, "method": a.method}
    )
    print(readme_table(payload))


def readme_table(payload: dict[str, Any]) -> str:
    s, mach = payload["settings"], payload["machine"]
    base_q = median(payload, VARIANTS[0][0], "quantize_s")
    base_c = median(payload, VARIANTS[0][0], "calibrate_s")
    lines = [
        f"{payload['model']}, {payload['samples']} images, {payload['method']}; median over {s['rounds']} alternating "
        f"rounds, each a fresh process [min-max]; {s['threads']} threads in all; {mach['cpu_model']} "
        f"({mach['cores_logical']} cores). Load average {mach['loadavg_before'][0]:.1f} before, "
        f"{mach['loadavg_after'][0]:.1f} after.",
        "",
        "| variant | quantize s | calibration s | speed-up (quantize / calibration) |",
        "|---|---|---|---|",
    ]
    for name, _, _ in VARIANTS:
        q, c = median(payload, name, "quantize_s"), median(payload, name, "calibrate_s")
        sq, sc = spread(payload, name, "quantize_s"), spread(payload, name, "calibrate_s")
        if q is None or c is None or sq is None or sc is None:
            lines.append(f"| {name} | - | - | - |")
            continue
        speed = f"{base_q / q:.2f}x / {base_c / c:.2f}x" if base_q and base_c else "-"
        lines.append(f"| {name} | {q:.1f} [{sq[0]:.1f}-{sq[1]:.1f}] | {c:.1f} [{sc[0]:.1f}-{sc[1]:.1f}] | {speed} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
