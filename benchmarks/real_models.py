#!/usr/bin/env python3
"""INT8 on models shaped like real exports: edgecnn vs ONNX Runtime `quantize_static` vs NNCF, side by side.

    python benchmarks/real_models.py [--models yolo320,mbv3-224,tinted-cls,mbv3-trained,det-trained]
                                     [--rounds 3] [--iters 30] [--calib 64] [--eval 64] [--json out.json]
    python benchmarks/real_models.py --markdown benchmarks/results/real_models.json   # README tables

Models (benchmarks/real_model_defs.py, exported with torch.onnx.export as a user would; built once into
benchmarks/models/real/):
  yolo320       YOLOv8n-style detector at 320x320 (C2f, SPPF, SiLU = Sigmoid·Mul, Split, Concat, MaxPool,
                nearest Resize, two outputs), opset 17, seeded weights, BatchNorm statistics from the images
  mbv3-224      MobileNetV3-Small-style classifier at 224x224, opset 10 (HardSwish = HardSigmoid·Mul, SE)
  tinted-cls    small RGB classifier on tinted images that do not span 0..255 (opset 13)
  mbv3-block    MobileNetV3 block (HardSwish as HardSigmoid·Mul, depthwise 5x5, SE), opset 10
  det-block     YOLO-style block (SiLU, C2f Split/Concat, SPPF MaxPool chain, Resize, two outputs)
The last three are the test models of tests/test_quantize_real.py: seeded convolutions with heads fitted
(ridge regression) on tinted shape images, so their outputs mean something; they are for accuracy. The
seeded large models are for latency (a random deep network amplifies any noise, so their SQNR is shown but
says little). Data: synthetic tinted RGB shape images written as PNG files (calibration and held-out
evaluation sets are disjoint).

Variants, each written by its own child process:
  edgecnn      `edgecnn quantize` defaults (method auto, --runtime ort: u8 asymmetric activations)
  edgecnn-ov   OpenVINO's scheme (symmetric u8/s8 activations) with activations as float post-ops of their
               Conv, no Q/DQ between (NNCF's placement; op policy "openvino-postops")
  edgecnn-ov-int  `edgecnn quantize --runtime openvino`: OpenVINO's scheme, every op that has an integer
               form in integer (this run made it the default for --runtime openvino)
  ort          onnxruntime.quantization.quantize_static(QDQ, per_channel=True) after quant_pre_process, defaults
  nncf-ov      nncf.quantize on the OpenVINO model (its native backend), default preset
  nncf-onnx    nncf.quantize on the ONNX model
Accuracy (one child per variant): SQNR of every output vs the FP32 model on the evaluation images, and
agreement with FP32 (classifiers: top-1; detectors: per anchor, confident (score > 0.25) and same class).
Latency: every (variant, runtime) cell in its own fresh process, --rounds alternating rounds (the cell order
rotates each round), --iters timed runs after warm-up at --threads (2) per cell; median of the rounds'
p50 and the spread (max - min). OpenVINO's FP32 is measured twice: INFERENCE_PRECISION_HINT=f32 and the
plugin's default (bf16 on CPUs with AMX), the baseline a user actually gets; INT8 models run with the
default hint. The runtime precision of every layer of OpenVINO's execution graph and the ops ONNX Runtime
executes after its optimizations are counted.
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import MODELS, REPO

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

WORK = MODELS / "real"
RESULTS = REPO / "benchmarks" / "results" / "real_models.json"
VARIANTS = ("edgecnn", "edgecnn-ov", "edgecnn-ov-int", "ort", "nncf-ov", "nncf-onnx")
MODEL_NAMES = ("yolo320", "mbv3-224", "tinted-cls", "mbv3-block", "det-block")
FITTED = {"tinted-cls": "classifier", "mbv3-block": "mbv3_block", "det-block": "detector_block"}


# ---------------------------------------------------------------- models and data -------------------------------
def build(name: str, calib_n: int, eval_n: int) -> dict[str, object]:
    """Build (once) the model, its calibration and evaluation image folders; return their description."""
    import real_model_defs as d
    import torch

    out = WORK / name
    meta_path = out / "meta.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("calib_n") == calib_n and meta.get("eval_n") == eval_n:
            return meta
    out.mkdir(parents=True, exist_ok=True)
    if name in FITTED:
        return build_fitted(name, out, calib_n, eval_n)
    size = {"yolo320": 320, "mbv3-224": 224}[name]
    normalize = name.startswith("mbv3")
    torch.manual_seed(0)
    imgs, _, _ = d.shape_images(calib_n + eval_n, size, seed=zlib.crc32(name.encode()) % 1000)
    ca, ev = np.split(np.arange(len(imgs)), [calib_n])
    x = d.to_tensor(imgs[ca][:16], normalize)
    kind = "detector" if name == "yolo320" else "classifier"
    outputs = ["boxes", "scores"] if kind == "detector" else ["logits"]
    opset = 10 if name.startswith("mbv3") else 17
    model = d.settle_bn(d.YoloLike() if name == "yolo320" else d.MobileNetV3Like(), x)
    d.export(model, out / "model.onnx", (1, 3, size, size), opset, outputs)
    toml = d.spec_toml(size, normalize)
    d.write_pngs(imgs[ca], out / "calib", toml)
    d.write_pngs(imgs[ev], out / "eval", toml)
    meta = {"name": name, "kind": kind, "size": size, "opset": opset, "calib_n": calib_n, "eval_n": eval_n}
    meta_path.write_text(json.dumps(meta))
    return meta


def build_fitted(name: str, out: Path, calib_n: int, eval_n: int) -> dict[str, object]:
    """The small test models of tests/test_quantize_real.py (heads fitted by ridge regression on 192 tinted
    images): trained enough that their outputs mean something, without a training loop."""
    import shutil

    import onnx

    from tests import test_quantize_real as t

    for sub in ("train", "calib", "eval"):
        shutil.rmtree(out / sub, ignore_errors=True)
    imgs, labels = t.shapes(192 + calib_n + eval_n, seed=0)
    train = t.write_folder(out / "train", imgs[:192])
    t.write_folder(out / "calib", imgs[192 : 192 + calib_n])
    t.write_folder(out / "eval", imgs[192 + calib_n :])
    model = getattr(t, FITTED[name])(out, t.tensors(train), labels[:192])
    onnx.save(model, str(out / "model.onnx"))
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    kind = "detector" if name == "det-block" else "classifier"
    meta = {"name": name, "kind": kind, "size": t.SIZE, "opset": opset, "calib_n": calib_n, "eval_n": eval_n}
    (out / "meta.json").write_text(json.dumps(meta))
    return meta


# ---------------------------------------------------------------- children --------------------------------------
def child_quantize(variant: str, model: Path, calib: Path, n: int, out: Path) -> dict[str, object]:
    from edgecnn.preprocess import list_images, load_spec

    spec = load_spec(calib / "preprocess.toml")
    files = list_images(calib)[:n]
    t0 = time.perf_counter()
    info: dict[str, object] = {}
    if variant.startswith("edgecnn"):
        import onnx

        from edgecnn.quantize.api import QuantizeConfig, quantize
        from edgecnn.quantize.dataset import ImageDataset
        from edgecnn.quantize.params import RUNTIME_SCHEMES

        rt = "ort" if variant == "edgecnn" else "openvino"
        policy = {"edgecnn": "ort", "edgecnn-ov": "openvino-postops", "edgecnn-ov-int": "openvino"}[variant]
        config = QuantizeConfig(runtime=policy, scheme=RUNTIME_SCHEMES[rt])
        q, rep = quantize(model, ImageDataset.open(calib, spec, n), config)
        onnx.save(q, str(out))
        info = {"kept_float": len(rep.kept_float), "methods": rep.methods_chosen, "input_ranges": rep.input_ranges}
    elif variant == "ort":
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.it = iter(files)

            def get_next(self):  # -> dict | None
                p = next(self.it, None)
                return None if p is None else {"input": spec.load(p)[None]}

        pre = out.with_name(out.stem + "_pre.onnx")
        quant_pre_process(str(model), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True)
    else:
        import nncf
        import onnx
        import openvino as ov

        if variant == "nncf-ov":
            ds = nncf.Dataset(files, lambda p: spec.load(p)[None])
            ov.save_model(nncf.quantize(ov.Core().read_model(str(model)), ds, subset_size=n), str(out))
        else:
            ds = nncf.Dataset(files, lambda p: {"input": spec.load(p)[None]})
            onnx.save(nncf.quantize(onnx.load(str(model)), ds, subset_size=n), str(out))
    return {"quantize_s": time.perf_counter() - t0, **info}


def _runner(path: Path, runtime: str, precision: str = "default"):
    from edgecnn.runtimes import open_session

    opts = {"inference_precision": precision} if runtime == "openvino" else {}
    sess = open_session(runtime, path, threads=2, options=opts)
    name = sess.inputs()[0].name
    return sess, lambda x: sess.run({name: x})


def child_accuracy(kind: str, ref: Path, cand: Path, runtime: str, data: Path, n: int) -> dict[str, object]:
    from edgecnn.preprocess import list_images, load_spec

    spec = load_spec(data / "preprocess.toml")
    xs = [spec.load(p)[None] for p in list_images(data)[:n]]
    _, run_ref = _runner(ref, "ort")
    # OpenVINO in f32 for accuracy, so the number is the quantization's, not bf16's.
    _, run_q = _runner(cand, runtime, "f32")
    refs = [run_ref(x) for x in xs]
    outs = [run_q(x) for x in xs]
    sqnr = []
    for k in range(len(refs[0])):
        r = np.concatenate([o[k] for o in refs]).astype(np.float64)
        c = np.concatenate([o[k] for o in outs]).astype(np.float64)
        sqnr.append(float(10 * np.log10(np.sum(r**2) / max(np.sum((r - c) ** 2), 1e-30))))
    if kind == "classifier":
        agree = float(np.mean([np.argmax(a[0]) == np.argmax(b[0]) for a, b in zip(refs, outs, strict=True)]))
    else:  # detector: per anchor, (confident, class) must match
        ra = np.concatenate([o[1] for o in refs])  # scores [N, C, A]
        ca = np.concatenate([o[1] for o in outs])
        rk = np.where(ra.max(1) > 0.25, ra.argmax(1), -1)
        ck = np.where(ca.max(1) > 0.25, ca.argmax(1), -1)
        agree = float(np.mean(rk == ck))
    return {"sqnr_db": sqnr, "agreement_pct": 100 * agree}


def child_latency(path: Path, runtime: str, precision: str, iters: int) -> dict[str, object]:
    sess, _ = _runner(path, runtime, precision)
    spec = sess.inputs()[0]
    x = np.random.default_rng(0).random(spec.shape, dtype=np.float32)
    call = sess.bind({spec.name: x}) if hasattr(sess, "bind") else (lambda: sess.run({spec.name: x}))
    for _ in range(max(5, iters // 5)):
        call()
    ts = []
    for _ in range(iters):
        t = time.perf_counter_ns()
        call()
        ts.append(time.perf_counter_ns() - t)
    out: dict[str, object] = {"p50_ms": float(np.median(ts)) / 1e6}
    if runtime == "openvino":
        out["inference_precision"] = sess.inference_precision
        out["layers"] = sess.runtime_precisions()
    return out


def ort_executes(path: Path, tmp: Path) -> dict[str, int]:
    """What ONNX Runtime runs after its graph optimizations: integer ops, float ops, standalone Q/DQ."""
    import onnx
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.log_severity_level = 3
    so.optimized_model_filepath = str(tmp / f"{path.stem}.opt.onnx")
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    ops = collections.Counter(n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node)
    qdq = ops["QuantizeLinear"] + ops["DequantizeLinear"]
    integer = sum(v for k, v in ops.items() if k.startswith(("QLinear", "QGemm", "Nhwc")))
    moves = {"Reshape", "Transpose", "Split", "Concat", "Resize", "Slice", "Flatten", "Squeeze", "Unsqueeze", "Shape"}
    float_ops = sum(v for k, v in ops.items() if k not in moves and not k.startswith(("QLinear", "QGemm", "Nhwc")))
    return {"integer": integer, "float": float_ops - qdq, "qdq": qdq}


CHILDREN = {"quantize": child_quantize, "accuracy": child_accuracy, "latency": child_latency}


def spawn(child: str, **kw: object) -> tuple[dict | None, str]:
    """Run one child (a fresh Python process); return its JSON result or None and a status."""
    proc = subprocess.run(
        [sys.executable, __file__, "--child", child, json.dumps({k: str(v) for k, v in kw.items()})],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if proc.returncode != 0:
        tail = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        return None, f"failed: {(tail or ['?'])[-1][:140]}"
    return json.loads(proc.stdout.strip().splitlines()[-1]), "ok"


def run_child(kind: str, args: dict[str, str]) -> None:
    fn = CHILDREN[kind]
    conv = {"n": int, "iters": int, "model": Path, "calib": Path, "out": Path, "ref": Path, "cand": Path}
    conv |= {"data": Path, "path": Path}
    res = fn(**{k: conv.get(k, str)(v) for k, v in args.items()})
    print(json.dumps(res))


# ---------------------------------------------------------------- parent ----------------------------------------
def measure(names: list[str], rounds: int, iters: int, calib_n: int, eval_n: int, tmp: Path) -> dict[str, object]:
    rows: list[dict[str, object]] = []
    for name in names:
        meta = build(name, calib_n, eval_n)
        mdir = WORK / name
        model = mdir / "model.onnx"
        files: dict[str, Path] = {"fp32": model}
        for v in VARIANTS:
            t0 = time.perf_counter()
            out = tmp / f"{name}_{v}{'.xml' if v == 'nncf-ov' else '.onnx'}"
            res, status = spawn("quantize", variant=v, model=model, calib=mdir / "calib", n=calib_n, out=out)
            row: dict[str, object] = {"model": name, "variant": v, "status": status, **(res or {})}
            if res is not None:
                files[v] = out
            rows.append(row)
            print(f"  {name} {v}: quantize {status} ({time.perf_counter() - t0:.0f} s)", flush=True)
        # Accuracy: ONNX variants on ORT (and edgecnn-ov / nncf-ov on OpenVINO, which they are made for).
        for row in [r for r in rows if r["model"] == name and r["variant"] in files]:
            v = str(row["variant"])
            rt = "openvino" if v in ("nncf-ov", "edgecnn-ov", "edgecnn-ov-int") else "ort"
            acc, st = spawn(
                "accuracy", kind=meta["kind"], ref=model, cand=files[v], runtime=rt, data=mdir / "eval", n=eval_n
            )
            row["accuracy_runtime"] = rt
            row.update(acc or {"accuracy_status": st})
            if v != "nncf-ov":
                try:
                    row["ort_executes"] = ort_executes(files[v], tmp)
                except Exception as e:  # the file ORT cannot load is itself a result
                    row["ort_executes"] = {"error": str(e).splitlines()[0][:100]}
        # Latency: alternating rounds, fresh process per cell.
        cells = [("fp32", "ort", "default"), ("fp32", "openvino", "f32"), ("fp32", "openvino", "default")]
        cells += [(v, rt, "default") for v in VARIANTS if v in files for rt in ("ort", "openvino")]
        cells = [c for c in cells if not (c[0] == "nncf-ov" and c[1] == "ort")]
        samples: dict[tuple[str, str, str], list[float]] = {c: [] for c in cells}
        extra: dict[tuple[str, str, str], dict] = {}
        for r in range(rounds):
            order = cells[r % len(cells) :] + cells[: r % len(cells)]
            for c in order:
                res, st = spawn("latency", path=files[c[0]], runtime=c[1], precision=c[2], iters=iters)
                if res is None:
                    extra[c] = {"latency_status": st}
                    continue
                samples[c].append(float(res["p50_ms"]))
                extra[c] = {k: v for k, v in res.items() if k != "p50_ms"}
            print(f"  {name}: latency round {r + 1}/{rounds} done", flush=True)
        lat = []
        for c, s in samples.items():
            lat.append(
                {
                    "model": name,
                    "variant": c[0],
                    "runtime": c[1],
                    "precision_hint": c[2],
                    "p50_ms": float(np.median(s)) if s else None,
                    "spread_ms": float(max(s) - min(s)) if s else None,
                    "rounds": s,
                    **extra.get(c, {}),
                }
            )
        rows.append({"model": name, "variant": "fp32", "status": "ok", "latency": lat, **meta})
    return {"rows": rows, "threads": 2, "rounds": rounds, "iters": iters, "calib_n": calib_n, "eval_n": eval_n}


def machine() -> dict[str, str]:
    import platform

    import onnxruntime
    import openvino

    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in ln),
        platform.processor(),
    )
    flags = next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")), "")
    isa = [f for f in ("avx512_vnni", "amx_int8", "amx_bf16", "avx512_bf16") if f" {f}" in flags]
    try:
        import nncf

        nncf_v = nncf.__version__
    except ImportError:
        nncf_v = "not installed"
    return {
        "cpu": cpu,
        "isa": ",".join(isa),
        "ort": onnxruntime.__version__,
        "openvino": openvino.get_version().split("-")[0],
        "nncf": nncf_v,
    }


def markdown(data: dict) -> str:
    """The README tables, from the JSON alone."""
    rows = data["rows"]
    lines = [
        f"{data['machine']['cpu']} ({data['machine']['isa']}), ORT {data['machine']['ort']}, OpenVINO "
        f"{data['machine']['openvino']}, NNCF {data['machine']['nncf']}; {data['threads']} threads, "
        f"{data['rounds']} alternating rounds x {data['iters']} runs, fresh process per cell; calibration "
        f"{data['calib_n']} images, evaluation {data['eval_n']} held-out images.",
        "",
        "| model | tool | SQNR dB (per output) | agreement % | p50 ORT ms (vs FP32) | p50 OpenVINO ms "
        "(vs FP32 f32 / vs default bf16) | ORT runs: int / float / Q-DQ | OpenVINO layers by precision |",
        "|---|---|---|---|---|---|---|---|",
    ]
    by_model: dict[str, list[dict]] = collections.defaultdict(list)
    for r in rows:
        by_model[r["model"]].append(r)
    for model, rs in by_model.items():
        lat = next(r for r in rs if r["variant"] == "fp32")["latency"]

        def cell(v: str, rt: str, hint: str = "default", lat: list = lat) -> dict:
            return next(
                (x for x in lat if x["variant"] == v and x["runtime"] == rt and x["precision_hint"] == hint), {}
            )

        base_ort = cell("fp32", "ort").get("p50_ms")
        base_f32 = cell("fp32", "openvino", "f32").get("p50_ms")
        base_def = cell("fp32", "openvino").get("p50_ms")
        lines.append(
            f"| {model} | FP32 | - | - | {_ms(cell('fp32', 'ort'))} | f32 {_ms(cell('fp32', 'openvino', 'f32'))}, "
            f"default ({cell('fp32', 'openvino').get('inference_precision', '?')}) {_ms(cell('fp32', 'openvino'))} | - | "
            f"{_layers(cell('fp32', 'openvino'))} |"
        )
        for r in rs:
            if r["variant"] == "fp32":
                continue
            v = r["variant"]
            if r["status"] != "ok":
                lines.append(f"| {model} | {v} | {r['status']} | | | | | |")
                continue
            sq = ", ".join(f"{s:.1f}" for s in r.get("sqnr_db", [])) or _short(r.get("accuracy_status", "-"))
            ag = f"{r['agreement_pct']:.1f}" if "agreement_pct" in r else "-"
            if r.get("accuracy_runtime") == "openvino":
                sq += " (OV)"
            o, ov = cell(v, "ort"), cell(v, "openvino")
            ort_s = f"{_ms(o)} ({_ratio(o, base_ort)})" if o.get("p50_ms") else _short(o.get("latency_status", "-"))
            ov_s = (
                f"{_ms(ov)} ({_ratio(ov, base_f32)} / {_ratio(ov, base_def)})"
                if ov.get("p50_ms")
                else _short(ov.get("latency_status", "-"))
            )
            ex = r.get("ort_executes", {})
            ex_s = f"{ex['integer']} / {ex['float']} / {ex['qdq']}" if "integer" in ex else _short(ex.get("error", "-"))
            lines.append(f"| {model} | {v} | {sq} | {ag} | {ort_s} | {ov_s} | {ex_s} | {_layers(ov)} |")
    return "\n".join(lines)


def _short(status: str) -> str:
    """A failure in a few words for the table (the JSON keeps the whole message)."""
    if "INVALID_GRAPH" in status or "onnxruntime cannot load" in status:
        return "invalid file (ORT: INVALID_GRAPH)"
    if "cannot compile" in status:
        return "does not compile (OpenVINO)"
    return "failed (message in the JSON)" if status.startswith("failed") else status[:60]


def _ms(c: dict) -> str:
    if not c.get("p50_ms"):
        return "-"
    return f"{c['p50_ms']:.2f} ±{c['spread_ms'] / 2:.2f}"


def _ratio(c: dict, base: float | None) -> str:
    return f"{c['p50_ms'] / base:.2f}x" if c.get("p50_ms") and base else "-"


def _layers(c: dict) -> str:
    layers = c.get("layers") or {}
    return " ".join(f"{k} {v}" for k, v in sorted(layers.items(), key=lambda kv: -kv[1])) or "-"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODEL_NAMES))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--calib", type=int, default=64)
    ap.add_argument("--eval", type=int, default=64)
    ap.add_argument("--json", type=Path, default=RESULTS)
    ap.add_argument("--markdown", type=Path, help="print the README tables from this JSON and exit")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        run_child(a.child[0], json.loads(a.child[1]))
        return 0
    if a.markdown:
        print(markdown(json.loads(a.markdown.read_text())))
        return 0
    names = a.models.split(",")
    bad = [n for n in names if n not in MODEL_NAMES]
    if bad:
        print(f"error: --models {','.join(bad)}; valid: {','.join(MODEL_NAMES)}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="edgecnn-real-") as t:
        data = measure(names, a.rounds, a.iters, a.calib, a.eval, Path(t))
    data["machine"] = machine()
    data["schema_version"] = 1
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(data, indent=1))
    print(markdown(data))
    print(f"\nwrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
