"""ONNX Runtime adapter (CPU execution provider)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnxruntime as ort

from edgecnn.errors import ModelError
from edgecnn.runtimes.base import TensorSpec

ort.set_default_logger_severity(4)  # ORT's own log lines (errors, telemetry warnings) stay off the user's stderr

# What InferenceSession.run raises for a model it loaded but cannot execute (its pybind exception types).
_ORT_RUN_ERRORS = tuple(
    getattr(ort.capi.onnxruntime_pybind11_state, n)
    for n in ("Fail", "InvalidArgument", "RuntimeException", "NotImplemented", "EPFail")
    if hasattr(ort.capi.onnxruntime_pybind11_state, n)
)

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(bool)": "bool",
}


class OrtSession:
    name: ClassVar[str] = "ort"
    # ORT's profiler is set at session creation and ends with end_profiling: kernel_runs once per session
    profiles_once: ClassVar[bool] = True

    def __init__(
        self, path: Path, *, threads: int, input_shapes: dict[str, tuple[int, ...]], options: dict[str, str]
    ) -> None:
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 4  # fatal only: a failure reaches the user as our one-line error, not ORT's log
        level = options.get("graph_optimization_level", "all")
        so.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[level]
        for k, v in options.items():
            if k.startswith("session."):
                so.add_session_config_entry(k, v)
        # Profiling (edgecnn profile): ORT's own per-kernel timer, and the graph it actually executes.
        self._profile_dir: Path | None = None
        if options.get("profile") == "1":
            from edgecnn.fsutil import owned_temp_dir

            self._profile_dir = owned_temp_dir("ortprof", self)
            so.enable_profiling = True
            so.profile_file_prefix = str(self._profile_dir / "ort")
        if options.get("optimized_model"):
            so.optimized_model_filepath = options["optimized_model"]
        try:
            self._sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        except Exception as e:  # ORT raises its own exception types for every load failure
            first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
            raise ModelError(f"{path}: onnxruntime cannot load the model: {first}") from None
        self._path = path
        self.threads = threads
        self.device = "CPU"
        self.inference_precision = "f32"  # the CPU provider computes float ops in float32
        self._input_shapes = input_shapes
        self._out_names = [o.name for o in self._sess.get_outputs()]

    @staticmethod
    def runtime_version() -> str:
        return ort.__version__

    @property
    def version(self) -> str:
        return ort.__version__

    def inputs(self) -> list[TensorSpec]:
        return [
            TensorSpec(
                name=i.name,
                shape=self._input_shapes.get(i.name) or tuple(d if isinstance(d, int) else 1 for d in i.shape),
                dtype=_ORT_TYPES.get(i.type, "float32"),
            )
            for i in self._sess.get_inputs()
        ]

    def outputs(self) -> list[TensorSpec]:
        return [
            TensorSpec(
                name=o.name,
                shape=tuple(d if isinstance(d, int) else -1 for d in o.shape),
                dtype=_ORT_TYPES.get(o.type, "float32"),
            )
            for o in self._sess.get_outputs()
        ]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            return self._sess.run(self._out_names, feeds)
        except _ORT_RUN_ERRORS as e:  # a kernel that fails at run time (not at load): one line naming the file
            said = " ".join(str(e).split())[:400] or type(e).__name__  # ORT's details are on later lines
            raise ModelError(f"{self._path}: onnxruntime failed running the model: {said}") from None

    def bind(self, feeds: dict[str, np.ndarray]) -> Callable[[], Any]:
        """Bind ``feeds`` and preallocated outputs once (io_binding) and return a zero-argument call that runs
        one inference and nothing else: what a benchmark loop times."""
        binding = self._sess.io_binding()
        self._bound = {k: np.ascontiguousarray(v) for k, v in feeds.items()}  # keep the buffers alive
        for name, arr in self._bound.items():
            binding.bind_cpu_input(name, arr)
        for o in self.outputs():
            if all(d > 0 for d in o.shape):
                binding.bind_ortvalue_output(
                    o.name, ort.OrtValue.ortvalue_from_shape_and_type(list(o.shape), np.dtype(o.dtype))
                )
            else:
                binding.bind_output(o.name, "cpu")  # dynamic output: ORT allocates it per run
        self._binding = binding
        try:  # the C++ call itself; the Python wrapper adds checks for WebGPU graph capture on every run
            return functools.partial(self._sess._sess.run_with_iobinding, binding._iobinding, None)
        except AttributeError:
            return functools.partial(self._sess.run_with_iobinding, binding)

    def kernel_runs(
        self, call: Callable[[], Any], runs: int, between: Callable[[], Any] | None = None
    ) -> list[list[dict[str, Any]]]:
        """Run ``call`` ``runs`` times with ORT's profiler on (session option ``profile=1``; once per session)
        and return, per run, the kernels in execution order: name, node_index, op, provider, input dtypes,
        microseconds. ``between`` runs after each profiled run (e.g. a timed run of a plain session)."""
        if self._profile_dir is None:
            raise ModelError("onnxruntime session was opened without profiling (options profile=1)")
        for _ in range(runs):
            call()
            if between is not None:
                between()
        from edgecnn.fsutil import release

        path = self._sess.end_profiling()
        events = json.loads(Path(path).read_text(encoding="utf-8"))
        release(self._profile_dir)  # profiling ends with end_profiling: the folder's one file has been read
        out: list[list[dict[str, Any]]] = []
        cur: list[dict[str, Any]] = []
        for e in events:
            if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time"):
                a = e.get("args", {})
                cur.append(
                    {
                        "name": e["name"][: -len("_kernel_time")],
                        "key": f"{a.get('node_index', '')}:{e['name']}",
                        "op": a.get("op_name", ""),
                        "provider": a.get("provider", ""),
                        "input_types": [next(iter(t), "") for t in a.get("input_type_shape", [])],
                        "us": float(e.get("dur", 0)),
                    }
                )
            elif e.get("cat") == "Session" and e.get("name") == "model_run":
                out.append(cur)
                cur = []
        return out[-runs:] if runs else out
