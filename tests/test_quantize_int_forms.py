"""Integer forms of activations ONNX Runtime has no QLinear kernel for (edgecnn.quantize.lookup), checked
exhaustively: every one of the 256 input codes goes through the real ORT session of the float chain
(DequantizeLinear -> HardSigmoid/HardSwish -> QuantizeLinear) and of the rewritten graph, and the integer
codes are compared. The optimized graph ORT writes shows what it actually executes."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgecnn.quantize.lookup import apply_lookups, decompose, table
from edgecnn.runtimes import open_session

OPS = frozenset({"HardSigmoid", "HardSwish"})


def qdq_chain(
    op: str, s: float, z: int, s2: float, z2: int, dtype: str = "uint8", *, hswish2: bool = False, **attrs: float
) -> onnx.ModelProto:
    """codes -> DQ(s, z) -> op -> Q(s2, z2) -> codes; ``hswish2``: the opset-10 HardSwish, Mul(x, HardSigmoid(x))
    with the gate quantized on [0, 1] and the product on (s2, z2)."""
    et = TensorProto.UINT8 if dtype == "uint8" else TensorProto.INT8
    npt = np.dtype(dtype)
    inits = [
        numpy_helper.from_array(np.array(s, np.float32), "s"),
        numpy_helper.from_array(np.array(z, npt), "z"),
        numpy_helper.from_array(np.array(s2, np.float32), "s2"),
        numpy_helper.from_array(np.array(z2, npt), "z2"),
    ]
    nodes = [
        helper.make_node("DequantizeLinear", ["x", "s", "z"], ["xf"], name="dq"),
        helper.make_node(op, ["xf"], ["yf"], name="act", **attrs),
    ]
    if hswish2:
        lo = np.iinfo(npt).min
        inits += [
            numpy_helper.from_array(np.array(1 / 255, np.float32), "sg"),
            numpy_helper.from_array(np.array(lo if lo < 0 else 0, npt), "zg"),
        ]
        nodes += [
            helper.make_node("QuantizeLinear", ["yf", "sg", "zg"], ["gq"], name="gq"),
            helper.make_node("DequantizeLinear", ["gq", "sg", "zg"], ["gf"], name="gdq"),
            helper.make_node("Mul", ["xf", "gf"], ["mf"], name="mul"),
            helper.make_node("QuantizeLinear", ["mf", "s2", "z2"], ["y"], name="q"),
        ]
    else:
        nodes.append(helper.make_node("QuantizeLinear", ["yf", "s2", "z2"], ["y"], name="q"))
    g = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", et, [1, 256])],
        [helper.make_tensor_value_info("y", et, [1, 256])],
        inits,
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)])


def codes(dtype: str) -> np.ndarray:
    return np.arange(256, dtype=np.uint8).view(np.dtype(dtype))[None]


def run(m: onnx.ModelProto, tmp: Path, name: str, dtype: str = "uint8") -> np.ndarray:
    p = tmp / f"{name}.onnx"
    onnx.save(m, str(p))
    return open_session("ort", p).run({"x": codes(dtype)})[0].astype(np.int32)


def executed(m: onnx.ModelProto, tmp: Path) -> collections.Counter[str]:
    """The op types ONNX Runtime runs after its graph optimizations."""
    import onnxruntime as ort

    p = tmp / "m.onnx"
    onnx.save(m, str(p))
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.optimized_model_filepath = str(tmp / "opt.onnx")
    ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])
    return collections.Counter(n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node)


def copy(m: onnx.ModelProto) -> onnx.ModelProto:
    c = onnx.ModelProto()
    c.CopyFrom(m)
    return c


# (op, input scale, zero point, output scale, zero point, dtype, attributes)
CASES = {
    "hsig-mbv3-u8": ("HardSigmoid", 0.05, 128, 1 / 255, 0, "uint8", {"alpha": 1 / 6, "beta": 0.5}),
    "hsig-default-attrs-u8": ("HardSigmoid", 0.02, 90, 1 / 255, 0, "uint8", {}),
    "hsig-narrow-gate-u8": ("HardSigmoid", 0.013, 200, 0.7 / 255, 0, "uint8", {"alpha": 1 / 6, "beta": 0.5}),
    "hsig-int8": ("HardSigmoid", 0.04, 3, 1 / 255, -128, "int8", {"alpha": 1 / 6, "beta": 0.5}),
    "hsig-negative-beta-u8": ("HardSigmoid", 0.05, 20, 1 / 255, 0, "uint8", {"alpha": 0.3, "beta": -0.4}),
    "hswish-u8": ("HardSwish", 0.04, 60, 0.035, 12, "uint8", {}),
}
LOOKUP_CASES = {**CASES, "hswish-int8": ("HardSwish", 0.05, -40, 0.04, -118, "int8", {})}


@pytest.mark.parametrize("case", LOOKUP_CASES)
def test_lookup_table_equals_the_float_chain_on_every_code(case: str, tmp_path: Path) -> None:
    op, s, z, s2, z2, dtype, attrs = LOOKUP_CASES[case]
    m = qdq_chain(op, s, z, s2, z2, dtype, **attrs)
    ref = run(m, tmp_path, "ref", dtype)
    lut = copy(m)
    done = apply_lookups(lut, OPS, {"yf": "act"})
    assert "act" in done and "lookup table" in done["act"] and f"no QLinear{op}" in done["act"]
    assert apply_lookups(copy(m), OPS, {}) == {}  # a node the plan did not quantize is left alone
    got = run(lut, tmp_path, "lut", dtype)
    assert np.array_equal(got, ref)  # the table *is* Q(f(DQ(i))), so bit-equal
    ops = executed(lut, tmp_path)
    assert ops[op] == 0 and ops["Gather"] == 1 and ops["DequantizeLinear"] == 0
    # Negative control: a table of the wrong function (alpha halved) differs from ORT's float chain.
    wrong = table(lambda x: np.clip(x / 12 + 0.5, 0, 1), s, np.array(z, dtype), s2, np.array(z2, dtype))
    right = table(
        lambda x: np.clip(x * attrs.get("alpha", 0.2) + attrs.get("beta", 0.5), 0, 1),
        s,
        np.array(z, dtype),
        s2,
        np.array(z2, dtype),
    )
    if op == "HardSigmoid":
        assert np.array_equal(right.astype(np.int32), ref[0])
    assert not np.array_equal(wrong.astype(np.int32), ref[0])


@pytest.mark.parametrize("case", CASES)
def test_decomposition_runs_in_integer_and_is_within_one_code(case: str, tmp_path: Path) -> None:
    op, s, z, s2, z2, dtype, attrs = CASES[case]
    m = qdq_chain(op, s, z, s2, z2, dtype, **attrs)
    ref = run(m, tmp_path, "ref", dtype)
    dec = copy(m)
    done = decompose(dec, OPS, {"yf": "act"})
    assert "QLinearAdd" in done["act"]
    onnx.checker.check_model(dec, full_check=True)
    got = run(dec, tmp_path, "dec", dtype)
    # QLinearAdd rounds once instead of after each float step; the HardSwish form also rounds its gate.
    limit = 1 if op == "HardSigmoid" else 2
    assert np.abs(got - ref).max() <= limit
    ops = executed(dec, tmp_path)
    assert ops[op] == 0 and ops["QLinearAdd"] == 1 and ops["QLinearMul"] == (op == "HardSwish")
    assert ops["Add"] == ops["Mul"] == ops["DequantizeLinear"] == ops["QuantizeLinear"] == 0


def test_opset10_hardswish_is_one_table_and_more_exact_than_the_float_chain(tmp_path: Path) -> None:
    """Mul(x, HardSigmoid(x)) between Q/DQ: one table for the whole product (no gate rounding, no QLinearMul)."""
    s, z, s3, z3 = 0.045, 70, 0.03, 14
    m = qdq_chain("HardSigmoid", s, z, s3, z3, hswish2=True, alpha=1 / 6, beta=0.5)
    ref = run(m, tmp_path, "ref")
    lut = copy(m)
    done = apply_lookups(lut, OPS, {"yf": "act", "mf": "mul"})
    assert "HardSwish" in done["act"] and done["mul"] == "part of the HardSwish lookup table"
    got = run(lut, tmp_path, "lut")
    x = (codes("uint8")[0].astype(np.float64) - z) * s
    ideal = np.clip(x * np.clip(x / 6 + 0.5, 0, 1) / s3 + z3, 0, 255)  # the exact value, in codes
    assert np.abs(got[0] - ideal).max() <= 0.5 + 1e-3  # one rounding: the nearest code
    assert np.abs(ref[0] - ideal).max() > 0.6  # the float chain rounds the gate first (the control)
    ops = executed(lut, tmp_path)
    assert ops["Gather"] == 1 and ops["HardSigmoid"] == ops["Mul"] == ops["QLinearMul"] == 0


@pytest.mark.parametrize(
    ("why", "s2", "z2", "dtype"),
    [
        ("output grid reaches below 0 (symmetric int8)", 1 / 127, 0, "int8"),
        ("output grid reaches beyond 1", 2 / 255, 0, "uint8"),
    ],
)
def test_decomposition_refuses_where_saturation_is_not_the_clip(why: str, s2: float, z2: int, dtype: str) -> None:
    m = qdq_chain("HardSigmoid", 0.05, 0, s2, z2, dtype, alpha=1 / 6, beta=0.5)
    assert decompose(m, OPS, {"yf": "act"}) == {}, why
    assert [n.op_type for n in m.graph.node].count("HardSigmoid") == 1
    # Control: the same chain with a [0, 1] output grid is rewritten.
    lo = -128 if dtype == "int8" else 0
    ok = qdq_chain("HardSigmoid", 0.05, 0, 1 / 255, lo, dtype, alpha=1 / 6, beta=0.5)
    assert "act" in decompose(ok, OPS, {"yf": "act"})


def test_int8_hardswish_is_not_decomposed_because_ort_runs_int8_mul_in_float(tmp_path: Path) -> None:
    """The reason, measured: ORT (x86) does not fuse an int8 DQ -> Mul -> Q; the uint8 one is QLinearMul."""
    i8 = qdq_chain("HardSigmoid", 0.045, -60, 0.03, -110, "int8", hswish2=True, alpha=1 / 6, beta=0.5)
    u8 = qdq_chain("HardSigmoid", 0.045, 60, 0.03, 10, "uint8", hswish2=True, alpha=1 / 6, beta=0.5)
    assert executed(i8, tmp_path)["QLinearMul"] == 0 and executed(u8, tmp_path)["QLinearMul"] == 1
    assert decompose(qdq_chain("HardSwish", 0.05, -40, 0.04, -118, "int8"), OPS, {"yf": "act"}) == {}


def test_per_channel_input_is_left_alone() -> None:
    m = qdq_chain("HardSwish", 0.05, 10, 0.04, 10)
    dq = m.graph.node[0]
    dq.attribute.append(helper.make_attribute("axis", 1))
    assert decompose(copy(m), OPS, {"yf": "act"}) == {} and apply_lookups(copy(m), OPS, {"yf": "act"}) == {}


# ---------------------------------------------------------------- PRelu: x + (1 - slope)·Relu(-x) ----------------
PRELU_OPS = frozenset({"PRelu"})


def prelu_chain(slope: np.ndarray, s: float, z: int, s2: float, z2: int, dtype: str = "uint8") -> onnx.ModelProto:
    """codes [1, C, 256] -> DQ(s, z) -> PRelu(slope (C, 1) or (1, 1)) -> Q(s2, z2): every channel sees all 256
    codes (C = 4 for one slope)."""
    et = TensorProto.UINT8 if dtype == "uint8" else TensorProto.INT8
    npt = np.dtype(dtype)
    c = max(slope.shape[0], 4)
    inits = [
        numpy_helper.from_array(np.array(s, np.float32), "s"),
        numpy_helper.from_array(np.array(z, npt), "z"),
        numpy_helper.from_array(np.array(s2, np.float32), "s2"),
        numpy_helper.from_array(np.array(z2, npt), "z2"),
        numpy_helper.from_array(slope.astype(np.float32), "slope"),
    ]
    nodes = [
        helper.make_node("DequantizeLinear", ["x", "s", "z"], ["xf"], name="dq"),
        helper.make_node("PRelu", ["xf", "slope"], ["yf"], name="act"),
        helper.make_node("QuantizeLinear", ["yf", "s2", "z2"], ["y"], name="q"),
    ]
    g = helper.make_graph(
        nodes,
        "prelu",
        [helper.make_tensor_value_info("x", et, [1, c, 256])],
        [helper.make_tensor_value_info("y", et, [1, c, 256])],
        inits,
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)])


def run_prelu(m: onnx.ModelProto, tmp: Path, name: str, channels: int) -> np.ndarray:
    p = tmp / f"{name}.onnx"
    onnx.save(m, str(p))
    x = np.tile(np.arange(256, dtype=np.uint8), (1, channels, 1))
    return open_session("ort", p).run({"x": x})[0].astype(np.int32)


@pytest.mark.parametrize(
    "slope",
    [
        np.array([[0.25], [-0.1], [0.0], [1.0]]),  # per channel: leaky, negative, Relu, identity
        np.array([[0.6]]),  # one slope for every channel
    ],
    ids=["per-channel", "scalar"],
)
def test_prelu_form_runs_in_integer_and_is_within_two_codes(slope: np.ndarray, tmp_path: Path) -> None:
    """Every input code of every channel through ORT's float chain and through the integer form: at most two
    codes apart (the Mul's output is rounded once more), and ORT runs it as QLinearMul + QLinearAdd, no PRelu."""
    s, z, s2, z2 = 0.05, 100, 0.04, 50  # x in [-5, 7.75]; y down to -0.5 (slope -0.1 reaches +0.5)
    m = prelu_chain(slope, s, z, s2, z2)
    ch = max(slope.shape[0], 4)
    ref = run_prelu(m, tmp_path, "ref", ch)
    dec = copy(m)
    done = decompose(dec, PRELU_OPS, {"yf": "act"})
    assert "QLinearMul + QLinearAdd" in done["act"]
    onnx.checker.check_model(dec, full_check=True)
    got = run_prelu(dec, tmp_path, "dec", ch)
    assert np.abs(got - ref).max() <= 2
    assert np.abs(got - ref).mean() < 0.5
    ops = executed(dec, tmp_path)
    assert ops["PRelu"] == 0 and ops["QLinearMul"] == 1 and ops["QLinearAdd"] == 1
    assert ops["Mul"] == ops["Add"] == ops["DequantizeLinear"] == ops["QuantizeLinear"] == 0
    # Negative control: the float chain is what ORT runs without the form.
    assert executed(m, tmp_path)["PRelu"] == 1


@pytest.mark.parametrize(
    ("why", "slope", "dtype", "z"),
    [
        ("a slope above 1: the Mul's positive side is then not Relu(-x)", np.array([[0.25], [1.5]]), "uint8", 100),
        ("int8 x: ORT 1.32 on x86 runs an int8 DQ -> Mul -> Q in float", np.array([[0.25], [0.1]]), "int8", -20),
        ("x never negative on its grid: PRelu is the identity there", np.array([[0.25], [0.1]]), "uint8", 0),
    ],
)
def test_prelu_form_refuses_where_it_is_not_exact_or_not_faster(
    why: str, slope: np.ndarray, dtype: str, z: int
) -> None:
    m = prelu_chain(slope, 0.05, z, 0.04, z, dtype)
    assert decompose(m, PRELU_OPS, {"yf": "act"}) == {}, why
    assert [n.op_type for n in m.graph.node].count("PRelu") == 1
    # Control: slopes below 1 on a uint8 grid that reaches below 0 are rewritten.
    assert "act" in decompose(prelu_chain(np.array([[0.25], [0.1]]), 0.05, 100, 0.04, 50), PRELU_OPS, {"yf": "act"})


def test_prelu_form_takes_its_mul_grid_from_each_channels_minimum(tmp_path: Path) -> None:
    """With each channel's calibrated minimum the Mul's grid ends at the largest (1 - slope_c)·(-min_c), not at
    the widest (1 - slope) times x's grid bottom: here channel 0 (slope 0, reaching -2) and channel 1 (slope 0.9,
    reaching -20) give 2 instead of 20, a step 10x finer, and the negative outputs are closer to the exact PRelu
    on the calibrated ranges. Control: the same chain without the minima."""
    s, z, s2, z2 = 0.1, 200, 0.1, 180  # x in [-20, 5.5], y in [-18, 7.5]
    slope = np.array([0.0, 0.9])
    inits = [
        numpy_helper.from_array(np.array(s, np.float32), "s"),
        numpy_helper.from_array(np.array(z, np.uint8), "z"),
        numpy_helper.from_array(np.array(s2, np.float32), "s2"),
        numpy_helper.from_array(np.array(z2, np.uint8), "z2"),
        numpy_helper.from_array(slope.reshape(2, 1).astype(np.float32), "slope"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="q_in"),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xf"], name="dq"),
        helper.make_node("PRelu", ["xf", "slope"], ["yf"], name="act"),
        helper.make_node("QuantizeLinear", ["yf", "s2", "z2"], ["y"], name="q"),
    ]
    g = helper.make_graph(
        nodes,
        "prelu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 256])],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, [1, 2, 256])],
        inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)])
    x = np.stack([np.linspace(-2.0, 5.5, 256), np.linspace(-20.0, 5.5, 256)])[None].astype(np.float32)
    xg = (np.clip(np.round(x / s) + z, 0, 255) - z) * s  # x on its grid
    exact = np.clip(np.round(np.where(xg > 0, xg, slope[None, :, None] * xg) / s2) + z2, 0, 255)

    err = {}
    for label, mins in (("minima", {"x": np.array([-2.0, -20.0])}), ("bound", None)):
        dec = copy(m)
        assert "act" in decompose(dec, PRELU_OPS, {"yf": "act"}, channel_min=mins)
        top = float(numpy_helper.to_array(next(t for t in dec.graph.initializer if t.name == "yf_neg_scale"))) * 255
        p = tmp_path / f"{label}.onnx"
        onnx.save(dec, str(p))
        got = open_session("ort", p).run({"x": x})[0].astype(np.float64)
        err[label] = (top, float(np.abs(got - exact)[x < 0].mean()))
    assert abs(err["minima"][0] - 2.0) < 1e-5 and abs(err["bound"][0] - 20.0) < 1e-5, err
    assert err["minima"][1] < 0.8 * err["bound"][1], err


