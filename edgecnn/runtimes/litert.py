"""LiteRT adapter (``ai-edge-litert``'s TFLite interpreter, CPU, XNNPACK delegate by default).

A ``.tflite`` file runs as it is: its own inputs and outputs (NHWC images, int8 I/O when the file has them).
An ``.onnx`` file runs through edgecnn's own converter (``edgecnn.export.to_tflite``, in memory) and keeps
the ONNX model's interface: inputs and outputs in the ONNX layout, transposed at the boundary, so the same
feeds and the same comparisons work on every runtime (the contract tests rely on it). Inputs bound with
``bind`` are transposed once, before the timed loop.

Options: ``delegate`` = ``xnnpack`` (default; LiteRT applies it itself) | ``none`` (the builtin kernels
without default delegates) | ``reference`` (reference kernels, slow, for debugging numbers); ``profile=1``
prepares per-op profiling (``kernel_runs``, ``executed_graph``).

Per-op profiling. The ``ai-edge-litert`` 2.3.0 wheel exposes no op profiler to Python: the interpreter's
only profiling argument, ``experimental_force_delegate_node_profiling``, matters only when a profiler is
attached, which the Python API cannot do; ``litert-benchmark`` (``ai_edge_litert/tools/benchmark_litert_model.py``)
times whole ``run_by_name`` calls and writes no per-op times; the profiler entry points in ``libLiteRt.so``
(``LiteRtCreateProfiler``...) belong to the CompiledModel C API, with no Python binding in this wheel. So edgecnn
measures each operator *on its own*: the file is cut into one-op models (the op, its constant inputs, its
activation inputs as model inputs), each run by its own interpreter with the session's delegate, timed
around ``Invoke`` in the same rounds as the whole model. What this cannot see: XNNPACK runs a delegated
partition as one node ("TfLiteXNNPackDelegate") and may keep tensors in cache or fuse across ops, so the
per-op split is the ops' stand-alone cost, which ``profile`` scales to the measured whole-model time.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from ai_edge_litert import interpreter as litert

from edgecnn.errors import BadInputError, ModelError
from edgecnn.runtimes.base import TensorSpec

_RESOLVERS = {
    "xnnpack": litert.OpResolverType.AUTO,
    "none": litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    "reference": litert.OpResolverType.BUILTIN_REF,
}


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("ai-edge-litert")
    except Exception:  # pragma: no cover - metadata missing in an unusual install
        return "unknown"


class LiteRtSession:
    name: ClassVar[str] = "litert"

    def __init__(
        self, path: Path, *, threads: int, input_shapes: dict[str, tuple[int, ...]], options: dict[str, str]
    ) -> None:
        path = Path(path)
        delegate = options.get("delegate", "xnnpack")
        if delegate not in _RESOLVERS:
            raise BadInputError(f"litert option delegate={delegate!r}; valid values are {', '.join(_RESOLVERS)}")
        # Per input/output: the permutation that turns the ONNX layout into the TFLite one (None: same).
        self._in_perm: list[tuple[int, ...] | None] = []
        self._out_perm: list[tuple[int, ...] | None] = []
        self._onnx_names: tuple[list[str], list[str]] | None = None
        if path.suffix.lower() == ".onnx":
            content = self._convert(path, input_shapes)
        else:
            from edgecnn.graph.load import model_file_size  # a FIFO, a folder, a sparse 3 GiB file: one line

            model_file_size(path, "a .tflite model")
            content = path.read_bytes()
            if content[4:8] != b"TFL3":
                raise ModelError(f"{path}: not a TFLite flatbuffer (no 'TFL3' identifier); is it another format?")
        try:
            with _quiet_stderr():
                self._interp = litert.Interpreter(
                    model_content=content,
                    num_threads=threads or None,
                    experimental_op_resolver_type=_RESOLVERS[delegate],
                )
                if input_shapes and self._onnx_names is None:
                    for d in self._interp.get_input_details():
                        if d["name"] in input_shapes:
                            self._interp.resize_tensor_input(d["index"], list(input_shapes[d["name"]]))
                self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelError(f"{path}: LiteRT cannot load the model: {first}") from None
        self.threads = threads or 1
        self.device = "CPU"
        self.delegate = delegate
        self._in = self._interp.get_input_details()
        self._out = self._interp.get_output_details()
        if not self._in_perm:
            self._in_perm = [None] * len(self._in)
            self._out_perm = [None] * len(self._out)
        self._content = content
        self._ops: list[_OneOp] | None = None
        self._profile = options.get("profile", "0") not in ("0", "", "false")

    def _convert(self, path: Path, input_shapes: dict[str, tuple[int, ...]]) -> bytes:
        """An ONNX model through edgecnn's converter; remember how to present the ONNX interface."""
        from edgecnn.export.to_tflite import onnx_to_tflite
        from edgecnn.graph.load import graph_inputs, load_model

        loaded = load_model(path, input_shapes or None)
        exp = onnx_to_tflite(loaded.model, base_dir=path.parent)
        from edgecnn.export.tflite_writer import read_tflite

        g = read_tflite(exp.data)
        onnx_in = [(vi.name, loaded.input_shapes[vi.name]) for vi in graph_inputs(loaded.model)]
        onnx_out = [
            (o.name, tuple(d.dim_value for d in o.type.tensor_type.shape.dim)) for o in loaded.model.graph.output
        ]
        tfl_in = [tuple(g.tensors[i].shape) for i in g.inputs]
        tfl_out = [tuple(g.tensors[i].shape) for i in g.outputs]
        from edgecnn.export.api import tflite_input_perm

        self._in_perm = [  # channels moved last where the export moved them (an NHWC ONNX input stays as it is)
            tflite_input_perm(a[1], b, "NHWC") if len(a[1]) == 4 and exp.input_layout == "NHWC" else _perm_to(a[1], b)
            for a, b in zip(onnx_in, tfl_in, strict=True)
        ]
        # The converter keeps every output in the ONNX order (it ends the graph with a TRANSPOSE when needed):
        # outputs only need a reshape (e.g. [N, C] vs [N, C, 1, 1]).
        if any(int(np.prod(a[1])) != int(np.prod(b)) for a, b in zip(onnx_out, tfl_out, strict=True)):
            raise ModelError(f"{path}: converted outputs {tfl_out} do not match the ONNX outputs {onnx_out}")
        self._out_perm = [None] * len(onnx_out)
        self._onnx_names = ([n for n, _ in onnx_in], [n for n, _ in onnx_out])
        self._onnx_shapes = ([s for _, s in onnx_in], [s for _, s in onnx_out])
        return exp.data

    @staticmethod
    def runtime_version() -> str:
        return _version()

    @property
    def version(self) -> str:
        return _version()

    def _spec(self, d: dict[str, Any], i: int, which: str) -> TensorSpec:
        q = d.get("quantization_parameters") or {}
        scales, zps = q.get("scales", []), q.get("zero_points", [])
        quant = (float(scales[0]), int(zps[0])) if len(scales) == 1 else None
        if self._onnx_names is not None:
            names, shapes = self._onnx_names[0 if which == "in" else 1], self._onnx_shapes[0 if which == "in" else 1]
            return TensorSpec(name=names[i], shape=tuple(shapes[i]), dtype=np.dtype(d["dtype"]).name, quant=quant)
        return TensorSpec(
            name=d["name"], shape=tuple(int(x) for x in d["shape"]), dtype=np.dtype(d["dtype"]).name, quant=quant
        )

    def inputs(self) -> list[TensorSpec]:
        return [self._spec(d, i, "in") for i, d in enumerate(self._in)]

    def outputs(self) -> list[TensorSpec]:
        return [self._spec(d, i, "out") for i, d in enumerate(self._out)]

    def _set_inputs(self, feeds: dict[str, np.ndarray]) -> None:
        specs = self.inputs()
        missing = [s.name for s in specs if s.name not in feeds]
        if missing:
            raise BadInputError(f"missing input(s) {missing}; the model's inputs are {[s.name for s in specs]}")
        for d, s, perm in zip(self._in, specs, self._in_perm, strict=True):
            x = feeds[s.name]
            if perm is not None:
                x = x.transpose(perm)
            self._interp.set_tensor(d["index"], np.ascontiguousarray(x, dtype=d["dtype"]))

    def _get_outputs(self) -> list[np.ndarray]:
        out = []
        for i, (d, perm) in enumerate(zip(self._out, self._out_perm, strict=True)):
            y = self._interp.get_tensor(d["index"])
            y = np.ascontiguousarray(y.transpose(perm)) if perm is not None else y
            if self._onnx_names is not None:
                y = y.reshape(self._onnx_shapes[1][i])
            out.append(y)
        return out

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self._set_inputs(feeds)
        self._invoke()()
        return self._get_outputs()

    def bind(self, feeds: dict[str, np.ndarray]) -> Callable[[], Any]:
        """Copy ``feeds`` into the interpreter's input buffers once (layout changed here, not in the loop) and
        return the zero-argument call a benchmark times: one ``invoke``."""
        self._set_inputs(feeds)
        return self._invoke()

    def _invoke(self) -> Callable[[], Any]:
        """The pybind C++ ``Invoke`` itself. The Python ``invoke`` first checks, by reference count, that no numpy
        view of an internal buffer is alive (such a view would dangle if tensors were reallocated); this adapter
        never hands out views (``get_tensor`` copies), and a held reference to the C++ method would itself fail
        that count, so every call here goes to ``Invoke`` directly."""
        inner = getattr(self._interp, "_interpreter", None)
        return inner.Invoke if inner is not None and callable(getattr(inner, "Invoke", None)) else self._interp.invoke

    # -- per-op profiling ------------------------------------------------------------------------------------
    def _one_op_interpreters(self) -> list[_OneOp]:
        if self._ops is None:
            ops = []
            with _quiet_stderr():
                for op in one_op_models(self._content):
                    it = litert.Interpreter(
                        model_content=op.data,
                        num_threads=self.threads,
                        experimental_op_resolver_type=_RESOLVERS[self.delegate],
                    )
                    it.allocate_tensors()
                    rng = np.random.default_rng(op.index)
                    for d in it.get_input_details():
                        dt = np.dtype(d["dtype"])
                        if dt.kind == "f":
                            x = rng.standard_normal(d["shape"]).astype(dt)
                        elif dt in (np.int8, np.uint8):
                            x = rng.integers(np.iinfo(dt).min, np.iinfo(dt).max, d["shape"], dtype=dt)
                        else:  # indices, shapes: 0 is valid for any gather/slice
                            x = np.zeros(d["shape"], dt)
                        it.set_tensor(d["index"], x)
                    delegated = any(o["op_name"] == "DELEGATE" for o in it._get_ops_details())
                    ops.append(_OneOp(meta=op, interp=it, invoke=it._interpreter.Invoke, delegated=delegated))
            self._ops = ops
        return self._ops

    def kernel_runs(
        self, call: Callable[[], Any], runs: int, between: Callable[[], Any] | None = None
    ) -> list[list[dict[str, Any]]]:
        """Per run: one whole-model ``call`` (kept so that the runs alternate like the other runtimes'), then every
        operator of the file run alone, in execution order, timed around its interpreter's C++ ``Invoke``:
        name (its first output tensor's name: the ONNX tensor name for edgecnn's converter), builtin op,
        input dtype, whether the delegate took it, microseconds. ``between`` runs after each run."""
        if not self._profile:
            raise BadInputError("litert: per-op profiling needs the session option profile=1")
        ops = self._one_op_interpreters()
        pc = time.perf_counter_ns
        out: list[list[dict[str, Any]]] = []
        for _ in range(runs):
            call()
            run = []
            for o in ops:
                t0 = pc()
                o.invoke()
                t1 = pc()
                run.append(
                    {
                        "key": f"{o.meta.index}:{o.meta.builtin}",
                        "name": o.meta.outputs[0] if o.meta.outputs else f"{o.meta.builtin}_{o.meta.index}",
                        "outputs": list(o.meta.outputs),
                        "op": o.meta.builtin,
                        "input_types": [o.meta.input_dtype],
                        "delegated": o.delegated,
                        "us": (t1 - t0) / 1e3,
                    }
                )
            out.append(run)
            if between is not None:
                between()
        return out

    def executed_graph(self) -> list[dict[str, Any]]:
        """What the whole-model interpreter runs: each operator of the file with ``delegated`` (its one-op
        model was taken by the delegate) and, as entries with ``op == 'DELEGATE'``, the delegate nodes that
        replace them (XNNPACK: "TfLiteXNNPackDelegate", one per partition)."""
        ops = self._one_op_interpreters()
        out: list[dict[str, Any]] = [
            {"name": o.meta.outputs[0] if o.meta.outputs else "", "op": o.meta.builtin, "delegated": o.delegated}
            for o in ops
        ]
        nodes = self._interp._get_ops_details()
        out += [{"name": f"DELEGATE_{n['index']}", "op": "DELEGATE"} for n in nodes if n["op_name"] == "DELEGATE"]
        return out


