#!/usr/bin/env python3
"""INT8 on models shaped like real exports: edgecnn vs ONNX Runtime `quantize_static` vs NNCF, side by side.

    python benchmarks/real_models.py [--models yolo320,mbv3-224,tinted-cls,mbv3-block,det-block]
                                     [--rounds 5] [--iters 100] [--calib 64] [--eval 64]

Measured through `benchmarks/runner.py` (fresh process per measurement, >= 5 alternating rounds, median and
[min-max] spread, the same --threads and --batch for every tool, machine facts); the result is
`benchmarks/results/real_models.json` and `benchmarks/readme_tables.py` renders the README's table
(`bench:real_models`) and its goal-by-goal sentences (`bench:real_models_verdict`) from it.

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

Variants (each quantized once, in its own child, before anything is timed: round 1 runs the variants in
list order, and the quantization variants come first):
  edgecnn      edgecnn's public quantize API with its defaults for --runtime ort (method auto, u8 activations)
  edgecnn-ov   --runtime openvino: activations as float post-ops of their Conv (NNCF's placement, op policy
               "openvino"), in the scheme RUNTIME_SCHEMES["openvino"]
  edgecnn-ov-u8   the same placement, u8 asymmetric activations (the x86 scheme --runtime ort uses)
  edgecnn-ov-sym  the same placement, symmetric activations, u8 or s8 by sign (NNCF's "performance" preset)
  edgecnn-ov-int  op policy "openvino-int" (every op that has an integer form in integer, SiLU included),
               symmetric activations: the --runtime openvino default before this run
  ort          onnxruntime.quantization.quantize_static(QDQ, per_channel=True) after quant_pre_process, defaults
  nncf-ov      nncf.quantize on the OpenVINO model (its native backend), default preset
  nncf-onnx    nncf.quantize on the ONNX model
Accuracy (one child per variant, deterministic: one round): SQNR of every output vs the FP32 model on the
evaluation images, and agreement with FP32 (classifiers: top-1; detectors: per anchor, confident
(score > 0.25) and same class); OpenVINO variants are evaluated on OpenVINO with the f32 hint.
Latency: every (variant, runtime) cell is a runner variant: --rounds alternating rounds, each a fresh process
of --iters timed runs after warm-up. OpenVINO's FP32 is measured twice: INFERENCE_PRECISION_HINT=f32 and the
plugin's default (bf16 on CPUs with AMX), the baseline a user actually gets; INT8 models run with the
default hint. The runtime precision of every layer of OpenVINO's execution graph and the ops ONNX Runtime
executes after its optimizations are counted (deterministic, one round).
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import MODELS, REPO, openvino_facts, timed_p50_ms
from runner import (
    Variant,
    common_args,
    compare,
    fact_of,
    median,
    model_names,
    pick_names,
    run_benchmark,
    settings_from,
    spread,
    status_of,
)

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

NAME = "real_models"
WORK = MODELS / "real"
VARIANTS = ("edgecnn", "edgecnn-ov", "edgecnn-ov-u8", "edgecnn-ov-sym", "edgecnn-ov-int", "ort", "nncf-ov", "nncf-onnx")
PEERS = ("ort", "nncf-ov", "nncf-onnx")
# made for OpenVINO: evaluated there
OV_VARIANTS = ("edgecnn-ov", "edgecnn-ov-u8", "edgecnn-ov-sym", "edgecnn-ov-int", "nncf-ov")
MODEL_NAMES = ("yolo320", "mbv3-224", "tinted-cls", "mbv3-block", "det-block")
FITTED = {"tinted-cls": "classifier", "mbv3-block": "mbv3_block", "det-block": "detector_block"}
# FP32 cells: (runtime, OpenVINO precision hint); INT8 cells run with the runtime's default.
FP32_CELLS = (("ort", "default"), ("openvino", "f32"), ("openvino", "default"))


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


# ---------------------------------------------------------------- children (run by benchmarks/runner.py) -------
def _quantized_path(model_name: str, variant: str) -> Path:
    return WORK / model_name / "int8" / f"{variant}{'.xml' if variant == 'nncf-ov' else '.onnx'}"


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no {what} (its quantization failed; see the quantize variant)")
    return path


def quantize_child(
    *, variant: str, model: str, calib: str, n: int, out: str, threads: int, batch: int, **_: Any
) -> dict[str, Any]:
    """Write one INT8 variant of ``model`` to ``out`` with ``n`` calibration images, ``batch`` at a time."""
    from edgecnn.preprocess import list_images, load_spec

    spec = load_spec(Path(calib) / "preprocess.toml")
    files = list_images(Path(calib))[:n]
    dst = Path(out)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.unlink(missing_ok=True)  # a stale file from an earlier run must not be timed if this one fails
    t0 = time.perf_counter()
    info: dict[str, Any] = {}
    if variant.startswith("edgecnn"):
        import onnx

        from edgecnn.quantize.api import QuantizeConfig, quantize
        from edgecnn.quantize.dataset import ImageDataset
        from edgecnn.quantize.params import OPENVINO_CPU, RUNTIME_SCHEMES, X86_CPU

        policy, scheme = {
            "edgecnn": ("ort", RUNTIME_SCHEMES["ort"]),
            "edgecnn-ov": ("openvino", RUNTIME_SCHEMES["openvino"]),
            "edgecnn-ov-u8": ("openvino", X86_CPU),
            "edgecnn-ov-sym": ("openvino", OPENVINO_CPU),
            "edgecnn-ov-int": ("openvino-int", OPENVINO_CPU),
        }[variant]
        config = QuantizeConfig(runtime=policy, scheme=scheme, batch=batch, threads=threads)
        q, rep = quantize(Path(model), ImageDataset.open(Path(calib), spec, n), config)
        onnx.save(q, str(dst))
        info = {"kept_float": len(rep.kept_float), "methods": rep.methods_chosen, "input_ranges": rep.input_ranges}
    elif variant == "ort":
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.it = iter([files[i : i + batch] for i in range(0, len(files), batch)])

            def get_next(self):  # -> dict | None
                chunk = next(self.it, None)
                return None if chunk is None else {"input": np.stack([spec.load(p) for p in chunk])}

        pre = dst.with_name(dst.stem + "_pre.onnx")
        quant_pre_process(model, str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True)
    else:
        import nncf
        import onnx
        import openvino as ov

        if variant == "nncf-ov":
            ds = nncf.Dataset(files, lambda p: spec.load(p)[None])
            ov.save_model(nncf.quantize(ov.Core().read_model(model), ds, subset_size=n), str(dst))
        else:
            ds = nncf.Dataset(files, lambda p: {"input": spec.load(p)[None]})
            onnx.save(nncf.quantize(onnx.load(model), ds, subset_size=n), str(dst))
    return {"quantize_s": time.perf_counter() - t0, **info}


def _session(path: Path, runtime: str, precision: str, threads: int) -> Any:
    from edgecnn.runtimes import open_session

    opts = {"inference_precision": precision} if runtime == "openvino" else {}
    return open_session(runtime, path, threads=threads, options=opts)


def accuracy_child(
    *, kind: str, ref: str, cand: str, runtime: str, data: str, n: int, threads: int, batch: int, **_: Any
) -> dict[str, Any]:
    """SQNR per output and agreement of ``cand`` (on ``runtime``; OpenVINO in f32, so the number is the
    quantization's, not bf16's) against the FP32 ``ref`` on ONNX Runtime, over ``n`` held-out images."""
    from edgecnn.preprocess import list_images, load_spec

    spec = load_spec(Path(data) / "preprocess.toml")
    xs = [spec.load(p)[None] for p in list_images(Path(data))[:n]]
    r_sess = _session(Path(ref), "ort", "f32", threads)
    q_sess = _session(_need(Path(cand), "quantized model"), runtime, "f32", threads)
    r_in, q_in = r_sess.inputs()[0].name, q_sess.inputs()[0].name
    refs = [r_sess.run({r_in: x}) for x in xs]
    outs = [q_sess.run({q_in: x}) for x in xs]
    res: dict[str, Any] = {}
    for k in range(len(refs[0])):
        r = np.concatenate([o[k] for o in refs]).astype(np.float64)
        c = np.concatenate([o[k] for o in outs]).astype(np.float64)
        res[f"sqnr_db_{k}"] = float(10 * np.log10(np.sum(r**2) / max(np.sum((r - c) ** 2), 1e-30)))
    if kind == "classifier":
        agree = float(np.mean([np.argmax(a[0]) == np.argmax(b[0]) for a, b in zip(refs, outs, strict=True)]))
    else:  # detector: per anchor, (confident, class) must match
        ra = np.concatenate([o[1] for o in refs])  # scores [N, C, A]
        ca = np.concatenate([o[1] for o in outs])
        rk = np.where(ra.max(1) > 0.25, ra.argmax(1), -1)
        ck = np.where(ca.max(1) > 0.25, ca.argmax(1), -1)
        agree = float(np.mean(rk == ck))
    return {**res, "outputs": len(refs[0]), "agreement_pct": 100 * agree, "eval_images": len(xs)}


def latency_child(*, path: str, runtime: str, precision: str, iters: int, threads: int, batch: int, **_: Any) -> dict:
    """p50 of ``iters`` timed calls (inputs bound once, GC paused) after warm-up, in this fresh process."""
    sess = _session(_need(Path(path), "quantized model"), runtime, precision, threads)
    spec = sess.inputs()[0]
    shape = (batch, *spec.shape[1:])
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    call = sess.bind({spec.name: x}) if hasattr(sess, "bind") else (lambda: sess.run({spec.name: x}))
    # >= 20 untimed runs: a fresh ORT session's first ~10 yolo320 INT8 runs took 13.6 -> 10.2 ms, and 6 warm-ups
    # (the earlier max(5, 30 // 5)) left that transient inside the 30 timed runs
    out: dict[str, Any] = {"p50_ms": timed_p50_ms(call, iters, warmup=max(20, iters // 5))}
    if runtime == "openvino":
        out.update(openvino_facts(sess))
    return out


def ort_graph_child(*, path: str, threads: int, batch: int, **_: Any) -> dict[str, Any]:
    """What ONNX Runtime runs after its graph optimizations: integer ops, float ops, standalone Q/DQ."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="edgecnn-real-") as t:
        return ort_executes(_need(Path(path), "quantized model"), Path(t), threads)


