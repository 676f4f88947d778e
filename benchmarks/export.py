#!/usr/bin/env python3
"""ONNX -> TFLite, edgecnn vs onnx2tf: conversion time and memory, parity with the ONNX source, LiteRT latency.

    python benchmarks/export.py [--models resnet18,mobilenetv2] [--threads 2] [--batch 1] [--rounds 5]
                                [--convert-rounds N] [--runs 50] [--calib-samples 32] [--parity-samples 50]
                                [--no-onnx2tf] [--results benchmarks/results]
    python benchmarks/export.py --setup-onnx2tf      # create benchmarks/.venv-onnx2tf (downloads TensorFlow)

Everything runs on the shared runner (`benchmarks/runner.py`): every measurement in a fresh process, the
variants in alternating rounds, median and [min-max] over the rounds, the same threads and batch for every
tool, machine facts in `benchmarks/results/export.json`. README blocks `bench:export` (the table) and
`bench:export_verdict` (the goal sentences) are rendered from that JSON by `benchmarks/readme_tables.py`.

Models: ResNet-18 and MobileNetV2 from benchmarks/build_models.py (1x3x224x224, random seeded weights).
Images: the bundled calibration images through benchmarks/preprocess_224.toml, the same for both tools.

The source model is copied into the work folder at the start (its sha256 is in the JSON), so a model rebuilt
elsewhere during a run cannot change what is measured. Variants, per model (the conversion variants come
first in the list, so round 1 writes the files that the parity and latency variants read; later rounds
rewrite them, and the file's sha256 is recorded each time):
- ``MODEL/TOOL/PRECISION/convert``: the runner's child starts the converter as its own process (edgecnn:
  this environment's python; onnx2tf: its virtual environment's) and records that process's wall time
  (imports included) and peak RSS (``ru_maxrss`` of the waited-for child). FP32: edgecnn ``onnx_to_tflite``;
  onnx2tf ``convert`` (it writes float32 and float16). INT8: edgecnn ``quantize`` (minmax, --calib-samples
  images, --batch images per calibration call, like onnx2tf's representative dataset, which yields the
  model's batch of 1) then ``onnx_to_tflite`` on the QDQ model; onnx2tf
  ``convert(output_integer_quantized_tflite=True)`` calibrated on the same images (NHWC 0..1 with the spec's
  mean/std); its ``*_integer_quant.tflite`` (float I/O, int8 inside) is the file compared, like edgecnn's
  default float-I/O INT8 file. Both converters get --threads through OMP/MKL/TF thread variables.
  ``--convert-rounds`` (default: --rounds) may cut the conversion rounds, which dominate a run with onnx2tf
  (a ResNet-18 onnx2tf conversion takes minutes); the table prints how many rounds each number has.
- ``MODEL/TOOL/PRECISION/parity`` (one round: deterministic): the file on LiteRT vs the float ONNX model on
  ONNX Runtime over --parity-samples evaluation images (top-1 agreement, SQNR, max abs error);
  ``MODEL/edgecnn/int8-vs-qdq/parity``: edgecnn's INT8 file vs its own QDQ model (the "same numbers" claim).
- ``MODEL/TOOL/PRECISION/litert``: the file on LiteRT (XNNPACK, --threads), timed by the runner's one
  latency function (`runner.latency("litert", ...)`: the LiteRT adapter's ``bind`` copies the inputs once,
  only the C++ ``Invoke`` is inside the timer), 15 warm-up then --runs timed invokes per child.

Goals (issue 10): INT8 <= 0.6x FP32 p50 on LiteRT; parity at least onnx2tf's; conversion time and peak
memory below onnx2tf's. onnx2tf 1.29 runs in its own virtual environment (``benchmarks/.venv-onnx2tf``:
onnx2tf pins tensorflow 2.19.0, tf-keras, onnx 1.19.1, onnxruntime 1.23.0, numpy 1.26.4).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CALIB, EVAL, MODELS, REPO, SPEC
from runner import Variant, common_args, latency, median, model_names, run_benchmark, settings_from, spread

NAME = "export"
TOOLS = ("edgecnn", "onnx2tf")
PRECISIONS = ("float32", "int8")
GOAL_INT8_RATIO = 0.6
VENV = REPO / "benchmarks" / ".venv-onnx2tf"
O2T_PY = VENV / "bin" / "python"
O2T_PINS = [
    "onnx2tf==1.29.*",
    "tensorflow==2.19.0",
    "tf-keras==2.19.0",
    "onnx==1.19.1",
    "onnxruntime==1.23.0",
    "numpy==1.26.4",
    "onnx-graphsurgeon",
    "sng4onnx",
    "simple_onnx_processing_tools",
    "onnxsim",
    "psutil",
]
WORK = MODELS / "export"  # gitignored with benchmarks/models/

# -- the converters, each run as its own process (started by the runner's child) -------------------------------
EDGECNN_CONVERT = r"""
import sys
from pathlib import Path
import onnx
from edgecnn.export.to_tflite import onnx_to_tflite
src, out, precision, calib, spec, n, batch = sys.argv[1:8]
if precision == "int8":
    from edgecnn.preprocess import load_spec
    from edgecnn.quantize.api import QuantizeConfig, quantize
    from edgecnn.quantize.dataset import ImageDataset
    from edgecnn.quantize.params import INT8_SYMMETRIC
    ds = ImageDataset.open(Path(calib), load_spec(spec), int(n))
    model, _ = quantize(Path(src), ds, QuantizeConfig(scheme=INT8_SYMMETRIC, batch=int(batch)))
    onnx.save(model, str(Path(out).with_suffix(".qdq.onnx")))
