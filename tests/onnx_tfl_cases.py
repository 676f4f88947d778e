"""Single-operator ONNX models for the TFLite targets, float32 and QDQ int8, each on one side of a limit.

``edgecnn check`` judges the ONNX model; ``edgecnn export --to tflite`` converts it and the vendor's tool
(Vela, the XNNPACK delegate) places the operators of the file. Both answers are computed in the tests; this
module only builds models. ``qdq`` wraps a float model as ``edgecnn quantize`` writes it: every activation
through QuantizeLinear/DequantizeLinear (int8, per tensor), weights stored int8 behind a DequantizeLinear.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
ACT_SCALE = 0.05


@dataclass(frozen=True)
class OnnxCase:
    id: str
    build: Callable[[], onnx.ModelProto]


def _model(
    nodes: list[onnx.NodeProto], inits: dict[str, np.ndarray], x: list[int], opset: int = OPSET
) -> onnx.ModelProto:
    g = helper.make_graph(
        nodes, "case", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()],
    )  # fmt: skip
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="edgecnn-tests")
    m.ir_version = 8
    inferred = onnx.shape_inference.infer_shapes(m, strict_mode=True)
    m.graph.output[0].CopyFrom(inferred.graph.output[0])
    return m


def _w(*shape: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) * 0.2).astype(np.float32)


def _i(v: list[int]) -> np.ndarray:
    return np.asarray(v, np.int64)


def conv(k: int = 3, stride: int = 1, pad: int | None = None, dilation: int = 1, group: int = 1, cin: int = 4,
         cout: int = 8, hw: int = 16, auto_pad: str | None = None) -> onnx.ModelProto:  # fmt: skip
    """Conv; cin 4 by default: edgecnn export treats an [N, 1|3|4, H, W] input as an NCHW image (NHWC in TFLite)."""
    p = (k // 2) * dilation if pad is None else pad
    attrs: dict[str, object] = {"kernel_shape": [k, k], "strides": [stride] * 2, "dilations": [dilation] * 2,
                                "group": group}  # fmt: skip
    if auto_pad:
        attrs["auto_pad"] = auto_pad
    else:
        attrs["pads"] = [p] * 4
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", **attrs)
    return _model([node], {"w": _w(cout, cin // group, k, k), "b": _w(cout, seed=1)}, [1, cin, hw, hw])


def conv_const_w(cin: int, k: int = 8) -> onnx.ModelProto:
    """A VALID conv whose weights all have one magnitude: as int8, each is 127 (weight sum cin * k * k * 127)."""
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[k, k])
    return _model([node], {"w": np.full((4, cin, k, k), 0.01, np.float32)}, [1, cin, k, k])


def pool(op: str = "MaxPool", k: int = 2, stride: int = 2, pad: int = 0, hw: int = 16, c: int = 4) -> onnx.ModelProto:
    node = helper.make_node(
        op, ["x"], ["y"], name=op.lower(), kernel_shape=[k, k], strides=[stride] * 2, pads=[pad] * 4
    )
    return _model([node], {}, [1, c, hw, hw])


def unary(op: str, x: list[int] | None = None, **attrs: object) -> onnx.ModelProto:
    return _model([helper.make_node(op, ["x"], ["y"], name=op.lower(), **attrs)], {}, x or [1, 4, 8, 8])


def binary(op: str, c_shape: list[int] | None = None) -> onnx.ModelProto:
    c = np.full(c_shape or [1, 4, 1, 1], 0.5, np.float32)
    return _model([helper.make_node(op, ["x", "c"], ["y"], name=op.lower())], {"c": c}, [1, 4, 8, 8])


def gelu_nodes(x: str, y: str) -> tuple[list[onnx.NodeProto], dict[str, np.ndarray]]:
    """The exact GELU of ``x`` into ``y`` as exporters write it before opset 20 (Div by sqrt 2, Erf, Add 1, Mul by
    x, Mul by 0.5; the last node is ``gelu_half``), and its constants."""
    c = {"r2": np.array(2**0.5, np.float32), "one": np.array(1.0, np.float32), "half": np.array(0.5, np.float32)}
    nodes = [
        helper.make_node("Div", [x, "r2"], ["d"], name="gelu_div"),
        helper.make_node("Erf", ["d"], ["e"], name="gelu_erf"),
        helper.make_node("Add", ["e", "one"], ["a"], name="gelu_add"),
        helper.make_node("Mul", [x, "a"], ["m"], name="gelu_mul"),
        helper.make_node("Mul", ["m", "half"], [y], name="gelu_half"),
    ]
    return nodes, c


def gelu_chain() -> onnx.ModelProto:
    """The exact GELU alone (``gelu_nodes``)."""
    nodes, c = gelu_nodes("x", "y")
    return _model(nodes, c, [1, 4, 8, 8])


def gelu_chain_qdq() -> onnx.ModelProto:
    """The chain as edgecnn quantize leaves it: one float unit between a DQ and a Q (int8, per tensor)."""
    m = gelu_chain()
    g = m.graph
    g.initializer.extend([numpy_helper.from_array(np.array(ACT_SCALE, np.float32), "s_act"),
                          numpy_helper.from_array(np.array(0, np.int8), "z_act")])  # fmt: skip
    chain = list(g.node)
    for n in chain:
        n.input[:] = ["x_dq" if i == "x" else i for i in n.input]
    chain[-1].output[0] = "y_f"
    del g.node[:]
    g.node.extend([
        helper.make_node("QuantizeLinear", ["x", "s_act", "z_act"], ["x_q"], name="x_q"),
        helper.make_node("DequantizeLinear", ["x_q", "s_act", "z_act"], ["x_dq"], name="x_dq"),
        *chain,
        helper.make_node("QuantizeLinear", ["y_f", "s_act", "z_act"], ["y_q"], name="y_q"),
        helper.make_node("DequantizeLinear", ["y_q", "s_act", "z_act"], ["y"], name="y_dq"),
    ])  # fmt: skip
    return m


def power(e: float) -> onnx.ModelProto:
    return _model(
        [helper.make_node("Pow", ["x", "e"], ["y"], name="pow")], {"e": np.array(e, np.float32)}, [1, 4, 8, 8]
    )


def unquantized_output(m: onnx.ModelProto) -> onnx.ModelProto:
    """A QDQ case with the output's Q/DQ pair removed: the op writes the float graph output itself."""
    g = m.graph
    keep = [n for n in g.node if n.name not in ("y_q", "y_dq")]
    for n in keep:
        n.output[:] = ["y" if o == "y_f" else o for o in n.output]
    del g.node[:]
    g.node.extend(keep)
    return m


