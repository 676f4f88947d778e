"""``auto`` judges a tensor's range where its error lands: after the saturating function (Sigmoid, Tanh, SiLU)
that every consumer applies. Real estimators over real histograms, real quantize API and onnxruntime sessions,
real images; each rule has a model on both sides of its limit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from edgecnn.preprocess import list_images, load_spec
from edgecnn.quantize.api import MSE_WINS_BELOW, QuantizeConfig, QuantizeReport, quantize
from edgecnn.quantize.collectors import TensorStats
from edgecnn.quantize.dataset import ImageDataset
from edgecnn.quantize.estimators import (
    AUTO_TOLERANCE,
    Consumer,
    Method,
    apply_consumer,
    choose,
    estimate,
    grid_error,
    tensor_consumers,
)
from edgecnn.quantize.params import QuantScheme
from edgecnn.runtimes import open_session
from tests.cli_helpers import ROOT
from tests.onnx_builders import make_model, rng_w, save

DATA = ROOT / "calibration_data"
SPEC = load_spec(DATA / "preprocess.toml")  # 1x3x32x32


def _stats(x: np.ndarray) -> TensorStats:
    st = TensorStats()
    st.update(x.astype(np.float32))
    return st


# ----------------------------------------------------------------------------- which tensors ---------------------
def _graph(nodes: list[onnx.NodeProto], outputs: list[str]) -> onnx.ModelProto:
    inits = {"w": rng_w(4, 3, 1, 1)}
    conv = helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[1, 1])
    return make_model([conv, *nodes], [("x", [1, 3, 4, 4])], [(o, None) for o in outputs], inits)


def _silu(x: str, out: str) -> list[onnx.NodeProto]:
    return [helper.make_node("Sigmoid", [x], [f"{out}_s"]), helper.make_node("Mul", [x, f"{out}_s"], [out])]


@pytest.mark.parametrize(
    ("nodes", "outputs", "expect"),
    [
        (_silu("c", "y"), ["y"], Consumer.SILU),
        ([helper.make_node("Sigmoid", ["c"], ["y"])], ["y"], Consumer.SIGMOID),
        ([helper.make_node("Tanh", ["c"], ["y"]), helper.make_node("Tanh", ["c"], ["z"])], ["y", "z"], Consumer.TANH),
        # The other side: something else reads the tensor, or it is an output, or the Mul is not x * sigmoid(x).
        (_silu("c", "y"), ["y", "c"], None),
        ([*_silu("c", "y"), helper.make_node("Add", ["c", "y"], ["z"])], ["z"], None),
        ([helper.make_node("Sigmoid", ["c"], ["s"]), helper.make_node("Mul", ["c", "c"], ["y"])], ["s", "y"], None),
        ([helper.make_node("Sigmoid", ["c"], ["y"]), helper.make_node("Relu", ["c"], ["z"])], ["y", "z"], None),
        ([*_silu("c", "y"), helper.make_node("Neg", ["y_s"], ["z"])], ["y", "z"], None),
    ],
    ids=[
        "silu",
        "sigmoid",
        "tanh-twice",
        "silu-input-is-output",
        "silu-and-residual",
        "mul-not-by-its-sigmoid",
        "sigmoid-and-relu",
        "sigmoid-read-twice",
    ],
)
def test_tensor_consumers(nodes: list[onnx.NodeProto], outputs: list[str], expect: Consumer | None) -> None:
    assert tensor_consumers(_graph(nodes, outputs)).get("c") is expect


# ----------------------------------------------------------------------------- the choice ------------------------
def _pre_silu() -> TensorStats:
    """A SiLU input with a long negative tail (a conv whose channels often sit far below zero)."""
    rng = np.random.default_rng(0)
    return _stats(np.concatenate([rng.normal(1.0, 2.0, 400_000), rng.uniform(-40.0, -4.0, 100_000)]))


def test_a_silu_input_is_clipped_where_silu_is_flat_and_nowhere_else() -> None:
    st, scheme = _pre_silu(), QuantScheme()
    (lo, hi), _ = choose(st, scheme, consumer=Consumer.SILU)
    # Its negative tail is clipped (SiLU(-12) = -7e-5: nothing the next layer sees), its positive end is kept.
    assert -16.0 < lo < -4.0, lo
    assert hi == pytest.approx(st.max)
    minmax = np.array([estimate(st, Method.MINMAX)])
    after = grid_error(st, np.array([(lo, hi)]), scheme, Consumer.SILU)[0]
    assert after < grid_error(st, minmax, scheme, Consumer.SILU)[0] / 3  # a third of the error after SiLU
    # The other side: read as it is (identity), the same tail is values a later layer needs: kept whole.
    (lo_i, _), _ = choose(st, scheme)
    assert lo_i < -35.0, lo_i


def test_a_sigmoid_input_may_lose_both_tails_and_the_error_is_measured_after_sigmoid() -> None:
    rng = np.random.default_rng(1)
    st, scheme = _stats(rng.normal(0.0, 6.0, 500_000)), QuantScheme()
    (lo, hi), _ = choose(st, scheme, consumer=Consumer.SIGMOID)
    assert lo > st.min + 3 and hi < st.max - 3  # sigmoid(+-20) is 1 or 0 to within 2e-9
    # The chosen range is within the tolerance of the best after sigmoid, computed independently on samples.
    x = rng.normal(0.0, 6.0, 200_000)
    for_real = []
    for r in ((lo, hi), estimate(st, Method.MINMAX)):
        scale = (r[1] - r[0]) / 255
        zp = np.round(-r[0] / scale)
        xq = (np.clip(np.round(x / scale) + zp, 0, 255) - zp) * scale
        for_real.append(np.mean((apply_consumer(Consumer.SIGMOID, xq) - apply_consumer(Consumer.SIGMOID, x)) ** 2))
    assert for_real[0] < for_real[1]
    best = grid_error(st, np.array([(lo, hi)]), scheme, Consumer.SIGMOID)[0]
    assert best <= AUTO_TOLERANCE * for_real[0] * 1.5


# ----------------------------------------------------------------------------- end to end ------------------------
def _conv_silu_conv(residual: bool) -> onnx.ModelProto:
    """Conv (half the channels biased far below zero) -> SiLU -> 1x1 Conv. ``residual``: the pre-activation is
    also added to the SiLU output, so its negative tail is needed as it is."""
    rng = np.random.default_rng(3)
    b1 = np.where(np.arange(8) % 2 == 0, -25.0, 1.0).astype(np.float32)
    inits = {"w1": (rng.standard_normal((8, 3, 3, 3)) * 1.5).astype(np.float32), "b1": b1,
             "w2": (rng.standard_normal((8, 8, 1, 1)) * 0.5).astype(np.float32)}  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["pre"], name="conv1", kernel_shape=[3, 3], pads=[1] * 4),
        *_silu("pre", "act"),
        *([helper.make_node("Add", ["act", "pre"], ["sum"], name="add")] if residual else []),
        helper.make_node("Conv", ["sum" if residual else "act", "w2"], ["y"], name="conv2", kernel_shape=[1, 1]),
    ]
    return make_model(nodes, [("input", [1, 3, 32, 32])], [("y", None)], inits, opset=13)


def _pre_scale(m: onnx.ModelProto) -> float:
    inits = {t.name: t for t in m.graph.initializer}
    q = next(n for n in m.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "pre")
    return float(numpy_helper.to_array(inits[q.input[1]]))


@pytest.mark.parametrize("residual", [False, True], ids=["only-silu-reads-it", "a-residual-add-reads-it-too"])
def test_a_silu_block_gets_a_finer_grid_only_where_the_tail_is_free(residual: bool, tmp_path: Path) -> None:
    xs = np.stack([SPEC.load(p) for p in list_images(DATA / "eval")[:48]])
    src = save(_conv_silu_conv(residual), tmp_path / "m.onnx")
    ref = open_session("ort", src)
    r = np.concatenate([ref.run({"input": x[None]})[0] for x in xs]).astype(np.float64)
    got = {}
    for method in (Method.AUTO, Method.MINMAX):
        # the per-tensor rule on its own (the model-level check against MSE ranges is tested below)
        cfg = QuantizeConfig(batch=8, method=method, bias_correction=False, mse_check=False)
        q, _ = quantize(src, ImageDataset.open(DATA / "calib", SPEC, 48), cfg)
        sess = open_session("ort", save(q, tmp_path / f"q_{method.value}.onnx"))
        o = np.concatenate([sess.run({"input": x[None]})[0] for x in xs]).astype(np.float64)
        got[method] = (_pre_scale(q), float(10 * np.log10(np.sum(r**2) / np.sum((r - o) ** 2))))
    (scale_auto, sqnr_auto), (scale_minmax, sqnr_minmax) = got[Method.AUTO], got[Method.MINMAX]
    if residual:  # the tail reaches the next layer through the Add: auto keeps min/max's grid for it
        assert scale_auto == pytest.approx(scale_minmax, rel=0.02), got
    else:  # only SiLU reads it: the tail below ~-12 is clipped, a much finer grid, a closer output
        assert scale_auto < scale_minmax / 1.5, got
        assert sqnr_auto > sqnr_minmax + 2.0, got


@pytest.mark.parametrize("residual", [False, True], ids=["only-silu-reads-it", "a-residual-add-reads-it-too"])
def test_auto_ships_mse_ranges_only_when_they_measure_better(residual: bool, tmp_path: Path) -> None:
    """auto writes its per-tensor ranges and MSE ranges on every tensor, measures both on the calibration
    images and ships MSE only below MSE_WINS_BELOW of the per-tensor error; what it shipped is what it says,
    and on held-out images it is no worse than either."""
    xs = np.stack([SPEC.load(p) for p in list_images(DATA / "eval")[:48]])
    src = save(_conv_silu_conv(residual), tmp_path / "m.onnx")
    ref = open_session("ort", src)
    r = np.concatenate([ref.run({"input": x[None]})[0] for x in xs]).astype(np.float64)

    def run(**kw: object) -> tuple[float, QuantizeReport]:
        q, rep = quantize(src, ImageDataset.open(DATA / "calib", SPEC, 48), QuantizeConfig(batch=8, **kw))
        sess = open_session("ort", save(q, tmp_path / "q.onnx"))
        o = np.concatenate([sess.run({"input": x[None]})[0] for x in xs]).astype(np.float64)
        return float(10 * np.log10(np.sum(r**2) / np.sum((r - o) ** 2))), rep

    auto, rep = run()
    per_tensor, _ = run(mse_check=False)
    mse, _ = run(method=Method.MSE)
    check = rep.range_check
    assert set(check) == {"per-tensor", "mse"} and min(check.values()) > 0
    picked_mse = check["mse"] < check["per-tensor"] * MSE_WINS_BELOW
    assert (set(rep.methods_chosen) == {"mse"}) == picked_mse
    assert auto == pytest.approx(mse if picked_mse else per_tensor, abs=0.01)
    assert auto >= max(per_tensor, mse) - 0.5  # the calibration images rank them as held-out images do
