"""Every rule, proven both ways: one table row per rule gives a model on each side of its limit.

Each row names a rule (a key of CONSTRAINTS, a generic rule, or ``variant:NAME``), the TOML that sets its
limit on one op of a throw-away target, and two model builders: one the rule must pass, one it must fail.
Both models go through the real path (TOML -> load_target -> load_model -> check_target), and the failing
side must fail with exactly that rule. A test asserts that every registered rule has both sides, so a new
rule without a row fails the suite. Adding a row is one line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgecnn.check.placement import check_target
from edgecnn.check.rules import CONSTRAINTS, GENERIC_RULES, VARIANTS
from edgecnn.check.spec import load_target
from edgecnn.graph.load import load_model
from tests.target_corpus import _model, _n, _w, conv, pool, resize, single_op, softmax

TARGET = """schema_version = 1
name = "rules-under-test"
description = "a target made for one rule"
runtime = "test"
format = "onnx"
accelerator = "Test NPU"
fallback = "CPU"
precisions = {precisions}
source = "doc"

[sources.doc]
url = "https://example.com/ops"
version = "1.0"

[quant]
weights_per_channel = true
weights_symmetric = true
weight_dtype = "int8"
activation_dtype = "int8"
activations_symmetric = false
source = "doc"

[ops.{op}]
source = "doc"
{body}
"""


def _ints(v: list[int]) -> np.ndarray:
    return np.array(v, np.int64)


def unary(op: str, x: list[int], **attrs: object) -> onnx.ModelProto:
    return _model([_n(op, ["x"], **attrs)], x_shape=x)


def add(x: list[int], c: list[int] | None = None, elem: int = TensorProto.FLOAT) -> onnx.ModelProto:
    dt = helper.tensor_dtype_to_np_dtype(elem)
    return _model([_n("Add", ["x", "c"])], {"c": np.ones(c or [1], dt)}, x_shape=x, out_type=elem, elem=elem)


def pad(pads: list[int], mode: str = "constant", axes: list[int] | None = None) -> onnx.ModelProto:
    """Pad; with ``axes`` it is an opset-18 Pad whose pads list only those axes."""
    ins, inits = ["x", "p"], {"p": _ints(pads)}
    if axes is not None:
        ins += ["", "ax"]
        inits["ax"] = _ints(axes)
    if axes is None:
        return _model([_n("Pad", ins, mode=mode)], inits)
    g = helper.make_graph(
        [_n("Pad", ins, mode=mode)], "pad18", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[onnx.numpy_helper.from_array(v, k) for k, v in inits.items()],
    )  # fmt: skip
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 8
    out = onnx.shape_inference.infer_shapes(m).graph.output[0]
    m.graph.output[0].CopyFrom(out)
    return m


def clip(lo: float, hi: float) -> onnx.ModelProto:
    return _model([_n("Clip", ["x", "lo", "hi"])], {"lo": np.array(lo, np.float32), "hi": np.array(hi, np.float32)})


def reduce_mean(axes: list[int], keepdims: int = 1) -> onnx.ModelProto:
    return unary("ReduceMean", [1, 4, 8, 8], axes=axes, keepdims=keepdims)


def matmul(runtime_weights: bool) -> onnx.ModelProto:
    """MatMul x(1x4x8x8) @ W(8x5): W an initializer, or computed from the input (runtime weights)."""
    if not runtime_weights:
        return _model([_n("MatMul", ["x", "w"])], {"w": _w(8, 5)})
    nodes = [
        helper.make_node("Slice", ["x", "st", "en", "ax"], ["s"], name="slice"),
        helper.make_node("Reshape", ["s", "sh"], ["w"], name="reshape"),
        helper.make_node("Gemm", ["x2", "w"], ["y"], name="gemm"),
        helper.make_node("Reshape", ["x", "sh2"], ["x2"], name="flat"),
    ]
    inits = {"st": _ints([0]), "en": _ints([1]), "ax": _ints([1]), "sh": _ints([8, 8]), "sh2": _ints([32, 8])}
    return _model([nodes[0], nodes[1], nodes[3], nodes[2]], inits)


def two_input_matmul() -> onnx.ModelProto:
    """Activation x activation (a batched matmul): no weights, so no constant-weights rule applies."""
    return _model([_n("MatMul", ["x", "x"])], x_shape=[1, 4, 8, 8])


def const_b_matmul() -> onnx.ModelProto:
    """x @ B with B an initializer: a layer with constant weights."""
    return _model([_n("MatMul", ["x", "b"])], {"b": np.ones([8, 8], np.float32)}, x_shape=[1, 4, 8, 8])


def conv3d(k: int = 3) -> onnx.ModelProto:
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[k] * 3, pads=[k // 2] * 6)
    return _model([node], {"w": _w(4, 2, k, k, k)}, x_shape=[1, 2, 6, 8, 8])


def dynamic_reshape() -> onnx.ModelProto:
    g = helper.make_graph(
        [helper.make_node("Reshape", ["x", "s"], ["y"], name="reshape")], "dyn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8]),
         helper.make_tensor_value_info("s", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["a", "b"])],
    )  # fmt: skip
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def qdq_conv() -> onnx.ModelProto:
    """DQ(int8) -> Conv -> Clip(0, 6) -> Q: PyTorch's QDQ export of a Conv with a fused ReLU6."""
    inits = {
        "xs": np.array(0.05, np.float32), "xz": np.array(0, np.int8), "w_q": np.ones((8, 4, 3, 3), np.int8),
        "ws": np.array(0.01, np.float32), "wz": np.array(0, np.int8), "lo": np.array(0, np.float32),
        "hi": np.array(6, np.float32),
    }  # fmt: skip
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"], name="q_in"),
        helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"], name="dq_in"),
        helper.make_node("DequantizeLinear", ["w_q", "ws", "wz"], ["wd"], name="dq_w"),
        helper.make_node("Conv", ["xd", "wd"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["c", "lo", "hi"], ["r"], name="relu6"),
        helper.make_node("QuantizeLinear", ["r", "xs", "xz"], ["rq"], name="q_out"),
        helper.make_node("DequantizeLinear", ["rq", "xs", "xz"], ["y"], name="dq_out"),
    ]
    return _model(nodes, inits)


