"""edgecnn's verdicts agree with real runtimes: OpenVINO query_model (intel-cpu) and ORT CPU sessions (ort-cpu).

Every listed op is checked in float32, and a set of FP16, QDQ INT8 and int32/int64 cases runs too. Negative
controls are cases the real runtime rejects (custom-domain ops, ops OpenVINO cannot convert, integer types
ONNX Runtime has no kernel for): a checker answering "runs" for everything fails them, which
``test_an_always_yes_checker_fails_these_tests`` proves on the same corpus.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgecnn.check.placement import check_target
from edgecnn.check.spec import TargetSpec, load_target
from edgecnn.graph.load import load_model
from edgecnn.quantize.fp16 import convert_fp16
from edgecnn.runtimes.query import QueryResult, openvino_devices, openvino_query, ort_cpu_query
from tests.target_corpus import OPENVINO_MISSING, single_op

INTEL = load_target("intel-cpu")
NPU = load_target("intel-npu")
ORT = load_target("ort-cpu")


def _typed(op: str, elem: int) -> onnx.ModelProto:
    """``single_op(op)`` with its float input, output and initializers retyped to ``elem`` (raw integers)."""
    m = single_op(op)
    dt = helper.tensor_dtype_to_np_dtype(elem)
    for vi in [*m.graph.input, *m.graph.output]:
        if vi.type.tensor_type.elem_type == TensorProto.FLOAT:
            vi.type.tensor_type.elem_type = elem
    inits = [
        numpy_helper.from_array(numpy_helper.to_array(t).astype(dt), t.name) if t.data_type == TensorProto.FLOAT else t
        for t in m.graph.initializer
    ]
    del m.graph.initializer[:]
    m.graph.initializer.extend(inits)
    return m


def _fp16(op: str) -> onnx.ModelProto:
    return convert_fp16(single_op(op), block=frozenset())[0]


def _custom_domain() -> onnx.ModelProto:
    """An op from a domain no runtime here registers (a plugin/custom op from a training framework)."""
    g = helper.make_graph(
        [helper.make_node("FancyAct", ["x"], ["y"], name="fancy", domain="com.example")], "custom",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
    )  # fmt: skip
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    m.ir_version = 8
    return m


def _qdq(op: str, tmp: Path) -> onnx.ModelProto:
    """``single_op(op)`` quantized by ONNX Runtime's own QDQ quantizer (uint8 activations, int8 weights)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    src, dst = tmp / f"{op}_f.onnx", tmp / f"{op}_q.onnx"
    model = single_op(op)
    onnx.save(model, src)
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self.items = iter([{"x": rng.standard_normal(shape).astype(np.float32)} for _ in range(2)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)  # fmt: skip
    return onnx.load(str(dst))


# (case id, builder(tmp) -> model). Positive cases beyond the float32 op list: FP16, QDQ INT8, int32/int64.
QDQ_OPS = ["Conv", "Gemm", "MatMul", "Add", "Mul", "MaxPool", "AveragePool", "GlobalAveragePool", "Relu", "Concat"]
FP16_OPS = ["Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "MaxPool", "Relu", "Sigmoid", "Concat", "Pad"]
INT_CASES: dict[str, Callable[[Path], onnx.ModelProto]] = {
    **{f"fp16-{op}": (lambda _t, op=op: _fp16(op)) for op in FP16_OPS},
    **{f"int8-qdq-{op}": (lambda t, op=op: _qdq(op, t)) for op in QDQ_OPS},
    **{f"int32-{op}": (lambda _t, op=op: _typed(op, TensorProto.INT32)) for op in ("Add", "Mul", "Sub", "Relu")},
    **{f"int64-{op}": (lambda _t, op=op: _typed(op, TensorProto.INT64)) for op in ("Add", "Mul", "Max", "Concat")},
}
# Negative controls: cases the runtime rejects (verified on onnxruntime 1.32.0 / OpenVINO 2026.4).
ORT_REJECTS: dict[str, Callable[[Path], onnx.ModelProto]] = {
    "custom-domain": lambda _t: _custom_domain(),
    "int64-Relu": lambda _t: _typed("Relu", TensorProto.INT64),
    "int32-Gemm": lambda _t: _typed("Gemm", TensorProto.INT32),
    "int64-DepthToSpace": lambda _t: _typed("DepthToSpace", TensorProto.INT64),
    "float64-Conv": lambda _t: _typed("Conv", TensorProto.DOUBLE),
}
OV_REJECTS: dict[str, Callable[[Path], onnx.ModelProto]] = {
    "custom-domain": lambda _t: _custom_domain(),
    **{op: (lambda _t, op=op: single_op(op)) for op in sorted(OPENVINO_MISSING)},
}


def _case(tmp: Path, name: str, build: Callable[[Path], onnx.ModelProto]) -> Path:
    p = tmp / f"{name}.onnx"
    onnx.save(build(tmp), p)
    return p


def _float(op: str) -> Callable[[Path], onnx.ModelProto]:
    return lambda _t: single_op(op)


def _ours(path: Path, target: TargetSpec) -> bool:
    return check_target(load_model(path), target).all_accelerated


def _openvino_cpu(path: Path) -> QueryResult:
    assert "CPU" in openvino_devices()
    return openvino_query(path, "CPU")


OV_CASES = {**{f"f32-{op}": _float(op) for op in sorted(INTEL.ops)}, **INT_CASES}
ORT_CASES = {**{f"f32-{op}": _float(op) for op in sorted(ORT.ops)}, **INT_CASES}


@pytest.mark.parametrize("name", [*OV_CASES, *(f"reject-{k}" for k in OV_REJECTS)])
def test_openvino_query_model_agrees_with_intel_cpu(tmp_path: Path, name: str) -> None:
    negative = name.startswith("reject-")
    build = OV_REJECTS[name.removeprefix("reject-")] if negative else OV_CASES[name]
    path = _case(tmp_path, name, build)
    real = _openvino_cpu(path)
    assert real.ok != negative, (name, real)  # the case is what it claims to be on the real tool
    assert _ours(path, INTEL) == real.ok, (name, real, check_target(load_model(path), INTEL).nodes)


@pytest.mark.parametrize("name", [*ORT_CASES, *(f"reject-{k}" for k in ORT_REJECTS)])
def test_ort_cpu_session_agrees_with_ort_cpu_target(tmp_path: Path, name: str) -> None:
    negative = name.startswith("reject-")
    build = ORT_REJECTS[name.removeprefix("reject-")] if negative else ORT_CASES[name]
    path = _case(tmp_path, name, build)
    real = ort_cpu_query(path)
    assert real.ok != negative, (name, real)
    assert _ours(path, ORT) == real.ok, (name, real, check_target(load_model(path), ORT).nodes)


def test_an_always_yes_checker_fails_these_tests(tmp_path: Path) -> None:
    # The corpora hold cases each runtime rejects, so answering "runs" everywhere disagrees with both.
    ov_no = [k for k, b in OV_REJECTS.items() if not _openvino_cpu(_case(tmp_path, f"ov-{k}", b)).ok]
    ort_no = [k for k, b in ORT_REJECTS.items() if not ort_cpu_query(_case(tmp_path, f"ort-{k}", b)).ok]
    assert len(ov_no) >= 3 and len(ort_no) >= 4, (ov_no, ort_no)
    # ... and both corpora hold FP16, INT8 and integer cases, not only float32.
    assert {k.split("-")[0] for k in INT_CASES} == {"fp16", "int8", "int32", "int64"}


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
    path = _case(tmp_path, op, _float(op))
    real = openvino_query(path, "NPU")
    # Listed ops come from the conformance report, not a support list: report both sides on disagreement.
    assert _ours(path, NPU) == real.ok, (op, real)
