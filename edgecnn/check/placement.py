"""Placement of every node on a target, with every failing rule, and the partitions that result.

Q/DQ handling: in a QDQ model (``QuantizeLinear``/``DequantizeLinear`` around ops, as onnxruntime.quantization
writes it) an op whose activation inputs all come from DequantizeLinear and whose float outputs all feed
QuantizeLinear is a quantized op in the DQ input's integer type; its Q/DQ nodes are absorbed into it (a
converter fuses them) and are not counted as nodes of their own. Converter no-ops (``passthrough`` in the
spec, e.g. Identity, Dropout) and nodes whose inputs are all constant (constant-folded) are absorbed too.

Partitions: counted nodes in graph (topological) order form runs of the same placement; each run on the
accelerator is one delegate partition, and each tensor that crosses between placements is a copy.
"""

from __future__ import annotations

import dataclasses
import functools
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgecnn.check.no_builtin import no_builtin_entry, no_tflite_builtin
from edgecnn.check.rules import (
    CONSTRAINTS,
    FixKind,
    NodeFacts,
    Verdict,
    op_not_listed,
    op_unsupported,
    precision,
    variant_of,
)
from edgecnn.check.spec import Format, OpSpec, TargetSpec
from edgecnn.graph.external import scalar_of
from edgecnn.graph.load import LoadedModel, default_opset, dims_of
from edgecnn.graph.passes import fold_static_shapes, gelu_erf_chains
from edgecnn.graph.summary import node_macs

SCHEMA_VERSION = 1
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
WORST_N = 5
# Activations a converter fuses into the op before them (TFLite fused_activation_function, QNN/ORT QDQ
# node units): DQ -> Conv -> Clip(0, 6) -> Q is one quantized Conv with a ReLU6, as PyTorch exports it.
FUSED_ACTIVATIONS = frozenset({"Relu", "Clip"})
# Ops that move or reshape data without arithmetic (no MACs): counted beside the MAC share, since a graph
# can be "100% of MACs on the accelerator" with half of its nodes copying tensors on the CPU.
DATA_MOVEMENT = frozenset({"Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Concat", "Split", "Slice",
                           "Gather", "Pad", "DepthToSpace", "SpaceToDepth", "Expand", "Tile", "Cast"})  # fmt: skip


class Placement(StrEnum):
    ACCELERATOR = "accelerator"
    FALLBACK = "fallback"  # runs on the target's fallback device (usually the host CPU)
    # nothing on the target runs the node, so neither does the model: the target has no fallback device, or (on
    # a TFLite target) no TFLite builtin computes the node (check.no_builtin), so no CPU kernel runs it either
    UNSUPPORTED = "unsupported"
    ABSORBED = "absorbed"  # fused or folded by the converter (Q/DQ, Identity, constant subgraphs)


@dataclass(frozen=True, kw_only=True)
class NodeVerdict:
    name: str
    op_type: str
    placement: Placement
    precision: str
    macs: int
    maps_to: list[str] = field(default_factory=list)
    failures: list[Verdict] = field(default_factory=list)
    absorbed: list[str] = field(default_factory=list)  # Q/DQ nodes fused into this one


@dataclass(frozen=True, kw_only=True)
class Advice:
    fix_kind: FixKind
    nodes: int
    example: str


@dataclass(frozen=True, kw_only=True)
class TargetReport:
    target: str
    description: str
    accelerator: str
    fallback: str
    runtime: str
    spec_path: str
    runnable: bool
    nodes: list[NodeVerdict]
    n_nodes: int
    n_accelerated: int
    macs_total: int
    macs_accelerated: int
    partitions: int
    copies: int
    worst: list[NodeVerdict]
    advice: list[Advice]
    absorbed: int
    n_data_movement: int = 0  # Transpose/Reshape/Concat/... nodes (no MACs) counted in n_nodes
    n_data_movement_accelerated: int = 0
    checked_as: str = ""  # e.g. "int8": a float model judged as `edgecnn quantize --target` would write it

    @property
    def node_share(self) -> float:
        return self.n_accelerated / self.n_nodes if self.n_nodes else 1.0

    @property
    def mac_share(self) -> float:
        return self.macs_accelerated / self.macs_total if self.macs_total else self.node_share

    @property
    def all_accelerated(self) -> bool:
        return self.n_accelerated == self.n_nodes

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["node_share"] = round(self.node_share, 4)
        d["mac_share"] = round(self.mac_share, 4)
        d["worst"] = [w.name for w in self.worst]
        return d