@dataclass(frozen=True)
class Row:
    rule: str  # CONSTRAINTS key, generic rule name, or "variant:NAME"
    op: str  # the [ops.OP] table the limit goes in
    body: str  # TOML lines in that table
    ok: Callable[[], onnx.ModelProto]
    bad: Callable[[], onnx.ModelProto]
    precisions: str = '["float32", "int8"]'
    ok_body: str | None = None  # TOML for the passing side when it differs from ``body``


ROWS = [
    Row("op_not_listed", "Relu", "", lambda: unary("Relu", [1, 4, 8, 8]), lambda: unary("Sigmoid", [1, 4, 8, 8])),
    Row("op_unsupported", "Relu", "supported = false", lambda: unary("Relu", [1, 4, 8, 8]), lambda: single_op("Relu"), ok_body=""),
    Row("precision", "Add", "", lambda: add([1, 4, 8, 8]), lambda: add([1, 4, 8, 8], elem=TensorProto.INT32)),
    Row("dtypes", "Add", 'dtypes = ["float32", "int32"]', lambda: add([4], elem=TensorProto.INT32), lambda: add([4], elem=TensorProto.INT64)),
    Row("kernel_max", "Conv", "kernel_max = 5", lambda: conv(k=5), lambda: conv(k=7)),
    Row("kernel_area_max", "MaxPool", "kernel_area_max = 16", lambda: pool(k=4, stride=1), lambda: pool(k=5, stride=1)),
    Row("stride_max", "Conv", "stride_max = 2", lambda: conv(stride=2), lambda: conv(stride=3)),
    Row("strides_allowed", "Conv", "strides_allowed = [1, 2]", lambda: conv(stride=2), lambda: conv(stride=3)),
    Row("dilation_max", "Conv", "dilation_max = 2", lambda: conv(dilation=2), lambda: conv(dilation=3)),
    Row("dilated_kernel_h_max", "Conv", "dilated_kernel_h_max = 5", lambda: conv(dilation=2), lambda: conv(dilation=3)),
    Row("dilated_kernel_area_max", "Conv", "dilated_kernel_area_max = 25", lambda: conv(dilation=2), lambda: conv(dilation=3)),
    Row("pad_max", "Conv", "pad_max = 2", lambda: conv(k=5, pad=2), lambda: conv(k=5, pad=3)),
    Row("rank_max", "Relu", "rank_max = 4", lambda: unary("Relu", [1, 2, 3, 4]), lambda: unary("Relu", [1, 2, 3, 4, 5])),
    Row("dim_max", "Relu", "dim_max = 64", lambda: unary("Relu", [1, 4, 64, 8]), lambda: unary("Relu", [1, 4, 65, 8])),
    Row("batch_max", "Conv", "batch_max = 1", lambda: conv(batch=1), lambda: conv(batch=2)),
    Row("channels_max", "Relu", "channels_max = 16", lambda: unary("Relu", [1, 16, 4, 4]), lambda: unary("Relu", [1, 17, 4, 4])),
    Row("innermost_nonunit_max", "Relu", "innermost_nonunit_max = 3", lambda: unary("Relu", [1, 2, 3, 4]), lambda: unary("Relu", [2, 2, 3, 4])),
    Row("ceil_mode", "MaxPool", "ceil_mode = false", lambda: pool(hw=33), lambda: pool(hw=33, ceil=1)),
    Row("grouped", "Conv", "grouped = false", lambda: conv(group=8), lambda: conv(group=2)),
    Row("depth_multiplier_max", "Conv", "depth_multiplier_max = 1", lambda: conv(group=8), lambda: conv(group=8, cout=16)),
    Row("weights_const", "Gemm", "weights_const = true", lambda: single_op("Gemm"), lambda: matmul(runtime_weights=True)),
    Row("axes_spatial_only", "ReduceMean", "axes_spatial_only = true", lambda: reduce_mean([2, 3]), lambda: reduce_mean([1])),
    Row("keepdims", "ReduceMean", "keepdims = true", lambda: reduce_mean([2, 3], 1), lambda: reduce_mean([2, 3], 0)),
    Row("softmax_axis", "Softmax", "softmax_axis = [1]", lambda: softmax(1), lambda: softmax(3)),
    Row("resize_modes", "Resize", 'resize_modes = ["nearest"]', lambda: resize(2.0), lambda: resize(2.0, "linear")),
    Row("resize_scales", "Resize", "resize_scales = [2]", lambda: resize(2.0), lambda: resize(3.0)),
    Row("pad_spatial_only", "Pad", "pad_spatial_only = true", lambda: pad([0, 0, 1, 1, 0, 0, 1, 1]), lambda: pad([0, 1, 0, 0, 0, 1, 0, 0])),
    Row("pad_spatial_only", "Pad", "pad_spatial_only = true", lambda: pad([1, 1, 1, 1], axes=[2, 3]), lambda: pad([1, 1], axes=[1])),
    Row("pad_modes", "Pad", 'pad_modes = ["constant"]', lambda: pad([0, 0, 1, 1, 0, 0, 1, 1]), lambda: pad([0, 0, 1, 1, 0, 0, 1, 1], "reflect")),
    Row("clip_relu_only", "Clip", "clip_relu_only = true", lambda: clip(0, 6), lambda: clip(-1, 3)),
    Row("static_shapes", "Reshape", "static_shapes = true", lambda: single_op("Reshape"), dynamic_reshape),
    Row("spatial_dims", "Conv", "spatial_dims = [1, 2]", lambda: conv(), conv3d),
    Row("auto_pad_modes", "Conv", 'auto_pad_modes = ["NOTSET", "VALID"]', lambda: conv_auto_pad("VALID"), lambda: conv_auto_pad("SAME_UPPER")),
    Row("width_max", "Add", "width_max = 64", lambda: add([1, 4, 2, 64]), lambda: add([1, 4, 2, 65])),
    Row("elements_max", "Add", "elements_max = 4096", lambda: add([1, 4, 32, 32]), lambda: add([1, 4, 32, 33])),
    Row("input_rank", "Softmax", "input_rank = [2, 4]", lambda: softmax(1), lambda: unary("Softmax", [2, 3, 4], axis=1)),
    Row("variant:depthwise", "Conv", "[ops.Conv.depthwise]\nstride_max = 1", lambda: conv(stride=2), lambda: conv(group=8, stride=2)),
    Row("variant:nearest", "Resize", "[ops.Resize.nearest]\nsupported = false", lambda: resize(2.0, "linear"), lambda: resize(2.0)),
    Row("variant:linear", "Resize", "[ops.Resize.linear]\nsupported = false", lambda: resize(2.0), lambda: resize(2.0, "linear")),
    Row("variant:relu6", "Clip", "[ops.Clip.relu6]\nsupported = false", lambda: clip(-1, 1), lambda: clip(0, 6)),
    # --- TFLite-target rules (branch targets-tfl; Vela 5.2.0 / XNNPACK facts) ---
    Row("variant:unequal_split", "Split", "[ops.Split.unequal_split]\nsupported = false", lambda: split_sizes([2, 2]), lambda: split_sizes([1, 3])),
    Row("variant:const_divisor", "Div", "[ops.Div.const_divisor]\nsupported = false", lambda: div(const=False), lambda: div(const=True)),
    Row("large_stride_valid_only", "Conv", "large_stride_valid_only = 3", lambda: conv(stride=4, pad=0), lambda: conv(stride=4, pad=1)),
    Row("padded_kernel_max", "AveragePool", "padded_kernel_max = 8", lambda: avg_pool(9, 0), lambda: avg_pool(9, 4)),
    Row("kernel_h_max", "MaxPool", "kernel_h_max = 4", lambda: pool(k=4), lambda: pool(k=5)),
    Row("unit_kernel_stride", "MaxPool", "unit_kernel_stride = false", lambda: pool(k=1, stride=1), lambda: pool(k=1, stride=2)),
    Row("quant_match", "Add", "quant_match = true", lambda: qdq_max(0.05, "Add"), lambda: qdq_max(0.1, "Add"), precisions='["int8"]'),
    Row("scale_ratio_range", "Add", "scale_ratio_range = [0.0009765625, 256.0]", lambda: qdq_max(0.05 / 255, "Add"), lambda: qdq_max(0.05 / 257, "Add"), precisions='["int8"]'),
    Row("product_scale_ratio_range", "Mul", "product_scale_ratio_range = [1.52587890625e-05, 256.0]", lambda: qdq_max(0.0025 / 255, "Mul"), lambda: qdq_max(0.0025 / 257, "Mul"), precisions='["int8"]'),
    Row("runtime_weights_dtypes", "MatMul", 'runtime_weights_dtypes = ["int8"]', const_b_matmul, two_input_matmul),
    Row("tconv_stride_pairs", "ConvTranspose", "tconv_stride_pairs = true", lambda: deconv([1, 2], [1, 4, 1, 8], [1, 2]), lambda: deconv([1, 2], [1, 4, 8, 8], [1, 2])),
    Row("leaky_relu_scales", "LeakyRelu", "leaky_relu_scales = true", lambda: qdq_leaky(0.05 / 127), lambda: qdq_leaky(0.05 / 129), precisions='["int8"]'),
    Row("pow_square", "Pow", "pow_square = true", lambda: pow_const(2.0), lambda: pow_const(3.0)),
    Row("hard_sigmoid_grid", "HardSigmoid", "hard_sigmoid_grid = true", lambda: qdq_hard_sigmoid(1 / 127), lambda: qdq_hard_sigmoid(1.2 / 127), precisions='["int8"]'),
    Row("depth_reduce_needs_unit", "ReduceMean", "depth_reduce_needs_unit = true", lambda: reduce_mean([2, 3]), lambda: reduce_mean([1])),
    Row("resize_factors", "Resize", "resize_factors = [2, 4, 8]", lambda: resize(4.0), lambda: resize(3.0)),
    Row("half_pixel_factors", "Resize", "half_pixel_factors = [2]", lambda: resize(2.0, "linear"), lambda: resize(4.0, "linear")),
    Row("resize_coord_modes", "Resize", 'resize_coord_modes = ["asymmetric", "half_pixel"]', lambda: resize_coord("asymmetric"), lambda: resize_coord("tf_crop_and_resize")),
    Row("slice_step_axes", "Slice", 'slice_step_axes = ["H", "W"]', lambda: strided_slice(2), lambda: strided_slice(1)),
    Row("inputs_max", "Concat", "inputs_max = 2", lambda: concat(2), lambda: concat(3)),
    Row("outputs_max", "Split", "outputs_max = 2", lambda: split(2), lambda: split(4)),
    Row("pad_value_zero", "Pad", "pad_value_zero = true", lambda: pad_value(0.0), lambda: pad_value(-1.0)),
    Row("batch_axis_untouched", "Transpose", "batch_axis_untouched = true", lambda: transpose([1, 4, 8, 8]), lambda: transpose_batch()),
    Row("depth_axis_max", "ArgMax", "depth_axis_max = 4", lambda: arg_max(1), lambda: arg_max(2)),
    Row("pads_same_or_none", "MaxPool", "pads_same_or_none = true", lambda: max_pool_pads(15), lambda: max_pool_pads(16)),
    Row("weight_abs_sum_max", "Conv", "weight_abs_sum_max = 2500", lambda: conv(k=3, cin=4), lambda: conv(k=3, cin=8)),
    Row("reduced_axis_max", "ReduceMean", "reduced_axis_max = 8", lambda: reduce_mean([2, 3]), lambda: unary("ReduceMean", [1, 4, 9, 8], axes=[2])),
    Row("softmax_rows_max", "Softmax", "softmax_rows_max = 64", lambda: softmax(1), lambda: unary("Softmax", [1, 4, 9, 8], axis=1)),
    Row("channel_reduce_multiple", "ReduceMean", "channel_reduce_multiple = 4", lambda: reduce_mean([1]), lambda: unary("ReduceMean", [1, 6, 8, 8], axes=[1])),
    Row("equal_dilation", "Conv", "equal_dilation = true", lambda: conv(dilation=2, pad=2), lambda: conv_dilation([1, 2])),
    Row("split_equal", "Split", "split_equal = true", lambda: split(2), lambda: split_sizes([1, 3])),
    Row("transpose_axis_product_max", "Transpose", "transpose_axis_product_max = 16", lambda: transpose([1, 4, 8, 8]), lambda: transpose([2, 4, 8, 8])),
    Row("pad_nonnegative", "Pad", "pad_nonnegative = true", lambda: pad([0, 0, 1, 1, 0, 0, 1, 1]), lambda: pad([0, 0, -1, 0, 0, 0, 0, 0])),
]  # fmt: skip


