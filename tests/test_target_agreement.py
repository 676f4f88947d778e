"""edgecnn's verdicts agree with real runtimes: OpenVINO query_model (intel-cpu) and ORT CPU sessions (ort-cpu)."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from edgecnn.check.placement import check_target
from edgecnn.check.spec import load_target
from edgecnn.graph.load import load_model
from edgecnn.runtimes.query import openvino_devices, openvino_query, ort_cpu_query
from tests.target_corpus import OPENVINO_MISSING, single_op

INTEL = load_target("intel-cpu")
NPU = load_target("intel-npu")
ORT = load_target("ort-cpu")


def _save(tmp_path: Path, op: str) -> Path:
    p = tmp_path / f"{op}.onnx"
    onnx.save(single_op(op), p)
    return p


@pytest.mark.parametrize("op", [*sorted(INTEL.ops), *sorted(OPENVINO_MISSING)])
def test_openvino_query_model_agrees_with_intel_cpu(tmp_path: Path, op: str) -> None:
    path = _save(tmp_path, op)
    ours = check_target(load_model(path), INTEL)
    for device in [d for d in openvino_devices() if d == "CPU"]:
        real = openvino_query(path, device)
        assert ours.all_accelerated == real.ok, (op, device, real, ours.nodes)
    if op in OPENVINO_MISSING:
        assert not ours.runnable  # negative control: the corpus really exercises the 'no' side


@pytest.mark.parametrize("op", sorted(ORT.ops))
def test_ort_cpu_session_agrees_with_ort_cpu_target(tmp_path: Path, op: str) -> None:
    path = _save(tmp_path, op)
    ours = check_target(load_model(path), ORT)
    real = ort_cpu_query(path)
    assert ours.all_accelerated == real.ok, (op, real, ours.nodes)


def _has_npu() -> bool:
    try:
        return "NPU" in openvino_devices()
    except Exception:  # OpenVINO missing: no NPU either
        return False


@pytest.mark.skipif(
    not _has_npu(),
    reason="no NPU in openvino.Core().available_devices (needs Intel Core Ultra + NPU driver); "
    'intel-npu op list is conservative, Core.query_model(model, "NPU") is the definitive check',
)
@pytest.mark.parametrize("op", sorted(NPU.ops))
def test_openvino_query_model_agrees_with_intel_npu(tmp_path: Path, op: str) -> None:  # pragma: no cover - needs NPU
    path = _save(tmp_path, op)
    ours = check_target(load_model(path), NPU)
    real = openvino_query(path, "NPU")
    # Listed ops come from the conformance report, not a support list: report both sides on disagreement.
    assert ours.all_accelerated == real.ok, (op, real, ours.nodes)
