"""Ask a real runtime which ops of a model it supports: the ground truth for the target agreement tests.

OpenVINO: ``Core.query_model`` per device; ONNX Runtime: whether the CPU execution provider can build a
session (it fails when any node lacks a kernel for its types). Imports of the runtimes stay in here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgecnn.errors import MissingRuntimeError


@dataclass(frozen=True, kw_only=True)
class QueryResult:
    """Whether the runtime can run the whole model on ``device``, and why not."""

    runtime: str
    device: str
    ok: bool
    unsupported: list[str] = field(default_factory=list)  # runtime op names not placed on the device
    error: str = ""


def openvino_devices() -> list[str]:
    """Devices the installed OpenVINO plugins offer here (e.g. ['CPU'], ['CPU', 'GPU', 'NPU'])."""
    try:
        import openvino as ov
    except ImportError:
        raise MissingRuntimeError("OpenVINO (python module openvino)", "pip install openvino") from None
    return list(ov.Core().available_devices)


def openvino_query(path: str | Path, device: str = "CPU") -> QueryResult:
    """``Core.query_model`` on ``device``: ok when OpenVINO reads the model and places every op there."""
    try:
        import openvino as ov
    except ImportError:
        raise MissingRuntimeError("OpenVINO (python module openvino)", "pip install openvino") from None
    core = ov.Core()
    try:
        model = core.read_model(str(path))
    except Exception as e:  # OpenVINO raises RuntimeError/OpConversionFailure subclasses
        return QueryResult(runtime="openvino", device=device, ok=False, error=_first(e))
    try:
        placed = core.query_model(model, device)
    except Exception as e:
        return QueryResult(runtime="openvino", device=device, ok=False, error=_first(e))
    names = [op.get_friendly_name() for op in model.get_ops()]
    missing = [n for n in names if n not in placed]
    return QueryResult(runtime="openvino", device=device, ok=not missing, unsupported=missing)


def ort_cpu_query(path: str | Path) -> QueryResult:
    """ok when ONNX Runtime's CPU execution provider builds a session (every node has a kernel)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise MissingRuntimeError("ONNX Runtime (python module onnxruntime)", "pip install onnxruntime") from None
    so = ort.SessionOptions()
    so.log_severity_level = 4
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as e:
        return QueryResult(runtime="onnxruntime", device="CPU", ok=False, error=_first(e))
    return QueryResult(runtime="onnxruntime", device="CPU", ok=True)


def _first(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0][:300] if s else e.__class__.__name__
