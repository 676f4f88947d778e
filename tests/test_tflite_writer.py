"""TFLiteBuilder: files it writes run on the real LiteRT interpreter and compile with Arm's Vela."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from edgecnn.errors import BadInputError, ModelError
from edgecnn.export.tflite_writer import TFLiteBuilder, read_tflite


def run_tflite(data: bytes, *inputs: np.ndarray) -> list[np.ndarray]:
    it = Interpreter(model_content=data, num_threads=1)
    it.allocate_tensors()
    for d, x in zip(it.get_input_details(), inputs, strict=True):
        it.set_tensor(d["index"], x)
    it.invoke()
    return [it.get_tensor(d["index"]).copy() for d in it.get_output_details()]


def test_add_with_constant_and_fused_relu_matches_numpy() -> None:
    b = TFLiteBuilder(description="t")
    a = b.add_tensor("a", [2, 3], "float32")
    c = np.array([[1, -2, 3], [-4, 5, -6]], np.float32)
    k = b.add_tensor("k", [2, 3], "float32", data=c)
    o = b.add_tensor("o", [2, 3], "float32")
    b.add_op("ADD", [a, k], [o], {"fused_activation_function": "RELU"})
    b.set_io([a], [o])
    b.add_metadata("edgecnn.test", b'{"x": 1}')
    data = b.to_bytes()
    assert data[4:8] == b"TFL3"
    x = np.linspace(-3, 3, 6, dtype=np.float32).reshape(2, 3)
    (y,) = run_tflite(data, x)
    np.testing.assert_allclose(y, np.maximum(x + c, 0))
    # negative control: without the fused RELU the result differs
    assert np.any(x + c < 0)
    g = read_tflite(data)
    assert [op.builtin for op in g.ops] == ["ADD"]
    assert g.ops[0].options["fused_activation_function"] == 1
    assert g.metadata["edgecnn.test"] == b'{"x": 1}'
    np.testing.assert_array_equal(g.tensor_data(k), c)
    assert g.tensor_data(a) is None


def _conv_int8(per_channel: bool) -> tuple[bytes, dict]:
    rng = np.random.default_rng(1)
    cin, cout, hw = 4, 6, 8
    w = rng.standard_normal((cout, 3, 3, cin)).astype(np.float32)  # OHWI
    bias = rng.standard_normal(cout).astype(np.float32)
    in_s, in_zp = 0.05, -3
    w_s = np.abs(w).reshape(cout, -1).max(1) / 127 if per_channel else np.full(cout, np.abs(w).max() / 127)
    wq = np.clip(np.round(w / w_s[:, None, None, None]), -127, 127).astype(np.int8)
    bq = np.round(bias / (in_s * w_s)).astype(np.int32)
    out_s, out_zp = 0.2, 5
    b = TFLiteBuilder()
    x = b.add_tensor("x", [1, hw, hw, cin], "int8", scale=[in_s], zero_point=[in_zp])
    wt = b.add_tensor(
        "w",
        [cout, 3, 3, cin],
        "int8",
        data=wq,
        scale=w_s if per_channel else w_s[:1],
        zero_point=[0] * (cout if per_channel else 1),
        quantized_dimension=0,
    )
    bt = b.add_tensor(
        "b",
        [cout],
        "int32",
        data=bq,
        scale=(in_s * w_s) if per_channel else (in_s * w_s[:1]),
        zero_point=[0] * (cout if per_channel else 1),
    )
    y = b.add_tensor("y", [1, hw, hw, cout], "int8", scale=[out_s], zero_point=[out_zp])
    b.add_op("CONV_2D", [x, wt, bt], [y], {"padding": "SAME", "stride_h": 1, "stride_w": 1})
    b.set_io([x], [y])
    return b.to_bytes(), {"wq": wq, "w_s": w_s, "bq": bq, "in": (in_s, in_zp), "out": (out_s, out_zp)}


def _conv_ref(xq: np.ndarray, p: dict) -> np.ndarray:
    in_s, in_zp = p["in"]
    out_s, out_zp = p["out"]
    xr = (xq.astype(np.float64) - in_zp) * in_s
    wr = p["wq"].astype(np.float64) * p["w_s"][:, None, None, None]
    br = p["bq"] * in_s * p["w_s"]
    xp = np.pad(xr, ((0, 0), (1, 1), (1, 1), (0, 0)))
    n, h, w_, _ = xr.shape
    out = np.zeros((n, h, w_, wr.shape[0]))
    for i in range(3):
        for j in range(3):
            out += np.einsum("nhwc,oc->nhwo", xp[:, i : i + h, j : j + w_, :], wr[:, i, j, :])
    out += br
    return np.clip(np.round(out / out_s) + out_zp, -128, 127)


@pytest.mark.parametrize("per_channel", [True, False])
def test_int8_conv_matches_numpy_within_one_lsb(per_channel: bool) -> None:
    data, p = _conv_int8(per_channel)
    xq = np.random.default_rng(2).integers(-128, 128, (1, 8, 8, 4)).astype(np.int8)
    (y,) = run_tflite(data, xq)
    ref = _conv_ref(xq, p)
    assert np.abs(y.astype(np.int32) - ref).max() <= 1
    g = read_tflite(data)
    w = g.by_name("w")
    assert len(w.scale) == (6 if per_channel else 1)
    assert w.quantized_dimension == 0
    assert g.ops[0].version == 3
    # negative control: a reference built with the wrong scale is far off
    wrong = dict(p, out=(p["out"][0] * 2, p["out"][1]))
    assert np.abs(y.astype(np.int32) - _conv_ref(xq, wrong)).max() > 5


# Vela as the package runs it (edgecnn.export.vela): this interpreter's module, whatever is on PATH.
VELA = [sys.executable, "-m", "ethosu.vela"]


def test_vela_compiles_int8_conv_onto_the_npu(tmp_path: Path) -> None:
    data, _ = _conv_int8(True)
    src = tmp_path / "conv.tflite"
    src.write_bytes(data)
    out = tmp_path / "out"
    r = subprocess.run(
        [*VELA, str(src), "--output-dir", str(out), "--accelerator-config", "ethos-u55-128"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    g = read_tflite((out / "conv_vela.tflite").read_bytes())
    ops = [op.builtin for op in g.ops]
    assert "CONV_2D" not in ops and "CUSTOM" in ops, ops


def test_vela_leaves_a_float_conv_on_the_cpu(tmp_path: Path) -> None:
    """Negative control: Vela cannot place a float32 CONV_2D on the NPU, so it stays a CONV_2D."""
    b = TFLiteBuilder()
    x = b.add_tensor("x", [1, 8, 8, 4], "float32")
    w = b.add_tensor("w", [6, 3, 3, 4], "float32", data=np.ones((6, 3, 3, 4), np.float32))
    bias = b.add_tensor("b", [6], "float32", data=np.zeros(6, np.float32))
    y = b.add_tensor("y", [1, 8, 8, 6], "float32")
    b.add_op("CONV_2D", [x, w, bias], [y], {"padding": "SAME", "stride_h": 1, "stride_w": 1})
    b.set_io([x], [y])
    src = tmp_path / "f.tflite"
    src.write_bytes(b.to_bytes())
    (y_out,) = run_tflite(src.read_bytes(), np.ones((1, 8, 8, 4), np.float32))
    assert y_out[0, 4, 4, 0] == 36 and y_out[0, 0, 0, 0] == 16  # SAME padding, no bias
    r = subprocess.run(
        [*VELA, str(src), "--output-dir", str(tmp_path / "o")], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stdout + r.stderr
    ops = [op.builtin for op in read_tflite((tmp_path / "o" / "f_vela.tflite").read_bytes()).ops]
    assert "CONV_2D" in ops


def test_bad_builder_input_is_a_one_line_error() -> None:
    b = TFLiteBuilder()
    with pytest.raises(BadInputError, match="dtype"):
        b.add_tensor("x", [1], "complex256")
    x = b.add_tensor("x", [1, 4], "float32")
    with pytest.raises(BadInputError, match="per-channel"):
        b.add_tensor("w", [3, 4], "int8", scale=[1.0, 2.0], zero_point=[0, 0], quantized_dimension=0)
    with pytest.raises(BadInputError, match="option"):
        b.add_op("ADD", [x, x], [x], {"no_such_field": 1})
    with pytest.raises(BadInputError, match="builtin"):
        b.add_op("NOT_AN_OP", [x], [x])
    with pytest.raises(ModelError, match="TFL3"):
        read_tflite(b"not a model at all")


@pytest.mark.parametrize("builtin", ["HARD_SWISH", "LOGISTIC", "RELU", "TANH", "LEAKY_RELU"])
def test_int8_unary_ops_load_with_the_versions_we_write(builtin: str) -> None:
    """LiteRT refuses an op version its resolver does not register (HARD_SWISH registers only 1)."""
    b = TFLiteBuilder()
    out_q = {"LOGISTIC": (1 / 256, -128), "TANH": (1 / 128, 0)}.get(builtin, (0.05, 0))
    x = b.add_tensor("x", [1, 8], "int8", scale=[0.05], zero_point=[0])
    y = b.add_tensor("y", [1, 8], "int8", scale=[out_q[0]], zero_point=[out_q[1]])
    b.add_op(builtin, [x], [y], {"alpha": 0.1} if builtin == "LEAKY_RELU" else None)
    b.set_io([x], [y])
    xq = np.arange(-40, 40, 10, dtype=np.int8).reshape(1, 8)
    (yq,) = run_tflite(b.to_bytes(), xq)
    real = xq.astype(np.float64) * 0.05
    ref = {
        "HARD_SWISH": real * np.clip(real + 3, 0, 6) / 6,
        "LOGISTIC": 1 / (1 + np.exp(-real)),
        "RELU": np.maximum(real, 0),
        "TANH": np.tanh(real),
        "LEAKY_RELU": np.where(real > 0, real, 0.1 * real),
    }[builtin]
    got = (yq.astype(np.float64) - out_q[1]) * out_q[0]
    assert np.abs(got - ref).max() <= 1.5 * out_q[0], (got, ref)


def test_missing_litert_is_exit_3_with_the_install_command() -> None:
    code = (
        "import sys; sys.modules['ai_edge_litert'] = None\n"
        "from edgecnn.errors import MissingRuntimeError\n"
        "try:\n    import edgecnn.export.to_tflite\nexcept MissingRuntimeError as e:\n"
        "    print(e.exit_code, e)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.startswith("3 ") and "pip install 'edgecnn[litert]'" in r.stdout, r.stdout + r.stderr
