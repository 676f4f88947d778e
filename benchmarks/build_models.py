#!/usr/bin/env python3
"""Build ResNet-18 and MobileNetV2 benchmark models (ONNX, random weights) with onnx.helper and numpy only.

    python benchmarks/build_models.py [--out benchmarks/models] [--models resnet18,mobilenetv2] [--force]

The graphs follow the torchvision layouts at 1x3x224x224 with a 1000-class head, written the way an
unfolded export looks: every Conv (no bias) is followed by its own BatchNormalization, ReLU6 is
Clip(0, 6), and the head is GlobalAveragePool -> Flatten -> Gemm. Opset 17, fixed batch 1, input "input",
output "logits". The weights are random but seeded (numpy PCG64), so a file is byte-identical for a given
seed; an existing file with the same bytes is left alone unless --force.

Weight scales: conv weights are He-normal (std = sqrt(2 / fan_in)); BN running mean/var are close to 0/1
and gamma/beta close to 1/0, so a BN is close to an identity scaled by gamma; the last BN of every residual
branch gets a smaller gamma (~0.5), as trained ResNets tend to have, so the sum of branch and shortcut does
not double the activation variance per block. Activations of a N(0, 1) input then stay O(1) through the
whole network (the check prints the largest activation RMS). The predictions are meaningless: these files
are for latency, memory and conversion benchmarks only.

Every model is checked with onnx.checker (full_check=True) and run once with onnxruntime; the output must be
finite and not constant.
"""

from __future__ import annotations

import argparse
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "benchmarks" / "models"
OPSET = 17
INPUT_SHAPE = (1, 3, 224, 224)
NUM_CLASSES = 1000
BN_EPS = 1e-5
RANDOM_NOTE = "for benchmarks only, predictions are meaningless."


@dataclass
class GraphBuilder:
    """Collects nodes and initializers; each layer helper returns the name of its output tensor."""

    rng: np.random.Generator
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    inits: list[onnx.TensorProto] = field(default_factory=list)
    params: int = 0  # weights + BN gamma/beta (the count torchvision reports)
    buffers: int = 0  # BN running mean/var (initializers that are not trainable parameters)

    def _init(self, name: str, arr: np.ndarray, trainable: bool = True) -> str:
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr, dtype=np.float32), name))
        if trainable:
            self.params += arr.size
        else:
            self.buffers += arr.size
        return name

    def conv(self, x: str, name: str, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> str:
        """Bias-free Conv with He-normal weights (fan_in = cin / groups * k * k) and 'same' padding."""
        fan_in = cin // groups * k * k
        w = self.rng.standard_normal((cout, cin // groups, k, k), dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))
        wname = self._init(f"{name}.weight", w)
        p = k // 2
        self.nodes.append(
            helper.make_node(
                "Conv",
                [x, wname],
                [name],
                name=name,
                kernel_shape=[k, k],
                strides=[stride, stride],
                pads=[p, p, p, p],
                dilations=[1, 1],
                group=groups,
            )
        )
        return name

    def bn(self, x: str, name: str, c: int, gamma: float = 1.0) -> str:
        """Inference BatchNormalization with plausible trained-looking statistics around gamma/0/0/1."""
        r = self.rng
        scale = gamma * r.uniform(0.8, 1.2, c)
        bias = r.normal(0.0, 0.05, c)
        mean = r.normal(0.0, 0.05, c)
        var = r.uniform(0.8, 1.2, c)
        ins = [
            x,
            self._init(f"{name}.weight", scale),
            self._init(f"{name}.bias", bias),
            self._init(f"{name}.running_mean", mean, trainable=False),
            self._init(f"{name}.running_var", var, trainable=False),
        ]
        self.nodes.append(helper.make_node("BatchNormalization", ins, [name], name=name, epsilon=BN_EPS))
        return name

    def relu(self, x: str, name: str) -> str:
        self.nodes.append(helper.make_node("Relu", [x], [name], name=name))
        return name

    def relu6(self, x: str, name: str) -> str:
        # Opset >= 11 Clip takes min/max as inputs; one shared pair of scalar initializers, like torch's export.
        if not any(t.name == "relu6.min" for t in self.inits):
            self.inits.append(numpy_helper.from_array(np.array(0.0, np.float32), "relu6.min"))
            self.inits.append(numpy_helper.from_array(np.array(6.0, np.float32), "relu6.max"))
        self.nodes.append(helper.make_node("Clip", [x, "relu6.min", "relu6.max"], [name], name=name))
        return name

    def add(self, a: str, b: str, name: str) -> str:
        self.nodes.append(helper.make_node("Add", [a, b], [name], name=name))
        return name

    def maxpool(self, x: str, name: str, k: int, stride: int, pad: int) -> str:
        self.nodes.append(
            helper.make_node(
                "MaxPool", [x], [name], name=name, kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4
            )
        )
        return name

    def head(self, x: str, cin: int) -> str:
        """GlobalAveragePool -> Flatten -> Gemm(cin -> NUM_CLASSES), output "logits"."""
        self.nodes.append(helper.make_node("GlobalAveragePool", [x], ["avgpool"], name="avgpool"))
        self.nodes.append(helper.make_node("Flatten", ["avgpool"], ["flatten"], name="flatten", axis=1))
        # No ReLU follows the classifier, so LeCun-normal (std = sqrt(1 / fan_in)) keeps logits O(1).
        w = self.rng.standard_normal((NUM_CLASSES, cin), dtype=np.float32) * np.float32(np.sqrt(1.0 / cin))
        b = self.rng.normal(0.0, 0.01, NUM_CLASSES)
        ins = ["flatten", self._init("fc.weight", w), self._init("fc.bias", b)]
        self.nodes.append(helper.make_node("Gemm", ins, ["logits"], name="fc", transB=1))
        return "logits"

    def model(self, graph_name: str, doc: str, seed: int) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes,
            graph_name,
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(INPUT_SHAPE))],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [INPUT_SHAPE[0], NUM_CLASSES])],
            initializer=self.inits,
        )
        m = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="edgecnn benchmarks/build_models.py",
            doc_string=doc,
        )
        m.ir_version = 8  # the IR version that goes with opset 17; readable by older runtimes too
        helper.set_model_props(
            m,
            {
                "generator": "benchmarks/build_models.py",
                "weights": "random",
                "seed": str(seed),
                "architecture": graph_name,
            },
        )
        return m


