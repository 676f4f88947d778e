"""Single-op ONNX models for the target agreement tests and the per-constraint corpus.

``single_op(op)`` builds a small valid model (float32, opset 17, fixed shapes) whose one compute node is
``op``; every op listed in targets/intel-cpu.toml and targets/ort-cpu.toml has a builder here.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
X = [1, 4, 8, 8]


def _model(
    nodes: list[onnx.NodeProto],
    inits: dict[str, np.ndarray] | None = None,
    x_shape: list[int] = X,
    out_type: int = TensorProto.FLOAT,
    elem: int = TensorProto.FLOAT,
    opset: int = OPSET,
) -> onnx.ModelProto:
    g = helper.make_graph(
        nodes,
        "corpus",
        [helper.make_tensor_value_info("x", elem, x_shape)],
        [helper.make_tensor_value_info("y", out_type, None)],
        initializer=[numpy_helper.from_array(v, k) for k, v in (inits or {}).items()],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="edgecnn-corpus")
    m.ir_version = 8
    # Give the output its inferred type and shape (the checker wants a shape on graph outputs).
    inferred = onnx.shape_inference.infer_shapes(m)
    known = {
        vi.name: vi
        for vi in [*inferred.graph.value_info, *inferred.graph.output]
        if vi.type.tensor_type.HasField("shape")
    }
    if "y" in known:
        m.graph.output[0].CopyFrom(known["y"])
    return m


def _w(*shape: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) * 0.3).astype(np.float32)


def _n(op: str, inputs: list[str], **attrs: object) -> onnx.NodeProto:
    return helper.make_node(op, inputs, ["y"], name=op.lower(), **attrs)


def _unary(op: str, **attrs: object) -> onnx.ModelProto:
    return _model([_n(op, ["x"], **attrs)])


def _binary(op: str) -> onnx.ModelProto:
    return _model([_n(op, ["x", "c"])], {"c": np.full([1, 4, 1, 1], 1.5, np.float32)})


def _ints(v: list[int]) -> np.ndarray:
    return np.array(v, np.int64)


BUILDERS = {
    "Conv": lambda: _model([_n("Conv", ["x", "w", "b"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])],
                           {"w": _w(8, 4, 3, 3), "b": _w(8)}),
    "ConvTranspose": lambda: _model([_n("ConvTranspose", ["x", "w"], kernel_shape=[2, 2], strides=[2, 2])],
                                    {"w": _w(4, 4, 2, 2)}),
    "BatchNormalization": lambda: _model([_n("BatchNormalization", ["x", "s", "b", "m", "v"])],
                                         {"s": np.ones(4, np.float32), "b": np.zeros(4, np.float32),
                                          "m": np.zeros(4, np.float32), "v": np.ones(4, np.float32)}),
    "InstanceNormalization": lambda: _model([_n("InstanceNormalization", ["x", "s", "b"])],
                                            {"s": np.ones(4, np.float32), "b": np.zeros(4, np.float32)}),
    "LayerNormalization": lambda: _model([_n("LayerNormalization", ["x", "s", "b"], axis=-1)],
                                         {"s": np.ones(8, np.float32), "b": np.zeros(8, np.float32)}),
    "Clip": lambda: _model([_n("Clip", ["x", "lo", "hi"])],
                           {"lo": np.array(0, np.float32), "hi": np.array(6, np.float32)}),
    "PRelu": lambda: _model([_n("PRelu", ["x", "s"])], {"s": np.full([4, 1, 1], 0.1, np.float32)}),
    "Pow": lambda: _model([_n("Pow", ["x", "e"])], {"e": np.array(2.0, np.float32)}),
    "MaxPool": lambda: _unary("MaxPool", kernel_shape=[2, 2], strides=[2, 2]),
    "AveragePool": lambda: _unary("AveragePool", kernel_shape=[2, 2], strides=[2, 2]),
    "Gemm": lambda: _model([_n("Gemm", ["x", "w", "b"], transB=1)], {"w": _w(3, 16), "b": _w(3)}, x_shape=[2, 16]),
    "MatMul": lambda: _model([_n("MatMul", ["x", "w"])], {"w": _w(8, 5)}),
    "Reshape": lambda: _model([_n("Reshape", ["x", "s"])], {"s": _ints([1, -1])}),
    "Transpose": lambda: _unary("Transpose", perm=[0, 2, 3, 1]),
    "Concat": lambda: _model([_n("Concat", ["x", "x"], axis=1)]),
    "Split": lambda: _model([helper.make_node("Split", ["x", "sp"], ["y", "z"], name="split", axis=1)],
                            {"sp": _ints([2, 2])}),
    "Slice": lambda: _model([_n("Slice", ["x", "st", "en", "ax"])],
                            {"st": _ints([1]), "en": _ints([3]), "ax": _ints([1])}),
    "Pad": lambda: _model([_n("Pad", ["x", "p"])], {"p": _ints([0, 0, 1, 1, 0, 0, 1, 1])}),
    "Resize": lambda: _model([_n("Resize", ["x", "", "sc"], mode="nearest")],
                             {"sc": np.array([1, 1, 2, 2], np.float32)}),
    "Softmax": lambda: _unary("Softmax", axis=1),
    "ReduceMean": lambda: _unary("ReduceMean", axes=[2, 3], keepdims=1),
    "ReduceMax": lambda: _unary("ReduceMax", axes=[2, 3], keepdims=1),
    "Squeeze": lambda: _model([_n("Squeeze", ["x", "a"])], {"a": _ints([0])}),
    "Unsqueeze": lambda: _model([_n("Unsqueeze", ["x", "a"])], {"a": _ints([0])}),
    "DepthToSpace": lambda: _unary("DepthToSpace", blocksize=2),
    "SpaceToDepth": lambda: _unary("SpaceToDepth", blocksize=2),
    "LRN": lambda: _unary("LRN", size=3),
    "Cast": lambda: _model([_n("Cast", ["x"], to=TensorProto.FLOAT16)], out_type=TensorProto.FLOAT16),
    "Flatten": lambda: _unary("Flatten", axis=1),
}  # fmt: skip
for _op in ("Relu", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Elu", "Selu", "Softplus", "Erf",
            "Sqrt", "Exp", "Abs", "Neg", "GlobalAveragePool", "GlobalMaxPool", "Identity", "Dropout"):  # fmt: skip
    BUILDERS[_op] = lambda op=_op: _unary(op)
for _op in ("Add", "Sub", "Mul", "Div", "Max", "Min"):
    BUILDERS[_op] = lambda op=_op: _binary(op)


def _shaped(m: onnx.ModelProto, shape: list[int]) -> onnx.ModelProto:
    """Declare the output's shape where ONNX shape inference gives none (function ops such as GroupNormalization)."""
    m.graph.output[0].CopyFrom(helper.make_tensor_value_info("y", TensorProto.FLOAT, shape))
    return m