def ort_executes(path: Path, tmp: Path, threads: int = 2) -> dict[str, int]:
    """What ONNX Runtime runs after its graph optimizations: integer ops, float ops, standalone Q/DQ."""
    import onnx
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    so.optimized_model_filepath = str(tmp / f"{path.stem}.opt.onnx")
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    ops = collections.Counter(n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node)
    qdq = ops["QuantizeLinear"] + ops["DequantizeLinear"]
    integer = sum(v for k, v in ops.items() if k.startswith(("QLinear", "QGemm", "Nhwc")))
    moves = {"Reshape", "Transpose", "Split", "Concat", "Resize", "Slice", "Flatten", "Squeeze", "Unsqueeze", "Shape"}
    float_ops = sum(v for k, v in ops.items() if k not in moves and not k.startswith(("QLinear", "QGemm", "Nhwc")))
    return {"integer": integer, "float": float_ops - qdq, "qdq": qdq}


# ---------------------------------------------------------------- README rendering (from the JSON alone) -------


def sqnrs(payload: dict[str, Any], model: str, variant: str) -> list[float] | None:
    """SQNR of every output (dB), or None when the variant was not evaluated."""
    name = f"{model}/{variant}/accuracy"
    n = median(payload, name, "outputs")
    if n is None:
        return None
    vals = [median(payload, name, f"sqnr_db_{k}") for k in range(int(n))]
    return None if any(v is None for v in vals) else [float(v) for v in vals if v is not None]


