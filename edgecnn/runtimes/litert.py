"""LiteRT adapter (``ai-edge-litert``'s TFLite interpreter, CPU, XNNPACK delegate by default).

A ``.tflite`` file runs as it is: its own inputs and outputs (NHWC images, int8 I/O when the file has them).
An ``.onnx`` file runs through edgecnn's own converter (``edgecnn.export.to_tflite``, in memory) and keeps
the ONNX model's interface: inputs and outputs in the ONNX layout, transposed at the boundary, so the same
feeds and the same comparisons work on every runtime (the contract tests rely on it). Inputs bound with
``bind`` are transposed once, before the timed loop.

Options: ``delegate`` = ``xnnpack`` (default; LiteRT applies it itself) | ``none`` (the builtin kernels
without default delegates) | ``reference`` (reference kernels, slow, for debugging numbers).
"""

from __future__ import annotations

import contextlib
import os
import sys
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
            if not path.is_file():
                raise ModelError(f"{path}: no such file; give the path of a .tflite model")
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
        nhwc = exp.input_layout == "NHWC"
        self._in_perm = [
            (0, 2, 3, 1) if nhwc and len(a[1]) == 4 else _perm_to(a[1], b) for a, b in zip(onnx_in, tfl_in, strict=True)
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
        self._interp.invoke()
        return self._get_outputs()

    def bind(self, feeds: dict[str, np.ndarray]) -> Callable[[], Any]:
        """Copy ``feeds`` into the interpreter's input buffers once (layout changed here, not in the loop) and
        return the zero-argument call a benchmark times: one ``invoke``."""
        self._set_inputs(feeds)
        # The pybind C++ Invoke itself: the Python ``invoke`` re-checks, on every call, that no numpy view of an
        # internal buffer is alive (a refcount scan); checked here once, and the loop holds no such view.
        self._interp._ensure_safe()
        inner = getattr(self._interp, "_interpreter", None)
        return inner.Invoke if inner is not None and callable(getattr(inner, "Invoke", None)) else self._interp.invoke


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
