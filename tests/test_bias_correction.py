"""Depthwise bias correction: it removes the mean output shift that weight rounding causes, and it leaves models
without a depthwise conv alone. Real quantize API, real onnxruntime sessions, real images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from edgecnn.preprocess import list_images, load_spec
from edgecnn.quantize.api import QuantizeConfig, quantize
from edgecnn.quantize.dataset import ImageDataset
from edgecnn.runtimes import open_session
from tests.cli_helpers import ROOT, invoke
from tests.onnx_builders import conv_model, make_model, save

DATA = ROOT / "calibration_data"
SPEC = load_spec(DATA / "preprocess.toml")  # 1x3x32x32, MNIST digits normalised (mean 0.1307, std 0.3081)
C = 3


def _dw_weight(k: int = 3) -> np.ndarray:
    """Per channel one tap of 1.0 and the other taps just below half a quantization step (1/127 / 2): every
    small tap rounds to zero, always the same way, so the channel's sum of weights drops by ~3%."""
    w = np.full((C, 1, k, k), 0.49 / 127, np.float32)
    w[:, 0, k // 2, k // 2] = 1.0
    w[1] *= -1.0  # the shift has either sign, per channel
    return w


def two_convs(second: np.ndarray, group: int, k: int = 3) -> onnx.ModelProto:
    """A 1x1 conv (bias 5: the next conv's input has a large mean next to its variation, the case where the
    rounding error of the weights is mostly a constant per channel), then a k x k Conv with
    weight ``second`` and ``group`` groups (depthwise when group == its input channels == its output channels)."""
    cin = second.shape[1] * group
    w0 = np.zeros((cin, C, 1, 1), np.float32)
    for i in range(cin):
        w0[i, i % C, 0, 0] = 1.0
    nodes = [
        helper.make_node("Conv", ["input", "w0", "b0"], ["h"], name="pw", kernel_shape=[1, 1]),
        helper.make_node("Conv", ["h", "w1"], ["y"], name="dw", kernel_shape=[k, k], pads=[k // 2] * 4, group=group),
    ]
    inits = {"w0": w0, "b0": np.full(cin, 5.0, np.float32), "w1": second}
    return make_model(nodes, [("input", [1, C, 32, 32])], [("y", None)], inits, opset=13)


def depthwise_model() -> onnx.ModelProto:
    return two_convs(_dw_weight(), group=C)


def _outputs(path: Path, xs: np.ndarray) -> np.ndarray:
    s = open_session("ort", path)
    return np.concatenate([s.run({"input": x[None]})[0] for x in xs])


def _sqnr(ref: np.ndarray, got: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / np.sum((ref - got).astype(np.float64) ** 2)))


@pytest.fixture(scope="module")
def held_out() -> np.ndarray:
    return np.stack([SPEC.load(p) for p in list_images(DATA / "eval")[:64]])


def _quantized(src: Path, tmp: Path, on: bool) -> tuple[Path, object]:
    q, rep = quantize(src, ImageDataset.open(DATA / "calib", SPEC, 48), QuantizeConfig(bias_correction=on, batch=4))
    out = tmp / f"q_{on}.onnx"
    onnx.save(q, str(out))
    return out, rep


def test_depthwise_bias_correction_removes_the_mean_error_of_rounded_weights(tmp_path: Path, held_out) -> None:
    src = save(depthwise_model(), tmp_path / "dw.onnx")
    ref = _outputs(src, held_out)
    off, rep_off = _quantized(src, tmp_path, False)
    on, rep_on = _quantized(src, tmp_path, True)
    y_off, y_on = _outputs(off, held_out), _outputs(on, held_out)
    # Without the correction every channel of the output is shifted by a constant (the rounded-away taps).
    shift_off = np.abs((y_off - ref).mean(axis=(0, 2, 3)))
    shift_on = np.abs((y_on - ref).mean(axis=(0, 2, 3)))
    assert shift_off.min() > 0.02, shift_off
    assert shift_on.max() < 0.25 * shift_off.min(), (shift_on, shift_off)
    assert _sqnr(ref, y_on) > _sqnr(ref, y_off) + 6.0, (_sqnr(ref, y_on), _sqnr(ref, y_off))
    # The report (and --json) names the corrected conv.
    assert rep_off.bias_corrected == {}
    assert set(rep_on.bias_corrected) == {"dw"} and rep_on.bias_corrected["dw"] > 0
    # The depthwise conv had no bias: the corrected model has one, and it is still an int32 QDQ bias.
    m = onnx.load(str(on))
    dw = next(n for n in m.graph.node if n.name == "dw")
    assert len(dw.input) == 3
    inits = {t.name: t for t in m.graph.initializer}
    producer = {o: n for n in m.graph.node for o in n.output}
    assert inits[producer[dw.input[2]].input[0]].data_type == onnx.TensorProto.INT32


@pytest.mark.parametrize(
    ("model", "why"),
    [
        (two_convs(np.tile(_dw_weight(), (1, C, 1, 1)), group=1), "a full 3x3 conv with the same taps"),
        (two_convs(np.tile(_dw_weight(), (2, 2, 1, 1)), group=3), "grouped, 2 input channels per group"),
        (conv_model(cin=3, cout=8, hw=32), "a single plain Conv"),
    ],
    ids=["group-1", "grouped-not-depthwise", "plain-conv"],
)
def test_no_depthwise_conv_is_a_no_op(model: onnx.ModelProto, why: str, tmp_path: Path) -> None:
    model.graph.input[0].name = "input"
    for n in model.graph.node:
        n.input[:] = ["input" if i == "x" else i for i in n.input]
    src = save(model, tmp_path / "plain.onnx")
    off, rep_off = _quantized(src, tmp_path, False)
    on, rep_on = _quantized(src, tmp_path, True)
    assert rep_on.bias_corrected == {} == rep_off.bias_corrected, why
    a, b = onnx.load(str(off)), onnx.load(str(on))
    assert [t.SerializeToString() for t in a.graph.initializer] == [t.SerializeToString() for t in b.graph.initializer]


def test_cli_reports_the_corrected_convs_and_can_turn_it_off(tmp_path: Path) -> None:
    src = save(depthwise_model(), tmp_path / "dw.onnx")
    for flag, expect in (("--bias-correction", {"dw"}), ("--no-bias-correction", set())):
        out, js = tmp_path / f"q{flag}.onnx", tmp_path / f"q{flag}.json"
        r = invoke("quantize", src, "-o", out, "--calib", DATA / "calib", "--samples", "16", flag, "--json", js)
        assert r.exit_code == 0, r.output
        assert set(json.loads(js.read_text())["bias_corrected"]) == expect
        assert ("bias corrected" in r.output) == bool(expect)
