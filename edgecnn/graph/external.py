"""Keep large weights out of the in-memory ModelProto while a model is being transformed.

A ModelProto holds every weight as a Python-owned bytes field, and every copy, serialization or
shape-inference round trip duplicates them. ``externalize`` moves tensors above a size threshold into
a file (4 KiB aligned, so a runtime can map it) and leaves only references in the proto; passes read
the few weights they need with ``to_array(tensor, base_dir)``; ``internalize`` brings them back
before the final model is written as one self-contained file.
"""

from __future__ import annotations

import contextlib
import ctypes
from pathlib import Path
from typing import BinaryIO

import numpy as np
import onnx
from google.protobuf.message import Message
from onnx import numpy_helper

THRESHOLD = 1024
_ALIGN = 4096


def _initializers(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    return list(model.graph.initializer)


def externalize(model: onnx.ModelProto, directory: Path, filename: str, threshold: int = THRESHOLD) -> int:
    """Move in-memory tensors larger than ``threshold`` bytes to ``directory/filename`` (appending). Returns bytes moved."""
    moved = 0
    with open(Path(directory) / filename, "ab") as f:
        for t in _initializers(model):
            if t.data_location == onnx.TensorProto.EXTERNAL:
                continue
            if t.HasField("raw_data"):
                data = t.raw_data
            else:
                if t.ByteSize() <= threshold:
                    continue
                data = numpy_helper.to_array(t).tobytes()
            if len(data) <= threshold:
                continue
            for field in ("raw_data", "float_data", "int32_data", "int64_data", "double_data", "uint64_data"):
                t.ClearField(field)
            _append(f, t, data, filename)
            moved += len(data)
    if moved:
        release_freed_memory()
    return moved


def externalized_copy(
    model: onnx.ModelProto, directory: Path, filename: str, threshold: int = THRESHOLD
) -> onnx.ModelProto:
    """A new ModelProto equal to ``model`` whose tensors above ``threshold`` bytes live in ``directory/filename``.

    A new message rather than an in-place edit: protobuf (upb) frees a message's memory only when the
    whole message goes, so dropping ``model`` afterwards is what returns its weights to the OS.
    """
    light = onnx.ModelProto()
    _copy_fields(model, light, skip="graph")
    g, lg = model.graph, light.graph
    _copy_fields(g, lg, skip="initializer")
    with open(Path(directory) / filename, "ab") as f:
        for t in g.initializer:
            lt = lg.initializer.add()
            if t.data_location == onnx.TensorProto.EXTERNAL or t.ByteSize() <= threshold:
                lt.CopyFrom(t)
                continue
            data = t.raw_data if t.HasField("raw_data") else numpy_helper.to_array(t).tobytes()
            lt.name, lt.data_type = t.name, t.data_type
            lt.dims.extend(t.dims)
            if t.doc_string:
                lt.doc_string = t.doc_string
            _append(f, lt, data, filename)
    return light


def external_tensors(arrays: dict[str, np.ndarray], directory: Path, filename: str) -> list[onnx.TensorProto]:
    """Initializers for ``arrays`` whose data goes to ``directory/filename`` (appending), not into the protos: for
    a temporary graph whose large constants would otherwise be copied into it, into its serialization and into
    the runtime's parse of it."""
    out = []
    with open(Path(directory) / filename, "ab") as f:
        for name, a in arrays.items():
            a = np.ascontiguousarray(a)
            t = onnx.TensorProto(name=name, data_type=onnx.helper.np_dtype_to_tensor_dtype(a.dtype))
            t.dims.extend(a.shape)
            _append(f, t, a.tobytes(), filename)
            out.append(t)
    return out


def _copy_fields(src: Message, dst: Message, skip: str) -> None:
    for fd, value in src.ListFields():
        if fd.name == skip:
            continue
        if isinstance(value, Message):
            getattr(dst, fd.name).CopyFrom(value)
        elif not isinstance(value, str | bytes) and hasattr(value, "extend"):  # repeated field
            getattr(dst, fd.name).extend(value)
        else:
            setattr(dst, fd.name, value)


def _append(f: BinaryIO, t: onnx.TensorProto, data: bytes, filename: str) -> None:
    pos = f.seek(0, 2)
    pad = (-pos) % _ALIGN
    f.write(b"\0" * pad)
    f.write(data)
    t.data_location = onnx.TensorProto.EXTERNAL
    del t.external_data[:]
    t.external_data.add(key="location", value=filename)
    t.external_data.add(key="offset", value=str(pos + pad))
    t.external_data.add(key="length", value=str(len(data)))


def release_freed_memory() -> None:
    """Hand memory freed by Python and protobuf back to the OS (glibc keeps it otherwise).

    After the weights move out of a large proto, its buffers are free but still count in RSS and
    fragment the heap under the runtime's allocations; trimming makes the next peak honest.
    """
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def to_array(t: onnx.TensorProto, base_dir: Path | None) -> np.ndarray:
    """The tensor's values, reading external data from ``base_dir`` when the tensor lives there."""
    return numpy_helper.to_array(t, base_dir=str(base_dir) if base_dir else "")


def scalar_of(t: onnx.TensorProto | None, base_dir: Path | None = None) -> float | None:
    """The value of a one-element tensor, else None. Decided from the dims, so a weight is never read to find
    out it is not a scalar (in a model whose weights live in an external file, reading one without
    ``base_dir`` fails); an external scalar without ``base_dir`` is None too."""
    if t is None or int(np.prod(t.dims)) != 1:
        return None
    if t.data_location == onnx.TensorProto.EXTERNAL and base_dir is None:
        return None
    return float(to_array(t, base_dir).reshape(()))


def internalize(model: onnx.ModelProto, directory: Path) -> None:
    """Load every external tensor of ``model`` (relative to ``directory``) back into the proto."""
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in _initializers(model)):
        onnx.external_data_helper.load_external_data_for_model(model, str(directory))
