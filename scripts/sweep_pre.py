"""Sweep over real pretrained models that are NOT in the repo: edgecnn (CLI defaults) vs ORT quantize_static vs NNCF.

    python scripts/sweep_pre.py NAME TAG [tools...]     tools: edgecnn[:--flag:value...] | ort | nncf

A development aid, not a benchmark (one process per tool, no latency rounds): it expects the models, images,
PreprocessSpecs and ``models.txt`` of a local folder ``$EDGECNN_PRE`` (default /work/pre: YOLOv8n from the
nudenet 3.4.2 wheel, a YOLOX-style detector from ddddocr 1.6.1, PP-OCRv4 det/rec and the PP-OCR mobile cls
from rapidocr-onnxruntime 1.4.4). Prints, per tool, the output SQNR against FP32 on ONNX Runtime over the
held-out images (and for the two detectors boxes vs scores and the anchors with a score > 0.25, float/INT8);
writes ``$EDGECNN_SWEEP_OUT/NAME/TAG-tool.onnx`` (default /tmp/edgecnn-sweep) and appends to results.jsonl
there. The numbers in docs/design-notes.md ("Ranges judged where they land") come from it."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

TREE = str(Path(__file__).resolve().parents[1])
sys.path.insert(0, TREE)
from edgecnn.preprocess import list_images, load_spec  # noqa: E402

root = Path(os.environ.get("EDGECNN_PRE", "/work/pre"))
rows = {line.split()[0]: line.split()[1:] for line in (root / "models.txt").read_text().splitlines() if line.strip()}
name, tag = sys.argv[1], sys.argv[2]
tools = sys.argv[3:] or ["edgecnn", "ort", "nncf"]
fname, imgs, shape = rows[name]
model = root / fname
spec_p = root / "specs" / f"{name}.toml"
spec = load_spec(spec_p)
inp, dims = shape.split("=")
dims = [int(d) for d in dims.split("x")]
imgroot = root / "img"
calib = list_images(imgroot / imgs / "calib")
evals = list_images(imgroot / imgs / "eval")


def load(p):
    return spec.load(p)[None].astype(np.float32)


out = Path(os.environ.get("EDGECNN_SWEEP_OUT", "/tmp/edgecnn-sweep")) / name
out.mkdir(parents=True, exist_ok=True)
NBOX = {"nudenet": (1, 4), "ddddet": (2, 4)}  # (channel axis, number of box+objectness channels)
import onnxruntime as ort  # noqa: E402


def sess(p, threads=2):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])


def quant(tool):
    dst = out / f"{tag}-{tool.replace(':', '_')}.onnx"
    t0 = time.perf_counter()
    if tool.startswith("edgecnn"):
        extra = tool.split(":")[1:]
        cmd = [
            sys.executable,
            "-m",
            "edgecnn",
            "quantize",
            str(model),
            "-o",
            str(dst),
            "--calib",
            str(imgroot / imgs / "calib"),
            "--preprocess",
            str(spec_p),
            "--input-shape",
            shape,
            "--json",
            str(dst.with_suffix(".json")),
            *extra,
        ]
        r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": TREE})
        if r.returncode:
            print(r.stdout[-2000:], r.stderr[-2000:])
            return None
    elif tool == "ort":
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process

        class Reader(CalibrationDataReader):
            def __init__(s):
                s.it = iter(calib)

            def get_next(s):
                p = next(s.it, None)
                return None if p is None else {inp: load(p)}

        pre = out / "ort_pre.onnx"
        try:
            quant_pre_process(str(model), str(pre), skip_symbolic_shape=True)
        except Exception as e:
            print("pre failed", e)
            pre = model
        quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True)
    elif tool == "nncf":
        import nncf
        import onnx

        ds = nncf.Dataset(calib, lambda p: {inp: load(p)})
        onnx.save(nncf.quantize(onnx.load(str(model)), ds, subset_size=len(calib)), str(dst))
    return dst, time.perf_counter() - t0


def sq(r, c):
    r = r.astype(np.float64).ravel()
    c = c.astype(np.float64).ravel()
    return round(float(10 * np.log10(np.sum(r**2) / max(np.sum((r - c) ** 2), 1e-30))), 2)


ref = sess(model)
xs = [load(p) for p in evals]
refs = [ref.run(None, {inp: x}) for x in xs]
for tool in tools:
    q = quant(tool)
    if q is None:
        print(name, tag, tool, "quantize failed")
        continue
    dst, qs = q
    s = sess(dst)
    outs = [s.run(None, {inp: x}) for x in xs]
    res = {
        "sqnr": [
            sq(np.concatenate([o[k].ravel() for o in refs]), np.concatenate([o[k].ravel() for o in outs]))
            for k in range(len(refs[0]))
        ]
    }
    if name in NBOX:
        ax, nb = NBOX[name]
        R = np.concatenate([o[0] for o in refs])
        Q = np.concatenate([o[0] for o in outs])
        C = R.shape[ax]
        rb, qb = np.take(R, range(nb), axis=ax), np.take(Q, range(nb), axis=ax)
        rs, qs_ = np.take(R, range(nb, C), axis=ax), np.take(Q, range(nb, C), axis=ax)
        res.update(
            boxes=sq(rb, qb),
            scores=sq(rs, qs_),
            anchors=f"{int((rs.max(axis=ax) > 0.25).sum())}/{int((qs_.max(axis=ax) > 0.25).sum())}",
        )
    if refs[0][0].ndim == 2:
        res["agree"] = float(
            np.mean(
                [np.argmax(a[0], -1).tolist() == np.argmax(b[0], -1).tolist() for a, b in zip(refs, outs, strict=True)]
            )
        )
    res["quantize_s"] = round(qs, 1)
    print(name, tag, tool, json.dumps(res), flush=True)
    with open(out / "results.jsonl", "a") as f:
        f.write(json.dumps({"tag": tag, "tool": tool, **res}) + "\n")