# --------------------------------------------------------------------------------------------------------
def build_resnet18(rng: np.random.Generator, seed: int) -> tuple[onnx.ModelProto, GraphBuilder]:
    """torchvision resnet18: 7x7/2 stem, 3x3/2 max pool, 4 stages of 2 BasicBlocks (64, 128, 256, 512)."""
    g = GraphBuilder(rng)
    x = g.relu(g.bn(g.conv("input", "conv1", 3, 64, 7, stride=2), "bn1", 64), "relu")
    x = g.maxpool(x, "maxpool", 3, 2, 1)
    cin = 64
    for stage, cout in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            p = f"layer{stage}.{block}"
            stride = 2 if stage > 1 and block == 0 else 1
            y = g.relu(g.bn(g.conv(x, f"{p}.conv1", cin, cout, 3, stride), f"{p}.bn1", cout), f"{p}.relu1")
            y = g.bn(g.conv(y, f"{p}.conv2", cout, cout, 3), f"{p}.bn2", cout, gamma=0.5)
            if stride != 1 or cin != cout:
                x = g.bn(g.conv(x, f"{p}.downsample.0", cin, cout, 1, stride), f"{p}.downsample.1", cout)
            x = g.relu(g.add(y, x, f"{p}.add"), f"{p}.relu2")
            cin = cout
    g.head(x, 512)
    doc = f"ResNet-18 (torchvision layout), random weights (seed {seed}); {RANDOM_NOTE}"
    return g.model("resnet18", doc, seed), g


