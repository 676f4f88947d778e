#!/usr/bin/env python3
"""Which library should fold a PyTorch export's shape subgraphs before `edgecnn check`? Measured, not assumed.

    python benchmarks/fold_shapes.py [--peer-python /path/to/venv/bin/python] [--rounds 3] [--json out.json]

Builds a small YOLO-style detector in PyTorch (Conv-BN-SiLU backbone, nearest upsample whose size comes from
``x.shape``, a detect head that reshapes with ``view(bs, na, no, ny, nx)`` and builds its grid with
``torch.arange`` + ``meshgrid``), exports it with ``torch.onnx.export`` (TorchScript exporter, dynamic batch
and size: the export that carries Shape/Gather/Unsqueeze/Concat/Range/ConstantOfShape chains), then folds it
at a fixed 1x3x256x256 with each candidate, each in a fresh process, in alternating rounds:

- ``edgecnn``: ``edgecnn.graph.passes.fold_static_shapes`` (onnx shape inference + onnx's reference evaluator;
  no new dependency);
- ``onnxslim``: ``onnxslim.slim`` (constant folding + graph fusions);
- ``onnxsim``: ``onnxsim.simplify`` (onnxruntime-based constant folding + onnxoptimizer).

For each: shape-computation nodes left, total nodes left, op types changed other than by folding (a fusion
changes what the checker sees), median wall time and spread, and whether ONNX Runtime gives the same outputs
as the unfolded model. onnxslim and onnxsim are not edgecnn dependencies: install them in a separate venv
(``python -m venv --system-site-packages V && V/bin/pip install onnxslim onnxsim``) and pass ``--peer-python``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHAPE_OPS = {"Shape", "Size", "Gather", "Unsqueeze", "Squeeze", "Concat", "Range", "ConstantOfShape", "Cast",
             "Slice", "Mul", "Add", "Div", "Sub", "Floor", "Equal", "Where", "Expand", "Reshape"}  # fmt: skip
FIXED = (1, 3, 256, 256)


def build_yolo_like(path: Path) -> None:
    import torch
    from torch import nn
    from torch.nn import functional as F

    class CBS(nn.Module):
        def __init__(self, cin: int, cout: int, k: int = 3, s: int = 1) -> None:
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, k, s, k // 2, bias=False)
            self.bn = nn.BatchNorm2d(cout)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.silu(self.bn(self.conv(x)))

    class Detect(nn.Module):
        def __init__(self, cin: int, na: int = 3, nc: int = 4, stride: int = 8) -> None:
            super().__init__()
            self.na, self.no, self.stride = na, nc + 5, stride
            self.m = nn.Conv2d(cin, na * self.no, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            bs, _, ny, nx = x.shape
            y = self.m(x).view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()
            yv, xv = torch.meshgrid(torch.arange(ny), torch.arange(nx), indexing="ij")
            grid = torch.stack((xv, yv), 2).view(1, 1, ny, nx, 2).float()
            xy = (y[..., :2].sigmoid() * 2 - 0.5 + grid) * self.stride
            rest = y[..., 2:].sigmoid()
            return torch.cat((xy, rest), -1).view(bs, -1, self.no)

    class Yolo(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.b1, self.b2, self.b3 = CBS(3, 16, 3, 2), CBS(16, 32, 3, 2), CBS(32, 64, 3, 2)
            self.b4 = CBS(64, 64, 3, 2)
            self.lat = CBS(64, 64, 1)
            self.fuse = CBS(128, 64, 3)
            self.d8, self.d16 = Detect(64, stride=8), Detect(64, stride=16)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            p3 = self.b3(self.b2(self.b1(x)))
            p4 = self.b4(p3)
            up = F.interpolate(self.lat(p4), size=(p3.shape[2], p3.shape[3]), mode="nearest")
            f3 = self.fuse(torch.cat((up, p3), 1))
            return torch.cat((self.d8(f3), self.d16(p4)), 1)

    torch.manual_seed(0)
    m = Yolo().eval()
    x = torch.randn(*FIXED)
    torch.onnx.export(
        m, (x,), str(path), input_names=["images"], output_names=["pred"], opset_version=17, dynamo=False,
        dynamic_axes={"images": {0: "b", 2: "h", 3: "w"}, "pred": {0: "b", 1: "n"}},
    )  # fmt: skip


def child(tool: str, src: str, dst: str) -> None:
    """Fold ``src`` at FIXED with ``tool``; print JSON {seconds}."""
    import onnx

    t0 = time.perf_counter()
    if tool == "edgecnn":
        from edgecnn.graph.load import load_model
        from edgecnn.graph.passes import fold_static_shapes

        out, _ = fold_static_shapes(load_model(src, {"images": FIXED}).model)
    elif tool == "onnxslim":
        import onnxslim

        out = onnxslim.slim(src, input_shapes=[f"images:{','.join(map(str, FIXED))}"])
    else:
        import onnxsim

        out, ok = onnxsim.simplify(src, overwrite_input_shapes={"images": list(FIXED)})
        assert ok, "onnxsim could not validate its result"
    dt = time.perf_counter() - t0
    onnx.save(out, dst)
    print(json.dumps({"seconds": dt}))


def _counts(path: Path) -> Counter[str]:
    import onnx

    return Counter(n.op_type for n in onnx.load(str(path)).graph.node if n.op_type != "Constant")


def _same_outputs(a: Path, b: Path) -> bool:
    import numpy as np
    import onnxruntime as ort

    x = np.random.default_rng(0).standard_normal(FIXED).astype(np.float32)
    ya = ort.InferenceSession(str(a), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
    yb = ort.InferenceSession(str(b), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
    return ya.shape == yb.shape and bool(np.allclose(ya, yb, rtol=1e-4, atol=1e-4))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peer-python", default=sys.executable, help="interpreter that has onnxslim and onnxsim")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--child", nargs=3, metavar=("TOOL", "SRC", "DST"))
    a = ap.parse_args()
    if a.child:
        child(*a.child)
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="fold-"))
    src = tmp / "yolo_like.onnx"
    build_yolo_like(src)
    base = _counts(src)
    tools = ["edgecnn", "onnxslim", "onnxsim"]
    times: dict[str, list[float]] = {t: [] for t in tools}
    errors: dict[str, str] = {}
    env = {"PYTHONPATH": str(REPO)}
    import os

    for r in range(a.rounds):
        for tool in tools if r % 2 == 0 else reversed(tools):  # alternate the order per round
            if tool in errors:
                continue
            py = sys.executable if tool == "edgecnn" else a.peer_python
            p = subprocess.run(
                [py, __file__, "--child", tool, str(src), str(tmp / f"{tool}.onnx")],
                capture_output=True, text=True, env={**os.environ, **env}, timeout=600,
            )  # fmt: skip
            if p.returncode != 0:
                errors[tool] = (p.stderr.strip().splitlines() or ["failed"])[-1][:200]
                continue
            times[tool].append(json.loads(p.stdout.strip().splitlines()[-1])["seconds"])
    shape_before = sum(c for op, c in base.items() if op in SHAPE_OPS)
    rows = []
    print(f"YOLO-style export: {sum(base.values())} nodes, {base.get('Shape', 0)} Shape, fixed {FIXED}")
    print(f"{'tool':10} {'nodes':>6} {'Shape/Gather/Unsq/Concat/Range/CoS left':>40} {'other op types changed':>24} "
          f"{'median s':>9} {'spread s':>9} same outputs")  # fmt: skip
    for tool in tools:
        if tool in errors:
            print(f"{tool:10} error: {errors[tool]}")
            rows.append({"tool": tool, "error": errors[tool]})
            continue
        out = tmp / f"{tool}.onnx"
        c = _counts(out)
        shape_left = sum(c.get(op, 0) for op in ("Shape", "Gather", "Unsqueeze", "Concat", "Range", "ConstantOfShape"))
        # Fusions: op types the tool introduced, or non-shape ops whose count changed.
        changed = sorted(
            op for op in set(base) | set(c) if op not in SHAPE_OPS and base.get(op, 0) != c.get(op, 0)
        )  # fmt: skip
        same = _same_outputs(src, out)
        med, spread = statistics.median(times[tool]), max(times[tool]) - min(times[tool])
        print(f"{tool:10} {sum(c.values()):>6} {shape_left:>40} {','.join(changed) or '-':>24} {med:>9.3f} "
              f"{spread:>9.3f} {same}")  # fmt: skip
        rows.append({"tool": tool, "nodes": sum(c.values()), "shape_nodes_left": shape_left,
                     "changed_op_types": changed, "median_s": med, "spread_s": spread, "same_outputs": same,
                     "rounds": len(times[tool])})  # fmt: skip
    # What `edgecnn check` reports on this export at the fixed shape, without and with the folding.
    from edgecnn.check.placement import Prepared, check_target, prepare_for_check
    from edgecnn.check.spec import available_targets, load_target
    from edgecnn.graph.load import load_model

    loaded = load_model(src, {"images": FIXED})
    raw, folded = Prepared(path=str(src), model=loaded.model, folded={}), prepare_for_check(loaded)
    print(f"folded: {folded.folded}")
    print(f"{'target':18} {'off-accelerator nodes, unfolded':>32} {'folded':>8}")
    checks = []
    for name in available_targets():
        t = load_target(name)
        before, after = check_target(raw, t), check_target(folded, t)
        nb, na = before.n_nodes - before.n_accelerated, after.n_nodes - after.n_accelerated
        print(f"{name:18} {f'{nb}/{before.n_nodes}':>32} {f'{na}/{after.n_nodes}':>8}")
        checks.append({"target": name, "off_unfolded": nb, "nodes_unfolded": before.n_nodes, "off_folded": na,
                       "nodes_folded": after.n_nodes})  # fmt: skip
    result = {"model": "yolo_like", "check": checks, "folded": folded.folded, "nodes_before": sum(base.values()), "shape_ops_before": shape_before,
              "shape_before": base.get("Shape", 0), "rows": rows}  # fmt: skip
    if a.json:
        a.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