def div(const: bool) -> onnx.ModelProto:
    """x / c with c an initializer, or x / x (a runtime divisor)."""
    if const:
        return _model([_n("Div", ["x", "c"])], {"c": np.full([1, 4, 1, 1], 2.0, np.float32)})
    return _model([_n("Div", ["x", "x"])])


def avg_pool(k: int, p: int) -> onnx.ModelProto:
    return _model([_n("AveragePool", ["x"], kernel_shape=[k, k], pads=[p] * 4)], x_shape=[1, 4, 16, 16])


def qdq_max(out_scale: float, op: str = "Max") -> onnx.ModelProto:
    """DQ(x), DQ(c) -> op -> Q with the output scale given: equal to the inputs' 0.05, or not."""
    inits = {"s": np.array(0.05, np.float32), "so": np.array(out_scale, np.float32), "z": np.array(0, np.int8),
             "cq": np.ones((1, 4, 1, 1), np.int8)}  # fmt: skip
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="q_in"),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="dq_in"),
        helper.make_node("DequantizeLinear", ["cq", "s", "z"], ["cd"], name="dq_c"),
        helper.make_node(op, ["xd", "cd"], ["m"], name=op.lower()),
        helper.make_node("QuantizeLinear", ["m", "so", "z"], ["mq"], name="q_out"),
        helper.make_node("DequantizeLinear", ["mq", "so", "z"], ["y"], name="dq_out"),
    ]
    return _model(nodes, inits)


