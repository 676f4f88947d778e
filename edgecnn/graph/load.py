"""Load and validate an ONNX model: the one entry point every command goes through.

A model that reaches the rest of edgecnn has passed the full ONNX checker, has every dynamic input
dimension resolved, and has been through strict shape inference, so every tensor has a known shape.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from google.protobuf.message import DecodeError

from edgecnn.errors import ModelError

MIN_OPSET = 7
MAX_OPSET = onnx.defs.onnx_opset_version()

_SHAPE_RE = re.compile(r"^(?P<name>[^=]+)=(?P<dims>[0-9]{1,19}(?:x[0-9]{1,19})*)$")
MAX_DIM = 2**31 - 1  # what runtimes index with; an int64 dim beyond it cannot be allocated anyway
PROTO_LIMIT = 2**31 - 1  # protobuf cannot serialize a message of 2 GiB or more


@dataclass(frozen=True, kw_only=True)
class LoadedModel:
    """A validated model with all shapes inferred."""

    path: Path
    model: onnx.ModelProto
    input_shapes: dict[str, tuple[int, ...]]

    @property
    def opset(self) -> int:
        return default_opset(self.model)


def parse_input_shapes(specs: list[str] | None) -> dict[str, tuple[int, ...]]:
    """Parse ``NAME=1x3x224x224`` items (repeatable, or comma-separated in one item)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for spec in specs or []:
        for item in filter(None, (s.strip() for s in spec.split(","))):
            m = _SHAPE_RE.match(item)
            if not m or any(not 0 < int(d) <= MAX_DIM for d in m["dims"].split("x")):
                raise ModelError(
                    f"--input-shape '{item}': expected NAME=DIMxDIMx... with integers 1..{MAX_DIM}, "
                    "e.g. input=1x3x224x224"
                )
            shapes[m["name"]] = tuple(int(d) for d in m["dims"].split("x"))
    return shapes


def default_opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return imp.version
    return 0


def node_attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    """The value of ``node``'s attribute ``name`` as ``onnx.helper.get_attribute_value`` gives it (int, float,
    bytes, a list, a TensorProto), or ``default`` when the node does not set it."""
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """Real inputs: graph inputs that are not also initializers (old exporters listed weights)."""
    inits = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def dims_of(vi: onnx.ValueInfoProto) -> list[int | str]:
    """Dimensions of a value: ints where known, the symbolic name (or '?') where not."""
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return []
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or "?") for d in t.shape.dim]


def model_file_size(path: Path, what: str = "an .onnx model") -> int:
    """The size of the model file at ``path``, which must be a regular, non-empty file under 2 GiB (ONNX
    protobufs and TFLite flatbuffers both use 32-bit offsets): ModelError otherwise, before anything is read
    (a FIFO or device would block or never end, a sparse multi-GiB file would be read into memory)."""
    if not path.exists():
        raise ModelError(f"{path}: no such file; give the path of {what}")
    if path.is_dir():
        raise ModelError(f"{path}: is a directory; give the path of {what} file")
    if not path.is_file():
        raise ModelError(f"{path}: not a regular file; give the path of {what} file")
    size = path.stat().st_size
    if size == 0:
        raise ModelError(f"{path}: file is empty; expected {what}")
    if size >= PROTO_LIMIT:
        raise ModelError(
            f"{path}: {size / (1 << 30):.2f} GiB; {what} file is limited to 2 GiB"
            + (" (store large weights as external data)" if "onnx" in what else "")
        )
    return size


def _read(path: Path) -> onnx.ModelProto:
    model_file_size(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, RuntimeError, ValueError, OSError) as e:
        raise ModelError(
            f"{path}: not a readable ONNX model (protobuf parse failed: {e}); is the file truncated?"
        ) from None
    if model.ir_version == 0 or not model.HasField("graph"):
        raise ModelError(
            f"{path}: not an ONNX model (no IR version or no graph); is the file truncated or another format?"
        )
    if len(model.graph.node) == 0:
        raise ModelError(f"{path}: the ONNX graph has no nodes; there is nothing to run")
    return model


def _all_tensors(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    """Initializers and tensor attributes (Constant values), in subgraphs too."""
    from onnx.external_data_helper import _get_all_tensors

    return list(_get_all_tensors(model))


def _external_bytes(model: onnx.ModelProto, path: Path) -> int:
    """Bytes the external-data tensors declare (their ``length``, else the rest of the file), without reading them."""
    total = 0
    for t in _all_tensors(model):
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in t.external_data}
        try:
            if "length" in info:
                total += int(info["length"])
            else:
                total += max(0, (path.parent / info.get("location", "")).stat().st_size - int(info.get("offset", 0)))
        except (OSError, ValueError):
            continue  # the loader names the missing or malformed file
    return total


