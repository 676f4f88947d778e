"""A TFLite flatbuffer builder and reader over the schema that ships with ``ai-edge-litert``.

``ai_edge_litert.schema_py_generated`` is the flatbuffer schema (object API: ``ModelT``, ``OperatorT``, ...)
generated from LiteRT's ``schema.fbs``; it is a schema, not a runtime, so this module may import it. The
file layout follows the schema's comments (LiteRT ``tflite/converter/schema/schema.fbs``, 2.3.0):

- file identifier ``"TFL3"``, schema version 3;
- buffer 0 is the empty sentinel; a tensor without constant data points at it;
- constant data lives in ``buffers[i].data`` (aligned to 16 bytes, as ``force_align: 16`` asks);
- quantization is per tensor (one scale) or per channel (one scale per slice of ``quantized_dimension``);
- an operator code carries ``deprecated_builtin_code = min(code, 127)`` and the real ``builtin_code``
  (codes >= 127 only fit the new field, older readers look at the deprecated one);
- metadata entries name a buffer.

A single-operator int8 file (e.g. for Vela or XNNPACK ground truth)::

    b = TFLiteBuilder()
    x = b.add_tensor("x", [1, 8, 8, 4], "int8", scale=[0.05], zero_point=[-3])
    w = b.add_tensor("w", [6, 3, 3, 4], "int8", data=wq, scale=w_scales, zero_point=[0] * 6)  # per channel, dim 0
    bias = b.add_tensor("b", [6], "int32", data=bq, scale=0.05 * w_scales, zero_point=[0] * 6)
    y = b.add_tensor("y", [1, 8, 8, 6], "int8", scale=[0.2], zero_point=[5])
    b.add_op("CONV_2D", [x, w, bias], [y], {"padding": "SAME", "stride_h": 1, "stride_w": 1})
    b.set_io([x], [y])
    data = b.to_bytes()

Arrays passed as ``data`` are referenced, not copied, until ``to_bytes``: do not modify them in between.

Op versions follow LiteRT's ``op_version.cc`` for the cases this project emits (int8 kernels need the
version that introduced them, otherwise an old reader would refuse them); everything else is version 1.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgecnn.errors import BadInputError, MissingRuntimeError, ModelError

try:  # the schema ships with the `litert` extra (ai-edge-litert >= 1.2 has every field used here)
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema
except ImportError:  # pragma: no cover - exercised only without the extra
    raise MissingRuntimeError("the TFLite schema (ai-edge-litert)", "pip install 'edgecnn[litert]'") from None

FILE_IDENTIFIER = b"TFL3"
SCHEMA_VERSION = 3
_ALIGN = 16

DTYPES: dict[str, int] = {
    "float32": schema.TensorType.FLOAT32,
    "float16": schema.TensorType.FLOAT16,
    "int32": schema.TensorType.INT32,
    "uint8": schema.TensorType.UINT8,
    "int64": schema.TensorType.INT64,
    "bool": schema.TensorType.BOOL,
    "int16": schema.TensorType.INT16,
    "int8": schema.TensorType.INT8,
    "float64": schema.TensorType.FLOAT64,
    "uint32": schema.TensorType.UINT32,
    "uint16": schema.TensorType.UINT16,
}
_DTYPE_NAMES = {v: k for k, v in DTYPES.items()}

_BUILTIN_CODES: dict[str, int] = {
    k: v for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_") and isinstance(v, int)
}
_OPTION_TYPES: dict[str, int] = {
    k: v for k, v in vars(schema.BuiltinOptions).items() if not k.startswith("_") and isinstance(v, int)
}

# Builtins whose options table is not CamelCase(builtin) + "Options".
_OPTIONS_OF: dict[str, str | None] = {
    "AVERAGE_POOL_2D": "Pool2DOptions",
    "MAX_POOL_2D": "Pool2DOptions",
    "L2_POOL_2D": "Pool2DOptions",
    "CONCATENATION": "ConcatenationOptions",
    "CONV_2D": "Conv2DOptions",
    "CONV_3D": "Conv3DOptions",
    "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions",
    "MEAN": "ReducerOptions",
    "SUM": "ReducerOptions",
    "REDUCE_MAX": "ReducerOptions",
    "REDUCE_MIN": "ReducerOptions",
    "REDUCE_PROD": "ReducerOptions",
    "MAXIMUM": "MaximumMinimumOptions",
    "MINIMUM": "MaximumMinimumOptions",
    "RESIZE_BILINEAR": "ResizeBilinearOptions",
    "RESIZE_NEAREST_NEIGHBOR": "ResizeNearestNeighborOptions",
    "SPLIT_V": "SplitVOptions",
    "TRANSPOSE_CONV": "TransposeConvOptions",
    "LEAKY_RELU": "LeakyReluOptions",
    "HARD_SWISH": "HardSwishOptions",
    "BATCH_MATMUL": "BatchMatMulOptions",
    "LOG_SOFTMAX": "LogSoftmaxOptions",
    "PADV2": "PadV2Options",
    "SPACE_TO_DEPTH": "SpaceToDepthOptions",
    "DEPTH_TO_SPACE": "DepthToSpaceOptions",
    "SQUARED_DIFFERENCE": "SquaredDifferenceOptions",
    "ARG_MAX": "ArgMaxOptions",
    "ARG_MIN": "ArgMinOptions",
    "GATHER_ND": "GatherNdOptions",
    "SELECT_V2": "SelectV2Options",
    "MIRROR_PAD": "MirrorPadOptions",
    "BROADCAST_TO": "BroadcastToOptions",
    # ops with no options table
    "LOGISTIC": None,
    "RELU": None,
    "RELU6": None,
    "RELU_N1_TO_1": None,
    "TANH": None,
    "PRELU": None,
    "ELU": None,
}

# Option fields whose value is an enum, given by name in ``add_op(options=...)``.
_ENUM_FIELDS: dict[str, type] = {
    "padding": schema.Padding,
    "fused_activation_function": schema.ActivationFunctionType,
    "weights_format": schema.FullyConnectedOptionsWeightsFormat,
    "mode": schema.MirrorPadMode,
    "in_data_type": schema.TensorType,
    "out_data_type": schema.TensorType,
    "output_type": schema.TensorType,
    "quantized_bias_type": schema.TensorType,
    "idx_out_type": schema.TensorType,
    "kernel_type": schema.LSTMKernelType,
    "combiner": schema.CombinerType,
    "reduce_function": schema.ReduceWindowFunction,
}


_INT32 = (-(2**31), 2**31 - 1)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _options_name(builtin: str) -> str | None:
    if builtin in _OPTIONS_OF:
        return _OPTIONS_OF[builtin]
    guess = "".join(p[:1] + p[1:].lower() for p in builtin.split("_")) + "Options"
    return guess if guess in _OPTION_TYPES else None


def op_version(builtin: str, input_dtype: str | None, *, per_channel: bool = False, options=None) -> int:
    """The op version LiteRT's ``op_version.cc`` gives this builtin for these input types (subset).

    Source: google-ai-edge/LiteRT ``tflite/tools/versioning/op_version.cc`` (2.x). Only the cases this
    project writes are listed; the rest are version 1, which every reader accepts. Every version here is
    within the range LiteRT's ``BuiltinOpResolver`` registers (``tflite/core/kernels/register.cc``: e.g.
    HARD_SWISH, RESHAPE and PRELU register version 1 only, so they stay at 1 for int8 too); a version
    outside that range makes the interpreter refuse the file.
    """
    opts = dict(options or {})
    dt = input_dtype
    if builtin == "CONV_2D":
        if dt == "int8":
            return 3
        if dt == "float32" and opts.get("dilation_h_factor", 1) != 1:
            return 2
        return 1
    if builtin == "DEPTHWISE_CONV_2D":
        if dt == "int8":
            return 3
        if opts.get("dilation_h_factor", 1) != 1 or opts.get("dilation_w_factor", 1) != 1:
            return 2
        return 1
    if builtin == "BROADCAST_TO":  # registered from version 2 (version 1 was the Flex op)
        return 2
    if builtin == "FULLY_CONNECTED":
        return 4 if dt == "int8" else 1
    if builtin == "DEQUANTIZE":
        if dt == "float16":
            return 3
        return 2 if dt == "int8" else 1
    if builtin == "QUANTIZE":
        return 2 if dt in ("int8", "uint8") else 1
    if builtin in (
        "ADD",
        "SUB",
        "MUL",
        "AVERAGE_POOL_2D",
        "MAX_POOL_2D",
        "CONCATENATION",
        "SOFTMAX",
        "LOGISTIC",
        "TANH",
        "RESIZE_NEAREST_NEIGHBOR",
        "RESIZE_BILINEAR",
        "PAD",
        "PADV2",
        "MEAN",
        "TRANSPOSE",
        "SPLIT",
        "SPLIT_V",
        "STRIDED_SLICE",
        "SLICE",
        "MAXIMUM",
        "MINIMUM",
        "RELU",
        "RELU6",
        "LEAKY_RELU",
        "GATHER",
        "REDUCE_MAX",
        "SUM",
        "DIV",
    ):
        return 2 if dt == "int8" else 1
    return 1


@dataclass(frozen=True, kw_only=True)
class TFLiteTensor:
    """One tensor of a TFLite subgraph, as read back by :func:`read_tflite`."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: tuple[float, ...] = ()
    zero_point: tuple[int, ...] = ()
    quantized_dimension: int = 0
    has_data: bool = False
    shape_signature: tuple[int, ...] = ()


