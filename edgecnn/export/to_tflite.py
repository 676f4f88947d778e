"""ONNX (float, or QDQ INT8 as ``edgecnn quantize`` writes it) -> TFLite, a pure function over protos and bytes.

How it works (README "Export to TFLite"):

1. **Prepare** at fixed shape: every input must have static dims; ``Shape``/``Size`` of a tensor whose shape
   is known becomes a constant, then constant folding (``graph.passes``) removes the shape subgraph
   (Gather, Unsqueeze, Concat of shape values, ...); Identity/Dropout go; Conv -> BatchNormalization folds.
2. **Layout**: each ONNX tensor becomes a value that knows whether its TFLite tensor is stored NHWC
   (4-D activations produced by Conv, pooling, Resize, ... and 4-D image inputs) or in ONNX order. Ops
   that have an NHWC form (Conv, pooling, Resize, Pad, Mean, Concat/Split/Slice/Softmax axes, broadcast
   constants) are rewritten in place; a ``TRANSPOSE`` is inserted only where ONNX semantics need the NCHW
   order (e.g. Reshape of a 4-D map with H, W > 1), and is a ``RESHAPE`` when the permutation does not move
   memory (Flatten after global pooling).
3. **INT8 from QDQ**: the tensor between a QuantizeLinear and its DequantizeLinear becomes *one* int8 TFLite
   tensor with exactly the QDQ scale and zero point (uint8 zero point z -> int8 z - 128, same scale: the
   same real values). An op whose activation inputs all come from DequantizeLinear and whose output goes
   to QuantizeLinear runs as an int8 TFLite op; weights are int8 per-channel on the output-channel axis
   after the NHWC transpose (CONV_2D: dim 0 of OHWI; DEPTHWISE_CONV_2D: dim 3 of 1HWC); biases int32 with
   scale = input scale x weight scale. Shape-only ops (MaxPool, Reshape, Transpose, Resize nearest, Slice,
   Split, Pad, ...) keep their input's scale; Sigmoid, Softmax and Tanh use TFLite's fixed int8 output
   grids (1/256, 1/256, 1/128). Any other op left in float by the QDQ model runs in float between
   DEQUANTIZE and QUANTIZE, and the export's ``notes`` say so.
4. **Float32 / float16**: a float ONNX model becomes a float32 TFLite model; float16 stores the float
   constants as FP16 followed by DEQUANTIZE (the standard TFLite float16-weights form).

An ONNX op or attribute with no faithful TFLite form raises :class:`UnsupportedOpError` (exit 2) naming the
node, the op and the nearest supported alternative: never a silently different model.

TFLite facts used here (google-ai-edge/LiteRT 2.3.0, ``tflite/converter/schema/schema.fbs`` and the
kernels in ``tflite/kernels/``): SOFTMAX and LOGISTIC int8 outputs are scale 1/256 zero point -128, TANH
1/128 zero point 0; int8 conv/FC weights are symmetric (zero point 0); SOFTMAX works on the last axis;
padding SAME puts the extra row/column at the end.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgecnn.errors import BadInputError, ModelError
from edgecnn.export.tflite_writer import TFLiteBuilder
from edgecnn.fsutil import temp_dir
from edgecnn.graph.external import externalized_copy, to_array
from edgecnn.graph.load import (
    dims_of,
    dynamic_inputs_message,
    graph_inputs,
    infer_shapes_inplace,
    is_dynamic,
    node_attr,
)
from edgecnn.graph.passes import (
    _fold_constants,
    _remove_identities,
    _sums_as_adds,
    absorb_bn,
    drop_absorbed_bns,
    foldable_conv_bn,
    gelu_erf_chains,
    pads_on_every_axis,
    remove_unused_initializers,
)
from edgecnn.preprocess import Layout, PreprocessSpec, spec_from_dict

PRECISIONS = ("auto", "float32", "float16", "int8")
IO_DTYPES = ("float32", "int8", "uint8")
METADATA_PREPROCESS = "edgecnn.preprocess"
METADATA_IO = "edgecnn.io"

_P = (0, 2, 3, 1)  # NCHW -> NHWC: stored axis j holds logical axis _P[j]
_INV_P = (0, 3, 1, 2)  # logical axis a sits at stored axis _INV_P[a]

SUPPORTED_OPS = (
    "Abs", "Add", "And", "ArgMax", "ArgMin", "AveragePool", "BatchNormalization", "Cast", "Ceil", "Clip", "Concat",
    "Conv", "ConvTranspose", "DepthToSpace", "DequantizeLinear", "Div", "Elu", "Equal", "Exp", "Expand", "Flatten",
    "Floor", "Gather", "Gelu", "Gemm", "GlobalAveragePool", "GlobalMaxPool", "Greater", "GreaterOrEqual",
    "HardSigmoid", "HardSwish", "InstanceNormalization", "LRN", "LayerNormalization", "LeakyRelu", "Less", "LessOrEqual", "Log", "LogSoftmax",
    "MatMul", "Max", "MaxPool", "Min", "Mul", "Neg", "Not", "Or", "PRelu", "Pad", "Pow", "QuantizeLinear",
    "Reciprocal", "ReduceL2", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum", "Relu", "Reshape",
    "Resize", "Round", "Sigmoid", "Slice", "Softmax", "SpaceToDepth", "Split", "Sqrt", "Squeeze", "Sub", "Sum", "Tanh",
    "Tile", "Transpose", "Unsqueeze", "Upsample", "Where",
)  # fmt: skip
# Nearest supported alternative for ops people commonly meet in CNN exports.
_NEAREST: dict[str, str] = {
    "GatherElements": "Gather with constant indices, or Slice (TFLite has no per-element gather along an axis)",
    "Shape": "a fixed input shape (--input-shape), so the shape subgraph folds away",
    "Einsum": "MatMul / Gemm",
    "ConstantOfShape": "a constant initializer (fix the input shape)",
    "NonMaxSuppression": "run NMS outside the model, on its raw boxes and scores",
    "TopK": "post-processing outside the model",
    "ScatterND": "Concat of Slices (write the updated tensor from its parts)",
    "Range": "a constant initializer (fix the input shape)",
    "LSTM": "export the CNN up to the recurrent head and run the LSTM/GRU outside the model",
    "GRU": "export the CNN up to the recurrent head and run the LSTM/GRU outside the model",
}

# Ops whose TFLite int8 kernels assume the output on the input's grid (they move or pick values, or average
# them without rescaling: AVERAGE_POOL_2D, RESIZE_BILINEAR); a different downstream grid is a requantize after.
_PASS_OPS = frozenset({"MaxPool", "GlobalMaxPool", "ReduceMax", "Reshape", "Flatten", "Squeeze", "Unsqueeze",
                       "Transpose", "Slice", "Split", "Pad", "Relu", "Identity", "Resize", "AveragePool",
                       "Gather", "Expand", "Tile", "SpaceToDepth", "DepthToSpace", "Upsample", "ReduceMin"})  # fmt: skip
_LOOK_THROUGH = frozenset({"Split", "Resize", "MaxPool", "AveragePool", "Reshape", "Flatten", "Squeeze", "Unsqueeze",
                           "Transpose", "Slice", "Gather", "Expand", "Tile", "SpaceToDepth", "DepthToSpace",
                           "Upsample"})  # fmt: skip
_NHWC_NATIVE = frozenset({"Conv", "ConvTranspose", "MaxPool", "AveragePool", "Resize", "GlobalAveragePool"})
_FIXED_INT8: dict[str, tuple[float, int]] = {"Sigmoid": (1 / 256, -128), "Softmax": (1 / 256, -128),
                                            "Tanh": (1 / 128, 0)}  # fmt: skip
_INT8_OPS = _PASS_OPS | frozenset(_FIXED_INT8) | frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Sub",
    "Mul", "Concat", "GlobalAveragePool", "ReduceMean", "HardSwish", "LeakyRelu", "Div", "Clip", "Max", "Min",
    "HardSigmoid", "PRelu", "Pow"})  # fmt: skip
_KIND_DTYPE = {"f": "float32", "q": "int8", "b": "bool", "i": "int32", "l": "int64"}
_FUSABLE = frozenset({"Conv", "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "AveragePool", "MaxPool", "Concat"})
_FUSED_TFL = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "SUB", "MUL", "DIV",
                        "AVERAGE_POOL_2D", "MAX_POOL_2D", "CONCATENATION"})  # fmt: skip


class UnsupportedOpError(BadInputError):
    """An ONNX node the TFLite converter cannot convert faithfully (exit 2)."""


@dataclass(frozen=True, kw_only=True)
class TFLiteExport:
    """The converted model and what the converter did to get it."""

    data: bytes
    precision: str
    io_dtype: str
    input_layout: str
    folded: tuple[str, ...]
    notes: tuple[str, ...]


def onnx_to_tflite(
    model: onnx.ModelProto,
    *,
    precision: str = "auto",
    io_dtype: str = "float32",
    base_dir: Path | None = None,
    preprocess: PreprocessSpec | None = None,
) -> TFLiteExport:
    """Convert ``model`` (fixed input shapes) to a TFLite flatbuffer.

    ``precision``: ``auto`` (int8 when the model has QuantizeLinear/DequantizeLinear, else float32),
    ``float32``, ``float16`` (FP16 weights) or ``int8`` (needs a QDQ model). ``io_dtype``: ``float32``
    (QUANTIZE at the input, DEQUANTIZE at the outputs of an int8 model), ``int8`` or ``uint8`` (quantized
    I/O, as Ethos-U and Edge TPU need). ``base_dir``: where the model's external weights live.
    ``preprocess``: the input's PreprocessSpec; written into the metadata with layout NHWC (default: the
    one ``edgecnn quantize`` stamped into the model's metadata, when present).
    """
    if precision not in PRECISIONS:
        raise BadInputError(f"precision {precision!r} is not valid; choose one of {', '.join(PRECISIONS)}")
    if io_dtype not in IO_DTYPES:
        raise BadInputError(f"io dtype {io_dtype!r} is not valid; choose one of {', '.join(IO_DTYPES)}")
    has_qdq = any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)
    if precision == "auto":
        precision = "int8" if has_qdq else "float32"
    if precision == "int8" and not has_qdq:
        raise BadInputError(
            "precision int8 needs a QDQ model (QuantizeLinear/DequantizeLinear nodes with calibrated scales); "
            "this model is float: quantize it first (edgecnn quantize MODEL --calib DIR) or use float32/float16"
        )
    if precision in ("float32", "float16") and has_qdq:
        raise BadInputError(
            f"precision {precision} from a QDQ model would drop its calibrated scales; convert the float model "
            "for float32/float16, or use precision int8 (or auto) for this one"
        )
    if io_dtype != "float32" and precision != "int8":
        raise BadInputError(f"io dtype {io_dtype} needs an int8 model; a {precision} model has float32 I/O")
    if preprocess is None:
        preprocess = _spec_from_metadata(model)

    before = [_node_label(n, i) for i, n in enumerate(model.graph.node)]
    with temp_dir("tflite") as tmp:
        if not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
            # weights out of the proto while it is transformed (graph.external): one copy less at the peak
            model, base_dir = externalized_copy(model, Path(tmp), "weights.bin"), Path(tmp)
        m = _prepare(model, base_dir)
        conv = _Converter(
            m,
            base_dir=base_dir,
            int8=precision == "int8",
            fp16=precision == "float16",
            io=io_dtype,
            spec_layout=preprocess.layout.value if preprocess is not None else None,
        )
        conv.run()
    after = {n.name for n in m.graph.node}
    folded = [b for b in before if b not in after and b not in conv.absorbed]
    folded += sorted(conv.absorbed)

    input_layout = "NHWC" if any(v == "NHWC" for v in conv.input_layouts.values()) else "NCHW"
    if preprocess is not None and input_layout == "NCHW":
        preprocess = None  # the spec describes an image input; this model's 4-D input is not one
    io_meta = {
        "schema_version": 1,
        "inputs": [{"name": k, "layout": v, **conv.io_quant.get(k, {})} for k, v in conv.input_layouts.items()],
        "outputs": [{"name": k, **conv.io_quant.get(k, {})} for k in conv.output_names],
        "precision": precision,
        "io_dtype": io_dtype,
    }
    conv.b.add_metadata(METADATA_IO, json.dumps(io_meta, sort_keys=True).encode())
    if preprocess is not None:
        # dtype stays the spec's (float): an int8/uint8 input is that tensor quantized with the scale and zero
        # point of the TFLite input (also in edgecnn.io); a cast to int8 would be silently wrong
        spec = replace(preprocess, layout=Layout.NHWC if input_layout == "NHWC" else preprocess.layout)
        conv.b.add_metadata(METADATA_PREPROCESS, spec.to_json().encode())
    return TFLiteExport(
        data=conv.b.to_bytes(release=True),
        precision=precision,
        io_dtype=io_dtype,
        input_layout=input_layout,
        folded=tuple(folded),
        notes=tuple(dict.fromkeys(conv.notes)),
    )


def read_preprocess(data: bytes) -> PreprocessSpec | None:
    """The PreprocessSpec stored in a TFLite file written by :func:`onnx_to_tflite`, or None."""
    from edgecnn.export.tflite_writer import read_tflite

    raw = read_tflite(data).metadata.get(METADATA_PREPROCESS)
    if not raw:
        return None
    return spec_from_dict(json.loads(raw), Path(f"<tflite metadata {METADATA_PREPROCESS}>"))


# ---------------------------------------------------------------------------------------------------------
def _node_label(n: onnx.NodeProto, i: int) -> str:
    return n.name or f"{n.op_type}_{i}"


def _spec_from_metadata(model: onnx.ModelProto) -> PreprocessSpec | None:
    for p in model.metadata_props:
        if p.key == METADATA_PREPROCESS and p.value.strip() not in ("", "{}"):
            try:
                return spec_from_dict(json.loads(p.value), Path("<model metadata edgecnn.preprocess>"))
            except (ValueError, BadInputError):
                return None
    return None


def _prepare(model: onnx.ModelProto, base_dir: Path | None) -> onnx.ModelProto:
    """Fixed shapes checked, shape subgraphs folded, BN folded, identities removed, shapes inferred."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for i, n in enumerate(m.graph.node):
        if not n.name:
            n.name = f"{n.op_type}_{i}"
    dynamic = [vi for vi in graph_inputs(m) if is_dynamic(vi)]
    if dynamic:
        raise ModelError(dynamic_inputs_message(dynamic, "TFLite export needs a fixed input shape: "))
    _fold_quantized_shape_inputs(m, base_dir)
    del m.graph.value_info[:]  # recomputed at the fixed shape (exporters and quantizers leave symbolic or stale ones)
    try:
        infer_shapes_inplace(m)
        for _ in range(8):
            if not _shapes_to_constants(m):
                break
            _fold_constants(m, base_dir)
            infer_shapes_inplace(m)
        # the passes of graph.passes.prepare, in place on our copy (no second copy of the weights)
        m = _fold_batchnorm_lazily(_remove_identities(_fold_constants(m, base_dir)), base_dir)
        _sums_as_adds(m)  # opset 7/8 residual Sums: TFLite's ADD (ADD_N has no int8 kernel)
        infer_shapes_inplace(m)
        pads_on_every_axis(m, base_dir)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as e:
        raise ModelError(
            f"shape inference failed while preparing the TFLite export: {str(e).splitlines()[0]}"
        ) from None
    return m


_SHAPE_INPUTS = {"Resize": (1, 2, 3), "Upsample": (1,), "Reshape": (1,), "Expand": (1,), "Tile": (1,)}


