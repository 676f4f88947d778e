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
from edgecnn.quantize.params import OPENVINO_CPU
from edgecnn.quantize.qdq import OP_POLICIES, OPENVINO_POLICY, ORT_POLICY, plan
from tests.conftest import CALIB_DIR, EVAL_DIR
from tests.onnx_builders import make_model, rng_w

N = helper.make_node


def _block(affine_reads_activation: bool = False, cin: int = 3) -> onnx.ModelProto:
    """Conv -> hard-swish (HardSigmoid * x) -> Mul(s) -> Add(b) -> Conv. ``affine_reads_activation``: the Mul
    multiplies by another activation instead (an SE-style gate), which is not a constant affine. ``cin`` > 4: a
    feature map, not an image (ONNX Runtime keeps an image-reading Conv + HardSwish float)."""
    nodes = [
        N("Conv", ["input", "w1", "b1"], ["t"], name="conv1", kernel_shape=[3, 3], pads=[1] * 4),
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
    return make_model(nodes, [("input", [1, cin, 32, 32])], [("y", None)], inits, opset=13)


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
