"""OpenVINO adapter (CPU plugin). Reads ONNX directly; compiles for latency."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import openvino as ov

from edgecnn.errors import BadInputError, ModelError
from edgecnn.runtimes import OV_PROPERTY
from edgecnn.runtimes.base import RuntimeClock, TensorSpec

_core: ov.Core | None = None

# Session options OV_PROPERTY + NAME = VALUE (``--ov-property NAME=VALUE``) reach the plugin's compile_model config
# as NAME: VALUE, as a deployment's own config would, after edgecnn's defaults, which they override; except the
# properties edgecnn's own options set (name -> the option that sets it), which are refused.
OWN_PROPERTIES = {"INFERENCE_NUM_THREADS": "--threads", "PERF_COUNT": "edgecnn profile"}


def core() -> ov.Core:
    global _core
    if _core is None:
        _core = ov.Core()
    return _core


class OpenVinoSession:
    name: ClassVar[str] = "openvino"

    def __init__(
        self, path: Path, *, threads: int, input_shapes: dict[str, tuple[int, ...]], options: dict[str, str]
    ) -> None:
        c = core()
        try:
            model = c.read_model(str(path))
        except RuntimeError as e:
            raise ModelError(f"{path}: OpenVINO cannot read the model: {str(e).strip().splitlines()[0]}") from None
        if input_shapes:
            model.reshape({k: ov.PartialShape(list(v)) for k, v in input_shapes.items()})
        config: dict[str, str] = {"PERFORMANCE_HINT": "LATENCY"}
        # f32 by default so results match the float model; pass inference_precision=bf16/f16 to override.
        # "default" leaves the choice to OpenVINO (bf16 on CPUs with AMX or AVX512-BF16).
        if options.get("inference_precision", "f32") != "default":
            config["INFERENCE_PRECISION_HINT"] = options.get("inference_precision", "f32")
        if options.get("profile") == "1":
            config["PERF_COUNT"] = "YES"  # per-layer performance counters (edgecnn profile)
        if threads:
            config["INFERENCE_NUM_THREADS"] = str(threads)
        asked = properties_of(options)
        config.update(asked)
        self.device = options.get("device", "CPU")
        try:
            self._compiled = c.compile_model(model, self.device, config)
        except RuntimeError as e:
            if asked:  # the plugin names the property it refuses (e.g. "Wrong value maybe for property key ...")
                why = next((ln.strip() for ln in str(e).splitlines() if any(k in ln for k in asked)), "")
                if why:
                    given = " ".join(f"{k}={v}" for k, v in asked.items())
                    raise BadInputError(
                        f"--ov-property {given}: OpenVINO's {self.device} plugin refuses it: {why}"
                    ) from None
            raise ModelError(
                f"{path}: OpenVINO cannot compile the model for {self.device}: {str(e).strip().splitlines()[0]}"
            ) from None
        self._req = self._compiled.create_infer_request()
        # each --ov-property as the compiled model reports it back (what ran, not what was asked)
        self.properties = {k: _property_text(self._compiled.get_property(k)) for k in asked}
        self.threads = threads or int(self._compiled.get_property("INFERENCE_NUM_THREADS"))
        # The precision the plugin actually runs float layers in (it may differ from the model's f32).
        self.inference_precision = self._compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
        self._inputs = [
            TensorSpec(name=p.get_any_name(), shape=tuple(p.get_shape()), dtype=p.get_element_type().to_dtype().name)
            for p in self._compiled.inputs
        ]
        # An output port may carry several tensor names (OpenVINO merges the names of tensors it fuses, e.g. a
        # MatMul's and its bias Add's); the one the caller asked for is the ONNX graph output's.
        wanted = _onnx_output_names(path)
        self._outputs = [
            TensorSpec(
                name=next((n for n in wanted if n in p.get_names()), p.get_any_name()),
                shape=tuple(p.get_partial_shape().get_min_shape()),
                dtype=p.get_element_type().to_dtype().name,
            )
            for p in self._compiled.outputs
        ]

    def runtime_precisions(self) -> dict[str, int]:
        """How many layers of the compiled (execution) graph run in each precision (u8, i8, bf16, f32...)."""
        counts: dict[str, int] = {}
        for op in self._compiled.get_runtime_model().get_ops():
            rt = op.get_rt_info()
            if "runtimePrecision" not in rt or rt["layerType"].value in ("Input", "Output", "Const", "Reorder"):
                continue
            p = rt["runtimePrecision"].value
            counts[p] = counts.get(p, 0) + 1
        return counts

    @staticmethod
    def runtime_version() -> str:
        return ov.get_version().split("-")[0]

    @property
    def version(self) -> str:
        return self.runtime_version()

    def inputs(self) -> list[TensorSpec]:
        return list(self._inputs)

    def outputs(self) -> list[TensorSpec]:
        return list(self._outputs)

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        res = self._req.infer(feeds)
        return [np.array(res[p]) for p in self._compiled.outputs]

    def bind(self, feeds: dict[str, np.ndarray]) -> Callable[[], Any]:
        """Set ``feeds`` as the request's input tensors once (shared memory, no copy) and return a
        zero-argument call running one inference: what a benchmark loop times. ``run()`` copies inputs
        and outputs on every call (about 60 us on a small model), which is not the runtime's latency."""
        self._bound = {k: np.ascontiguousarray(v) for k, v in feeds.items()}  # keep the shared buffers alive
        for name, arr in self._bound.items():
            self._req.set_tensor(name, ov.Tensor(arr, shared_memory=True))
        try:  # the C++ infer itself: the Python wrapper re-dispatches inputs and copies outputs every call
            from openvino._pyopenvino import InferRequest as _Req

            return functools.partial(_Req.infer, self._req, {}, True, False)
        except (ImportError, AttributeError):
            return self._req.infer

    def clock(self) -> RuntimeClock | None:
        """The request's own clock: the Python binding's InferRequestWrapper stamps
        ``std::chrono::high_resolution_clock`` (libstdc++: system_clock, 1 ns tick) immediately around the C++ ``infer``
        with the GIL released and exposes the difference as ``latency`` in ms -- the same kind of chrono clock
        benchmark_app puts around its ``infer()``. Source: openvinotoolkit/openvino,
        src/bindings/python/src/pyopenvino/core/infer_request.hpp (OpenVINO 2025-2026)."""
        try:
            from openvino._pyopenvino import InferRequest as _Req

            read = functools.partial(_Req.latency.fget, self._req)  # type: ignore[attr-defined]
            read()
        except (ImportError, AttributeError, TypeError):
            return None
        return RuntimeClock(
            name="OpenVINO InferRequest.latency (C++ std::chrono::high_resolution_clock around infer)",
            resolution_ns=1.0,
            unit_ns=1e6,
            read_last=read,
        )

    def kernel_runs(
        self, call: Callable[[], Any], runs: int, between: Callable[[], Any] | None = None
    ) -> list[list[dict[str, Any]]]:
        """Run ``call`` ``runs`` times and read the performance counters after each (session option
        ``profile=1``): per run, the executed layers with exec type, layer type and microseconds.
        ``between`` runs after each profiled run (e.g. a timed run of a plain session)."""
        out: list[list[dict[str, Any]]] = []
        for _ in range(runs):
            call()
            infos = self._req.get_profiling_info()
            if between is not None:
                between()
            if not infos:
                raise ModelError("OpenVINO returned no performance counters (compile with PERF_COUNT=YES: profile=1)")
            out.append(
                [
                    {
                        "name": p.node_name,
                        "key": p.node_name,
                        "op": p.node_type,
                        "exec_type": p.exec_type,
                        "executed": p.status == ov.ProfilingInfo.Status.EXECUTED,
                        "us": p.real_time.total_seconds() * 1e6,
                    }
                    for p in infos
                ]
            )
        return out

    def executed_graph(self) -> list[dict[str, str]]:
        """The graph the CPU plugin executes (``get_runtime_model``): per node its name, layer type, kernel
        (primitiveType), runtime precision, output layout and the original layers fused into it."""
        nodes = []
        for op in self._compiled.get_runtime_model().get_ordered_ops():
            rt = op.get_rt_info()
            info = {k: rt[k].astype(str) for k in rt.keys()}  # noqa: SIM118 (RTMap)
            if info.get("layerType") == "Const":
                continue
            nodes.append({"name": op.get_friendly_name(), **info})
        return nodes

    def precision(self) -> str:
        """The inference precision the compiled model uses (e.g. 'f32', 'bf16')."""
        return _type_name(self._compiled.get_property("INFERENCE_PRECISION_HINT"))


