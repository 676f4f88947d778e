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