def deconv(strides: list[int], x: list[int], k: list[int]) -> onnx.ModelProto:
    """ConvTranspose with per-axis strides (H, W), input shape ``x`` (NCHW) and kernel ``k`` (H, W)."""
    w = np.ones([x[1], 4, *k], np.float32)
    return _model([_n("ConvTranspose", ["x", "w"], kernel_shape=k, strides=strides)], {"w": w}, x_shape=x)


def qdq_leaky(out_scale: float, alpha: float = 0.1) -> onnx.ModelProto:
    """DQ(x, 0.05) -> LeakyRelu -> Q(out_scale): the input/output scale ratio is 0.05 / out_scale."""
    inits = {"s": np.array(0.05, np.float32), "so": np.array(out_scale, np.float32), "z": np.array(0, np.int8)}
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="q_in"),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="dq_in"),
        helper.make_node("LeakyRelu", ["xd"], ["m"], name="leaky", alpha=alpha),
        helper.make_node("QuantizeLinear", ["m", "so", "z"], ["mq"], name="q_out"),
        helper.make_node("DequantizeLinear", ["mq", "so", "z"], ["y"], name="dq_out"),
    ]
    return _model(nodes, inits)


def pow_const(e: float) -> onnx.ModelProto:
    return _model([_n("Pow", ["x", "e"])], {"e": np.array(e, np.float32)})