def _check_external_sizes(path: Path, tensors: list[tuple[onnx.TensorProto, str]]) -> None:
    """Each tensor read from external data holds exactly the bytes its dims and type need (a truncated or empty
    data file loads without an error and failed later, in a reshape)."""
    for t, where in tensors:
        if t.data_type in (onnx.TensorProto.STRING, onnx.TensorProto.UNDEFINED):
            continue
        try:
            itemsize = onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
        except (KeyError, TypeError, ValueError):
            continue
        want = math.prod(t.dims) * itemsize
        if len(t.raw_data) != want:
            raise ModelError(
                f"{path}: external data of tensor '{t.name}' holds {len(t.raw_data)} bytes in {where!r}; its "
                f"shape {list(t.dims)} needs {want}; the data file is truncated or belongs to another model"
            )


def load_model(path: str | Path, input_shapes: dict[str, tuple[int, ...]] | None = None) -> LoadedModel:
    """Read, check and shape-infer ``path``; resolve dynamic dims from ``input_shapes``.

    Raises ModelError (exit 2) with a one-line reason for every way a file can be unusable.
    """
    path = Path(path)
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        raise ModelError(
            f"{path}: the path is not valid UTF-8, which ONNX and the runtimes cannot open; rename the file or folder"
        ) from None
    model = _read(path)
    opset = default_opset(model)
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ModelError(
            f"{path}: opset {opset} is not supported; edgecnn accepts ai.onnx opsets {MIN_OPSET}..{MAX_OPSET}"
        )
    if not model.graph.output:
        raise ModelError(f"{path}: the graph has no outputs; a model must declare at least one output")
    external = _external_bytes(model, path)
    if external + model.ByteSize() >= PROTO_LIMIT:
        raise ModelError(
            f"{path}: {external / (1 << 30):.2f} GiB of external weights; edgecnn reads a model into one protobuf, "
            "which is limited to 2 GiB"
        )
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        first = str(e).strip().splitlines()[0]
        raise ModelError(f"{path}: fails the ONNX checker: {first}") from None
    external = {  # incl. Constant values; the file each reads (loading clears the tensor's record of it)
        id(t): (t, {e.key: e.value for e in t.external_data}.get("location", "?"))
        for t in _all_tensors(model)
        if t.data_location == onnx.TensorProto.EXTERNAL
    }
    if external:
        try:
            onnx.load_external_data_for_model(model, str(path.parent))
        except (OSError, ValueError) as e:
            raise ModelError(
                f"{path}: external data could not be read ({e}); keep the data files beside the model"
            ) from None
        _check_external_sizes(path, list(external.values()))

    drop_initializer_inputs(model)
    if not graph_inputs(model):
        raise ModelError(
            f"{path}: the graph has no inputs (an input with an initializer of the same name is a constant); "
            "edgecnn works on models that take an input"
        )
    passed = sorted({i.name for i in graph_inputs(model)} & {o.name for o in model.graph.output})
    if passed:
        raise ModelError(
            f"{path}: input {passed[0]!r} is also a graph output; write that output with an Identity node (what "
            "torch.onnx does for a returned input)"
        )
    expand_fused_convs(model)
    shapes = dict(input_shapes or {})
    inputs = graph_inputs(model)
    names = [i.name for i in inputs]
    unknown = sorted(set(shapes) - set(names))
    if unknown:
        raise ModelError(f"{path}: --input-shape names unknown input(s) {unknown}; the model's inputs are {names}")
    dynamic: list[onnx.ValueInfoProto] = []
    resolved: dict[str, tuple[int, ...]] = {}
    for vi in inputs:
        dims = dims_of(vi)
        if vi.name in shapes:
            want = shapes[vi.name]
            if dims and len(dims) != len(want):
                raise ModelError(
                    f"{path}: --input-shape {vi.name}={'x'.join(map(str, want))} has rank {len(want)}, "
                    f"but the model's input has rank {len(dims)} ({dims})"
                )
            for have, new in zip(dims, want, strict=False):
                if isinstance(have, int) and have != new:
                    raise ModelError(
                        f"{path}: --input-shape {vi.name}: dimension {new} conflicts with the model's fixed {have} ({dims})"
                    )
            _set_dims(vi, want)
            resolved[vi.name] = want
        elif is_dynamic(vi):
            dynamic.append(vi)
        else:
            resolved[vi.name] = tuple(int(d) for d in dims)
    if dynamic:
        raise ModelError(f"{path}: {dynamic_inputs_message(dynamic)}")
    try:
        infer_shapes_inplace(model)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError, ValueError) as e:
        first = str(e).strip().splitlines()[0]
        raise ModelError(f"{path}: fails strict shape inference: {first}") from None
    return LoadedModel(path=path, model=model, input_shapes=resolved)