def _fold_quantized_shape_inputs(m: onnx.ModelProto, base_dir: Path | None) -> None:
    """A Resize scale (or Reshape/Expand/Tile shape) that a quantizer routed through QuantizeLinear ->
    DequantizeLinear of a constant (ORT's quantize_static does this to Resize scales) becomes that constant as
    written, so that shape inference knows the output shape; a DequantizeLinear of an integer initializer is
    evaluated."""
    consts = [n for n in m.graph.node if n.op_type == "Constant" and node_attr(n, "value") is not None]
    if consts:  # Constant nodes with a tensor value are initializers (exporters write both)
        for n in consts:
            m.graph.initializer.append(
                numpy_helper.from_array(numpy_helper.to_array(node_attr(n, "value")), n.output[0])
            )
        keep = [n for n in m.graph.node if not (n.op_type == "Constant" and node_attr(n, "value") is not None)]
        del m.graph.node[:]
        m.graph.node.extend(keep)
    inits = {t.name: t for t in m.graph.initializer}
    producer = {o: n for n in m.graph.node for o in n.output}
    drop: set[str] = set()
    for n in m.graph.node:
        for k in _SHAPE_INPUTS.get(n.op_type, ()):
            if k >= len(n.input) or not n.input[k]:
                continue
            dq = producer.get(n.input[k])
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producer.get(dq.input[0])
            src = q.input[0] if q is not None and q.op_type == "QuantizeLinear" else dq.input[0]
            if src not in inits or any(i and i not in inits for i in (*dq.input[1:], *(q.input[1:] if q else ()))):
                continue
            arr = to_array(inits[src], base_dir)
            if q is None or q.op_type != "QuantizeLinear":
                arr = _q_dq(arr, [to_array(inits[i], base_dir) for i in dq.input[1:] if i], "dq")
            # else: the constant as written; a quantized scale (2/255 steps: 1 -> 0.996) would change the shape
            new = f"{n.input[k]}/folded"
            if new not in inits:
                t = numpy_helper.from_array(arr.astype(np.float32) if arr.dtype.kind == "f" else arr, new)
                m.graph.initializer.append(t)
                inits[new] = t
            n.input[k] = new
            drop.add(dq.name)
    if drop:
        used = {i for n in m.graph.node if n.name not in drop for i in n.input}
        keep = [n for n in m.graph.node if n.name not in drop or any(o in used for o in n.output)]
        del m.graph.node[:]
        m.graph.node.extend(keep)


def _q_dq(x: np.ndarray, params: list[np.ndarray], how: str) -> np.ndarray:
    """Per-tensor DequantizeLinear of a constant."""
    scale = np.float32(np.asarray(params[0]).reshape(()))
    zp = np.asarray(params[1]).reshape(()) if len(params) > 1 else np.zeros((), np.uint8)
    return ((x.astype(np.int32) - int(zp)).astype(np.float32) * scale).astype(np.float32)


_BN_SCALE = "edgecnn.bn_scale"  # metadata key prefix on the prepared copy: conv name -> per-channel factor


def _fold_batchnorm_lazily(m: onnx.ModelProto, base_dir: Path | None) -> onnx.ModelProto:
    """Conv -> BatchNormalization becomes one Conv without writing new weights into the proto: the folded bias
    (small) is a new initializer, the per-output-channel factor gamma / sqrt(var + eps) is kept (as a small
    initializer named ``<conv>/bn_scale``) and applied when the converter reads the weights, once. Which pairs
    fold, and the arithmetic, come from ``graph.passes.foldable_conv_bn`` (as for ``quantize``'s folding); the
    weights are never held twice."""
    inits = {t.name: t for t in m.graph.initializer}
    absorbed: set[str] = set()
    for conv, bn, factor, bias in foldable_conv_bn(m, base_dir):
        b_name, s_name = f"{conv.name}/bias_bnfold", f"{conv.name}/bn_scale"
        if s_name in inits:
            continue
        dtype = onnx.helper.tensor_dtype_to_np_dtype(inits[conv.input[1]].data_type)
        m.graph.initializer.append(numpy_helper.from_array(bias.astype(dtype), b_name))
        m.graph.initializer.append(numpy_helper.from_array(factor, s_name))
        inits[s_name] = m.graph.initializer[-1]
        absorb_bn(conv, bn, b_name)
        absorbed.add(bn.output[0])
    drop_absorbed_bns(m, absorbed)
    scales = [t for t in m.graph.initializer if t.name.endswith("/bn_scale")]
    m = remove_unused_initializers(m)
    m.graph.initializer.extend(scales)  # read by the converter, not by a node
    return m


