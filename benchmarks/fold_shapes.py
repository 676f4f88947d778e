#!/usr/bin/env python3
"""Which library should fold a PyTorch export's shape subgraphs before `edgecnn check`? Measured, not assumed.

    python benchmarks/fold_shapes.py --setup-peers      # create benchmarks/.venv-fold-peers (onnxslim, onnxsim)
    python benchmarks/fold_shapes.py [--rounds 5]       # writes benchmarks/results/fold_shapes.json

Builds a small YOLO-style detector in PyTorch (Conv-BN-SiLU backbone, nearest upsample whose size comes from
``x.shape``, a detect head that reshapes with ``view(bs, na, no, ny, nx)`` and builds its grid with
``torch.arange`` + ``meshgrid``), exports it with ``torch.onnx.export`` (TorchScript exporter, dynamic batch
and size: the export that carries Shape/Gather/Unsqueeze/Concat/Range/ConstantOfShape chains), then folds it
at a fixed 1x3x256x256 with each candidate on the shared runner (`benchmarks/runner.py`: every measurement in
a fresh process, >= 5 alternating rounds, median with spread, machine facts):

- ``edgecnn``: ``edgecnn.graph.passes.fold_static_shapes`` (onnx shape inference + onnx's reference evaluator;
  no new dependency);
- ``onnxslim``: ``onnxslim.slim`` (constant folding + graph fusions);
- ``onnxsim``: ``onnxsim.simplify`` (onnxruntime-based constant folding + onnxoptimizer).

onnxslim and onnxsim are not edgecnn dependencies: they run in their own virtual environment
(``benchmarks/.venv-fold-peers``, gitignored, made by ``--setup-peers``); the runner's child calls that
interpreter as a subprocess (as `export.py` does for onnx2tf). edgecnn's fold also runs in a subprocess of the
child (edgecnn's interpreter), so every tool is timed the same way: ``fold_s`` is the folding call alone,
measured inside the tool's process; the runner also records each child's wall time.

For each tool: nodes left, shape-computation nodes left, op types changed other than by folding or by dropping
Identity nodes (a fusion changes what the checker sees), and whether ONNX Runtime gives the same outputs as the unfolded model. The
script also records what `edgecnn check` reports off the accelerator per bundled target, before and after
folding. `readme_table` / `readme_verdict` render the README blocks from the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
NAME = "fold_shapes"
PEER_VENV = REPO / "benchmarks" / ".venv-fold-peers"
PEER_PY = PEER_VENV / "bin" / "python"
PEER_PACKAGES = ("onnxslim", "onnxsim", "onnxruntime", "onnx")
TOOLS = ("edgecnn", "onnxslim", "onnxsim")
LABELS = {
    "edgecnn": "onnx shape inference + reference evaluator (`edgecnn.graph.passes.fold_static_shapes`)",
    "onnxslim": "onnxslim",
    "onnxsim": "onnxsim",
}
SHAPE_OPS = {"Shape", "Size", "Gather", "Unsqueeze", "Squeeze", "Concat", "Range", "ConstantOfShape", "Cast",
             "Slice", "Mul", "Add", "Div", "Sub", "Floor", "Equal", "Where", "Expand", "Reshape"}  # fmt: skip
NOT_A_FUSION = SHAPE_OPS | {"Identity"}  # removing an Identity changes nothing the checker places
SHAPE_CHAIN = ("Shape", "Gather", "Unsqueeze", "Concat", "Range", "ConstantOfShape")
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


def _fold(tool: str, src: str, dst: str) -> None:
    """(Runs in the tool's own interpreter.) Fold ``src`` at FIXED with ``tool``; print JSON {fold_s, version}."""
    import importlib.metadata

    import onnx

    t0 = time.perf_counter()
    if tool == "edgecnn":
        from edgecnn.graph.load import load_model
        from edgecnn.graph.passes import fold_static_shapes

        out, _ = fold_static_shapes(load_model(src, {"images": FIXED}).model)
        version = importlib.metadata.version("onnx")
    elif tool == "onnxslim":
        import onnxslim

        out = onnxslim.slim(src, input_shapes=[f"images:{','.join(map(str, FIXED))}"])
        version = importlib.metadata.version("onnxslim")
    elif tool == "onnxsim":
        import onnxsim

        out, ok = onnxsim.simplify(src, overwrite_input_shapes={"images": list(FIXED)})
        if not ok:
            raise RuntimeError("onnxsim could not validate its result")
        version = importlib.metadata.version("onnxsim")
    else:
        raise ValueError(f"tool {tool!r}; known: {', '.join(TOOLS)}")
    dt = time.perf_counter() - t0
    onnx.save(out, dst)
    print(json.dumps({"fold_s": dt, "version": version}))


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


def measure(*, tool: str, src: str, out_dir: str, peer_python: str, threads: int, batch: int) -> dict[str, Any]:
    """(Runs in the runner's child.) Fold with ``tool`` in its own interpreter; time, graph facts, ORT parity."""
    del batch  # folding has no batch; the model's batch is fixed by FIXED for every tool alike
    dst = Path(out_dir) / f"{tool}.onnx"
    py = sys.executable if tool == "edgecnn" else peer_python
    env = {**os.environ, "PYTHONPATH": str(REPO), **{v: str(threads) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}}
    if tool != "edgecnn":
        env.pop("PYTHONPATH")  # the peer venv sees only its own packages
    r = subprocess.run([py, str(Path(__file__).resolve()), "--fold", tool, src, str(dst)],
                       capture_output=True, text=True, env=env, timeout=600)  # fmt: skip
    if r.returncode != 0:
        tail = [ln for ln in (r.stderr + r.stdout).strip().splitlines() if ln.strip()][-1:]
        raise RuntimeError(f"{tool} failed: {' | '.join(tail)[-300:]}")
    res = json.loads(r.stdout.strip().splitlines()[-1])
    base, c = _counts(Path(src)), _counts(dst)
    changed = sorted(op for op in set(base) | set(c) if op not in NOT_A_FUSION and base.get(op, 0) != c.get(op, 0))
    return {
        "fold_s": float(res["fold_s"]),
        "version": str(res["version"]),
        "nodes": sum(c.values()),
        "shape_nodes_left": sum(c.get(op, 0) for op in SHAPE_CHAIN),
        "ops": json.dumps(dict(sorted(c.items()))),
        "changed_op_types": ",".join(changed) or "-",
        "same_outputs": _same_outputs(Path(src), dst),
    }


def check_counts(src: Path) -> dict[str, Any]:
    """What `edgecnn check` reports off the accelerator on the export at FIXED, unfolded and folded, per target."""
    from edgecnn.check.placement import Prepared, check_target, prepare_for_check
    from edgecnn.check.spec import available_targets, load_target
    from edgecnn.graph.load import load_model

    loaded = load_model(src, {"images": FIXED})
    raw, folded = Prepared(path=str(src), model=loaded.model, folded={}), prepare_for_check(loaded)
    checks = []
    for name in available_targets():
        t = load_target(name)
        before, after = check_target(raw, t), check_target(folded, t)
        checks.append({"target": name, "off_unfolded": before.n_nodes - before.n_accelerated,
                       "nodes_unfolded": before.n_nodes, "off_folded": after.n_nodes - after.n_accelerated,
                       "nodes_folded": after.n_nodes})  # fmt: skip
    return {"check": checks, "folded": dict(folded.folded)}


# -- README blocks (rendered by benchmarks/readme_tables.py from the JSON) -------------------------------------
def _variant(payload: dict[str, Any], tool: str) -> dict[str, Any] | None:
    return next((v for v in payload["variants"] if v["name"] == tool), None)


def _fact(v: dict[str, Any], key: str) -> Any:
    f = v["facts"].get(key)
    return f[0] if isinstance(f, list) and len(f) == 1 else f


def _ok(v: dict[str, Any] | None) -> bool:
    return bool(v) and v["status"] == "ok" and v["rounds_ok"] > 0  # type: ignore[index]


def readme_table(payload: dict[str, Any]) -> str:
    from runner import fmt_spread, median

    x = payload["fold_shapes"]
    m = payload["machine"]
    lines = [
        f"YOLO-style export: {x['nodes_before']} nodes, {x['shape_before']} Shape, folded at "
        f"{'x'.join(map(str, x['fixed']))}; {payload['settings']['rounds']} alternating rounds, each tool in a fresh "
        f"process (load {m['loadavg_before'][0]} before, {m['loadavg_after'][0]} after; timings are noisy on a "
        "shared machine):",
        "",
        "| folding | nodes left | Shape/Gather/Unsqueeze/Concat/Range/ConstantOfShape left | fold s, median [min-max] "
        "| same outputs (ORT) |",
        "|---|---:|---:|---:|---|",
    ]
    for tool in TOOLS:
        v = _variant(payload, tool)
        if not _ok(v):
            lines.append(f"| {LABELS[tool]} | - | - | {(v or {}).get('status', 'not run')} | - |")
            continue
        assert v is not None
        label = LABELS[tool] if tool == "edgecnn" else f"{LABELS[tool]} {_fact(v, 'version')}"
        same = _fact(v, "same_outputs")
        nodes, left = median(payload, tool, "nodes"), median(payload, tool, "shape_nodes_left")
        lines.append(f"| {label} | {nodes:.0f} | {left:.0f} | {fmt_spread(payload, tool, 'fold_s', '.3f')} "
                     f"| {'yes' if same is True else 'no'} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def verdict(payload: dict[str, Any]) -> dict[str, Any]:
    """The facts the verdict sentence states, computed from the payload."""
    from runner import median, spread

    e, s = _variant(payload, "edgecnn"), _variant(payload, "onnxsim")
    out: dict[str, Any] = {"measured": _ok(e) and _ok(s)}
    if not out["measured"]:
        return out
    assert e is not None and s is not None
    out["same_graph"] = _fact(e, "ops") == _fact(s, "ops")
    out["same_outputs"] = _fact(e, "same_outputs") is True
    out["fuses_nothing"] = _fact(e, "changed_op_types") == "-"
    me, ms = median(payload, "edgecnn", "fold_s"), median(payload, "onnxsim", "fold_s")
    (_, e_max), (s_min, _) = spread(payload, "edgecnn", "fold_s"), spread(payload, "onnxsim", "fold_s")  # type: ignore[misc]
    out["ratio"] = ms / me if me else float("inf")  # type: ignore[operator]
    out["faster"] = e_max < s_min  # every edgecnn round beat every onnxsim round
    return out


def _off_sentence(checks: list[dict[str, Any]]) -> str:
    groups: dict[tuple[int, int, int, int], list[str]] = {}
    for c in checks:
        key = (c["off_unfolded"], c["nodes_unfolded"], c["off_folded"], c["nodes_folded"])
        groups.setdefault(key, []).append(c["target"])
    parts = [f"{ob}/{nb} -> {of}/{nf} on {', '.join(names)}"
             for (ob, nb, of, nf), names in sorted(groups.items(), key=lambda kv: (-kv[0][0], kv[1]))]  # fmt: skip
    return "; ".join(parts)


def readme_verdict(payload: dict[str, Any]) -> str:
    v = verdict(payload)
    x = payload["fold_shapes"]
    if not v["measured"]:
        head = "edgecnn's folding or onnxsim did not complete in this run, so no comparison is stated."
    else:
        graph = "leaves the same graph as onnxsim" if v["same_graph"] else "leaves a different graph from onnxsim"
        if v["faster"]:
            speed = f"about {v['ratio']:.0f}x faster (every round faster than every onnxsim round)"
        elif v["ratio"] >= 1:
            speed = f"not reliably faster ({v['ratio']:.2f}x by median, the rounds overlap)"
        else:
            speed = f"slower ({1 / v['ratio']:.2f}x onnxsim's median time)"
        outputs = "same outputs on ONNX Runtime" if v["same_outputs"] else "DIFFERENT outputs on ONNX Runtime"
        fuses = "fuses nothing" if v["fuses_nothing"] else "changes non-shape op types"
        head = (f"onnx's own folding {graph}, {speed}, with the {outputs}; it needs no new dependency and {fuses} "
                "(the checker must see the ops the user exported).")  # fmt: skip
    return (
        f"{head} Nodes `edgecnn check` reports off the accelerator on that export, unfolded -> folded: "
        f"{_off_sentence(x['check'])}.\n"
    )


# -- set-up and main ------------------------------------------------------------------------------------------
def setup_peers() -> None:
    if not PEER_PY.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
    subprocess.run([str(PEER_PY), "-m", "pip", "install", "-q", *PEER_PACKAGES], check=True)


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--fold":
        _fold(*sys.argv[2:])
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from runner import Settings, Variant, common_args, fmt_spread, run_benchmark, settings_from

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_args(ap, threads=1)
    ap.add_argument("--peer-python", type=Path, default=PEER_PY, help="interpreter that has onnxslim and onnxsim")
    ap.add_argument("--setup-peers", action="store_true", help=f"create {PEER_VENV.relative_to(REPO)} and exit")
    a = ap.parse_args()
    if a.setup_peers:
        setup_peers()
        return 0
    if not a.peer_python.exists():
        print(f"error: {a.peer_python}: no such interpreter; run: python benchmarks/fold_shapes.py --setup-peers",
              file=sys.stderr)  # fmt: skip
        return 3
    try:
        settings: Settings = settings_from(a)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="edgecnn-fold-bench-") as tmp:
        src = Path(tmp) / "yolo_like.onnx"
        build_yolo_like(src)
        base = _counts(src)
        variants = [Variant(name=t, fn="fold_shapes:measure",
                            params={"tool": t, "src": str(src), "out_dir": tmp, "peer_python": str(a.peer_python)})
                    for t in TOOLS]  # fmt: skip
        extra = {"fold_shapes": {"fixed": list(FIXED), "nodes_before": sum(base.values()),
                                 "shape_before": base.get("Shape", 0), **check_counts(src)}}  # fmt: skip
        payload = run_benchmark(NAME, variants, settings, extra=extra, results=a.results)
    print(f"{'tool':10} {'nodes':>6} {'shape left':>10} {'changed':>10} {'fold s median [min-max]':>26} same outputs")
    for t in TOOLS:
        v = _variant(payload, t)
        if not _ok(v):
            print(f"{t:10} {(v or {}).get('status')}")
            continue
        assert v is not None
        print(f"{t:10} {v['summary']['nodes']['median']:>6.0f} {v['summary']['shape_nodes_left']['median']:>10.0f} "
              f"{_fact(v, 'changed_op_types'):>10} {fmt_spread(payload, t, 'fold_s', '.3f'):>26} "
              f"{_fact(v, 'same_outputs')}")  # fmt: skip
    print(readme_verdict(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