def _lat(payload: dict[str, Any], name: str, base: str | None = None) -> str:
    m, s = median(payload, name, "p50_ms"), spread(payload, name, "p50_ms")
    if m is None or s is None:
        st = status_of(payload, name)
        return "-" if st == "not measured" else _short(st)
    text = f"{m:.2f} [{s[0]:.2f}-{s[1]:.2f}]"
    b = median(payload, base, "p50_ms") if base else None
    return text + (f" ({m / b:.2f}x)" if b else "")


def readme_table(payload: dict[str, Any]) -> str:
    """The side-by-side table: SQNR, agreement, p50 on both runtimes, what each runtime executes."""
    s, mach = payload["settings"], payload["machine"]
    ver = mach["versions"]
    lines = [
        f"{mach['cpu_model']} ({mach['cores_logical']} cores; {mach['cpu_flags']}), ORT {ver['onnxruntime']}, "
        f"OpenVINO {ver['openvino']}, NNCF {ver['nncf']}; {s['threads']} threads and batch {s['batch']} for every "
        f"tool. p50 in ms: median over {s['rounds']} alternating rounds, each a fresh process of "
        f"{payload['iters']} timed runs [min-max over the rounds], (ratio of the medians to FP32 on the same "
        f"runtime; OpenVINO: to the f32 hint / to the plugin's default). Calibration {payload['calib_n']} images, "
        f"evaluation {payload['eval_n']} held-out images. Load average {mach['loadavg_before'][0]:.1f} before, "
        f"{mach['loadavg_after'][0]:.1f} after (a shared machine).",
        "",
        "| model | tool | SQNR dB (per output) | agreement % | p50 ORT ms | p50 OpenVINO ms | "
        "ORT runs: int / float / Q-DQ | OpenVINO layers by precision |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in model_names(payload):
        f32, dflt = f"{m}/fp32/openvino-f32", f"{m}/fp32/openvino-default"
        lines.append(
            f"| {m} | FP32 | - | - | {_lat(payload, f'{m}/fp32/ort')} | f32 {_lat(payload, f32)}, default "
            f"({fact_of(payload, dflt, 'inference_precision')}) {_lat(payload, dflt)} | - | "
            f"{fact_of(payload, dflt, 'layers')} |"
        )
        for v in VARIANTS:
            q = status_of(payload, f"{m}/{v}/quantize")
            if q == "not measured":
                continue
            if q != "ok":
                lines.append(f"| {m} | {v} | quantization {_short(q)} | - | - | - | - | - |")
                continue
            sq = sqnrs(payload, m, v)
            acc_st = status_of(payload, f"{m}/{v}/accuracy")
            sq_s = ", ".join(f"{x:.1f}" for x in sq) if sq else _short(acc_st)
            if sq and v in OV_VARIANTS:
                sq_s += " (OV)"
            ag = median(payload, f"{m}/{v}/accuracy", "agreement_pct")
            ort_cell = "-" if v == "nncf-ov" else _lat(payload, f"{m}/{v}/ort", f"{m}/fp32/ort")
            ov_name = f"{m}/{v}/openvino"
            ov_cell = _lat(payload, ov_name, f32)
            b = median(payload, dflt, "p50_ms")
            mv = median(payload, ov_name, "p50_ms")
            if b and mv is not None and ov_cell.endswith("x)"):
                ov_cell = ov_cell[:-1] + f" / {mv / b:.2f}x)"
            g = f"{m}/{v}/ort-graph"
            counts = [median(payload, g, k) for k in ("integer", "float", "qdq")]
            g_s = (
                "-"
                if v == "nncf-ov"
                else (
                    " / ".join(str(int(c)) for c in counts if c is not None)
                    if None not in counts
                    else _short(status_of(payload, g))
                )
            )
            lines.append(
                f"| {m} | {v} | {sq_s} | {'-' if ag is None else f'{ag:.1f}'} | {ort_cell} | {ov_cell} | {g_s} | "
                f"{fact_of(payload, ov_name, 'layers')} |"
            )
    return "\n".join(lines)


def goals(payload: dict[str, Any]) -> dict[str, Any]:
    """Every goal of issue 12 decided from the JSON (what readme_verdict words)."""
    models = model_names(payload)
    out: dict[str, Any] = {"sqnr": {}, "agreement": {}}
    for m in models:
        ours = sqnrs(payload, m, "edgecnn")
        peers = {p: sqnrs(payload, m, p) for p in PEERS}
        peers = {p: v for p, v in peers.items() if v is not None}
        if ours is None:
            out["sqnr"][m] = ("not measured", None, None)
            continue
        if not peers:
            out["sqnr"][m] = ("no peer produced a model", ours, None)
            continue
        best = [max(v[k] for v in peers.values()) for k in range(len(ours))]
        met = all(a >= b for a, b in zip(ours, best, strict=True))
        out["sqnr"][m] = ("met" if met else "not met", ours, best)
        ag = {p: median(payload, f"{m}/{p}/accuracy", "agreement_pct") for p in PEERS}
        reached = {p: a for p, a in ag.items() if a is not None and a >= 99.5}
        mine = median(payload, f"{m}/edgecnn/accuracy", "agreement_pct")
        if reached:
            out["agreement"][m] = ("met" if mine is not None and mine >= 99.5 else "not met", mine, reached)
    if "yolo320" in models:
        y = "yolo320"
        # NNCF's faster INT8 on OpenVINO: from its OpenVINO backend or from its ONNX backend
        nncf_p50 = {n: median(payload, f"{y}/{n}/openvino", "p50_ms") for n in ("nncf-ov", "nncf-onnx")}
        nncf = min((n for n, v in nncf_p50.items() if v is not None), key=lambda n: nncf_p50[n], default="nncf-ov")
        out["yolo_vs_nncf"] = {
            v: (
                compare(payload, f"{y}/{v}/openvino", f"{y}/{nncf}/openvino"),
                median(payload, f"{y}/{v}/openvino", "p50_ms"),
            )
            for v in ("edgecnn-ov", "edgecnn")
        }
        out["nncf_p50"] = nncf_p50.get(nncf)
        out["nncf_best"] = nncf
        q, f = median(payload, f"{y}/edgecnn/ort", "p50_ms"), median(payload, f"{y}/fp32/ort", "p50_ms")
        sq, sf = spread(payload, f"{y}/edgecnn/ort", "p50_ms"), spread(payload, f"{y}/fp32/ort", "p50_ms")
        out["yolo_ort_ratio"] = (q / f if q and f else None, (sq[1] / sf[0]) if sq and sf else None)
        out["yolo_vs_default"] = {
            v: (
                compare(payload, f"{y}/{v}/openvino", f"{y}/fp32/openvino-default"),
                (median(payload, f"{y}/{v}/openvino", "p50_ms") or float("nan"))
                / (median(payload, f"{y}/fp32/openvino-default", "p50_ms") or float("nan")),
            )
            for v in ("edgecnn-ov", "edgecnn", "nncf-ov", "nncf-onnx")
        }
        out["default_precision"] = fact_of(payload, f"{y}/fp32/openvino-default", "inference_precision")
    if "mbv3-block" in models:
        s = sqnrs(payload, "mbv3-block", "edgecnn")
        out["mbv3_25db"] = (s[0] >= 25.0 if s else None, s[0] if s else None)
    if "mbv3-224" in models:
        q, f = median(payload, "mbv3-224/edgecnn/ort", "p50_ms"), median(payload, "mbv3-224/fp32/ort", "p50_ms")
        out["mbv3_ort"] = (compare(payload, "mbv3-224/edgecnn/ort", "mbv3-224/fp32/ort"), q / f if q and f else None)
    return out


def _db(v: list[float] | None) -> str:
    return "-" if not v else " / ".join(f"{x:.1f}" for x in v)


def readme_verdict(payload: dict[str, Any]) -> str:
    """The goal-by-goal bullets beside the table, computed from the same JSON ("within noise": the
    [min-max] ranges over the rounds overlap)."""
    g = goals(payload)
    lines = [
        "What this run shows, goal by goal (computed from the JSON above; edgecnn = `--runtime ort` defaults):",
        "",
    ]
    sq = g["sqnr"]
    met = [m for m, v in sq.items() if v[0] == "met"]
    missed = [m for m, v in sq.items() if v[0] == "not met"]
    other = [f"{m} ({v[0]})" for m, v in sq.items() if v[0] not in ("met", "not met")]
    detail = "; ".join(f"{m} {_db(v[1])} vs {_db(v[2])} dB" for m, v in sq.items() if v[2] is not None)
    lines.append(
        f"- **SQNR >= the best of ORT and NNCF:** {'met on every model' if not missed and met else 'met on ' + (', '.join(met) or 'no model')}"
        f"{'; NOT met on ' + ', '.join(missed) if missed else ''}{'; ' + ', '.join(other) if other else ''} "
        f"(edgecnn vs the best peer per output: {detail})."
    )
    ag = g["agreement"]
    if not ag:
        lines.append("- **Agreement >= 99.5% where a peer reaches it:** no peer reaches 99.5% on any model here.")
    else:
        parts = [
            f"{m}: {v[0]} (edgecnn {v[1] if v[1] is None else f'{v[1]:.1f}'}%, "
            + ", ".join(f"{p} {a:.1f}%" for p, a in v[2].items())
            + ")"
            for m, v in ag.items()
        ]
        lines.append("- **Agreement >= 99.5% where a peer reaches it:** " + "; ".join(parts) + ".")
    if "yolo_vs_nncf" in g:
        word = {"faster": "met (faster beyond noise)", "within noise": "within noise", "slower": "NOT met (slower beyond noise)", None: "not measured"}  # fmt: skip
        vs = g["yolo_vs_nncf"]
        nncf = g["nncf_p50"]

        def vs_nncf(v: str) -> str:
            c, p50 = vs[v]
            ratio = f", median {p50 / nncf:.2f}x NNCF's" if p50 and nncf else ""
            return f"{word[c]} ({_ms(p50)} vs {_ms(nncf)} ms{ratio})"

        lines.append(
            f"- **YOLO-style INT8 p50 <= NNCF's INT8 on OpenVINO (its faster one, {g['nncf_best']}):** `--runtime openvino` "
            f"{vs_nncf('edgecnn-ov')}; the ORT-tuned file (`--runtime ort`) {vs_nncf('edgecnn')}."
        )
        r, worst = g["yolo_ort_ratio"]
        verdict = "not measured" if r is None else ("met" if r <= 0.7 else "NOT met")
        lines.append(
            f"- **YOLO-style INT8 <= 0.7x FP32 on ONNX Runtime:** {verdict} ({'-' if r is None else f'{r:.2f}x'} of "
            f"the medians; {'-' if worst is None else f'{worst:.2f}x'} slowest INT8 round vs fastest FP32 round)."
        )
        dv = g["yolo_vs_default"]
        word2 = {"faster": "faster beyond noise", "within noise": "within noise", "slower": "slower beyond noise", None: "not measured"}  # fmt: skip
        lines.append(
            f"- **Faster than OpenVINO's default FP32 baseline (it ran in {g['default_precision']}):** "
            + "; ".join(f"{v} {word2[c]} (median {x:.2f}x the baseline)" for v, (c, x) in dv.items())
            + "."
        )
    if "mbv3_25db" in g:
        ok, val = g["mbv3_25db"]
        lines.append(
            f"- **MobileNetV3-style SQNR >= 25 dB with auto:** {'not measured' if ok is None else ('met' if ok else 'NOT met')} "
            f"on the fitted block ({'-' if val is None else f'{val:.1f}'} dB)."
        )
    if "mbv3_ort" in g:
        c, r = g["mbv3_ort"]
        word3 = {"faster": "faster than FP32 beyond noise", "within noise": "within noise of FP32", "slower": "slower than FP32 beyond noise", None: "not measured"}  # fmt: skip
        lines.append(
            f"- **MobileNetV3-style (mbv3-224) INT8 vs FP32 on ONNX Runtime:** {word3[c]} "
            f"({'-' if r is None else f'{r:.2f}x'} of the medians)."
        )
    return "\n".join(lines)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _short(status: str) -> str:
    """A failure in a few words for the table (the JSON keeps the whole message)."""
    if "INVALID_GRAPH" in status or "onnxruntime cannot load" in status:
        return "invalid file (ORT: INVALID_GRAPH)"
    if "cannot compile" in status:
        return "does not compile (OpenVINO)"
    return "failed (message in the JSON)" if status.startswith("failed") else status[:60]


def variants_for(name: str, meta: dict[str, Any], calib_n: int, eval_n: int, iters: int) -> list[list[Variant]]:
    """[quantize, accuracy, ORT graph, latency] variants of one model."""
    mdir = WORK / name
    model = mdir / "model.onnx"
    files = {"fp32": model, **{v: _quantized_path(name, v) for v in VARIANTS}}
    base = {"model_name": name}
    quant = [
        Variant(
            name=f"{name}/{v}/quantize",
            fn=f"{NAME}:quantize_child",
            params={
                **base,
                "variant": v,
                "model": str(model),
                "calib": str(mdir / "calib"),
                "n": calib_n,
                "out": str(files[v]),
            },
            rounds=1,
        )
        for v in VARIANTS
    ]
    acc = [
        Variant(
            name=f"{name}/{v}/accuracy",
            fn=f"{NAME}:accuracy_child",
            params={
                **base,
                "kind": meta["kind"],
                "ref": str(model),
                "cand": str(files[v]),
                "runtime": "openvino" if v in OV_VARIANTS else "ort",
                "data": str(mdir / "eval"),
                "n": eval_n,
            },
            rounds=1,
        )
        for v in VARIANTS
    ]
    graphs = [
        Variant(
            name=f"{name}/{v}/ort-graph", fn=f"{NAME}:ort_graph_child", params={**base, "path": str(files[v])}, rounds=1
        )
        for v in VARIANTS
        if v != "nncf-ov"
    ]
    lat = [
        Variant(
            name=f"{name}/fp32/{rt}" + (f"-{hint}" if rt == "openvino" else ""),
            fn=f"{NAME}:latency_child",
            params={**base, "path": str(model), "runtime": rt, "precision": hint, "iters": iters},
        )
        for rt, hint in FP32_CELLS
    ]
    lat += [
        Variant(
            name=f"{name}/{v}/{rt}",
            fn=f"{NAME}:latency_child",
            params={**base, "path": str(files[v]), "runtime": rt, "precision": "default", "iters": iters},
        )
        for v in VARIANTS
        for rt in ("ort", "openvino")
        if not (v == "nncf-ov" and rt == "ort")
    ]
    return [quant, acc, graphs, lat]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODEL_NAMES), help=f"comma-separated, of {','.join(MODEL_NAMES)}")
    ap.add_argument("--iters", type=int, default=100, help="timed runs per latency measurement")
    ap.add_argument("--calib", type=int, default=64, help="calibration images (every tool)")
    ap.add_argument("--eval", type=int, default=64, help="held-out evaluation images")
    common_args(ap)
    a = ap.parse_args()
    names = pick_names("--models", a.models, MODEL_NAMES)
    if names is None:
        return 2
    if a.iters < 1 or a.calib < 1 or a.eval < 1:
        print(f"error: --iters {a.iters} --calib {a.calib} --eval {a.eval}; each must be >= 1", file=sys.stderr)
        return 2
    settings = settings_from(a)
    stages: list[list[Variant]] = [[], [], [], []]
    for name in names:
        print(f"building {name} ...", file=sys.stderr, flush=True)
        meta = build(name, a.calib, a.eval)
        for stage, vs in zip(stages, variants_for(name, meta, a.calib, a.eval, a.iters), strict=True):
            stage.extend(vs)
    # Round 1 runs the variants in list order: every quantization, then accuracy and graph counts (one round
    # each), then the latency cells, which alternate over all the rounds.
    payload = run_benchmark(
        NAME,
        [v for stage in stages for v in stage],
        settings,
        extra={"iters": a.iters, "calib_n": a.calib, "eval_n": a.eval, "models": names},
        results=a.results,
    )
    print(readme_table(payload))
    print("\n" + readme_verdict(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
