"""Per-op coverage of onnx_to_tflite: INT8 kernels from QDQ models written by ONNX Runtime's own quantizer, and
float parity for the ops real exported CNNs use (one table row per op/attributes), on LiteRT vs ONNX Runtime."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from edgecnn.export.tflite_writer import read_tflite
from edgecnn.export.to_tflite import UnsupportedOpError, onnx_to_tflite
from tests.onnx_builders import make_model, rng_w
from tests.test_export_tflite import Lite, int8_ops, ort_run

X = (1, 3, 8, 10)


def _inputs(n: int, seed: int) -> list[np.ndarray]:
    return [np.random.default_rng(seed + i).standard_normal(X).astype(np.float32) * 2 for i in range(n)]


class _Reader(CalibrationDataReader):
    def __init__(self, xs: list[np.ndarray]) -> None:
        self._it = iter([{"x": x} for x in xs])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def ort_qdq(m: onnx.ModelProto, tmp: Path) -> onnx.ModelProto:
    """The QDQ model ONNX Runtime's quantize_static writes (int8 activations, per-channel int8 weights)."""
    f, q = tmp / "f.onnx", tmp / "q.onnx"
    onnx.save(m, str(f))
    ops = sorted({n.op_type for n in m.graph.node})
    quantize_static(str(f), str(q), _Reader(_inputs(8, 0)), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True,
                    op_types_to_quantize=ops)  # fmt: skip
    return onnx.load(str(q))


def _out_scale(q: onnx.ModelProto) -> float:
    out = q.graph.output[0].name
    (dq,) = [n for n in q.graph.node if out in n.output and n.op_type == "DequantizeLinear"]
    (s,) = [t for t in q.graph.initializer if t.name == dq.input[1]]
    return float(onnx.numpy_helper.to_array(s))


def _c(*v: float) -> np.ndarray:
    return np.asarray(v, np.float32).reshape(()) if len(v) == 1 else np.asarray(v, np.float32)


def _i(*v: int) -> np.ndarray:
    return np.asarray(v, np.int64)


