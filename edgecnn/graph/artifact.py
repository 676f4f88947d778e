"""A model is an artifact, not a path: its format, its input/output tensors (with layout and quantization),
its PreprocessSpec when it carries one, and its hash. ``inspect``, ``bench`` and ``drift`` accept any
format through this one type, so a new format is one reader here.

Formats: ONNX (read and validated by ``graph.load``), TFLite (read with the flatbuffer schema through
``export.tflite_writer.read_tflite``; no runtime is imported).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path

import numpy as np

from edgecnn.errors import DataError, ModelError
from edgecnn.fsutil import sha256_file
from edgecnn.preprocess import Layout, PreprocessSpec

SCHEMA_VERSION = 1


class ModelFormat(StrEnum):
    ONNX = "onnx"
    TFLITE = "tflite"
    OPENVINO = "openvino"


@dataclass(frozen=True, kw_only=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float | None = None  # per-tensor quantization of integer I/O
    zero_point: int | None = None


@dataclass(frozen=True, kw_only=True)
class ModelArtifact:
    path: Path
    format: ModelFormat
    sha256: str
    size_bytes: int
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    input_layout: str  # NCHW | NHWC (of the image input)
    preprocess: PreprocessSpec | None  # the spec the file carries in its metadata
    ops: dict[str, int]  # operator histogram (ONNX op types or TFLite builtins)
    description: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "format": self.format.value,
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "inputs": [t.__dict__ for t in self.inputs],
            "outputs": [t.__dict__ for t in self.outputs],
            "input_layout": self.input_layout,
            "preprocess": self.preprocess.to_dict() if self.preprocess else None,
            "ops": self.ops,
            "description": self.description,
        }


def format_of(path: str | Path) -> ModelFormat:
    """By suffix (.onnx, .tflite, .xml), else by the TFLite file identifier; ONNX otherwise."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        return ModelFormat.TFLITE
    if suffix == ".xml":
        return ModelFormat.OPENVINO
    if suffix != ".onnx" and path.is_file():
        with open(path, "rb") as f:
            head = f.read(8)
        if head[4:8] == b"TFL3":
            return ModelFormat.TFLITE
    return ModelFormat.ONNX


def open_artifact(path: str | Path, input_shapes: dict[str, tuple[int, ...]] | None = None) -> ModelArtifact:
    path = Path(path)
    fmt = format_of(path)
    if fmt is ModelFormat.TFLITE:
        return _tflite(path)
    if fmt is ModelFormat.OPENVINO:
        raise ModelError(
            f"{path}: an OpenVINO IR; this command reads ONNX or TFLite models (bench runs IR with -r openvino)"
        )
    return _onnx(path, input_shapes)


def _onnx(path: Path, input_shapes: dict[str, tuple[int, ...]] | None) -> ModelArtifact:
    from edgecnn.graph.load import dims_of, graph_inputs, load_model
    from edgecnn.graph.summary import dtype_name
    from edgecnn.preprocess import spec_from_dict

    loaded = load_model(path, input_shapes)
    m = loaded.model

    def info(vi, shape=None) -> TensorInfo:  # type: ignore[no-untyped-def]
        dims = shape or tuple(d if isinstance(d, int) else -1 for d in dims_of(vi))
        return TensorInfo(name=vi.name, shape=tuple(dims), dtype=dtype_name(vi.type.tensor_type.elem_type))

    pre = None
    for p in m.metadata_props:
        if p.key == "edgecnn.preprocess" and p.value not in ("", "{}"):
            try:
                pre = spec_from_dict(json.loads(p.value), Path(f"{path} metadata"))
            except Exception:  # metadata written by another tool: ignore, the data folder's spec applies
                pre = None
    return ModelArtifact(
        path=path,
        format=ModelFormat.ONNX,
        sha256=sha256_file(path),
        size_bytes=path.stat().st_size,
        inputs=tuple(info(vi, loaded.input_shapes.get(vi.name)) for vi in graph_inputs(m)),
        outputs=tuple(info(o) for o in m.graph.output),
        input_layout="NCHW",
        preprocess=pre,
        ops=dict(Counter(n.op_type for n in m.graph.node)),
        description=m.doc_string,
    )


def _tflite(path: Path) -> ModelArtifact:
    from edgecnn.export.tflite_writer import read_tflite
    from edgecnn.graph.load import model_file_size

    model_file_size(path, "a .tflite model")
    data = path.read_bytes()
    try:
        g = read_tflite(data)  # ModelError for anything that is not a TFLite flatbuffer
    except ModelError as e:
        raise ModelError(f"{path}: {e}") from None

    def info(i: int) -> TensorInfo:
        t = g.tensors[i]
        q = len(t.scale) == 1 and np.dtype(t.dtype).kind in "iu"
        return TensorInfo(
            name=t.name,
            shape=tuple(int(d) for d in t.shape),
            dtype=t.dtype,
            scale=float(t.scale[0]) if q else None,
            zero_point=int(t.zero_point[0]) if q and t.zero_point else (0 if q else None),
        )

    pre = None
    raw = g.metadata.get("edgecnn.preprocess")
    if raw:
        from edgecnn.preprocess import spec_from_dict

        try:
            pre = spec_from_dict(json.loads(raw.decode("utf-8")), Path(f"{path} metadata"))
        except Exception:
            pre = None
    ins = tuple(info(i) for i in g.inputs)
    default = "NHWC" if ins and len(ins[0].shape) == 4 else "NCHW"  # TFLite's image convention
    layout = pre.layout.value if pre is not None else default
    return ModelArtifact(
        path=path,
        format=ModelFormat.TFLITE,
        sha256=sha256_file(path),
        size_bytes=path.stat().st_size,
        inputs=ins,
        outputs=tuple(info(i) for i in g.outputs),
        input_layout=layout,
        preprocess=pre,
        ops=dict(Counter(op.builtin for op in g.ops)),
        description=g.description,
    )


def spec_for(artifact: ModelArtifact, spec: PreprocessSpec) -> PreprocessSpec:
    """The data folder's spec, in the layout this artifact's input wants (NHWC for a TFLite image input),
    producing float32 (integer inputs are quantized with the input's own scale afterwards)."""
    return replace(spec, layout=Layout(artifact.input_layout), dtype="float32")


def image_input(artifact: ModelArtifact) -> TensorInfo:
    if len(artifact.inputs) != 1:
        raise DataError(f"{artifact.path}: has {len(artifact.inputs)} inputs; image data can feed a single image input")
    return artifact.inputs[0]


def to_input(x: np.ndarray, t: TensorInfo) -> np.ndarray:
    """A float tensor (already in the input's layout) as the input's dtype: quantized for integer inputs with
    quantization parameters; the values as they are for one without (a raw uint8 image input, which the model
    casts to float itself)."""
    dt = np.dtype(t.dtype)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        if t.scale is None:
            return np.clip(np.rint(x.astype(np.float32)), info.min, info.max).astype(dt)
        q = np.rint(x.astype(np.float32) / np.float32(t.scale)) + (t.zero_point or 0)
        return np.clip(q, info.min, info.max).astype(dt)
    return x.astype(dt)


def from_output(y: np.ndarray, t: TensorInfo) -> np.ndarray:
    """An output as float: dequantized when the file's output is integer."""
    if np.dtype(t.dtype).kind in "iu" and t.scale is not None:
        return (y.astype(np.float32) - (t.zero_point or 0)) * np.float32(t.scale)
    return y.astype(np.float32)