def _shape_map(m: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {}
    for vi in [*m.graph.input, *m.graph.value_info, *m.graph.output]:
        if not is_dynamic(vi):
            out[vi.name] = tuple(int(d) for d in dims_of(vi))
    for t in m.graph.initializer:
        out[t.name] = tuple(int(d) for d in t.dims)
    return out


def _shapes_to_constants(m: onnx.ModelProto) -> bool:
    """Replace Shape/Size of a statically shaped tensor by a constant; True when something changed."""
    shapes = _shape_map(m)
    keep, changed = [], False
    for n in m.graph.node:
        if n.op_type in ("Shape", "Size") and n.input[0] in shapes:
            s = np.array(shapes[n.input[0]], np.int64)
            if n.op_type == "Size":
                value = np.array(int(np.prod(s)), np.int64)
            else:
                start = node_attr(n, "start", 0)
                end = node_attr(n, "end", None)
                value = s[start:end]
            m.graph.initializer.append(numpy_helper.from_array(value, n.output[0]))
            changed = True
        else:
            keep.append(n)
    if changed:
        del m.graph.node[:]
        m.graph.node.extend(keep)
    return changed


def _same_pads(in_hw: Sequence[int], k: Sequence[int], strides: Sequence[int], dil: Sequence[int]) -> list[int]:
    """The explicit pads [t, l, b, r] of SAME_UPPER (TFLite's SAME): the extra one at the bottom/right."""
    out: list[tuple[int, int]] = []
    for i in range(2):
        size = -(-in_hw[i] // strides[i])
        total = max((size - 1) * strides[i] + (k[i] - 1) * dil[i] + 1 - in_hw[i], 0)
        out.append((total // 2, total - total // 2))
    return [out[0][0], out[1][0], out[0][1], out[1][1]]


def _is_nchw_image(shape: Sequence[int], spec_layout: str | None) -> bool:
    """Whether a graph input is an NCHW image whose TFLite input becomes NHWC: the PreprocessSpec says so, or
    without one, dim 1 looks like channels (1, 3 or 4) and dim 3 does not."""
    if len(shape) != 4:
        return False
    if spec_layout is not None:
        return spec_layout == "NCHW"
    return shape[1] in (1, 3, 4) and shape[3] not in (1, 3, 4)


def _memory_noop(stored_shape: Sequence[int], perm: Sequence[int]) -> bool:
    """True when transposing ``stored_shape`` by ``perm`` keeps the element order (only size-1 axes move)."""
    moved = [p for p in perm if stored_shape[p] != 1]
    return moved == sorted(moved)


@dataclass
class _QP:
    scale: float
    zp: int  # int8 zero point

    def same(self, other: _QP | None) -> bool:
        return other is not None and np.float32(self.scale) == np.float32(other.scale) and self.zp == other.zp


@dataclass
class _Val:
    """One ONNX tensor: its logical (ONNX) shape, TFLite representations and int8 encoding."""

    name: str
    shape: tuple[int, ...]
    qp: _QP | None = None
    reps: dict[tuple[str, bool], int] = field(default_factory=dict)  # (kind "f"|"q", stored NHWC) -> tensor

    @property
    def nhwc(self) -> bool:
        return next(iter(self.reps))[1]


@dataclass
class _ConstDQ:
    q: np.ndarray
    scale: np.ndarray
    zp: np.ndarray
    axis: int

    def real(self) -> np.ndarray:
        if self.scale.size == 1:
            return ((self.q.astype(np.float64) - self.zp.reshape(())) * self.scale.reshape(())).astype(np.float32)
        shape = [1] * self.q.ndim
        shape[self.axis] = -1
        return ((self.q.astype(np.float64) - self.zp.reshape(shape)) * self.scale.reshape(shape)).astype(np.float32)


class _Converter:
    def __init__(
        self, m: onnx.ModelProto, *, base_dir: Path | None, int8: bool, fp16: bool, io: str, spec_layout: str | None
    ) -> None:
        self.m = m
        self.spec_layout = spec_layout
        self.base_dir = base_dir
        self.int8 = int8
        self.fp16 = fp16
        self.io = io
        self.b = TFLiteBuilder(description="edgecnn onnx_to_tflite")
        self.shapes = _shape_map(m)
        self.inits = {t.name: t for t in m.graph.initializer}
        self._const_cache: dict[str, np.ndarray] = {}
        self._made: set[str] = set()
        self.cdq: dict[str, _ConstDQ] = {}
        self.vals: dict[str, _Val] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in m.graph.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.graph_outputs = [o.name for o in m.graph.output]
        self.fused: dict[str, str] = {}  # node name -> TFLite fused activation
        self.absorbed: set[str] = set()
        self.notes: list[str] = []
        self.input_layouts: dict[str, str] = {}
        self.io_quant: dict[str, dict[str, object]] = {}
        self.output_names: list[str] = []
        self._tensor_cache: dict[tuple[str, str], int] = {}

    # -- constants ---------------------------------------------------------------------------------
    def is_const(self, name: str) -> bool:
        return name in self.inits or name in self.cdq or name in self._made

    def add_const(self, name: str, arr: np.ndarray) -> None:
        """A constant made by the converter (folded weights), read back with :meth:`const`."""
        self._made.add(name)
        self._const_cache[name] = np.asarray(arr, np.float32) if np.asarray(arr).dtype.kind == "f" else arr

    def const(self, name: str) -> np.ndarray:
        """The real (float, or integer for int tensors) value of a constant, dequantized if it has a DQ."""
        if name in self.cdq:
            return self.cdq[name].real()
        if name in self._const_cache:
            return self._const_cache[name]
        arr = to_array(self.inits[name], self.base_dir)
        if arr.nbytes <= 4096:  # small constants are read repeatedly (shapes, scales); weights once
            self._const_cache[name] = arr
        return arr

    def const_tensor(self, name: str, arr: np.ndarray, dtype: str | None = None) -> int:
        """A constant TFLite tensor; float constants become FP16 + DEQUANTIZE in float16 mode."""
        arr = np.asarray(arr)
        dtype = dtype or ("float32" if arr.dtype.kind == "f" else "int32")
        if dtype == "float32" and self.fp16 and arr.size > 1:
            h = self.b.add_tensor(f"{name}/fp16", arr.shape, "float16", data=arr.astype(np.float16))
            f = self.b.add_tensor(name, arr.shape, "float32")
            self.b.add_op("DEQUANTIZE", [h], [f])
            return f
        return self.b.add_tensor(name, arr.shape, dtype, data=arr.astype(dtype))

    def int_tensor(self, name: str, values: Sequence[int]) -> int:
        key = (name, repr(list(values)))
        if key not in self._tensor_cache:
            arr = np.asarray(list(values), np.int32)
            self._tensor_cache[key] = self.b.add_tensor(name, arr.shape, "int32", data=arr)
        return self._tensor_cache[key]

    # -- activations and layout ----------------------------------------------------------------------
    def new_val(self, name: str, shape: Sequence[int], kind: str, nhwc: bool, qp: _QP | None = None) -> _Val:
        stored = [shape[i] for i in _P] if nhwc else list(shape)
        if kind == "q":
            assert qp is not None
            idx = self.b.add_tensor(name, stored, "int8", scale=[qp.scale], zero_point=[qp.zp])
        else:
            idx = self.b.add_tensor(name, stored, _KIND_DTYPE[kind])
        v = _Val(name=name, shape=tuple(int(d) for d in shape), qp=qp, reps={(kind, nhwc): idx})
        self.vals[name] = v
        return v

    def stored_shape(self, v: _Val, nhwc: bool) -> list[int]:
        return [v.shape[i] for i in _P] if nhwc else list(v.shape)

    def act(self, name: str, kind: str, nhwc: bool | None = None) -> int:
        """Tensor index of activation ``name`` as ``kind`` ("f" float32 / "q" int8) in the given layout."""
        v = self.vals.get(name)
        if v is None:
            raise ModelError(f"tensor '{name}' is used before it is produced (graph not in topological order?)")
        if nhwc is None:
            nhwc = v.nhwc
        if nhwc and len(v.shape) != 4:
            nhwc = False
        if (kind, nhwc) in v.reps:
            return v.reps[(kind, nhwc)]
        if (kind, not nhwc) in v.reps:
            src_nhwc = not nhwc
            src = v.reps[(kind, src_nhwc)]
            # stored(target) axis j = stored(src) axis perm[j]
            perm = list(_P) if nhwc else list(_INV_P)
            sshape = self.stored_shape(v, src_nhwc)
            dst_shape = self.stored_shape(v, nhwc)
            out = self._like(v, kind, dst_shape, f"{name}/{'nhwc' if nhwc else 'nchw'}")
            if _memory_noop(sshape, perm):
                self.b.add_op("RESHAPE", [src, self.int_tensor("shape", dst_shape)], [out], {"new_shape": dst_shape})
            else:
                self.b.add_op("TRANSPOSE", [src, self.int_tensor("perm", perm)], [out])
                self.notes.append(
                    f"TRANSPOSE to {'NHWC' if nhwc else 'ONNX (NCHW) order'} for '{name}': "
                    f"{'an NHWC op consumes it' if nhwc else 'an op or output needs the ONNX element order'}"
                )
            v.reps[(kind, nhwc)] = out
            return out
        # other kind: convert in whichever layout exists, then fix the layout
        if kind not in ("f", "q") or not any(k in ("f", "q") for k, _ in v.reps):
            have = next(iter(v.reps))[0]
            raise ModelError(f"tensor '{name}' is {_KIND_DTYPE[have]}; an op here needs it as {_KIND_DTYPE[kind]}")
        other = "q" if kind == "f" else "f"
        have_nhwc = (other, nhwc) in v.reps
        src_layout = nhwc if have_nhwc else (not nhwc)
        src = v.reps[(other, src_layout)]
        shape = self.stored_shape(v, src_layout)
        if kind == "f":
            out = self.b.add_tensor(f"{name}/dequantized", shape, "float32")
            self.b.add_op("DEQUANTIZE", [src], [out])
        else:
            if v.qp is None:
                raise ModelError(f"tensor '{name}' has no quantization parameters; it cannot be int8")
            out = self.b.add_tensor(f"{name}/int8", shape, "int8", scale=[v.qp.scale], zero_point=[v.qp.zp])
            self.b.add_op("QUANTIZE", [src], [out])
        v.reps[(kind, src_layout)] = out
        return self.act(name, kind, nhwc)

    def _like(self, v: _Val, kind: str, shape: Sequence[int], name: str) -> int:
        if kind == "q":
            assert v.qp is not None
            return self.b.add_tensor(name, shape, "int8", scale=[v.qp.scale], zero_point=[v.qp.zp])
        return self.b.add_tensor(name, shape, _KIND_DTYPE[kind])

    def alias(self, name: str, src: str) -> None:
        self.vals[name] = self.vals[src]

    # -- driver -------------------------------------------------------------------------------------
    def run(self) -> None:
        g = self.m.graph
        self._collect_const_dq()
        self._match_gelu()
        self._fuse_activations()
        for vi in graph_inputs(self.m):
            self._input(vi)
        for n in g.node:
            if n.name in self._skip:
                continue
            if n.op_type == "QuantizeLinear":
                self._quantize(n)
            elif n.op_type == "DequantizeLinear":
                self._dequantize(n)
            else:
                self._op(n)
        outs = [self._output(o) for o in self.graph_outputs]
        self.b.set_io([self.input_idx[vi.name] for vi in graph_inputs(self.m)], outs)

    def _collect_const_dq(self) -> None:
        self._skip: set[str] = set()
        folded_q: dict[str, np.ndarray] = {}  # QuantizeLinear of a constant (ORT writes them), done here
        self.const_float: dict[str, np.ndarray] = {}  # DQ(Q(c)) -> c, for attribute-like uses (Clip bounds)
        for n in self.m.graph.node:
            if n.op_type == "QuantizeLinear" and n.input[0] in self.inits and n.input[0] not in self.cdq:
                c = to_array(self.inits[n.input[0]], self.base_dir).astype(np.float64)
                scale = self.const(n.input[1]).astype(np.float64)
                zp_arr = self.const(n.input[2]) if len(n.input) > 2 and n.input[2] else np.zeros((), np.uint8)
                axis = int(node_attr(n, "axis", 1))
                if scale.size > 1:
                    shape = [1] * c.ndim
                    shape[axis % c.ndim] = -1
                    scale, zp = scale.reshape(shape), zp_arr.astype(np.float64).reshape(shape)
                else:
                    scale, zp = scale.reshape(()), zp_arr.astype(np.float64).reshape(())
                info = np.iinfo(zp_arr.dtype)
                folded_q[n.output[0]] = np.clip(np.rint(c / scale) + zp, info.min, info.max).astype(zp_arr.dtype)
                self.const_float[n.output[0]] = c.astype(np.float32)
                self._skip.add(n.name)
                self.absorbed.add(n.name)
                continue
            if n.op_type == "DequantizeLinear" and (n.input[0] in self.inits or n.input[0] in folded_q):
                q = folded_q.get(n.input[0])
                if q is None:
                    q = to_array(self.inits[n.input[0]], self.base_dir)
                elif n.input[0] in self.const_float:
                    self.const_float[n.output[0]] = self.const_float[n.input[0]]
                scale = np.atleast_1d(self.const(n.input[1]).astype(np.float32))
                zp = (
                    np.atleast_1d(self.const(n.input[2])).astype(np.int64)
                    if len(n.input) > 2 and n.input[2]
                    else np.zeros_like(scale, np.int64)
                )
                axis = int(node_attr(n, "axis", 1))
                if axis < 0:
                    axis += q.ndim
                dq = _ConstDQ(q=q, scale=scale, zp=zp, axis=axis)
                if q.dtype == np.uint8 and np.all(zp == 128):
                    dq = _ConstDQ(q=(q.astype(np.int16) - 128).astype(np.int8), scale=scale, zp=zp - 128, axis=axis)
                self.cdq[n.output[0]] = dq
                self._skip.add(n.name)
                self.absorbed.add(n.name)

    def _fuse_activations(self) -> None:
        producers = {o: n for n in self.m.graph.node for o in n.output}
        outs = set(self.graph_outputs)
        for act in self.m.graph.node:
            kind = self._activation_kind(act)
            if kind is None:
                continue
            prod = producers.get(act.input[0])
            if prod is None or prod.op_type not in _FUSABLE or prod.name in self.fused:
                continue
            if len(self.consumers.get(prod.output[0], [])) != 1 or prod.output[0] in outs:
                continue
            self.fused[prod.name] = kind
            prod.output[0] = act.output[0]
            self._skip.add(act.name)
            self.absorbed.add(act.name)
        self.consumers = {}
        for n in self.m.graph.node:
            if n.name not in self._skip:
                for i in n.input:
                    self.consumers.setdefault(i, []).append(n)

    def _activation_kind(self, n: onnx.NodeProto) -> str | None:
        if n.op_type == "Relu":
            return "RELU"
        if n.op_type != "Clip":
            return None
        lo, hi = self._clip_bounds(n)
        if lo == 0.0 and hi == 6.0:
            return "RELU6"
        if lo == -1.0 and hi == 1.0:
            return "RELU_N1_TO_1"
        if lo == 0.0 and hi is None:
            return "RELU"
        return None

    def _bound(self, name: str) -> float:
        """A scalar bound as written before quantization (DQ(Q(6.0)) is 6.0 here, so RELU6 stays RELU6)."""
        return float(np.asarray(self.const_float.get(name, self.const(name))).reshape(()))

    def _clip_bounds(self, n: onnx.NodeProto) -> tuple[float | None, float | None]:
        lo, hi = node_attr(n, "min"), node_attr(n, "max")
        if len(n.input) > 1 and n.input[1]:
            lo = float(self._bound(n.input[1])) if self.is_const(n.input[1]) else "dyn"
        if len(n.input) > 2 and n.input[2]:
            hi = float(self._bound(n.input[2])) if self.is_const(n.input[2]) else "dyn"
        if lo == "dyn" or hi == "dyn":
            raise UnsupportedOpError(
                f"node '{n.name}' (Clip): min/max are computed at run time; nearest supported: constant min/max"
            )
        return (None if lo is None else float(lo), None if hi is None else float(hi))

    def _input(self, vi: onnx.ValueInfoProto) -> None:
        if not hasattr(self, "input_idx"):
            self.input_idx: dict[str, int] = {}
        name = vi.name
        shape = self.shapes[name]
        if not shape:
            raise UnsupportedOpError(f"input '{name}' is a scalar (rank 0); the converter takes tensor inputs")
        elem = vi.type.tensor_type.elem_type
        casts = self.consumers.get(name, [])
        raw_bytes = (  # a uint8 image input the model casts to float first (tf2onnx: image_tensor -> Cast)
            elem == onnx.TensorProto.UINT8
            and self.io == "float32"
            and bool(casts)
            and all(c.op_type == "Cast" and int(node_attr(c, "to")) == onnx.TensorProto.FLOAT for c in casts)
        )
        if elem not in (onnx.TensorProto.FLOAT,) and not raw_bytes:
            raise UnsupportedOpError(
                f"input '{name}' has ONNX type {onnx.TensorProto.DataType.Name(elem)}; the converter takes float32 "
                "inputs, and uint8 ones the model casts to float first (use io dtype int8/uint8 for quantized I/O)"
            )
        nhwc = _is_nchw_image(shape, self.spec_layout)
        if nhwc:
            self.input_layouts[name] = "NHWC"
        elif len(shape) == 4 and (
            self.spec_layout == "NHWC"
            or (self.spec_layout is None and shape[3] in (1, 3, 4) and shape[1] not in (1, 3, 4))
        ):
            self.input_layouts[name] = "NHWC"  # the ONNX model already takes NHWC: kept as is
        else:
            self.input_layouts[name] = "NCHW" if len(shape) == 4 else "ONNX"
            if len(shape) == 4:
                self.notes.append(f"input '{name}' {list(shape)} is kept in ONNX order (it does not look like NCHW)")
        if raw_bytes:  # the uint8 input as it is, then the model's own Cast as one CAST
            u = self.b.add_tensor(name, [shape[i] for i in _P] if nhwc else list(shape), "uint8")
            v = self.new_val(f"{name}/float", shape, "f", nhwc)
            self.b.add_op("CAST", [u], [v.reps[("f", nhwc)]])
            self.input_idx[name] = u
            for c in casts:
                self.alias(c.output[0], v.name)
                self._skip.add(c.name)
            return
        if self.io == "float32":
            v = self.new_val(name, shape, "f", nhwc)
            self.input_idx[name] = v.reps[("f", nhwc)]
            return
        qs = [c for c in self.consumers.get(name, []) if c.op_type == "QuantizeLinear"]
        params = {self._q_params(c) for c in qs}
        if not qs or len(qs) != len(self.consumers.get(name, [])) or len(params) != 1:
            raise BadInputError(
                f"input '{name}': io dtype {self.io} needs the input to feed only QuantizeLinear nodes with one scale; "
                "quantize the model with edgecnn quantize, or use io dtype float32"
            )
        scale, zp = next(iter(params))
        qp = _QP(scale, zp)
        stored = [shape[i] for i in _P] if nhwc else list(shape)
        if self.io == "int8":
            v = self.new_val(name, shape, "q", nhwc, qp)
            self.input_idx[name] = v.reps[("q", nhwc)]
        else:
            u = self.b.add_tensor(name, stored, "uint8", scale=[scale], zero_point=[zp + 128])
            v = self.new_val(f"{name}/int8", shape, "q", nhwc, qp)
            self.b.add_op("QUANTIZE", [u], [v.reps[("q", nhwc)]])
            self.vals[name] = v
            self.input_idx[name] = u
        self.io_quant[name] = {"dtype": self.io, "scale": scale, "zero_point": zp + (128 if self.io == "uint8" else 0)}

    def _output(self, name: str) -> int:
        v = self.vals.get(name)
        if v is None:
            raise ModelError(f"output '{name}' is not produced by any converted node")
        if v.nhwc and len(v.shape) == 4:
            self.notes.append(f"output '{name}' keeps the ONNX (NCHW) order: a TRANSPOSE back from NHWC ends the graph")
        if self._kind(name) not in ("f", "q"):  # indices, masks: as they are
            idx = self.act(name, self._kind(name), False)
        elif self.io == "float32":
            idx = self.act(name, "f", False)
        else:
            if v.qp is None:
                raise BadInputError(
                    f"output '{name}' has no quantization parameters in the QDQ model, so it cannot be {self.io}; "
                    "quantize with a target whose scheme quantizes outputs (e.g. --target ethos-u55), "
                    "or use io dtype float32"
                )
            idx = self.act(name, "q", False)
            if self.io == "uint8":
                shape = self.stored_shape(v, False)
                u = self.b.add_tensor(name, shape, "uint8", scale=[v.qp.scale], zero_point=[v.qp.zp + 128])
                self.b.add_op("QUANTIZE", [idx], [u])
                idx = u
            self.io_quant[name] = {
                "dtype": self.io,
                "scale": v.qp.scale,
                "zero_point": v.qp.zp + (128 if self.io == "uint8" else 0),
            }
        self.b.rename_tensor(idx, name)
        self.output_names.append(name)
        return idx

    # -- Q / DQ ---------------------------------------------------------------------------------------
    def _q_params(self, n: onnx.NodeProto) -> tuple[float, int]:
        scale = self.const(n.input[1])
        if np.size(scale) != 1:
            raise UnsupportedOpError(
                f"node '{n.name}' (QuantizeLinear): per-axis activation scales ({np.size(scale)} values); TFLite "
                "activations are per-tensor; nearest supported: per-tensor activation quantization"
            )
        zp_arr = (
            to_array(self.inits[n.input[2]], self.base_dir)
            if len(n.input) > 2 and n.input[2]
            else np.zeros((), np.uint8)
        )
        zp = int(np.asarray(zp_arr).reshape(()))
        if zp_arr.dtype == np.uint8:
            zp -= 128
        elif zp_arr.dtype != np.int8:
            raise UnsupportedOpError(
                f"node '{n.name}' (QuantizeLinear): {zp_arr.dtype} activations; nearest supported: int8 or uint8"
            )
        return float(np.float32(np.asarray(scale).reshape(()))), zp

    def _quantize(self, n: onnx.NodeProto) -> None:
        x, t = n.input[0], n.output[0]
        if self.is_const(x):
            raise UnsupportedOpError(
                f"node '{n.name}' (QuantizeLinear) quantizes a constant at run time; nearest supported: an integer "
                "initializer followed by DequantizeLinear"
            )
        qp = _QP(*self._q_params(n))
        v = self.vals[x]
        if qp.same(v.qp):
            self.alias(t, x)
            self.absorbed.add(n.name)
            return
        nhwc = v.nhwc
        src_kind = "q" if ("q", nhwc) in v.reps else "f"
        src = self.act(x, src_kind, nhwc)
        out = self.new_val(t, v.shape, "q", nhwc, qp)
        self.b.add_op("QUANTIZE", [src], [out.reps[("q", nhwc)]])
        if src_kind == "q":
            self.notes.append(f"'{n.name}': requantize int8 -> int8 (the QDQ model changes the scale here)")

    def _dequantize(self, n: onnx.NodeProto) -> None:
        t = n.input[0]
        if t not in self.vals:
            raise UnsupportedOpError(f"node '{n.name}' (DequantizeLinear): input '{t}' is not an int8 activation")
        v, qp = self.vals[t], _QP(*self._q_params(n))
        if v.qp is None or qp.same(v.qp):
            self.alias(n.output[0], t)
            self.absorbed.add(n.name)
            return
        self._regrid(n, v, qp)

    def _regrid(self, n: onnx.NodeProto, v: _Val, qp: _QP) -> None:
        """A DequantizeLinear that reads int8 codes on another grid than their QuantizeLinear wrote them on (an
        ONNX Runtime model: edgecnn absorbs a scalar affine into the grids so, and a HardSigmoid's integer form
        reads alpha * x so). The same codes on grid ``qp`` are ``a * value + b`` with ``a = scale_dq / scale_q``,
        ``b = (zp_q - zp_dq) * scale_dq``: an int8 MUL by ``a`` onto (scale_dq, zp_q) and an ADD of ``b`` onto
        (scale_dq, zp_dq), each of which maps every code to itself (exact)."""
        assert v.qp is not None
        nhwc = v.nhwc and len(v.shape) == 4
        a = qp.scale / v.qp.scale
        b = (v.qp.zp - qp.zp) * qp.scale
        mid_qp = _QP(qp.scale, v.qp.zp)
        shape = self.stored_shape(v, nhwc)
        alpha = self._const_on_grid(f"{n.name}/a", np.array(a, np.float32), _QP(a / 127.0, 0))
        mid = self.b.add_tensor(f"{n.output[0]}/scaled", shape, "int8", scale=[qp.scale], zero_point=[v.qp.zp])
        self.b.add_op("MUL", [self.act(v.name, "q", nhwc), alpha], [mid])
        out = self.new_val(n.output[0], v.shape, "q", nhwc, qp)
        if mid_qp.same(qp):  # same zero point: the MUL alone
            out.reps[("q", nhwc)] = mid
            return
        beta = self._const_on_grid(f"{n.name}/b", np.array(b, np.float32), _QP(abs(b) / 127.0, 0))
        self.b.add_op("ADD", [mid, beta], [out.reps[("q", nhwc)]])
        self.notes.append(
            f"'{n.name}': reads its codes on another grid than they were written on (scale {a:.4g}x, shift {b:+.4g}):"
            " an int8 MUL and ADD that map each code to itself"
        )

    # -- generic op ------------------------------------------------------------------------------------
    def _acts(self, n: onnx.NodeProto) -> list[str]:
        return [i for i in n.input if i and not self.is_const(i)]

    def _out_qp(self, n: onnx.NodeProto) -> _QP | None:
        """The int8 grid of ``n``'s output if it can run as an int8 op, else None."""
        acts = self._acts(n)
        if not self.int8 or n.op_type not in _INT8_OPS or not acts:
            return None
        if not all(self.vals[a].qp is not None for a in acts):
            return None
        if n.op_type in _PASS_OPS:
            return self.vals[acts[0]].qp
        if n.op_type in _FIXED_INT8:
            return _QP(*_FIXED_INT8[n.op_type])
        params: set[tuple[float, int]] = set()
        for o in (o for o in n.output if o):
            found = self._downstream_q(o, 0)
            if found is None:
                return None
            params |= found
        if len(params) == 1:
            return _QP(*next(iter(params)))
        # several grids downstream (e.g. Split halves quantized separately): one grid covering all of them,
        # requantized to each (exact when they agree, else at most half a step of the wider grid)
        lo = min((-128 - z) * s for s, z in params)
        hi = max((127 - z) * s for s, z in params)
        scale = (hi - lo) / 255.0
        zp = int(np.clip(round(-128 - lo / scale), -128, 127))
        self.notes.append(
            f"node '{n.name}' ({n.op_type}) runs in int8 on a grid covering the {len(params)} QDQ grids downstream "
            f"(scale {scale:g}); each consumer requantizes"
        )
        return _QP(float(np.float32(scale)), zp)

    def _downstream_q(self, t: str, depth: int) -> set[tuple[float, int]] | None:
        """The QDQ grids ``t`` reaches through shape-only ops, or None if a float consumer needs it."""
        cons = self.consumers.get(t, [])
        if not cons or t in self.graph_outputs or depth > 4:
            return None
        out: set[tuple[float, int]] = set()
        for c in cons:
            if c.op_type == "QuantizeLinear":
                out.add(self._q_params(c))
            elif c.op_type in _LOOK_THROUGH and c.input[0] == t and c.name not in self.fused:
                for o in (o for o in c.output if o):
                    found = self._downstream_q(o, depth + 1)
                    if found is None:
                        return None
                    out |= found
            else:
                return None
        return out

    def _op(self, n: onnx.NodeProto) -> None:
        handler = getattr(self, f"_op_{n.op_type}", None)
        if handler is None:
            alt = _NEAREST.get(n.op_type, "rewrite it with supported ops: " + ", ".join(SUPPORTED_OPS))
            raise UnsupportedOpError(
                f"node '{n.name}' ({n.op_type}) has no TFLite conversion in edgecnn; nearest supported: {alt}"
            )
        qp = self._out_qp(n)
        handler(n, qp)

    def unsupported(self, n: onnx.NodeProto, why: str, alt: str) -> UnsupportedOpError:
        return UnsupportedOpError(f"node '{n.name}' ({n.op_type}): {why}; nearest supported: {alt}")

    def emit(
        self,
        n: onnx.NodeProto,
        builtin: str,
        inputs: Sequence[int],
        qp: _QP | None,
        nhwc: bool,
        options: dict[str, Any] | None = None,
        out_name: str | None = None,
        shape: Sequence[int] | None = None,
        out_kind: str | None = None,
    ) -> _Val:
        name = out_name or n.output[0]
        shape = shape if shape is not None else self.shapes[name]
        if nhwc and len(shape) != 4:
            nhwc = False
        opts = dict(options or {})
        fused = self.fused.get(n.name)
        if fused is not None:
            if builtin not in _FUSED_TFL:
                raise self.unsupported(n, f"cannot fuse {fused}", "Relu/Clip after Conv, Gemm, Add or pooling")
            opts["fused_activation_function"] = fused
        v = self.new_val(name, shape, out_kind or ("q" if qp is not None else "f"), nhwc, qp)
        self.b.add_op(builtin, list(inputs), [next(iter(v.reps.values()))], opts or None)
        if qp is None and self.int8 and any(self.vals[a].qp is not None for a in self._acts(n) if a in self.vals):
            self.notes.append(
                f"node '{n.name}' ({n.op_type}) runs in float (DEQUANTIZE before it): the QDQ model gives its "
                "output no int8 grid, or TFLite has no int8 form of it"
            )
        return v

    # -- pads ---------------------------------------------------------------------------------------
    def _spatial(self, n: onnx.NodeProto, in_hw: Sequence[int], k: Sequence[int]) -> tuple[str, list[int], list[int]]:
        """(padding, explicit pads [t, l, b, r] or [], strides) for a 2-D window op."""
        strides = list(node_attr(n, "strides", [1, 1]))
        dil = list(node_attr(n, "dilations", [1, 1]))
        auto = node_attr(n, "auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        same = _same_pads(in_hw, k, strides, dil)
        if auto in ("SAME_UPPER",):
            return "SAME", [], strides
        if auto == "VALID":
            return "VALID", [], strides
        # SAME_LOWER puts the extra pad at the top/left
        pads = (
            [same[2], same[3], same[0], same[1]] if auto == "SAME_LOWER" else list(node_attr(n, "pads", [0, 0, 0, 0]))
        )
        if not any(pads):
            return "VALID", [], strides
        if pads == same:
            return "SAME", [], strides
        return "VALID", pads, strides

    def _pad(self, n: onnx.NodeProto, x: str, kind: str, pads: list[int], value: str = "zero") -> int:
        """Explicit spatial padding of NHWC ``x`` (pads t, l, b, r); returns the padded tensor."""
        v = self.vals[x]
        src = self.act(x, kind, True)
        nn, h, w, c = self.stored_shape(v, True)
        shape = [nn, h + pads[0] + pads[2], w + pads[1] + pads[3], c]
        paddings = np.array([[0, 0], [pads[0], pads[2]], [pads[1], pads[3]], [0, 0]], np.int32)
        pt = self.b.add_tensor(f"{n.name}/paddings", [4, 2], "int32", data=paddings)
        out = self._like(v, kind, shape, f"{n.name}/padded")
        if value == "zero":
            self.b.add_op("PAD", [src, pt], [out])
        else:  # lowest value, for max pooling
            if kind == "q":
                cv = self.b.add_tensor(
                    f"{n.name}/pad_value", [], "int8", data=np.array(-128, np.int8),
                    scale=[v.qp.scale], zero_point=[v.qp.zp],  # type: ignore[union-attr]
                )  # fmt: skip
            else:
                cv = self.b.add_tensor(f"{n.name}/pad_value", [], "float32", data=np.array(-3.4e38, np.float32))
            self.b.add_op("PADV2", [src, pt, cv], [out])
        return out

    # -- conv / gemm -----------------------------------------------------------------------------------
    def _weights_int8(self, n: onnx.NodeProto, wname: str) -> _ConstDQ | None:
        dq = self.cdq.get(wname)
        if dq is None:
            return None
        if dq.q.dtype != np.int8 or np.any(dq.zp != 0):
            self.notes.append(
                f"node '{n.name}' ({n.op_type}) runs in float: its weights are {dq.q.dtype} with zero point != 0, "
                "TFLite int8 kernels need symmetric int8 weights"
            )
            return None
        return dq

    def _bias_int32(self, n: onnx.NodeProto, bname: str | None, cout: int, in_s: float, w_s: np.ndarray) -> np.ndarray:
        want = (np.float64(np.float32(in_s)) * w_s.astype(np.float64)) * np.ones(cout)
        if not bname:
            return np.zeros(cout, np.int32)
        dq = self.cdq.get(bname)
        if dq is not None and dq.q.dtype == np.int32 and np.all(dq.zp == 0):
            got = dq.scale.astype(np.float64) * np.ones(cout)
            if np.allclose(got, want, rtol=1e-6, atol=0):
                return dq.q.reshape(cout).astype(np.int32)
        real = self.const(bname).astype(np.float64).reshape(cout)
        return np.clip(np.rint(real / want), -(2**31), 2**31 - 1).astype(np.int32)

    def _op_Conv(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        x, wname = n.input[0], n.input[1]
        bname = n.input[2] if len(n.input) > 2 and n.input[2] else None
        if not self.is_const(wname):
            raise self.unsupported(n, "weights are computed at run time", "a Conv with constant weights")
        v = self.vals[x]
        if len(v.shape) == 3:
            self._via_2d(n, qp, self._op_Conv)
            return
        if len(v.shape) != 4:
            raise self.unsupported(n, f"{len(v.shape) - 2}-D convolution", "1-D or 2-D Conv")
        w_real = self.const(wname)
        if f"{n.name}/bn_scale" in self.inits:  # BatchNormalization folded lazily (_fold_batchnorm_lazily)
            f = self.const(f"{n.name}/bn_scale")
            w_real = (w_real.astype(np.float64) * f.reshape(-1, 1, 1, 1)).astype(w_real.dtype)
        cout, cin_g, kh, kw = w_real.shape
        cin = v.shape[1]
        group = int(node_attr(n, "group", 1))
        depthwise = group > 1 and group == cin and cin_g == 1
        if group > 1 and not depthwise and (cin % group or cout % group or cin_g * group != cin):
            raise self.unsupported(n, f"group={group} does not divide the channels", "group dividing C_in and C_out")
        # grouped (not depthwise): CONV_2D whose filter has C_in / group input channels, which LiteRT's builtin
        # kernel and XNNPACK run as a grouped convolution (op version 6, LiteRT op_version.cc "grouped conv")
        wq = self._weights_int8(n, wname) if qp is not None else None
        if qp is not None and wq is None:
            qp = None
        kind = "q" if qp is not None else "f"
        padding, pads, strides = self._spatial(n, v.shape[2:], (kh, kw))
        dil = list(node_attr(n, "dilations", [1, 1]))
        src = self._pad(n, x, kind, pads) if pads else self.act(x, kind, True)
        opts: dict[str, Any] = {
            "padding": padding,
            "stride_h": strides[0],
            "stride_w": strides[1],
            "dilation_h_factor": dil[0],
            "dilation_w_factor": dil[1],
        }
        perm = (1, 2, 3, 0) if depthwise else (0, 2, 3, 1)
        qdim = 3 if depthwise else 0
        if depthwise:
            opts["depth_multiplier"] = cout // cin
        if qp is not None:
            assert wq is not None
            in_qp = self.vals[x].qp
            assert in_qp is not None
            w_s = wq.scale.astype(np.float32)
            per_channel = w_s.size > 1
            wt = self.b.add_tensor(
                f"{wname}/tfl",
                [w_real.shape[i] for i in perm],
                "int8",
                data=wq.q.transpose(perm),
                scale=w_s,
                zero_point=[0] * w_s.size,
                quantized_dimension=qdim if per_channel else 0,
            )
            bq = self._bias_int32(n, bname, cout, in_qp.scale, w_s)
            b_s = (np.float64(np.float32(in_qp.scale)) * w_s.astype(np.float64)).astype(np.float32)
            bt = self.b.add_tensor(f"{n.name}/bias", [cout], "int32", data=bq, scale=b_s, zero_point=[0] * b_s.size)
        else:
            wt = self.const_tensor(f"{wname}/tfl", w_real.transpose(perm))
            bias = self.const(bname).reshape(cout) if bname else np.zeros(cout, np.float32)
            bt = self.const_tensor(f"{n.name}/bias", bias.astype(np.float32))
        if group > 1 and not depthwise:
            self._grouped_conv(n, [src, wt, bt], qp, opts)
            return
        self.emit(n, "DEPTHWISE_CONV_2D" if depthwise else "CONV_2D", [src, wt, bt], qp, True, opts)

    def _grouped_conv(self, n: onnx.NodeProto, ins: list[int], qp: _QP | None, opts: dict[str, Any]) -> None:
        v = self.emit(n, "CONV_2D", ins, qp, True, opts)
        self.b.set_op_version(self.b.num_ops - 1, 6)
        self.notes.append(f"node '{n.name}' (Conv group={node_attr(n, 'group')}) is a grouped CONV_2D (version 6)")
        del v

    def _fc(self, n: onnx.NodeProto, qp: _QP | None, x: str, w: str, w_real: np.ndarray, transposed: bool,
            bname: str | None) -> None:  # fmt: skip
        """FULLY_CONNECTED with weights [out, in] (``w_real`` already in that order when ``transposed``)."""
        v = self.vals[x]
        cout = w_real.shape[0]
        wq = self._weights_int8(n, w) if qp is not None else None
        if qp is not None and wq is None:
            qp = None
        kind = "q" if qp is not None else "f"
        src = self.act(x, kind, False)
        opts = {"keep_num_dims": len(v.shape) > 2}
        if qp is not None:
            assert wq is not None
            in_qp = v.qp
            assert in_qp is not None
            qarr = wq.q.T if not transposed else wq.q
            w_s = wq.scale.astype(np.float32)
            wt = self.b.add_tensor(
                f"{w}/tfl", qarr.shape, "int8", data=qarr, scale=w_s, zero_point=[0] * w_s.size, quantized_dimension=0
            )
            bq = self._bias_int32(n, bname, cout, in_qp.scale, w_s)
            b_s = (np.float64(np.float32(in_qp.scale)) * w_s.astype(np.float64)).astype(np.float32)
            bt = self.b.add_tensor(f"{n.name}/bias", [cout], "int32", data=bq, scale=b_s, zero_point=[0] * b_s.size)
        else:
            wt = self.const_tensor(f"{w}/tfl", w_real)
            bias = self.const(bname).reshape(cout) if bname else np.zeros(cout, np.float32)
            bt = self.const_tensor(f"{n.name}/bias", bias.astype(np.float32))
        self.emit(n, "FULLY_CONNECTED", [src, wt, bt], qp, False, opts)

    def _op_Gemm(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        """FULLY_CONNECTED: alpha folded into the weights (their scales in int8), beta into the bias, transA as a
        TRANSPOSE of the 2-D input."""
        alpha, beta = float(node_attr(n, "alpha", 1.0)), float(node_attr(n, "beta", 1.0))
        if not self.is_const(n.input[1]):
            raise self.unsupported(n, "B is computed at run time", "Gemm with constant B (MatMul for two activations)")
        w = self.const(n.input[1])
        trans_b = bool(node_attr(n, "transB", 0))
        w_real = w if trans_b else w.T
        cout = w_real.shape[0]
        bname = n.input[2] if len(n.input) > 2 and n.input[2] else None
        if bname and not self.is_const(bname):
            raise self.unsupported(n, "C is computed at run time", "Gemm with a constant bias")
        if bname and self.const(bname).size not in (1, cout):
            raise self.unsupported(n, "bias is not one value per output", "Gemm with a bias of shape [N] or [1, N]")
        if qp is not None and n.input[1] in self.cdq:
            dq = self.cdq[n.input[1]]
            if (not trans_b and dq.scale.size > 1 and dq.axis != 1) or (trans_b and dq.scale.size > 1 and dq.axis != 0):
                qp = None
        if qp is not None and alpha <= 0:
            qp = None
        x = n.input[0]
        if node_attr(n, "transA", 0):
            v = self.vals[x]
            kind = "q" if qp is not None else "f"
            src = self.act(x, kind, False)
            t = self._like(v, kind, list(v.shape)[::-1], f"{n.name}/a_t")
            self.b.add_op("TRANSPOSE", [src, self.int_tensor("perm", [1, 0])], [t])
            x = f"{n.name}/a_t"
            self.vals[x] = _Val(name=x, shape=tuple(v.shape[::-1]), qp=v.qp, reps={(kind, False): t})
        bias = None
        if bname and (beta != 1.0 or self.const(bname).size != cout):
            bias = f"{n.name}/bias_c"
            self.add_const(bias, np.broadcast_to(self.const(bname).reshape(-1), (cout,)) * np.float32(beta))
        if alpha != 1.0:
            wname = f"{n.input[1]}/alpha"
            if qp is not None:
                dq = self.cdq[n.input[1]]
                self.cdq[wname] = _ConstDQ(q=dq.q, scale=dq.scale * np.float32(alpha), zp=dq.zp, axis=dq.axis)
            else:
                self.add_const(wname, w * np.float32(alpha))
            w_real = w_real * np.float32(alpha)
        else:
            wname = n.input[1]
        self._fc(n, qp, x, wname, w_real, trans_b, bias or bname)

    def _op_ConvTranspose(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        """TRANSPOSE_CONV: weights [C_in, C_out, kh, kw] -> OHWI [C_out, kh, kw, C_in], bias as the 4th input."""
        x, wname = n.input[0], n.input[1]
        bname = n.input[2] if len(n.input) > 2 and n.input[2] else None
        if not self.is_const(wname):
            raise self.unsupported(n, "weights are computed at run time", "a ConvTranspose with constant weights")
        v = self.vals[x]
        if len(v.shape) != 4:
            raise self.unsupported(n, f"{len(v.shape) - 2}-D transposed convolution", "2-D ConvTranspose")
        if int(node_attr(n, "group", 1)) != 1 or list(node_attr(n, "dilations", [1, 1])) != [1, 1]:
            raise self.unsupported(n, "group or dilation other than 1", "ConvTranspose with group=1, dilations=1")
        w_real = self.const(wname)
        _cin, cout, kh, kw = w_real.shape
        strides = list(node_attr(n, "strides", [1, 1]))
        out_shape = list(self.shapes[n.output[0]])
        pads = list(node_attr(n, "pads", [0, 0, 0, 0]))
        opad = list(node_attr(n, "output_padding", [0, 0]))
        eff = [pads[0], pads[1], pads[2] - opad[0], pads[3] - opad[1]]  # t, l, b, r actually cropped
        auto = node_attr(n, "auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        padding = None
        if auto == "VALID" or (auto == "NOTSET" and not any(eff)):
            padding = "VALID"
        else:
            same = True
            for i, k in enumerate((kh, kw)):
                inn, out = v.shape[2 + i], out_shape[2 + i]
                total = max((inn - 1) * strides[i] + k - out, 0)
                if out != inn * strides[i] or (
                    auto == "NOTSET" and [eff[i], eff[i + 2]] != [total // 2, total - total // 2]
                ):
                    same = False
            padding = "SAME" if same and auto in ("NOTSET", "SAME_UPPER") else None
        crop: tuple[int, int] | None = None
        full = [(v.shape[2 + i] - 1) * strides[i] + k for i, k in enumerate((kh, kw))]
        if (
            padding is None
            and auto == "NOTSET"
            and min(eff) >= 0
            and all(full[i] - eff[i] - eff[i + 2] == out_shape[2 + i] for i in range(2))
        ):
            # PyTorch's ConvTranspose2d(k3, s2, p1, output_padding=1) crops one row at the top, none at the bottom;
            # TFLite's SAME crops the other way: the full VALID output, then a SLICE of exactly what ONNX keeps
            padding, crop = "VALID", (eff[0], eff[1])
        if padding is None:
            raise self.unsupported(
                n, f"pads {pads} with output_padding {opad} have no TFLite SAME/VALID form",
                "ConvTranspose with pads 0 (VALID) or pads giving output = input x stride (SAME)",
            )  # fmt: skip
        wq = self._weights_int8(n, wname) if qp is not None else None
        if wq is not None and wq.scale.size > 1 and wq.axis != 1:
            wq = None
        if qp is not None and wq is None:
            qp = None
        kind = "q" if qp is not None else "f"
        src = self.act(x, kind, True)
        perm = (1, 2, 3, 0)
        conv_shape = [out_shape[0], out_shape[1], *full] if crop is not None else out_shape
        shape_t = self.int_tensor(f"{n.name}/output_shape", [conv_shape[i] for i in _P])
        if qp is not None:
            assert wq is not None
            in_qp = v.qp
            assert in_qp is not None
            w_s = wq.scale.astype(np.float32)
            wt = self.b.add_tensor(
                f"{wname}/tfl", [w_real.shape[i] for i in perm], "int8", data=wq.q.transpose(perm), scale=w_s,
                zero_point=[0] * w_s.size, quantized_dimension=0,
            )  # fmt: skip
            bq = self._bias_int32(n, bname, cout, in_qp.scale, w_s)
            b_s = (np.float64(np.float32(in_qp.scale)) * w_s.astype(np.float64)).astype(np.float32)
            bt = self.b.add_tensor(f"{n.name}/bias", [cout], "int32", data=bq, scale=b_s, zero_point=[0] * b_s.size)
        else:
            wt = self.const_tensor(f"{wname}/tfl", w_real.transpose(perm))
            bias = self.const(bname).reshape(cout) if bname else np.zeros(cout, np.float32)
            bt = self.const_tensor(f"{n.name}/bias", bias.astype(np.float32))
        out = self.new_val(n.output[0], out_shape, kind, True, qp)
        target = out if crop is None else self.new_val(f"{n.name}/full", conv_shape, kind, True, qp)
        opts = {"padding": padding, "stride_h": strides[0], "stride_w": strides[1]}
        # version 3 added the bias input (LiteRT op_version.cc)
        self.b.add_op("TRANSPOSE_CONV", [shape_t, wt, src, bt], [target.reps[(kind, True)]], opts, version=3)
        if crop is not None:
            begin = self.int_tensor(f"{n.name}/crop_begin", [0, crop[0], crop[1], 0])
            size = self.int_tensor(f"{n.name}/crop_size", [out_shape[i] for i in _P])
            self.b.add_op("SLICE", [target.reps[(kind, True)], begin, size], [out.reps[(kind, True)]])

    def _op_MatMul(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        a, bn = n.input
        if self.is_const(bn) and self.const(bn).ndim == 2 and not self.is_const(a):
            w = self.const(bn)
            if qp is not None and bn in self.cdq and self.cdq[bn].scale.size > 1 and self.cdq[bn].axis != 1:
                qp = None
            self._fc(n, qp, a, bn, w.T, False, None)
            return
        if self.is_const(a) or self.is_const(bn):
            raise self.unsupported(n, "constant operand that is not a 2-D right-hand weight", "MatMul(x, W[K, N])")
        ia, ib = self.act(a, "f", False), self.act(bn, "f", False)
        self.emit(n, "BATCH_MATMUL", [ia, ib], None, False)

    # -- pooling ----------------------------------------------------------------------------------------
    def _pool(self, n: onnx.NodeProto, qp: _QP | None, builtin: str) -> None:
        x = n.input[0]
        v = self.vals[x]
        if len(v.shape) == 3:
            self._via_2d(n, qp, lambda m, q: self._pool(m, q, builtin))
            return
        if len(v.shape) != 4:
            raise self.unsupported(n, f"{len(v.shape) - 2}-D pooling", "1-D or 2-D pooling")
        k = list(node_attr(n, "kernel_shape"))
        if list(node_attr(n, "dilations", [1, 1])) != [1, 1]:
            raise self.unsupported(n, "dilated pooling", "pooling with dilations 1")
        kind = "q" if qp is not None else "f"
        padding, pads, strides = self._spatial(n, v.shape[2:], k)
        if builtin == "AVERAGE_POOL_2D" and node_attr(n, "count_include_pad", 0) and padding == "SAME":
            # TFLite's SAME average divides each edge window by its valid elements; count_include_pad=1 counts
            # the zeros of the padding too: pad explicitly with zeros and pool VALID (Caffe-style Inception pools)
            padding, pads = "VALID", _same_pads(v.shape[2:], k, strides, [1, 1])
        out_shape = self.shapes[n.output[0]]
        if node_attr(n, "ceil_mode", 0) and padding != "SAME":
            # ceil_mode keeps a last window that runs past the end. For MaxPool that is extra padding at the
            # bottom/right with the lowest value (it never wins a max: every window holds an input value);
            # AveragePool would divide by a different count, so it stays refused.
            p = list(pads) if pads else [0, 0, 0, 0]
            extra = [(out_shape[2 + i] - 1) * strides[i] + k[i] - (v.shape[2 + i] + p[i] + p[i + 2]) for i in range(2)]
            if any(e < 0 for e in extra) or (any(extra) and builtin != "MAX_POOL_2D"):
                raise self.unsupported(n, "ceil_mode=1 changes the output size", "ceil_mode=0 or matching pads")
            if any(extra):
                pads = [p[0], p[1], p[2] + extra[0], p[3] + extra[1]]
        if pads:
            if builtin == "AVERAGE_POOL_2D" and not node_attr(n, "count_include_pad", 0):
                raise self.unsupported(
                    n,
                    "asymmetric-to-TFLite padding with count_include_pad=0",
                    "pads equal to SAME, or count_include_pad=1",
                )
            src = self._pad(n, x, kind, pads, "zero" if builtin == "AVERAGE_POOL_2D" else "lowest")
        else:
            src = self.act(x, kind, True)
        opts = {"padding": padding, "stride_h": strides[0], "stride_w": strides[1], "filter_height": k[0],
                "filter_width": k[1]}  # fmt: skip
        self.emit(n, builtin, [src], qp, True, opts)

    def _op_MaxPool(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        if len([o for o in n.output if o]) > 1:
            raise self.unsupported(n, "MaxPool with indices output", "MaxPool with one output")
        self._pool(n, qp, "MAX_POOL_2D")

    def _op_AveragePool(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        self._pool(n, qp, "AVERAGE_POOL_2D")

    def _reduce(self, n: onnx.NodeProto, qp: _QP | None, builtin: str, axes: list[int], keep: bool) -> None:
        x = n.input[0]
        v = self.vals[x]
        rank = len(v.shape)
        axes = sorted(a % rank for a in axes)
        kind = "q" if qp is not None else "f"
        nhwc = v.nhwc and rank == 4
        if nhwc and not keep:
            nhwc_axes = sorted(_INV_P[a] for a in axes)
            rest = [d for d in range(4) if d not in nhwc_axes]
            # the remaining stored axes keep the logical order only if no transpose is needed
            if [_P[d] for d in rest] != sorted(_P[d] for d in rest):
                nhwc = False
        src = self.act(x, kind, nhwc)
        stored_axes = sorted(_INV_P[a] for a in axes) if nhwc else axes
        ax = self.int_tensor(f"{n.name}/axes", stored_axes)
        self.emit(n, builtin, [src, ax], qp, nhwc and keep, {"keep_dims": keep})

    def _op_GlobalAveragePool(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        self._reduce(n, qp, "MEAN", list(range(2, len(self.vals[n.input[0]].shape))), True)

    def _op_GlobalMaxPool(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        self._reduce(n, qp, "REDUCE_MAX", list(range(2, len(self.vals[n.input[0]].shape))), True)

    def _reduce_axes(self, n: onnx.NodeProto) -> list[int]:
        axes = node_attr(n, "axes")
        if axes is None and len(n.input) > 1 and n.input[1]:
            axes = self.const(n.input[1]).tolist()
        if axes is None:
            axes = list(range(len(self.vals[n.input[0]].shape)))
        return [int(a) for a in axes]

    def _op_ReduceMean(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        self._reduce(n, qp, "MEAN", self._reduce_axes(n), bool(node_attr(n, "keepdims", 1)))

    def _op_ReduceMax(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        self._reduce(n, qp, "REDUCE_MAX", self._reduce_axes(n), bool(node_attr(n, "keepdims", 1)))

    # -- elementwise ----------------------------------------------------------------------------------------
    def _elementwise(self, n: onnx.NodeProto, qp: _QP | None, builtin: str, operands: list[str] | None = None,
                     consts: dict[str, np.ndarray] | None = None, one_grid: bool = False, in_kind: str | None = None,
                     out_kind: str | None = None) -> None:  # fmt: skip
        """``one_grid``: an int8 kernel that compares raw values (MAXIMUM, MINIMUM) gets every operand on the
        output grid: activations requantized, constants quantized on it (exact: quantization is monotonic)."""
        operands = operands or [i for i in n.input if i]
        consts = consts or {}
        out_shape = self.shapes[n.output[0]]
        rank = len(out_shape)
        acts = [i for i in operands if i not in consts and not self.is_const(i)]
        if not acts:
            raise self.unsupported(n, "all inputs are constant", "constant folding (fixed shapes)")
        nhwc = rank == 4 and any(self.vals[a].nhwc and len(self.vals[a].shape) == 4 for a in acts)
        kind = in_kind or ("q" if qp is not None else "f")
        ins = []
        for i in operands:
            if i in consts or self.is_const(i):
                arr = consts.get(i)
                if arr is None:
                    arr = self.const(i)
                arr = np.asarray(arr, np.float32 if kind in ("f", "q") else _KIND_DTYPE[kind])
                arr = arr.reshape((1,) * (rank - arr.ndim) + arr.shape) if arr.ndim < rank else arr
                if nhwc and arr.ndim == 4:
                    arr = arr.transpose(_P)
                if arr.size == 1:
                    arr = arr.reshape(())
                if one_grid and qp is not None:
                    ins.append(self._const_on_grid(f"{n.name}/{i}", arr, qp))
                elif kind not in ("f", "q"):
                    ins.append(self.b.add_tensor(f"{n.name}/{i}", arr.shape, _KIND_DTYPE[kind], data=arr))
                else:
                    ins.append(self._const_operand(f"{n.name}/{i}", arr, kind))
                continue
            av = self.vals[i]
            t = self.act(i, kind, nhwc) if len(av.shape) == rank else self._broadcast_act(n, i, kind, rank, nhwc)
            if one_grid and qp is not None:
                t = self._requantize(t, av, qp)
            ins.append(t)
        self.emit(n, builtin, ins, qp, nhwc, out_kind=out_kind)

    def _const_on_grid(self, name: str, arr: np.ndarray, qp: _QP) -> int:
        q = np.clip(np.rint(arr.astype(np.float64) / qp.scale) + qp.zp, -128, 127).astype(np.int8)
        return self.b.add_tensor(name, arr.shape, "int8", data=q, scale=[qp.scale], zero_point=[qp.zp])

    def _requantize(self, t: int, v: _Val, qp: _QP) -> int:
        """int8 tensor ``t`` (on ``v``'s grid) on grid ``qp``: itself, or a QUANTIZE int8 -> int8."""
        if qp.same(v.qp):
            return t
        out = self.b.add_tensor(
            f"{v.name}/requantized", self.b.tensor_shape(t), "int8", scale=[qp.scale], zero_point=[qp.zp]
        )
        self.b.add_op("QUANTIZE", [t], [out])
        return out

    def _const_operand(self, name: str, arr: np.ndarray, kind: str) -> int:
        if kind == "f":
            return self.const_tensor(name, arr)
        lo, hi = min(float(arr.min()), 0.0), max(float(arr.max()), 0.0)
        scale = (hi - lo) / 255.0 or 1.0
        zp = int(np.clip(round(-128 - lo / scale), -128, 127))
        q = np.clip(np.rint(arr / scale) + zp, -128, 127).astype(np.int8)
        self.notes.append(f"constant '{name}' is quantized to int8 on its own range (scale {scale:g}) for an int8 op")
        return self.b.add_tensor(name, arr.shape, "int8", data=q, scale=[scale], zero_point=[zp])

    def _broadcast_act(self, n: onnx.NodeProto, name: str, kind: str, rank: int, nhwc: bool) -> int:
        v = self.vals[name]
        src = self.act(name, kind, False)
        shape = [1] * (rank - len(v.shape)) + list(v.shape)
        if nhwc:
            perm_shape = [shape[i] for i in _P]
            if not _memory_noop(shape, list(_P)):
                raise self.unsupported(
                    n, f"broadcasting '{name}' {list(v.shape)} into an NHWC map", "same-rank operands"
                )
            shape = perm_shape
        out = self._like(v, kind, shape, f"{name}/rank{rank}")
        self.b.add_op("RESHAPE", [src, self.int_tensor("shape", shape)], [out], {"new_shape": shape})
        return out

    def _op_Add(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        self._elementwise(n, qp, "ADD")

    def _op_Sub(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        self._elementwise(n, qp, "SUB")

    def _op_Mul(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        self._elementwise(n, qp, "MUL")

    def _op_Div(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        a, d = n.input
        if self.is_const(d) and not self.is_const(a):
            c = self.const(d).astype(np.float64)
            if np.any(c == 0):
                raise self.unsupported(n, "division by a constant containing 0", "Div by a non-zero constant")
            self._elementwise(n, qp, "MUL", [a, d], {d: (1.0 / c).astype(np.float32)})
            return
        self._elementwise(n, None, "DIV")

    def _op_Max(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        self._minmax(n, qp, "MAXIMUM")

    def _op_Min(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        self._minmax(n, qp, "MINIMUM")

    def _minmax(self, n: onnx.NodeProto, qp: _QP | None, builtin: str) -> None:
        ins = [i for i in n.input if i]
        if len(ins) == 1:
            self.alias(n.output[0], ins[0])
            return
        if len(ins) > 2:  # a chain of two-input ops, each on the output grid (exact: the order does not matter)
            cur = ins[0]
            for k, other in enumerate(ins[1:-1]):
                tmp = onnx.NodeProto()
                tmp.CopyFrom(n)
                tmp.name = f"{n.name}/{k}"
                del tmp.input[:], tmp.output[:]
                tmp.input.extend([cur, other])
                tmp.output.append(f"{n.name}/{k}")
                self.shapes[tmp.output[0]] = tuple(
                    np.broadcast_shapes(self.shapes.get(cur, ()), self.shapes.get(other, ()))
                )
                self._elementwise(tmp, qp, builtin, one_grid=True)
                cur = tmp.output[0]
            self._elementwise(n, qp, builtin, [cur, ins[-1]], one_grid=True)
            return
        self._elementwise(n, qp, builtin, one_grid=True)

    def _unary(self, n: onnx.NodeProto, qp: _QP | None, builtin: str, options: dict[str, Any] | None = None) -> None:
        x = n.input[0]
        v = self.vals[x]
        kind = "q" if qp is not None else "f"
        self.emit(n, builtin, [self.act(x, kind, v.nhwc)], qp, v.nhwc, options)
        if qp is not None and n.op_type in _FIXED_INT8:
            self.notes.append(
                f"node '{n.name}' ({n.op_type}) runs as int8 {builtin} with TFLite's fixed output grid "
                f"(scale {qp.scale:g}, zero point {qp.zp})"
            )

    def _op_Relu(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        if not self._absorb_activation(n, 0.0, None):
            self._unary(n, qp, "RELU")

    def _absorb_activation(self, n: onnx.NodeProto, lo: float | None, hi: float | None) -> bool:
        """An activation on an int8 input whose grid already lies inside [lo, hi] changes nothing: it is
        absorbed (the output is the input tensor). True when absorbed."""
        v = self.vals[n.input[0]]
        if not self.int8 or v.qp is None or n.name in self.fused:
            return False
        g_lo, g_hi = (-128 - v.qp.zp) * v.qp.scale, (127 - v.qp.zp) * v.qp.scale
        if (lo is not None and g_lo < lo) or (hi is not None and g_hi > hi):
            return False
        self.alias(n.output[0], n.input[0])
        self.absorbed.add(n.name)
        self.notes.append(f"node '{n.name}' ({n.op_type}) absorbed: its int8 input grid is already within its range")
        return True

    def _op_Sigmoid(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        self._unary(n, qp, "LOGISTIC")

    def _op_Tanh(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        self._unary(n, qp, "TANH")

    def _op_HardSwish(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        self._unary(n, qp, "HARD_SWISH")

    def _op_HardSigmoid(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        """max(0, min(1, alpha x + beta)); TFLite has no HARD_SIGMOID.

        int8 (alpha > 0): MUL by alpha onto the grid (alpha * s_in, z_in) -- exact, every product lands on it --
        then ADD beta onto the output grid with a fused RELU (the clamp at 0), and MINIMUM 1 on the output grid
        when that grid reaches above 1. Float: MUL, ADD, MAXIMUM, MINIMUM."""
        alpha, beta = float(node_attr(n, "alpha", 0.2)), float(node_attr(n, "beta", 0.5))
        x = n.input[0]
        v = self.vals[x]
        nhwc = v.nhwc
        shape = self.stored_shape(v, nhwc)
        if qp is not None and v.qp is not None and alpha > 0:
            g1 = _QP(float(np.float32(alpha * v.qp.scale)), v.qp.zp)
            t1 = self.b.add_tensor(f"{n.name}/alpha_x", shape, "int8", scale=[g1.scale], zero_point=[g1.zp])
            c_a = self._const_operand(f"{n.name}/alpha", np.array(alpha, np.float32), "q")
            self.b.add_op("MUL", [self.act(x, "q", nhwc), c_a], [t1])
            c_b = self._const_operand(f"{n.name}/beta", np.array(beta, np.float32), "q")
            t2 = self.b.add_tensor(f"{n.name}/plus_beta", shape, "int8", scale=[qp.scale], zero_point=[qp.zp])
            self.b.add_op("ADD", [t1, c_b], [t2], {"fused_activation_function": "RELU"})
            cur = t2
            if (127 - qp.zp) * qp.scale > 1.0 + qp.scale / 2:
                cur = self.b.add_tensor(f"{n.name}/min1", shape, "int8", scale=[qp.scale], zero_point=[qp.zp])
                self.b.add_op("MINIMUM", [t2, self._const_on_grid(f"{n.name}/one", np.array(1.0, np.float32), qp)],
                              [cur])  # fmt: skip
            self.vals[n.output[0]] = _Val(name=n.output[0], shape=v.shape, qp=qp, reps={("q", nhwc): cur})
            return
        cur = self.act(x, "f", nhwc)
        for k, (builtin, c) in enumerate((("MUL", alpha), ("ADD", beta), ("MAXIMUM", 0.0), ("MINIMUM", 1.0))):
            out = self.b.add_tensor(f"{n.name}/hardsigmoid{k}", shape, "float32")
            self.b.add_op(builtin, [cur, self.const_tensor(f"{n.name}/c{k}", np.array(c, np.float32))], [out])
            cur = out
        self.vals[n.output[0]] = _Val(name=n.output[0], shape=v.shape, reps={("f", nhwc): cur})
        if self.int8:
            self.notes.append(f"node '{n.name}' (HardSigmoid) runs in float as MUL, ADD, MAXIMUM, MINIMUM")

    def _op_LeakyRelu(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        self._unary(n, qp, "LEAKY_RELU", {"alpha": float(node_attr(n, "alpha", 0.01))})

    def _op_Clip(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        kind = self._activation_kind(n)
        if kind is not None:
            bounds = {"RELU": (0.0, None), "RELU6": (0.0, 6.0), "RELU_N1_TO_1": (-1.0, 1.0)}[kind]
            if not self._absorb_activation(n, *bounds):
                self._unary(n, qp, kind)
            return
        lo, hi = self._clip_bounds(n)
        x = n.input[0]
        v = self.vals[x]
        k = "q" if qp is not None else "f"
        cur = self.act(x, k, v.nhwc)
        if qp is not None:  # MAXIMUM/MINIMUM compare raw int8 values: input and bounds on the output grid (exact)
            cur = self._requantize(cur, v, qp)
        shape = self.stored_shape(v, v.nhwc)
        for bound, builtin in ((lo, "MAXIMUM"), (hi, "MINIMUM")):
            if bound is None:
                continue
            arr = np.array(bound, np.float32)
            if qp is not None:
                c = self._const_on_grid(f"{n.name}/{builtin.lower()}", arr, qp)
                out = self.b.add_tensor(
                    f"{n.name}/{builtin.lower()}", shape, "int8", scale=[qp.scale], zero_point=[qp.zp]
                )
            else:
                c = self.const_tensor(f"{n.name}/{builtin.lower()}", arr)
                out = self.b.add_tensor(f"{n.name}/{builtin.lower()}", shape, "float32")
            self.b.add_op(builtin, [cur, c], [out])
            cur = out
        self.vals[n.output[0]] = _Val(name=n.output[0], shape=v.shape, qp=qp, reps={(k, v.nhwc): cur})

    def _op_BatchNormalization(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        gamma, beta, mean, var = (self.const(i).astype(np.float64) for i in n.input[1:5])
        eps = float(node_attr(n, "epsilon", 1e-5))
        f = gamma / np.sqrt(var + eps)
        b = beta - mean * f
        x = n.input[0]
        rank = len(self.vals[x].shape)
        shape = (1, -1) + (1,) * (rank - 2)
        mul = f"{n.name}/scale"
        tmp = onnx.NodeProto()
        tmp.CopyFrom(n)
        del tmp.output[:]
        tmp.output.append(mul)
        self.shapes[mul] = self.shapes[n.output[0]]
        fused = self.fused.pop(n.name, None)
        self._elementwise(tmp, None, "MUL", [x, "s"], {"s": f.reshape(shape).astype(np.float32)})
        if fused:
            self.fused[n.name] = fused
        self._elementwise(n, None, "ADD", [mul, "b"], {"b": b.reshape(shape).astype(np.float32)})
        self.notes.append(f"node '{n.name}' (BatchNormalization, not after a Conv) runs as float MUL + ADD")

    # -- shape ops ------------------------------------------------------------------------------------------
    def _logical(self, x: str, kind: str) -> int:
        """``x`` with its elements in ONNX order (a stored NHWC tensor whose transpose moves no memory is
        used as is: a RESHAPE follows anyway)."""
        v = self.vals[x]
        if (kind, False) in v.reps or len(v.shape) != 4:
            return self.act(x, kind, False)
        if (kind, True) in v.reps and _memory_noop(self.stored_shape(v, True), list(_INV_P)):
            return v.reps[(kind, True)]
        return self.act(x, kind, False)

    def _reshape_to(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        x = n.input[0]
        kind = "q" if qp is not None else "f"
        out_shape = list(self.shapes[n.output[0]])
        src = self._logical(x, kind)
        self.emit(n, "RESHAPE", [src, self.int_tensor("shape", out_shape)], qp, False, {"new_shape": out_shape})

    def _op_Reshape(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        self._reshape_to(n, qp)

    def _op_Flatten(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        self._reshape_to(n, qp)

    def _op_Squeeze(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        self._reshape_to(n, qp)

    def _op_Unsqueeze(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        self._reshape_to(n, qp)

    def _op_Identity(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        self.alias(n.output[0], n.input[0])

    def _op_Transpose(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        x = n.input[0]
        v = self.vals[x]
        rank = len(v.shape)
        perm = list(node_attr(n, "perm", list(range(rank))[::-1]))
        kind = "q" if qp is not None else "f"
        in_nhwc = rank == 4 and ((kind, True) in v.reps or v.nhwc)
        src = self.act(x, kind, in_nhwc)
        inv_in = list(_INV_P) if in_nhwc else list(range(rank))
        out_shape = self.shapes[n.output[0]]
        best = None
        for out_nhwc in [True, False] if rank == 4 else [False]:
            p_out = list(_P) if out_nhwc else list(range(rank))
            total = [inv_in[perm[p_out[j]]] for j in range(rank)]
            stored_in = self.stored_shape(v, in_nhwc)
            if total == list(range(rank)):
                best = ("alias", out_nhwc, total)
                break
            if best is None and _memory_noop(stored_in, total):
                best = ("reshape", out_nhwc, total)
        if best is None:
            out_nhwc = rank == 4 and self._wants_nhwc(n.output[0])
            p_out = list(_P) if out_nhwc else list(range(rank))
            best = ("transpose", out_nhwc, [inv_in[perm[p_out[j]]] for j in range(rank)])
        how, out_nhwc, total = best
        if how == "alias":
            nv = _Val(name=n.output[0], shape=tuple(out_shape), qp=qp, reps={(kind, out_nhwc): src})
            self.vals[n.output[0]] = nv
            self.absorbed.add(n.name)
            return
        stored_out = [out_shape[i] for i in _P] if out_nhwc else list(out_shape)
        if how == "reshape":
            self.emit(
                n, "RESHAPE", [src, self.int_tensor("shape", stored_out)], qp, out_nhwc, {"new_shape": stored_out}
            )
        else:
            self.emit(n, "TRANSPOSE", [src, self.int_tensor("perm", total)], qp, out_nhwc)

    def _wants_nhwc(self, t: str, depth: int = 0) -> bool:
        """Whether the ops reading ``t`` (through Q/DQ) work in NHWC: then a TRANSPOSE producing ``t`` writes NHWC
        directly instead of writing ONNX order and transposing again."""
        for c in self.consumers.get(t, []):
            if c.op_type in ("QuantizeLinear", "DequantizeLinear") and depth < 4:
                if any(self._wants_nhwc(o, depth + 1) for o in c.output):
                    return True
            elif c.op_type in _NHWC_NATIVE or (c.op_type == "Softmax" and int(node_attr(c, "axis", -1)) % 4 == 1):
                return True
        return False

    def _axis(self, v: _Val, axis: int, nhwc: bool) -> int:
        axis %= len(v.shape)
        return _INV_P[axis] if nhwc else axis

    def _op_Concat(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        ins = [i for i in n.input if i]
        if all(self.is_const(i) for i in ins):
            raise self.unsupported(n, "all inputs are constant", "constant folding (fixed shapes)")
        rank = len(self.shapes[n.output[0]])
        nhwc = rank == 4 and any(self.vals[i].nhwc for i in ins if not self.is_const(i))
        kind = "q" if qp is not None else "f"
        srcs = []
        for i in ins:
            if self.is_const(i):  # int8: quantized on the output grid, exactly what Q(concat) does to it
                arr = np.asarray(self.const(i), np.float32)
                arr = arr.transpose(_P) if nhwc else arr
                srcs.append(
                    self._const_on_grid(f"{n.name}/{i}", arr, qp) if qp else self.const_tensor(f"{n.name}/{i}", arr)
                )
            else:
                srcs.append(self.act(i, kind, nhwc))
        if qp is not None:  # XNNPACK's int8 concatenation needs every input on the output's grid
            for k, i in enumerate(ins):
                if not self.is_const(i) and not qp.same(self.vals[i].qp):
                    shape = self.stored_shape(self.vals[i], nhwc)
                    t = self.b.add_tensor(f"{i}/requantized", shape, "int8", scale=[qp.scale], zero_point=[qp.zp])
                    self.b.add_op("QUANTIZE", [srcs[k]], [t])
                    srcs[k] = t
        axis = int(node_attr(n, "axis")) % rank
        axis = _INV_P[axis] if nhwc else axis
        self.emit(n, "CONCATENATION", srcs, qp, nhwc, {"axis": axis})

    def _op_Split(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        x = n.input[0]
        v = self.vals[x]
        kind = "q" if qp is not None else "f"
        nhwc = v.nhwc and len(v.shape) == 4
        src = self.act(x, kind, nhwc)
        axis = self._axis(v, int(node_attr(n, "axis", 0)), nhwc)
        outs = [o for o in n.output]
        sizes = [self.shapes[o][int(node_attr(n, "axis", 0)) % len(v.shape)] for o in outs]
        tensors = []
        for o in outs:
            nv = self.new_val(o, self.shapes[o], kind, nhwc, qp)
            tensors.append(nv.reps[(kind, nhwc)])
        if len(set(sizes)) == 1:  # equal parts: SPLIT, which the XNNPACK delegate takes (it refuses SPLIT_V)
            axis_t = self.b.add_tensor(f"{n.name}/axis", [], "int32", data=np.array(axis, np.int32))  # 0-D
            self.b.add_op("SPLIT", [axis_t, src], tensors, {"num_splits": len(outs)})
            return
        # Unequal parts: one SLICE per part. SPLIT_V would do it in one op, but the XNNPACK delegate refuses
        # SPLIT_V and takes SLICE (checked with ai-edge-litert 2.3.0), so the graph stays in one partition.
        shape = self.stored_shape(v, nhwc)
        start = 0
        for k, (size, t) in enumerate(zip(sizes, tensors, strict=True)):
            begin = [0] * len(shape)
            begin[axis] = start
            extent = list(shape)
            extent[axis] = size
            self.b.add_op("SLICE", [src, self.int_tensor(f"{n.name}/begin{k}", begin),
                                    self.int_tensor(f"{n.name}/size{k}", extent)], [t])  # fmt: skip
            start += size

    def _op_Slice(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        x = n.input[0]
        v = self.vals[x]
        rank = len(v.shape)
        if not all(self.is_const(i) for i in n.input[1:] if i):
            raise self.unsupported(n, "starts/ends computed at run time", "Slice with constant starts/ends/axes/steps")
        starts = self.const(n.input[1]).tolist()
        ends = self.const(n.input[2]).tolist()
        axes = self.const(n.input[3]).tolist() if len(n.input) > 3 and n.input[3] else list(range(len(starts)))
        steps = self.const(n.input[4]).tolist() if len(n.input) > 4 and n.input[4] else [1] * len(starts)
        begin, end, stride = [0] * rank, list(v.shape), [1] * rank
        for s, e, a, st in zip(starts, ends, axes, steps, strict=True):
            a %= rank
            d = v.shape[a]
            if st <= 0:
                raise self.unsupported(n, f"step {st}", "Slice with positive steps")
            s = max(0, min(d, s + d if s < 0 else s))
            e = max(0, min(d, e + d if e < 0 else e))
            begin[a], end[a], stride[a] = s, e, st
        kind = "q" if qp is not None else "f"
        nhwc = v.nhwc and rank == 4
        if nhwc:
            begin, end, stride = ([lst[i] for i in _P] for lst in (begin, end, stride))
        src = self.act(x, kind, nhwc)
        ins = [src, self.int_tensor(f"{n.name}/begin", begin), self.int_tensor(f"{n.name}/end", end),
               self.int_tensor(f"{n.name}/strides", stride)]  # fmt: skip
        self.emit(n, "STRIDED_SLICE", ins, qp, nhwc)

    def _op_Gather(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        """GATHER with constant indices (e.g. ``x[:, 0]`` in a detection head), on the ONNX-ordered tensor."""
        x, idx = n.input
        if not self.is_const(idx) or self.is_const(x):
            raise self.unsupported(n, "indices computed at run time", "Gather with constant indices, or Slice")
        v = self.vals[x]
        axis = int(node_attr(n, "axis", 0)) % len(v.shape)
        ind = self.const(idx).astype(np.int64)
        ind = np.where(ind < 0, ind + v.shape[axis], ind).astype(np.int32)
        kind = "q" if qp is not None else "f"
        src = self.act(x, kind, False)
        it = self.b.add_tensor(f"{n.name}/indices", ind.shape, "int32", data=ind)
        self.emit(n, "GATHER", [src, it], qp, False, {"axis": axis, "batch_dims": 0})

    def _op_LogSoftmax(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        self._op_Softmax(n, None, "LOG_SOFTMAX")

    def _op_LRN(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        """Across channels: ONNX divides by (bias + alpha/size * sum of squares over ``size`` channels)^beta;
        LOCAL_RESPONSE_NORMALIZATION sums over channel +- radius and multiplies by its alpha as it is (float)."""
        size = int(node_attr(n, "size"))
        if size % 2 == 0 or len(self.vals[n.input[0]].shape) != 4:
            raise self.unsupported(n, f"LRN size {size} (an even window is lopsided)", "LRN with an odd size on NCHW")
        if qp is not None:
            raise self.unsupported(n, "an int8 LRN (TFLite's kernel is float only)", "LRN kept float")
        opts = {"radius": (size - 1) // 2, "bias": float(node_attr(n, "bias", 1.0)),
                "alpha": float(node_attr(n, "alpha", 1e-4)) / size, "beta": float(node_attr(n, "beta", 0.75))}  # fmt: skip
        self.emit(n, "LOCAL_RESPONSE_NORMALIZATION", [self.act(n.input[0], "f", True)], None, True, opts)

    def _op_Softmax(self, n: onnx.NodeProto, qp: _QP | None, builtin: str = "SOFTMAX") -> None:
        x = n.input[0]
        v = self.vals[x]
        rank = len(v.shape)
        axis = int(node_attr(n, "axis", -1 if self._opset() >= 13 else 1)) % rank
        if self._opset() < 13 and axis != rank - 1:
            raise self.unsupported(n, "opset < 13 Softmax flattens from axis", "Softmax over the last axis (opset 13+)")
        kind = "q" if qp is not None else "f"
        for nhwc in [v.nhwc, not v.nhwc] if rank == 4 else [False]:
            if self._axis(v, axis, nhwc) == rank - 1:
                src = self.act(x, kind, nhwc)
                self.emit(n, builtin, [src], qp, nhwc, {"beta": 1.0} if builtin == "SOFTMAX" else None)
                if qp is not None:
                    self.notes.append(
                        f"node '{n.name}' (Softmax) runs as int8 with output scale 1/256, zero point -128"
                    )
                return
        # move the axis last, softmax, move it back
        perm = [d for d in range(rank) if d != axis] + [axis]
        inv = list(np.argsort(perm))
        src = self.act(x, kind, False)
        tshape = [v.shape[p] for p in perm]
        t1 = self._like(v, kind, tshape, f"{n.name}/axis_last")
        self.b.add_op("TRANSPOSE", [src, self.int_tensor("perm", perm)], [t1])
        qp2 = qp
        t2 = (
            self.b.add_tensor(f"{n.name}/softmax", tshape, "int8", scale=[qp2.scale], zero_point=[qp2.zp])
            if qp2 is not None
            else self.b.add_tensor(f"{n.name}/softmax", tshape, "float32")
        )
        self.b.add_op(builtin, [t1], [t2], {"beta": 1.0} if builtin == "SOFTMAX" else None)
        self.emit(n, "TRANSPOSE", [t2, self.int_tensor("perm", [int(i) for i in inv])], qp, False)
        self.notes.append(
            f"node '{n.name}' ({n.op_type} over axis {axis}): TRANSPOSE around {builtin} (last axis only)"
        )

    def _opset(self) -> int:
        return next((o.version for o in self.m.opset_import if o.domain in ("", "ai.onnx")), 0)

    def _op_Resize(
        self, n: onnx.NodeProto, qp: _QP | None, ctm_default: str | None = None, nearest_default: str | None = None
    ) -> None:
        if ctm_default is None and self._opset() < 11:  # Resize-10: asymmetric coordinates, nearest = floor
            ctm_default, nearest_default = "asymmetric", "floor"
        x = n.input[0]
        v = self.vals[x]
        if len(v.shape) != 4:
            raise self.unsupported(n, f"{len(v.shape)}-D resize", "4-D NCHW Resize")
        out_shape = self.shapes[n.output[0]]
        if list(out_shape[:2]) != list(v.shape[:2]):
            raise self.unsupported(n, "resizes batch or channels", "Resize of H and W only")
        mode = node_attr(n, "mode", b"nearest")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        ctm = node_attr(n, "coordinate_transformation_mode", ctm_default or b"half_pixel")
        ctm = ctm.decode() if isinstance(ctm, bytes) else ctm
        nm = node_attr(n, "nearest_mode", nearest_default or b"round_prefer_floor")
        nm = nm.decode() if isinstance(nm, bytes) else nm
        h, w = out_shape[2], out_shape[3]
        integer = h % v.shape[2] == 0 and w % v.shape[3] == 0
        if mode == "nearest":
            # TFLite: asymmetric -> floor(x / k); half_pixel_centers -> floor((x + 0.5) / k). ONNX agrees exactly:
            # asymmetric with nearest_mode floor (any scale), or round_prefer_floor at integer scales <= 2 (x / 2
            # is never above .5); half_pixel at an integer scale with round_prefer_floor/ceil ((x + 0.5) / k - 0.5
            # is never a tie). nearest_mode floor/ceil with half_pixel, or larger scales rounded, differ.
            ks = {out_shape[2] / v.shape[2], out_shape[3] / v.shape[3]}
            if ctm == "asymmetric" and (nm == "floor" or (integer and ks <= {1.0, 2.0} and nm == "round_prefer_floor")):
                opts = {"align_corners": False, "half_pixel_centers": False}
            elif ctm in ("half_pixel", "pytorch_half_pixel") and integer and nm.startswith("round_prefer"):
                opts = {"align_corners": False, "half_pixel_centers": True}
            elif ks == {1.0}:
                opts = {"align_corners": False, "half_pixel_centers": False}
            else:
                raise self.unsupported(
                    n, f"nearest with coordinate_transformation_mode={ctm}, nearest_mode={nm} at scale {sorted(ks)}",
                    "Resize nearest with asymmetric + floor, or half_pixel + round_prefer_floor at an integer scale",
                )  # fmt: skip
            builtin = "RESIZE_NEAREST_NEIGHBOR"
        elif mode == "linear":
            if int(node_attr(n, "antialias", 0)) and (h < v.shape[2] or w < v.shape[3]):
                # ONNX (opset 18) widens the filter by 1/scale when shrinking; RESIZE_BILINEAR has no such option
                # (ResizeBilinearOptions: align_corners, half_pixel_centers; check.no_builtin "Resize.antialias")
                raise self.unsupported(
                    n, "antialias=1 while downscaling (TFLite's RESIZE_BILINEAR has no antialias filter)",
                    "Resize linear with antialias=0, or a blur (a depthwise Conv) before the resize",
                )  # fmt: skip
            if ctm in ("half_pixel", "pytorch_half_pixel"):
                opts = {"align_corners": False, "half_pixel_centers": True}
            elif ctm == "align_corners":
                opts = {"align_corners": True, "half_pixel_centers": False}
            elif ctm == "asymmetric":
                opts = {"align_corners": False, "half_pixel_centers": False}
            else:
                raise self.unsupported(n, f"linear with {ctm}", "Resize linear with half_pixel or align_corners")
            builtin = "RESIZE_BILINEAR"
        else:
            raise self.unsupported(n, f"mode {mode}", "Resize nearest or linear")
        kind = "q" if qp is not None else "f"
        src = self.act(x, kind, True)
        self.emit(n, builtin, [src, self.int_tensor(f"{n.name}/size", [h, w])], qp, True, opts)

    def _op_Pad(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        x = n.input[0]
        v = self.vals[x]
        rank = len(v.shape)
        mode = node_attr(n, "mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        pads = node_attr(n, "pads")
        if pads is None:
            if not self.is_const(n.input[1]):
                raise self.unsupported(n, "pads computed at run time", "Pad with constant pads")
            pads = self.const(n.input[1]).tolist()
        value = 0.0
        if len(n.input) > 2 and n.input[2]:
            value = float(self.const(n.input[2]))
        elif node_attr(n, "value") is not None:
            value = float(node_attr(n, "value"))
        if len(n.input) > 3 and n.input[3]:
            raise self.unsupported(n, "axes input", "Pad with pads for every axis")
        pairs = [[int(pads[i]), int(pads[i + rank])] for i in range(rank)]
        if any(p < 0 for pr in pairs for p in pr):
            raise self.unsupported(n, "negative pads (cropping)", "Slice")
        kind = "q" if qp is not None else "f"
        nhwc = v.nhwc and rank == 4
        if nhwc:
            pairs = [pairs[i] for i in _P]
        src = self.act(x, kind, nhwc)
        pt = self.b.add_tensor(f"{n.name}/paddings", [rank, 2], "int32", data=np.array(pairs, np.int32))
        if mode == "reflect":
            self.emit(n, "MIRROR_PAD", [src, pt], qp, nhwc, {"mode": "REFLECT"})
        elif mode == "constant" and value == 0.0:
            self.emit(n, "PAD", [src, pt], qp, nhwc)
        elif mode == "constant":
            if qp is not None:
                q = int(np.clip(round(value / qp.scale) + qp.zp, -128, 127))
                cv = self.b.add_tensor(
                    f"{n.name}/value", [], "int8", data=np.array(q, np.int8), scale=[qp.scale], zero_point=[qp.zp]
                )
            else:
                cv = self.b.add_tensor(f"{n.name}/value", [], "float32", data=np.array(value, np.float32))
            self.emit(n, "PADV2", [src, pt, cv], qp, nhwc)
        else:
            raise self.unsupported(n, f"mode {mode}", "Pad with mode constant or reflect")

    # -- coverage for exported models (round 2) --------------------------------------------------------------
    def _kind(self, name: str) -> str:
        """The value kind of activation ``name`` for an op that reads it as is: "f" for float and int8 values
        (which the op reads as float unless it runs int8), "b" bool, "i" int32."""
        k = next(iter(self.vals[name].reps))[0]
        return "f" if k == "q" else k

    def _same_layout(self, n: onnx.NodeProto, qp: _QP | None, builtin: str, extra: Sequence[int] = (),
                     options: dict[str, Any] | None = None, kind: str | None = None) -> None:  # fmt: skip
        """An op that works elementwise on its first input in whatever layout it is stored."""
        x = n.input[0]
        v = self.vals[x]
        kind = kind or ("q" if qp is not None else self._kind(x))
        self.emit(n, builtin, [self.act(x, kind, v.nhwc), *extra], qp, v.nhwc, options, out_kind=kind)

    def _op_Neg(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        self._same_layout(n, None, "NEG", kind="f" if self._kind(n.input[0]) == "f" else "i")

    def _op_Abs(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        self._same_layout(n, None, "ABS", kind="f")

    def _op_Sqrt(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        self._same_layout(n, None, "SQRT", kind="f")

    def _op_Exp(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        self._same_layout(n, None, "EXP", kind="f")

    def _op_Log(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        self._same_layout(n, None, "LOG", kind="f")

    def _op_Not(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        self._same_layout(n, None, "LOGICAL_NOT", kind="b")

    def _op_Erf(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        raise self.unsupported(
            n, "TFLite has no ERF (only the whole GELU x * 0.5 * (1 + erf(x / sqrt(2))) is matched)",
            "Gelu (opset 20), or the exact GELU pattern Div(x, sqrt 2) -> Erf -> Add 1 -> Mul x -> Mul 0.5",
        )  # fmt: skip

    def _op_Gelu(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        approx = node_attr(n, "approximate", b"none")
        approx = approx.decode() if isinstance(approx, bytes) else approx
        self._same_layout(n, None, "GELU", options={"approximate": approx == "tanh"}, kind="f")

    def _op_Elu(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        if float(node_attr(n, "alpha", 1.0)) != 1.0:
            raise self.unsupported(n, f"alpha {node_attr(n, 'alpha')} (TFLite ELU has alpha 1)", "Elu with alpha 1")
        self._same_layout(n, None, "ELU", kind="f")

    def _op_Pow(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        x, e = n.input
        if self.is_const(e) and self.const(e).size == 1:
            p = float(self.const(e).reshape(()))
            if p == 2.0 and qp is not None:  # TFLite's SQUARE is float only: int8 MUL(x, x) onto the output grid
                v = self.vals[x]
                src = self.act(x, "q", v.nhwc)
                self.emit(n, "MUL", [src, src], qp, v.nhwc)
                return
            if p == 2.0:
                self._same_layout(n, None, "SQUARE", kind="f")
                return
            if p == 0.5:
                self._same_layout(n, None, "SQRT", kind="f")
                return
            if p == 1.0:
                self.alias(n.output[0], x)
                return
        self._elementwise(n, None, "POW")

    def _op_PRelu(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        if not self.is_const(n.input[1]):
            raise self.unsupported(n, "slope computed at run time", "PRelu with a constant slope")
        self._elementwise(n, qp, "PRELU")

    def _compare(self, n: onnx.NodeProto, builtin: str) -> None:
        self._elementwise(n, None, builtin, in_kind=self._kind(self._acts(n)[0]), out_kind="b")

    def _op_Equal(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        self._compare(n, "EQUAL")

    def _op_Greater(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        self._compare(n, "GREATER")

    def _op_Less(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        self._compare(n, "LESS")

    def _op_GreaterOrEqual(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        self._compare(n, "GREATER_EQUAL")

    def _op_LessOrEqual(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        self._compare(n, "LESS_EQUAL")

    def _op_And(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        self._elementwise(n, None, "LOGICAL_AND", in_kind="b", out_kind="b")

    def _op_Or(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        self._elementwise(n, None, "LOGICAL_OR", in_kind="b", out_kind="b")

    def _op_Where(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        """SELECT_V2 (broadcasting): the condition as bool, both branches float."""
        out_shape = self.shapes[n.output[0]]
        rank = len(out_shape)
        acts = self._acts(n)
        if not acts:
            raise self.unsupported(n, "all inputs are constant", "constant folding (fixed shapes)")
        nhwc = rank == 4 and any(self.vals[a].nhwc and len(self.vals[a].shape) == 4 for a in acts)
        ins = []
        for k, i in enumerate(n.input):
            kind = "b" if k == 0 else "f"
            if self.is_const(i):
                arr = np.asarray(self.const(i), _KIND_DTYPE[kind])
                arr = arr.reshape((1,) * (rank - arr.ndim) + arr.shape)
                if nhwc:
                    arr = arr.transpose(_P)
                ins.append(self.b.add_tensor(f"{n.name}/{i}", arr.shape, _KIND_DTYPE[kind], data=arr))
            elif len(self.vals[i].shape) == rank:
                ins.append(self.act(i, kind, nhwc))
            else:
                ins.append(self._broadcast_act(n, i, kind, rank, nhwc))
        self.emit(n, "SELECT_V2", ins, None, nhwc)

    def _op_Cast(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        to = int(node_attr(n, "to"))
        T = onnx.TensorProto
        kinds = {T.FLOAT: "f", T.INT32: "i", T.INT64: "i", T.BOOL: "b", T.FLOAT16: "f", T.DOUBLE: "f"}
        if to not in kinds:
            raise self.unsupported(n, f"cast to {T.DataType.Name(to)}", "Cast to float, int32/int64 or bool")
        src = self._kind(n.input[0])
        if kinds[to] == src:
            self.alias(n.output[0], n.input[0])
            self.absorbed.add(n.name)
            if to in (T.FLOAT16, T.DOUBLE):
                self.notes.append(f"node '{n.name}' (Cast to {T.DataType.Name(to)}) kept in float32")
            return
        self._same_layout(n, None, "CAST", kind=src)
        v = self.vals[n.output[0]]
        (_k, nh), idx = next(iter(v.reps.items()))
        self.b.set_tensor_dtype(idx, _KIND_DTYPE[kinds[to]])
        v.reps = {(kinds[to], nh): idx}

    def _op_ReduceSum(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        if node_attr(n, "noop_with_empty_axes", 0) and not self._reduce_axes_given(n):
            self.alias(n.output[0], n.input[0])
            return
        self._reduce(n, None, "SUM", self._reduce_axes(n), bool(node_attr(n, "keepdims", 1)))

    def _reduce_axes_given(self, n: onnx.NodeProto) -> bool:
        return node_attr(n, "axes") is not None or (len(n.input) > 1 and bool(n.input[1]))

    def _op_Expand(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        """BROADCAST_TO the output shape (in the input's stored layout when both are 4-D)."""
        x = n.input[0]
        v = self.vals[x]
        out_shape = list(self.shapes[n.output[0]])
        if list(v.shape) == out_shape:
            self.alias(n.output[0], x)
            self.absorbed.add(n.name)
            return
        kind = "q" if qp is not None else self._kind(x)
        nhwc = v.nhwc and len(v.shape) == 4 and len(out_shape) == 4
        src = self.act(x, kind, nhwc)
        if not nhwc and len(v.shape) < len(out_shape):
            src = self._broadcast_act(n, x, kind, len(out_shape), False)
        target = [out_shape[i] for i in _P] if nhwc else out_shape
        self.emit(n, "BROADCAST_TO", [src, self.int_tensor(f"{n.name}/shape", target)], qp, nhwc, out_kind=kind)

    def _op_Tile(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        x, reps = n.input[0], n.input[1]
        if not self.is_const(reps):
            raise self.unsupported(n, "repeats computed at run time", "Tile with constant repeats")
        v = self.vals[x]
        mult = [int(r) for r in self.const(reps).tolist()]
        kind = "q" if qp is not None else self._kind(x)
        nhwc = v.nhwc and len(v.shape) == 4
        if nhwc:
            mult = [mult[i] for i in _P]
        src = self.act(x, kind, nhwc)
        self.emit(n, "TILE", [src, self.int_tensor(f"{n.name}/multiples", mult)], qp, nhwc, out_kind=kind)

    def _op_SpaceToDepth(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        self._space_depth(n, qp, "SPACE_TO_DEPTH")

    def _op_DepthToSpace(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        mode = node_attr(n, "mode", b"DCR")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if mode == "CRD":
            # TFLite's DEPTH_TO_SPACE reads channels as (block_y, block_x, C) = ONNX DCR; CRD (PyTorch's
            # PixelShuffle) orders them (C, block_y, block_x): a GATHER on the channel axis reorders them first
            x = n.input[0]
            v = self.vals[x]
            if len(v.shape) != 4:
                raise self.unsupported(n, "input is not 4-D", "DepthToSpace on an NCHW map")
            bs = int(node_attr(n, "blocksize"))
            c = v.shape[1] // (bs * bs)
            perm = np.array([ch * bs * bs + k for k in range(bs * bs) for ch in range(c)], np.int32)
            kind = "q" if qp is not None else "f"
            src = self.act(x, kind, True)
            it = self.b.add_tensor(f"{n.name}/crd_to_dcr", [len(perm)], "int32", data=perm)
            g = self._like(v, kind, self.stored_shape(v, True), f"{n.name}/dcr")
            self.b.add_op("GATHER", [src, it], [g], {"axis": 3, "batch_dims": 0})
            self.emit(n, "DEPTH_TO_SPACE", [g], qp, True, {"block_size": bs})
            self.notes.append(f"node '{n.name}' (DepthToSpace CRD): channels reordered by GATHER, then DEPTH_TO_SPACE")
            return
        if mode != "DCR":
            raise self.unsupported(n, f"mode {mode}", "DepthToSpace mode DCR or CRD")
        self._space_depth(n, qp, "DEPTH_TO_SPACE")

    def _space_depth(self, n: onnx.NodeProto, qp: _QP | None, builtin: str) -> None:
        x = n.input[0]
        if len(self.vals[x].shape) != 4:
            raise self.unsupported(n, "input is not 4-D", f"{n.op_type} on an NCHW map")
        kind = "q" if qp is not None else "f"
        bs = int(node_attr(n, "blocksize"))
        self.emit(n, builtin, [self.act(x, kind, True)], qp, True, {"block_size": bs})

    def _op_Upsample(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        # opset 7-9 Upsample = Resize with coordinate_transformation_mode asymmetric (nearest: floor)
        self._op_Resize(n, qp, ctm_default="asymmetric", nearest_default="floor")

    def _normalize(
        self, n: onnx.NodeProto, src: int, shape: list[int], axes: list[int], affine: list[np.ndarray | None]
    ) -> int:
        """Float (x - mean) * rsqrt(var + eps) over ``axes`` of the stored tensor ``src``, then MUL by ``affine[0]``
        and ADD ``affine[1]`` where given (already broadcastable): MEAN, SUB, MUL, MEAN, ADD, RSQRT, MUL."""
        eps = float(node_attr(n, "epsilon", 1e-5))
        red = [1 if i in axes else d for i, d in enumerate(shape)]
        ax = self.int_tensor(f"{n.name}/axes", axes)

        def t(name: str, shp: Sequence[int]) -> int:
            return self.b.add_tensor(f"{n.name}/{name}", shp, "float32")

        mean, d, sq, var = t("mean", red), t("centered", shape), t("squared", shape), t("var", red)
        self.b.add_op("MEAN", [src, ax], [mean], {"keep_dims": True})
        self.b.add_op("SUB", [src, mean], [d])
        self.b.add_op("MUL", [d, d], [sq])
        self.b.add_op("MEAN", [sq, ax], [var], {"keep_dims": True})
        ve, rs, cur = t("var_eps", red), t("rsqrt", red), t("normalized", shape)
        self.b.add_op("ADD", [var, self.const_tensor(f"{n.name}/eps", np.array(eps, np.float32))], [ve])
        self.b.add_op("RSQRT", [ve], [rs])
        self.b.add_op("MUL", [d, rs], [cur])
        for k, (c, builtin) in enumerate(zip(affine, ("MUL", "ADD"), strict=True)):
            if c is not None:
                out = t(f"affine{k}", shape)
                self.b.add_op(builtin, [cur, self.const_tensor(f"{n.name}/affine{k}_c", c)], [out])
                cur = out
        return cur

    def _op_LayerNormalization(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        """Float MEAN, SUB, MUL, MEAN, ADD eps, RSQRT, MUL, MUL gamma, ADD beta over the trailing axes."""
        v = self.vals[n.input[0]]
        rank = len(v.shape)
        axis = int(node_attr(n, "axis", -1)) % rank
        if len([o for o in n.output if o]) > 1:
            raise self.unsupported(n, "Mean/InvStdDev outputs", "LayerNormalization with one output")
        affine: list[np.ndarray | None] = []
        for i in (1, 2):
            c = np.asarray(self.const(n.input[i]), np.float32) if len(n.input) > i and n.input[i] else None
            affine.append(None if c is None else c.reshape((1,) * (rank - c.ndim) + c.shape))
        cur = self._normalize(n, self.act(n.input[0], "f", False), list(v.shape), list(range(axis, rank)), affine)
        self.vals[n.output[0]] = _Val(name=n.output[0], shape=v.shape, reps={("f", False): cur})
        self.notes.append(f"node '{n.name}' (LayerNormalization) runs in float as MEAN/SUB/MUL/RSQRT")

    def _op_InstanceNormalization(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        """Per sample and channel over the spatial axes (style-transfer networks): the normalization above, then
        the per-channel scale and bias; a 4-D input stays NHWC (axes 1 and 2)."""
        v = self.vals[n.input[0]]
        rank = len(v.shape)
        if rank < 3:
            raise self.unsupported(n, f"a rank-{rank} input", "InstanceNormalization on [N, C, ...]")
        nhwc = rank == 4
        per_channel = [1, 1, 1, v.shape[1]] if nhwc else [1, v.shape[1]] + [1] * (rank - 2)
        affine = [np.asarray(self.const(n.input[i]), np.float32).reshape(per_channel) for i in (1, 2)]
        spatial = [1, 2] if nhwc else list(range(2, rank))
        cur = self._normalize(n, self.act(n.input[0], "f", nhwc), self.stored_shape(v, nhwc), spatial, affine)
        self.vals[n.output[0]] = _Val(name=n.output[0], shape=v.shape, reps={("f", nhwc): cur})
        self.notes.append(f"node '{n.name}' (InstanceNormalization) runs in float as MEAN/SUB/MUL/RSQRT")

    def _via_2d(self, n: onnx.NodeProto, qp: _QP | None, handler: Any) -> None:
        """A 1-D Conv / pooling [N, C, L] as its 2-D form on [N, C, 1, L] (RESHAPE in, RESHAPE out)."""
        x, y = n.input[0], n.output[0]
        v = self.vals[x]
        nb, c, length = v.shape
        wname = n.input[1] if n.op_type == "Conv" else None
        wq = self.cdq.get(wname) if wname else None
        int8_w = wq is not None and wq.q.dtype == np.int8 and not np.any(wq.zp != 0)
        kind = "q" if qp is not None and (wname is None or int8_w) else "f"
        qp = qp if kind == "q" else None
        x4, y4 = f"{n.name}/in_2d", f"{n.name}/out_2d"
        shape4 = [nb, c, 1, length]
        t = self._like(v, kind, shape4, x4)
        self.b.add_op("RESHAPE", [self.act(x, kind, False), self.int_tensor("shape", shape4)], [t],
                      {"new_shape": shape4})  # fmt: skip
        self.vals[x4] = _Val(name=x4, shape=tuple(shape4), qp=v.qp if kind == "q" else None, reps={(kind, False): t})
        tmp = onnx.NodeProto()
        tmp.CopyFrom(n)
        del tmp.input[:], tmp.output[:], tmp.attribute[:]
        tmp.input.extend([x4, *n.input[1:]])
        tmp.output.append(y4)
        for a in n.attribute:
            val = helper.get_attribute_value(a)
            if a.name in ("kernel_shape", "strides", "dilations"):
                val = [1, *val]
            elif a.name == "pads":
                val = [0, val[0], 0, val[1]]
            tmp.attribute.append(helper.make_attribute(a.name, val.decode() if isinstance(val, bytes) else val))
        if wname is not None:
            w4 = f"{wname}/2d"
            if wq is not None:
                self.cdq[w4] = _ConstDQ(q=wq.q[:, :, None, :], scale=wq.scale, zp=wq.zp, axis=wq.axis)
            else:
                w = self.const(wname)
                self.add_const(w4, w.reshape(w.shape[0], w.shape[1], 1, w.shape[2]))
            tmp.input[1] = w4
        out3 = self.shapes[y]
        self.shapes[y4] = (out3[0], out3[1], 1, out3[2])
        handler(tmp, qp)
        yv = self.vals[y4]
        src = self._logical(y4, kind)
        out = self.new_val(y, out3, kind, False, yv.qp)
        self.b.add_op("RESHAPE", [src, self.int_tensor("shape", list(out3))], [out.reps[(kind, False)]],
                      {"new_shape": list(out3)})  # fmt: skip
        self.notes.append(f"node '{n.name}' ({n.op_type} 1-D) runs as its 2-D form with H = 1")

    def _scalar(self, name: str) -> float | None:
        if not self.is_const(name):
            return None
        c = np.asarray(self.const(name))
        return float(c.reshape(())) if c.size == 1 else None

    def _match_gelu(self) -> None:
        """The exact GELU as PyTorch exports it before opset 20 (graph.passes.gelu_erf_chains) becomes one Gelu
        node (TFLite GELU)."""
        nodes = [n for n in self.m.graph.node if n.name not in self._skip]
        for chain in gelu_erf_chains(nodes, self._scalar, self.graph_outputs):
            *gone, final = chain.nodes
            for g in gone:
                self._skip.add(g.name)
                self.absorbed.add(g.name)
            final.op_type = "Gelu"
            del final.input[:], final.attribute[:]
            final.input.append(chain.x)
            self.notes.append(
                f"GELU pattern (Erf '{chain.nodes[1].name}') ending at '{final.name}' runs as TFLite GELU"
            )

    def _op_ReduceMin(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        self._reduce(n, qp, "REDUCE_MIN", self._reduce_axes(n), bool(node_attr(n, "keepdims", 1)))

    def _op_ReduceProd(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        self._reduce(n, None, "REDUCE_PROD", self._reduce_axes(n), bool(node_attr(n, "keepdims", 1)))

    def _op_ReduceL2(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        """sqrt(sum(x^2)): float SQUARE, SUM, SQRT."""
        x = n.input[0]
        v = self.vals[x]
        sq = f"{n.name}/square"
        self.vals[sq] = _Val(
            name=sq, shape=v.shape, reps={("f", v.nhwc): self._like(v, "f", self.stored_shape(v, v.nhwc), sq)}
        )
        self.b.add_op("SQUARE", [self.act(x, "f", v.nhwc)], [self.vals[sq].reps[("f", v.nhwc)]])
        summed = f"{n.name}/sum"
        tmp = onnx.NodeProto()
        tmp.CopyFrom(n)
        del tmp.input[:], tmp.output[:]
        tmp.input.extend([sq, *n.input[1:]])
        tmp.output.append(summed)
        self.shapes[summed] = self.shapes[n.output[0]]
        self._reduce(tmp, None, "SUM", self._reduce_axes(n), bool(node_attr(n, "keepdims", 1)))
        sv = self.vals[summed]
        self.emit(n, "SQRT", [self.act(summed, "f", sv.nhwc)], None, sv.nhwc)

    def _op_ArgMax(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        self._arg(n, "ARG_MAX")

    def _op_ArgMin(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        self._arg(n, "ARG_MIN")

    def _arg(self, n: onnx.NodeProto, builtin: str) -> None:
        """ARG_MAX / ARG_MIN (int64 indices, as ONNX); an int8 input is compared as is (quantization is
        monotonic); keepdims=1 adds a RESHAPE."""
        if node_attr(n, "select_last_index", 0):
            raise self.unsupported(n, "select_last_index=1", f"{n.op_type} with select_last_index=0 (first index)")
        x = n.input[0]
        v = self.vals[x]
        rank = len(v.shape)
        axis = int(node_attr(n, "axis", 0)) % rank
        keep = bool(node_attr(n, "keepdims", 1))
        kind = "q" if ("q", v.nhwc) in v.reps or ("q", not v.nhwc) in v.reps else "f"
        nhwc = v.nhwc and rank == 4 and not keep
        if nhwc and [_P[d] for d in range(4) if d != _INV_P[axis]] != sorted(
            _P[d] for d in range(4) if d != _INV_P[axis]
        ):
            nhwc = False
        nhwc = nhwc or (v.nhwc and rank == 4 and keep)
        src = self.act(x, kind, nhwc)
        ax = self.b.add_tensor(
            f"{n.name}/axis", [1], "int32", data=np.array([_INV_P[axis] if nhwc else axis], np.int32)
        )
        out_shape = list(self.shapes[n.output[0]])
        if not keep:
            self.emit(n, builtin, [src, ax], None, False, {"output_type": "INT64"}, out_kind="l")
            return
        reduced = [d for i, d in enumerate(out_shape) if i != axis]
        stored = [d for i, d in enumerate(self.stored_shape(v, nhwc)) if i != (_INV_P[axis] if nhwc else axis)]
        t = self.b.add_tensor(f"{n.name}/reduced", stored, "int64")
        self.b.add_op(builtin, [src, ax], [t], {"output_type": "INT64"})
        full = [out_shape[i] for i in _P] if nhwc else out_shape
        del reduced
        self.emit(n, "RESHAPE", [t, self.int_tensor("shape", full)], None, nhwc, {"new_shape": full}, out_kind="l")

    def _op_Floor(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        self._same_layout(n, None, "FLOOR", kind="f")

    def _op_Ceil(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        self._same_layout(n, None, "CEIL", kind="f")

    def _op_Round(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        self._same_layout(n, None, "ROUND", kind="f")

    def _op_Reciprocal(self, n: onnx.NodeProto, qp: _QP | None) -> None:
        x = n.input[0]
        self._elementwise(n, None, "DIV", [f"{n.name}/one", x], {f"{n.name}/one": np.array(1.0, np.float32)})