N = helper.make_node
S = np.float32  # scalar constants
CONV = helper.make_node("Conv", ["x", "w"], ["x1"], kernel_shape=[1, 1])
INT8_CASES: dict[str, tuple[list[onnx.NodeProto], dict[str, np.ndarray], set[str]]] = {
    "hardswish": ([helper.make_node("HardSwish", ["x"], ["y"])], {}, {"HARD_SWISH"}),
    "hardsigmoid": ([helper.make_node("HardSigmoid", ["x"], ["y"], alpha=1 / 6, beta=0.5)], {}, {"MUL", "ADD"}),
    "hardsigmoid_0.2": ([helper.make_node("HardSigmoid", ["x"], ["y"])], {}, {"MUL", "ADD"}),
    "sigmoid": ([helper.make_node("Sigmoid", ["x"], ["y"])], {}, {"LOGISTIC"}),
    "softmax_axis1": ([helper.make_node("Softmax", ["x"], ["y"], axis=1)], {}, {"SOFTMAX"}),
    "softmax_last": ([helper.make_node("Softmax", ["x"], ["y"], axis=-1)], {}, {"SOFTMAX"}),
    "leaky_relu": ([helper.make_node("LeakyRelu", ["x"], ["y"], alpha=0.1)], {}, {"LEAKY_RELU"}),
    "add_const": ([helper.make_node("Add", ["x", "k"], ["y"])], {"k": S(0.75).reshape(())}, {"ADD"}),
    "sub_const": ([helper.make_node("Sub", ["x", "k"], ["y"])], {"k": np.full((1, 3, 1, 1), 0.3, S)}, {"SUB"}),
    "mul_const": ([helper.make_node("Mul", ["x", "k"], ["y"])], {"k": S(2.5).reshape(())}, {"MUL"}),
    "div_const": ([helper.make_node("Div", ["x", "k"], ["y"])], {"k": S(4.0).reshape(())}, {"MUL"}),
    "max_const": ([helper.make_node("Max", ["x", "k"], ["y"])], {"k": S(-0.4).reshape(())}, {"MAXIMUM"}),
    "min_const": ([helper.make_node("Min", ["x", "k"], ["y"])], {"k": S(1.3).reshape(())}, {"MINIMUM"}),
    "max_two_acts": ([CONV, helper.make_node("Max", ["x", "x1"], ["y"])], {"w": rng_w(3, 3, 1, 1)}, {"MAXIMUM"}),
    "prelu": ([CONV, N("PRelu", ["x1", "sl"], ["y"])], {"w": rng_w(3, 3, 1, 1), "sl": rng_w(3, 1, 1) * 0.3},
              {"PRELU"}),
    "grouped_conv": ([N("Conv", ["x", "w"], ["x1"], kernel_shape=[1, 1]),
                      N("Conv", ["x1", "wg"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=2)],
                     {"w": rng_w(4, 3, 1, 1), "wg": rng_w(6, 2, 3, 3, seed=3)}, {"CONV_2D"}),
    "conv1d": ([N("Reshape", ["x", "s"], ["r"]), N("Conv", ["r", "w1", "b1"], ["y"], kernel_shape=[3], pads=[1, 1])],
               {"s": _i(1, 3, 80), "w1": rng_w(5, 3, 3), "b1": rng_w(5)}, {"CONV_2D"}),
    "gemm_alpha_beta": ([N("Flatten", ["x"], ["f"]), N("Gemm", ["f", "g", "gc"], ["y"], transB=1, alpha=0.5,
                         beta=2.0)], {"g": rng_w(5, 240), "gc": rng_w(5)}, {"FULLY_CONNECTED"}),
    "depth_to_space_upsample_tile": (
        [N("Conv", ["x", "w8"], ["c"], kernel_shape=[1, 1]), N("DepthToSpace", ["c"], ["d"], blocksize=2),
         N("Tile", ["d", "rep"], ["y"])],
        {"w8": rng_w(8, 3, 1, 1), "rep": _i(1, 1, 1, 2)}, {"DEPTH_TO_SPACE", "TILE"},
    ),
    "pixel_shuffle_crd": ([N("Conv", ["x", "w8"], ["c"], kernel_shape=[1, 1]),
                           N("DepthToSpace", ["c"], ["y"], blocksize=2, mode="CRD")], {"w8": rng_w(8, 3, 1, 1)},
                          {"GATHER", "DEPTH_TO_SPACE"}),
    "concat_with_constant": ([CONV, N("Concat", ["x1", "kc"], ["y"], axis=1)],
                             {"w": rng_w(3, 3, 1, 1), "kc": rng_w(1, 2, 8, 10, seed=4)}, {"CONCATENATION"}),
    "expand_space_to_depth": ([N("ReduceMax", ["x"], ["m"], axes=[1], keepdims=1), N("Expand", ["m", "sh"], ["e"]),
                               N("SpaceToDepth", ["e"], ["y"], blocksize=2)], {"sh": _i(1, 3, 8, 10)},
                              {"REDUCE_MAX", "BROADCAST_TO", "SPACE_TO_DEPTH"}),
    "tanh_reduce_min_gather": ([N("Tanh", ["x"], ["t"]), N("ReduceMin", ["t"], ["m"], axes=[3], keepdims=1),
                                N("Gather", ["m", "gi"], ["y"], axis=1)], {"gi": _i(2, 0)},
                               {"TANH", "REDUCE_MIN", "GATHER"}),
    "conv_transpose_k3_s2_p1_op1": ([CONV, N("ConvTranspose", ["x1", "wt"], ["y"], kernel_shape=[3, 3], strides=[2, 2],
                                             pads=[1, 1, 1, 1], output_padding=[1, 1])],
                                    {"w": rng_w(3, 3, 1, 1), "wt": rng_w(3, 4, 3, 3, seed=2)},
                                    {"TRANSPOSE_CONV", "SLICE"}),
    "resize_bilinear": ([CONV, N("Resize", ["x1", "", "sc"], ["y"], mode="linear")],
                        {"w": rng_w(3, 3, 1, 1), "sc": _c(1, 1, 2, 2)}, {"RESIZE_BILINEAR"}),
    "yolov5_wh_pow2": ([N("Sigmoid", ["x"], ["s"]), N("Mul", ["s", "two"], ["m"]), N("Pow", ["m", "two"], ["p"]),
                        N("Mul", ["p", "anc"], ["y"])],
                       {"two": _c(2.0), "anc": np.array([10, 16, 33], np.float32).reshape(1, 3, 1, 1)},
                       {"LOGISTIC", "MUL"}),
    "mobilenetv3_se_chain": (
        [CONV, helper.make_node("HardSwish", ["x1"], ["h"]),
         helper.make_node("GlobalAveragePool", ["h"], ["g"]),
         helper.make_node("Conv", ["g", "w2"], ["g2"], kernel_shape=[1, 1]),
         helper.make_node("HardSigmoid", ["g2"], ["hs"], alpha=1 / 6, beta=0.5),
         helper.make_node("Mul", ["h", "hs"], ["y"])],
        {"w": rng_w(3, 3, 1, 1), "w2": rng_w(3, 3, 1, 1, seed=1)}, {"HARD_SWISH", "MUL", "ADD", "MEAN"},
    ),
    "yolo_silu_decode_chain": (
        [CONV, helper.make_node("Sigmoid", ["x1"], ["s"]), helper.make_node("Mul", ["x1", "s"], ["si"]),
         helper.make_node("Mul", ["si", "two"], ["m2"]), helper.make_node("Sub", ["m2", "half"], ["sb"]),
         helper.make_node("Div", ["sb", "four"], ["d"]), helper.make_node("Clip", ["d", "lo", "hi"], ["y"])],
        {"w": rng_w(3, 3, 1, 1), "two": S(2.0).reshape(()), "half": S(0.5).reshape(()),
         "four": S(4.0).reshape(()), "lo": S(-0.2).reshape(()), "hi": S(0.9).reshape(())},
        {"LOGISTIC", "MUL", "SUB"},  # ORT drops the Clip into the output grid (saturation clips)
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(INT8_CASES))
def test_int8_op_runs_as_int8_kernel_and_matches_the_qdq_model(case: str, tmp_path: Path) -> None:
    nodes, inits, want = INT8_CASES[case]
    q = ort_qdq(make_model(nodes, [("x", list(X))], [("y", None)], inits), tmp_path)
    ex = onnx_to_tflite(q)
    g = read_tflite(ex.data)
    ops = Counter(op.builtin for op in g.ops)
    assert want <= set(int8_ops(g)), (case, ops)
    # int8 from the input QUANTIZE to the output DEQUANTIZE: no float island in between
    assert ops["DEQUANTIZE"] == 1, ops
    assert not [op for op in g.ops if op.builtin not in ("DEQUANTIZE", "QUANTIZE", "TRANSPOSE", "RESHAPE")
                and g.tensors[op.outputs[0]].dtype == "float32"], ops  # fmt: skip
    step = _out_scale(q)
    lite = Lite(ex.data)
    worst = 0.0
    for x in _inputs(4, 100):
        (got,), (ref,) = lite(x), ort_run(q, x)
        assert got.shape == ref.shape
        worst = max(worst, float(np.abs(got - ref).max()) / step)
    assert worst <= 2.01, f"{case}: {worst:.2f} output steps apart"


def hand_qdq(node: onnx.NodeProto, inits: dict[str, np.ndarray], xq: tuple[float, int], yq: tuple[float, int]):
    """x -> Q/DQ (grid xq) -> node -> Q/DQ (grid yq) -> y, as a quantizer that keeps the op writes it."""
    node.input[0] = "xd"
    node.output[0] = "yf"
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
        node,
        helper.make_node("QuantizeLinear", ["yf", "ys", "yz"], ["yq"]),
        helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["y"]),
    ]
    grids = {"xs": S(xq[0]), "xz": np.int8(xq[1]), "ys": S(yq[0]), "yz": np.int8(yq[1])}
    return make_model(
        nodes, [("x", list(X))], [("y", list(X))], {**inits, **{k: np.asarray(v) for k, v in grids.items()}}
    )