def self_binary(op: str) -> onnx.ModelProto:
    """op(x, x): two activation operands with one quantization (a constant operand gets the converter's own
    scale in edgecnn export, so it would test the converter rather than the target)."""
    return _model([helper.make_node(op, ["x", "x"], ["y"], name=op.lower())], {}, [1, 4, 8, 8])


def clip(lo: float, hi: float) -> onnx.ModelProto:
    inits = {"lo": np.array(lo, np.float32), "hi": np.array(hi, np.float32)}
    return _model([helper.make_node("Clip", ["x", "lo", "hi"], ["y"], name="clip")], inits, [1, 4, 8, 8])


def resize(scale: float, mode: str = "nearest", coord: str = "asymmetric", hw: int = 8,
           nearest_mode: str = "floor") -> onnx.ModelProto:  # fmt: skip
    attrs: dict[str, object] = {"mode": mode, "coordinate_transformation_mode": coord}
    if mode == "nearest":
        attrs["nearest_mode"] = nearest_mode
    node = helper.make_node("Resize", ["x", "", "s"], ["y"], name="resize", **attrs)
    return _model([node], {"s": np.array([1, 1, scale, scale], np.float32)}, [1, 4, hw, hw])


def reduce_mean(axes: list[int], keepdims: int = 1, x: list[int] | None = None) -> onnx.ModelProto:
    node = helper.make_node("ReduceMean", ["x"], ["y"], name="mean", axes=axes, keepdims=keepdims)
    return _model([node], {}, x or [1, 4, 8, 8])


def gap(x: list[int] | None = None) -> onnx.ModelProto:
    return unary("GlobalAveragePool", x or [1, 4, 8, 8])


def softmax(axis: int, x: list[int] | None = None) -> onnx.ModelProto:
    return unary("Softmax", x or [1, 4, 8, 8], axis=axis)


def transpose(perm: list[int], x: list[int]) -> onnx.ModelProto:
    return unary("Transpose", x, perm=perm)


def pad(pads: list[int], mode: str = "constant") -> onnx.ModelProto:
    node = helper.make_node("Pad", ["x", "p"], ["y"], name="pad", mode=mode)
    return _model([node], {"p": _i(pads)}, [1, 4, 8, 8])


def slice_(starts: list[int], ends: list[int], axes: list[int], steps: list[int]) -> onnx.ModelProto:
    node = helper.make_node("Slice", ["x", "s", "e", "a", "t"], ["y"], name="slice")
    return _model([node], {"s": _i(starts), "e": _i(ends), "a": _i(axes), "t": _i(steps)}, [1, 4, 8, 8])