def _prelu_model(tmp: Path) -> tuple[Path, object, list[np.ndarray]]:
    """MTCNN-style Conv -> PRelu blocks (slopes per channel, some negative) on the bundled images: the float
    file, a 32-image calibration set and 32 evaluation inputs."""
    from edgecnn.preprocess import find_spec
    from edgecnn.quantize.dataset import ImageDataset
    from tests.conftest import CALIB_DIR, EVAL_DIR
    from tests.onnx_builders import make_model, rng_w

    n = helper.make_node
    nodes = [
        n("Conv", ["input", "w1", "b1"], ["c1"], name="conv1", kernel_shape=[3, 3], pads=[1] * 4),
        n("PRelu", ["c1", "a1"], ["p1"], name="prelu1"),
        n("Conv", ["p1", "w2", "b2"], ["c2"], name="conv2", kernel_shape=[3, 3], pads=[1] * 4),
        n("PRelu", ["c2", "a2"], ["p2"], name="prelu2"),
        n("Conv", ["p2", "w3"], ["y"], name="conv3", kernel_shape=[1, 1]),
    ]
    spec = find_spec(CALIB_DIR)
    cin, hh, ww = spec.load(sorted(CALIB_DIR.glob("*.png"))[0]).shape
    inits = {
        "w1": rng_w(16, cin, 3, 3),
        "b1": rng_w(16, seed=1),
        "a1": np.linspace(0.05, 0.4, 16, dtype=np.float32).reshape(16, 1, 1),
        "w2": rng_w(16, 16, 3, 3, seed=2),
        "b2": rng_w(16, seed=3),
        "a2": np.linspace(-0.1, 0.3, 16, dtype=np.float32).reshape(16, 1, 1),
        "w3": rng_w(4, 16, 1, 1, seed=4),
    }
    src = tmp / "prelu.onnx"
    onnx.save(make_model(nodes, [("input", [1, cin, hh, ww])], [("y", None)], inits, opset=13), str(src))
    xs = [spec.load(p)[None] for p in sorted(EVAL_DIR.glob("*.png"))[:32]]
    return src, ImageDataset.open(CALIB_DIR, spec, 32), xs


