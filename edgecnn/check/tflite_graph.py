"""`check` on a ``.tflite`` file: the verdict is on the operators of the file that ships.

Each TFLite operator is read with the project's TFLite reader (``edgecnn.export.tflite_writer.read_tflite``)
and described with the same :class:`NodeFacts` an ONNX node gets, so one target spec and one set of rules
judge both: the builtin maps to the ONNX op the spec lists (``CONV_2D`` -> ``Conv``, ``DEPTHWISE_CONV_2D``
-> ``Conv`` with group = channels, ``MEAN`` -> ``ReduceMean``, ...), the geometry (kernel, stride,
dilation, the padding ``SAME`` really adds) comes from the options and tensor shapes, and ``layout`` is
``NHWC`` so that the rules find H, W and C. Builtins with no ONNX counterpart keep their TFLite name
(e.g. ``SQUARED_DIFFERENCE``) and a spec may list them under that name.

An operator whose inputs are all constant (e.g. the DEQUANTIZE of FP16 weights) is counted as absorbed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.check.placement import (
    DATA_MOVEMENT,
    NodeVerdict,
    Placement,
    SupportReport,
    TargetReport,
    _judge,
    worst_and_advice,
)
from edgecnn.check.rules import NodeFacts
from edgecnn.check.spec import TargetSpec
from edgecnn.errors import BadInputError, ModelError

# TFLite builtin -> the ONNX op a target spec lists it under. Builtins not here keep their own name.
TFLITE_TO_ONNX: dict[str, str] = {
    "CONV_2D": "Conv", "DEPTHWISE_CONV_2D": "Conv", "CONV_3D": "Conv", "TRANSPOSE_CONV": "ConvTranspose",
    "MAX_POOL_2D": "MaxPool", "AVERAGE_POOL_2D": "AveragePool", "L2_POOL_2D": "LpPool",
    "FULLY_CONNECTED": "Gemm", "BATCH_MATMUL": "MatMul",
    "ADD": "Add", "SUB": "Sub", "MUL": "Mul", "DIV": "Div", "MAXIMUM": "Max", "MINIMUM": "Min", "POW": "Pow",
    "RELU": "Relu", "RELU6": "Clip", "RELU_N1_TO_1": "Clip", "RELU_0_TO_1": "Clip", "LOGISTIC": "Sigmoid",
    "TANH": "Tanh", "HARD_SWISH": "HardSwish", "ELU": "Elu", "GELU": "Gelu", "LEAKY_RELU": "LeakyRelu",
    "PRELU": "PRelu", "ABS": "Abs", "NEG": "Neg", "EXP": "Exp", "LOG": "Log", "SQRT": "Sqrt", "FLOOR": "Floor",
    "CEIL": "Ceil", "ROUND": "Round", "SIN": "Sin", "COS": "Cos",
    "MEAN": "ReduceMean", "SUM": "ReduceSum", "REDUCE_MAX": "ReduceMax", "REDUCE_MIN": "ReduceMin",
    "REDUCE_PROD": "ReduceProd",
    "RESIZE_NEAREST_NEIGHBOR": "Resize", "RESIZE_BILINEAR": "Resize", "SOFTMAX": "Softmax",
    "LOG_SOFTMAX": "LogSoftmax", "TRANSPOSE": "Transpose", "PAD": "Pad", "MIRROR_PAD": "Pad",
    "STRIDED_SLICE": "Slice", "SLICE": "Slice", "CONCATENATION": "Concat", "SPLIT": "Split",
    "RESHAPE": "Reshape", "SQUEEZE": "Squeeze", "EXPAND_DIMS": "Unsqueeze", "DEPTH_TO_SPACE": "DepthToSpace",
    "SPACE_TO_DEPTH": "SpaceToDepth", "GATHER": "Gather", "CAST": "Cast", "ARG_MAX": "ArgMax",
    "ARG_MIN": "ArgMin", "TILE": "Tile", "QUANTIZE": "QuantizeLinear", "DEQUANTIZE": "DequantizeLinear",
    "L2_NORMALIZATION": "LpNormalization", "LOCAL_RESPONSE_NORMALIZATION": "LRN", "BROADCAST_TO": "Expand",
    "SELECT_V2": "Where", "EQUAL": "Equal", "GREATER": "Greater", "LESS": "Less",
}  # fmt: skip

_CLIP = {"RELU6": (0.0, 6.0), "RELU_N1_TO_1": (-1.0, 1.0), "RELU_0_TO_1": (0.0, 1.0)}
_QDTYPES = ("int8", "uint8", "int16", "uint16")


def _read(path: Path) -> Any:
    from edgecnn.export.tflite_writer import read_tflite
    from edgecnn.graph.load import model_file_size

    model_file_size(path, "a .tflite model")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ModelError(f"{path}: cannot read the TFLite file ({e.strerror or e})") from None
    try:
        return read_tflite(data)
    except BadInputError as e:
        raise ModelError(f"{path}: {e}; give a .tflite flatbuffer (or an .onnx model)") from None
    except Exception as e:  # a truncated or corrupt flatbuffer fails deep inside the schema reader
        raise ModelError(
            f"{path}: not a readable TFLite flatbuffer ({type(e).__name__}); give a valid .tflite"
        ) from None


def _same_pads(in_hw: tuple[int, int], out_hw: tuple[int, int], k: tuple[int, int], s: tuple[int, int],
               d: tuple[int, int]) -> tuple[int, int, int, int]:  # fmt: skip
    """ONNX-order pads [h_begin, w_begin, h_end, w_end] that TFLite SAME padding adds."""
    tot = [
        max((o - 1) * st + (kk - 1) * dd + 1 - i, 0) for i, o, kk, st, dd in zip(in_hw, out_hw, k, s, d, strict=True)
    ]
    return (tot[0] // 2, tot[1] // 2, tot[0] - tot[0] // 2, tot[1] - tot[1] // 2)


class _Reader:
    def __init__(self, g: Any) -> None:
        self.g = g

    def shape(self, t: int) -> tuple[int, ...]:
        tt = self.g.tensors[t]
        sig = tt.shape_signature
        if sig and len(sig) == len(tt.shape):
            return tuple(-1 if s < 0 else d for s, d in zip(sig, tt.shape, strict=True))
        return tt.shape

    def const(self, t: int) -> list[Any] | None:
        if t < 0 or not self.g.tensors[t].has_data:
            return None
        return self.g.tensor_data(t).reshape(-1).tolist()

    def quant(self, t: int) -> tuple[float, int] | None:
        tt = self.g.tensors[t]
        if tt.dtype in _QDTYPES and len(tt.scale) == 1:
            return (tt.scale[0], tt.zero_point[0] if tt.zero_point else 0)
        return None


def _weight_abs_sum(g: Any, t: int, out_axis: int) -> int | None:
    """Largest per-output-channel sum of |q - zero point| of an integer weight tensor (Vela's weight-sum limit)."""
    tt = g.tensors[t]
    if not tt.has_data or tt.dtype not in _QDTYPES or len(tt.shape) < 2:
        return None
    q = g.tensor_data(t).astype(np.int64)
    zp = np.asarray(tt.zero_point or (0,), np.int64)
    if zp.size > 1:
        shape = [1] * q.ndim
        shape[tt.quantized_dimension] = -1
        zp = zp.reshape(shape)
    a = np.abs(q - zp)
    others = tuple(i for i in range(a.ndim) if i != out_axis % a.ndim)
    return int(a.sum(axis=others).max())


def facts_of(g: Any, op: Any, target: TargetSpec) -> tuple[NodeFacts, str]:
    """The NodeFacts of TFLite operator ``op`` (ONNX conventions, NHWC layout) and its precision."""
    r = _Reader(g)
    b = op.builtin
    o = dict(op.options)
    ins = [i for i in op.inputs if i >= 0]
    if b in ("SPLIT",) and len(ins) == 2:
        ins = [ins[1], ins[0]]  # (axis, x) -> x first, as ONNX Split(x, split)
    if b == "TRANSPOSE_CONV" and len(ins) >= 3:
        ins = [ins[2], ins[1], *ins[3:], ins[0]]  # (output_shape, w, x[, bias]) -> x, w[, bias], output_shape
    outs = list(op.outputs)
    const = tuple(g.tensors[i].has_data for i in ins)
    acts = [i for i, c in zip(ins, const, strict=True) if not c]
    prec = g.tensors[acts[0]].dtype if acts else (g.tensors[ins[0]].dtype if ins else "float32")
    onnx_op = TFLITE_TO_ONNX.get(b, b)
    attrs: dict[str, Any] = {"tflite_builtin": b}
    kw: dict[str, Any] = {}
    x = r.shape(ins[0]) if ins else ()
    y = r.shape(outs[0]) if outs else ()
    if b in ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV") and len(ins) > 1 and len(x) == 4 and len(y) == 4:
        w = r.shape(ins[1])
        k = (w[1], w[2])
        s = (int(o.get("stride_h", 1)), int(o.get("stride_w", 1)))
        d = (int(o.get("dilation_h_factor", 1) or 1), int(o.get("dilation_w_factor", 1) or 1))
        if b == "TRANSPOSE_CONV":
            d = (1, 1)
        pads = (0, 0, 0, 0)
        if o.get("padding") == 0 and b != "TRANSPOSE_CONV":  # Padding.SAME
            pads = _same_pads((x[1], x[2]), (y[1], y[2]), k, s, d)
        cin = x[3]
        if b == "DEPTHWISE_CONV_2D":
            cout, group = w[3], cin
        elif b == "TRANSPOSE_CONV":
            cout, group = w[0], 1
        else:
            cout, group = w[0], max(cin // w[3], 1) if w[3] else 1
        kw.update(kernel=k, strides=s, dilations=d, pads=pads, group=group, in_channels=cin, out_channels=cout)
    elif b == "CONV_3D" and len(ins) > 1:
        w = r.shape(ins[1])
        s = (int(o.get("stride_d", 1)), int(o.get("stride_h", 1)), int(o.get("stride_w", 1)))
        kw.update(kernel=tuple(w[:3]), strides=s, in_channels=x[-1] if x else 0, out_channels=w[-1] if w else 0)
    elif b in ("MAX_POOL_2D", "AVERAGE_POOL_2D", "L2_POOL_2D") and len(x) == 4 and len(y) == 4:
        k = (int(o.get("filter_height", 1)), int(o.get("filter_width", 1)))
        s = (int(o.get("stride_h", 1)), int(o.get("stride_w", 1)))
        pads = _same_pads((x[1], x[2]), (y[1], y[2]), k, s, (1, 1)) if o.get("padding") == 0 else (0, 0, 0, 0)
        kw.update(kernel=k, strides=s, dilations=(1, 1), pads=pads, in_channels=x[3], out_channels=y[3])
    if b in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV") and len(ins) > 1:
        wsum = _weight_abs_sum(g, ins[1], 3 if b == "DEPTHWISE_CONV_2D" else 0)
        if wsum is not None:
            attrs["weight_abs_sum"] = wsum
    if b in _CLIP:
        attrs["clip_min"], attrs["clip_max"] = _CLIP[b]
    if b in ("MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD") and len(ins) > 1:
        axes = r.const(ins[1])
        if axes is not None:
            attrs["axes"] = [int(a) for a in axes]
        attrs["keepdims"] = int(bool(o.get("keep_dims", False)))
    if b in ("RESIZE_NEAREST_NEIGHBOR", "RESIZE_BILINEAR"):
        attrs["mode"] = "nearest" if b == "RESIZE_NEAREST_NEIGHBOR" else "linear"
        if o.get("align_corners"):
            attrs["coordinate_transformation_mode"] = "align_corners"
        elif o.get("half_pixel_centers"):
            attrs["coordinate_transformation_mode"] = "half_pixel" if b == "RESIZE_BILINEAR" else "tf_half_pixel_for_nn"
        else:
            attrs["coordinate_transformation_mode"] = "asymmetric"
    if b in ("SOFTMAX", "LOG_SOFTMAX"):
        attrs["axis"] = -1
    if b == "TRANSPOSE" and len(ins) > 1:
        perm = r.const(ins[1])
        if perm is not None:
            attrs["perm"] = [int(p) for p in perm]
    if b in ("PAD", "PADV2", "MIRROR_PAD") and len(ins) > 1:
        p = r.const(ins[1])
        if p is not None:
            pairs = [p[i : i + 2] for i in range(0, len(p), 2)]
            attrs["pads_value"] = [int(a) for a, _ in pairs] + [int(c) for _, c in pairs]
        attrs["mode"] = "constant" if b != "MIRROR_PAD" else ("reflect" if o.get("mode", 0) == 0 else "symmetric")
        if b == "PADV2" and len(ins) > 2:
            val = r.const(ins[2])
            attrs["pad_constant"] = float(val[0]) if val else 0.0
    if b == "STRIDED_SLICE" and len(ins) > 3:
        steps = r.const(ins[3])
        if steps is not None:
            attrs["steps_value"] = [int(v) for v in steps]
            attrs["axes_value"] = list(range(len(steps)))
    if b == "CONCATENATION":
        attrs["axis"] = int(o.get("axis", 0))
    if b in ("ARG_MAX", "ARG_MIN") and len(ins) > 1:
        ax = r.const(ins[1])
        if ax:
            attrs["axis"] = int(ax[0])
    if b == "SPLIT" and len(ins) == 2:
        ax = r.const(ins[1])
        if ax:
            attrs["axis"] = int(ax[0])
    if b == "LEAKY_RELU":
        attrs["alpha"] = float(o.get("alpha", 0.0))
    act_outs = [t for t in outs if t >= 0]
    facts = NodeFacts(
        name=g.tensors[outs[0]].name if outs else f"{b}_{op.index}", op_type=onnx_op, accel=target.accelerator,
        target=target.name, fallback=target.fallback, precision=prec, in_shapes=tuple(r.shape(i) for i in ins),
        out_shapes=tuple(r.shape(t) for t in act_outs), const_inputs=const, attrs=attrs, layout="NHWC",
        quant_in=tuple(r.quant(i) for i in ins), quant_out=tuple(r.quant(t) for t in act_outs), **kw,
    )  # fmt: skip
    return facts, prec


def _macs(f: NodeFacts) -> int:
    out = f.out_shapes[0] if f.out_shapes else ()
    n_out = math.prod(out) if out and min(out) > 0 else 0
    b = f.attrs.get("tflite_builtin")
    if b in ("CONV_2D", "DEPTHWISE_CONV_2D", "CONV_3D") and f.kernel:
        per = math.prod(f.kernel) * (1 if b == "DEPTHWISE_CONV_2D" else max(f.in_channels // max(f.group, 1), 1))
        return n_out * per
    if b == "TRANSPOSE_CONV" and f.in_shapes and f.kernel:
        return math.prod(f.in_shapes[0]) * math.prod(f.kernel) * f.out_channels
    if b in ("FULLY_CONNECTED", "BATCH_MATMUL") and f.in_shapes and f.in_shapes[0]:
        return n_out * f.in_shapes[0][-1]
    return 0


def check_tflite_target(path: Path, target: TargetSpec, graph: Any | None = None) -> TargetReport:
    """Place every operator of the TFLite file at ``path`` on ``target``, with every failing rule."""
    g = graph if graph is not None else _read(path)
    producer = {t: op.index for op in g.ops for t in op.outputs}
    verdicts: dict[int, NodeVerdict] = {}
    absorbed = 0
    for op in g.ops:
        ins = [i for i in op.inputs if i >= 0]
        if ins and all(g.tensors[i].has_data for i in ins):
            absorbed += 1
            continue
        facts, prec = facts_of(g, op, target)
        spec = target.ops.get(facts.op_type) or target.ops.get(op.builtin)
        fails, _ = _judge(facts, spec, target)
        where = Placement.ACCELERATOR if not fails else Placement.FALLBACK if target.fallback else Placement.UNSUPPORTED
        verdicts[op.index] = NodeVerdict(
            name=facts.name, op_type=op.builtin, placement=where, precision=prec, macs=_macs(facts),
            maps_to=[], failures=fails,
        )  # fmt: skip
    return _report(g, target, verdicts, producer, absorbed)


def _report(g: Any, target: TargetSpec, verdicts: dict[int, NodeVerdict], producer: dict[int, int],
            absorbed: int) -> TargetReport:  # fmt: skip
    nodes = [verdicts[i] for i in sorted(verdicts)]
    partitions = 0
    prev: Placement | None = None
    for v in nodes:
        if v.placement == Placement.ACCELERATOR and prev != Placement.ACCELERATOR:
            partitions += 1
        prev = v.placement
    crossings: set[tuple[int, Placement]] = set()
    for idx, v in verdicts.items():
        for t in g.ops[idx].inputs:
            p = producer.get(t)
            if p is not None and p in verdicts and verdicts[p].placement != v.placement:
                crossings.add((t, v.placement))
    worst, advice = worst_and_advice(nodes)
    n_acc = sum(1 for v in nodes if v.placement == Placement.ACCELERATOR)
    moves = [v for v in nodes if TFLITE_TO_ONNX.get(v.op_type, v.op_type) in DATA_MOVEMENT or v.op_type == "SPLIT_V"]
    return TargetReport(
        target=target.name, description=target.description, accelerator=target.accelerator,
        fallback=target.fallback, runtime=target.runtime, spec_path=target.path,
        runnable=not any(v.placement == Placement.UNSUPPORTED for v in nodes), nodes=nodes, n_nodes=len(nodes),
        n_accelerated=n_acc, macs_total=sum(v.macs for v in nodes),
        macs_accelerated=sum(v.macs for v in nodes if v.placement == Placement.ACCELERATOR),
        partitions=partitions, copies=len(crossings), worst=worst, advice=advice, absorbed=absorbed,
        n_data_movement=len(moves),
        n_data_movement_accelerated=sum(1 for v in moves if v.placement == Placement.ACCELERATOR),
    )  # fmt: skip


def check_tflite(path: Path, targets: list[TargetSpec]) -> SupportReport:
    """Check one TFLite file against several targets (each independently)."""
    g = _read(path)
    if not g.ops:
        raise ModelError(f"{path}: the TFLite file has no operators; give a model with at least one op")
    return SupportReport(model=str(path), targets=[check_tflite_target(path, t, g) for t in targets])


def placements(report: TargetReport) -> list[bool]:
    """Per counted operator, whether it runs on the accelerator (for agreement tests and summaries)."""
    return [n.placement == Placement.ACCELERATOR for n in report.nodes]