@dataclass(frozen=True, kw_only=True)
class TFLiteOp:
    """One operator: builtin name, tensor indices (-1 = optional input absent) and its options (snake_case)."""

    index: int
    builtin: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: Mapping[str, Any]
    version: int = 1


@dataclass(frozen=True, kw_only=True)
class TFLiteGraph:
    """A light read view of a TFLite file's first subgraph."""

    tensors: tuple[TFLiteTensor, ...]
    ops: tuple[TFLiteOp, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    metadata: Mapping[str, bytes]
    description: str
    _buffers: tuple[bytes, ...] = ()
    _buffer_of: tuple[int, ...] = ()

    def tensor_data(self, index: int) -> np.ndarray | None:
        """The constant data of tensor ``index`` as a numpy array of its shape, or None."""
        raw = self._buffers[self._buffer_of[index]]
        if not raw:
            return None
        t = self.tensors[index]
        return np.frombuffer(raw, dtype=np.dtype(t.dtype)).reshape(t.shape)

    def by_name(self, name: str) -> TFLiteTensor:
        """The tensor called ``name``."""
        for t in self.tensors:
            if t.name == name:
                return t
        raise KeyError(name)


class _AlignedBuffer(schema.BufferT):
    """A buffer whose data vector starts on a 16-byte boundary (schema: ``force_align: 16``)."""

    def __init__(self, payload: bytes | np.ndarray) -> None:
        super().__init__()
        # a contiguous little-endian array is kept as is (no bytes copy until it lands in the flatbuffer)
        self.payload = memoryview(payload).cast("B") if isinstance(payload, np.ndarray) else memoryview(payload)
        self.release = False

    def Pack(self, builder: flatbuffers.Builder) -> int:
        vec = None
        if self.payload.nbytes:
            n = self.payload.nbytes
            builder.StartVector(1, n, _ALIGN)
            builder.head = builder.head - n
            builder.Bytes[builder.head : builder.head + n] = self.payload
            builder.vectorNumElems = n
            vec = builder.EndVector()
            if self.release:  # the array is in the flatbuffer now: let it go (weights are not held twice)
                self.payload = memoryview(b"")
        schema.BufferStart(builder)
        if vec is not None:
            schema.BufferAddData(builder, vec)
        return schema.BufferEnd(builder)


class TFLiteBuilder:
    """Build a single-subgraph TFLite model tensor by tensor and op by op; ``to_bytes()`` is a valid file."""

    def __init__(self, *, description: str = "edgecnn") -> None:
        self._description = description
        self._tensors: list[schema.TensorT] = []
        self._buffers: list[schema.BufferT] = [_AlignedBuffer(b"")]
        self._ops: list[schema.OperatorT] = []
        self._opcodes: list[schema.OperatorCodeT] = []
        self._opcode_index: dict[tuple[str, int], int] = {}
        self._inputs: list[int] = []
        self._outputs: list[int] = []
        self._metadata: list[schema.MetadataT] = []
        self._names: set[str] = set()
        self._released = False

    @property
    def num_tensors(self) -> int:
        """How many tensors were added."""
        return len(self._tensors)

    def tensor_dtype(self, index: int) -> str:
        """The dtype name of tensor ``index``."""
        return _DTYPE_NAMES[self._tensors[index].type]

    @property
    def num_ops(self) -> int:
        """How many operators were added."""
        return len(self._ops)

    def set_op_version(self, index: int, version: int) -> None:
        """Set the version of operator ``index`` (its op code is shared per (builtin, version))."""
        op = self._ops[index]
        builtin = next(k for k, v in self._opcode_index.items() if v == op.opcodeIndex)[0]
        op.opcodeIndex = self._opcode(builtin, version)

    def set_tensor_dtype(self, index: int, dtype: str) -> None:
        """Change the dtype of tensor ``index`` (e.g. the output of a CAST), one of the writer's dtype names."""
        if dtype not in DTYPES:
            raise BadInputError(f"unknown tensor dtype {dtype!r}; valid: {', '.join(sorted(DTYPES))}")
        self._tensors[index].type = DTYPES[dtype]

    def tensor_shape(self, index: int) -> list[int]:
        """The shape of tensor ``index``."""
        return [int(d) for d in self._tensors[index].shape]

    def add_tensor(
        self,
        name: str,
        shape: Sequence[int],
        dtype: str,
        *,
        data: np.ndarray | None = None,
        scale: Sequence[float] | None = None,
        zero_point: Sequence[int] | None = None,
        quantized_dimension: int = 0,
        shape_signature: Sequence[int] | None = None,
    ) -> int:
        """Add a tensor (constant when ``data`` is given) and return its index."""
        if dtype not in DTYPES:
            raise BadInputError(f"tensor '{name}': dtype {dtype!r} is not a TFLite type; valid: {sorted(DTYPES)}")
        shape = [int(d) for d in shape]
        t = schema.TensorT()
        unique = name
        k = 1
        while unique in self._names:
            unique = f"{name}_{k}"
            k += 1
        self._names.add(unique)
        t.name = unique
        t.shape = np.asarray(shape, dtype=np.int32)
        t.type = DTYPES[dtype]
        t.buffer = 0
        if shape_signature is not None:
            t.shapeSignature = np.asarray(list(shape_signature), dtype=np.int32)
        if data is not None:
            arr = np.ascontiguousarray(np.asarray(data), dtype=np.dtype(dtype))
            if tuple(arr.shape) != tuple(shape) and arr.size != int(np.prod(shape, dtype=np.int64)):
                raise BadInputError(
                    f"tensor '{name}': data has shape {list(arr.shape)} but the tensor shape is {shape}"
                )
            self._buffers.append(_AlignedBuffer(np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))))
            t.buffer = len(self._buffers) - 1
        if scale is not None:
            scales = [float(s) for s in scale]
            zps = [int(z) for z in (zero_point if zero_point is not None else [0] * len(scales))]
            if len(zps) != len(scales):
                raise BadInputError(f"tensor '{name}': {len(scales)} scales but {len(zps)} zero points")
            if len(scales) > 1 and not (0 <= quantized_dimension < max(len(shape), 1)):
                raise BadInputError(
                    f"tensor '{name}': quantized_dimension {quantized_dimension} outside rank {len(shape)}"
                )
            if len(scales) > 1 and shape[quantized_dimension] != len(scales):
                raise BadInputError(
                    f"tensor '{name}': {len(scales)} per-channel scales but dim {quantized_dimension} "
                    f"has {shape[quantized_dimension]} channels"
                )
            q = schema.QuantizationParametersT()
            q.scale = np.asarray(scales, dtype=np.float32)
            q.zeroPoint = np.asarray(zps, dtype=np.int64)
            q.quantizedDimension = int(quantized_dimension)
            t.quantization = q
        self._tensors.append(t)
        return len(self._tensors) - 1

    def _opcode(self, builtin: str, version: int) -> int:
        key = (builtin, version)
        if key not in self._opcode_index:
            code = _BUILTIN_CODES[builtin]
            oc = schema.OperatorCodeT()
            oc.builtinCode = code
            oc.deprecatedBuiltinCode = min(code, 127)
            oc.version = version
            self._opcodes.append(oc)
            self._opcode_index[key] = len(self._opcodes) - 1
        return self._opcode_index[key]

    def add_op(
        self,
        builtin: str,
        inputs: Sequence[int],
        outputs: Sequence[int],
        options: Mapping[str, Any] | None = None,
        *,
        version: int | None = None,
    ) -> int:
        """Add operator ``builtin`` (e.g. ``"CONV_2D"``); -1 in ``inputs`` marks an absent optional input.

        ``options`` are the snake_case fields of the op's ``*Options`` table, enums by name
        (``{"padding": "SAME", "fused_activation_function": "RELU6"}``). Returns the operator index.
        """
        if builtin not in _BUILTIN_CODES:
            raise BadInputError(f"unknown TFLite builtin {builtin!r}")
        for i in [*inputs, *outputs]:
            if i != -1 and not (0 <= i < len(self._tensors)):
                raise BadInputError(f"{builtin}: tensor index {i} does not exist ({len(self._tensors)} tensors)")
        op = schema.OperatorT()
        opt_name = _options_name(builtin)
        if options and opt_name is None:
            raise BadInputError(f"{builtin} has no options table, got {dict(options)}")
        if opt_name is not None:
            obj = getattr(schema, opt_name + "T")()
            for key, value in (options or {}).items():
                attr = _camel(key)
                if not hasattr(obj, attr):
                    valid = sorted(_snake(a) for a in vars(obj))
                    raise BadInputError(f"{builtin}: option {key!r} is not in {opt_name}; valid: {valid}")
                if isinstance(value, str):
                    enum = _ENUM_FIELDS.get(key)
                    if enum is None or not hasattr(enum, value):
                        raise BadInputError(f"{builtin}: option {key}={value!r} is not a known enum value")
                    value = getattr(enum, value)
                elif isinstance(value, (list, tuple, np.ndarray)):
                    value = np.asarray(value, dtype=np.int32)
                elif (
                    isinstance(value, (int, np.integer))
                    and not isinstance(value, bool)
                    and not _INT32[0] <= value <= _INT32[1]
                ):
                    raise BadInputError(f"{builtin}: option {key}={value} does not fit TFLite's 32-bit field")
                setattr(obj, attr, value)
            op.builtinOptionsType = _OPTION_TYPES[opt_name]
            op.builtinOptions = obj
        first = next((i for i in inputs if i != -1), None)
        in_dtype = self.tensor_dtype(first) if first is not None else None
        if builtin == "QUANTIZE" and outputs:
            in_dtype = self.tensor_dtype(outputs[0])
        v = version if version is not None else op_version(builtin, in_dtype, options=options)
        op.opcodeIndex = self._opcode(builtin, v)
        op.inputs = np.asarray(list(inputs), dtype=np.int32)
        op.outputs = np.asarray(list(outputs), dtype=np.int32)
        self._ops.append(op)
        return len(self._ops) - 1

    def rename_tensor(self, index: int, name: str) -> None:
        """Give tensor ``index`` the name ``name``; a tensor already called that is renamed ``name_1``."""
        old = self._tensors[index].name
        if old == name:
            return
        for t in self._tensors:
            if t.name == name:
                unique, k = f"{name}_1", 1
                while unique in self._names:
                    k += 1
                    unique = f"{name}_{k}"
                t.name = unique
                self._names.add(unique)
        self._names.discard(old)
        self._names.add(name)
        self._tensors[index].name = name

    def set_io(self, inputs: Sequence[int], outputs: Sequence[int]) -> None:
        """Declare the subgraph's input and output tensors."""
        self._inputs = [int(i) for i in inputs]
        self._outputs = [int(i) for i in outputs]

    def add_metadata(self, name: str, data: bytes) -> None:
        """Attach a named metadata blob (stored in its own buffer)."""
        self._buffers.append(_AlignedBuffer(bytes(data)))
        m = schema.MetadataT()
        m.name = name
        m.buffer = len(self._buffers) - 1
        self._metadata.append(m)

    def to_bytes(self, *, release: bool = False) -> bytes:
        """Serialize to a TFLite flatbuffer (identifier ``TFL3``).

        ``release=True`` drops each constant array as soon as it is copied into the flatbuffer, so the weights
        are never held twice; the builder cannot serialize again afterwards."""
        if self._released:
            raise RuntimeError("this TFLiteBuilder was serialized with release=True; build it again")
        sg = schema.SubGraphT()
        sg.tensors = self._tensors
        sg.operators = self._ops
        sg.inputs = np.asarray(self._inputs, dtype=np.int32)
        sg.outputs = np.asarray(self._outputs, dtype=np.int32)
        sg.name = "main"
        model = schema.ModelT()
        model.version = SCHEMA_VERSION
        model.description = self._description
        model.operatorCodes = self._opcodes
        model.subgraphs = [sg]
        model.buffers = self._buffers
        model.metadata = self._metadata or None
        size = sum(b.payload.nbytes for b in self._buffers if isinstance(b, _AlignedBuffer))
        for b in self._buffers:
            if isinstance(b, _AlignedBuffer):
                b.release = release
        self._released = release
        builder = flatbuffers.Builder(size + 1024 * 1024)
        builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
        return bytes(memoryview(builder.Bytes)[builder.Head() :])  # one copy, not two


