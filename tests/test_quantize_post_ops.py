"""--runtime openvino: a learnable affine block (Mul and Add by constants) right after a fused activation joins the
convolution's float post-op chain, so one Q/DQ follows it instead of one before and after each op (PP-LCNet,
PP-OCRv4). Each side of the rule, on a real OpenVINO compile."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from edgecnn.graph.passes import prepare
from edgecnn.preprocess import find_spec
from edgecnn.quantize.api import QuantizeConfig, quantize
from edgecnn.quantize.dataset import ImageDataset
from edgecnn.quantize.estimators import Method
from edgecnn.quantize.params import OPENVINO_CPU
from edgecnn.quantize.qdq import OP_POLICIES, OPENVINO_POLICY, ORT_POLICY, plan
from tests.conftest import CALIB_DIR, EVAL_DIR
from tests.onnx_builders import make_model, rng_w

N = helper.make_node


def _block(affine_reads_activation: bool = False, cin: int = 3, stem: bool = False) -> onnx.ModelProto:
    """Conv -> hard-swish (HardSigmoid * x) -> Mul(s) -> Add(b) -> Conv. ``affine_reads_activation``: the Mul
    multiplies by another activation instead (an SE-style gate), which is not a constant affine. ``cin`` > 4: a
    feature map, not an image (ONNX Runtime keeps an image-reading Conv + HardSwish float); ``stem``: the image
    goes through a Conv(3 -> cin) + Relu first, so the block reads a feature map of real images."""
    first = "stem" if stem else "input"
    nodes = [
        N("Conv", ["input", "w0"], ["stem_c"], name="conv0", kernel_shape=[3, 3], pads=[1] * 4),
        N("Relu", ["stem_c"], ["stem"], name="relu0"),
    ] if stem else []  # fmt: skip
    nodes += [
        N("Conv", [first, "w1", "b1"], ["t"], name="conv1", kernel_shape=[3, 3], pads=[1] * 4),
        N("HardSigmoid", ["t"], ["g"], name="hsig", alpha=1 / 6, beta=0.5),
        N("Mul", ["t", "g"], ["h"], name="hswish"),
        N("Mul", ["h", "g" if affine_reads_activation else "s"], ["m"], name="lab_mul"),
        N("Add", ["m", "b"], ["a"], name="lab_add"),
        N("Conv", ["a", "w2"], ["y"], name="conv2", kernel_shape=[1, 1]),
    ]
    inits = {
        "w1": rng_w(8, cin, 3, 3),
        "b1": rng_w(8, seed=1),
        "s": np.array(0.7, np.float32),
        "b": np.array(0.3, np.float32),
        "w2": rng_w(4, 8, 1, 1, seed=2),
    }
    if stem:
        inits["w0"] = rng_w(cin, 3, 3, 3, seed=3)
    return make_model(nodes, [("input", [1, 3 if stem else cin, 32, 32])], [("y", None)], inits, opset=13)


def test_the_affine_block_joins_the_post_op_chain_on_openvino_only() -> None:
    m = prepare(_block(cin=8))  # shapes inferred, as quantize plans it
    ov = plan(m, policy=OPENVINO_POLICY)
    assert {"hsig", "hswish", "lab_mul", "lab_add"} <= set(ov.post_ops) and ov.post_ops["lab_add"] == "conv1"
    assert "a" in ov.activations and not {"t", "g", "h", "m"} & set(ov.activations)  # one Q, after the Add
    ort = plan(m, policy=ORT_POLICY)  # ONNX Runtime has no float epilogue: the affine ops run as QLinearMul/Add
    assert {"lab_mul", "lab_add"} <= set(ort.quantized_nodes) and {"m", "a"} <= set(ort.activations)
    # negative control: a Mul by another activation is not a constant affine and ends the chain
    gate = plan(prepare(_block(affine_reads_activation=True, cin=8)), policy=OPENVINO_POLICY)
    assert "lab_mul" not in gate.post_ops and "lab_add" not in gate.post_ops


def test_one_requantization_is_closer_to_float_on_openvino(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same quantizer with the rule on and off (the affine ops then get a Q/DQ each): on OpenVINO, with the
    rule the model has fewer requantizations and is closer to float."""
    import openvino as ov_runtime

    src = tmp_path / "m.onnx"
    onnx.save(_block(), str(src))
    ds = ImageDataset.open(CALIB_DIR, find_spec(CALIB_DIR), 32)
    spec = find_spec(EVAL_DIR)
    xs = np.stack([spec.load(p) for p in sorted(EVAL_DIR.glob("*.png"))[:32]])
    core = ov_runtime.Core()

    def run(path: Path) -> np.ndarray:
        c = core.compile_model(core.read_model(str(path)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        return np.concatenate([c([x[None]])[0] for x in xs]).astype(np.float64)

    ref = run(src)
    err = {}
    for rule in (True, False):
        monkeypatch.setitem(OP_POLICIES, "openvino", replace(OPENVINO_POLICY, post_op_affine=rule))
        cfg = QuantizeConfig(runtime="openvino", scheme=OPENVINO_CPU, bias_correction=False, mse_check=False)
        q, _ = quantize(src, ds, cfg)
        path = tmp_path / f"rule_{rule}.onnx"
        onnx.save(q, str(path))
        qs = sum(n.op_type == "QuantizeLinear" for n in q.graph.node)
        err[rule] = (qs, float(np.sum((run(path) - ref) ** 2) / np.sum(ref**2)))
    assert err[True][0] == err[False][0] - 2  # no Q after the hard-swish and after the Mul
    assert err[True][1] < err[False][1], err


def test_the_affine_block_is_absorbed_into_the_grids_on_onnx_runtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ONNX Runtime has no float epilogue, so the affine block after the hard-swish runs in integer. With the
    rule, Mul(s) and Add(b) are absorbed into the grids: the hard-swish's Q writes codes on the Add output's grid
    (scale / s, zero point shifted by b) and the next Conv's DQ reads them there. ONNX Runtime then executes
    neither a QLinearMul for the Mul nor a QLinearAdd. With MSE ranges (what ``auto`` ships when it measures
    better) the output is closer to float than with each op requantized (the rule off), since each op's own
    clipped range costs a rounding; with min/max ranges those requantizations are nearly lossless and the two
    agree within 2%. Negative controls: a Mul by a negative scale (no grid has one) and a Mul by another
    activation stay QLinear ops."""
    import collections

    import onnxruntime as ort

    ds = ImageDataset.open(CALIB_DIR, find_spec(CALIB_DIR), 32)
    spec = find_spec(EVAL_DIR)
    xs = np.stack([spec.load(p) for p in sorted(EVAL_DIR.glob("*.png"))[:32]])

    def run(path: Path) -> tuple[np.ndarray, collections.Counter[str]]:
        so = ort.SessionOptions()
        so.optimized_model_filepath = str(path.with_suffix(".opt.onnx"))
        s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        ops = collections.Counter(n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node)
        return np.concatenate([s.run(None, {"input": x[None]})[0] for x in xs]).astype(np.float64), ops

    def quantized(
        model: onnx.ModelProto, name: str, rule: bool = True, method: Method = Method.MSE
    ) -> tuple[float, collections.Counter[str]]:
        src = tmp_path / f"{name}.onnx"
        onnx.save(model, str(src))
        monkeypatch.setitem(OP_POLICIES, "ort", replace(ORT_POLICY, absorb_affine=rule))
        q, _ = quantize(src, ds, QuantizeConfig(method=method, bias_correction=False, mse_check=False))
        path = tmp_path / f"{name}_{rule}_q.onnx"
        onnx.save(q, str(path))
        ref, _ = run(src)
        got, ops = run(path)
        return float(np.sum((got - ref) ** 2) / np.sum(ref**2)), ops

    on, ops_on = quantized(_block(cin=8, stem=True), "lab")
    off, ops_off = quantized(_block(cin=8, stem=True), "lab", rule=False)
    # hard-swish = QLinearAdd (HardSigmoid's integer form) + QLinearMul (x * gate); the affine ops add one each
    assert ops_on["QLinearMul"] == 1 and ops_on["QLinearAdd"] == 1, ops_on
    assert ops_off["QLinearMul"] == 2 and ops_off["QLinearAdd"] == 2, ops_off
    assert on < 0.8 * off, (on, off)
    # drift still compares the chain end: the DQ that reads it takes its name
    from edgecnn.drift.evaluate import match_layers

    ref_m, cand_m = (
        onnx.shape_inference.infer_shapes(onnx.load(str(tmp_path / f))) for f in ("lab.onnx", "lab_True_q.onnx")
    )
    assert "a" in {p.tensor for p in match_layers(ref_m, cand_m)}
    on_mm, _ = quantized(_block(cin=8, stem=True), "lab_minmax", method=Method.MINMAX)
    off_mm, _ = quantized(_block(cin=8, stem=True), "lab_minmax", rule=False, method=Method.MINMAX)
    assert on_mm < 1.02 * off_mm, (on_mm, off_mm)
    neg = _block(cin=8, stem=True)
    next(t for t in neg.graph.initializer if t.name == "s").CopyFrom(
        onnx.numpy_helper.from_array(np.array(-0.7, np.float32), "s")
    )
    _, ops_neg = quantized(neg, "negative_scale")
    # the Mul by -0.7 stays a QLinearMul; the Add after it is a chain of its own, absorbed
    assert ops_neg["QLinearMul"] == 2 and ops_neg["QLinearAdd"] == 1, ops_neg
    _, ops_gate = quantized(_block(affine_reads_activation=True, cin=8, stem=True), "gate")
    assert ops_gate["QLinearMul"] == 2, ops_gate
