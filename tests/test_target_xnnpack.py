"""Arm CPU verdicts against the real delegate: which operators the LiteRT interpreter's XNNPACK delegate claims.

ai-edge-litert's interpreter applies XNNPACK by default; every single-operator case of
``tests/tflite_cases.py`` (float32, int8, uint8, int16; each on one side of a check in the delegate's
Visit*Node code) and whole models exported by ``edgecnn export`` (float32 and int8) are loaded, and the
operators the delegate took are compared, one by one, with ``edgecnn check --target arm-cpu-xnnpack`` on the
same file. The case table includes negative controls (ops the delegate rejects: average pooling and softmax
in int8, nearest resize, 1x1 strided pooling, six-input concatenation, runtime weights, int32 arithmetic),
and the counts in ``targets/arm-cpu-xnnpack.toml [validation]`` are asserted to be the measured ones.
"""

from __future__ import annotations

import functools
from pathlib import Path

import onnx
import pytest

from edgecnn.check.placement import check_target
from edgecnn.check.spec import load_target
from edgecnn.check.tflite_graph import check_tflite_target, placements
from edgecnn.errors import BadInputError
from edgecnn.export.tflite_writer import read_tflite
from edgecnn.export.to_tflite import onnx_to_tflite
from edgecnn.graph.load import load_model
from tests.onnx_tfl_cases import ONNX_CASES
from tests.test_target_vela import qdq_models  # noqa: F401 - the module-scoped fixture of exported models
from tests.tflite_cases import CASES
from tests.tflite_oracles import xnnpack_claimed

IDS = [c.id for c in CASES]


@functools.cache
def _case(case_id: str) -> tuple[list[bool] | None, list[bool]]:
    """(the delegate's per-op claim, or None when the interpreter has no kernel for the op; edgecnn's)."""
    data = next(c for c in CASES if c.id == case_id).build()
    try:
        real: list[bool] | None = xnnpack_claimed(data)
    except (RuntimeError, ValueError):  # e.g. FLOOR has no int8 kernel at all: not a placement question
        real = None
    rep = check_tflite_target(Path(f"{case_id}.tflite"), load_target("arm-cpu-xnnpack"), read_tflite(data))
    return real, placements(rep)


@pytest.mark.parametrize("case_id", IDS)
def test_check_claims_what_the_xnnpack_delegate_claims(case_id: str) -> None:
    real, ours = _case(case_id)
    if real is None:
        return  # the interpreter refuses the model itself; counted out in the summary test below
    assert ours == real, f"{case_id}: XNNPACK claims {real}, edgecnn says {ours}"


# The ONNX side: `check` on the ONNX model (float32 or QDQ int8) vs the delegate on what `edgecnn export` writes
# from it (float I/O); model-level, as one ONNX op may become several TFLite ops.
ONNX_IDS = [c.id for c in ONNX_CASES]


@functools.cache
def _onnx_case(case_id: str) -> tuple[bool | None, bool]:
    import tempfile

    m = next(c for c in ONNX_CASES if c.id == case_id).build()
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.onnx"
        onnx.save(m, str(p))
        ours = check_target(load_model(p), load_target("arm-cpu-xnnpack")).all_accelerated
    try:
        ex = onnx_to_tflite(m)
        if any("runs in float" in n for n in ex.notes):
            return None, ours  # the converter kept the int8 op in float: the file does not hold what was asked
        return all(xnnpack_claimed(ex.data)), ours
    except (BadInputError, RuntimeError, ValueError):  # no conversion, or no LiteRT kernel: no oracle answer
        return None, ours


@pytest.mark.parametrize("case_id", ONNX_IDS)
def test_check_on_the_onnx_model_agrees_with_the_delegate_on_its_export(case_id: str) -> None:
    real, ours = _onnx_case(case_id)
    if real is not None:
        assert ours == real, f"{case_id}: XNNPACK claims all={real}, edgecnn on the ONNX model={ours}"


def test_validation_counts_in_the_target_file_are_the_measured_ones() -> None:
    results = [_case(c.id) for c in CASES]
    judged = [(r, o) for r, o in results if r is not None]
    agree = sum(r == o for r, o in judged)
    onnx_judged = [(r, o) for r, o in (_onnx_case(c) for c in ONNX_IDS) if r is not None]
    assert sum(r is False for r, _ in onnx_judged) >= 8  # negative controls on the ONNX side too
    agree += sum(r == o for r, o in onnx_judged)
    judged += [([r], [o]) for r, o in onnx_judged]
    v = load_target("arm-cpu-xnnpack").validation
    assert v["cases"] == len(judged) and v["agreement"] == f"{agree}/{len(judged)}", (len(judged), agree)
    claimed = [r[0] for r, _ in judged]
    assert claimed.count(True) >= 100 and claimed.count(False) >= 40  # negative controls are really there


@pytest.fixture(scope="module")
def float_models() -> dict[str, onnx.ModelProto]:
    from tests.test_export_tflite import SAMPLE_MODEL, _bench_model, yolo_block

    out = {"sample_cnn": onnx.load(str(SAMPLE_MODEL)), "yolo_block": yolo_block()}
    return out | {name: _bench_model(name, 64) for name in ("resnet18", "mobilenetv2")}


def test_whole_exported_float_models_claimed_op_by_op(float_models) -> None:
    xnn = load_target("arm-cpu-xnnpack")
    for name, m in float_models.items():
        data = onnx_to_tflite(m, precision="float32").data
        real = xnnpack_claimed(data)
        rep = check_tflite_target(Path(f"{name}.tflite"), xnn, read_tflite(data))
        assert placements(rep) == real, (name, [(n.name, n.op_type) for n in rep.nodes], real)


def test_whole_exported_int8_models_claimed_op_by_op(qdq_models) -> None:  # noqa: F811
    xnn = load_target("arm-cpu-xnnpack")
    for name, q in qdq_models.items():
        data = onnx_to_tflite(q).data
        real = xnnpack_claimed(data)
        rep = check_tflite_target(Path(f"{name}.tflite"), xnn, read_tflite(data))
        assert placements(rep) == real, (name, [(n.name, n.op_type) for n in rep.nodes], real)


def test_an_int8_op_the_delegate_runs_only_in_float_is_told_to_stay_float(tmp_path: Path) -> None:
    # The fix must not send the user back to the command that wrote the QDQ model (issue 11, wording).
    from tests.onnx_tfl_cases import qdq, softmax

    p = tmp_path / "s.onnx"
    onnx.save(qdq(softmax(1)), str(p))
    rep = check_target(load_model(p), load_target("arm-cpu-xnnpack"))
    (node,) = rep.nodes
    (fail,) = node.failures
    assert fail.rule == "dtypes" and "computes in int8" in fail.reason and "only in float32" in fail.reason
    assert fail.fix.startswith("keep Softmax in float") and "quantize this op" not in fail.fix