def _options_dict(obj: Any) -> dict[str, Any]:
    if obj is None:
        return {}
    out: dict[str, Any] = {}
    for k, v in vars(obj).items():
        if isinstance(v, np.ndarray):
            v = v.tolist()
        out[_snake(k)] = v
    return out


def read_tflite(data: bytes) -> TFLiteGraph:
    """Read a TFLite flatbuffer into a :class:`TFLiteGraph` (first subgraph). A damaged flatbuffer (truncated,
    offsets or counts past its end, indexes to missing buffers or operator codes) is a ModelError."""
    if len(data) < 8 or data[4:8] != FILE_IDENTIFIER:
        raise ModelError("not a TFLite flatbuffer (file identifier 'TFL3' missing)")
    try:
        return _read_tflite(data)
    except (struct.error, IndexError, TypeError, ValueError, AttributeError, OverflowError, RecursionError) as e:
        raise ModelError(
            f"damaged TFLite flatbuffer ({len(data)} bytes: {e.__class__.__name__}: {str(e)[:80]}); "
            "re-export it (truncated or not written by a TFLite converter?)"
        ) from None


def _read_tflite(data: bytes) -> TFLiteGraph:
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    if not model.subgraphs:
        raise ValueError("no subgraphs")
    names = {v: k for k, v in _BUILTIN_CODES.items()}
    sg = model.subgraphs[0]
    tensors = []
    buffers = tuple(
        bytes(np.asarray(b.data, dtype=np.uint8).tobytes()) if b.data is not None else b"" for b in model.buffers
    )
    for i, t in enumerate(sg.tensors or []):
        q = t.quantization
        scale = tuple(float(s) for s in (q.scale if q is not None and q.scale is not None else []))
        zp = tuple(int(z) for z in (q.zeroPoint if q is not None and q.zeroPoint is not None else []))
        tensors.append(
            TFLiteTensor(
                index=i,
                name=t.name.decode(errors="backslashreplace") if isinstance(t.name, bytes) else str(t.name),
                shape=tuple(int(d) for d in (t.shape if t.shape is not None else [])),
                dtype=_DTYPE_NAMES.get(t.type, str(t.type)),
                scale=scale,
                zero_point=zp,
                quantized_dimension=int(q.quantizedDimension) if q is not None else 0,
                has_data=bool(buffers[t.buffer]),
                shape_signature=tuple(int(d) for d in (t.shapeSignature if t.shapeSignature is not None else [])),
            )
        )
    ops = []
    for i, op in enumerate(sg.operators or []):
        oc = model.operatorCodes[op.opcodeIndex]
        code = max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode))
        ops.append(
            TFLiteOp(
                index=i,
                builtin=names.get(code, f"CODE_{code}"),
                inputs=tuple(int(x) for x in op.inputs),
                outputs=tuple(int(x) for x in op.outputs),
                options=_options_dict(op.builtinOptions),
                version=int(oc.version),
            )
        )
    metadata = {
        (m.name.decode() if isinstance(m.name, bytes) else str(m.name)): buffers[m.buffer]
        for m in (model.metadata or [])
    }
    desc = model.description
    return TFLiteGraph(
        tensors=tuple(tensors),
        ops=tuple(ops),
        inputs=tuple(int(x) for x in sg.inputs),
        outputs=tuple(int(x) for x in sg.outputs),
        metadata=metadata,
        description=desc.decode() if isinstance(desc, bytes) else str(desc or ""),
        _buffers=buffers,
        _buffer_of=tuple(int(t.buffer) for t in (sg.tensors or [])),
    )
