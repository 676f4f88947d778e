"""Conv bias correction: it removes the mean output shift that weight rounding causes (depthwise, grouped and full
convs), and it leaves convs whose weights round exactly, or that stay float, alone. Real quantize API, real
onnxruntime sessions, real images."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from edgecnn.preprocess import list_images, load_spec
from edgecnn.quantize import bias_correction
from edgecnn.quantize.api import QuantizeConfig, quantize
from edgecnn.quantize.bias_correction import FloatRuns, correct_conv_bias, output_errors
from edgecnn.quantize.dataset import ImageDataset
from edgecnn.runtimes import open_session
from tests.cli_helpers import ROOT, invoke
from tests.onnx_builders import make_model, save

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


@pytest.mark.parametrize(
    "second",
    [
        pytest.param((_dw_weight(), C), id="depthwise"),
        pytest.param((np.tile(_dw_weight(), (1, C, 1, 1)) / C, 1), id="full-3x3"),
        pytest.param((np.tile(_dw_weight(), (2, 2, 1, 1)) / 2, 3), id="grouped-2-per-group"),
    ],
)
def test_bias_correction_removes_the_mean_error_of_int8(second, tmp_path: Path, held_out) -> None:
    src = save(two_convs(*second), tmp_path / "dw.onnx")
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
    # The report (and --json) names the corrected convs (the 1x1 conv too: its input rounds on a coarser grid).
    assert rep_off.bias_corrected == {}
    assert "dw" in rep_on.bias_corrected and rep_on.bias_corrected["dw"] > 0
    # The conv had no bias: the corrected model has one, and it is still an int32 QDQ bias.
    m = onnx.load(str(on))
    dw = next(n for n in m.graph.node if n.name == "dw")
    assert len(dw.input) == 3
    inits = {t.name: t for t in m.graph.initializer}
    producer = {o: n for n in m.graph.node for o in n.output}
    assert inits[producer[dw.input[2]].input[0]].data_type == onnx.TensorProto.INT32


# The source images at their own size, not normalised: every input value is k/255, exactly on the input grid
# (scale 1/255, zero point 0) that calibration fits to this data.
LATTICE = dataclasses.replace(SPEC, resize=(28, 28), mean=(0.0,) * C, std=(1.0,) * C)


def _single_conv(w: np.ndarray) -> onnx.ModelProto:
    node = helper.make_node("Conv", ["input", "w"], ["y"], name="pw", kernel_shape=[1, 1])
    return make_model([node], [("input", [1, C, 28, 28])], [("y", None)], {"w": w}, opset=13)


def _identity_1x1() -> np.ndarray:
    return np.eye(C, dtype=np.float32)[:, :, None, None]


def test_nothing_to_correct_is_a_no_op(tmp_path: Path) -> None:
    """Weights exactly on the int8 grid, and the input grid (fitted to the data) is the images' own lattice:
    the INT8 conv computes what the float one does, so no bias moves."""
    src = save(_single_conv(_identity_1x1()), tmp_path / "exact.onnx")
    runs = [
        quantize(src, ImageDataset.open(DATA / "calib", LATTICE, 48), QuantizeConfig(bias_correction=on, batch=4))
        for on in (False, True)
    ]
    (a, rep_off), (b, rep_on) = runs
    assert rep_on.bias_corrected == {} == rep_off.bias_corrected
    assert [t.SerializeToString() for t in a.graph.initializer] == [t.SerializeToString() for t in b.graph.initializer]


def test_the_input_rounding_term_is_corrected_on_a_model_input_only(tmp_path: Path) -> None:
    """Two identity 1x1 convs (weights exact on the int8 grid) on normalised MNIST: the input grid's zero point
    sits a third of a step off the pixel lattice, so every pixel rounds the same way. The conv reading the
    model input gets that constant removed; the second conv reads the same values on the same grid, but inside
    the network only the weights' rounding is corrected, and here it is zero."""
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["h"], name="pw", kernel_shape=[1, 1]),
        helper.make_node("Conv", ["h", "w"], ["y"], name="pw2", kernel_shape=[1, 1]),
    ]
    model = make_model(nodes, [("input", [1, C, 32, 32])], [("y", None)], {"w": _identity_1x1()}, opset=13)
    src = save(model, tmp_path / "two.onnx")
    ds = ImageDataset.open(DATA / "calib", SPEC, 48)
    q, _ = quantize(src, ds, QuantizeConfig(batch=4, bias_correction=False))
    _, bc = correct_conv_bias(q, model, ds, "input", workdir=tmp_path, choose=False)
    assert set(bc.corrected) == {"pw"}, bc.corrected