# Ops real CNN exports carry beyond the layers: old-opset spellings (Upsample, Sum), shape and index ops of
# detection heads, post-processing (TopK, NonMaxSuppression), newer activations and normalizations.
_SCALE4 = {"c": np.full([1, 4, 1, 1], 0.5, np.float32)}
BUILDERS.update({
    "Sum": lambda: _model([_n("Sum", ["x", "x", "x"])]),
    "Mean": lambda: _model([_n("Mean", ["x", "x"])]),
    "Upsample": lambda: _model([_n("Upsample", ["x", "sc"], mode="nearest")],
                               {"sc": np.array([1, 1, 2, 2], np.float32)}, opset=9),
    "ArgMax": lambda: _model([_n("ArgMax", ["x"], axis=1)], out_type=TensorProto.INT64),
    "Gather": lambda: _model([_n("Gather", ["x", "i"], axis=1)], {"i": _ints([0, 2])}),
    "Shape": lambda: _model([_n("Shape", ["x"])], out_type=TensorProto.INT64),
    "Expand": lambda: _model([_n("Expand", ["x", "s"])], {"s": _ints([2, 4, 8, 8])}),
    "Tile": lambda: _model([_n("Tile", ["x", "r"])], {"r": _ints([1, 1, 2, 2])}),
    "ReduceSum": lambda: _model([_n("ReduceSum", ["x", "a"], keepdims=1)], {"a": _ints([2, 3])}),
    "ReduceMin": lambda: _unary("ReduceMin", axes=[2, 3], keepdims=1),
    "ReduceL2": lambda: _unary("ReduceL2", axes=[1], keepdims=1),
    "Greater": lambda: _model([_n("Greater", ["x", "c"])], _SCALE4, out_type=TensorProto.BOOL),
    "Less": lambda: _model([_n("Less", ["x", "c"])], _SCALE4, out_type=TensorProto.BOOL),
    "Equal": lambda: _model([_n("Equal", ["x", "c"])], _SCALE4, out_type=TensorProto.BOOL),
    "TopK": lambda: _model([helper.make_node("TopK", ["x", "k"], ["y", "idx"], name="topk", axis=-1)],
                           {"k": _ints([3])}),
    "LpNormalization": lambda: _unary("LpNormalization", axis=1),
    "LogSoftmax": lambda: _unary("LogSoftmax", axis=1),
    "CumSum": lambda: _model([_n("CumSum", ["x", "a"])], {"a": np.array(1, np.int64)}),
    "Einsum": lambda: _model([_n("Einsum", ["x", "w"], equation="bchw,hk->bcwk")], {"w": _w(8, 5)}),
    "GridSample": lambda: _model([_n("GridSample", ["x", "g"])], {"g": np.zeros([1, 4, 4, 2], np.float32)}),
    "Mish": lambda: _model([_n("Mish", ["x"])], opset=18),
    "GroupNormalization": lambda: _shaped(_model([_n("GroupNormalization", ["x", "s", "b"], num_groups=2)],
                                                 {"s": np.ones(4, np.float32), "b": np.zeros(4, np.float32)},
                                                 opset=21), X),
    "NonMaxSuppression": lambda: _model(
        [_n("NonMaxSuppression", ["x", "sc"])],
        {"sc": np.random.default_rng(0).random((1, 2, 10)).astype(np.float32)},
        x_shape=[1, 10, 4], out_type=TensorProto.INT64),
})  # fmt: skip
for _op in ("Log", "Reciprocal", "Floor", "Ceil", "Round", "Sin", "Cos", "Sign", "Softsign", "Celu"):
    BUILDERS[_op] = lambda op=_op: _unary(op)