def qdq_hard_sigmoid(out_scale: float) -> onnx.ModelProto:
    """DQ(x, 0.05) -> HardSigmoid -> Q(out_scale, zero point 0): the int8 grid's top is 127 x out_scale."""
    inits = {"s": np.array(0.05, np.float32), "so": np.array(out_scale, np.float32), "z": np.array(0, np.int8)}
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="q_in"),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="dq_in"),
        helper.make_node("HardSigmoid", ["xd"], ["m"], name="hsig", alpha=1 / 6, beta=0.5),
        helper.make_node("QuantizeLinear", ["m", "so", "z"], ["mq"], name="q_out"),
        helper.make_node("DequantizeLinear", ["mq", "so", "z"], ["y"], name="dq_out"),
    ]
    return _model(nodes, inits)


def strided_slice(axis: int) -> onnx.ModelProto:
    inits = {"st": _ints([0]), "en": _ints([8]), "ax": _ints([axis]), "sp": _ints([2])}
    return _model([_n("Slice", ["x", "st", "en", "ax", "sp"])], inits)


def concat(n: int) -> onnx.ModelProto:
    return _model([_n("Concat", ["x"] * n, axis=1)])


def split(n: int) -> onnx.ModelProto:
    outs = [f"y{i}" if i else "y" for i in range(n)]
    return _model([helper.make_node("Split", ["x", "sp"], outs, name="split", axis=1)], {"sp": _ints([4 // n] * n)})


def pad_value(v: float) -> onnx.ModelProto:
    inits = {"p": _ints([0, 0, 1, 1, 0, 0, 1, 1]), "v": np.array(v, np.float32)}
    return _model([_n("Pad", ["x", "p", "v"], mode="constant")], inits)


def split_sizes(sizes: list[int]) -> onnx.ModelProto:
    outs = [f"y{i}" if i else "y" for i in range(len(sizes))]
    return _model([helper.make_node("Split", ["x", "sp"], outs, name="split", axis=1)], {"sp": _ints(sizes)})


def max_pool_pads(hw: int) -> onnx.ModelProto:
    """MaxPool k3 s2 p1: on an odd size the pads equal TFLite SAME's, on an even size they do not."""
    return _model(
        [_n("MaxPool", ["x"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])], x_shape=[1, 4, hw, hw]
    )


def resize_coord(mode: str) -> onnx.ModelProto:
    node = _n("Resize", ["x", "roi", "sc"], mode="linear", coordinate_transformation_mode=mode)
    inits = {"roi": np.array([0, 0, 0, 0, 1, 1, 1, 1], np.float32), "sc": np.array([1, 1, 2, 2], np.float32)}
    return _model([node], inits)


def conv_dilation(d: list[int]) -> onnx.ModelProto:
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[3, 3], dilations=d, pads=[1, 2, 1, 2])
    return _model([node], {"w": _w(8, 4, 3, 3)})


def arg_max(axis: int) -> onnx.ModelProto:
    return _model([_n("ArgMax", ["x"], axis=axis)], out_type=TensorProto.INT64)


def transpose_batch() -> onnx.ModelProto:
    return _model([_n("Transpose", ["x"], perm=[1, 0, 2, 3])])


def transpose(shape: list[int]) -> onnx.ModelProto:
    return _model([_n("Transpose", ["x"], perm=[0, 2, 3, 1])], x_shape=shape)


def matmul_runtime_b() -> onnx.ModelProto:
    """MatMul whose B is computed (a Relu of a constant-shaped input): one activation, one runtime weight."""
    nodes = [helper.make_node("Relu", ["x2"], ["b"], name="relu"), _n("MatMul", ["x", "b"])]
    g = helper.make_graph(
        nodes, "mm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8]),
         helper.make_tensor_value_info("x2", TensorProto.FLOAT, [8, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 5])],
    )  # fmt: skip
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def conv_auto_pad(mode: str) -> onnx.ModelProto:
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[3, 3], auto_pad=mode)
    return _model([node], {"w": _w(8, 4, 3, 3)})


def _verdicts(tmp_path: Path, row: Row, model: onnx.ModelProto, body: str) -> list[tuple[str, list[str]]]:
    (tmp_path / "t.toml").write_text(TARGET.format(precisions=row.precisions, op=row.op, body=body))
    p = tmp_path / "m.onnx"
    onnx.save(model, p)
    rep = check_target(load_model(p), load_target(tmp_path / "t.toml"))
    return [(n.name, [f.rule for f in n.failures]) for n in rep.nodes]


@pytest.mark.parametrize("row", ROWS, ids=[f"{r.rule}-{r.op}-{i}" for i, r in enumerate(ROWS)])
def test_rule_passes_inside_and_fails_outside_its_limit(tmp_path: Path, row: Row) -> None:
    good = _verdicts(tmp_path, row, row.ok(), row.body if row.ok_body is None else row.ok_body)
    assert good and all(not fails for _, fails in good), (row.rule, good)
    bad = _verdicts(tmp_path, row, row.bad(), row.body)
    rules = {r for _, fails in bad for r in fails}
    # A variant row fails through the variant's own table (its constraint, or supported = false).
    want = (
        ("op_unsupported" if "supported = false" in row.body else "stride_max")
        if row.rule.startswith("variant:")
        else row.rule
    )
    assert want in rules, (row.rule, bad)


def test_every_registered_rule_has_a_row_on_both_sides() -> None:
    registered = set(CONSTRAINTS) | set(GENERIC_RULES) | {f"variant:{v}" for v in VARIANTS}
    assert registered - {r.rule for r in ROWS} == set(), "add a Row for each new rule (one line)"


def test_constant_weights_rule_does_not_apply_to_a_two_input_matmul(tmp_path: Path) -> None:
    # Activation x activation is a batched matmul (no weights): weights_const passes it, while a MatMul
    # whose B is computed from another input is the same op; the Gemm row above proves the failing side.
    row = Row("weights_const", "MatMul", "weights_const = true", two_input_matmul, matmul_runtime_b)
    for build in (row.ok, row.bad):
        assert all("weights_const" not in fails for _, fails in _verdicts(tmp_path, row, build(), row.body))


def test_fused_qdq_activation_is_one_quantized_conv(tmp_path: Path) -> None:
    # DQ -> Conv -> Clip(0, 6) -> Q: a quantized Conv with a fused ReLU6 (PyTorch QDQ export), not a float Clip.
    p = tmp_path / "q.onnx"
    onnx.save(qdq_conv(), p)
    rep = check_target(load_model(p), load_target("qualcomm-htp"))
    conv_v = [n for n in rep.nodes if n.op_type == "Conv"]
    assert [n.op_type for n in rep.nodes] == ["Conv"] and conv_v[0].precision == "int8", rep.nodes
    assert "relu6" in conv_v[0].absorbed and rep.all_accelerated
    # A Clip that is not a ReLU/ReLU6 is not fused: it stays a float node between Conv and Q.
    m = qdq_conv()
    m.graph.initializer[-1].CopyFrom(onnx.numpy_helper.from_array(np.array(3, np.float32), "hi"))
    onnx.save(m, p)
    rep = check_target(load_model(p), load_target("qualcomm-htp"))
    assert {n.op_type for n in rep.nodes} == {"Conv", "Clip"} and not rep.all_accelerated


def test_rank0_input_is_static(tmp_path: Path) -> None:
    g = helper.make_graph(
        [helper.make_node("Mul", ["x", "s"], ["y"], name="mul")], "r0",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8]),
         helper.make_tensor_value_info("s", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
    )  # fmt: skip
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    p = tmp_path / "r0.onnx"
    onnx.save(m, p)
    loaded = load_model(p)  # no "dynamic dimensions" error for the scalar input
    assert loaded.input_shapes["s"] == ()
    assert check_target(loaded, load_target("intel-npu")).all_accelerated


def test_transpose_of_unknown_rank_is_not_judged() -> None:
    """PP-OCRv4 rec at a fixed input shape still has Transposes shape inference cannot follow (rank unknown):
    `check` raised ZeroDivisionError on them. Unknown shape: the rule passes, as every shape rule does; a known
    one on the other side of the limit still fails."""
    from edgecnn.check.rules import NodeFacts, transpose_axis_product_max

    def facts(shape: tuple[int, ...]) -> NodeFacts:
        return NodeFacts(name="t", op_type="Transpose", accel="NPU", target="x", precision="int8",
                         in_shapes=(shape,), out_shapes=(), attrs={"perm": [0, 2, 3, 1]})  # fmt: skip

    assert transpose_axis_product_max(facts(()), 16).ok
    assert not transpose_axis_product_max(facts((2, 4, 8, 8)), 16).ok