def test_a_corrected_bias_replaces_the_old_one(tmp_path: Path) -> None:
    """The old bias's DequantizeLinear goes with it, not left dangling: ONNX Runtime still executes a DQ nobody
    reads (81 of them were 0.33 ms of torchvision EfficientNet-B0's 5 ms INT8 latency)."""
    model = depthwise_model()
    src = save(model, tmp_path / "dw.onnx")
    ds = ImageDataset.open(DATA / "calib", SPEC, 48)
    q, _ = quantize(src, ds, QuantizeConfig(batch=4, bias_correction=False))
    out, bc = correct_conv_bias(q, model, ds, "input", workdir=tmp_path, choose=False)
    assert "pw" in bc.corrected  # it had a bias (b0): that DQ was replaced
    read = {i for n in out.graph.node for i in n.input} | {o.name for o in out.graph.output}
    assert all(o in read for n in out.graph.node for o in n.output)
    dqs = [n for n in out.graph.node if n.op_type == "DequantizeLinear"]
    assert len(dqs) == len([n for n in q.graph.node if n.op_type == "DequantizeLinear"]) + 1  # dw gained a bias
    assert {t.name for t in out.graph.initializer} <= read


def test_a_conv_kept_float_is_not_corrected(tmp_path: Path) -> None:
    src = save(depthwise_model(), tmp_path / "dw.onnx")
    cfg = QuantizeConfig(batch=4, exclude=frozenset({"dw"}))
    q, rep = quantize(src, ImageDataset.open(DATA / "calib", SPEC, 48), cfg)
    assert "dw" not in rep.bias_corrected and "dw" in rep.kept_float
    dw = next(n for n in q.graph.node if n.name == "dw")
    assert not any("bias_corrected" in i for i in dw.input)


def test_a_conv_with_a_shift_next_to_the_exact_one_is_corrected(tmp_path: Path) -> None:
    """The other side of the 'exact' case above: the same 1x1 conv with one weight just under half a step
    off its grid in every channel (the input still exact) gets a corrected bias."""
    w = _identity_1x1()
    w[:, :, 0, 0] += np.where(np.eye(C) == 0, 0.49 / 127, 0).astype(np.float32)
    src = save(_single_conv(w), tmp_path / "off.onnx")
    _, rep = quantize(src, ImageDataset.open(DATA / "calib", LATTICE, 48), QuantizeConfig(batch=4))
    assert set(rep.bias_corrected) == {"pw"}


def _bytes(m: onnx.ModelProto) -> list[bytes]:
    return [t.SerializeToString() for t in m.graph.initializer] + [n.SerializeToString() for n in m.graph.node]


def test_checks_of_one_float_model_share_its_float_passes(tmp_path: Path) -> None:
    """The checks of one quantize run (ranges, float stem, grids per channel) correct the same convs with the same
    int8 weights and compare against the same float outputs: FloatRuns keeps both, and the results are the ones
    measured without it, byte for byte."""
    model = depthwise_model()
    src = save(model, tmp_path / "dw.onnx")
    ds = ImageDataset.open(DATA / "calib", SPEC, 48)
    q, _ = quantize(src, ds, QuantizeConfig(batch=4, bias_correction=False))
    alone, bc_alone = correct_conv_bias(q, model, ds, "input", workdir=tmp_path)
    runs = FloatRuns()
    first, bc_first = correct_conv_bias(q, model, ds, "input", workdir=tmp_path, runs=runs)
    means = dict(runs.conv_means)
    assert len(means) == 2 and runs.references is not None and len(runs.references) == 48
    again, bc_again = correct_conv_bias(q, model, ds, "input", workdir=tmp_path, runs=runs)
    assert runs.conv_means == means  # nothing measured twice
    assert _bytes(alone) == _bytes(first) == _bytes(again)
    assert bc_alone == bc_first == bc_again and bc_alone.scope in ("all", "depthwise")
    # without runs the candidates run in turn with the float model; with runs, one session at a time after the
    # float pass: the same errors, to the last bit (bc_* compare calibration_error); no temporary file left
    assert len(bc_first.calibration_error) >= 2
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(("biascorr", "bc_", "float_ref_"))]
    # Negative control: another int8 weight for the depthwise conv is another conv to measure.
    other = two_convs(_dw_weight() * 1.5, group=C)
    q2, _ = quantize(save(other, tmp_path / "dw2.onnx"), ds, QuantizeConfig(batch=4, bias_correction=False))
    correct_conv_bias(q2, other, ds, "input", workdir=tmp_path, runs=runs)
    assert len(runs.conv_means) == 3 and means.keys() < runs.conv_means.keys()


