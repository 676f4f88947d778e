"""edgecnn inspect: hand-computed numbers on tiny models, the bundled model, and every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from onnx import helper

from edgecnn.graph.load import load_model, parse_input_shapes
from edgecnn.graph.summary import summarize
from tests.cli_helpers import assert_one_line_error, invoke, run_cli
from tests.onnx_builders import conv_model, make_model, rng_w, save, small_cnn


def summary_of(model: onnx.ModelProto, tmp_path: Path, shapes: dict | None = None):
    return summarize(load_model(save(model, tmp_path / "m.onnx"), shapes))


def layer(s, name):
    return next(lay for lay in s.layers if lay.name == name)


def test_conv_numbers(tmp_path: Path) -> None:
    s = summary_of(conv_model(cin=3, cout=8, k=3, hw=16), tmp_path)
    conv = layer(s, "conv")
    assert conv.macs == 8 * 16 * 16 * 3 * 3 * 3  # out elems x Cin x kh x kw
    assert conv.params == 8 * 3 * 3 * 3 + 8
    assert conv.bytes_read == (3 * 16 * 16 + 8 * 27 + 8) * 4
    assert conv.bytes_written == 8 * 16 * 16 * 4
    assert conv.intensity == pytest.approx(conv.macs / (conv.bytes_read + conv.bytes_written), abs=1e-3)
    assert conv.output_shape == [1, 8, 16, 16]
    assert s.peak_activation_bytes == (3 + 8) * 16 * 16 * 4
    assert s.inputs[0].layout == "NCHW"


def test_depthwise_is_flagged_memory_bound(tmp_path: Path) -> None:
    s = summary_of(conv_model(cin=32, cout=32, k=3, hw=16, group=32), tmp_path)
    dw = layer(s, "conv")
    assert dw.macs == 32 * 16 * 16 * 9
    assert "depthwise" in dw.flags and "memory-bound" in dw.flags
    dense = layer(summary_of(conv_model(cin=32, cout=32, k=3, hw=16), tmp_path), "conv")
    assert "memory-bound" not in dense.flags and dense.macs == 32 * dw.macs


def test_strided_conv_output_shape(tmp_path: Path) -> None:
    conv = layer(summary_of(conv_model(cin=3, cout=4, k=3, hw=16, stride=2), tmp_path), "conv")
    assert conv.output_shape == [1, 4, 8, 8]
    assert conv.macs == 4 * 8 * 8 * 27


def test_gemm_matmul_pool_add_concat(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("AveragePool", ["x"], ["ap"], name="ap", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("MaxPool", ["x"], ["mp"], name="mp", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Add", ["ap", "mp"], ["sum"], name="add"),
        helper.make_node("Concat", ["ap", "sum"], ["cat"], name="cat", axis=1),
        helper.make_node("GlobalAveragePool", ["cat"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flat"),
        helper.make_node("Gemm", ["flat", "w", "b"], ["g"], name="gemm", transB=1),
        helper.make_node("MatMul", ["g", "w2"], ["y"], name="mm"),
    ]
    inits = {"w": rng_w(10, 8), "b": rng_w(10), "w2": rng_w(10, 6)}
    s = summary_of(make_model(nodes, [("x", [1, 4, 8, 8])], [("y", None)], inits), tmp_path)
    assert layer(s, "ap").macs == 4 * 4 * 4 * 4  # 64 outputs x 2x2 window
    assert layer(s, "mp").macs == 0
    assert layer(s, "add").macs == 0 and layer(s, "add").bytes_read == 2 * 64 * 4
    assert layer(s, "cat").output_shape == [1, 8, 4, 4]
    assert layer(s, "gap").macs == 8 * 4 * 4
    assert layer(s, "gemm").macs == 10 * 8 and layer(s, "gemm").params == 90
    assert layer(s, "mm").macs == 6 * 10
    assert s.op_histogram["Gemm"] == 1 and sum(s.op_histogram.values()) == 8
    assert s.total_macs == 256 + 128 + 80 + 60


def test_layer_params_sum_to_the_total(tmp_path: Path) -> None:
    """Pad's int64 pads (and Reshape's shape) are not parameters, per layer as in the total."""
    import numpy as np

    nodes = [
        helper.make_node("Pad", ["x", "pads"], ["p"], name="pad"),
        helper.make_node("Conv", ["p", "w"], ["c"], name="conv"),
        helper.make_node("Reshape", ["c", "shape"], ["y"], name="flat"),
    ]
    inits = {"w": rng_w(4, 3, 3, 3), "pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64),
             "shape": np.array([1, -1], np.int64)}  # fmt: skip
    s = summarize(load_model(save(make_model(nodes, [("x", [1, 3, 8, 8])], [("y", None)], inits), tmp_path / "p.onnx")))
    assert sum(lay.params for lay in s.layers) == s.total_params == 4 * 3 * 3 * 3


def test_shapes_through_a_computed_pad_are_folded(tmp_path: Path) -> None:
    """torch.onnx (legacy) writes a reflect Pad's pads as a small constant subgraph; shape inference stops
    there, and every later layer showed 0 MACs. The folded model gives the shapes (inspect and profile)."""
    import numpy as np

    const = [helper.make_node("Constant", [], [p], value=onnx.numpy_helper.from_array(np.array([0, 0, 1, 1], np.int64)))
             for p in ("p1", "p2")]  # fmt: skip
    nodes = [*const, helper.make_node("Concat", ["p1", "p2"], ["pads"], axis=0),
             helper.make_node("Pad", ["x", "pads"], ["p"], mode="reflect", name="pad"),
             helper.make_node("Conv", ["p", "w"], ["y"], name="conv")]  # fmt: skip
    s = summarize(load_model(save(make_model(nodes, [("x", [1, 3, 8, 8])], [("y", None)], {"w": rng_w(4, 3, 3, 3)}),
                                  tmp_path / "refl.onnx")))  # fmt: skip
    conv = next(lay for lay in s.layers if lay.name == "conv")
    assert conv.output_shape == [1, 4, 8, 8] and conv.macs == s.total_macs == 4 * 3 * 9 * 8 * 8


def test_batched_matmul(tmp_path: Path) -> None:
    node = helper.make_node("MatMul", ["a", "w"], ["y"], name="mm")
    s = summary_of(make_model([node], [("a", [2, 4, 8])], [("y", None)], {"w": rng_w(8, 16)}), tmp_path)
    assert layer(s, "mm").macs == 2 * 4 * 16 * 8


def test_small_cnn_flags_and_residual(tmp_path: Path) -> None:
    s = summary_of(small_cnn(), tmp_path)
    assert "bn-not-folded" in layer(s, "stem_bn").flags
    assert "depthwise" in layer(s, "dw").flags
    assert any("BatchNormalization" in w for w in s.warnings)
    assert any("memory-bound" in w for w in s.warnings)
    # Peak: during the residual Add, r0 (kept for the skip) + pw + res are live: 3 x 8x16x16 floats.
    assert s.peak_activation_bytes == 3 * 8 * 16 * 16 * 4


def test_bundled_model(sample_model: Path) -> None:
    s = summarize(load_model(sample_model))
    assert s.inputs[0].shape == [1, 3, 32, 32] and s.inputs[0].layout == "NCHW"
    assert s.outputs[0].shape == [1, 10]
    assert 5_000 < s.total_params < 100_000
    assert s.total_macs > 100_000
    assert s.op_histogram.get("BatchNormalization", 0) > 0
    assert any("depthwise" in lay.flags for lay in s.layers)
    assert {"Conv", "Add", "GlobalAveragePool", "Gemm"} <= set(s.op_histogram)


def test_cli_table_and_json(sample_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    r = invoke("inspect", sample_model, "--json", out)
    assert r.exit_code == 0, r.output
    assert "GlobalAveragePool" in r.output and "bn-not-folded" in r.output
    data = json.loads(out.read_text())
    assert data["schema_version"] == 1 and data["kind"] == "inspect"
    assert data["total_macs"] == summarize(load_model(sample_model)).total_macs


def test_input_shape_resolves_dynamic_dims(tmp_path: Path) -> None:
    m = conv_model()
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    m.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "H"
    m.graph.input[0].type.tensor_type.shape.dim[3].dim_param = "W"
    for i, d in enumerate(("N", "C", "H", "W")):
        if i != 1:
            m.graph.output[0].type.tensor_type.shape.dim[i].dim_param = d
    p = save(m, tmp_path / "dyn.onnx")
    s = summarize(load_model(p, parse_input_shapes(["x=2x3x8x8"])))
    assert s.layers[0].output_shape == [2, 8, 8, 8]
    assert s.layers[0].macs == 2 * 8 * 8 * 8 * 27
    assert_one_line_error(invoke("inspect", p), 2, "dynamic", "x[", "--input-shape")


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def bad_models(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    good = save(conv_model(), tmp_path / "good.onnx").read_bytes()
    bad_graph = conv_model()
    bad_graph.graph.node[0].input[1] = "missing_weight"
    old = conv_model()
    old.opset_import[0].version = 3
    future = conv_model()
    future.opset_import[0].version = 99
    return {
        "missing": (tmp_path / "nope.onnx", "no such file"),
        "directory": (tmp_path, "is a directory"),
        "not-onnx": (_write(tmp_path, "text.onnx", b"hello, this is not a model\n" * 10), "not"),
        "truncated": (_write(tmp_path, "trunc.onnx", good[: len(good) // 2]), "truncated"),
        "checker": (save(bad_graph, tmp_path / "bad.onnx"), "checker"),
        "old-opset": (save(old, tmp_path / "old.onnx"), "opset 3"),
        "future-opset": (save(future, tmp_path / "future.onnx"), "opset 99"),
    }


@pytest.mark.parametrize(
    "case", ["missing", "directory", "not-onnx", "truncated", "checker", "old-opset", "future-opset"]
)
def test_bad_models(case: str, tmp_path: Path) -> None:
    path, needle = bad_models(tmp_path)[case]
    out = tmp_path / "out.json"
    line = assert_one_line_error(invoke("inspect", path, "--json", out), 2, needle)
    assert str(path) in line
    assert not out.exists()


@pytest.mark.parametrize("spec", ["x=1x3x", "x", "=1x3", "x=1x0x4x4", "x=a"])
def test_malformed_input_shape(spec: str, tmp_path: Path) -> None:
    p = save(conv_model(), tmp_path / "m.onnx")
    assert_one_line_error(invoke("inspect", p, "--input-shape", spec), 2, "--input-shape")


def test_input_shape_conflicts(tmp_path: Path) -> None:
    p = save(conv_model(), tmp_path / "m.onnx")
    assert_one_line_error(invoke("inspect", p, "--input-shape", "x=1x3x8x8"), 2, "conflicts")
    assert_one_line_error(invoke("inspect", p, "--input-shape", "y=1x3x16x16"), 2, "unknown input")


def test_external_data_model(tmp_path: Path) -> None:
    m = conv_model(cin=16, cout=64, k=3)
    onnx.save(m, str(tmp_path / "ext.onnx"), save_as_external_data=True, location="ext.bin", size_threshold=0)
    assert (tmp_path / "ext.bin").exists()
    s = summarize(load_model(tmp_path / "ext.onnx"))
    assert s.total_params == 64 * 16 * 9 + 64


def test_subprocess_error_and_debug(tmp_path: Path) -> None:
    r = run_cli("inspect", tmp_path / "missing.onnx")
    assert_one_line_error(r, 2, "no such file")
    r = run_cli("--debug", "inspect", tmp_path / "missing.onnx")
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_version() -> None:
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.startswith("edgecnn ")


def test_gemm_whose_input_shape_is_unknown_counts_no_macs() -> None:
    """Shape inference cannot follow a model that returns another rank than it declares (ddddocr's LSTM OCR):
    a Gemm on such a tensor has no known K; inspect, check and profile crashed on it with an IndexError."""
    from edgecnn.graph.summary import node_macs

    gemm = helper.make_node("Gemm", ["a", "w"], ["y"], name="fc")
    assert node_macs(gemm, {"y": (1, [1, 10])}) == 0  # "a" unknown
    assert node_macs(gemm, {"a": (1, [1, 8]), "y": (1, [1, 10])}) == 80  # the other side: known K