def concat(n: int, axis: int = 1) -> onnx.ModelProto:
    """Concat of n activations (the same input n times: converters refuse or fold constant operands)."""
    return _model([helper.make_node("Concat", ["x"] * n, ["y"], name="concat", axis=axis)], {}, [1, 4, 8, 8])


def gemm(n_in: int = 32, n_out: int = 16) -> onnx.ModelProto:
    node = helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="gemm", transB=1)
    return _model([node], {"w": _w(n_out, n_in), "b": _w(n_out, seed=1)}, [1, n_in])


def conv_transpose(stride: int = 2, k: int = 2) -> onnx.ModelProto:
    node = helper.make_node(
        "ConvTranspose", ["x", "w"], ["y"], name="deconv", kernel_shape=[k, k], strides=[stride] * 2
    )
    return _model([node], {"w": _w(4, 4, k, k)}, [1, 4, 8, 8])


def depth_to_space(block: int = 2) -> onnx.ModelProto:
    return unary("DepthToSpace", [1, 4, 6, 6], blocksize=block, mode="DCR")


# ---- QDQ wrapping ---------------------------------------------------------------------------------------------


def split(sizes: list[int]) -> onnx.ModelProto:
    """Split along channels into ``sizes``, every part a graph output (YOLO heads split boxes from classes)."""
    outs = ["y"] + [f"part{i}" for i in range(1, len(sizes))]
    node = helper.make_node("Split", ["x", "sizes"], outs, name="split", axis=1)
    g = helper.make_graph(
        [node], "case", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, sum(sizes), 8, 8])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, [1, n, 8, 8]) for o, n in zip(outs, sizes, strict=True)],
        initializer=[numpy_helper.from_array(np.array(sizes, np.int64), "sizes")],
    )  # fmt: skip
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edgecnn-tests")
    m.ir_version = 8
    return m


def qdq(m: onnx.ModelProto, out_scale: float = ACT_SCALE) -> onnx.ModelProto:
    """The single-op model as a QDQ int8 model: activations per tensor, weights int8 per tensor."""
    g = m.graph
    (node,) = g.node
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    new_inits: dict[str, np.ndarray] = {"s_act": np.array(ACT_SCALE, np.float32), "z_act": np.array(0, np.int8),
                                        "s_out": np.array(out_scale, np.float32)}  # fmt: skip
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s_act", "z_act"], ["x_q"], name="x_q"),
        helper.make_node("DequantizeLinear", ["x_q", "s_act", "z_act"], ["x_dq"], name="x_dq"),
    ]
    ins = []
    for i, name in enumerate(node.input):
        if name == "x":
            ins.append("x_dq")
        elif name in inits and inits[name].dtype == np.float32 and inits[name].ndim >= 1 and node.op_type != "Resize":
            w = inits[name]
            if node.op_type in ("Conv", "Gemm", "ConvTranspose") and i == 2:  # bias: int32 at s_act * s_w
                s = ACT_SCALE * _wscale(inits[node.input[1]])
                new_inits[name + "_q"] = np.round(w / s).astype(np.int32)
                new_inits[name + "_s"] = np.array(s, np.float32)
                new_inits[name + "_z"] = np.array(0, np.int32)
            else:
                s = _wscale(w) if node.op_type in ("Conv", "Gemm", "ConvTranspose") else ACT_SCALE
                new_inits[name + "_q"] = np.clip(np.round(w / s), -127, 127).astype(np.int8)
                new_inits[name + "_s"] = np.array(s, np.float32)
                new_inits[name + "_z"] = np.array(0, np.int8)
            nodes.append(helper.make_node("DequantizeLinear", [name + "_q", name + "_s", name + "_z"], [name + "_dq"],
                                          name=name + "_dq"))  # fmt: skip
            ins.append(name + "_dq")
        else:
            if name in inits:
                new_inits[name] = inits[name]
            ins.append(name)
    op = helper.make_node(node.op_type, ins, ["y_f"], name=node.name)
    op.attribute.extend(node.attribute)
    nodes += [
        op,
        helper.make_node("QuantizeLinear", ["y_f", "s_out", "z_act"], ["y_q"], name="y_q"),
        helper.make_node("DequantizeLinear", ["y_q", "s_out", "z_act"], ["y"], name="y_dq"),
    ]
    x_shape = [d.dim_value for d in g.input[0].type.tensor_type.shape.dim]
    return _model(nodes, new_inits, x_shape, opset=m.opset_import[0].version)


def _wscale(w: np.ndarray) -> float:
    return float(max(np.abs(w).max(), 1e-6) / 127.0)


# ---- the table --------------------------------------------------------------------------------------------------