# Ops the installed OpenVINO cannot convert (negative controls: not in targets/intel-cpu.toml).
OPENVINO_MISSING = {
    "Det": lambda: _model([_n("Det", ["x"])], x_shape=[1, 4, 4]),
    "Bernoulli": lambda: _model([_n("Bernoulli", ["x"])], x_shape=[1, 4]),
}


def single_op(op: str) -> onnx.ModelProto:
    """A valid single-op model for ``op`` (KeyError when the corpus has no builder for it)."""
    if op in BUILDERS:
        return BUILDERS[op]()
    return OPENVINO_MISSING[op]()


def conv(
    *,
    k: int = 3,
    stride: int = 1,
    dilation: int = 1,
    group: int = 1,
    cin: int = 8,
    cout: int = 8,
    hw: int = 32,
    pad: int | None = None,
    batch: int = 1,
) -> onnx.ModelProto:
    """One Conv with the given geometry (for constraint tests on each side of a limit)."""
    p = (k - 1) * dilation // 2 if pad is None else pad
    node = helper.make_node(
        "Conv", ["x", "w", "b"], ["y"], name="conv", kernel_shape=[k, k], strides=[stride, stride],
        dilations=[dilation, dilation], pads=[p] * 4, group=group,
    )  # fmt: skip
    return _model([node], {"w": _w(cout, cin // group, k, k), "b": _w(cout)}, x_shape=[batch, cin, hw, hw])


def pool(
    op: str = "MaxPool", *, k: int = 2, stride: int = 2, ceil: int = 0, cin: int = 8, hw: int = 32
) -> onnx.ModelProto:
    return _model(
        [_n(op, ["x"], kernel_shape=[k, k], strides=[stride, stride], ceil_mode=ceil)], x_shape=[1, cin, hw, hw]
    )


def resize(scale: float, mode: str = "nearest", hw: int = 8) -> onnx.ModelProto:
    return _model(
        [_n("Resize", ["x", "", "sc"], mode=mode)], {"sc": np.array([1, 1, scale, scale], np.float32)},
        x_shape=[1, 4, hw, hw],
    )  # fmt: skip


def softmax(axis: int) -> onnx.ModelProto:
    return _unary("Softmax", axis=axis)
