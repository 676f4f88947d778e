#!/usr/bin/env python3
"""Ground truth for `check --target rknpu2-rk3588`: RKNN-Toolkit2's own build report, case by case.

    python benchmarks/rknn_ground_truth.py [--rknn-python benchmarks/.venv-rknn/bin/python] [--json out.json]

RKNN-Toolkit2 2.5.0 pins numpy<=1.26.4, onnx<=1.18 and torch<=2.4, so it lives in its own venv:

    python3.11 -m venv benchmarks/.venv-rknn
    benchmarks/.venv-rknn/bin/pip install rknn-toolkit2==2.5.0   # pulls torch 2.4.0 and its CUDA wheels

For each single-op model (every op in targets/rknpu2-rk3588.toml that the test corpus can build, plus each
documented limit on both sides and ops the spec does not list) a fresh child process in that venv runs
``rknn.config(target_platform='rk3588')``, ``load_onnx`` and ``build(do_quantization=False)`` (float16) and
reads the "Network Layer Information Table" that the build prints: the Target column (NPU or CPU) of every
layer. The case runs on the NPU when every layer except the Input/Output operators is on the NPU; a failed
load or build is "does not run". edgecnn's verdict for the same file is ``all_accelerated``. The script
prints one row per case and the agreement; it is not part of the default test run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PY = REPO / "benchmarks" / ".venv-rknn" / "bin" / "python"
ROW = re.compile(r"^\s*\d+\s+(\S+)\s+(\S+)\s+(NPU|CPU)\s")


def child(path: str) -> None:
    """In the RKNN venv: build ``path`` for rk3588; the toolkit prints its tables itself (from C++, to the
    process's stdout), then this prints one line: RESULT {ok, error}."""
    from rknn.api import RKNN

    rk = RKNN(verbose=True)
    result: dict[str, object] = {"ok": False, "error": ""}
    try:
        rk.config(target_platform="rk3588")
        if rk.load_onnx(model=path) != 0:
            result["error"] = "load_onnx failed"
        elif rk.build(do_quantization=False) != 0:
            result["error"] = "build failed"
        else:
            result["ok"] = True
    except Exception as e:  # the toolkit raises on ops it cannot convert
        lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
        result["error"] = f"{type(e).__name__}: {lines[-1][:160] if lines else ''}"
    finally:
        rk.release()
    sys.stdout.flush()
    print("RESULT " + json.dumps(result), flush=True)


def layers_of(log: str) -> list[tuple[str, str]]:
    """(op type, NPU|CPU) for every row of the build's Network Layer Information Table but Input/Output."""
    out: list[tuple[str, str]] = []
    in_table = False
    for line in log.splitlines():
        text = line.split("] ", 1)[-1] if "RKNN:" in line else line
        if "Network Layer Information Table" in text:
            in_table, out = True, []  # the last table printed is the final one
            continue
        m = ROW.match(text) if in_table else None
        if m and m.group(1) not in ("InputOperator", "OutputOperator"):
            out.append((m.group(1), m.group(3)))
    return out


def _add(shape: list[int]) -> object:
    """Add of two activations of ``shape`` (an elementwise op on the tensor-size limits)."""
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node("Add", ["x", "x"], ["y"], name="add")], "add",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
    )  # fmt: skip
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _relu5d() -> object:
    from tests.target_corpus import _model, _n

    return _model([_n("Relu", ["x"])], x_shape=[1, 2, 3, 4, 5])