# (expand ratio t, output channels c, repeats n, first stride s), as in the MobileNetV2 paper / torchvision.
MBV2_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def build_mobilenetv2(rng: np.random.Generator, seed: int) -> tuple[onnx.ModelProto, GraphBuilder]:
    """torchvision mobilenet_v2 (width 1.0): inverted residuals with linear bottlenecks, ReLU6 = Clip(0, 6)."""
    g = GraphBuilder(rng)

    def conv_bn_relu6(x: str, name: str, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> str:
        return g.relu6(g.bn(g.conv(x, f"{name}.0", cin, cout, k, stride, groups), f"{name}.1", cout), f"{name}.2")

    x = conv_bn_relu6("input", "features.0", 3, 32, 3, stride=2)
    cin, idx = 32, 1
    for t, c, n, s in MBV2_SETTINGS:
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = cin * t
            p = f"features.{idx}.conv"
            y, j = x, 0
            if t != 1:
                y, j = conv_bn_relu6(y, f"{p}.{j}", cin, hidden, 1), j + 1
            y = conv_bn_relu6(y, f"{p}.{j}", hidden, hidden, 3, stride, groups=hidden)
            residual = stride == 1 and cin == c
            # Linear bottleneck: 1x1 projection + BN, no activation.
            y = g.bn(g.conv(y, f"{p}.{j + 1}", hidden, c, 1), f"{p}.{j + 2}", c, gamma=0.5 if residual else 1.0)
            x = g.add(x, y, f"features.{idx}.add") if residual else y
            cin, idx = c, idx + 1
    x = conv_bn_relu6(x, f"features.{idx}", cin, 1280, 1)
    g.head(x, 1280)
    doc = f"MobileNetV2 1.0 (torchvision layout), random weights (seed {seed}); {RANDOM_NOTE}"
    return g.model("mobilenetv2", doc, seed), g


BUILDERS: dict[str, Callable[[np.random.Generator, int], tuple[onnx.ModelProto, GraphBuilder]]] = {
    "resnet18": build_resnet18,
    "mobilenetv2": build_mobilenetv2,
}
# torchvision's parameter counts (weights + BN affine, without running stats), to catch a wrong layout.
EXPECTED_PARAMS = {"resnet18": 11_689_512, "mobilenetv2": 3_504_872}


# --------------------------------------------------------------------------------------------------------
def model_seed(name: str, seed: int) -> int:
    """A per-model seed that does not change when other models are added or the build order changes."""
    return seed * 1_000_003 + zlib.crc32(name.encode())


def run_check(m: onnx.ModelProto, seed: int) -> tuple[np.ndarray, float]:
    """Run the model on a seeded N(0, 1) input with onnxruntime, unoptimized and optimized.

    The unoptimized run exposes every intermediate tensor. Returns its logits and the largest per-tensor RMS
    over all node outputs. Fails on non-finite values, constant logits, or when the two runs disagree.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        raise SystemExit("onnxruntime is not installed; run with the project venv (.venv/bin/python)") from None
    probe = onnx.ModelProto()
    probe.CopyFrom(m)
    outs = {o.name for o in probe.graph.output}
    for node in probe.graph.node:
        for o in node.output:
            if o not in outs:
                probe.graph.output.append(helper.make_empty_tensor_value_info(o))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every tensor observable
    sess = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(seed).standard_normal(INPUT_SHAPE, dtype=np.float32)
    names = [o.name for o in sess.get_outputs()]
    results = dict(zip(names, sess.run(None, {"input": x}), strict=True))
    logits = results["logits"]
    if logits.shape != (INPUT_SHAPE[0], NUM_CLASSES):
        raise SystemExit(f"{m.graph.name}: logits shape {logits.shape}, expected {(INPUT_SHAPE[0], NUM_CLASSES)}")
    for name, v in results.items():
        if not np.all(np.isfinite(v)):
            raise SystemExit(f"{m.graph.name}: non-finite values in {name}")
    if np.ptp(logits) == 0:
        raise SystemExit(f"{m.graph.name}: all logits are identical ({logits.flat[0]})")
    max_rms = max(float(np.sqrt(np.mean(np.square(v, dtype=np.float64)))) for v in results.values())
    # The model as written (default graph optimizations, which fuse BN into Conv) must agree with the probe.
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    (fused,) = sess.run(None, {"input": x})
    if not np.allclose(fused, logits, rtol=1e-3, atol=1e-3 * float(np.abs(logits).max())):
        diff = float(np.abs(fused - logits).max())
        raise SystemExit(f"{m.graph.name}: optimized and unoptimized onnxruntime runs differ (max |diff| {diff:.3g})")
    return logits, max_rms


def build_one(name: str, out_dir: Path, seed: int, force: bool) -> Path:
    mseed = model_seed(name, seed)
    m, g = BUILDERS[name](np.random.default_rng(mseed), seed)
    if g.params != EXPECTED_PARAMS[name]:
        raise SystemExit(f"{name}: {g.params:,} parameters, torchvision has {EXPECTED_PARAMS[name]:,}; layout is wrong")
    onnx.checker.check_model(m, full_check=True)
    data = m.SerializeToString()
    path = out_dir / f"{name}.onnx"
    if path.is_file() and not force and path.read_bytes() == data:
        status = "up to date"
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        status = "written"
    logits, max_rms = run_check(m, mseed)
    ops = sorted({n.op_type for n in m.graph.node})
    print(
        f"{path}: {status}; {g.params:,} params (+{g.buffers:,} BN running stats), {len(data) / 2**20:.1f} MiB, "
        f"{len(m.graph.node)} nodes {ops}; onnxruntime ok: logits mean {logits.mean():+.3f} std {logits.std():.3f}, "
        f"max activation RMS {max_rms:.2f}"
    )
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    ap.add_argument("--models", default=",".join(BUILDERS), help=f"comma-separated, from: {', '.join(BUILDERS)}")
    ap.add_argument("--seed", type=int, default=0, help="weight seed (default 0)")
    ap.add_argument("--force", action="store_true", help="rewrite files even when their content is unchanged")
    args = ap.parse_args(argv)
    names = [n.strip().lower() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in BUILDERS]
    if unknown or not names:
        ap.error(f"--models {args.models!r}: unknown {unknown}; choose from {', '.join(BUILDERS)}")
    for name in dict.fromkeys(names):  # de-duplicate, keep order
        build_one(name, args.out, args.seed, args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
