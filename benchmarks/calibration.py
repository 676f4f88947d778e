#!/usr/bin/env python3
"""Calibration benchmark: edgecnn vs ONNX Runtime `quantize_static` vs NNCF `nncf.quantize`.

    python benchmarks/calibration.py [--model resnet18] [--samples 256] [--methods minmax,entropy,percentile]
                                     [--scaling 64,1024] [--latency-models mobilenetv2] [--json out.json]

Every quantization runs in its own child process on the same model and the same images (the bundled
calibration images, through the same PreprocessSpec, `benchmarks/preprocess_224.toml`). Per run:
wall time of the child (imports included, the same for every tool) and of the quantization call alone,
peak RSS of the child (VmHWM), the output's SQNR against the float model on 32 held-out images, and the
INT8 p50 latency on ORT and on OpenVINO (2 threads, measured in a fresh child). A watchdog kills a child
whose RSS passes --rss-limit and marks it "does not fit".

Peers, as a user runs them by default:
- ORT: `onnxruntime.quantization.quantize_static(..., quant_format=QDQ, per_channel=True,
  calibrate_method=MinMax|Entropy|Percentile)`, its default int8 activations and weights.
- NNCF (benchmark-only dependency, `pip install 'edgecnn[bench]'`): `nncf.quantize(model, dataset,
  subset_size=N)`, default preset, on the OpenVINO model (its native backend; latency on OpenVINO only)
  and on the ONNX model (QDQ ONNX output; latency on both runtimes).
For N > 512 the image folder is the 512 calibration images plus their mirror images (written to a temp dir).
Build the models first: `python benchmarks/build_models.py`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CALIB, EVAL, MODELS, REPO, SPEC, ort_reader

SQNR_IMAGES = 32
SAMPLE_MODEL = REPO / "models" / "sample_cnn.onnx"
SAMPLE_SPEC = REPO / "calibration_data" / "preprocess.toml"
THREADS = 2


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load_images(folder: Path, n: int) -> np.ndarray:
    from edgecnn.preprocess import list_images, load_spec

    spec = load_spec(SPEC)
    return np.stack([spec.load(p) for p in list_images(folder)[:n]])


# ---------------------------------------------------------------- children ---------------------------------------
def child_quantize(
    tool: str, method: str, n: int, model: Path, images: Path, out: Path, spec_path: Path = SPEC
) -> dict[str, float]:
    t0 = time.perf_counter()
    if tool == "edgecnn":
        import onnx

        from edgecnn.preprocess import load_spec
        from edgecnn.quantize.api import QuantizeConfig, quantize
        from edgecnn.quantize.dataset import ImageDataset
        from edgecnn.quantize.estimators import Method

        t1 = time.perf_counter()
        ds = ImageDataset.open(images, load_spec(spec_path), n)
        q, _ = quantize(model, ds, QuantizeConfig(method=Method(method)))
        onnx.save(q, str(out))
    elif tool == "ort":
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static

        meth = {
            "minmax": CalibrationMethod.MinMax,
            "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile,
        }
        t1 = time.perf_counter()
        quantize_static(
            str(model),
            str(out),
            ort_reader(images, n, spec_path),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            calibrate_method=meth[method],
        )
    else:  # nncf-ov / nncf-onnx
        import nncf
        import onnx
        import openvino as ov

        from edgecnn.preprocess import list_images, load_spec

        spec = load_spec(spec_path)
        files = list_images(images)[:n]
        t1 = time.perf_counter()
        as_dict = tool == "nncf-onnx"  # the ONNX backend feeds {input name: array}
        dataset = nncf.Dataset(files, lambda p: {"input": spec.load(p)[None]} if as_dict else spec.load(p)[None])
        if tool == "nncf-ov":
            q = nncf.quantize(ov.Core().read_model(str(model)), dataset, subset_size=n)
            ov.save_model(q, str(out.with_suffix(".xml")))
        else:
            q = nncf.quantize(onnx.load(str(model)), dataset, subset_size=n)
            onnx.save(q, str(out))
    t2 = time.perf_counter()
    return {"work_s": t2 - t1, "setup_s": t1 - t0, "peak_rss_mib": peak_rss_mib()}


def _session(path: Path, runtime: str):
    if path.suffix == ".xml":
        import openvino as ov

        compiled = ov.Core().compile_model(
            str(path),
            "CPU",
            {"INFERENCE_NUM_THREADS": str(THREADS), "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"},
        )
        req = compiled.create_infer_request()
        return lambda x: np.array(req.infer({0: x})[compiled.outputs[0]])
    from edgecnn.runtimes import open_session

    sess = open_session(runtime, path, threads=THREADS)
    return lambda x: sess.run({"input": x})[0]


def child_evaluate(model: Path, reference: Path, runtimes: list[str]) -> dict[str, float]:
    x = load_images(EVAL, SQNR_IMAGES)
    out: dict[str, float] = {}
    ref_run = _session(reference, "ort")
    ref = np.concatenate([ref_run(x[i : i + 1]) for i in range(len(x))])
    for rt in runtimes:
        run = _session(model, rt)
        y = np.concatenate([run(x[i : i + 1]) for i in range(len(x))])
        if rt == runtimes[0]:
            out["sqnr_db"] = float(
                10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / max(np.sum((ref - y) ** 2), 1e-30))
            )
        one = x[:1]
        for _ in range(15):
            run(one)
        ts = []
        for _ in range(100):
            t = time.perf_counter_ns()
            run(one)
            ts.append(time.perf_counter_ns() - t)
        out[f"p50_{rt}_ms"] = float(np.median(ts) / 1e6)
    return out


# ---------------------------------------------------------------- parent ----------------------------------------
def spawn(args: list[str], rss_limit_mib: float, timeout_s: float = 1800) -> tuple[dict | None, float, str]:
    """Run this script as a child; return (its JSON result or None, wall seconds, status)."""
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    ps = psutil.Process(proc.pid)
    status = "ok"
    while proc.poll() is None:
        try:
            if ps.memory_info().rss / 2**20 > rss_limit_mib:
                proc.kill()
                status = f"does not fit (> {rss_limit_mib / 1024:.0f} GiB)"
                break
        except psutil.NoSuchProcess:
            break
        if time.perf_counter() - t0 > timeout_s:
            proc.kill()
            status = "timeout"
            break
        time.sleep(0.05)
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    if status == "ok" and proc.returncode != 0:
        status = f"failed: {(stderr.strip().splitlines() or ['?'])[-1][:120]}"
    result = None
    if status == "ok":
        result = json.loads(stdout.strip().splitlines()[-1])
    return result, wall, status


def mirrored_folder(n: int, tmp: Path) -> Path:
    """A folder of >= n images: the calibration images, then their mirror images."""
    from PIL import Image, ImageOps

    from edgecnn.preprocess import list_images

    files = list_images(CALIB)
    if n <= len(files):
        return CALIB
    d = tmp / f"calib_{n}"
    d.mkdir(exist_ok=True)
    for p in files:
        shutil.copy(p, d / p.name)
    for p in files[: n - len(files)]:
        with Image.open(p) as im:
            ImageOps.mirror(im).save(d / f"mirror_{p.name}")
    return d


def fmt(v: float | None, spec: str) -> str:
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, spec)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--methods", default="minmax,entropy,percentile")
    ap.add_argument("--tools", default="edgecnn,ort,nncf-ov,nncf-onnx")
    ap.add_argument("--scaling", default="64,1024", help="N values for the memory-scaling rows ('' to skip)")
    ap.add_argument("--latency-models", default="mobilenetv2", help="more models: edgecnn vs ORT minmax, latency only")
    ap.add_argument("--accuracy", action=argparse.BooleanOptionalAction, default=True, help="bundled-model top-1")
    ap.add_argument("--rss-limit-gib", type=float, default=12.0)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    model = MODELS / f"{a.model}.onnx"
    if not model.exists():
        print(f"error: {model} not found; run: python benchmarks/build_models.py", file=sys.stderr)
        return 2
    limit = a.rss_limit_gib * 1024
    rows: list[dict] = []
    tmp = Path(tempfile.mkdtemp(prefix="edgecnn-calbench-"))
    try:
        jobs: list[tuple[str, str, int, Path]] = []
        for tool in a.tools.split(","):
            methods = ["minmax"] if tool.startswith("nncf") else a.methods.split(",")
            jobs += [(tool, m, a.samples, model) for m in methods]
        for n in [int(v) for v in a.scaling.split(",") if v]:
            jobs += [("edgecnn", "minmax", n, model), ("edgecnn", "entropy", n, model)]
            if n > a.samples:
                jobs.append(("ort", "entropy", n, model))
        for extra in [m for m in a.latency_models.split(",") if m]:
            p = MODELS / f"{extra}.onnx"
            if p.exists():
                jobs += [("edgecnn", "minmax", min(a.samples, 128), p), ("ort", "minmax", min(a.samples, 128), p)]
        for i, (tool, method, n, mpath) in enumerate(jobs):
            images = mirrored_folder(n, tmp)
            out = tmp / f"{i}_{tool}_{method}_{n}.onnx"
            print(f"[{i + 1}/{len(jobs)}] {mpath.stem} {tool} {method} N={n} ...", flush=True)
            res, wall, status = spawn(["quantize", tool, method, str(n), str(mpath), str(images), str(out)], limit)
            row = {"model": mpath.stem, "tool": tool, "method": method, "samples": n, "wall_s": wall, "status": status}
            if res:
                row.update(res)
                qpath = out.with_suffix(".xml") if tool == "nncf-ov" else out
                runtimes = ["openvino"] if tool == "nncf-ov" else ["ort", "openvino"]
                ev, _, st2 = spawn(["evaluate", str(qpath), str(mpath), ",".join(runtimes)], limit)
                row.update(ev or {"status": st2})
            rows.append(row)
        for mpath in {model, *(MODELS / f"{m}.onnx" for m in a.latency_models.split(",") if m)}:
            if mpath.exists():
                ev, _, _ = spawn(["evaluate", str(mpath), str(mpath), "ort,openvino"], limit)
                ev = {k: v for k, v in (ev or {}).items() if k != "sqnr_db"}  # the reference itself
                rows.append({"model": mpath.stem, "tool": "float32", "method": "-", "samples": 0, "status": "ok", **ev})
        if a.accuracy:
            acc_rows = accuracy_rows(a.tools.split(","), a.methods.split(","), tmp, limit)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report(rows, a.samples)
    if a.accuracy:
        report_accuracy(acc_rows)
    if a.json:
        payload = {"schema_version": 1, "kind": "calibration-benchmark", "rows": rows}
        if a.accuracy:
            payload["accuracy"] = acc_rows
        a.json.write_text(json.dumps(payload, indent=2))
    return 0


def child_accuracy(model: Path, reference: Path, runtime: str) -> dict[str, float]:
    """Top-1 of ``model`` and ``reference`` on the bundled evaluation split, and their agreement."""
    import csv

    from edgecnn.preprocess import load_spec

    spec = load_spec(SAMPLE_SPEC)
    rows = list(csv.DictReader((EVAL / "labels.csv").open()))
    x = np.stack([spec.load(EVAL / r["file"]) for r in rows])
    y = np.array([int(r["label"]) for r in rows])
    preds = {}
    for name, path, rt in (("float", reference, "ort"), ("int8", model, runtime)):
        run = _session(path, rt)
        preds[name] = np.array([int(np.argmax(run(x[i : i + 1]))) for i in range(len(x))])
    return {
        "top1_float": float(100 * np.mean(preds["float"] == y)),
        "top1_int8": float(100 * np.mean(preds["int8"] == y)),
        "agreement": float(100 * np.mean(preds["float"] == preds["int8"])),
    }


def accuracy_rows(tools: list[str], methods: list[str], tmp: Path, limit: float) -> list[dict]:
    """Each tool quantizes the bundled model on all 512 calibration images; top-1 on the 1,000 held-out."""
    out_rows = []
    for tool in tools:
        for method in ["minmax"] if tool.startswith("nncf") else methods:
            out = tmp / f"acc_{tool}_{method}.onnx"
            print(f"[accuracy] sample_cnn {tool} {method} ...", flush=True)
            args = ["quantize", tool, method, "512", str(SAMPLE_MODEL), str(CALIB), str(out), str(SAMPLE_SPEC)]
            res, _, status = spawn(args, limit)
            row = {"tool": tool, "method": method, "status": status}
            if res:
                qpath = out.with_suffix(".xml") if tool == "nncf-ov" else out
                runtime = "openvino" if tool == "nncf-ov" else "ort"
                ev, _, st2 = spawn(["accuracy", str(qpath), str(SAMPLE_MODEL), runtime], limit)
                row.update(ev or {"status": st2}, runtime=runtime)
            out_rows.append(row)
    return out_rows


def report_accuracy(rows: list[dict]) -> None:
    print("\nBundled model (sample_cnn), 512 calibration images, top-1 on the 1,000 held-out images:")
    print("| tool | method | runtime | top-1 float % | top-1 INT8 % | drop (pts) | agreement % | status |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        drop = r["top1_float"] - r["top1_int8"] if "top1_int8" in r else None
        print(
            f"| {r['tool']} | {r['method']} | {r.get('runtime', '-')} | {fmt(r.get('top1_float'), '.1f')} | "
            f"{fmt(r.get('top1_int8'), '.1f')} | {fmt(drop, '+.1f')} | {fmt(r.get('agreement'), '.1f')} | {r['status']} |"
        )


def report(rows: list[dict], n: int) -> None:
    head = (
        "| model | tool | method | N | wall s | quantize s | peak RSS MiB | SQNR dB | p50 ORT ms | p50 OV ms | status |"
    )
    print("\n" + head + "\n|" + "---|" * 11)
    for r in rows:
        print(
            f"| {r['model']} | {r['tool']} | {r['method']} | {r['samples'] or '-'} | {fmt(r.get('wall_s'), '.1f')} | "
            f"{fmt(r.get('work_s'), '.1f')} | {fmt(r.get('peak_rss_mib'), '.0f')} | {fmt(r.get('sqnr_db'), '.1f')} | "
            f"{fmt(r.get('p50_ort_ms'), '.2f')} | {fmt(r.get('p50_openvino_ms'), '.2f')} | {r['status']} |"
        )

    def get(model: str, tool: str, method: str, samples: int) -> dict | None:
        return next(
            (
                r
                for r in rows
                if (r["model"], r["tool"], r["method"], r["samples"]) == (model, tool, method, samples)
                and r["status"] == "ok"
            ),
            None,
        )

    print("\nRatios (edgecnn / peer; < 1 is better for time and memory):")
    main_model = rows[0]["model"]
    for method in ("minmax", "entropy", "percentile"):
        e = get(main_model, "edgecnn", method, n)
        for peer in ("ort", "nncf-ov", "nncf-onnx"):
            p = get(main_model, peer, method, n)
            if e and p:
                print(
                    f"  {method:10s} vs {peer:9s}: peak RSS {e['peak_rss_mib'] / p['peak_rss_mib']:.3f}x, "
                    f"wall {e['wall_s'] / p['wall_s']:.2f}x, quantize {e['work_s'] / p['work_s']:.2f}x, "
                    f"SQNR {e.get('sqnr_db', float('nan')) - p.get('sqnr_db', float('nan')):+.1f} dB"
                )
    for method in ("minmax", "entropy"):
        scal = sorted(
            (
                r
                for r in rows
                if r["tool"] == "edgecnn" and r["method"] == method and r["model"] == main_model and r["status"] == "ok"
            ),
            key=lambda r: r["samples"],
        )
        if len(scal) >= 2:
            lo, hi = scal[0], scal[-1]
            print(
                f"  edgecnn {method} RSS growth N={lo['samples']} -> N={hi['samples']}: {100 * (hi['peak_rss_mib'] / lo['peak_rss_mib'] - 1):+.1f}%"
            )
    for r in rows:
        if r["tool"] == "float32":
            for q in rows:
                if (
                    q["model"] == r["model"]
                    and q["tool"] in ("edgecnn", "ort")
                    and q["method"] == "minmax"
                    and q["status"] == "ok"
                    and q["samples"] != 64
                ):
                    ratios = ", ".join(
                        f"{rt} {q[f'p50_{rt}_ms'] / r[f'p50_{rt}_ms']:.2f}x"
                        for rt in ("ort", "openvino")
                        if f"p50_{rt}_ms" in q and f"p50_{rt}_ms" in r
                    )
                    verdict = (
                        " (NOT faster than FP32 on ORT)" if q.get("p50_ort_ms", 0) >= r.get("p50_ort_ms", 1e9) else ""
                    )
                    print(f"  {r['model']} INT8 ({q['tool']}, N={q['samples']}) latency vs FP32: {ratios}{verdict}")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        mode, rest = sys.argv[2], sys.argv[3:]
        if mode == "quantize":
            tool, method, n, model, images, out, *spec = rest
            res = child_quantize(tool, method, int(n), Path(model), Path(images), Path(out), *map(Path, spec))
        elif mode == "accuracy":
            model, reference, runtime = rest
            res = child_accuracy(Path(model), Path(reference), runtime)
        else:
            model, reference, runtimes = rest
            res = child_evaluate(Path(model), Path(reference), runtimes.split(","))
        print(json.dumps(res))
        sys.exit(0)
    sys.exit(main())