def _float_cases() -> list[tuple[str, Callable[[], onnx.ModelProto]]]:
    return [
        ("conv", lambda: conv()),
        ("conv-s2", lambda: conv(stride=2)),
        ("conv-s4-pad0", lambda: conv(k=4, stride=4, pad=0)),
        ("conv-s4-pad1", lambda: conv(k=4, stride=4, pad=1)),
        ("conv-s4-same-upper", lambda: conv(k=5, stride=4, auto_pad="SAME_UPPER")),
        ("conv-dil2", lambda: conv(dilation=2)),
        ("conv-1x1", lambda: conv(k=1)),
        ("conv-wsum-at-limit", lambda: conv_const_w(1024)),
        ("conv-wsum-over-limit", lambda: conv_const_w(1032)),
        ("dw", lambda: conv(group=4, cout=4)),
        ("dw-s2", lambda: conv(group=4, cout=4, stride=2)),
        ("dw-s4-pad0", lambda: conv(k=4, group=4, cout=4, stride=4, pad=0)),
        ("dw-mult2", lambda: conv(group=4, cout=8)),
        ("deconv-s2", lambda: conv_transpose()),
        ("deconv-s3", lambda: conv_transpose(3, 3)),
        ("maxpool", lambda: pool()),
        ("maxpool-1x1-s2", lambda: pool(k=1, stride=2)),
        ("maxpool-s4-pad0", lambda: pool(k=4, stride=4)),
        ("maxpool-k3s2p1-even", lambda: pool(k=3, stride=2, pad=1, hw=16)),
        ("maxpool-k3s2p1-odd", lambda: pool(k=3, stride=2, pad=1, hw=15)),
        ("maxpool-k3s1p1", lambda: pool(k=3, stride=1, pad=1)),
        ("avgpool-k3s2p1-even", lambda: pool("AveragePool", k=3, stride=2, pad=1, hw=16)),
        ("avgpool", lambda: pool("AveragePool")),
        ("avgpool-1x1-s2", lambda: pool("AveragePool", k=1, stride=2)),
        ("avgpool-k9-pad4", lambda: pool("AveragePool", k=9, stride=1, pad=4)),
        ("gap", lambda: gap()),
        ("mean-hw", lambda: reduce_mean([2, 3])),
        ("mean-c", lambda: reduce_mean([1])),
        ("mean-c-h1", lambda: reduce_mean([1], x=[1, 4, 1, 8])),
        ("mean-h4096", lambda: reduce_mean([2], x=[1, 4, 4096, 2])),
        ("mean-h4097", lambda: reduce_mean([2], x=[1, 4, 4097, 2])),
        ("softmax-c-256x256", lambda: softmax(1, [1, 4, 256, 256])),
        ("softmax-c-257x256", lambda: softmax(1, [1, 4, 257, 256])),
        ("gemm", lambda: gemm()),
        ("add", lambda: binary("Add")),
        ("sub", lambda: binary("Sub")),
        ("mul", lambda: binary("Mul")),
        ("div", lambda: binary("Div")),
        ("max", lambda: self_binary("Max")),
        ("min", lambda: self_binary("Min")),
        ("relu", lambda: unary("Relu")),
        ("sigmoid", lambda: unary("Sigmoid")),
        ("tanh", lambda: unary("Tanh")),
        ("hardswish", lambda: unary("HardSwish")),
        ("hardsigmoid", lambda: unary("HardSigmoid", alpha=1 / 6, beta=0.5)),
        # Pow by a constant: x^2 is SQUARE / MUL(x, x), x^0.5 SQRT, others POW (LayerNorm written out in ops)
        ("pow2", lambda: power(2.0)),
        ("pow3", lambda: power(3.0)),
        ("pow05", lambda: power(0.5)),
        ("leakyrelu", lambda: unary("LeakyRelu", alpha=0.1)),
        ("clip06", lambda: clip(0, 6)),
        ("abs", lambda: unary("Abs")),
        ("exp", lambda: unary("Exp")),
        ("resize-nn-2x", lambda: resize(2.0)),
        ("resize-nn-3x", lambda: resize(3.0)),
        ("resize-bl-2x-half", lambda: resize(2.0, "linear", "half_pixel")),
        ("resize-bl-4x-half", lambda: resize(4.0, "linear", "half_pixel")),
        ("resize-bl-4x-asym", lambda: resize(4.0, "linear", "asymmetric")),
        ("softmax-c", lambda: softmax(1)),
        ("softmax-last", lambda: softmax(-1, [1, 100])),
        ("transpose-nhwc", lambda: transpose([0, 2, 3, 1], [1, 4, 8, 8])),
        ("transpose-3d", lambda: transpose([0, 2, 1], [1, 64, 16])),
        ("pad-hw", lambda: pad([0, 0, 1, 1, 0, 0, 1, 1])),
        ("pad-c", lambda: pad([0, 2, 0, 0, 0, 2, 0, 0])),
        ("pad-reflect", lambda: pad([0, 0, 1, 1, 0, 0, 1, 1], "reflect")),
        ("slice-c", lambda: slice_([0], [2], [1], [1])),
        ("slice-h-s2", lambda: slice_([0], [8], [2], [2])),
        ("slice-c-s2", lambda: slice_([0], [4], [1], [2])),
        ("concat2", lambda: concat(2)),
        ("concat6", lambda: concat(6)),
        ("d2s", lambda: depth_to_space()),
    ]