def properties_of(options: dict[str, str]) -> dict[str, str]:
    """The OpenVINO properties among session ``options`` (keys ``property:NAME``), by NAME."""
    return {k[len(OV_PROPERTY) :]: v for k, v in options.items() if k.startswith(OV_PROPERTY)}


def check_properties(props: dict[str, str], device: str = "CPU") -> None:
    """A one-line error (exit 2) for a property ``device``'s plugin does not have or cannot set, or one an edgecnn
    option sets; the values are the plugin's to judge (when it compiles)."""
    settable = sorted(k for k, mode in core().get_property(device, "SUPPORTED_PROPERTIES").items() if "W" in str(mode))
    for k, v in props.items():
        if k in OWN_PROPERTIES:
            raise BadInputError(f"--ov-property {k}={v}: edgecnn sets {k} itself; use {OWN_PROPERTIES[k]}")
        if k not in settable:
            raise BadInputError(
                f"--ov-property {k}={v}: OpenVINO's {device} plugin has no settable property {k}; "
                f"settable: {', '.join(x for x in settable if x not in OWN_PROPERTIES)}"
            )


def default_cpu_precision() -> str:
    """What OpenVINO's CPU plugin picks when no precision is asked for (bf16 on AMX / AVX512-BF16 CPUs)."""
    return _type_name(core().get_property("CPU", "INFERENCE_PRECISION_HINT"))


def _property_text(v: Any) -> str:
    """A compiled model's property value as text (OpenVINO returns bools, enums, element types)."""
    if isinstance(v, bool):
        return "YES" if v else "NO"
    return _type_name(v) if hasattr(v, "get_type_name") else str(v)


def _type_name(t: Any) -> str:
    return str(t.get_type_name()) if hasattr(t, "get_type_name") else str(t).lower()


def _onnx_output_names(path: Path) -> list[str]:
    if path.suffix.lower() != ".onnx":
        return []
    import onnx

    try:
        return [o.name for o in onnx.load(str(path), load_external_data=False).graph.output]
    except Exception:  # OpenVINO read it; its own names will do
        return []
