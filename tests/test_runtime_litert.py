"""The LiteRT adapter on real .tflite files, and `.tflite` wherever a model path is (inspect, bench, drift)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgecnn.bench.harness import prepare_model
from edgecnn.errors import BadInputError, ModelError
from edgecnn.export.tflite_writer import TFLiteBuilder
from edgecnn.export.to_tflite import UnsupportedOpError
from edgecnn.graph.artifact import ModelFormat, format_of, open_artifact
from edgecnn.runtimes import open_session, runtime_version
from tests.cli_helpers import assert_one_line_error, invoke
from tests.conftest import EVAL_DIR, SAMPLE_MODEL
from tests.onnx_builders import make_model, rng_w, save

C = np.array([[1.0, -2.0, 3.0], [-4.0, 5.0, -6.0]], np.float32)


def _add_relu(tmp_path: Path) -> Path:
    b = TFLiteBuilder(description="add-relu")
    a = b.add_tensor("a", [2, 3], "float32")
    k = b.add_tensor("k", [2, 3], "float32", data=C)
    o = b.add_tensor("o", [2, 3], "float32")
    b.add_op("ADD", [a, k], [o], {"fused_activation_function": "RELU"})
    b.set_io([a], [o])
    p = tmp_path / "add.tflite"
    p.write_bytes(b.to_bytes())
    return p


def _int8_io(tmp_path: Path) -> Path:
    """int8 in -> int8 out through an int8 ADD with itself (x + x), scale 0.5 -> 1.0."""
    b = TFLiteBuilder()
    x = b.add_tensor("x", [1, 4], "int8", scale=[0.5], zero_point=[3])
    y = b.add_tensor("y", [1, 4], "int8", scale=[1.0], zero_point=[-2])
    b.add_op("ADD", [x, x], [y])
    b.set_io([x], [y])
    p = tmp_path / "q.tflite"
    p.write_bytes(b.to_bytes())
    return p


@pytest.mark.parametrize("delegate", ["xnnpack", "none", "reference"])
def test_tflite_file_runs_and_matches_numpy(tmp_path: Path, delegate: str) -> None:
    sess = open_session("litert", _add_relu(tmp_path), threads=2, options={"delegate": delegate})
    (i,), (o,) = sess.inputs(), sess.outputs()
    assert (i.name, i.shape, i.dtype, i.quant) == ("a", (2, 3), "float32", None)
    assert (o.name, o.shape) == ("o", (2, 3))
    x = np.linspace(-3, 3, 6, dtype=np.float32).reshape(2, 3)
    (y,) = sess.run({"a": x})
    np.testing.assert_allclose(y, np.maximum(x + C, 0))
    assert np.any(x + C < 0)  # negative control: without the fused RELU the result would differ
    assert sess.threads == 2 and sess.device == "CPU" and sess.version == runtime_version("litert")
    call = sess.bind({"a": x})  # what the bench worker times: one invoke on bound inputs
    call()
    np.testing.assert_allclose(sess.run({"a": x})[0], y)


def test_int8_io_reports_its_quantization(tmp_path: Path) -> None:
    sess = open_session("litert", _int8_io(tmp_path))
    (i,), (o,) = sess.inputs(), sess.outputs()
    assert i.dtype == "int8" and i.quant == (0.5, 3)
    assert o.dtype == "int8" and o.quant == (1.0, -2)
    xq = np.array([[3, 5, 7, 13]], np.int8)  # real 0, 1, 2, 5
    (yq,) = sess.run({"x": xq})
    np.testing.assert_array_equal((yq.astype(np.float32) + 2) * 1.0, [[0, 2, 4, 10]])


def test_bad_files_and_options_are_one_line_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\0" * 64)
    with pytest.raises(ModelError, match="TFL3"):
        open_session("litert", junk)
    with pytest.raises(ModelError, match="no such file"):
        open_session("litert", tmp_path / "missing.tflite")
    with pytest.raises(BadInputError, match=r"delegate='gpu'.*xnnpack, none, reference"):
        open_session("litert", _add_relu(tmp_path), options={"delegate": "gpu"})
    with pytest.raises(BadInputError, match="missing input"):
        open_session("litert", _add_relu(tmp_path)).run({"b": C})


def test_onnx_on_litert_keeps_the_onnx_interface_and_refuses_unconvertible_ops(tmp_path: Path) -> None:
    sess = open_session("litert", SAMPLE_MODEL, threads=1)
    (i,) = sess.inputs()
    assert i.shape == (1, 3, 32, 32)  # the ONNX layout; transposed to NHWC inside
    ort = open_session("ort", SAMPLE_MODEL)
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(sess.run({i.name: x})[0], ort.run({i.name: x})[0], rtol=1e-4, atol=1e-4)
    from onnx import helper

    bad = make_model(
        [helper.make_node("Erf", ["x"], ["y"], name="erf_node")], [("x", [1, 4])], [("y", None)], {"w": rng_w(1)}
    )
    with pytest.raises(UnsupportedOpError, match="erf_node"):
        open_session("litert", save(bad, tmp_path / "erf.onnx"))


def test_onnx_that_already_takes_nhwc_is_fed_as_it_is(tmp_path: Path) -> None:
    """A tf2onnx export takes NHWC and transposes inside; its converted TFLite input is the same NHWC shape,
    so the adapter must not transpose the sample again (it did: 'Dimension mismatch' in drift/profile/bench)."""
    from onnx import helper

    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], name="to_nchw", perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["t", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["y"], name="relu"),
    ]
    m = make_model(nodes, [("x", [1, 12, 10, 3])], [("y", [1, 4, 12, 10])], {"w": rng_w(4, 3, 3, 3)})
    path = save(m, tmp_path / "nhwc.onnx")
    sess = open_session("litert", path, threads=1)
    (i,) = sess.inputs()
    assert i.shape == (1, 12, 10, 3)
    x = np.random.default_rng(1).standard_normal((1, 12, 10, 3)).astype(np.float32)
    np.testing.assert_allclose(sess.run({"x": x})[0], open_session("ort", path).run({"x": x})[0], rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The bundled model as float32 TFLite and as INT8 TFLite with int8 I/O (Ethos-U style)."""
    d = tmp_path_factory.mktemp("lite")
    f32, i8 = d / "f32.tflite", d / "i8.tflite"
    assert invoke("export", SAMPLE_MODEL, "-o", f32, "--no-parity").exit_code == 0
    r = invoke(
        "export",
        SAMPLE_MODEL,
        "--calib",
        EVAL_DIR.parent / "calib",
        "--samples",
        "64",
        "--io-dtype",
        "int8",
        "--target",
        "arm-cpu-xnnpack",
        "-o",
        i8,
        "--no-parity",
    )
    assert r.exit_code == 0, r.output
    return f32, i8