def test_float_outputs_are_kept_in_memory_then_in_files_then_recomputed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = depthwise_model()
    ds = ImageDataset.open(DATA / "calib", SPEC, 48)
    q, _ = quantize(save(model, tmp_path / "dw.onnx"), ds, QuantizeConfig(batch=4, bias_correction=False))
    plain = output_errors(model, {"q": q}, ds, "input", workdir=tmp_path)
    kept = FloatRuns()
    assert output_errors(model, {"q": q}, ds, "input", workdir=tmp_path, runs=kept) == plain
    assert kept.references is not None and not kept.references_too_large
    assert all(isinstance(r, list) for r in kept.references)  # 48 x 12 KiB: all in memory
    assert output_errors(model, {"q": q}, ds, "input", workdir=tmp_path, runs=kept) == plain  # from the kept ones
    # one image's output is 3x32x32 float32 = 12 KiB: 5 images in memory, the other 43 in files
    one = C * 32 * 32 * 4
    monkeypatch.setattr(bias_correction, "REFERENCE_BYTES", 5 * one)
    spill = tmp_path / "spill"
    spill.mkdir()
    files = FloatRuns()
    assert output_errors(model, {"q": q}, ds, "input", workdir=spill, runs=files) == plain
    assert files.references is not None and [isinstance(r, Path) for r in files.references] == [False] * 5 + [True] * 43
    assert len(list(spill.glob("float_ref_*.npz"))) == 43
    # read back from the files
    assert output_errors(model, {"q": q}, ds, "input", workdir=spill, runs=files) == plain
    # the equalized model's checks share the outputs, not the convs
    shared = files.outputs_for()
    assert shared.references is files.references and shared.conv_means == {}
    # past the files' budget too: none kept, the files written so far removed, recomputed by each check
    monkeypatch.setattr(bias_correction, "REFERENCE_DISK_BYTES", 10 * one)
    over = tmp_path / "over"
    over.mkdir()
    small = FloatRuns()
    assert output_errors(model, {"q": q}, ds, "input", workdir=over, runs=small) == plain
    assert small.references is None and small.references_too_large
    assert list(over.iterdir()) == []


def test_cli_reports_the_corrected_convs_and_can_turn_it_off(tmp_path: Path) -> None:
    src = save(depthwise_model(), tmp_path / "dw.onnx")
    for flag, on in (("--bias-correction", True), ("--no-bias-correction", False)):
        out, js = tmp_path / f"q{flag}.onnx", tmp_path / f"q{flag}.json"
        r = invoke("quantize", src, "-o", out, "--calib", DATA / "calib", "--samples", "16", flag, "--json", js)
        assert r.exit_code == 0, r.output
        rep = json.loads(js.read_text())
        expect = {"dw"} <= set(rep["bias_corrected"]) if on else rep["bias_corrected"] == {}
        assert expect, rep["bias_corrected"]
        # The choice among no correction / depthwise only / every conv is reported with its evidence.
        assert rep["bias_correction_scope"] == ("depthwise" if on else "")
        assert set(rep["bias_correction_error"]) == ({"none", "depthwise", "all"} if on else set())
        assert ("bias corrected" in r.output) == on