@dataclass(frozen=True, kw_only=True)
class SupportReport:
    model: str
    targets: list[TargetReport]
    folded: dict[str, int] = field(default_factory=dict)  # op type -> nodes folded at the fixed input shapes

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, "model": self.model, "folded": dict(self.folded),
                "targets": [t.to_dict() for t in self.targets]}  # fmt: skip

    @property
    def any_fallback(self) -> bool:
        return any(not t.all_accelerated for t in self.targets)


# ---- graph facts --------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class _Graph:
    nodes: list[onnx.NodeProto]
    names: list[str]
    types: dict[str, tuple[int, list[int | str]]]
    consts: dict[str, onnx.TensorProto]  # initializers and Constant outputs
    const_names: set[str]  # also DQ(initializer) outputs and constant-folded outputs
    producer: dict[str, int]
    consumers: dict[str, list[int]]
    graph_outputs: set[str]
    opset: int


def _graph(model: onnx.ModelProto) -> _Graph:
    g = model.graph
    types: dict[str, tuple[int, list[int | str]]] = {}
    for vi in [*g.input, *g.value_info, *g.output]:
        types[vi.name] = (vi.type.tensor_type.elem_type, dims_of(vi))
    consts: dict[str, onnx.TensorProto] = {i.name: i for i in g.initializer}
    for i in g.initializer:
        types[i.name] = (i.data_type, list(i.dims))
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    consts[n.output[0]] = a.t
                    types[n.output[0]] = (a.t.data_type, list(a.t.dims))
    const_names = set(consts)
    producer: dict[str, int] = {}
    consumers: dict[str, list[int]] = defaultdict(list)
    for idx, n in enumerate(g.node):
        for o in n.output:
            producer[o] = idx
        for i in n.input:
            if i:
                consumers[i].append(idx)
        if n.op_type != "Constant" and all((not i) or i in const_names for i in n.input) and n.input:
            const_names.update(o for o in n.output if o)  # constant subgraph (incl. DQ of a weight)
    names = [n.name or f"{n.op_type}_{i}" for i, n in enumerate(g.node)]
    return _Graph(
        nodes=list(g.node), names=names, types=types, consts=consts, const_names=const_names, producer=producer,
        consumers=dict(consumers), graph_outputs={o.name for o in g.output}, opset=default_opset(model),
    )  # fmt: skip


_FLOAT_TYPES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16", onnx.TensorProto.DOUBLE: "float64",
                onnx.TensorProto.BFLOAT16: "bfloat16"}  # fmt: skip


def _dtype(elem: int) -> str:
    if elem in _FLOAT_TYPES:
        return _FLOAT_TYPES[elem]
    try:
        return helper.tensor_dtype_to_np_dtype(elem).name
    except (KeyError, TypeError, ValueError):
        return "undefined"


def _shape(gr: _Graph, name: str) -> tuple[int, ...]:
    dims = gr.types.get(name, (0, []))[1]
    return tuple(d if isinstance(d, int) else -1 for d in dims)


def _only_quantize(gr: _Graph, out: str) -> list[int] | None:
    """The QuantizeLinear nodes that consume ``out`` when every consumer is one, else None."""
    cons = gr.consumers.get(out, [])
    if not cons or out in gr.graph_outputs or any(gr.nodes[c].op_type != "QuantizeLinear" for c in cons):
        return None
    return list(cons)


def _fused_activation(gr: _Graph, out: str) -> tuple[int, list[int]] | None:
    """``out`` feeds only a Relu/Clip whose output feeds only QuantizeLinear: (activation, its Q nodes)."""
    cons = gr.consumers.get(out, [])
    if len(cons) != 1 or out in gr.graph_outputs or gr.nodes[cons[0]].op_type not in FUSED_ACTIVATIONS:
        return None
    act = gr.nodes[cons[0]]
    if act.op_type == "Clip":
        lo = _const_value(gr, act.input[1]) if len(act.input) > 1 and act.input[1] else None
        hi = _const_value(gr, act.input[2]) if len(act.input) > 2 and act.input[2] else None
        if (lo, hi) not in ((0.0, 6.0), (0.0, None), (-1.0, 1.0)):
            return None  # only ReLU, ReLU6 and ReLU_N1_TO_1 are fused activations
    q = _only_quantize(gr, act.output[0])
    return (cons[0], q) if q is not None else None


