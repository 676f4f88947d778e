"""``auto`` judges a tensor's range where its error lands: after the saturating function (Sigmoid, Tanh, SiLU)
that every consumer applies; every method leaves out what a flat function (HardSwish below -3, HardSigmoid,
Relu, Clip) throws away. Real estimators over real histograms, real quantize API and onnxruntime sessions,
real images; each rule has a model on both sides of its limit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from edgecnn.preprocess import list_images, load_spec
from edgecnn.quantize.api import (
    DEPTH_WINS_BELOW,
    MSE_DEPTH_KEYS,
    MSE_DEPTHS,
    MSE_WINS_BELOW,
    QuantizeConfig,
    QuantizeReport,
    quantize,
)
from edgecnn.quantize.collectors import TensorStats
from edgecnn.quantize.dataset import ImageDataset
from edgecnn.quantize.estimators import (
    AUTO_TOLERANCE,
    Consumer,
    Method,
    apply_consumer,
    choose,
    estimate,
    flat_beyond,
    grid_error,
    grid_errors,
    tensor_consumers,
    tighten,
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
    inits = {"w": rng_w(4, 3, 1, 1), "lo": np.array(0.0, np.float32), "hi": np.array(6.0, np.float32)}
    conv = helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[1, 1])
    return make_model([conv, *nodes], [("x", [1, 3, 4, 4])], [(o, None) for o in outputs], inits)


def _hswish2(x: str, out: str) -> list[onnx.NodeProto]:
    """HardSwish as opset < 14 exporters write it: Mul(x, HardSigmoid(x, alpha=1/6))."""
    gate = helper.make_node("HardSigmoid", [x], [f"{out}_g"], alpha=1 / 6, beta=0.5)
    return [gate, helper.make_node("Mul", [x, f"{out}_g"], [out])]


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
        # The flat functions: HardSwish, HardSigmoid with its own alpha/beta, the opset < 14 HardSwish, Relu, Clip.
        ([helper.make_node("HardSwish", ["c"], ["y"])], ["y"], Consumer.hard_swish()),
        ([helper.make_node("HardSigmoid", ["c"], ["y"], alpha=0.2, beta=0.5)], ["y"], Consumer.hard_sigmoid(0.2, 0.5)),
        (_hswish2("c", "y"), ["y"], Consumer.hard_swish(1 / 6, 0.5)),
        (
            [helper.make_node("Relu", ["c"], ["y"]), helper.make_node("Relu", ["c"], ["z"])],
            ["y", "z"],
            Consumer.clip(0.0, np.inf),
        ),
        ([helper.make_node("Clip", ["c", "lo", "hi"], ["y"])], ["y"], Consumer.clip(0.0, 6.0)),
        # ... and their other side: bounds computed at run time, two different functions, another reader.
        ([helper.make_node("Clip", ["c", "x", "hi"], ["y"])], ["y"], None),
        (
            [helper.make_node("HardSigmoid", ["c"], ["y"], alpha=0.2), helper.make_node("HardSigmoid", ["c"], ["z"])],
            ["y", "z"],
            None,
        ),
        ([helper.make_node("HardSwish", ["c"], ["y"]), helper.make_node("Relu", ["c"], ["z"])], ["y", "z"], None),
        ([*_hswish2("c", "y"), helper.make_node("Add", ["c", "y"], ["z"])], ["z"], None),
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
        "hardswish",
        "hardsigmoid-paddle-alpha",
        "hardswish-opset13",
        "relu-twice",
        "clip-constant-bounds",
        "clip-runtime-bound",
        "two-different-hardsigmoids",
        "hardswish-and-relu",
        "hardswish-opset13-and-residual",
    ],
)
def test_tensor_consumers(nodes: list[onnx.NodeProto], outputs: list[str], expect: Consumer | None) -> None:
    got = tensor_consumers(_graph(nodes, outputs)).get("c")
    if expect is None:
        assert got is None
    else:  # attributes are float32 in the file
        assert got is not None and got.kind == expect.kind and (got.a, got.b) == pytest.approx((expect.a, expect.b))


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
        # the per-tensor rule on its own (the model-level check against MSE ranges is tested below); conv1 reads
        # the image, so the default ORT placement would keep it and its SiLU float (the stem rule, tested apart)
        cfg = QuantizeConfig(
            batch=8, method=method, bias_correction=False, mse_check=False, runtime="ort-int-silu-stem"
        )
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
    assert {"per-tensor", "mse"} <= set(check) <= {"per-tensor", *MSE_DEPTH_KEYS.values()}
    assert min(check.values()) > 0
    # what shipped follows the rule: each candidate in turn against what ships so far, the depth ones by 1 dB
    best, depth = check["per-tensor"], 0.0
    for share in MSE_DEPTHS:
        err = check.get(MSE_DEPTH_KEYS[share])
        if err is not None and err < best * (MSE_WINS_BELOW if share == 1 else DEPTH_WINS_BELOW):
            best, depth = err, share
    assert rep.mse_depth == depth
    assert (set(rep.methods_chosen) == {"mse"}) == (depth == 1)
    if depth in (0, 1):
        assert auto == pytest.approx(mse if depth == 1 else per_tensor, abs=0.01)
    assert auto >= max(per_tensor, mse) - 0.5  # the calibration images rank them as held-out images do


# ----------------------------------------------------------------------------- flat functions ---------------------
def test_flat_beyond_where_each_function_turns_constant() -> None:
    assert flat_beyond(Consumer.hard_swish()) == pytest.approx((-3.0, np.inf))
    assert flat_beyond(Consumer.hard_sigmoid(0.2, 0.5)) == pytest.approx((-2.5, 2.5))  # ONNX's default alpha
    assert flat_beyond(Consumer.clip(0.0, 6.0)) == (0.0, 6.0)
    for smooth in (Consumer.SIGMOID, Consumer.SILU, Consumer.TANH, Consumer.IDENTITY):
        assert flat_beyond(smooth) == (-np.inf, np.inf)
    x = np.linspace(-10, 10, 2001)
    for c in (Consumer.hard_swish(), Consumer.hard_sigmoid(0.2, 0.5), Consumer.clip(-1.0, 6.0)):
        lo, hi = flat_beyond(c)
        f = apply_consumer(c, x)
        for beyond in (x <= lo, x >= hi):  # flat beyond both ends ...
            assert not beyond.any() or np.ptp(f[beyond]) == 0
        inside = (x > lo + 0.05) & (x < hi - 0.05)
        assert np.all(np.abs(np.diff(f[inside])) > 0)  # ... and nowhere inside


def _pre_hswish() -> TensorStats:
    """A HardSwish input: half the values far below -3 (a BN-folded conv with a large negative bias)."""
    rng = np.random.default_rng(4)
    return _stats(np.concatenate([rng.normal(1.0, 2.0, 300_000), rng.uniform(-40.0, -3.5, 300_000)]))


@pytest.mark.parametrize("method", [Method.MINMAX, Method.PERCENTILE, Method.MSE])
def test_a_hardswish_input_loses_nothing_below_minus_3_and_gets_a_finer_grid(method: Method) -> None:
    st, scheme, hs = _pre_hswish(), QuantScheme(), Consumer.hard_swish()
    wide = estimate(st, method)
    narrow = tighten(wide, hs)
    assert narrow[0] == pytest.approx(-3.0) and narrow[1] == wide[1]
    rounding, clipping = grid_errors(st, np.array([wide, narrow]), scheme, hs)
    # nothing HardSwish passes on is clipped in addition (but the zero point's rounding of the grid's end)
    assert clipping[1] <= clipping[0] + rounding[1] * 1e-3
    assert rounding[1] < rounding[0] / 4  # the grid is (40+max)/(3+max) times finer
    # The other side: read as it is (no flat function), the tail is kept.
    assert tighten(wide, Consumer.IDENTITY) == wide and tighten(wide, Consumer.SIGMOID) == wide


def test_auto_never_keeps_the_part_a_flat_function_drops() -> None:
    st = _pre_hswish()
    (lo, hi), _ = choose(st, QuantScheme(), consumer=Consumer.hard_swish())
    assert -3.0 - 1e-6 <= lo < 0 < hi
    (lo, hi), _ = choose(_stats(np.random.default_rng(5).normal(0.0, 6.0, 400_000)), QuantScheme(),
                         consumer=Consumer.hard_sigmoid(1 / 6, 0.5))  # fmt: skip
    assert lo >= -3.0 - 1e-6 and hi <= 3.0 + 1e-6


def _conv_hswish_conv(second_reader: bool) -> onnx.ModelProto:
    """Conv + Relu -> Conv (half the channels biased far below zero) -> HardSwish -> 1x1 Conv (not the stem, which
    stays float on ONNX Runtime). ``second_reader``: the pre-activation is also read by a ReduceMax (a second
    output), so its negative tail is needed as it is."""
    rng = np.random.default_rng(3)
    b1 = np.where(np.arange(8) % 2 == 0, -25.0, 1.0).astype(np.float32)
    inits = {"w0": (rng.standard_normal((8, 3, 3, 3)) * 1.5).astype(np.float32),
             "w1": (rng.standard_normal((8, 8, 1, 1)) * 0.7).astype(np.float32), "b1": b1,
             "w2": (rng.standard_normal((8, 8, 1, 1)) * 0.5).astype(np.float32)}  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["input", "w0"], ["c0"], name="conv0", kernel_shape=[3, 3], pads=[1] * 4),
        helper.make_node("Relu", ["c0"], ["r0"], name="relu0"),
        helper.make_node("Conv", ["r0", "w1", "b1"], ["pre"], name="conv1", kernel_shape=[1, 1]),
        helper.make_node("HardSwish", ["pre"], ["act"], name="hswish"),
        helper.make_node("Conv", ["act", "w2"], ["y"], name="conv2", kernel_shape=[1, 1]),
    ]
    outputs: list[tuple[str, list[int | str] | None]] = [("y", None)]
    if second_reader:
        nodes.append(helper.make_node("ReduceMax", ["pre"], ["peak"], name="peak", keepdims=0))
        outputs.append(("peak", None))
    return make_model(nodes, [("input", [1, 3, 32, 32])], outputs, inits, opset=14)


@pytest.mark.parametrize("method", [Method.MINMAX, Method.AUTO])
def test_a_hardswish_block_runs_closer_to_float_with_the_tail_left_out(method: Method, tmp_path: Path) -> None:
    """On ONNX Runtime's integer HardSwish (QLinearAdd + QLinearMul): the pre-activation's grid starts at -3
    when only HardSwish reads it (a third of the step or less), and the block's output is closer to float than
    the same block whose pre-activation a second reader needs whole."""
    xs = np.stack([SPEC.load(p) for p in list_images(DATA / "eval")[:48]])
    got = {}
    for second in (False, True):
        src = save(_conv_hswish_conv(second), tmp_path / f"m{second}.onnx")
        ref = open_session("ort", src)
        r = np.concatenate([ref.run({"input": x[None]})[0] for x in xs]).astype(np.float64)
        cfg = QuantizeConfig(batch=8, method=method, bias_correction=False, mse_check=False)
        q, rep = quantize(src, ImageDataset.open(DATA / "calib", SPEC, 48), cfg)
        assert "hswish" in rep.integer_forms  # the integer form, not a float island
        sess = open_session("ort", save(q, tmp_path / f"q{second}.onnx"))
        o = np.concatenate([sess.run({"input": x[None]})[0] for x in xs]).astype(np.float64)
        got[second] = (_pre_scale(q), float(10 * np.log10(np.sum(r**2) / np.sum((r - o) ** 2))))
    (scale_alone, sqnr_alone), (scale_shared, sqnr_shared) = got[False], got[True]
    assert scale_alone < scale_shared / 3, got
    assert sqnr_alone > sqnr_shared + 3.0, got