@dataclasses.dataclass(frozen=True, kw_only=True)
class OneOpModel:
    """One operator of a TFLite file as a model of its own (constant inputs kept, activations as inputs)."""

    index: int
    builtin: str
    outputs: tuple[str, ...]
    input_dtype: str
    data: bytes


@dataclasses.dataclass(frozen=True, kw_only=True)
class _OneOp:
    meta: OneOpModel
    interp: Any
    invoke: Callable[[], Any]
    delegated: bool


def one_op_models(content: bytes) -> list[OneOpModel]:
    """Cut a TFLite file's first subgraph into one model per operator, in execution order."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(content), 0)
    sg = model.subgraphs[0]
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    dtypes = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}

    def text(b: Any) -> str:
        return b.decode() if isinstance(b, bytes) else str(b or "")

    out = []
    for i, op in enumerate(sg.operators or []):
        oc = model.operatorCodes[op.opcodeIndex]
        code = max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode))
        m = schema.ModelT()
        m.version = model.version
        m.description = "edgecnn one-op profile"
        m.operatorCodes = [oc]
        m.buffers = [schema.BufferT()]
        tensors: list[Any] = []
        remap: dict[int, int] = {}

        def add(ti: int, m: Any = m, tensors: list[Any] = tensors, remap: dict[int, int] = remap) -> int:
            if ti < 0:
                return ti
            if ti not in remap:
                t = copy.copy(sg.tensors[ti])
                b = model.buffers[t.buffer]
                if b.data is not None and len(b.data):
                    m.buffers.append(b)
                    t.buffer = len(m.buffers) - 1
                else:
                    t.buffer = 0
                remap[ti] = len(tensors)
                tensors.append(t)
            return remap[ti]

        ins = [add(int(x)) for x in op.inputs]
        graph_in = list(dict.fromkeys(x for x in ins if x >= 0 and tensors[x].buffer == 0))
        outs = [add(int(x)) for x in op.outputs]
        nop = copy.copy(op)
        nop.opcodeIndex = 0
        nop.inputs = ins
        nop.outputs = outs
        g = schema.SubGraphT()
        g.tensors, g.inputs, g.outputs, g.operators = tensors, graph_in, outs, [nop]
        m.subgraphs = [g]
        builder = flatbuffers.Builder(1024)
        builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
        first_in = tensors[graph_in[0]].type if graph_in else (tensors[ins[0]].type if ins else 0)
        out.append(
            OneOpModel(
                index=i,
                builtin=names.get(code, f"CODE_{code}"),
                outputs=tuple(text(tensors[o].name) for o in outs),
                input_dtype=dtypes.get(first_in, str(first_in)),
                data=bytes(builder.Output()),
            )
        )
    return out


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """LiteRT's C++ code logs "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." on fd 2 when a model
    loads; keep it out of edgecnn's output (errors still arrive as Python exceptions)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _perm_to(src: tuple[int, ...], dst: tuple[int, ...]) -> tuple[int, ...] | None:
    """The permutation p with ``src[p] == dst`` for layout changes (NCHW <-> NHWC), None when equal."""
    src, dst = tuple(src), tuple(dst)
    if src == dst:
        return None
    if len(src) == 4 and (src[0], src[2], src[3], src[1]) == dst:
        return (0, 2, 3, 1)
    if len(src) == 4 and (src[0], src[3], src[1], src[2]) == dst:
        return (0, 3, 1, 2)
    if len(src) == 3 and (src[0], src[2], src[1]) == dst:
        return (0, 2, 1)
    if int(np.prod(src)) == int(np.prod(dst)):
        return None  # same data, different rank (e.g. [N, C, 1, 1] vs [N, C]): reshape, not transpose
    raise ModelError(f"converted TFLite tensor shape {list(dst)} does not correspond to the ONNX shape {list(src)}")