# Ops whose int8 TFLite kernels write a fixed output grid (export.to_tflite._FIXED_INT8): after a DQ, the export
# writes them int8 and a DEQUANTIZE after, even when the QDQ model has no Q on their output (a trailing Softmax)
FIXED_GRID_OPS = frozenset({"Softmax", "Sigmoid", "Tanh"})


def _precision(gr: _Graph, idx: int, tflite: bool = False) -> tuple[str, list[int]]:
    """The precision a node computes in, and the Q/DQ nodes (and a fused Relu/Clip) it absorbs. ``tflite``: the
    target runs what `edgecnn export` writes, where a fixed-grid op after a DQ is int8 (FIXED_GRID_OPS)."""
    n = gr.nodes[idx]
    acts = [i for i in n.input if i and i not in gr.const_names]
    float_acts = [i for i in acts if gr.types.get(i, (0,))[0] in _FLOAT_TYPES]
    dq_in = [
        gr.producer[i]
        for i in float_acts
        if i in gr.producer and gr.nodes[gr.producer[i]].op_type == "DequantizeLinear"
    ]
    weight_dq = [
        gr.producer[i] for i in n.input
        if i and i in gr.const_names and i in gr.producer and gr.nodes[gr.producer[i]].op_type == "DequantizeLinear"
    ]  # fmt: skip
    float_outs = [o for o in n.output if o and gr.types.get(o, (0,))[0] in _FLOAT_TYPES]
    q_out: list[int] = []
    outs_quantized = True
    for o in float_outs:
        q = _only_quantize(gr, o)
        fused = _fused_activation(gr, o) if q is None and n.op_type not in FUSED_ACTIVATIONS else None
        if q is not None:
            q_out += q
        elif fused is not None:
            q_out += [fused[0], *fused[1]]
        else:
            outs_quantized = False
    fixed_grid = tflite and n.op_type in FIXED_GRID_OPS and not q_out
    if float_acts and len(dq_in) == len(float_acts) and (outs_quantized or fixed_grid):
        q_elem = gr.types.get(gr.nodes[dq_in[0]].input[0], (0,))[0]
        return _dtype(q_elem), [*dq_in, *weight_dq, *q_out]
    if float_acts:
        return _dtype(gr.types[float_acts[0]][0]), []
    if acts:
        return _dtype(gr.types.get(acts[0], (0,))[0]), []
    return "float32", []


def _attrs(n: onnx.NodeProto) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a in n.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def _const_value(gr: _Graph, name: str) -> Any:
    t = gr.consts.get(name)
    if t is None:
        return None
    return numpy_helper.to_array(t).tolist()


# The LiteRT quantization spec restricts these ops' inputs and output to one grid, so a converter puts their
# operands on the output grid (a requantize each, which the accelerators run); their ONNX Q/DQ scales do not
# reach the TFLite op. (edgecnn export does so: int8 Max/Min/Concat operands on the output grid.)
_REQUANTIZED_BY_CONVERTER = frozenset({"Max", "Min", "Concat"})
_WEIGHT_OUT_AXIS = {"Conv": 0, "ConvTranspose": 1, "MatMul": -1}


def _weight_abs_sum(gr: _Graph, n: onnx.NodeProto) -> int | None:
    """Largest per-output-channel sum of |int8 weight - zero point| (Vela's weight-sum limit), or None.

    From the int8 initializer behind a weight DequantizeLinear; for a float weight, as symmetric per-channel
    int8 quantization would store it (the largest |w| of each channel becomes 127).
    """
    if n.op_type not in ("Conv", "ConvTranspose", "Gemm", "MatMul") or len(n.input) < 2 or not n.input[1]:
        return None
    axis = _WEIGHT_OUT_AXIS.get(n.op_type, 0 if _attrs(n).get("transB", 0) else 1)
    try:
        p = gr.producer.get(n.input[1])
        if p is not None and gr.nodes[p].op_type == "DequantizeLinear":
            dq = gr.nodes[p]
            t = gr.consts.get(dq.input[0])
            if t is None:
                return None
            q = numpy_helper.to_array(t).astype(np.int64)
            zp = np.asarray(_const_value(gr, dq.input[2]) if len(dq.input) > 2 and dq.input[2] else 0, np.int64)
            if zp.ndim == 1 and q.ndim > 1:
                shape = [1] * q.ndim
                shape[int(_attrs(dq).get("axis", 1)) % q.ndim] = -1
                zp = zp.reshape(shape)
            a = np.abs(q - zp)
        else:
            t = gr.consts.get(n.input[1])
            if t is None:
                return None
            w = np.abs(numpy_helper.to_array(t).astype(np.float32))
            if w.ndim < 2:
                return None
            others = tuple(i for i in range(w.ndim) if i != axis % w.ndim)
            m = np.maximum(w.max(axis=others, keepdims=True), np.float32(1e-30))
            a = np.round(w / m * 127.0)
        if a.ndim < 2:
            return None
        others = tuple(i for i in range(a.ndim) if i != axis % a.ndim)
        return int(a.sum(axis=others).max())
    except (ValueError, TypeError, OSError):  # external or odd weights: the rule passes
        return None


