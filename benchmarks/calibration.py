#!/usr/bin/env python3
"""Calibration benchmark: edgecnn vs ONNX Runtime `quantize_static` vs NNCF `nncf.quantize`.

    python benchmarks/calibration.py [--model resnet18] [--samples 128] [--methods minmax,entropy,percentile]
                                     [--scaling 32,512] [--latency-models mobilenetv2] [--batch 1] [--rounds 5]

Three measurements, each through `benchmarks/runner.py` (fresh process per measurement, >= 5 alternating
rounds unless said otherwise, median and spread, machine facts), each written to `benchmarks/results/`:

1. `calibration.json`: every quantization in its own child: wall time of the child (imports included, the
   same for every tool), time of the quantization call alone, peak RSS (VmHWM). Every tool gets the same
   model file, the same images through the same PreprocessSpec (`benchmarks/preprocess_224.toml`), the same
   threads, and the same batch (`--batch`, one image per calibration step by default; with --batch > 1 every
   tool gets a copy of the model with a dynamic batch dimension). ORT's `quantize_static` and `nncf.quantize`
   take no thread count: their calibration sessions use the runtime's default (every core), so threads are
   equal only when --threads is the core count (the default, 2, on the 2-core machine of the committed
   run; the JSON records both). edgecnn may lower its batch to keep one
   batch of exposed activations under its memory budget: the batch it actually used is recorded
   (`effective_batch`) and shown when it differs.
2. `calibration_latency.json`: each INT8 output's SQNR against the float model on 32 held-out images, and its
   p50 on ORT and OpenVINO (100 timed runs per fresh process, >= 5 alternating rounds), next to FP32.
3. `calibration_accuracy.json`: each tool quantizes the bundled sample model on all 512 calibration images;
   top-1 on the 1,000 held-out images and agreement with FP32 (deterministic: one round).

Peers, as a user runs them by default:
- ORT: `onnxruntime.quantization.quantize_static(..., quant_format=QDQ, per_channel=True,
  calibrate_method=MinMax|Entropy|Percentile)`, its default int8 activations and weights.
- NNCF (benchmark-only dependency, `pip install 'edgecnn[bench]'`): `nncf.quantize(model, dataset,
  subset_size=N)`, default preset, on the OpenVINO model (`nncf-ov`; latency on OpenVINO only) and on the
  ONNX model (`nncf-onnx`, QDQ ONNX output; latency on both runtimes).
For N > 512 the image folder is the 512 calibration images plus their mirror images. A watchdog kills a child
above --rss-limit-gib and marks it "does not fit". Build the models first: `python benchmarks/build_models.py`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CALIB, EVAL, MODELS, REPO, SPEC, ort_reader
from runner import Settings, Variant, common_args, latency, median, run_benchmark, spread

NAME = "calibration"
SQNR_IMAGES = 32
SAMPLE_MODEL = REPO / "models" / "sample_cnn.onnx"
SAMPLE_SPEC = REPO / "calibration_data" / "preprocess.toml"
WORK = MODELS / "calibration"
PEERS = ("ort", "nncf-ov", "nncf-onnx")
PEER_LABEL = {"ort": "ORT", "nncf-ov": "NNCF (OpenVINO)", "nncf-onnx": "NNCF (ONNX)"}


# ---------------------------------------------------------------- children ---------------------------------------
def quantize_child(
    *, tool: str, method: str, n: int, model: str, images: str, out: str, spec: str, threads: int, batch: int, **_: Any
) -> dict[str, Any]:
    t0 = time.perf_counter()
    effective = batch
    if tool == "edgecnn":
        import onnx

        import edgecnn.quantize.api as api
        from edgecnn.preprocess import load_spec
        from edgecnn.quantize.api import QuantizeConfig, quantize
        from edgecnn.quantize.dataset import ImageDataset
        from edgecnn.quantize.estimators import Method

        capped = api._memory_capped_batch
        used: list[int] = []

        def record(*a: Any, **k: Any) -> int:  # observe the batch edgecnn picks; the real function decides
            used.append(capped(*a, **k))
            return used[-1]

        api._memory_capped_batch = record
        t1 = time.perf_counter()
        ds = ImageDataset.open(Path(images), load_spec(Path(spec)), n)
        q, _ = quantize(Path(model), ds, QuantizeConfig(method=Method(method), batch=batch, threads=threads))
        onnx.save(q, out)
        effective = used[-1] if used else batch
    elif tool == "ort":
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static

        meth = {
            "minmax": CalibrationMethod.MinMax,
            "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile,
        }
        t1 = time.perf_counter()
        quantize_static(
            model,
            out,
            ort_reader(Path(images), n, Path(spec), batch=batch),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            calibrate_method=meth[method],
        )
    else:  # nncf-ov / nncf-onnx
        import nncf
        import numpy as np
        import onnx
        import openvino as ov

        from edgecnn.preprocess import list_images, load_spec

        sp = load_spec(Path(spec))
        files = list_images(Path(images))[:n]
        chunks = [files[i : i + batch] for i in range(0, len(files), batch)]
        t1 = time.perf_counter()

        def load(chunk: list[Path]) -> Any:
            x = np.stack([sp.load(p) for p in chunk])
            return {"input": x} if tool == "nncf-onnx" else x  # the ONNX backend feeds {input name: array}

        dataset = nncf.Dataset(chunks, load)
        steps = len(chunks)
        if tool == "nncf-ov":
            core = ov.Core()
            core.set_property("CPU", {"INFERENCE_NUM_THREADS": str(threads)})
            q = nncf.quantize(core.read_model(model), dataset, subset_size=steps)
            ov.save_model(q, str(Path(out).with_suffix(".xml")))
        else:
            q = nncf.quantize(onnx.load(model), dataset, subset_size=steps)
            onnx.save(q, out)
    t2 = time.perf_counter()
    return {"work_s": t2 - t1, "setup_s": t1 - t0, "effective_batch": effective}


def _load_images(folder: Path, n: int, spec: Path):  # -> np.ndarray
    import numpy as np

    from edgecnn.preprocess import list_images, load_spec

    sp = load_spec(spec)
    return np.stack([sp.load(p) for p in list_images(folder)[:n]])


def _runner(path: Path, runtime: str):  # -> Callable[[np.ndarray], np.ndarray]
    from edgecnn.runtimes import open_session

    sess = open_session(runtime, path, threads=2, input_shapes=None)
    name = sess.inputs()[0].name
    return lambda x: sess.run({name: x})[0]


def latency_child(
    *,
    model: str,
    reference: str,
    runtime: str,
    threads: int,
    batch: int,
    sqnr: bool = True,
    timed: bool = True,
    **_: Any,
) -> dict[str, Any]:
    """SQNR of ``model`` against ``reference`` on held-out images, and (``timed``) its p50 on ``runtime``."""
    import numpy as np

    out = latency(runtime, model, threads=threads, batch=1) if timed else {}
    if sqnr:
        x = _load_images(EVAL, SQNR_IMAGES, SPEC)
        ref_run, run = _runner(Path(reference), "ort"), _runner(Path(model), runtime)
        ref = np.concatenate([ref_run(x[i : i + 1]) for i in range(len(x))]).astype(np.float64)
        y = np.concatenate([run(x[i : i + 1]) for i in range(len(x))])
        out["sqnr_db"] = float(10 * np.log10(np.sum(ref**2) / max(np.sum((ref - y) ** 2), 1e-30)))
    return out


def accuracy_child(
    *, tool: str, method: str, model: str, out: str, runtime: str, threads: int, batch: int, **_: Any
) -> dict[str, Any]:
    """Quantize the bundled model with ``tool`` on all 512 calibration images; top-1 and agreement on the
    1,000 held-out images."""
    import csv

    import numpy as np

    from edgecnn.preprocess import load_spec

    quantize_child(
        tool=tool, method=method, n=512, model=model, images=str(CALIB), out=out, spec=str(SAMPLE_SPEC),
        threads=threads, batch=batch,
    )  # fmt: skip
    qpath = Path(out).with_suffix(".xml") if tool == "nncf-ov" else Path(out)
    sp = load_spec(SAMPLE_SPEC)
    rows = list(csv.DictReader((EVAL / "labels.csv").open()))
    x = np.stack([sp.load(EVAL / r["file"]) for r in rows])
    y = np.array([int(r["label"]) for r in rows])
    preds = {}
    for name, path, rt in (("float", Path(model), "ort"), ("int8", qpath, runtime)):
        run = _runner(path, rt)
        preds[name] = np.array([int(np.argmax(run(x[i : i + 1]))) for i in range(len(x))])
    return {
        "top1_float": float(100 * np.mean(preds["float"] == y)),
        "top1_int8": float(100 * np.mean(preds["int8"] == y)),
        "agreement": float(100 * np.mean(preds["float"] == preds["int8"])),
    }


# ---------------------------------------------------------------- parent ----------------------------------------
def mirrored_folder(n: int) -> Path:
    """A folder of >= n images: the calibration images, then their mirror images."""
    from PIL import Image, ImageOps

    from edgecnn.preprocess import list_images

    files = list_images(CALIB)
    if n <= len(files):
        return CALIB
    d = WORK / f"calib_{n}"
    if d.is_dir() and len(list(d.iterdir())) >= n:
        return d
    d.mkdir(parents=True, exist_ok=True)
    for p in files:
        shutil.copy(p, d / p.name)
    for p in files[: n - len(files)]:
        with Image.open(p) as im:
            ImageOps.mirror(im).save(d / f"mirror_{p.name}")
    return d


def dynamic_batch(model: Path) -> Path:
    """A copy of ``model`` whose batch dimension is symbolic, so that every tool can calibrate on batches."""
    import onnx

    m = onnx.load(str(model))
    for vi in [*m.graph.input, *m.graph.output]:
        vi.type.tensor_type.shape.dim[0].dim_param = "batch"
    del m.graph.value_info[:]
    out = WORK / f"{model.stem}.dynbatch.onnx"
    onnx.save(m, str(out))
    return out


def qname(model: str, tool: str, method: str, n: int) -> str:
    return f"{model}/{tool}/{method}/N={n}"


def _row_label(v: dict[str, Any]) -> tuple[str, str, str, int]:
    p = v["params"]
    return p["model_name"], p["tool"], p["method"], p["n"]


def _st(payload: dict[str, Any], name: str, metric: str, spec: str) -> str:
    m, s = median(payload, name, metric), spread(payload, name, metric)
    return "-" if m is None or s is None else f"{m:{spec}} [{s[0]:{spec}}-{s[1]:{spec}}]"


def readme_table(payload: dict[str, Any]) -> str:
    """The quantize runs and their outputs (payload: calibration.json with calibration_latency.json inside)."""
    s, mach, lat = payload["settings"], payload["machine"], payload["latency"]
    timed = any("p50_ms" in v["summary"] for v in lat["variants"])
    head = (
        f"Median over {s['rounds']} alternating rounds, each run a fresh process [min-max over the rounds]; "
        f"{s['threads']} threads and batch {s['batch']} for every tool; {mach['cpu_model']} ({mach['cores_logical']}"
        f" cores), ORT {mach['versions']['onnxruntime']}, OpenVINO {mach['versions']['openvino']}, NNCF "
        f"{mach['versions']['nncf']}; load average {mach['loadavg_before'][0]:.1f} before, "
        f"{mach['loadavg_after'][0]:.1f} after (a shared machine). SQNR: INT8 logits vs FP32 on {SQNR_IMAGES} held-out "
        "images (deterministic, one run)."
    )
    cols = ["model", "tool", "method", "N", "wall s", "quantize s", "peak RSS MiB", "SQNR dB"]
    if timed:
        precs = sorted(
            {str(v["facts"]["openvino_precision"]) for v in lat["variants"] if "openvino_precision" in v["facts"]}
        )
        head += f" p50: {lat['settings']['rounds']} rounds of 100 runs, OpenVINO in {', '.join(precs)}."
        cols += ["p50 ORT ms", "p50 OV ms"]
    cols.append("status")
    lines = [head, "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for v in payload["variants"]:
        model, tool, method, n = _row_label(v)
        name = v["name"]
        eff = v["facts"].get("effective_batch")
        status = v["status"]
        if eff is not None and eff != s["batch"]:
            status += f" (edgecnn used batch {eff})"
        sq = median(lat, f"{name}/ort", "sqnr_db")
        sq = median(lat, f"{name}/openvino", "sqnr_db") if sq is None else sq
        cells = [
            model, tool, method, str(n), _st(payload, name, "wall_s", ".1f"), _st(payload, name, "work_s", ".1f"),
            _st(payload, name, "peak_rss_mib", ".0f"), "-" if sq is None else f"{sq:.1f}",
        ]  # fmt: skip
        if timed:
            cells += [_st(lat, f"{name}/ort", "p50_ms", ".2f"), _st(lat, f"{name}/openvino", "p50_ms", ".2f")]
        lines.append("| " + " | ".join([*cells, status]) + " |")
    if timed:
        for m in payload["float_models"]:
            cells = [m, "float32", "-", "-", "-", "-", "-", "-"]
            cells += [_st(lat, f"{m}/float32/ort", "p50_ms", ".2f"), _st(lat, f"{m}/float32/openvino", "p50_ms", ".2f")]
            lines.append("| " + " | ".join([*cells, "ok"]) + " |")
    return "\n".join(lines)


def ratios(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """edgecnn / peer per method, on the main model at the main N (ratios of medians)."""
    lat = payload["latency"]
    main, n = payload["main_model"], payload["samples"]
    out = []
    for method in ("minmax", "entropy", "percentile"):
        e = qname(main, "edgecnn", method, n)
        for peer in PEERS:
            p = qname(main, peer, method, n)
            vals = {}
            for metric in ("peak_rss_mib", "wall_s", "work_s"):
                a, b = median(payload, e, metric), median(payload, p, metric)
                vals[metric] = None if a is None or b is None else a / b
            if all(v is None for v in vals.values()):
                continue
            sq = [median(lat, f"{x}/ort", "sqnr_db") or median(lat, f"{x}/openvino", "sqnr_db") for x in (e, p)]
            vals["sqnr_db"] = None if None in sq else sq[0] - sq[1]  # type: ignore[operator]
            out.append({"method": method, "peer": peer, **vals})
    return out


def readme_ratios(payload: dict[str, Any]) -> str:
    lines = [
        "| method | peer | peak RSS | wall | quantize call | SQNR |",
        "|---|---|---|---|---|---|",
    ]

    def f(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}x" if x >= 0.1 else f"{x:.3f}x"

    for r in ratios(payload):
        sq = "-" if r["sqnr_db"] is None else f"{r['sqnr_db']:+.1f} dB"
        lines.append(
            f"| {r['method']} | {PEER_LABEL[r['peer']]} | {f(r['peak_rss_mib'])} | {f(r['wall_s'])} | {f(r['work_s'])} | {sq} |"
        )
    return "\n".join(lines)


# (method, peer, metric, at most this ratio edgecnn / peer): the goals the README states
GOALS = (
    ("entropy", "ort", "peak_rss_mib", 0.1),
    ("percentile", "ort", "peak_rss_mib", 0.1),
    ("minmax", "nncf-ov", "peak_rss_mib", 1.0),
    ("entropy", "ort", "work_s", 0.5),
    ("percentile", "ort", "work_s", 0.5),
    ("minmax", "ort", "work_s", 0.5),
    ("minmax", "nncf-ov", "work_s", 1.0),
)
_METRIC = {"peak_rss_mib": "peak RSS", "work_s": "quantize-call time"}


def readme_goals(payload: dict[str, Any]) -> str:
    """Each stated goal, met or not, from the ratio table (ratios of medians)."""
    rs = {(r["method"], r["peer"]): r for r in ratios(payload)}
    met, missed = [], []
    for method, peer, metric, bound in GOALS:
        r = rs.get((method, peer))
        x = None if r is None else r[metric]
        what = f"{_METRIC[metric]} <= {bound:g}x {PEER_LABEL[peer]}'s with {method}"
        if x is None:
            missed.append(f"{what} (not measured in this run)")
        elif x <= bound:
            met.append(f"{what} ({x:.2f}x)")
        else:
            missed.append(f"{what}: {x:.2f}x")
    out = []
    if met:
        out.append("- Goals met: " + "; ".join(met) + ".")
    if missed:
        out.append("- Goals NOT met: " + "; ".join(missed) + ".")
    return "\n".join(out)


def readme_accuracy(payload: dict[str, Any]) -> str:
    acc = payload["accuracy"]
    lines = [
        "| tool | method | runtime | top-1 FP32 % | top-1 INT8 % | agreement with FP32 % | status |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in acc["variants"]:
        p, name = v["params"], v["name"]
        g = {
            k: "-" if (x := median(acc, name, k)) is None else f"{x:.1f}"
            for k in ("top1_float", "top1_int8", "agreement")
        }

        lines.append(
            f"| {p['tool']} | {p['method']} | {p['runtime']} | {g['top1_float']} | {g['top1_int8']} | "
            f"{g['agreement']} | {v['status']} |"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--samples", type=int, default=128)
    ap.add_argument("--methods", default="minmax,entropy,percentile")
    ap.add_argument("--tools", default="edgecnn,ort,nncf-ov,nncf-onnx")
    ap.add_argument("--scaling", default="32,512", help="N values for edgecnn's memory-scaling rows ('' to skip)")
    ap.add_argument("--latency-models", default="mobilenetv2", help="more models: edgecnn vs ORT minmax")
    ap.add_argument("--accuracy", action=argparse.BooleanOptionalAction, default=True, help="bundled-model top-1")
    ap.add_argument("--rss-limit-gib", type=float, default=8.0)
    ap.add_argument(
        "--latency",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="time every output on ORT and OpenVINO (--no-latency: SQNR only; INT8 speed is int8_speed.py's job)",
    )
    common_args(ap)
    a = ap.parse_args()
    model = MODELS / f"{a.model}.onnx"
    if not model.exists():
        print(f"error: {model} not found; run: python benchmarks/build_models.py", file=sys.stderr)
        return 2
    settings = Settings(threads=a.threads, batch=a.batch, rounds=a.rounds, rss_limit_mib=a.rss_limit_gib * 1024)
    WORK.mkdir(parents=True, exist_ok=True)
    tools = a.tools.split(",")
    jobs: list[tuple[str, str, int, Path]] = []
    for tool in tools:
        jobs += [(tool, m, a.samples, model) for m in (["minmax"] if tool.startswith("nncf") else a.methods.split(","))]
    for n in [int(v) for v in a.scaling.split(",") if v]:
        jobs += [("edgecnn", "minmax", n, model), ("edgecnn", "entropy", n, model)]
    extra_models = [MODELS / f"{m}.onnx" for m in a.latency_models.split(",") if m]
    for p in extra_models:
        if p.exists():
            jobs += [("edgecnn", "minmax", min(a.samples, 128), p), ("ort", "minmax", min(a.samples, 128), p)]
    quant: list[Variant] = []
    outputs: dict[str, Path] = {}
    for tool, method, n, mpath in jobs:
        source = dynamic_batch(mpath) if a.batch > 1 else mpath
        name = qname(mpath.stem, tool, method, n)
        out = WORK / f"{name.replace('/', '_').replace('=', '')}.onnx"
        outputs[name] = out.with_suffix(".xml") if tool == "nncf-ov" else out
        params = {
            "tool": tool, "method": method, "n": n, "model": str(source), "images": str(mirrored_folder(n)),
            "out": str(out), "spec": str(SPEC), "model_name": mpath.stem,
        }  # fmt: skip
        quant.append(Variant(name=name, fn=f"{NAME}:quantize_child", params=params))
    float_models = [m for m in dict.fromkeys([model, *extra_models]) if m.exists()]
    extra = {"main_model": model.stem, "samples": a.samples, "float_models": [m.stem for m in float_models]}
    payload = run_benchmark(NAME, quant, settings, extra=extra, results=a.results)

    lat: list[Variant] = []
    for name, path in outputs.items():
        v = next(x for x in payload["variants"] if x["name"] == name)
        if v["rounds_ok"] == 0:
            continue
        ref = MODELS / f"{v['params']['model_name']}.onnx"
        for rt in ["openvino"] if v["params"]["tool"] == "nncf-ov" else ["ort", "openvino"]:
            params = {"model": str(path), "reference": str(ref), "runtime": rt, "timed": a.latency}
            rounds = None if a.latency else 1  # SQNR alone is deterministic: one round
            lat.append(Variant(name=f"{name}/{rt}", fn=f"{NAME}:latency_child", params=params, rounds=rounds))
    for m in float_models if a.latency else []:
        for rt in ("ort", "openvino"):
            params = {"model": str(m), "reference": str(m), "runtime": rt, "sqnr": False}
            lat.append(Variant(name=f"{m.stem}/float32/{rt}", fn=f"{NAME}:latency_child", params=params))
    lat_payload = run_benchmark(
        f"{NAME}_latency", lat, Settings(threads=a.threads, batch=1, rounds=a.rounds), results=a.results
    )

    acc_payload = None
    if a.accuracy:
        acc: list[Variant] = []
        for tool in tools:
            for method in ["minmax"] if tool.startswith("nncf") else a.methods.split(","):
                runtime = "openvino" if tool == "nncf-ov" else "ort"
                params = {
                    "tool": tool, "method": method, "model": str(SAMPLE_MODEL), "runtime": runtime,
                    "out": str(WORK / f"acc_{tool}_{method}.onnx"),
                }  # fmt: skip
                acc.append(
                    Variant(name=f"sample_cnn/{tool}/{method}", fn=f"{NAME}:accuracy_child", params=params, rounds=1)
                )
        acc_payload = run_benchmark(
            f"{NAME}_accuracy", acc, Settings(threads=a.threads, batch=1, rounds=a.rounds), results=a.results
        )

    view = {**payload, "latency": lat_payload, "accuracy": acc_payload}
    print(readme_table(view))
    print()
    print(readme_ratios(view))
    if acc_payload:
        print()
        print(readme_accuracy(view))
    return 0


if __name__ == "__main__":
    sys.exit(main())
