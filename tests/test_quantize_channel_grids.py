"""`--runtime openvino`: a tensor read only by depthwise convs gets one grid per channel. OpenVINO folds each
channel's input scale into that channel's weight scale, so the depthwise conv stays int8, and channels whose
ranges differ by 30x (PP-LCNet's hard-swish outputs: 0.03 to 14) each keep a full grid. ONNX Runtime has no
per-channel input grid for QLinearConv: its policy never writes one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import openvino as ov
import pytest
from onnx import helper, numpy_helper

from edgecnn.graph.passes import prepare
from edgecnn.preprocess import find_spec
from edgecnn.quantize.api import QuantizeConfig, quantize
from edgecnn.quantize.collectors import CalibrationStats
from edgecnn.quantize.dataset import ImageDataset
from edgecnn.quantize.params import OPENVINO_CPU, X86_CPU, QuantScheme, channel_qparams
from edgecnn.quantize.qdq import OPENVINO_POLICY, ORT_POLICY, plan
from tests.conftest import CALIB_DIR, EVAL_DIR
from tests.onnx_builders import make_model, rng_w
from tests.test_quantize_stem import _stem_model

N = helper.make_node


def test_plan_gives_a_grid_per_channel_only_to_tensors_read_only_by_depthwise_convs() -> None:
    m = prepare(_stem_model(30.0))
    assert plan(m, policy=OPENVINO_POLICY).per_channel == ("sh",)  # the stem's output, read by the depthwise conv
    assert plan(m, policy=ORT_POLICY).per_channel == ()  # no integer kernel for it on ONNX Runtime
    # negative controls: a full conv reads it; a second reader besides the depthwise conv
    assert plan(prepare(_stem_model(30.0, depthwise=False)), policy=OPENVINO_POLICY).per_channel == ()
    assert plan(prepare(_stem_model(30.0, second_reader=True)), policy=OPENVINO_POLICY).per_channel == ()


def test_a_depthwise_conv_with_a_channel_multiplier_keeps_a_grid_per_tensor() -> None:
    """Two filters per input channel: output channel c reads input channel c // 2, so an input scale per channel
    is not one weight scale per output channel in the same order; the plan leaves it per tensor."""
    nodes = [
        N("Conv", ["input", "w0"], ["a"], name="c0", kernel_shape=[3, 3], pads=[1] * 4),
        N("Relu", ["a"], ["r"], name="relu"),
        N("Conv", ["r", "w1"], ["y"], name="dw2", kernel_shape=[3, 3], pads=[1] * 4, group=8),
    ]
    m = make_model(
        nodes, [("input", [1, 3, 16, 16])], [("y", None)], {"w0": rng_w(8, 3, 3, 3), "w1": rng_w(16, 1, 3, 3)}
    )
    p = plan(prepare(m), policy=OPENVINO_POLICY)
    assert "dw2" in p.quantized_nodes and p.per_channel == ()


def _relu_dw_model(residual: bool = False, dw_act: str = "HardSwish") -> onnx.ModelProto:
    """Conv + Relu -> depthwise Conv + ``dw_act`` -> Conv 1x1 (MobileNetV3's expand -> depthwise), channels spread
    30x. ``residual``: the depthwise conv reads an Add of two Relu outputs instead (an integer op writes it)."""
    k = np.where(np.arange(8) < 4, 1.0, 1 / 30).astype(np.float32)
    nodes = [
        N("Conv", ["input", "w0", "b0"], ["a"], name="c0", kernel_shape=[3, 3], pads=[1] * 4),
        N("Relu", ["a"], ["r"], name="relu"),
    ]
    inits = {"w0": rng_w(8, 3, 3, 3) * k[:, None, None, None], "b0": rng_w(8, seed=1) * k + 0.05 * k,
             "w1": rng_w(8, 1, 3, 3, seed=2) / k[:, None, None, None], "w2": rng_w(16, 8, 1, 1, seed=3)}  # fmt: skip
    src = "r"
    if residual:
        nodes += [
            N("Conv", ["input", "w3"], ["a2"], name="c1", kernel_shape=[3, 3], pads=[1] * 4),
            N("Relu", ["a2"], ["r2"], name="relu2"),
            N("Add", ["r", "r2"], ["s"], name="add"),
        ]
        inits["w3"] = rng_w(8, 3, 3, 3, seed=4) * k[:, None, None, None]
        src = "s"
    nodes += [
        N("Conv", [src, "w1"], ["d"], name="dw", kernel_shape=[3, 3], pads=[1] * 4, group=8),
        N(dw_act, ["d"], ["da"], name="dw_act"),
        N("Conv", ["da", "w2"], ["p"], name="pw", kernel_shape=[1, 1]),
        N("GlobalAveragePool", ["p"], ["y"], name="gap"),
    ]
    return make_model(nodes, [("input", [1, 3, 32, 32])], [("y", None)], inits, opset=14)


def test_a_grid_per_channel_after_a_fused_relu_keeps_the_relu_so_onnx_runtime_still_runs_the_file(
    spread: tuple[Path, ImageDataset, np.ndarray], tmp_path: Path
) -> None:
    """ONNX Runtime fuses DQ -> Conv [-> Relu] -> Q into QLinearConv, which fails at run time on a grid per channel
    on either side. After a Relu the writer keeps the Relu as a node (it is otherwise the Q's saturation), and the
    depthwise conv ends in a float HardSwish, so the file made for OpenVINO still runs on ONNX Runtime (default
    optimizations) and matches OpenVINO. Controls: a depthwise conv ending in a Relu (its output Q would be fused)
    and one reading an integer Add keep a grid per tensor."""
    _, ds, xs = spread
    src = tmp_path / "relu_dw.onnx"
    onnx.save(_relu_dw_model(), str(src))
    q, rep = quantize(src, ds, QuantizeConfig(runtime="openvino", scheme=OPENVINO_CPU))
    assert rep.per_channel_grids == ["r"] and any(n.op_type == "Relu" and n.output[0] == "r" for n in q.graph.node)
    got = np.concatenate([ort.InferenceSession(q.SerializeToString()).run(None, {"input": x[None]})[0] for x in xs])
    assert np.allclose(got, _ov_outputs(q, xs)[0], atol=0.05 * float(np.abs(got).max()))
    for control in (_relu_dw_model(residual=True), _relu_dw_model(dw_act="Relu")):
        assert plan(prepare(control), policy=OPENVINO_POLICY).per_channel == ()
    relu_end = tmp_path / "relu_end.onnx"
    onnx.save(_relu_dw_model(dw_act="Relu"), str(relu_end))
    q2, rep2 = quantize(relu_end, ds, QuantizeConfig(runtime="openvino", scheme=OPENVINO_CPU))
    assert rep2.per_channel_grids == [] and ort.InferenceSession(q2.SerializeToString()).run(
        None, {"input": xs[0][None]}
    )


def test_channel_qparams_give_each_channel_its_own_range_within_the_tensors() -> None:
    lo, hi = np.array([-0.375, -0.01, 0.0, 0.0]), np.array([14.5, 0.03, 2.0, 0.0])
    whole = (-0.375, 14.5)
    for scheme in (OPENVINO_CPU, X86_CPU):  # OpenVINO: uint8 with zero points (the grid per channel pays for them)
        scale, zp, dtype = channel_qparams(lo, hi, whole, scheme)
        assert dtype == "uint8" and zp.dtype == np.uint8 and scale.shape == (4,)
        for c in range(3):  # both ends land within half a step of the channel's own min and max
            q = np.clip(np.rint(np.array([lo[c], hi[c]]) / scale[c]) + zp[c], 0, 255)
            assert np.allclose((q - zp[c]) * scale[c], [lo[c], hi[c]], atol=scale[c] / 2 + 1e-7)
        assert scale[1] < scale[0] / 100  # the small channel's step is its own, not the tensor's
        assert scale[3] > 0 and np.isfinite(scale).all()  # a dead channel: floored, still a valid grid
    # a tensor range that clips (an MSE range) clips the channels that reach past it, and only those
    clipped, _, _ = channel_qparams(lo, hi, (-0.375, 1.0), X86_CPU)
    assert np.isclose(clipped[0], 1.375 / 255) and np.isclose(clipped[1], 0.04 / 255)
    s, z, d = channel_qparams(lo, hi, whole, QuantScheme(activation_dtype="int8", activations_symmetric=True))
    assert d == "int8" and not z.any() and np.isclose(s[0], 14.5 / 127.5)


def test_channel_statistics_merge_exactly_across_shards() -> None:
    x = np.random.default_rng(0).normal(size=(6, 4, 5, 5)) * np.array([1, 10, 0.1, 3])[None, :, None, None]
    x = x.astype(np.float32)
    one, a, b = CalibrationStats(), CalibrationStats(), CalibrationStats()
    one.update_channels({"t": x})
    a.update_channels({"t": x[:2]})
    b.update_channels({"t": x[2:]})
    merged = a.merged(b).tensors["t"]
    assert np.array_equal(merged.ch_min, x.min(axis=(0, 2, 3))) and np.array_equal(merged.ch_max, x.max(axis=(0, 2, 3)))
    assert np.array_equal(one.tensors["t"].ch_min, merged.ch_min)


def _ov_outputs(model: onnx.ModelProto | Path, xs: np.ndarray) -> tuple[np.ndarray, dict[str, str]]:
    core = ov.Core()
    m = core.read_model(str(model)) if isinstance(model, Path) else core.read_model(model.SerializeToString(), b"")
    c = core.compile_model(m, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    outs = np.concatenate([c(x[None])[0] for x in xs])
    precisions = {
        op.get_friendly_name(): op.get_rt_info()["runtimePrecision"].astype(str)
        for op in c.get_runtime_model().get_ordered_ops()
        if op.get_rt_info()["layerType"].astype(str) == "Convolution"
    }
    return outs, precisions


@pytest.fixture(scope="module")
def spread(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ImageDataset, np.ndarray]:
    src = tmp_path_factory.mktemp("grids") / "spread.onnx"
    onnx.save(_stem_model(30.0), str(src))
    spec = find_spec(EVAL_DIR)
    xs = np.stack([spec.load(p) for p in sorted(EVAL_DIR.glob("*.png"))[:32]])
    return src, ImageDataset.open(CALIB_DIR, find_spec(CALIB_DIR), 32), xs


def test_openvino_runs_the_grid_per_channel_in_int8_and_closer_to_float(spread: tuple[Path, ImageDataset, np.ndarray]) -> None:  # fmt: skip
    """Half the stem channels at 1/30 of the others: with a grid per channel the depthwise conv's input keeps
    them, and on held-out images OpenVINO's output is at least 10 dB closer to float than with one grid per
    tensor (the control, `channel_grids=False`), with every convolution still int8."""
    src, ds, xs = spread
    cfg = dict(runtime="openvino", scheme=OPENVINO_CPU)
    q, rep = quantize(src, ds, QuantizeConfig(**cfg))
    q_off, rep_off = quantize(src, ds, QuantizeConfig(**cfg, channel_grids=False))
    assert rep.per_channel_grids == ["sh"] and rep_off.per_channel_grids == [] and not rep_off.channel_check
    assert rep.channel_check["per-channel"] < rep.channel_check["per-tensor"] * 0.89, rep.channel_check
    dq = next(n for n in q.graph.node if n.op_type == "DequantizeLinear" and n.input[0] == "sh_q")
    scale = numpy_helper.to_array(next(t for t in q.graph.initializer if t.name == dq.input[1]))
    assert scale.shape == (8,) and helper.get_attribute_value(dq.attribute[0]) == 1
    ref = np.concatenate([ort.InferenceSession(str(src)).run(None, {"input": x[None]})[0] for x in xs]).astype(
        np.float64
    )

    def sqnr(model: onnx.ModelProto) -> tuple[float, dict[str, str]]:
        got, prec = _ov_outputs(model, xs)
        return float(10 * np.log10(np.sum(ref**2) / np.sum((ref - got) ** 2))), prec

    (on, prec), (off, _) = sqnr(q), sqnr(q_off)
    assert on > off + 10.0, (on, off)
    assert prec and all(p in ("i8", "u8") for p in prec.values()), prec  # the depthwise conv did not fall to f32


def test_auto_keeps_one_grid_per_tensor_when_grids_per_channel_measure_no_better(
    spread: tuple[Path, ImageDataset, np.ndarray], tmp_path: Path
) -> None:
    """The other side of the check: every stem channel the same filter, so each channel's range is the tensor's;
    grids per channel measure the same on the calibration images and one grid per tensor ships."""
    _, ds, _ = spread
    m = _stem_model(1.0)
    for t in m.graph.initializer:
        if t.name in ("w0", "b0"):
            a = numpy_helper.to_array(t)
            t.CopyFrom(numpy_helper.from_array(np.repeat(a[:1], a.shape[0], axis=0), t.name))
    src = tmp_path / "same.onnx"
    onnx.save(m, str(src))
    _, rep = quantize(src, ds, QuantizeConfig(runtime="openvino", scheme=OPENVINO_CPU))
    assert rep.channel_check and rep.per_channel_grids == [], rep.channel_check


def test_a_grid_per_channel_has_no_tflite_form(spread: tuple[Path, ImageDataset, np.ndarray], tmp_path: Path) -> None:
    """TFLite activations are per tensor: exporting such a file is refused with a one-line reason, exit 2."""
    from typer.testing import CliRunner

    from edgecnn.cli import app

    src, ds, _ = spread
    q, _ = quantize(src, ds, QuantizeConfig(runtime="openvino", scheme=OPENVINO_CPU))
    path = tmp_path / "ov.onnx"
    onnx.save(q, str(path))
    out = tmp_path / "ov.tflite"
    r = CliRunner().invoke(app, ["export", str(path), "--to", "tflite", "-o", str(out)])
    assert r.exit_code == 2 and "per-axis activation scales" in r.output and not out.exists(), r.output