_STRIP_BYTES = 1024


def drop_initializer_inputs(model: onnx.ModelProto) -> int:
    """In place: graph inputs that are also initializers (IR < 4 files list every weight as an input; later
    exporters do with ``keep_initializers_as_inputs``) become plain constants. Left as inputs they are
    overridable: passes that fold or rewrite a weight (BatchNorm folding, FP16, the TFLite converter) left
    the input declared with its old shape, and runtimes asked for them as feeds. The IR version becomes at
    least 4, the first where initializers need not be inputs. Returns how many inputs were dropped."""
    inits = {t.name for t in model.graph.initializer}
    keep = [i for i in model.graph.input if i.name not in inits]
    dropped = len(model.graph.input) - len(keep)
    if dropped:
        del model.graph.input[:]
        model.graph.input.extend(keep)
        model.ir_version = max(model.ir_version, 4)
    return dropped


_CONV_ATTRS = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")
_FUSED_ACTIVATIONS = ("Relu", "Clip", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid")


def expand_fused_convs(model: onnx.ModelProto) -> int:
    """In place: each ONNX Runtime ``com.microsoft.FusedConv`` (what ORT writes when a session saves its optimized
    model: Conv, an optional sum input Z, then an activation) becomes the standard ops it fuses, Conv (+ Add)
    (+ the activation), the activation writing the FusedConv's output. Exact. Every command then reads the model
    as it was exported; left fused, shape inference stopped at the first one and `quantize` found nothing to
    quantize. Returns how many were expanded (one with an activation it does not know is left as it is)."""
    from onnx import helper, numpy_helper

    from edgecnn.graph.passes import _fresh_name, _names_in_use  # passes imports this module: imported here

    g = model.graph
    if not any(n.domain == "com.microsoft" and n.op_type == "FusedConv" for n in g.node):
        return 0
    used = _names_in_use(model)

    def fresh(want: str) -> str:
        return _fresh_name(used, want)

    opset = default_opset(model)
    final: list[onnx.NodeProto] = []
    count = 0
    for n in g.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        act = attrs.get("activation", b"")
        act = act.decode() if isinstance(act, bytes) else str(act)
        if n.domain != "com.microsoft" or n.op_type != "FusedConv" or (act and act not in _FUSED_ACTIVATIONS):
            final.append(n)
            continue
        params = [float(v) for v in attrs.get("activation_params", [])]
        base = n.name or n.output[0]
        y = n.output[0]
        cur = fresh(f"{y}_conv") if act or (len(n.input) > 3 and n.input[3]) else y
        final.append(
            helper.make_node(
                "Conv", list(n.input[:3]), [cur], name=base, **{k: attrs[k] for k in _CONV_ATTRS if k in attrs}
            )
        )
        if len(n.input) > 3 and n.input[3]:
            out = fresh(f"{y}_sum") if act else y
            final.append(helper.make_node("Add", [cur, n.input[3]], [out], name=f"{base}_sum"))
            cur = out
        if act == "Clip":
            lo, hi = (params[0], params[1]) if len(params) >= 2 else (float("-inf"), float("inf"))
            if opset < 11:
                final.append(helper.make_node("Clip", [cur], [y], name=f"{base}_clip", min=lo, max=hi))
            else:
                bounds = [fresh(f"{base}_clip_min"), fresh(f"{base}_clip_max")]
                for b, v in zip(bounds, (lo, hi), strict=True):
                    g.initializer.append(numpy_helper.from_array(np.array(v, np.float32), b))
                final.append(helper.make_node("Clip", [cur, *bounds], [y], name=f"{base}_clip"))
        elif act:
            kw = {"LeakyRelu": {"alpha": params[0]} if params else {},
                  "HardSigmoid": dict(zip(("alpha", "beta"), params, strict=False))}.get(act, {})  # fmt: skip
            final.append(helper.make_node(act, [cur], [y], name=f"{base}_{act.lower()}", **kw))
        count += 1
    del g.node[:]
    g.node.extend(final)
    if not any(n.domain == "com.microsoft" for n in g.node):
        keep = [o for o in model.opset_import if o.domain != "com.microsoft"]
        del model.opset_import[:]
        model.opset_import.extend(keep)
    return count


# ONNX Runtime contrib ops edgecnn writes (quantize.qdq.contrib_gelu) whose output has its input's shape and type.
_CONTRIB_ELEMENTWISE = frozenset({"Gelu", "FastGelu", "QuickGelu"})


def infer_shapes_inplace(model: onnx.ModelProto) -> onnx.ModelProto:
    """Strict shape inference without copying the weights.

    ``onnx.shape_inference.infer_shapes`` serializes the whole model both ways (four copies of every
    weight at peak). Shapes only need the initializers' dims, so inference runs on a skeleton whose
    large initializers point at no data, and the inferred value_info is copied back. Stale
    value_info is dropped first: it could contradict fixed inputs.
    """
    skeleton = onnx.ModelProto()
    graph = model.graph
    saved_inits = list(graph.initializer)
    del graph.initializer[:]
    skeleton.CopyFrom(model)
    graph.initializer.extend(saved_inits)
    for t in saved_inits:
        light = skeleton.graph.initializer.add()
        if t.ByteSize() > _STRIP_BYTES and t.data_type != onnx.TensorProto.INT64:
            light.name, light.data_type = t.name, t.data_type
            light.dims.extend(t.dims)
            light.data_location = onnx.TensorProto.EXTERNAL
            light.external_data.add(key="location", value="edgecnn-shape-inference-skeleton")
        else:
            light.CopyFrom(t)
    del skeleton.graph.value_info[:]
    for n in skeleton.graph.node:  # contrib elementwise ops onnx has no schema for: their output is their input's
        if n.domain == "com.microsoft" and n.op_type in _CONTRIB_ELEMENTWISE and len(n.output) == 1:
            del n.input[1:], n.attribute[:]
            n.op_type, n.domain = "Identity", ""
    for vi in skeleton.graph.output:  # Paddle2ONNX declares a dynamic dim as -1, which strict inference rejects
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_value") and d.dim_value < 0:
                d.Clear()
    inferred = onnx.shape_inference.infer_shapes(skeleton, check_type=True, strict_mode=True, data_prop=True)
    del graph.value_info[:]
    graph.value_info.extend(inferred.graph.value_info)
    outputs = {o.name: o for o in inferred.graph.output}
    for o in graph.output:
        if o.name in outputs:
            o.type.CopyFrom(outputs[o.name].type)
    return model


def is_dynamic(vi: onnx.ValueInfoProto) -> bool:
    """An input with no shape at all or a dimension that is not a number (a shape with no dims is a rank-0
    input, which is static)."""
    return not vi.type.tensor_type.HasField("shape") or any(not isinstance(d, int) for d in dims_of(vi))


def dynamic_inputs_message(inputs: list[onnx.ValueInfoProto], why: str = "") -> str:
    """One line naming each dynamic input and the ``--input-shape`` that fixes it (``why``: the command's reason
    for needing fixed shapes)."""
    listed = ", ".join(f"{vi.name}{dims_of(vi)}" if dims_of(vi) else f"{vi.name} (unknown shape)" for vi in inputs)
    hints = " ".join(shape_hint(vi.name, dims_of(vi)) for vi in inputs)
    return f"input(s) with dynamic dimensions: {listed}; {why}fix them with --input-shape {hints}"


def shape_hint(name: str, dims: list[int | str]) -> str:
    """An ``--input-shape`` value for an input with symbolic dims, in the model's own layout: its fixed dims as
    they are, a symbolic first dim (the batch) 1, any other symbolic dim 224 (``['N', 24, 24, 3]`` ->
    ``NAME=1x24x24x3``; no known rank -> ``NAME=1x3x224x224``)."""
    if not dims:
        return f"{name}=1x3x224x224"
    return f"{name}=" + "x".join(
        str(d) if isinstance(d, int) and d > 0 else ("1" if i == 0 else "224") for i, d in enumerate(dims)
    )


def _set_dims(vi: onnx.ValueInfoProto, dims: tuple[int, ...]) -> None:
    shape = vi.type.tensor_type.shape
    del shape.dim[:]
    for d in dims:
        shape.dim.add().dim_value = d