else:
    model = onnx.load(src)
Path(out).write_bytes(onnx_to_tflite(model, precision=precision).data)
"""

ONNX2TF_CONVERT = r"""
import json, sys
import numpy as np
import onnx2tf
src, outdir, precision, calib_npy, mean, std = sys.argv[1:7]
kw = dict(input_onnx_file_path=src, output_folder_path=outdir, non_verbose=True)
if precision == "int8":
    m = np.asarray(json.loads(mean), np.float32).reshape(1, 1, 1, -1)
    s = np.asarray(json.loads(std), np.float32).reshape(1, 1, 1, -1)
    kw.update(output_integer_quantized_tflite=True, custom_input_op_name_np_data_path=[["input", calib_npy, m, s]])
onnx2tf.convert(**kw)
"""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def convert(
    *, tool: str, precision: str, src: str, out: str, calib_samples: int, threads: int, batch: int, **_: Any
) -> dict[str, Any]:
    """(Runs in the runner's child.) Convert ``src`` with ``tool`` in a process of its own; its wall time and
    peak RSS; the output replaces ``out`` (and, for edgecnn INT8, ``out`` with suffix .qdq.onnx)."""
    dst = Path(out)
    dst.parent.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "CUDA_VISIBLE_DEVICES": "",
        "TF_NUM_INTRAOP_THREADS": str(threads),
        "TF_NUM_INTEROP_THREADS": "1",
    }
    with tempfile.TemporaryDirectory(prefix="edgecnn-export-bench-", dir=dst.parent) as tmp:
        t = Path(tmp)
        if tool == "edgecnn":
            produced = t / dst.name
            cmd = [sys.executable, "-c", EDGECNN_CONVERT, src, str(produced), precision, str(CALIB), str(SPEC),
                   str(calib_samples), str(batch)]  # fmt: skip
        elif tool == "onnx2tf":
            stem = Path(src).stem
            produced = t / (f"{stem}_float32.tflite" if precision == "float32" else f"{stem}_integer_quant.tflite")
            npy, mean, std = _onnx2tf_calibration(dst.parent, calib_samples)
            cmd = [str(O2T_PY), "-c", ONNX2TF_CONVERT, src, str(t), precision, str(npy), json.dumps(mean),
                   json.dumps(std)]  # fmt: skip
        else:
            raise ValueError(f"tool {tool!r}; known: {', '.join(TOOLS)}")
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=dst.parent, env=env)
        wall = time.perf_counter() - t0
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # Linux: KiB, the largest waited child
        if r.returncode != 0 or not produced.is_file():
            tail = [ln for ln in (r.stderr + r.stdout).strip().splitlines() if ln.strip()][-2:]
            raise RuntimeError(f"{tool} {precision} conversion failed: {' | '.join(tail)[-300:]}")
        os.replace(produced, dst)
        qdq = produced.with_suffix(".qdq.onnx")
        if qdq.is_file():
            os.replace(qdq, dst.with_suffix(".qdq.onnx"))
    return {
        "convert_s": wall,
        "convert_peak_rss_mib": peak_kib / 1024,
        "size_mib": dst.stat().st_size / 2**20,
        "sha256": _sha256(dst),
    }


def _onnx2tf_calibration(work: Path, n: int) -> tuple[Path, list[float], list[float]]:
    """The calibration images as onnx2tf wants them (NHWC, 0..1 before mean/std), and its 20-image sample file
    (which onnx2tf otherwise downloads for its own output check), made from the same bundled images."""
    from dataclasses import replace

    import numpy as np

    from edgecnn.preprocess import Layout, list_images, load_spec

    spec = load_spec(SPEC)
    raw = replace(spec, layout=Layout.NHWC, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    files = list_images(CALIB)
    path = work / f"calib_nhwc_{n}.npy"
    if not path.is_file():
        np.save(path, np.stack([raw.load(p) for p in files[:n]]).astype(np.float32))
    sample = work / "calibration_image_sample_data_20x128x128x3_float32.npy"
    if not sample.is_file():
        small = replace(raw, resize=(128, 128))
        np.save(sample, np.stack([small.load(p) for p in files[:20]]).astype(np.float32))
    return path, list(spec.mean), list(spec.std)


def parity(*, reference: str, candidate: str, samples: int, threads: int, batch: int, **_: Any) -> dict[str, Any]:
    """(Runs in the runner's child.) ``candidate`` (.tflite) on LiteRT vs ``reference`` (.onnx) on ONNX Runtime
    over the first ``samples`` evaluation images: top-1 agreement, SQNR, max abs error."""
    import numpy as np

    from edgecnn.preprocess import load_spec
    from edgecnn.quantize.dataset import ImageDataset
    from edgecnn.runtimes import open_session

    ort = open_session("ort", reference, threads=threads)
    lite = open_session("litert", candidate, threads=threads)
    r_in, l_in, l_out = ort.inputs()[0], lite.inputs()[0], lite.outputs()[0]
    xs = np.concatenate(list(ImageDataset.open(EVAL, load_spec(SPEC), samples).batches(batch)))
    sig = noise = maxerr = 0.0
    agree = 0
    for x in xs:
        x = x[None]
        ref = ort.run({r_in.name: x})[0].astype(np.float64)
        xin = x if tuple(l_in.shape) == x.shape else x.transpose(0, 2, 3, 1)
        if np.dtype(l_in.dtype).kind in "iu" and l_in.quant:
            s, z = l_in.quant
            info = np.iinfo(np.dtype(l_in.dtype))
            xin = np.clip(np.rint(xin / s) + z, info.min, info.max)
        y = lite.run({l_in.name: xin.astype(l_in.dtype)})[0].astype(np.float64)
        if np.dtype(l_out.dtype).kind in "iu" and l_out.quant:
            s, z = l_out.quant
            y = (y - z) * s
        y = y.reshape(ref.shape)
        sig += float(np.sum(ref**2))
        noise += float(np.sum((ref - y) ** 2))
        maxerr = max(maxerr, float(np.max(np.abs(ref - y))))
        agree += int(np.argmax(ref) == np.argmax(y))
    return {
        "top1_agreement_pct": 100.0 * agree / len(xs),
        "sqnr_db": 200.0 if noise == 0 else float(10 * np.log10(sig / noise)),
        "max_abs_error": maxerr,
        "samples": len(xs),
    }


def measure(*, model: str, runs: int, threads: int, batch: int, **_: Any) -> dict[str, Any]:
    """(Runs in the runner's child.) LiteRT latency of one .tflite file: the runner's one timing function."""
    return latency("litert", model, threads=threads, batch=batch, iterations=runs)


# -- set-up ---------------------------------------------------------------------------------------------------
def setup_onnx2tf() -> None:
    if not O2T_PY.exists():  # python3 from PATH: a plain interpreter, not edgecnn's environment
        subprocess.run(["python3", "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(O2T_PY), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
    subprocess.run([str(O2T_PY), "-m", "pip", "install", "-q", *O2T_PINS], check=True)


def onnx2tf_version() -> str | None:
    if not O2T_PY.exists():
        return None
    r = subprocess.run(
        [str(O2T_PY), "-c", "import importlib.metadata as m; print(m.version('onnx2tf'), m.version('tensorflow'))"],
        capture_output=True,
        text=True,
    )
    return r.stdout.strip() if r.returncode == 0 else None


def variants_for(
    name: str,
    source: Path,
    tools: tuple[str, ...],
    *,
    runs: int,
    calib_samples: int,
    parity_samples: int,
    convert_rounds: int,
) -> list[Variant]:
    """Conversions first (round 1 writes the files), then parity (one round), then latency."""
    src = str(source)
    work = source.parent
    file = {(t, p): str(work / f"{t}_{p}.tflite") for t in tools for p in PRECISIONS}
    base = {"model_name": name}
    conv = [
        Variant(
            name=f"{name}/{t}/{p}/convert",
            fn=f"{NAME}:convert",
            params={**base, "tool": t, "precision": p, "src": src, "out": file[t, p], "calib_samples": calib_samples},
            rounds=convert_rounds,
        )
        for t in tools
        for p in PRECISIONS
    ]
    par = [
        Variant(
            name=f"{name}/{t}/{p}/parity",
            fn=f"{NAME}:parity",
            params={**base, "reference": src, "candidate": file[t, p], "samples": parity_samples},
            rounds=1,
        )
        for t in tools
        for p in PRECISIONS
    ]
    if "edgecnn" in tools:
        qdq = str(Path(file["edgecnn", "int8"]).with_suffix(".qdq.onnx"))
        params = {**base, "reference": qdq, "candidate": file["edgecnn", "int8"], "samples": parity_samples}
        par.append(Variant(name=f"{name}/edgecnn/int8-vs-qdq/parity", fn=f"{NAME}:parity", params=params, rounds=1))
    lat = [
        Variant(name=f"{name}/{t}/{p}/litert", fn=f"{NAME}:measure", params={**base, "model": file[t, p], "runs": runs})
        for t in tools
        for p in PRECISIONS
    ]
    return [*conv, *par, *lat]


# -- README rendering (from the runner's JSON; used by benchmarks/readme_tables.py) ---------------------------
def _tools(payload: dict[str, Any]) -> list[str]:
    present = {v["name"].split("/")[1] for v in payload["variants"]}
    return [t for t in TOOLS if t in present]


def _variant(payload: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((v for v in payload["variants"] if v["name"] == name), None)


def _cell(payload: dict[str, Any], name: str, metric: str, spec: str) -> str:
    m, s = median(payload, name, metric), spread(payload, name, metric)
    if m is None or s is None:
        return "-"
    return f"{m:{spec}}" if s[0] == s[1] else f"{m:{spec}} [{s[0]:{spec}}-{s[1]:{spec}}]"


def paired_ratios(payload: dict[str, Any], num: str, den: str, metric: str = "p50_ms") -> list[float]:
    """``num``/``den`` per round (the two ran next to each other in that round: a paired ratio, robust to load
    that drifts between rounds)."""
    a, b = _variant(payload, num), _variant(payload, den)
    if a is None or b is None:
        return []
    da = {r["round"]: r.get(metric) for r in a["rounds"] if r.get("status") == "ok"}
    db = {r["round"]: r.get(metric) for r in b["rounds"] if r.get("status") == "ok"}
    return [da[k] / db[k] for k in sorted(da.keys() & db.keys()) if da[k] is not None and db[k]]


def int8_ratio(payload: dict[str, Any], model: str, tool: str) -> tuple[float, float, float] | None:
    """INT8/FP32 p50 on LiteRT: (median, min, max) of the per-round paired ratios."""
    import statistics

    r = paired_ratios(payload, f"{model}/{tool}/int8/litert", f"{model}/{tool}/float32/litert")
    return (statistics.median(r), min(r), max(r)) if r else None


def _ratio_text(r: tuple[float, float, float] | None) -> str:
    return "-" if r is None else f"{r[0]:.2f}x [{r[1]:.2f}-{r[2]:.2f}]"


def readme_table(payload: dict[str, Any]) -> str:
    s, mach = payload["settings"], payload["machine"]
    conv_rounds = sorted(
        {v["rounds_ok"] for v in payload["variants"] if v["name"].endswith("/convert") and v["rounds_ok"]}
    )
    o2t = payload.get("onnx2tf_version")
    lines = [
        f"LiteRT {mach['versions'].get('ai-edge-litert')} (XNNPACK) on {mach['cpu_model']} "
        f"({mach['cores_logical']} cores), {s['threads']} threads, batch {s['batch']}; latency p50 in ms: median "
        f"over {s['rounds']} alternating rounds, each a fresh process of {payload.get('runs', '?')} timed invokes "
        f"[min-max over the rounds]; conversion: {', '.join(map(str, conv_rounds)) or '0'} round(s), wall time "
        "and peak RSS of the converting process; parity over "
        f"{payload.get('parity_samples', '?')} images vs the float ONNX model on ONNX Runtime; INT8 calibrated on "
        f"{payload.get('calib_samples', '?')} images"
        + (f"; onnx2tf {o2t.replace(' ', ', TensorFlow ')}" if o2t else "; onnx2tf not run")
        + f". Load average {mach['loadavg_before'][0]:.1f} before, {mach['loadavg_after'][0]:.1f} after. "
        "INT8/FP32 is the median [min-max] of the per-round ratios.",
        "",
        "| model | tool | precision | convert s | peak RSS MiB | size MiB | top-1 agree % | SQNR dB "
        "| LiteRT p50 ms | INT8/FP32 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in model_names(payload):
        for t in _tools(payload):
            for p in PRECISIONS:
                conv = _variant(payload, f"{m}/{t}/{p}/convert")
                if conv is not None and conv["status"] != "ok" and not conv["rounds_ok"]:
                    lines.append(f"| {m} | {t} | {p} | {conv['status'][:90]} | | | | | | |")
                    continue
                pre = f"{m}/{t}/{p}"
                cells = [
                    _cell(payload, f"{pre}/convert", "convert_s", ".1f"),
                    _cell(payload, f"{pre}/convert", "convert_peak_rss_mib", ".0f"),
                    _cell(payload, f"{pre}/convert", "size_mib", ".1f"),
                    _cell(payload, f"{pre}/parity", "top1_agreement_pct", ".1f"),
                    _cell(payload, f"{pre}/parity", "sqnr_db", ".1f"),
                    _cell(payload, f"{pre}/litert", "p50_ms", ".2f"),
                    _ratio_text(int8_ratio(payload, m, t)) if p == "int8" else "",
                ]
                lines.append(f"| {m} | {t} | {p} | " + " | ".join(cells) + " |")
        own = f"{m}/edgecnn/int8-vs-qdq/parity"
        if median(payload, own, "top1_agreement_pct") is not None:
            lines.append(
                f"| {m} | edgecnn | int8 vs its QDQ ONNX | | | | {_cell(payload, own, 'top1_agreement_pct', '.1f')} | "
                f"{_cell(payload, own, 'sqnr_db', '.1f')} | | |"
            )
    return "\n".join(lines)


def _vs(payload: dict[str, Any], m: str, p: str, metric: str) -> tuple[float, bool] | None:
    """edgecnn/onnx2tf ratio of the medians of a conversion ``metric``, and whether every edgecnn round was
    below every onnx2tf round."""
    e, o = f"{m}/edgecnn/{p}/convert", f"{m}/onnx2tf/{p}/convert"
    me, mo, se, so = (
        median(payload, e, metric),
        median(payload, o, metric),
        spread(payload, e, metric),
        spread(payload, o, metric),
    )
    if me is None or mo is None or se is None or so is None or not mo:
        return None
    return me / mo, se[1] < so[0]


def verdicts(payload: dict[str, Any]) -> list[str]:
    """One sentence per goal, computed from the same JSON as the table."""
    out: list[str] = []
    models = model_names(payload)
    tools = _tools(payload)
    # INT8 <= 0.6x FP32 on LiteRT
    for t in tools:
        met_all, met_median, missed, unmeasured = [], [], [], []
        for m in models:
            r = int8_ratio(payload, m, t)
            if r is None:
                unmeasured.append(m)
            elif r[2] <= GOAL_INT8_RATIO:
                met_all.append(f"{m} {r[0]:.3f}x")
            elif r[0] <= GOAL_INT8_RATIO:
                met_median.append(f"{m} {r[0]:.3f}x (up to {r[2]:.2f}x in one round)")
            else:
                missed.append(f"{m} {r[0]:.3f}x [{r[1]:.2f}-{r[2]:.2f}]")
        parts = []
        if met_all:
            parts.append(f"met in every round for {', '.join(met_all)}")
        if met_median:
            parts.append(f"met at the median but not in every round for {', '.join(met_median)}")
        if missed:
            parts.append(f"**NOT met** for {', '.join(missed)}")
        if unmeasured:
            parts.append(f"not measured for {', '.join(unmeasured)}")
        out.append(f"**INT8 <= {GOAL_INT8_RATIO}x FP32 p50 on LiteRT ({t})**: " + "; ".join(parts) + ".")
    if "onnx2tf" not in tools or "edgecnn" not in tools:
        return out
    # conversion time and memory below onnx2tf's
    for metric, label in (("convert_s", "conversion time"), ("convert_peak_rss_mib", "peak memory")):
        below, noisy, above = [], [], []
        for m in models:
            for p in PRECISIONS:
                v = _vs(payload, m, p, metric)
                if v is None:
                    continue
                text = f"{m} {p} {v[0]:.2f}x"
                (below if v[0] < 1 and v[1] else noisy if v[0] < 1 else above).append(text)
        parts = []
        if below:
            parts.append(f"below onnx2tf's in every round for {', '.join(below)}")
        if noisy:
            parts.append(f"below at the median, ranges overlapping, for {', '.join(noisy)}")
        if above:
            parts.append(f"**NOT below** for {', '.join(above)}")
        goal = "met" if (below or noisy) and not above else "NOT met"
        out.append(
            f"**{label.capitalize()} below onnx2tf's** (edgecnn/onnx2tf, medians): {goal}: "
            + ("; ".join(parts) or "not measured")
            + "."
        )
    # parity at least onnx2tf's
    good, bad = [], []
    for m in models:
        for p in PRECISIONS:
            e = median(payload, f"{m}/edgecnn/{p}/parity", "top1_agreement_pct")
            o = median(payload, f"{m}/onnx2tf/{p}/parity", "top1_agreement_pct")
            if e is None or o is None:
                continue
            (good if e >= o else bad).append(f"{m} {p} {e:.0f}% vs {o:.0f}%")
    goal = "met" if good and not bad else "NOT met"
    parts = ([f"at least onnx2tf's for {', '.join(good)}"] if good else []) + (
        [f"**below** onnx2tf's for {', '.join(bad)}"] if bad else []
    )
    out.append(
        f"**Top-1 agreement with the float ONNX model at least onnx2tf's**: {goal}: "
        + ("; ".join(parts) or "not measured")
        + "."
    )
    return out


def readme_verdict(payload: dict[str, Any]) -> str:
    """The goal sentences beside the table, computed from it."""
    return "\n".join(f"- {v}" for v in verdicts(payload))


# -- main -----------------------------------------------------------------------------------------------------
def build_parser(doc: str = __doc__ or "") -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--models", default="resnet18,mobilenetv2")
    ap.add_argument("--runs", type=int, default=50, help="timed invokes per latency child")
    ap.add_argument("--convert-rounds", type=int, help="rounds for the conversion variants (default: --rounds)")
    ap.add_argument("--calib-samples", type=int, default=32)
    ap.add_argument("--parity-samples", type=int, default=50)
    common_args(ap)
    return ap


def run(a: argparse.Namespace, *, name: str, tools: tuple[str, ...]) -> int:
    try:
        settings = settings_from(a)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.batch != 1:
        print("error: --batch must be 1: the benchmark models have a fixed batch of 1", file=sys.stderr)
        return 2
    conv_rounds = a.convert_rounds if a.convert_rounds is not None else a.rounds
    if not 1 <= conv_rounds <= a.rounds or a.runs < 1:
        print(f"error: --convert-rounds {conv_rounds}, --runs {a.runs}; valid: 1..--rounds, >= 1", file=sys.stderr)
        return 2
    o2t = None
    if "onnx2tf" in tools:
        o2t = onnx2tf_version()
        if o2t is None:
            print(f"error: onnx2tf is not installed in {VENV}; run: python benchmarks/export.py --setup-onnx2tf",
                  file=sys.stderr)  # fmt: skip
            return 3
    variants: list[Variant] = []
    sources: dict[str, str] = {}
    for m in a.models.split(","):
        src = MODELS / f"{m}.onnx"
        if not src.exists():
            subprocess.run([sys.executable, str(REPO / "benchmarks" / "build_models.py"), "--models", m], check=True)
        work = WORK / m
        if work.exists():
            shutil.rmtree(work)  # no file of an earlier run may be measured
        work.mkdir(parents=True)
        source = work / src.name  # a private copy: a model rebuilt elsewhere during the run cannot change it
        shutil.copyfile(src, source)
        sources[m] = _sha256(source)
        variants += variants_for(
            m,
            source,
            tools,
            runs=a.runs,
            calib_samples=a.calib_samples,
            parity_samples=a.parity_samples,
            convert_rounds=conv_rounds,
        )
    extra = {
        "source_sha256": sources,
        "runs": a.runs,
        "calib_samples": a.calib_samples,
        "parity_samples": a.parity_samples,
        "onnx2tf_version": o2t,
    }
    payload = run_benchmark(name, variants, settings, extra=extra, results=a.results)
    print(readme_table(payload))
    print()
    print(readme_verdict(payload))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    ap.add_argument("--no-onnx2tf", action="store_true", help="edgecnn only")
    ap.add_argument("--setup-onnx2tf", action="store_true", help="create benchmarks/.venv-onnx2tf and exit")
    a = ap.parse_args(argv)
    if a.setup_onnx2tf:
        setup_onnx2tf()
        return 0
    return run(a, name=NAME, tools=("edgecnn",) if a.no_onnx2tf else TOOLS)


if __name__ == "__main__":
    sys.exit(main())
