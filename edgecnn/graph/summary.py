"""ModelSummary: a shape trace of the graph with parameters, MACs, bytes moved and flags per layer.

MACs count multiply-accumulates: Conv, ConvTranspose, Gemm and MatMul count one per weight use;
AveragePool and GlobalAveragePool count one accumulate per window element; elementwise ops, MaxPool,
Concat and reshapes count none (they cost memory traffic, which ``bytes_read``/``bytes_written`` show).
Bytes are what the layer reads (activations and weights) and writes, at the tensors' own dtypes.
Arithmetic intensity = MACs / (bytes read + written): below ``MEMORY_BOUND_INTENSITY`` a layer is
limited by memory bandwidth on edge CPUs and NPUs, whatever its MAC count says.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import onnx

from edgecnn.graph.load import LoadedModel, default_opset, dims_of, graph_inputs, node_attr

SCHEMA_VERSION = 1

# MACs per byte moved below which a compute layer is memory-bound on typical edge hardware. A 3x3
# depthwise Conv on 32 channels at fp32 sits near 2; a 3x3 dense Conv near 50 or more. Edge CPUs and
# NPUs deliver far more MACs per second than bytes per second (roughly 10-100x), hence the threshold.
MEMORY_BOUND_INTENSITY = 4.0

# Ops outside the subset that most edge NPU/DSP compilers accept (Ethos-U Vela, Edge TPU, Hexagon HTP,
# RKNPU): control flow, dynamic-shape and sparse-indexing ops. A heuristic for a first look;
# `edgecnn check --target` gives the per-target verdict from each vendor's published operator list.
EDGE_RARE_OPS = frozenset(
    {
        "Loop", "If", "Scan", "NonZero", "NonMaxSuppression", "TopK", "Unique", "GatherND", "ScatterND",
        "ScatterElements", "Einsum", "LSTM", "GRU", "RNN", "Range", "CumSum", "RoiAlign", "GridSample",
        "Erf", "Gelu", "LayerNormalization", "Mod", "Where", "Expand", "ConstantOfShape", "Shape",
        "ReverseSequence", "SequenceAt", "SequenceConstruct", "SplitToSequence", "StringNormalizer",
    }
)  # fmt: skip

_COMPUTE_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul", "ConvInteger", "QLinearConv", "QLinearMatMul"})


@dataclass(frozen=True, kw_only=True)
class TensorInfo:
    name: str
    dtype: str
    shape: list[int | str]
    layout: str = ""


@dataclass(frozen=True, kw_only=True)
class LayerInfo:
    name: str
    op_type: str
    output_shape: list[int]
    params: int
    macs: int
    bytes_read: int
    bytes_written: int
    intensity: float
    flags: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class ModelSummary:
    path: str
    opset: int
    producer: str
    ir_version: int
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    layers: list[LayerInfo]
    total_params: int
    total_macs: int
    model_bytes: int
    weight_bytes: int
    peak_activation_bytes: int
    op_histogram: dict[str, int]
    warnings: list[str]

    def to_dict(self) -> dict[str, object]:
        from dataclasses import asdict

        return {"schema_version": SCHEMA_VERSION, **asdict(self)}


def dtype_name(elem_type: int) -> str:
    return onnx.helper.tensor_dtype_to_np_dtype(elem_type).name if elem_type else "undefined"


def _itemsize(elem_type: int) -> int:
    if not elem_type:
        return 0
    try:
        return onnx.helper.tensor_dtype_to_np_dtype(elem_type).itemsize
    except (KeyError, TypeError):
        return 1


def infer_layout(shape: list[int | str]) -> str:
    """NCHW or NHWC for a 4-D image-like tensor; '' when it is not one or cannot be told."""
    if len(shape) != 4 or not all(isinstance(d, int) for d in shape):
        return ""
    c_first, c_last = shape[1] in (1, 3, 4), shape[3] in (1, 3, 4)
    if c_first and not c_last:
        return "NCHW"
    if c_last and not c_first:
        return "NHWC"
    if c_first and c_last:
        return "NCHW" if shape[2] > shape[1] else "NHWC"
    return "NCHW"  # feature maps: ONNX convention


def _value_types(model: onnx.ModelProto) -> dict[str, tuple[int, list[int | str]]]:
    out: dict[str, tuple[int, list[int | str]]] = {}
    for vi in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        out[vi.name] = (vi.type.tensor_type.elem_type, dims_of(vi))
    for init in model.graph.initializer:
        out[init.name] = (init.data_type, list(init.dims))
    for node in model.graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    out[node.output[0]] = (a.t.data_type, list(a.t.dims))
    return out


def _static(shape: list[int | str]) -> bool:
    return all(isinstance(d, int) for d in shape)


def static_value_types(model: onnx.ModelProto) -> dict[str, tuple[int, list[int | str]]]:
    """``_value_types``, with the shapes that shape inference could not carry through a computed constant (a
    legacy export's reflect-Pad pads come from ConstantOfShape/Concat/Slice) taken from the model with its shape
    subgraphs folded; the node names stay the exporter's. Used for MACs and bytes (inspect, profile)."""
    shapes = _value_types(model)
    if all(_static(shapes.get(o, (0, ["?"]))[1]) for n in model.graph.node for o in n.output if o):
        return shapes
    from edgecnn.graph.passes import fold_static_shapes

    folded = _value_types(fold_static_shapes(model)[0])
    shapes.update({k: v for k, v in folded.items() if _static(v[1])})
    return shapes


def _numel(shape: list[int | str]) -> int:
    return math.prod(int(d) for d in shape) if all(isinstance(d, int) for d in shape) else 0


def node_macs(node: onnx.NodeProto, shapes: dict[str, tuple[int, list[int | str]]]) -> int:
    """Multiply-accumulates of one node, from its inferred input and output shapes."""

    def shp(name: str) -> list[int | str]:
        return shapes.get(name, (0, []))[1]

    op = node.op_type
    out = shp(node.output[0]) if node.output else []
    if op in ("Conv", "ConvInteger", "QLinearConv"):
        w_idx = 3 if op == "QLinearConv" else 1
        w = shp(node.input[w_idx])
        return _numel(out) * (_numel(w[1:]) if w else 0)  # per output: Cin/group * kh * kw
    if op == "ConvTranspose":
        w = shp(node.input[1])  # (Cin, Cout/group, kh, kw)
        return _numel(shp(node.input[0])) * (_numel(w[1:]) if w else 0)
    if op == "Gemm":
        a = shp(node.input[0])  # unknown when shape inference could not follow (an LSTM's declared rank)
        k = (a[0] if node_attr(node, "transA", 0) else a[-1]) if a else 0
        return _numel(out) * int(k) if isinstance(k, int) else 0
    if op in ("MatMul", "MatMulInteger", "QLinearMatMul"):
        a = shp(node.input[0])
        k = a[-1] if a else 0
        return _numel(out) * int(k) if isinstance(k, int) else 0
    if op == "AveragePool":
        ks = node_attr(node, "kernel_shape", [])
        return _numel(out) * math.prod(ks)  # type: ignore[arg-type]
    if op == "GlobalAveragePool":
        return _numel(shp(node.input[0]))
    return 0


def _flags(
    node: onnx.NodeProto, shapes: dict[str, tuple[int, list[int | str]]], intensity: float, macs: int
) -> list[str]:
    flags: list[str] = []
    if node.op_type == "Conv":
        group = int(node_attr(node, "group", 1))  # type: ignore[arg-type]
        x = shapes.get(node.input[0], (0, []))[1]
        if group > 1 and len(x) >= 2 and x[1] == group:
            flags.append("depthwise")
    if node.op_type in _COMPUTE_OPS and macs and intensity < MEMORY_BOUND_INTENSITY:
        flags.append("memory-bound")
    if node.op_type in EDGE_RARE_OPS:
        flags.append("edge-rare-op")
    return flags


def summarize(loaded: LoadedModel) -> ModelSummary:
    """Build the ModelSummary of a validated model (all shapes known)."""
    model = loaded.model
    shapes = static_value_types(model)
    inits = {i.name: i for i in model.graph.initializer}
    const_outputs = {n.output[0] for n in model.graph.node if n.op_type == "Constant"}
    producers = {o: n for n in model.graph.node for o in n.output}

    layers: list[LayerInfo] = []
    warnings: list[str] = []
    for idx, node in enumerate(model.graph.node):
        if node.op_type == "Constant":
            continue
        name = node.name or f"{node.op_type}_{idx}"
        read = sum(_numel(shapes.get(i, (0, []))[1]) * _itemsize(shapes.get(i, (0, []))[0]) for i in node.input if i)
        written = sum(
            _numel(shapes.get(o, (0, []))[1]) * _itemsize(shapes.get(o, (0, []))[0]) for o in node.output if o
        )
        params = sum(  # shape and index tensors (int64: Pad's pads, Reshape's shape) are not parameters
            _numel(list(inits[i].dims))
            for i in node.input
            if i in inits and inits[i].data_type != onnx.TensorProto.INT64
        )
        macs = node_macs(node, shapes)
        moved = read + written
        intensity = macs / moved if moved else 0.0
        flags = _flags(node, shapes, intensity, macs)
        if node.op_type == "BatchNormalization" and node.input[0] in producers:
            prev = producers[node.input[0]]
            if prev.op_type in ("Conv", "ConvTranspose", "Gemm"):
                flags.append("bn-not-folded")
        out_shape = shapes.get(node.output[0], (0, []))[1] if node.output else []
        layers.append(
            LayerInfo(
                name=name,
                op_type=node.op_type,
                output_shape=[int(d) if isinstance(d, int) else -1 for d in out_shape],
                params=params,
                macs=macs,
                bytes_read=read,
                bytes_written=written,
                intensity=round(intensity, 3),
                flags=flags,
            )
        )

    n_dw_mb = sum(1 for lay in layers if "memory-bound" in lay.flags)
    if n_dw_mb:
        mb_macs = sum(lay.macs for lay in layers if "memory-bound" in lay.flags)
        total = sum(lay.macs for lay in layers) or 1
        warnings.append(
            f"{n_dw_mb} memory-bound compute layer(s) (< {MEMORY_BOUND_INTENSITY:g} MACs/byte, "
            f"{100 * mb_macs / total:.1f}% of MACs): low FLOPs does not mean fast; their latency is set by memory traffic"
        )
    n_bn = sum(1 for lay in layers if "bn-not-folded" in lay.flags)
    if n_bn:
        warnings.append(
            f"{n_bn} BatchNormalization node(s) follow a Conv/Gemm unfolded: fold them before deployment "
            "(edgecnn quantize folds them; many NPU compilers reject or slow down on standalone BN)"
        )
    rare = sorted({lay.op_type for lay in layers if "edge-rare-op" in lay.flags})
    if rare:
        warnings.append(
            f"op(s) many edge accelerators lack: {', '.join(rare)}; run `edgecnn check --target` for the verdict"
        )

    weight_bytes = sum(_numel(list(t.dims)) * _itemsize(t.data_type) for t in inits.values())
    # Shape and index tensors (int64) are not parameters.
    total_params = sum(_numel(list(t.dims)) for t in inits.values() if t.data_type != onnx.TensorProto.INT64)
    return ModelSummary(
        path=str(loaded.path),
        opset=default_opset(model),
        producer=f"{model.producer_name} {model.producer_version}".strip(),
        ir_version=model.ir_version,
        inputs=[_tinfo(vi) for vi in graph_inputs(model)],
        outputs=[_tinfo(vi) for vi in model.graph.output],
        layers=layers,
        total_params=total_params,
        total_macs=sum(lay.macs for lay in layers),
        model_bytes=loaded.path.stat().st_size,
        weight_bytes=weight_bytes,
        peak_activation_bytes=peak_activation_bytes(model, shapes, set(inits) | const_outputs),
        op_histogram=dict(Counter(n.op_type for n in model.graph.node if n.op_type != "Constant").most_common()),
        warnings=warnings,
    )


def _tinfo(vi: onnx.ValueInfoProto) -> TensorInfo:
    shape = dims_of(vi)
    return TensorInfo(
        name=vi.name, dtype=dtype_name(vi.type.tensor_type.elem_type), shape=shape, layout=infer_layout(shape)
    )


def peak_activation_bytes(
    model: onnx.ModelProto, shapes: dict[str, tuple[int, list[int | str]]], weights: set[str]
) -> int:
    """Largest sum of live activation tensors over the graph's (topological) node order.

    A tensor is live from the node that produces it (graph inputs: from the start) to its last
    consumer (graph outputs: to the end). Weights are excluded; they are counted in ``weight_bytes``.
    """

    def size(name: str) -> int:
        et, shp = shapes.get(name, (0, []))
        return _numel(shp) * _itemsize(et)

    nodes = list(model.graph.node)
    last_use: dict[str, int] = {}
    for i, n in enumerate(nodes):
        for name in n.input:
            if name and name not in weights:
                last_use[name] = i
    for o in model.graph.output:
        last_use[o.name] = len(nodes)
    live = {vi.name: size(vi.name) for vi in graph_inputs(model)}
    peak = sum(live.values())
    for i, n in enumerate(nodes):
        for o in n.output:
            if o and o not in weights:
                live[o] = size(o)
        peak = max(peak, sum(live.values()))
        for name in [k for k in live if last_use.get(k, -1) <= i]:
            del live[name]
    return int(peak)
