"""ONNX Runtime adapter (CPU execution provider)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import onnxruntime as ort

from edgecnn.errors import ModelError
from edgecnn.runtimes.base import TensorSpec

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

    def __init__(
        self, path: Path, *, threads: int, input_shapes: dict[str, tuple[int, ...]], options: dict[str, str]
    ) -> None:
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3
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
        try:
            self._sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        except Exception as e:  # ORT raises its own exception types for every load failure
            first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
            raise ModelError(f"{path}: onnxruntime cannot load the model: {first}") from None
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
        return self._sess.run(self._out_names, feeds)