def test_artifact_reads_layout_quantization_and_preprocess(exported: tuple[Path, Path]) -> None:
    f32, i8 = exported
    assert format_of(f32) is ModelFormat.TFLITE and format_of(SAMPLE_MODEL) is ModelFormat.ONNX
    a = open_artifact(i8)
    assert a.input_layout == "NHWC" and a.inputs[0].shape == (1, 32, 32, 3) and a.inputs[0].dtype == "int8"
    assert a.inputs[0].scale and a.outputs[0].scale and a.preprocess is not None
    assert a.preprocess.resize == (32, 32)
    assert open_artifact(SAMPLE_MODEL).input_layout == "NCHW"


def test_bench_feeds_nhwc_to_tflite_and_nchw_to_onnx_from_the_same_images(exported: tuple[Path, Path]) -> None:
    f32, i8 = exported
    onnx_p = prepare_model(SAMPLE_MODEL, input_source=EVAL_DIR)
    tfl_p = prepare_model(f32, input_source=EVAL_DIR)
    q_p = prepare_model(i8, input_source=EVAL_DIR)
    xo = onnx_p.feeds[0]["input"]
    (xt,) = tfl_p.feeds[0].values()
    (xq,) = q_p.feeds[0].values()
    assert xo.shape == (1, 3, 32, 32) and xt.shape == (1, 32, 32, 3)
    np.testing.assert_array_equal(xt, xo.transpose(0, 2, 3, 1))  # same image, other layout
    a = open_artifact(i8).inputs[0]
    assert xq.dtype == np.int8
    np.testing.assert_allclose((xq.astype(np.float32) - a.zero_point) * a.scale, xt, atol=a.scale / 2 + 1e-6)
    assert not np.array_equal(xo.reshape(xt.shape), xt)  # negative control: a reshape is not the transpose


def test_bench_cli_runs_tflite_on_litert_and_refuses_other_runtimes(
    exported: tuple[Path, Path], tmp_path: Path
) -> None:
    f32, i8 = exported
    js = tmp_path / "b.json"
    r = invoke("bench", f32, i8, "-r", "litert", "-n", "30", "--threads", "2", "--input", EVAL_DIR, "--json", js)
    assert r.exit_code == 0, r.output
    data = json.loads(js.read_text())
    assert len(data["results"]) == 2 and all(x["runtime"] == "litert" for x in data["results"])
    assert_one_line_error(invoke("bench", f32, "-r", "ort", "-n", "5"), 2, "f32.tflite", "-r litert")


def test_inspect_tflite(exported: tuple[Path, Path], tmp_path: Path) -> None:
    _, i8 = exported
    js = tmp_path / "i.json"
    r = invoke("inspect", i8, "--json", js)
    assert r.exit_code == 0, r.output
    assert "NHWC" in r.output and "CONV_2D" in r.output and "zero point" in r.output
    d = json.loads(js.read_text())
    assert d["kind"] == "inspect-tflite" and d["schema_version"] == 1 and d["inputs"][0]["dtype"] == "int8"


def test_drift_onnx_source_vs_its_tflite_export(exported: tuple[Path, Path], tmp_path: Path) -> None:
    f32, i8 = exported
    for cand, min_agree in ((f32, 99.9), (i8, 97.0)):
        js = tmp_path / f"{cand.stem}.json"
        r = invoke("drift", SAMPLE_MODEL, cand, "--data", EVAL_DIR, "--samples", "300", "--json", js)
        assert r.exit_code == 0, r.output
        d = json.loads(js.read_text())
        assert d["agreement_pct"] >= min_agree, (cand, d["agreement_pct"])
        assert any("TFLite" in n for n in d["notes"])
    # the reference must be the ONNX source
    assert_one_line_error(invoke("drift", f32, SAMPLE_MODEL, "--data", EVAL_DIR), 2, "reference must be the ONNX")