def holdout() -> dict[str, object]:
    """Cases whose verdicts come from the 2.x op list, not from an earlier run of this script (held out)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from tests.target_corpus import _model, _n

    def ints(v: list[int]) -> np.ndarray:
        return np.array(v, np.int64)

    def one(op: str, inits: dict | None = None, x: list[int] | None = None, out=TensorProto.FLOAT, **attrs: object):
        ins = ["x", *(inits or {})]
        return _model([_n(op, ins, **attrs)], inits, x_shape=x or [1, 4, 8, 8], out_type=out)

    return {
        "holdout-ArgMax": one("ArgMax", axis=1, out=TensorProto.INT64),
        "holdout-Gather": one("Gather", {"i": ints([0, 2])}, axis=1),
        "holdout-ReduceSum": one("ReduceSum", {"a": ints([2, 3])}),
        "holdout-ReduceMin": one("ReduceMin", axes=[2, 3]),
        "holdout-Log": one("Log"),
        "holdout-Sin": one("Sin"),
        "holdout-Floor": one("Floor"),
        "holdout-Tile": one("Tile", {"r": ints([1, 1, 2, 2])}),
        "holdout-LogSoftmax": one("LogSoftmax", axis=1),
        "holdout-Slice-batch2": one("Slice", {"st": ints([1]), "en": ints([3]), "ax": ints([1])}, x=[2, 4, 8, 8]),
        "holdout-Softmax-batch2": one("Softmax", x=[2, 4, 8, 8], axis=1),
        "holdout-ArgMin": one("ArgMin", axis=1, out=TensorProto.INT64),
        "holdout-LpNormalization": one("LpNormalization", axis=1),
        "holdout-Greater": _model([helper.make_node("Greater", ["x", "c"], ["y"], name="gt")],
                                  {"c": np.ones([1, 4, 1, 1], np.float32)}, out_type=TensorProto.BOOL),
        "holdout-Where": _model([helper.make_node("Greater", ["x", "c"], ["m"], name="gt"),
                                 helper.make_node("Where", ["m", "x", "c"], ["y"], name="where")],
                                {"c": np.zeros([1, 4, 1, 1], np.float32)}),
        "holdout-Expand": one("Expand", {"s": ints([2, 4, 8, 8])}),
        "holdout-Cos": one("Cos"),
        "holdout-Conv-k64": __import__("tests.target_corpus", fromlist=["conv"]).conv(k=64, hw=80),
        "holdout-Equal": _model([helper.make_node("Equal", ["x", "c"], ["y"], name="eq")],
                                {"c": numpy_helper.to_array(numpy_helper.from_array(np.ones([1, 4, 1, 1], np.float32)))},
                                out_type=TensorProto.BOOL),
    }  # fmt: skip


def corpus() -> dict[str, object]:
    """Case name -> ONNX model: spec ops, each documented limit on both sides, and ops the spec lacks."""
    sys.path.insert(0, str(REPO))
    from edgecnn.check.spec import load_target
    from tests.target_corpus import BUILDERS, OPENVINO_MISSING, conv, pool, resize, single_op, softmax

    spec = load_target("rknpu2-rk3588")
    cases: dict[str, object] = {f"op-{op}": single_op(op) for op in sorted(spec.ops) if op in BUILDERS}
    cases.update({f"unlisted-{op}": single_op(op) for op in sorted(set(BUILDERS) - set(spec.ops))})
    cases.update({f"unlisted-{op}": single_op(op) for op in sorted(OPENVINO_MISSING)})
    cases.update({
        "conv-k31": conv(k=31, hw=40), "conv-k33": conv(k=33, hw=40),
        "conv-stride7": conv(stride=7, pad=1), "conv-stride8": conv(stride=8, pad=1),
        "conv-dil32": conv(k=3, dilation=32, hw=80, pad=15), "conv-dil33": conv(k=3, dilation=33, hw=80, pad=15),
        "conv-pad15": conv(k=3, pad=15), "conv-pad16": conv(k=3, pad=16),
        "dw-k7": conv(k=7, group=8), "dw-k9": conv(k=9, group=8),
        "maxpool-k7": pool(k=7, stride=1), "maxpool-k8": pool(k=8, stride=1), "maxpool-ceil": pool(ceil=1, hw=33),
        "maxpool-c8192": pool(cin=8192, hw=4), "maxpool-c8193": pool(cin=8193, hw=4),
        "resize-x8": resize(8.0), "resize-x1.5": resize(1.5), "softmax-ax1": softmax(1), "softmax-ax2": softmax(2),
        "conv-batch2": conv(batch=2),
        "add-w8176": _add([1, 2, 1, 8176]), "add-w8177": _add([1, 2, 1, 8177]),
        "add-c8192": _add([1, 8192, 1, 2]), "add-c8193": _add([1, 8193, 1, 2]),
        "add-w65536": _add([1, 1, 1, 65536]), "relu-5d": _relu5d(),
    })  # fmt: skip
    cases.update(holdout())
    return cases


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rknn-python", type=Path, default=DEFAULT_PY)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--child", default=None)
    ap.add_argument("--only", default="", help="run only the cases whose name starts with this")
    a = ap.parse_args()
    if a.child:
        child(a.child)
        return 0
    if not a.rknn_python.exists():
        print(f"error: {a.rknn_python}: no RKNN-Toolkit2 venv; create it as the docstring says", file=sys.stderr)
        return 3
    import onnx

    from edgecnn.check.placement import check_target
    from edgecnn.check.spec import load_target
    from edgecnn.errors import ModelError
    from edgecnn.graph.load import load_model

    spec = load_target("rknpu2-rk3588")
    tmp = Path(tempfile.mkdtemp(prefix="rknn-gt-"))
    rows = []
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    print(f"{'case':22} {'edgecnn':8} {'rknn':8} agree  rknn layers (CPU ones) / error")
    for name, model in corpus().items():
        if not name.startswith(a.only):
            continue
        path = tmp / f"{name}.onnx"
        onnx.save(model, path)  # type: ignore[arg-type]
        try:
            ours = check_target(load_model(path), spec).all_accelerated
        except ModelError as e:
            print(f"{name:22} skipped: {e}")
            continue
        p = subprocess.run([str(a.rknn_python), __file__, "--child", str(path)], capture_output=True, text=True,
                           env=env, timeout=600, cwd=tmp)  # fmt: skip
        line = next((ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")), "")
        res = json.loads(line[7:]) if line else {"ok": False, "error": (p.stderr.strip()[-200:])}
        res["layers"] = layers_of(p.stdout + "\n" + p.stderr)
        real = bool(res["ok"]) and bool(res["layers"]) and all(t == "NPU" for _, t in res["layers"])
        cpu = [op for op, t in res["layers"] if t == "CPU"]
        detail = ",".join(cpu) if res["ok"] else f"error: {res['error']}"
        agree = ours == real
        print(
            f"{name:22} {'npu' if ours else 'off':8} {'npu' if real else 'off':8} {'yes' if agree else 'NO':5}  {detail}"
        )
        rows.append({"case": name, "edgecnn_all_npu": ours, "rknn_all_npu": real, "agree": agree,
                     "rknn_cpu_layers": cpu, "rknn_error": res["error"], "layers": res["layers"]})  # fmt: skip
    n_agree = sum(r["agree"] for r in rows)
    negatives = sum(not r["rknn_all_npu"] for r in rows)
    print(
        f"agreement: {n_agree}/{len(rows)} ({100 * n_agree / len(rows):.0f}%); cases RKNN keeps off the NPU: {negatives}"
    )
    if a.json:
        a.json.write_text(json.dumps({"tool": "rknn-toolkit2 2.5.0", "rows": rows, "agree": n_agree,
                                      "cases": len(rows)}, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
