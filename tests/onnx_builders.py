"""Tiny ONNX models built in the tests with onnx.helper, with numpy weights the tests can check against."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def make_model(
    nodes: list[onnx.NodeProto],
    inputs: list[tuple[str, list[int | str]]],
    outputs: list[tuple[str, list[int | str] | None]],
    inits: dict[str, np.ndarray] | None = None,
    opset: int = OPSET,
    elem: int = TensorProto.FLOAT,
) -> onnx.ModelProto:
    """Build a model; output shapes may be None (left to inference)."""
    graph = helper.make_graph(
        nodes,
        "test",
        [helper.make_tensor_value_info(n, elem, s) for n, s in inputs],
        [helper.make_tensor_value_info(n, elem, s) if s is not None else _untyped(n) for n, s in outputs],
        initializer=[numpy_helper.from_array(v, k) for k, v in (inits or {}).items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="edgecnn-tests")
    model.ir_version = 8
    # Outputs given as None take their inferred type, as an exporter would write it.
    inferred = {vi.name: vi for vi in onnx.shape_inference.infer_shapes(model).graph.value_info}
    for out in model.graph.output:
        if not out.type.tensor_type.HasField("shape") and out.name in inferred:
            out.type.CopyFrom(inferred[out.name].type)
    return model


def _untyped(name: str) -> onnx.ValueInfoProto:
    vi = onnx.ValueInfoProto()
    vi.name = name
    return vi


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def rng_w(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * 0.5


def conv_model(
    cin: int = 3, cout: int = 8, k: int = 3, hw: int = 16, stride: int = 1, group: int = 1
) -> onnx.ModelProto:
    """Conv with bias, 'same' padding for odd k."""
    pad = k // 2
    w = rng_w(cout, cin // group, k, k)
    b = rng_w(cout, seed=1)
    node = helper.make_node(
        "Conv",
        ["x", "w", "b"],
        ["y"],
        name="conv",
        kernel_shape=[k, k],
        pads=[pad] * 4,
        strides=[stride] * 2,
        group=group,
    )
    return make_model([node], [("x", [1, cin, hw, hw])], [("y", None)], {"w": w, "b": b})


def small_cnn() -> onnx.ModelProto:
    """Conv-BN-ReLU, depthwise Conv, pointwise Conv, residual Add, GAP, Flatten, Gemm: 1x3x16x16 -> 1x4."""
    inits = {
        "w0": rng_w(8, 3, 3, 3, seed=0),
        "b0": np.zeros(8, np.float32),
        "bn_s": np.linspace(0.5, 1.5, 8).astype(np.float32),
        "bn_b": np.linspace(-0.2, 0.2, 8).astype(np.float32),
        "bn_m": np.linspace(-0.1, 0.1, 8).astype(np.float32),
        "bn_v": np.linspace(0.5, 2.0, 8).astype(np.float32),
        "wdw": rng_w(8, 1, 3, 3, seed=2),
        "bdw": rng_w(8, seed=3) * 0.1,
        "wpw": rng_w(8, 8, 1, 1, seed=4),
        "bpw": rng_w(8, seed=5) * 0.1,
        "wfc": rng_w(4, 8, seed=6),
        "bfc": rng_w(4, seed=7) * 0.1,
    }
    nodes = [
        helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], name="stem", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c0", "bn_s", "bn_b", "bn_m", "bn_v"], ["bn0"], name="stem_bn"),
        helper.make_node("Relu", ["bn0"], ["r0"], name="stem_relu"),
        helper.make_node(
            "Conv", ["r0", "wdw", "bdw"], ["dw"], name="dw", kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=8
        ),
        helper.make_node("Relu", ["dw"], ["r1"], name="dw_relu"),
        helper.make_node("Conv", ["r1", "wpw", "bpw"], ["pw"], name="pw", kernel_shape=[1, 1]),
        helper.make_node("Add", ["pw", "r0"], ["res"], name="residual"),
        helper.make_node("Relu", ["res"], ["r2"], name="res_relu"),
        helper.make_node("GlobalAveragePool", ["r2"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "wfc", "bfc"], ["logits"], name="fc", transB=1),
    ]
    return make_model(nodes, [("x", [1, 3, 16, 16])], [("logits", [1, 4])], inits)