def _facts(gr: _Graph, idx: int, target: TargetSpec, prec: str) -> NodeFacts:
    n = gr.nodes[idx]
    attrs = _attrs(n)
    wsum = _weight_abs_sum(gr, n)
    if wsum is not None:
        attrs["weight_abs_sum"] = wsum
    ins = tuple(_shape(gr, i) for i in n.input if i)
    outs = tuple(_shape(gr, o) for o in n.output if o)
    kw: dict[str, Any] = {}
    op = n.op_type
    x = ins[0] if ins else ()
    if op in ("Conv", "ConvTranspose", "MaxPool", "AveragePool", "LpPool"):
        w = _shape(gr, n.input[1]) if op.startswith("Conv") and len(n.input) > 1 else ()
        kernel = tuple(attrs.get("kernel_shape") or (w[2:] if len(w) > 2 else ()))
        nsp = len(kernel)
        kw.update(
            kernel=kernel,
            strides=tuple(attrs.get("strides") or (1,) * nsp),
            dilations=tuple(attrs.get("dilations") or (1,) * nsp),
            pads=tuple(attrs.get("pads") or (0,) * (2 * nsp)),
            group=int(attrs.get("group", 1)),
            in_channels=x[1] if len(x) > 1 else 0,
            out_channels=(w[0] if op == "Conv" and w else (outs[0][1] if outs and len(outs[0]) > 1 else 0)),
        )
        auto = str(attrs.get("auto_pad", "NOTSET"))
        if auto.startswith("SAME") and op != "ConvTranspose" and len(x) == 2 + nsp and outs and len(outs[0]) == 2 + nsp:
            tot = [max((outs[0][2 + i] - 1) * kw["strides"][i] + (kernel[i] - 1) * kw["dilations"][i] + 1 - x[2 + i], 0)
                   for i in range(nsp)]  # fmt: skip
            lo = [t // 2 if auto == "SAME_UPPER" else t - t // 2 for t in tot]
            kw["pads"] = (*lo, *(t - low for t, low in zip(tot, lo, strict=True)))
    elif op in ("GlobalAveragePool", "GlobalMaxPool") and len(x) > 2:
        kw.update(kernel=tuple(x[2:]), strides=(1,) * (len(x) - 2))
    if op == "Clip":
        lo = _const_value(gr, n.input[1]) if len(n.input) > 1 and n.input[1] else attrs.get("min")
        hi = _const_value(gr, n.input[2]) if len(n.input) > 2 and n.input[2] else attrs.get("max")
        attrs["clip_min"] = float(lo) if lo is not None else None
        attrs["clip_max"] = float(hi) if hi is not None else None
    if op == "Pad":
        pads = _const_value(gr, n.input[1]) if len(n.input) > 1 and n.input[1] else attrs.get("pads")
        axes = _const_value(gr, n.input[3]) if len(n.input) > 3 and n.input[3] else None
        if pads is not None and axes is not None and x:
            # opset 18: pads list only the given axes; expand to begin/end pads over every axis.
            rank, k = len(x), len(axes)
            full = [0] * (2 * rank)
            for j, a in enumerate(axes):
                full[int(a) % rank], full[int(a) % rank + rank] = int(pads[j]), int(pads[j + k])
            pads = full
        attrs["pads_value"] = list(pads) if pads is not None else None
        value = _const_value(gr, n.input[2]) if len(n.input) > 2 and n.input[2] else attrs.get("value", 0.0)
        attrs["pad_constant"] = float(value) if isinstance(value, (int, float)) else None
    if op == "Slice":
        if gr.opset >= 10:
            axes = _const_value(gr, n.input[3]) if len(n.input) > 3 and n.input[3] else None
            steps = _const_value(gr, n.input[4]) if len(n.input) > 4 and n.input[4] else None
        else:
            axes, steps = attrs.get("axes"), None
        starts = _const_value(gr, n.input[1]) if gr.opset >= 10 and len(n.input) > 1 else attrs.get("starts")
        if axes is None and starts is not None:
            axes = list(range(len(starts)))
        if steps is not None:
            attrs["steps_value"] = [int(v) for v in steps]
            attrs["axes_value"] = [int(a) for a in (axes or range(len(steps)))]
    if op.startswith("Reduce") and "axes" not in attrs and len(n.input) > 1 and n.input[1]:
        axes = _const_value(gr, n.input[1])
        if axes is not None:
            attrs["axes"] = list(axes)
    if op == "Pow" and len(n.input) > 1:
        e = _const_value(gr, n.input[1])
        attrs["exponent"] = float(e) if isinstance(e, (int, float)) else None  # a constant scalar, else None
    if op in ("Softmax", "LogSoftmax") and "axis" not in attrs:
        attrs["axis"] = -1 if gr.opset >= 13 else 1
    return NodeFacts(
        name=gr.names[idx], op_type=op, accel=target.accelerator, target=target.name, precision=prec,
        fallback=target.fallback,
        in_shapes=ins, out_shapes=outs, const_inputs=tuple((not i) or i in gr.const_names for i in n.input),
        attrs=attrs, quant_in=() if op in _REQUANTIZED_BY_CONVERTER else tuple(_quant_in(gr, i) for i in n.input if i),
        quant_out=tuple(_quant_out(gr, o) for o in n.output if o), **kw,
    )  # fmt: skip


def _scalar_q(gr: _Graph, node: onnx.NodeProto) -> tuple[float, int] | None:
    """(scale, zero point) of a per-tensor QuantizeLinear/DequantizeLinear, else None."""
    scale = _const_value(gr, node.input[1]) if len(node.input) > 1 else None
    zp = _const_value(gr, node.input[2]) if len(node.input) > 2 and node.input[2] else 0
    if isinstance(scale, list) or isinstance(zp, list) or scale is None:
        return None
    return (float(scale), int(zp))


def _quant_in(gr: _Graph, name: str) -> tuple[float, int] | None:
    p = gr.producer.get(name)
    if p is None or gr.nodes[p].op_type != "DequantizeLinear":
        return None
    return _scalar_q(gr, gr.nodes[p])


def _quant_out(gr: _Graph, name: str) -> tuple[float, int] | None:
    fused = _fused_activation(gr, name)
    if fused is not None:
        name = gr.nodes[fused[0]].output[0]
    qs = [c for c in gr.consumers.get(name, []) if gr.nodes[c].op_type == "QuantizeLinear"]
    return _scalar_q(gr, gr.nodes[qs[0]]) if qs else None


def _cite(target: TargetSpec, sid: str, cite: str = "") -> str:
    s = target.sources.get(sid)
    if s is None:
        return sid
    return f"{s.url} ({s.version})" + (f", {cite}" if cite else "")


# The builtin a 2-D one becomes with a 3-D kernel, where the TFLite schema has one (there is no MAX_POOL_3D nor
# AVERAGE_POOL_3D: a 3-D max window is REDUCE_WINDOW, a 3-D mean window has no builtin, edgecnn.check.no_builtin).
_BUILTIN_3D = {"CONV_2D": "CONV_3D", "DEPTHWISE_CONV_2D": "CONV_3D", "MAX_POOL_2D": "REDUCE_WINDOW"}
# ... and with dilations > 1 (the options of MAX_POOL_2D and TRANSPOSE_CONV have no dilation field).
_BUILTIN_DILATED = {"MAX_POOL_2D": "REDUCE_WINDOW", "TRANSPOSE_CONV": "CONV_3D_TRANSPOSE"}


def _judge(f: NodeFacts, spec: OpSpec | None, target: TargetSpec) -> tuple[list[Verdict], list[str]]:
    """Every failing verdict for one node (never stops at the first), and the target ops it maps to."""
    fails: list[Verdict] = []
    gen_src = _cite(target, target.source)
    lim_src = _cite(target, target.limits_source, target.limits_cite)
    constraints: dict[str, tuple[Any, str]] = {k: (v, lim_src) for k, v in target.limits.items()}
    maps_to: list[str] = []
    if spec is None:
        fails.append(dataclasses.replace(op_not_listed(f), source=gen_src))
    else:
        var = spec.variants.get(variant_of(f) or "")
        eff = var or spec
        src = _cite(target, eff.source, eff.cite or spec.cite)
        maps_to = list(eff.tflite or spec.tflite) if target.format == Format.TFLITE else []
        if f.kernel and any(b.endswith("_2D") for b in maps_to) and len(f.kernel) > 2:
            # A 3-D Conv/pool is not CONV_2D/*_POOL_2D: unless the spec says otherwise, the builtin does not apply.
            constraints["spatial_dims"] = ([1, 2], src)
            maps_to = [_BUILTIN_3D[b] for b in maps_to if b in _BUILTIN_3D]
        if f.dilations and max(f.dilations) > 1:
            # no dilation in Pool2DOptions / TransposeConvOptions: a dilated one is another builtin
            maps_to = [_BUILTIN_DILATED.get(b, b) for b in maps_to]
        # A variant table is a supported configuration unless it says `supported = false`.
        if not (var.supported if var is not None else spec.supported):
            fails.append(dataclasses.replace(op_unsupported(f, eff.note or spec.note), source=src))
        for k, v in spec.constraints.items():
            constraints[k] = (v, src)
        if var is not None:
            for k, v in var.constraints.items():
                constraints[k] = (v, src)
    if "dtypes" not in constraints:
        v = precision(f, [str(p) for p in target.precisions])
        if not v.ok:
            fails.append(dataclasses.replace(v, source=gen_src))
    for key, (value, src) in constraints.items():
        v = CONSTRAINTS[key].rule(f, value)
        if not v.ok:
            fails.append(dataclasses.replace(v, source=src))
    return fails, maps_to


@dataclass(frozen=True, kw_only=True)
class Prepared:
    """A model ready for placement: static shape subgraphs folded at the fixed input shapes."""

    path: str
    model: onnx.ModelProto
    folded: dict[str, int]

    @functools.cached_property
    def for_quantize(self) -> onnx.ModelProto:
        """The model as `edgecnn quantize` prepares it (graph.passes.prepare: a copy, constants and BatchNorms
        folded), made once for all the targets a model is checked against."""
        from edgecnn.graph.passes import prepare

        return prepare(self.model)


def _kept_float_by_quantize(prepared: Prepared, target: TargetSpec) -> frozenset[str]:
    """Names of the nodes `edgecnn quantize --target` leaves in float (no integer form: LayerNormalization,
    the exact GELU chain, a BatchNorm no Conv absorbs, a MatMul of two activations...): a float model checked as
    the target's integer type judges those in float, as they will run. Unnamed nodes are not matched (the plan
    keys them by position in its own prepared graph)."""
    from edgecnn.export.to_tflite import _INT8_OPS
    from edgecnn.quantize.qdq import GELU_REASON, INTEGER_POLICY, plan

    model = prepared.model
    try:
        the_plan = plan(prepared.for_quantize, target.float_only_ops, quantize_outputs=True, policy=INTEGER_POLICY)
    except Exception:  # an estimate: without it every node is judged as integer, as before
        return frozenset()
    # A node the plan leaves float between a DQ and a Q still runs in integer where the export has an int8 form
    # for it (a PRelu between two quantized convs is an int8 PRELU): only ops without one stay float, and the
    # exact GELU chain, which is written as one float GELU.
    op_of = {n.name: n.op_type for n in model.graph.node if n.name}
    return frozenset(
        k for k, why in the_plan.kept_float.items() if k in op_of and (why == GELU_REASON or op_of[k] not in _INT8_OPS)
    )


def prepare_for_check(loaded: LoadedModel) -> Prepared:
    """Fold what a vendor converter folds at fixed input shapes (Shape/Size of static tensors and the
    constant shape arithmetic after them), so those nodes are not reported as fallbacks."""
    model, folded = fold_static_shapes(loaded.model)
    return Prepared(path=str(loaded.path), model=model, folded=dict(sorted(folded.items())))


def worst_and_advice(nodes: list[NodeVerdict]) -> tuple[list[NodeVerdict], list[Advice]]:
    """The nodes off the accelerator that cost most (MACs, then failures), and one piece of advice per kind of
    fix, most nodes first, with the most common concrete fix as its example: the same for ONNX and TFLite."""
    off = [v for v in nodes if v.placement != Placement.ACCELERATOR]
    worst = sorted(off, key=lambda v: (-v.macs, -len(v.failures), v.name))[:WORST_N]
    by_kind: dict[FixKind, list[Verdict]] = defaultdict(list)
    nodes_by_kind: dict[FixKind, set[str]] = defaultdict(set)
    for v in off:
        for fl in v.failures:
            if fl.fix_kind is not None:
                by_kind[fl.fix_kind].append(fl)
                nodes_by_kind[fl.fix_kind].add(v.name)
    advice = [
        Advice(fix_kind=k, nodes=len(nodes_by_kind[k]), example=Counter(f.fix for f in fl).most_common(1)[0][0])
        for k, fl in sorted(by_kind.items(), key=lambda kv: -len(nodes_by_kind[kv[0]]))
    ]
    return worst, advice


def _gelu_units(gr: _Graph, absorbed_into: dict[int, int]) -> dict[int, list[int]]:
    """The exact GELU chains (graph.passes.gelu_erf_chains: Div by sqrt 2, Erf, Add 1, Mul by x and by 0.5, as
    exporters write it before opset 20): each is judged as one Gelu at its last node, the others absorbed into it
    (``absorbed_into``), because every converter to a target that lists Gelu writes the chain as one GELU (the
    LiteRT converters, edgecnn's included, QNN): judged op by op, its Erf looked like a fallback the exported
    model does not have. Returns each last node's index -> the indices of the nodes absorbed into it."""
    index = {id(n): i for i, n in enumerate(gr.nodes)}
    units: dict[int, list[int]] = {}
    for chain in gelu_erf_chains(gr.nodes, lambda name: scalar_of(gr.consts.get(name)), gr.graph_outputs):
        end = index[id(chain.nodes[-1])]
        units[end] = [index[id(n)] for n in chain.nodes[:-1]]
        for i in units[end]:
            absorbed_into.setdefault(i, end)
    return units


def _gelu_chain_erfs(gr: _Graph) -> frozenset[int]:
    """Indices of the Erf nodes inside exact GELU chains: not a standalone Erf on a TFLite target even where the
    target does not list Gelu (the converter writes the chain as one GELU, which the fallback device runs)."""
    index = {id(n): i for i, n in enumerate(gr.nodes)}
    chains = gelu_erf_chains(gr.nodes, lambda name: scalar_of(gr.consts.get(name)), gr.graph_outputs)
    return frozenset(index[id(n)] for c in chains for n in c.nodes if n.op_type == "Erf")


def check_target(loaded: LoadedModel | Prepared, target: TargetSpec) -> TargetReport:
    """Place every node of ``loaded`` on ``target``; gather every failing rule per node.

    A float model on a target that computes only in integers is judged as ``edgecnn quantize --target``
    would write it (every float op in the target's activation dtype), so that the verdicts show the
    structural fallbacks rather than "requantize" on every node; ``checked_as`` says so.
    """
    prepared = loaded if isinstance(loaded, Prepared) else prepare_for_check(loaded)
    gr = _graph(prepared.model)
    n_total = len(gr.nodes)
    placement: list[Placement | None] = [None] * n_total
    absorbed_into: dict[int, int] = {}
    verdicts: dict[int, NodeVerdict] = {}
    is_float_model = not any(n.op_type in QDQ_OPS for n in gr.nodes)
    checked_as = (
        target.quant.activation_dtype if target.requires_quantization and target.quant and is_float_model else ""
    )
    gelu_units = _gelu_units(gr, absorbed_into) if "Gelu" in target.ops else {}
    stays_float = _kept_float_by_quantize(prepared, target) if checked_as else frozenset()
    tflite = target.format is Format.TFLITE
    # where the target lists Gelu, the chains' Erfs are absorbed into their Gelu unit and never judged alone
    gelu_erfs = (
        _gelu_chain_erfs(gr) if tflite and not gelu_units and any(n.op_type == "Erf" for n in gr.nodes) else frozenset()
    )
    for idx, n in enumerate(gr.nodes):
        if n.op_type == "Constant" or n.op_type in QDQ_OPS or idx in absorbed_into:
            continue
        if n.input and all((not i) or i in gr.const_names for i in n.input):
            placement[idx] = Placement.ABSORBED  # constant-folded by the converter
            continue
        op_type = "Gelu" if idx in gelu_units else n.op_type
        spec = target.ops.get(op_type)
        if spec is not None and spec.passthrough:
            placement[idx] = Placement.ABSORBED
            continue
        prec, qdq = _precision(gr, idx, tflite=tflite)
        if (
            checked_as
            and prec in ("float32", "float16")
            and n.op_type not in target.float_only_ops
            and gr.names[idx] not in stays_float
        ):
            prec = checked_as
        facts = _facts(gr, idx, target, prec)
        fails, maps_to = _judge(facts, spec, target)
        # A configuration no TFLite builtin computes cannot run on a TFLite target, fallback device or not.
        no_builtin = no_builtin_entry(facts) if tflite and idx not in gelu_erfs else None
        if no_builtin is not None:
            fails, maps_to = [no_tflite_builtin(facts, no_builtin), *fails], []
        where = (
            Placement.ACCELERATOR if not fails
            else Placement.FALLBACK if target.fallback and no_builtin is None
            else Placement.UNSUPPORTED
        )  # fmt: skip
        placement[idx] = where
        for q in qdq:
            absorbed_into.setdefault(q, idx)
        verdicts[idx] = NodeVerdict(
            name=gr.names[idx], op_type=op_type, placement=where, precision=prec,
            macs=node_macs(n, gr.types), maps_to=maps_to, failures=fails,
            absorbed=[*(gr.names[i] for i in gelu_units.get(idx, ())), *(gr.names[q] for q in qdq)],
        )  # fmt: skip
    counted = sorted(verdicts)
    # Partitions: runs of equal placement over counted nodes in topological order.
    partitions = 0
    prev: Placement | None = None
    for idx in counted:
        p = verdicts[idx].placement
        if p == Placement.ACCELERATOR and prev != Placement.ACCELERATOR:
            partitions += 1
        prev = p
    copies = _copies(gr, verdicts, placement)
    nodes = [verdicts[i] for i in counted]
    worst, advice = worst_and_advice(nodes)
    n_acc = sum(1 for v in nodes if v.placement == Placement.ACCELERATOR)
    moves = [v for v in nodes if v.op_type in DATA_MOVEMENT]
    return TargetReport(
        target=target.name, description=target.description, accelerator=target.accelerator,
        fallback=target.fallback, runtime=target.runtime, spec_path=target.path,
        runnable=not any(v.placement == Placement.UNSUPPORTED for v in nodes),
        nodes=nodes, n_nodes=len(nodes), n_accelerated=n_acc,
        macs_total=sum(v.macs for v in nodes),
        macs_accelerated=sum(v.macs for v in nodes if v.placement == Placement.ACCELERATOR),
        partitions=partitions, copies=copies, worst=worst, advice=advice,
        absorbed=sum(1 for i, n in enumerate(gr.nodes) if n.op_type != "Constant" and i not in verdicts),
        n_data_movement=len(moves),
        n_data_movement_accelerated=sum(1 for v in moves if v.placement == Placement.ACCELERATOR),
        checked_as=checked_as,
    )  # fmt: skip


def _copies(gr: _Graph, verdicts: dict[int, NodeVerdict], placement: list[Placement | None]) -> int:
    """Tensors that cross between accelerator and fallback (each is a copy), looking through absorbed nodes."""
    memo: dict[int, set[int]] = {}

    def sources(idx: int) -> set[int]:
        """Counted nodes feeding ``idx`` through absorbed ones."""
        if idx in memo:
            return memo[idx]
        memo[idx] = set()
        out: set[int] = set()
        for i in gr.nodes[idx].input:
            if not i or i in gr.const_names or i not in gr.producer:
                continue
            p = gr.producer[i]
            out |= {p} if p in verdicts else sources(p)
        memo[idx] = out
        return out

    crossings: set[tuple[int, Placement]] = set()
    for idx, v in verdicts.items():
        for s in sources(idx):
            if verdicts[s].placement != v.placement:
                crossings.add((s, v.placement))
    return len(crossings)


def check_model(loaded: LoadedModel, targets: list[TargetSpec]) -> SupportReport:
    """Check one model against several targets (each independently), folding its shape subgraphs once."""
    prepared = prepare_for_check(loaded)
    return SupportReport(
        model=str(loaded.path), targets=[check_target(prepared, t) for t in targets], folded=prepared.folded
    )