HAND_CASES = {
    # the Clip bounds and the input on other grids than the output: requantized, then compared raw (exact)
    "clip_-1_2": (helper.make_node("Clip", ["x", "lo", "hi"], ["y"]),
                  {"lo": S(-1.0).reshape(()), "hi": S(2.0).reshape(())}, (0.03, 5), (0.02, -30), {"MAXIMUM", "MINIMUM"}),
    "clip_min_only": (helper.make_node("Clip", ["x", "lo"], ["y"]), {"lo": S(-0.5).reshape(())}, (0.03, 0), (0.03, 0),
                      {"MAXIMUM"}),
    # an output grid reaching below 0 and above 1: the fused RELU and a MINIMUM do the clamping
    "hardsigmoid_wide_grid": (helper.make_node("HardSigmoid", ["x"], ["y"], alpha=1 / 6, beta=0.5), {}, (0.03, 0),
                              (2 / 255, -64), {"MUL", "ADD", "MINIMUM"}),
    "sigmoid_on_other_grid": (helper.make_node("Sigmoid", ["x"], ["y"]), {}, (0.03, 0), (1 / 255, -128),
                              {"LOGISTIC"}),
    "softmax_on_other_grid": (helper.make_node("Softmax", ["x"], ["y"], axis=1), {}, (0.03, 0), (1 / 250, -120),
                              {"SOFTMAX"}),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(HAND_CASES))
