"""--runtime openvino --silu-form: a SiLU on a Conv's output written as x·(0.5 + 0.5·tanh(x/2)) (qdq.silu_as_tanh),
the same function; auto picks it on a CPU with AMX int8 (benchmarks/ov_silu_form.py measures both sides)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper

from edgecnn.preprocess import find_spec
from edgecnn.quantize.api import QuantizeConfig, quantize, silu_form
from edgecnn.quantize.dataset import ImageDataset
from edgecnn.quantize.estimators import Method
from edgecnn.quantize.params import OPENVINO_CPU
from edgecnn.quantize.qdq import silu_as_tanh
from tests.conftest import CALIB_DIR, EVAL_DIR
from tests.onnx_builders import make_model, rng_w

N = helper.make_node


def _silu_net() -> onnx.ModelProto:
    """Four SiLU-shaped patterns, one of each kind: conv1's SiLU (rewritten); a Sigmoid gate on conv2's output
    multiplied with another tensor (an SE-style gate, not a SiLU); a SiLU on an Add (not on a Conv); conv3's
    output read by a third node besides its SiLU."""
    nodes = [
        N("Conv", ["input", "w1", "b1"], ["c1"], name="conv1", kernel_shape=[3, 3], pads=[1] * 4),
        N("Sigmoid", ["c1"], ["s1"], name="sig1"),
        N("Mul", ["c1", "s1"], ["a1"], name="silu1"),
        N("Conv", ["a1", "w2"], ["c2"], name="conv2", kernel_shape=[1, 1]),
        N("Sigmoid", ["c2"], ["s2"], name="gate"),
        N("Mul", ["a1", "s2"], ["g"], name="gated"),
        N("Add", ["g", "a1"], ["r"], name="res"),
        N("Sigmoid", ["r"], ["s3"], name="sig_add"),
        N("Mul", ["s3", "r"], ["a3"], name="silu_add"),
        N("Conv", ["a3", "w3"], ["c3"], name="conv3", kernel_shape=[3, 3], pads=[1] * 4),
        N("Sigmoid", ["c3"], ["s4"], name="sig3"),
        N("Mul", ["c3", "s4"], ["a4"], name="silu3"),
        N("Add", ["a4", "c3"], ["y"], name="skip"),
    ]
    inits = {"w1": rng_w(8, 3, 3, 3), "b1": rng_w(8, seed=1), "w2": rng_w(8, 8, 1, 1, seed=2) * 0.3,
             "w3": rng_w(8, 8, 3, 3, seed=3) * 0.3}  # fmt: skip
    return make_model(nodes, [("input", [1, 3, 32, 32])], [("y", None)], inits, opset=13)


def _run(m: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {"input": x})[0]


def test_only_a_silu_on_a_conv_output_is_rewritten_and_computes_the_same() -> None:
    m = _silu_net()
    ref = onnx.ModelProto()
    ref.CopyFrom(m)
    assert silu_as_tanh(m) == 1
    onnx.checker.check_model(m, full_check=True)
    ops = [n.op_type for n in m.graph.node]
    assert ops.count("Tanh") == 1 and ops.count("Sigmoid") == 3  # the gate, the SiLU on an Add, conv3's
    assert {n.name for n in m.graph.node if n.op_type == "Sigmoid"} == {"gate", "sig_add", "sig3"}
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32) * 4
    a, b = _run(ref, x), _run(m, x)
    assert np.max(np.abs(a - b)) <= 1e-5 * max(1.0, float(np.max(np.abs(a))))
    assert silu_as_tanh(m) == 0  # nothing left to rewrite


@pytest.mark.parametrize(
    ("choice", "runtime", "flags", "form"),
    [
        ("auto", "openvino", ("amx_bf16", "amx_int8", "avx512_vnni"), "tanh"),
        ("auto", "openvino", ("avx512_vnni", "avx512_bf16"), "sigmoid"),  # no AMX: the fused Sigmoid is faster
        ("auto", "openvino", (), "sigmoid"),
        ("sigmoid", "openvino", ("amx_int8",), "sigmoid"),
        ("tanh", "openvino", (), "tanh"),
        ("auto", "ort", ("amx_int8",), "sigmoid"),  # ONNX Runtime: no choice
        ("auto", "integer", ("amx_int8",), "sigmoid"),
    ],
)
def test_auto_picks_tanh_only_for_openvino_on_amx_int8(
    choice: str, runtime: str, flags: tuple[str, ...], form: str
) -> None:
    got, why = silu_form(choice, runtime, flags)
    assert got == form
    assert bool(why) == (runtime == "openvino")
    if choice == "auto" and runtime == "openvino":
        assert ("has AMX int8" in why) == ("amx_int8" in flags)


def _quantized(tmp_path: Path, form: str) -> tuple[onnx.ModelProto, object]:
    src = tmp_path / "m.onnx"
    onnx.save(_silu_net(), str(src))
    ds = ImageDataset.open(CALIB_DIR, find_spec(CALIB_DIR), 16)
    cfg = QuantizeConfig(method=Method.MINMAX, scheme=OPENVINO_CPU, runtime="openvino", silu_form=form)
    return quantize(src, ds, cfg)


def test_quantize_writes_the_form_asked_and_both_run_alike_on_openvino(tmp_path: Path) -> None:
    """The same calibration both ways (minmax: no check chooses between candidates): the tanh file has the
    Tanh and no SiLU Sigmoid, the report says so, and OpenVINO (f32) computes what the sigmoid file computes,
    far closer than either is to the float model."""
    import openvino as ov

    tanh_m, tanh_r = _quantized(tmp_path, "tanh")
    sig_m, sig_r = _quantized(tmp_path, "sigmoid")
    assert tanh_r.silu_as_tanh == 1 and tanh_r.silu_form.startswith("tanh: --silu-form tanh")  # type: ignore[attr-defined]
    assert sig_r.silu_as_tanh == 0 and sig_r.silu_form.startswith("sigmoid: ")  # type: ignore[attr-defined]
    assert any(n.op_type == "Tanh" for n in tanh_m.graph.node) and not any(
        n.op_type == "Tanh" for n in sig_m.graph.node
    )
    assert "sig1" not in {n.name for n in tanh_m.graph.node} and "sig1" in {n.name for n in sig_m.graph.node}
    spec = find_spec(EVAL_DIR)
    xs = np.stack([spec.load(p) for p in sorted(EVAL_DIR.glob("*.png"))[:16]])
    core = ov.Core()
    outs = {}
    for name, m in (("tanh", tanh_m), ("sigmoid", sig_m)):
        p = tmp_path / f"{name}.onnx"
        onnx.save(m, str(p))
        cm = core.compile_model(str(p), "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1})
        outs[name] = np.concatenate([cm({0: x[None]})[0] for x in xs])
    ref = np.concatenate([_run(_silu_net(), x[None]) for x in xs])

    def err(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.sum((a - b) ** 2) / np.sum(b**2))

    assert err(outs["tanh"], outs["sigmoid"]) < 0.05 * err(outs["sigmoid"], ref)


def test_a_model_without_silu_gets_no_silu_line(tmp_path: Path) -> None:
    from tests.onnx_builders import conv_model

    src = tmp_path / "c.onnx"
    onnx.save(conv_model(hw=32), str(src))
    ds = ImageDataset.open(CALIB_DIR, find_spec(CALIB_DIR), 8)
    _, r = quantize(src, ds, QuantizeConfig(method=Method.MINMAX, scheme=OPENVINO_CPU, runtime="openvino"))
    assert r.silu_form == "" and r.silu_as_tanh == 0