def _sqnr(ref: np.ndarray, got: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref**2) / np.sum((got - ref) ** 2)))


def test_a_prelu_model_runs_in_integer_on_onnx_runtime(tmp_path: Path) -> None:
    """MTCNN-style Conv -> PRelu blocks quantized end to end (real images): with `--runtime ort` ORT runs no float
    PRelu and no Q/DQ between the convs; the float-island placement (`ort-prelu-float`, the control) runs every
    PRelu in float between a DQ and a Q. The form rounds once more per PRelu: the output stays within 1.5 dB of
    the float island's SQNR."""
    import onnxruntime as ort

    from edgecnn.quantize.api import QuantizeConfig, quantize

    src, ds, xs = _prelu_model(tmp_path)

    def run(path: Path) -> tuple[np.ndarray, collections.Counter[str]]:
        so = ort.SessionOptions()
        so.optimized_model_filepath = str(path.with_suffix(".opt.onnx"))
        s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        ops = collections.Counter(n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node)
        return np.concatenate([s.run(None, {"input": x})[0] for x in xs]).astype(np.float64), ops

    ref, _ = run(src)
    res = {}
    for runtime in ("ort", "ort-prelu-float"):
        q, r = quantize(src, ds, QuantizeConfig(runtime=runtime, bias_correction=False, mse_check=False))
        path = tmp_path / f"{runtime}.onnx"
        onnx.save(q, str(path))
        got, ops = run(path)
        res[runtime] = (_sqnr(ref, got), ops, r)
    sq, ops, r = res["ort"]
    assert ops["PRelu"] == 0 and ops["QLinearMul"] == 2 and ops["QLinearAdd"] == 2, ops
    # one Q (the image); the DQs feed the last conv, which writes the graph output in float (input and weight)
    assert ops["QuantizeLinear"] == 1 and ops["DequantizeLinear"] == 2, ops
    assert {"prelu1", "prelu2"} <= set(r.integer_forms) and not {"prelu1", "prelu2"} & set(r.kept_float)
    sq_ctl, ops_ctl, r_ctl = res["ort-prelu-float"]
    assert ops_ctl["PRelu"] == 2 and "prelu1" in r_ctl.kept_float
    assert sq > sq_ctl - 1.5, (sq, sq_ctl)