def test_int8_hand_written_qdq_ops_match_onnxruntime(case: str) -> None:
    node, inits, xq, yq, want = HAND_CASES[case]
    n = onnx.NodeProto()
    n.CopyFrom(node)
    q = hand_qdq(n, inits, xq, yq)
    ex = onnx_to_tflite(q)
    g = read_tflite(ex.data)
    assert want <= set(int8_ops(g)), Counter(op.builtin for op in g.ops)
    # one step (rounding ties); two for the fixed-grid kernels, whose 1/256 output is requantized once more
    tol = 2.01 if want & {"LOGISTIC", "SOFTMAX"} else 1.01
    lite = Lite(ex.data)
    for x in _inputs(3, 50):
        (got,), (ref,) = lite(x), ort_run(q, x)
        assert np.abs(got - ref).max() <= tol * yq[0], (case, np.abs(got - ref).max() / yq[0])


# -- float parity: one row per op / attributes, LiteRT vs ONNX Runtime ------------------------------------------
CONV6 = N("Conv", ["x", "w6"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
W6 = {"w6": rng_w(6, 3, 3, 3)}
FLOAT_CASES: dict[str, tuple[list[onnx.NodeProto], dict[str, np.ndarray], int]] = {
    "gemm_alpha_beta_bias_row": ([N("Flatten", ["x"], ["f"]), N("Gemm", ["f", "g", "gc"], ["y"], transB=1, alpha=0.5,
                                  beta=2.0)], {"g": rng_w(5, 240), "gc": rng_w(1, 5)}, 17),
    "gemm_transA": ([N("Reshape", ["x", "s"], ["r"]), N("Gemm", ["r", "g", "gc"], ["y"], transA=1)],
                    {"s": _i(240, 1), "g": rng_w(240, 5), "gc": rng_w(5)}, 17),
    "grouped_conv": ([CONV6, N("Conv", ["c", "wg", "bg"], ["y"], kernel_shape=[3, 3], group=2, strides=[2, 2])],
                     {**W6, "wg": rng_w(4, 3, 3, 3, seed=1), "bg": rng_w(4)}, 17),
    "conv1d_relu_maxpool1d": ([N("Reshape", ["x", "s"], ["r"]),
                               N("Conv", ["r", "w1", "b1"], ["c1"], kernel_shape=[3], pads=[1, 1], dilations=[2]),
                               N("Relu", ["c1"], ["a"]), N("MaxPool", ["a"], ["y"], kernel_shape=[2], strides=[2])],
                              {"s": _i(1, 3, 80), "w1": rng_w(5, 3, 3), "b1": rng_w(5)}, 17),
    "cast_int_roundtrip": ([N("Cast", ["x"], ["ci"], to=onnx.TensorProto.INT32),
                            N("Cast", ["ci"], ["cf"], to=onnx.TensorProto.FLOAT), N("Add", ["cf", "x"], ["y"])], {}, 17),
    "expand_channel_mean": ([N("ReduceMean", ["x"], ["m"], axes=[1], keepdims=1), N("Expand", ["m", "sh"], ["e"]),
                             N("Mul", ["e", "x"], ["y"])], {"sh": _i(1, 3, 8, 10)}, 17),
    "reduce_sum_c_w": ([CONV6, N("ReduceSum", ["c", "ax"], ["y"], keepdims=0)], {**W6, "ax": _i(1, 3)}, 17),
    "reduce_mean_c_w_keep": ([CONV6, N("ReduceMean", ["c"], ["y"], axes=[1, 3], keepdims=1)], W6, 17),
    "gelu_op_tanh": ([N("Gelu", ["x"], ["y"], approximate="tanh")], {}, 20),
    "gelu_op": ([N("Gelu", ["x"], ["y"])], {}, 20),
    "gelu_erf_pattern": ([N("Div", ["x", "r2"], ["d"]), N("Erf", ["d"], ["e"]), N("Add", ["e", "one"], ["a"]),
                          N("Mul", ["x", "a"], ["m"]), N("Mul", ["m", "half"], ["y"])],
                         {"r2": _c(2**0.5), "one": _c(1.0), "half": _c(0.5)}, 17),
    "layernorm_last_axis": ([N("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]),
                             N("LayerNormalization", ["t", "lg", "lb"], ["y"], epsilon=1e-3)],
                            {"lg": rng_w(3) + 1, "lb": rng_w(3, seed=2)}, 17),
    "flatten_axis2": ([CONV6, N("Flatten", ["c"], ["y"], axis=2)], W6, 17),
    # GoogLeNet / Inception (torchvision): the last window runs past the end, padded with the lowest value
    "maxpool_ceil_mode": ([CONV6, N("MaxPool", ["c"], ["y"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)],
                          W6, 17),
    "maxpool_ceil_mode_pads": ([CONV6, N("MaxPool", ["c"], ["y"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1,
                                         pads=[1, 0, 1, 0])], W6, 17),
    "reduce_min_prod_l2": ([CONV6, N("ReduceMin", ["c"], ["mn"], axes=[2], keepdims=1),
                            N("ReduceProd", ["mn"], ["p"], axes=[3], keepdims=1),
                            N("ReduceL2", ["c"], ["l2"], axes=[1, 3], keepdims=1), N("Mul", ["p", "l2"], ["y"])], W6, 17),
    "argmax_channels": ([CONV6, N("ArgMax", ["c"], ["y"], axis=1, keepdims=0)], W6, 17),
    "argmax_width_keepdims": ([CONV6, N("ArgMin", ["c"], ["y"], axis=3, keepdims=1)], W6, 17),
    "floor_ceil_round_reciprocal": ([N("Mul", ["x", "k"], ["m"]), N("Floor", ["m"], ["f"]), N("Ceil", ["m"], ["c"]),
                                     N("Round", ["m"], ["r"]), N("Add", ["f", "c"], ["fc"]), N("Add", ["fc", "r"], ["s"]),
                                     N("Add", ["s", "k"], ["s1"]), N("Reciprocal", ["s1"], ["y"])],
                                    {"k": _c(10.5)}, 17),
    "tile": ([N("Tile", ["x", "rep"], ["y"])], {"rep": _i(1, 2, 1, 2)}, 17),
    "where_greater": ([N("Greater", ["x", "k"], ["g"]), N("Neg", ["x"], ["ng"]), N("Where", ["g", "x", "ng"], ["y"])],
                      {"k": _c(0.3)}, 17),
    "logic_chain": ([N("Greater", ["x", "lo"], ["a"]), N("Less", ["x", "hi"], ["b"]), N("And", ["a", "b"], ["ab"]),
                     N("Equal", ["x", "x"], ["e"]), N("Not", ["ab"], ["na"]), N("And", ["na", "e"], ["o"]),
                     N("Cast", ["o"], ["y"], to=onnx.TensorProto.FLOAT)], {"lo": _c(-0.5), "hi": _c(0.5)}, 17),
    "unary_math": ([N("Abs", ["x"], ["a"]), N("Add", ["a", "one"], ["a1"]), N("Log", ["a1"], ["l"]),
                    N("Exp", ["l"], ["e"]), N("Sqrt", ["e"], ["s"]), N("Neg", ["s"], ["y"])], {"one": _c(1.0)}, 17),
    "pow_2_half_1.5": ([N("Pow", ["x", "two"], ["p2"]), N("Pow", ["p2", "half"], ["ph"]),
                        N("Pow", ["ph", "p15"], ["y"])], {"two": _c(2.0), "half": _c(0.5), "p15": _c(1.5)}, 17),
    "prelu_per_channel": ([CONV6, N("PRelu", ["c", "sl"], ["y"])], {**W6, "sl": rng_w(6, 1, 1)}, 17),
    "elu": ([N("Elu", ["x"], ["y"])], {}, 17),
    "upsample_nearest_opset9": ([N("Upsample", ["x", "sc"], ["y"], mode="nearest")], {"sc": _c(1, 1, 2, 3)}, 9),
    "upsample_linear_opset9": ([N("Upsample", ["x", "sc"], ["y"], mode="linear")], {"sc": _c(1, 1, 2, 2)}, 9),
    "resize_nearest_asymmetric_floor_x3": ([N("Resize", ["x", "", "sc"], ["y"], mode="nearest", nearest_mode="floor",
                                             coordinate_transformation_mode="asymmetric")], {"sc": _c(1, 1, 3, 3)}, 17),
    "resize_nearest_asymmetric_x2": ([N("Resize", ["x", "", "sc"], ["y"], mode="nearest",
                                       coordinate_transformation_mode="asymmetric")], {"sc": _c(1, 1, 2, 2)}, 17),
    "resize_nearest_half_pixel_ceil_x4": ([N("Resize", ["x", "", "sc"], ["y"], mode="nearest",
                                            nearest_mode="round_prefer_ceil")], {"sc": _c(1, 1, 4, 4)}, 17),
    "resize_sizes_nearest": ([N("Resize", ["x", "", "", "sz"], ["y"], mode="nearest")], {"sz": _i(1, 3, 16, 30)}, 17),
    "resize_linear_align_corners": ([N("Resize", ["x", "", "sc"], ["y"], mode="linear",
                                       coordinate_transformation_mode="align_corners")], {"sc": _c(1, 1, 2, 2)}, 17),
    "resize_linear_asymmetric": ([N("Resize", ["x", "", "sc"], ["y"], mode="linear",
                                    coordinate_transformation_mode="asymmetric")], {"sc": _c(1, 1, 2, 2)}, 17),
    "resize_linear_half_pixel_sizes": ([N("Resize", ["x", "", "", "sz"], ["y"], mode="linear")],
                                       {"sz": _i(1, 3, 12, 15)}, 17),
    "depth_to_space_crd_pixel_shuffle": ([N("Conv", ["x", "w8"], ["c"], kernel_shape=[1, 1]),
                                          N("DepthToSpace", ["c"], ["y"], blocksize=2, mode="CRD")],
                                         {"w8": rng_w(8, 3, 1, 1)}, 17),
    "concat_with_constant": ([CONV6, N("Concat", ["c", "kc", "x"], ["y"], axis=1)],
                             {**W6, "kc": rng_w(1, 2, 8, 10, seed=4)}, 17),
    "space_to_depth": ([N("SpaceToDepth", ["x"], ["y"], blocksize=2)], {}, 17),
    "depth_to_space_dcr": ([N("Conv", ["x", "w8"], ["c"], kernel_shape=[1, 1]),
                            N("DepthToSpace", ["c"], ["y"], blocksize=2, mode="DCR")], {"w8": rng_w(8, 3, 1, 1)}, 17),
    # PyTorch's upsampling ConvTranspose2d(k3, s2, p1, output_padding=1): TFLite's SAME crops the other side, so a
    # VALID TRANSPOSE_CONV and a SLICE of what ONNX keeps
    "conv_transpose_k3_s2_p1_op1": ([N("ConvTranspose", ["x", "wt", "bt"], ["y"], kernel_shape=[3, 3], strides=[2, 2],
                                       pads=[1, 1, 1, 1], output_padding=[1, 1])],
                                    {"wt": rng_w(3, 4, 3, 3), "bt": rng_w(4)}, 17),
    "conv_transpose_k4_s2_p1": ([N("ConvTranspose", ["x", "wt"], ["y"], kernel_shape=[4, 4], strides=[2, 2],
                                   pads=[1, 1, 1, 1])], {"wt": rng_w(3, 4, 4, 4)}, 17),
    # style-transfer networks (fast-neural-style): per sample and channel over H, W
    "instance_norm": ([CONV6, N("InstanceNormalization", ["c", "is", "ib"], ["y"], epsilon=1e-5)],
                      {**W6, "is": rng_w(6) + 1, "ib": rng_w(6, seed=3)}, 17),
    "lrn_size5": ([CONV6, N("LRN", ["c"], ["y"], size=5, alpha=1e-3, beta=0.75, bias=2.0)], W6, 17),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(FLOAT_CASES))
def test_float_op_matches_onnxruntime(case: str) -> None:
    nodes, inits, opset = FLOAT_CASES[case]
    m = make_model(nodes, [("x", list(X))], [("y", None)], inits, opset=opset)
    ex = onnx_to_tflite(m)
    lite = Lite(ex.data)
    for x in _inputs(2, 7):
        (got,), (ref,) = lite(x), ort_run(m, x)
        assert got.shape == ref.shape, (got.shape, ref.shape)
        np.testing.assert_allclose(got, ref, atol=2e-4, rtol=2e-4)


# -- refusals: an op or attribute with no faithful TFLite form is exit 2 naming node, op and the nearest form -------
REFUSED: dict[str, tuple[onnx.NodeProto, dict[str, np.ndarray], str]] = {
    "erf_alone": (N("Erf", ["x"], ["y"], name="n"), {}, "no ERF"),
    "gather_elements": (N("GatherElements", ["x", "gi"], ["y"], name="n", axis=1),
                        {"gi": np.zeros((1, 2, 8, 10), np.int64)}, "no TFLite conversion"),
    "dilated_maxpool": (N("MaxPool", ["x"], ["y"], name="n", kernel_shape=[2, 2], dilations=[2, 2]), {},
                        "dilated pooling"),
    "elu_alpha": (N("Elu", ["x"], ["y"], name="n", alpha=0.5), {}, "alpha 0.5"),
    # AveragePool's ceil window divides by a count TFLite's AVERAGE_POOL_2D does not use
    "avgpool_ceil_mode": (N("AveragePool", ["x"], ["y"], name="n", kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
                          {}, "ceil_mode=1 changes the output size"),
    "resize_nearest_align_corners": (N("Resize", ["x", "", "sc"], ["y"], name="n", mode="nearest",
                                       coordinate_transformation_mode="align_corners"), {"sc": _c(1, 1, 2, 2)},
                                     "coordinate_transformation_mode=align_corners"),
    "resize_nearest_half_pixel_floor": (N("Resize", ["x", "", "sc"], ["y"], name="n", mode="nearest",
                                          nearest_mode="floor"), {"sc": _c(1, 1, 2, 2)}, "nearest_mode=floor"),
    "resize_nearest_asymmetric_round_x4": (N("Resize", ["x", "", "sc"], ["y"], name="n", mode="nearest",
                                             coordinate_transformation_mode="asymmetric"), {"sc": _c(1, 1, 4, 4)},
                                           "round_prefer_floor at scale"),
    "resize_cubic": (N("Resize", ["x", "", "sc"], ["y"], name="n", mode="cubic"), {"sc": _c(1, 1, 2, 2)},
                     "mode cubic"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_unconvertible_ops_are_refused_by_name(case: str) -> None:
    node, inits, why = REFUSED[case]
    m = make_model([node], [("x", list(X))], [("y", None)], inits)
    with pytest.raises(UnsupportedOpError, match=rf"node 'n' \({node.op_type}\).*{why}.*nearest supported") as e:
        onnx_to_tflite(m)
    assert e.value.exit_code == 2 and "\n" not in str(e.value)


# -- models as torch.onnx.export writes them (tests/data/exported_cnns, regenerated by make_models.py) -------------
EXPORTED = Path(__file__).parent / "data" / "exported_cnns"
EXPORTED_SHAPES = {"mobilenetv3": (1, 3, 96, 96), "yolov8": (1, 3, 64, 64), "yolov5_head": (1, 3, 64, 64), "efficientnet_lite": (1, 3, 64, 64),
                   "crnn": (1, 1, 32, 64), "resnet": (1, 3, 64, 64)}  # fmt: skip


@pytest.mark.parametrize("name", sorted(EXPORTED_SHAPES))
def test_exported_cnn_converts_float_and_fully_int8_from_onnxruntime_qdq(name: str, tmp_path: Path) -> None:
    m = onnx.load(str(EXPORTED / f"{name}.onnx"))
    shape = EXPORTED_SHAPES[name]
    xs = [np.random.default_rng(i).standard_normal(shape).astype(np.float32) for i in range(10)]
    ex = onnx_to_tflite(m)
    (got,), (ref,) = Lite(ex.data)(xs[0]), ort_run(m, xs[0])
    np.testing.assert_allclose(got, ref, atol=1e-4 * max(1.0, float(np.abs(ref).max())), rtol=1e-4)

    f, qpath = tmp_path / "f.onnx", tmp_path / "q.onnx"
    onnx.save(m, str(f))
    ops = sorted({n.op_type for n in m.graph.node} - {"Constant"})
    quantize_static(str(f), str(qpath), _Reader(xs[:6]),
                    quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    per_channel=True, op_types_to_quantize=ops)  # fmt: skip
    q = onnx.load(str(qpath))
    ex = onnx_to_tflite(q)
    g = read_tflite(ex.data)
    floats = Counter(op.builtin for op in g.ops if g.tensors[op.outputs[0]].dtype == "float32")
    # one DEQUANTIZE before the output (two for the OCR head, whose LogSoftmax the QDQ model leaves in float)
    assert set(floats) - {"DEQUANTIZE", "TRANSPOSE", "RESHAPE"} <= ({"LOG_SOFTMAX"} if name == "crnn" else set())
    assert floats["DEQUANTIZE"] == (2 if name == "crnn" else 1), floats
    step = _out_scale(q) if name != "crnn" else 1e-3  # crnn: float LogSoftmax of the same int8 logits
    lite = Lite(ex.data)
    for x in xs[6:]:
        (got,), (ref,) = lite(x), ort_run(q, x)
        assert got.shape == ref.shape
        assert np.abs(got - ref).max() <= 2.01 * step, (name, np.abs(got - ref).max() / step)


# -- memory: weights are read once and never written back into a proto or held twice ---------------------------
def test_batchnorm_folds_without_writing_weights_into_the_proto(tmp_path: Path) -> None:
    from edgecnn.export.to_tflite import _prepare
    from edgecnn.graph.external import externalized_copy
    from tests.test_export_tflite import _bench_model

    m = _bench_model("resnet18", 32)
    assert any(n.op_type == "BatchNormalization" for n in m.graph.node)
    p = _prepare(externalized_copy(m, tmp_path, "w.bin"), tmp_path)
    assert not any(n.op_type == "BatchNormalization" for n in p.graph.node)
    inline = [
        t.name for t in p.graph.initializer if t.data_location != onnx.TensorProto.EXTERNAL and t.ByteSize() > 8192
    ]
    assert not inline, inline  # only per-channel factors and biases are new; weights stay in the external file
    ex = onnx_to_tflite(m)
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    (got,), (ref,) = Lite(ex.data)(x), ort_run(m, x)
    np.testing.assert_allclose(got, ref, atol=1e-4 * float(np.abs(ref).max()), rtol=1e-4)


def test_release_serializes_once() -> None:
    from edgecnn.export.tflite_writer import TFLiteBuilder

    b = TFLiteBuilder()
    w = b.add_tensor("w", [4], "float32", data=np.arange(4, dtype=np.float32))
    y = b.add_tensor("y", [4], "float32")
    x = b.add_tensor("x", [4], "float32")
    b.add_op("ADD", [x, w], [y])
    b.set_io([x], [y])
    first = b.to_bytes(release=True)
    assert read_tflite(first).tensors[w].has_data
    with pytest.raises(RuntimeError, match="release=True"):
        b.to_bytes()


def test_int8_argmax_compares_int8_values_and_matches_onnxruntime(tmp_path: Path) -> None:
    """A segmentation-style head: ArgMax over the channels of an int8 map reads the int8 tensor directly
    (quantization is monotonic, so the indices are those of the dequantized values)."""
    nodes = [N("Conv", ["x", "w"], ["x1"], kernel_shape=[1, 1]), N("ArgMax", ["x1"], ["y"], axis=1, keepdims=1)]
    q = ort_qdq(make_model(nodes, [("x", list(X))], [("y", None)], {"w": rng_w(5, 3, 1, 1)}), tmp_path)
    g = read_tflite(onnx_to_tflite(q).data)
    (am,) = [op for op in g.ops if op.builtin == "ARG_MAX"]
    assert g.tensors[am.inputs[0]].dtype == "int8" and g.tensors[am.outputs[0]].dtype == "int64"
    assert "DEQUANTIZE" not in {op.builtin for op in g.ops}
    lite = Lite(onnx_to_tflite(q).data)
    for x in _inputs(3, 20):
        (got,), (ref,) = lite(x), ort_run(q, x)
        assert got.dtype == ref.dtype == np.int64
        np.testing.assert_array_equal(got, ref)


# -- speed: the INT8 MobileNetV2 export is one XNNPACK partition --------------------------------------------------
def test_int8_mobilenetv2_is_one_xnnpack_partition(tmp_path: Path) -> None:
    """Every op of the INT8 MobileNetV2 export is claimed by LiteRT's default XNNPACK delegate: after
    allocate_tensors the execution plan ends in one DELEGATE node reading the graph input and writing the graph
    output. A float island or an op XNNPACK cannot run in int8 would split it (or leave ops outside it)."""
    from dataclasses import replace as dc_replace

    from ai_edge_litert.interpreter import Interpreter

    from edgecnn.preprocess import load_spec
    from tests.test_export_tflite import SPEC, _bench_model, qdq_of

    path = tmp_path / "mobilenetv2.onnx"
    onnx.save(_bench_model("mobilenetv2", 64), str(path))
    q = qdq_of(path, spec=dc_replace(load_spec(SPEC), resize=(64, 64)), samples=4)
    it = Interpreter(model_content=onnx_to_tflite(q).data, num_threads=1)
    it.allocate_tensors()
    delegates = [d for d in it._get_ops_details() if d["op_name"] == "DELEGATE"]
    assert len(delegates) == 1, [d["op_name"] for d in it._get_ops_details()]
    (inp,), (out,) = it.get_input_details(), it.get_output_details()
    assert inp["index"] in delegates[0]["inputs"] and list(delegates[0]["outputs"]) == [out["index"]]