# -- the checks' error: a dense head's channels of different scale -------------------------------------------------
def test_channel_axis_of_dense_heads_only() -> None:
    from edgecnn.quantize.bias_correction import channel_axis

    assert channel_axis((1, 3549, 6)) == 2  # YOLOX [N, anchors, 4 + 1 + classes]
    assert channel_axis((1, 22, 2100)) == 1  # YOLOv8 [N, 4 + classes, anchors]
    assert channel_axis((1, 16, 32, 32)) == 1  # a feature map
    assert channel_axis((1, 1000)) is None  # a classifier: one error
    assert channel_axis((1, 1, 640, 640)) is None  # a one-channel map
    assert channel_axis((1, 300, 512)) is None  # 512 channels, 300 positions: not a head's few quantities
    assert channel_axis((1, 3, 3)) is None  # no more positions than channels


def test_a_head_whose_channels_differ_in_scale_is_judged_per_scale(tmp_path: Path) -> None:
    """Box pixels (~1e4) and class probabilities (~1e-2) in one YOLOv8-style output: the checks' error is each
    scale group's own relative error, added, so a candidate that damages the scores loses even when its boxes are
    a little better; with the channels all of one scale (the negative control) it is the pooled relative error.
    Real outputs of a two-branch ONNX model on ONNX Runtime, through output_errors."""
    from edgecnn.quantize.bias_correction import SCALE_GAP, relative_error, scale_groups

    rng = np.random.default_rng(0)
    boxes = rng.uniform(0, 320, (1, 4, 2100)).astype(np.float32)
    scores = (1 / (1 + np.exp(-rng.normal(-4, 2, (1, 18, 2100))))).astype(np.float32)
    ref = np.concatenate([boxes, scores], axis=1)
    e = bias_correction.channel_sums(ref)
    low, high = scale_groups(e)
    assert set(low) == set(range(4, 22)) and set(high) == set(range(4))
    # a: boxes 0.1% off, scores 30% off; b: boxes 0.2% off, scores 3% off
    a = np.concatenate([boxes * 1.001, scores * 1.3], axis=1)
    b = np.concatenate([boxes * 1.002, scores * 1.03], axis=1)
    err = {k: [bias_correction.channel_sums(v - ref)] for k, v in {"a": a, "b": b}.items()}
    grouped = {k: relative_error(d, [e]) for k, d in err.items()}
    pooled = {k: float(d[0].sum() / e.sum()) for k, d in err.items()}
    assert pooled["a"] < pooled["b"]  # one error over the tensor: the boxes decide, a wins
    assert grouped["b"] < grouped["a"] / 10  # per scale: b's scores are 10x closer
    # the same channels all of one scale: no split, the pooled error, whatever the errors are
    same = np.concatenate([boxes, boxes[:, :2] * 3], axis=1)
    es = bias_correction.channel_sums(same)
    assert len(scale_groups(es)) == 1
    ds = bias_correction.channel_sums(same * 1.01 - same)
    assert relative_error([ds], [es]) == pytest.approx(ds.sum() / es.sum())
    # either side of SCALE_GAP between the two groups' mean energies; a dead channel is no group of its own
    assert len(scale_groups(np.array([1.0, 1.0, SCALE_GAP * 1.01]))) == 2
    assert len(scale_groups(np.array([1.0, 1.0, SCALE_GAP * 0.99]))) == 1
    assert len(scale_groups(np.array([0.0, 5.0, 6.0, 7.0]))) == 1

    # through output_errors: a model writing that output, two candidates that scale it as a and b do
    def const_model(scale: np.ndarray) -> onnx.ModelProto:
        nodes = [helper.make_node("Mul", ["input", "s"], ["y"], name="mul")]
        return make_model(nodes, [("input", [1, 22, 2100])], [("y", [1, 22, 2100])], {"s": scale})

    one = np.ones((1, 22, 1), np.float32)
    sa, sb = one.copy(), one.copy()
    sa[:, :4], sa[:, 4:], sb[:, :4], sb[:, 4:] = 1.001, 1.3, 1.002, 1.03

    class Feeds:
        def batches(self, n: int, prefetch: bool = False):  # type: ignore[no-untyped-def]
            yield ref

    errors = output_errors(
        const_model(one), {"a": const_model(sa), "b": const_model(sb)}, Feeds(), "input", workdir=tmp_path, samples=1
    )  # type: ignore[arg-type]
    assert errors == pytest.approx(grouped, rel=1e-4)