def test_prelu_is_a_post_op_of_its_int8_conv_on_openvino(tmp_path: Path) -> None:
    """--runtime openvino: no Q/DQ between a Conv and its PRelu, so OpenVINO fuses the PRelu into the int8
    convolution (as SiLU and HardSwish). Control (`openvino-prelu-float`, the placement before): a Q/DQ after
    each Conv and after each PRelu; it is measured further from FP32 here."""
    import openvino as ov

    from edgecnn.quantize.api import QuantizeConfig, quantize
    from edgecnn.quantize.params import OPENVINO_CPU

    src, ds, xs = _prelu_model(tmp_path)
    core = ov.Core()

    def run(path: Path) -> np.ndarray:
        c = core.compile_model(core.read_model(str(path)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        return np.concatenate([c([x])[0] for x in xs]).astype(np.float64)

    ref = run(src)
    res = {}
    for runtime in ("openvino", "openvino-prelu-float"):
        q, _ = quantize(src, ds, QuantizeConfig(runtime=runtime, scheme=OPENVINO_CPU, bias_correction=False))
        path = tmp_path / f"{runtime}.onnx"
        onnx.save(q, str(path))
        quantized = {n.input[0] for n in q.graph.node if n.op_type == "QuantizeLinear"}
        res[runtime] = (_sqnr(ref, run(path)), quantized, path)
    sq, quantized, path = res["openvino"]
    assert not {"c1", "c2"} & quantized and {"p1", "p2"} <= quantized  # Conv -> PRelu -> Q
    from edgecnn.graph.passes import prepare
    from edgecnn.quantize.qdq import OPENVINO_POLICY, plan

    assert plan(prepare(onnx.load(str(src))), policy=OPENVINO_POLICY).post_ops["prelu1"] == "conv1"
    compiled = core.compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    kinds = {}
    for op in compiled.get_runtime_model().get_ops():
        rt = op.get_rt_info()
        if "originalLayersNames" in rt and "runtimePrecision" in rt:
            for name in rt["originalLayersNames"].astype(str).split(","):
                kinds[name] = (op.get_type_name(), rt["runtimePrecision"].astype(str))
    assert kinds["conv2"][1] in ("i8", "u8") and kinds["prelu2"] == kinds["conv2"], kinds  # one fused int8 kernel
    sq_ctl, quantized_ctl, _ = res["openvino-prelu-float"]
    assert {"c1", "c2"} <= quantized_ctl
    assert sq > sq_ctl, (sq, sq_ctl)


def test_a_prelu_with_one_slope_is_a_leaky_relu_before_quantizing(tmp_path: Path) -> None:
    """``nn.PReLU()`` (one slope for every channel) is LeakyRelu: `prepare` writes it so (same outputs), and ORT
    then runs QLinearLeakyRelu (one rounding, no QLinearMul/QLinearAdd). Controls: slopes per channel stay PRelu;
    a one-value slope of higher rank than x (it would broadcast x up) stays PRelu."""
    from edgecnn.graph.passes import prepare
    from tests.onnx_builders import make_model, rng_w

    n = helper.make_node

    def model(slope: np.ndarray) -> onnx.ModelProto:
        nodes = [
            n("Conv", ["input", "w1"], ["c1"], name="conv1", kernel_shape=[3, 3], pads=[1] * 4),
            n("PRelu", ["c1", "a"], ["p1"], name="prelu"),
            n("Conv", ["p1", "w2"], ["y"], name="conv2", kernel_shape=[1, 1]),
        ]
        inits = {"w1": rng_w(8, 3, 3, 3), "a": slope.astype(np.float32), "w2": rng_w(4, 8, 1, 1, seed=2)}
        return make_model(nodes, [("input", [1, 3, 16, 16])], [("y", None)], inits, opset=13)

    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)

    def ops_and_out(m: onnx.ModelProto, name: str) -> tuple[list[str], np.ndarray]:
        p = tmp_path / f"{name}.onnx"
        onnx.save(m, str(p))
        return [k.op_type for k in m.graph.node], open_session("ort", p).run({"input": x})[0]

    for slope in (np.array([0.2]), np.array([[[0.2]]])):
        src = model(slope)
        _, ref = ops_and_out(src, "ref")
        ops, got = ops_and_out(prepare(src), "prep")
        assert "PRelu" not in ops and "LeakyRelu" in ops
        assert np.allclose(got, ref, rtol=1e-5, atol=1e-6)
        leaky = next(k for k in prepare(src).graph.node if k.op_type == "LeakyRelu")
        assert abs(leaky.attribute[0].f - 0.2) < 1e-7
    # controls
    assert "PRelu" in [k.op_type for k in prepare(model(np.linspace(0.1, 0.3, 8).reshape(8, 1, 1))).graph.node]
    deep = model(np.array([[[[[0.2]]]]]))  # rank 5 against a 4-D x: the output would be 5-D
    deep.graph.output[0].ClearField("type")
    deep.graph.output[0].type.tensor_type.elem_type = TensorProto.FLOAT
    assert "PRelu" in [k.op_type for k in prepare(deep).graph.node]