def onnx_cases() -> list[OnnxCase]:
    out: list[OnnxCase] = []
    for name, fn in _float_cases():
        out.append(OnnxCase(f"{name}-float32", fn))
        out.append(OnnxCase(f"{name}-int8", lambda fn=fn: qdq(fn())))
    for sizes in ([2, 2], [1, 3], [4, 4, 4, 4, 4], [3, 5, 8], [1, 1, 1, 1, 4, 8]):
        out.append(OnnxCase(f"split-{'-'.join(map(str, sizes))}-float32", lambda sizes=sizes: split(sizes)))
    out.append(OnnxCase("gelu-chain-float32", gelu_chain))
    out.append(OnnxCase("gelu-chain-int8", gelu_chain_qdq))
    # a fixed-grid op after a DQ with no Q on its output (a model's trailing Softmax as edgecnn quantize leaves
    # it): export writes it int8 with a DEQUANTIZE after, so that is what each target is asked to run
    out.append(OnnxCase("softmax-trailing-int8", lambda: unquantized_output(qdq(softmax(1)))))
    out.append(OnnxCase("sigmoid-trailing-int8", lambda: unquantized_output(qdq(unary("Sigmoid")))))
    # HardSigmoid int8 whose output grid ends at the clamp (as calibrated: [0, 1]): MUL + ADD(RELU), no MINIMUM
    out.append(OnnxCase("hardsigmoid-unitgrid-int8",
                        lambda: qdq(unary("HardSigmoid", alpha=1 / 6, beta=0.5), out_scale=1 / 127)))  # fmt: skip
    out.append(OnnxCase("max-diffquant-int8", lambda: qdq(self_binary("Max"), out_scale=0.1)))
    out.append(OnnxCase("min-diffquant-int8", lambda: qdq(self_binary("Min"), out_scale=0.1)))
    # XNNPACK's requantization limits (ADD/SUB: input/output scale in [1/1024, 256); MUL: product/output in
    # [1/65536, 256); LEAKY_RELU: [1/256, 128]), one case inside and one outside each bound.
    a = ACT_SCALE
    for op in ("Add", "Sub"):
        out.append(OnnxCase(f"{op.lower()}-ratio255-int8", lambda op=op: qdq(self_binary(op), out_scale=a / 255)))
        out.append(OnnxCase(f"{op.lower()}-ratio257-int8", lambda op=op: qdq(self_binary(op), out_scale=a / 257)))
        out.append(OnnxCase(f"{op.lower()}-ratio1-1000-int8", lambda op=op: qdq(self_binary(op), out_scale=a * 1000)))
        out.append(OnnxCase(f"{op.lower()}-ratio1-1050-int8", lambda op=op: qdq(self_binary(op), out_scale=a * 1050)))
    out.append(OnnxCase("mul-ratio255-int8", lambda: qdq(self_binary("Mul"), out_scale=a * a / 255)))
    out.append(OnnxCase("mul-ratio257-int8", lambda: qdq(self_binary("Mul"), out_scale=a * a / 257)))
    out.append(OnnxCase("mul-ratio1-60000-int8", lambda: qdq(self_binary("Mul"), out_scale=a * a * 60000)))
    out.append(OnnxCase("mul-ratio1-70000-int8", lambda: qdq(self_binary("Mul"), out_scale=a * a * 70000)))
    out.append(OnnxCase("leaky-ratio127-int8", lambda: qdq(unary("LeakyRelu", alpha=0.1), out_scale=a / 127)))
    out.append(OnnxCase("leaky-ratio129-int8", lambda: qdq(unary("LeakyRelu", alpha=0.1), out_scale=a / 129)))
    out.append(OnnxCase("leaky-alpha0.001-int8", lambda: qdq(unary("LeakyRelu", alpha=0.001))))
    return out


ONNX_CASES = onnx_cases()
