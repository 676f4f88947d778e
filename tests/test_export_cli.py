"""`edgecnn export`: real conversions of the bundled model, verified on the runtime that ships each file
(LiteRT, OpenVINO, ONNX Runtime), Arm's Vela for Ethos-U, PyTorch -> ONNX, and every kind of bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from edgecnn.export.tflite_writer import TFLiteBuilder, read_tflite
from edgecnn.export.vela import Placement, parse_warnings, run_vela
from edgecnn.runtimes import open_session
from tests.absent import env_without
from tests.cli_helpers import ROOT, assert_one_line_error, invoke
from tests.conftest import CALIB_DIR, EVAL_DIR, SAMPLE_MODEL
from tests.onnx_builders import conv_model, make_model, rng_w, save

TRAIN_SCRIPT = ROOT / "scripts" / "train_sample_model.py"


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("export")


@pytest.fixture(scope="module")
def qdq(work: Path) -> Path:
    """The bundled model quantized by `edgecnn quantize` for Ethos-U (int8 everywhere, outputs too)."""
    out = work / "sample.u55.onnx"
    r = invoke("quantize", SAMPLE_MODEL, "--calib", CALIB_DIR, "--samples", "128", "--target", "ethos-u55", "-o", out)
    assert r.exit_code == 0, r.output
    return out


def _report(path: Path) -> dict:
    data = json.loads(path.read_text())
    assert data["schema_version"] == 1 and data["kind"] == "export"
    return data


def _eval_images(n: int) -> np.ndarray:
    from edgecnn.preprocess import find_spec
    from edgecnn.quantize.dataset import ImageDataset

    ds = ImageDataset.open(EVAL_DIR, find_spec(EVAL_DIR), n)
    return np.concatenate(list(ds.batches(n)))


# -- INT8 TFLite from the QDQ model: the parity bar --------------------------------------------------
def test_int8_tflite_agrees_with_its_qdq_source_on_the_bundled_eval_set(qdq: Path, work: Path) -> None:
    out, js = work / "q.tflite", work / "q.json"
    r = invoke("export", qdq, "--to", "tflite", "-o", out, "--json", js)
    assert r.exit_code == 0, r.output
    rep = _report(js)
    p = rep["parity"]
    assert rep["precision"] == "int8" and rep["input_layout"] == "NHWC" and rep["io_dtype"] == "float32"
    assert p["runtime"] == "litert" and p["samples"] == 1000 and "calibration_data/eval" in p["data"]
    assert p["top1_agreement"] >= 99.5 and p["ok"] is True
    assert p["sqnr_db"] > 30 and p["max_abs_error"] >= 0
    assert "top-1 agreement" in r.output and "SQNR" in r.output
    # The file as it ships: scales and zero points are the QDQ model's own (one calibration, two formats).
    g = read_tflite(out.read_bytes())
    m = onnx.load(str(qdq))
    q_scales = {
        float(onnx.numpy_helper.to_array(t))
        for t in m.graph.initializer
        if t.name.endswith("scale") and onnx.numpy_helper.to_array(t).size == 1
    }
    t_scales = {float(np.float32(t.scale[0])) for t in g.tensors if t.dtype == "int8" and len(t.scale) == 1}
    assert len(t_scales & {float(np.float32(s)) for s in q_scales}) >= 10
    # Independently of the parity code: LiteRT on NHWC images predicts what ORT predicts on NCHW ones.
    x = _eval_images(50)
    ort = open_session("ort", qdq)
    lite = open_session("litert", out)
    (spec,) = lite.inputs()
    assert spec.shape == (1, 32, 32, 3)
    ref = [np.argmax(ort.run({ort.inputs()[0].name: x[i : i + 1]})[0]) for i in range(50)]
    got = [np.argmax(lite.run({spec.name: x[i : i + 1].transpose(0, 2, 3, 1)})[0]) for i in range(50)]
    assert np.mean(np.equal(ref, got)) >= 0.98
    # negative control: NCHW data reinterpreted as NHWC (the classic layout bug) does not agree
    wrong = [np.argmax(lite.run({spec.name: x[i : i + 1].reshape(1, 32, 32, 3)})[0]) for i in range(50)]
    assert np.mean(np.equal(ref, wrong)) < 0.9


def test_float32_and_float16_tflite_and_openvino_ir_and_onnx(work: Path) -> None:
    for name, extra in (("f32.tflite", []), ("f16.tflite", ["--precision", "float16"]), ("ir.xml", []),
                        ("ir16.xml", ["--precision", "float16"]), ("copy.onnx", [])):  # fmt: skip
        out, js = work / name, work / f"{name}.json"
        r = invoke("export", SAMPLE_MODEL, "-o", out, "--json", js, "--parity-samples", "100", *extra)
        assert r.exit_code == 0, (name, r.output)
        p = _report(js)["parity"]
        assert p["ok"] and p["top1_agreement"] >= 99.5 and p["samples"] == 100, (name, p)
        assert p["sqnr_db"] > (60 if "16" not in name else 30), (name, p)
        assert p["runtime"] == {".tflite": "litert", ".xml": "openvino", ".onnx": "ort"}[out.suffix]
    assert (work / "ir.bin").is_file() and (work / "ir16.bin").stat().st_size < (work / "ir.bin").stat().st_size
    assert (work / "f16.tflite").stat().st_size < (work / "f32.tflite").stat().st_size


def test_openvino_int8_ir_from_the_qdq_model(qdq: Path, work: Path) -> None:
    out, js = work / "q.xml", work / "q.xml.json"
    r = invoke("export", qdq, "-o", out, "--json", js, "--parity-samples", "300")
    assert r.exit_code == 0, r.output
    rep = _report(js)
    assert rep["precision"] == "int8" and rep["parity"]["runtime"] == "openvino" and rep["parity"]["ok"]
    assert "FakeQuantize" in out.read_text() or "fake_quantize" in out.read_text().lower()


# -- Ethos-U through Vela ---------------------------------------------------------------------------------
def test_ethos_u55_export_runs_vela_and_reports_its_placement(qdq: Path, work: Path) -> None:
    out, js = work / "u55.tflite", work / "u55.json"
    r = invoke("export", qdq, "--target", "ethos-u55", "-o", out, "--json", js, "--parity-samples", "200")
    assert r.exit_code == 0, r.output
    rep = _report(js)
    assert rep["io_dtype"] == "int8" and rep["target"] == "ethos-u55"
    g = read_tflite(out.read_bytes())
    assert g.tensors[g.inputs[0]].dtype == "int8" and g.tensors[g.outputs[0]].dtype == "int8"
    v = rep["vela"]
    assert v["accelerator"] == "ethos-u55-128" and v["system_config"] == "Ethos_U55_High_End_Embedded"
    vela_file = work / "u55_vela.tflite"
    assert v["output"] == str(vela_file) and vela_file.is_file()
    assert [op.builtin for op in read_tflite(vela_file.read_bytes()).ops] == ["CUSTOM"]  # the whole graph on the NPU
    assert v["npu_ops"] == len(g.ops) and v["cpu_ops"] == 0
    assert v["sram_used_kib"] > 0 and v["flash_used_kib"] > 0 and v["inference_time_ms"] > 0
    assert "Vela" in r.output and "SRAM used" in r.output


def test_ethos_u65_uses_its_own_accelerator_config(qdq: Path, work: Path) -> None:
    js = work / "u65.json"
    r = invoke("export", qdq, "--target", "ethos-u65", "-o", work / "u65.tflite", "--json", js, "--no-parity")
    assert r.exit_code == 0, r.output
    v = _report(js)["vela"]
    assert v["accelerator"] == "ethos-u65-256" and v["system_config"] == "Ethos_U65_High_End"


def _stride5_model() -> bytes:
    """Two INT8 convs: stride 1 (Vela: NPU) and stride 5 with SAME padding (Vela: CPU, with its reason)."""
    b = TFLiteBuilder()
    x = b.add_tensor("x", [1, 16, 16, 4], "int8", scale=[0.05], zero_point=[0])
    w = b.add_tensor(
        "w", [4, 3, 3, 4], "int8", data=np.ones((4, 3, 3, 4), np.int8), scale=[0.01] * 4, zero_point=[0] * 4
    )
    bias = b.add_tensor("b", [4], "int32", data=np.zeros(4, np.int32), scale=[0.0005] * 4, zero_point=[0] * 4)
    y = b.add_tensor("y", [1, 16, 16, 4], "int8", scale=[0.1], zero_point=[0])
    b.add_op("CONV_2D", [x, w, bias], [y], {"padding": "SAME", "stride_h": 1, "stride_w": 1})
    z = b.add_tensor("z", [1, 4, 4, 4], "int8", scale=[0.1], zero_point=[0])
    b.add_op("CONV_2D", [y, w, bias], [z], {"padding": "SAME", "stride_h": 5, "stride_w": 5})
    b.set_io([x], [z])
    return b.to_bytes()


def test_vela_report_names_cpu_operators_with_vela_reasons(tmp_path: Path) -> None:
    src = tmp_path / "m.tflite"
    src.write_bytes(_stride5_model())
    rep = run_vela(src, tmp_path / "m_vela.tflite", target="ethos-u55")
    by_out = {o.output: o for o in rep.ops}
    assert by_out["y"].placement is Placement.NPU and by_out["y"].reasons == ()
    assert by_out["z"].placement is Placement.CPU and any("stride" in r.lower() for r in by_out["z"].reasons)
    assert rep.npu_ops == 1 and rep.cpu_ops == 1
    # the optimised file really keeps the CPU conv and replaces the NPU one
    assert sorted(op.builtin for op in read_tflite((tmp_path / "m_vela.tflite").read_bytes()).ops) == [
        "CONV_2D",
        "CUSTOM",
    ]


def test_parse_warnings_keeps_every_reason() -> None:
    text = (
        "Warning (supported operators) operator: ADD, ofm: 'g'\n"
        "Reason: Operation has tensor with unsupported DataType Float32 (f)\n"
        'Feature-map dataTypes must be one of {"INT8"}\n\n'
        "Warning (supported operators) operator: DEQUANTIZE, ofm: 'f'\nReason: Unsupported opType\n"
    )
    got = parse_warnings(text)
    assert got == {
        "g": [
            'Operation has tensor with unsupported DataType Float32 (f) (Feature-map dataTypes must be one of {"INT8"})'
        ],
        "f": ["Unsupported opType"],
    }


# -- PyTorch -> ONNX ----------------------------------------------------------------------------------------
def test_from_torch_exports_the_training_scripts_model(work: Path) -> None:
    out, js = work / "torch.onnx", work / "torch.json"
    r = invoke(
        "export", "--from-torch", f"{TRAIN_SCRIPT}:build_model", "--input-shape", "1x3x32x32", "-o", out, "--json", js,
        "--opset", "17", "--parity-samples", "300",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    m = onnx.load(str(out))
    assert m.opset_import[0].version == 17
    assert [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 32, 32]
    assert {"Conv", "Gemm"} <= {n.op_type for n in m.graph.node}
    p = _report(js)["parity"]
    assert p["reference"] == "PyTorch module" and p["samples"] == 300 and p["top1_agreement"] == 100.0
    assert p["sqnr_db"] > 80


def test_from_torch_dynamic_batch_then_export_needs_a_fixed_shape(work: Path) -> None:
    dyn = work / "dyn.onnx"
    r = invoke(
        "export", "--from-torch", f"{TRAIN_SCRIPT}:build_model", "--input-shape", "1x3x32x32", "-o", dyn,
        "--dynamic-batch", "--opset", "13", "--parity-samples", "100",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    m = onnx.load(str(dyn))
    assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    # dynamic shapes without --input-shape: a one-line error that says how to fix it
    bad = invoke("export", dyn, "-o", work / "dyn.tflite")
    assert_one_line_error(bad, 2, "dynamic", "--input-shape")
    assert not (work / "dyn.tflite").exists()
    ok = invoke("export", dyn, "-o", work / "dyn.tflite", "--input-shape", "input=1x3x32x32", "--parity-samples", "100")
    assert ok.exit_code == 0, ok.output
    assert read_tflite((work / "dyn.tflite").read_bytes()).tensors[0].shape[0] == 1


def test_nhwc_model_with_dynamic_batch_exports_with_the_shape_the_error_suggests(tmp_path: Path) -> None:
    """A TF-style export (input [N, H, W, C], Transpose to NCHW, PRelu, as MTCNN's tf2onnx models): the
    dynamic-dimension error suggests the model's own layout, and the export's parity feeds the TFLite input
    as the ONNX model takes it (NHWC both; no second transpose)."""
    x = helper.make_tensor_value_info("img", onnx.TensorProto.FLOAT, ["N", 12, 10, 3])
    nodes = [
        helper.make_node("Transpose", ["img"], ["t"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["t", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("PRelu", ["c", "slope"], ["p"]),
        helper.make_node("GlobalAveragePool", ["p"], ["g"]),
        helper.make_node("Flatten", ["g"], ["y"]),
    ]
    inits = {"w": rng_w(5, 3, 3, 3), "slope": np.full((5, 1, 1), 0.25, np.float32)}
    m = make_model(nodes, [("img", [1, 12, 10, 3])], [("y", None)], inits)
    m.graph.input[0].CopyFrom(x)
    src, out = save(m, tmp_path / "nhwc.onnx"), tmp_path / "nhwc.tflite"
    bad = invoke("export", src, "-o", out)
    line = assert_one_line_error(bad, 2, "dynamic", "--input-shape img=1x12x10x3")
    assert "1x3x224x224" not in line
    _no_output(out)
    js = tmp_path / "nhwc.json"
    ok = invoke("export", src, "-o", out, "--input-shape", "img=1x12x10x3", "--json", js)
    assert ok.exit_code == 0, ok.output
    assert read_tflite(out.read_bytes()).tensors[0].shape == (1, 12, 10, 3)
    parity = _report(js)["parity"]
    assert parity["sqnr_db"] > 60, parity


# -- bad input --------------------------------------------------------------------------------------------
def _no_output(out: Path) -> None:
    assert not out.exists()
    assert not [
        p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}") or p.name.startswith(f".{out.stem}.")
    ]


def test_unconvertible_op_names_op_node_and_nearest_alternative(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="stem", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Erf", ["c"], ["e"], name="gelu_erf"),
        helper.make_node("Relu", ["e"], ["y"], name="relu"),
    ]
    src = save(make_model(nodes, [("x", [1, 3, 8, 8])], [("y", None)], {"w": rng_w(4, 3, 3, 3)}), tmp_path / "erf.onnx")
    out = tmp_path / "erf.tflite"
    r = invoke("export", src, "-o", out)
    assert_one_line_error(r, 2, "gelu_erf", "Erf", "nearest")
    _no_output(out)
    # positive control: the same graph without Erf converts
    ok = save(make_model([nodes[0], helper.make_node("Relu", ["c"], ["y"], name="relu")], [("x", [1, 3, 8, 8])],
                         [("y", None)], {"w": rng_w(4, 3, 3, 3)}), tmp_path / "ok.onnx")  # fmt: skip
    assert invoke("export", ok, "-o", tmp_path / "ok.tflite").exit_code == 0


def test_float_model_int8_without_calib(tmp_path: Path) -> None:
    out = tmp_path / "q.tflite"
    r = invoke("export", SAMPLE_MODEL, "--precision", "int8", "-o", out)
    assert_one_line_error(r, 2, str(SAMPLE_MODEL), "--precision int8", "--calib DIR")
    _no_output(out)
    r = invoke("export", SAMPLE_MODEL, "--target", "ethos-u55", "-o", out)  # an int8-only target, float model
    assert_one_line_error(r, 2, "ethos-u55", "integer only", "--calib")


def test_float_model_with_calib_quantizes_first(tmp_path: Path) -> None:
    out, js = tmp_path / "c.tflite", tmp_path / "c.json"
    r = invoke("export", SAMPLE_MODEL, "--calib", CALIB_DIR, "--samples", "64", "-o", out, "--json", js,
               "--parity-samples", "200")  # fmt: skip
    assert r.exit_code == 0, r.output
    rep = _report(js)
    assert rep["quantized_first"] and rep["precision"] == "int8" and rep["parity"]["reference"].startswith("QDQ")


def test_per_channel_scales_on_a_per_tensor_target_name_the_node(qdq: Path, tmp_path: Path) -> None:
    spec = tmp_path / "u55-per-tensor.toml"
    spec.write_text(
        'schema_version = 1\nextends = "ethos-u55"\nname = "u55-per-tensor"\n'
        '[quant]\nweights_per_channel = false\nweights_symmetric = true\nweight_dtype = "int8"\n'
        'activation_dtype = "int8"\nactivations_symmetric = false\nsource = "tflite-quant"\n'
    )
    out = tmp_path / "pt.tflite"
    r = invoke("export", qdq, "--target", spec, "-o", out)
    line = assert_one_line_error(r, 2, "u55-per-tensor", "per-channel", "(Conv)", "edgecnn quantize --target")
    assert "'/0/0.0/Conv'" in line or "/Conv'" in line
    _no_output(out)


def test_torch_file_that_is_not_a_model_and_a_factory_that_raises(tmp_path: Path) -> None:
    f = tmp_path / "notmodel.py"
    f.write_text("def factory():\n    return 42\n\ndef broken():\n    raise RuntimeError('weights file missing')\n")
    out = tmp_path / "t.onnx"
    r = invoke("export", "--from-torch", f"{f}:factory", "--input-shape", "1x3x8x8", "-o", out)
    assert_one_line_error(r, 2, "factory()", "int", "torch.nn.Module")
    r = invoke("export", "--from-torch", f"{f}:broken", "--input-shape", "1x3x8x8", "-o", out)
    assert_one_line_error(r, 2, "broken()", "RuntimeError", "weights file missing")
    r = invoke("export", "--from-torch", f"{f}:nope", "--input-shape", "1x3x8x8", "-o", out)
    assert_one_line_error(r, 2, "nope", "factory", "broken")
    r = invoke("export", "--from-torch", f"{tmp_path / 'missing.py'}:f", "--input-shape", "1x3x8x8", "-o", out)
    assert_one_line_error(r, 2, "missing.py", "no such Python file")
    r = invoke("export", "--from-torch", f"{f}:factory", "--input-shape", "1x3xbad", "-o", out)
    assert_one_line_error(r, 2, "1x3xbad", "1x3x224x224")
    _no_output(out)


def test_parity_failure_exits_1_with_the_numbers_and_writes_nothing(tmp_path: Path) -> None:
    """FP16 weights really change the outputs (about 64 dB SQNR on the bundled model): a bar above that
    fails with the measured numbers, and nothing is written."""
    out = tmp_path / "p.tflite"
    r = invoke(
        "export", SAMPLE_MODEL, "--precision", "float16", "-o", out, "--min-sqnr", "90", "--parity-samples", "100"
    )
    line = assert_one_line_error(r, 1, "parity failed", "top-1 agreement", "SQNR", "(min 90.0)", "100 images")
    assert "nothing was written" in line and "max abs error 0," not in line
    _no_output(out)
    # positive control: the same export passes the default FP16 bar and writes the file
    r = invoke("export", SAMPLE_MODEL, "--precision", "float16", "-o", out, "--parity-samples", "100")
    assert r.exit_code == 0 and out.is_file(), r.output


def test_missing_extras_exit_3_with_the_install_command(qdq: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.onnx"
    proc = subprocess.run(
        [sys.executable, "-m", "edgecnn", "export", "--from-torch", f"{TRAIN_SCRIPT}:build_model",
         "--input-shape", "1x3x32x32", "-o", str(out)],
        capture_output=True, text=True, timeout=120, env=env_without("torch", tmp_path), cwd=ROOT,
    )  # fmt: skip
    assert_one_line_error(proc, 3, "PyTorch", "pip install torch==2.13.0")
    _no_output(out)
    u55 = tmp_path / "u.tflite"
    proc = subprocess.run(
        [sys.executable, "-m", "edgecnn", "export", str(qdq), "--target", "ethos-u55", "-o", str(u55), "--no-parity"],
        capture_output=True, text=True, timeout=120, env=env_without("ethosu", tmp_path), cwd=ROOT,
    )  # fmt: skip
    assert_one_line_error(proc, 3, "Vela", "pip install 'edgecnn[vela]'")
    _no_output(u55)


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--to", "coreml"], ("--to 'coreml'", "tflite, openvino, onnx")),
        (["--precision", "int4"], ("--precision 'int4'", "float32")),
        (["--target", "intel-cpu"], ("intel-cpu", "consumes onnx models", "--to onnx")),
    ],
)
def test_bad_options(args: list[str], needles: tuple[str, ...], tmp_path: Path) -> None:
    out = tmp_path / "o.tflite"
    assert_one_line_error(invoke("export", SAMPLE_MODEL, "-o", out, *args), 2, *needles)
    _no_output(out)
    assert_one_line_error(invoke("export", SAMPLE_MODEL, "-o", tmp_path / "o.pb"), 2, "'.pb'", "--to")
    tfl = tmp_path / "already.tflite"
    tfl.write_bytes(_stride5_model())
    assert_one_line_error(invoke("export", tfl, "-o", out), 2, "already.tflite", "is a tflite model", "reads ONNX")


def test_interrupted_export_leaves_no_partial_file(tmp_path: Path) -> None:
    """Ctrl-C while the export quantizes first: exit 130, one line, no output and no temporary file."""
    big = save(conv_model(cin=3, cout=64, k=7, hw=224), tmp_path / "big.onnx")
    d = tmp_path / "calib"
    d.mkdir()
    for p in sorted(CALIB_DIR.glob("*.png")):
        shutil.copy(p, d / p.name)
    (d / "preprocess.toml").write_text('schema_version = 1\ncolor_order = "RGB"\nresize = [224, 224]\n')
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    out = tmp_path / "big.tflite"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgecnn", "export", str(big), "--calib", str(d), "-o", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(tmpdir)},
    )
    deadline = time.monotonic() + 120
    while not list(tmpdir.glob("**/calib.onnx")):  # the export is calibrating
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)
    assert proc.poll() is None, "the export finished before the interrupt; make the test model larger"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.onnx", "calib", "tmpdir"]
    assert [p.name for p in tmpdir.iterdir() if p.name.startswith("edgecnn")] == []


def test_parity_judges_top1_only_on_a_class_score_vector() -> None:
    """A feature map, box grid or mask is judged on SQNR: the argmax of 8x32x32 values flips on a near-tie that
    costs nothing (EfficientNet-style SE blocks exported at 41-46 dB were refused for 'top-1 agreement 88%').
    Negative control: a [N, 10] classifier whose top-1 flips still fails."""
    from edgecnn.export.api import ParityData, measure_parity

    rng = np.random.default_rng(0)
    fmap = rng.standard_normal((1, 8, 32, 32))
    fmap.flat[7] = fmap.flat[9] = fmap.max() + 1.0  # a tie for the largest value

    def tie_broken_the_other_way(x: np.ndarray) -> list[np.ndarray]:
        out = fmap.copy()
        out.flat[7] -= 1e-3
        return [out]

    data = ParityData(label="x", count=4, batches=lambda: iter([np.zeros((1, 3, 32, 32), np.float32)] * 4))
    kw = {"runtime": "litert", "ref_name": "QDQ ONNX", "min_agreement": 99.5, "min_sqnr": 25.0}
    p = measure_parity(lambda x: [fmap], tie_broken_the_other_way, data, **kw)
    assert p.top1_agreement is None and p.sqnr_db > 60 and p.ok
    logits = np.array([[1.0, 3.0, 2.5] + [-5.0] * 7])
    flipped = logits.copy()
    flipped[0, 1], flipped[0, 2] = 2.6, 2.7  # RMS error 0.14 per score: a margin of 0.5 is beyond 3x that
    c = measure_parity(lambda x: [logits], lambda x: [flipped], data, **kw)
    assert c.top1_agreement == 0.0 and c.near_ties == 0 and c.sqnr_db > 25 and not c.ok


def test_parity_judges_each_output_on_its_own_scale() -> None:
    """A detector's boxes (hundreds of pixels) pooled with its scores (0..1) in one SQNR hid scores that were all
    wrong: the worst output counts, and the summary says so. Negative control: both outputs right passes."""
    from edgecnn.export.api import ParityData, measure_parity

    rng = np.random.default_rng(0)
    boxes, scores = rng.uniform(0, 640, (1, 100, 4)), rng.uniform(0, 1, (1, 100, 3))
    data = ParityData(label="x", count=2, batches=lambda: iter([np.zeros((1, 3, 8, 8), np.float32)] * 2))
    kw = {"runtime": "litert", "ref_name": "ONNX", "min_agreement": 99.5, "min_sqnr": 25.0}
    bad = measure_parity(lambda x: [boxes, scores], lambda x: [boxes, 1.0 - scores], data, **kw)
    assert not bad.ok and bad.sqnr_db < 10 and "the worst of 2 outputs" in bad.summary()
    good = measure_parity(lambda x: [boxes, scores], lambda x: [boxes + 0.01, scores + 1e-4], data, **kw)
    assert good.ok and good.sqnr_db > 25


def test_parity_on_random_inputs_gates_sqnr_not_top1(tmp_path: Path) -> None:
    """Random inputs put a classifier's scores near ties, where the INT8 rounding of a good export flips the
    top-1 (PP-LCNet orientation classifier: 93.75% agreement at 39.4 dB over 32 random inputs, 100% on its
    images): there the agreement is reported and SQNR alone gates. On images it gates (negative control)."""
    from edgecnn.export.api import ParityData, measure_parity

    logits = np.array([[1.0, 3.0, 2.5] + [-5.0] * 7])
    flipped = logits.copy()
    flipped[0, 1], flipped[0, 2] = 2.6, 2.7
    kw = {"runtime": "litert", "ref_name": "QDQ ONNX", "min_agreement": 99.5, "min_sqnr": 25.0}
    batches = lambda: iter([np.zeros((1, 3, 8, 8), np.float32)] * 4)  # noqa: E731
    rand = measure_parity(lambda x: [logits], lambda x: [flipped], ParityData(label="r", count=4, batches=batches, images=False), **kw)  # fmt: skip
    assert rand.top1_agreement == 0.0 and rand.ok and "not gated on random inputs" in rand.summary()
    imgs = measure_parity(lambda x: [logits], lambda x: [flipped], ParityData(label="i", count=4, batches=batches), **kw)  # fmt: skip
    assert not imgs.ok and "min 99.5%" in imgs.summary()
    too_noisy = measure_parity(lambda x: [logits], lambda x: [logits * 1.5], ParityData(label="r", count=4, batches=batches, images=False), **kw)  # fmt: skip
    assert not too_noisy.ok  # SQNR still gates random inputs


def test_near_zero_outputs_pass_by_absolute_tolerance_and_large_errors_do_not() -> None:
    """A probability map that is ~1e-5 everywhere on the parity inputs (PP-OCRv5 det on random inputs): an export
    1.8e-7 away from the reference is at 27 dB only because the reference's own Sigmoid is accurate to ~1e-7
    absolute; it passes by the absolute tolerance. Negative controls: the same map off by 0.5 somewhere, and
    outputs that are not near zero (logits of magnitude 20) off by the same absolute amount."""
    from edgecnn.export.api import DEFAULT_ATOL, ParityData, measure_parity

    rng = np.random.default_rng(0)
    pmap = rng.uniform(0.5e-5, 2e-5, (1, 1, 16, 16))
    near = pmap + rng.choice([-1.8e-7, 1.8e-7], pmap.shape)  # ~28 dB
    kw = {"runtime": "litert", "ref_name": "ONNX", "min_agreement": 99.5, "min_sqnr": 40.0}
    data = ParityData(
        label="r", count=2, batches=lambda: iter([np.zeros((1, 3, 16, 16), np.float32)] * 2), images=False
    )
    ok = measure_parity(lambda x: [pmap], lambda x: [near], data, **kw, atol=DEFAULT_ATOL["float32"])
    assert ok.sqnr_db < 40.0 and ok.ok and ok.within_atol and "near zero" in ok.summary()
    assert not measure_parity(lambda x: [pmap], lambda x: [near], data, **kw).ok  # no tolerance: the SQNR floor
    broken = near.copy()
    broken[0, 0, 3, 3] = 0.5
    assert not measure_parity(lambda x: [pmap], lambda x: [broken], data, **kw, atol=DEFAULT_ATOL["float32"]).ok
    logits = pmap * 1e6  # |ref| ~ 20, the same 1.8e-7 error: 100 dB, passes the floor itself
    assert measure_parity(lambda x: [logits], lambda x: [logits + (near - pmap)], data, **kw).ok
    noisy = logits * (1 + rng.uniform(-0.02, 0.02, pmap.shape))  # 2% off: ~34 dB
    big = measure_parity(lambda x: [logits], lambda x: [noisy], data, **kw, atol=DEFAULT_ATOL["float32"])
    assert not big.ok and not big.within_atol


def test_export_parity_uses_the_calibration_images_when_no_eval_set_fits(tmp_path: Path) -> None:
    """A 32x32 RGB classifier of tinted shapes, exported from float with --calib: parity runs on those images,
    not on the bundled digits (which fit its input shape, not its preprocessing)."""
    from tests.test_quantize_real import classifier, shapes, tensors, write_folder

    imgs, labels = shapes(96, seed=7)
    train, calib = write_folder(tmp_path / "train", imgs[:64]), write_folder(tmp_path / "calib", imgs[64:])
    model = save(classifier(tmp_path, tensors(train), labels[:64]), tmp_path / "cls.onnx")
    out, js = tmp_path / "cls.tflite", tmp_path / "e.json"
    r = invoke("export", model, "--calib", calib, "-o", out, "--json", js)
    assert r.exit_code == 0, r.output
    parity = json.loads(js.read_text())["parity"]
    assert parity["data"] == f"images of {calib}" and parity["agreement_gated"] and parity["samples"] == 32


def test_export_parity_on_random_inputs_says_so(tmp_path: Path) -> None:
    """No images fit a 48x48 model: parity runs on random inputs, reports the agreement, gates on SQNR."""
    model = save(conv_model(cin=3, cout=8, k=3, hw=48), tmp_path / "c48.onnx")
    js = tmp_path / "e.json"
    r = invoke("export", model, "-o", tmp_path / "c48.tflite", "--json", js)
    assert r.exit_code == 0, r.output
    parity = json.loads(js.read_text())["parity"]
    assert parity["data"].startswith("random inputs") and not parity["agreement_gated"]


def test_notes_of_one_kind_print_as_one_line() -> None:
    from edgecnn.cli.export import grouped_notes

    gates = [f"constant 'hs.{i}_gate_beta' is quantized to int8 on its own range (scale 0.00196078) for an int8 op" for i in range(28)]  # fmt: skip
    other = ["node 'Add.8' (Add) runs in float (DEQUANTIZE before it): no int8 grid"]
    got = grouped_notes([*gates, *other])
    assert got == [f"{gates[0]} (and 27 more like it; all in --json)", other[0]]
    assert grouped_notes(gates[:3]) == gates[:3]  # a few are printed as they are


def test_parity_does_not_count_a_flip_on_a_near_tie() -> None:
    """A flip whose source margin is within 3x the RMS error of the scores is a near-tie the same rounding noise
    decides either way: reported, not counted (a PP-LCNet orientation export for Ethos-U, 26 dB, flipped one of
    8 images). The other side of the limit: a margin beyond the noise fails (test above)."""
    from edgecnn.export.api import ParityData, measure_parity

    logits = np.array([[1.0, 3.0, 2.999] + [0.0] * 7])
    flipped = logits.copy()
    flipped[0, 2] = 3.001  # margin 0.001, each score off by 0.002 at most
    data = ParityData(label="x", count=4, batches=lambda: iter([np.zeros((1, 3, 8, 8), np.float32)] * 4))
    kw = {"runtime": "litert", "ref_name": "QDQ ONNX", "min_agreement": 99.5, "min_sqnr": 25.0}
    p = measure_parity(lambda x: [logits], lambda x: [flipped], data, **kw)
    assert p.top1_agreement == 0.0 and p.near_ties == 4 and p.ok
    assert "4 near-tie(s) not counted" in p.summary()


def test_target_export_of_a_target_quantized_model_with_a_constant_mul(tmp_path: Path) -> None:
    """`quantize --target ethos-u55` then `export --target ethos-u55`: a Mul by a constant (Paddle's dropout scale)
    has an int8 constant with its own zero point, as TFLite's int8 MUL allows; only filters must be symmetric.
    It was refused as 'asymmetric weights'. Negative control: a Conv whose weights have a zero point is refused."""
    from onnx import numpy_helper

    from edgecnn.errors import BadInputError
    from edgecnn.export.api import check_scheme
    from edgecnn.quantize.params import resolve_scheme
    from tests.test_quantize_real import classifier, shapes, tensors, write_folder

    imgs, labels = shapes(96, seed=8)
    train, calib = write_folder(tmp_path / "train", imgs[:64]), write_folder(tmp_path / "calib", imgs[64:])
    m = classifier(tmp_path, tensors(train), labels[:64])
    fc = next(n for n in m.graph.node if n.op_type == "Gemm")
    fc.input[0] = "feat_scaled"
    m.graph.initializer.append(numpy_helper.from_array(np.array(0.9, np.float32), "keep"))
    m.graph.node.insert(list(m.graph.node).index(fc), helper.make_node("Mul", ["feat", "keep"], ["feat_scaled"], name="dropout_scale"))  # fmt: skip
    model, q = save(m, tmp_path / "cls.onnx"), tmp_path / "u55.onnx"
    r = invoke("quantize", model, "--calib", calib, "--target", "ethos-u55", "-o", q)
    assert r.exit_code == 0, r.output
    r = invoke("export", q, "--target", "ethos-u55", "-o", tmp_path / "u55.tflite", "--data", calib)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "u55_vela.tflite").is_file()
    qm = onnx.load(str(q))
    dq_of_w = next(n for n in qm.graph.node if n.op_type == "DequantizeLinear" and n.output[0] == "w1_conv1_dq")
    zp = next(t for t in qm.graph.initializer if t.name == dq_of_w.input[2])
    zp.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(zp) + np.int8(3), zp.name))
    with pytest.raises(BadInputError, match="asymmetric weights"):
        check_scheme(qm, resolve_scheme("ethos-u55", "ort"), "ethos-u55")


def test_litert_runner_leaves_dynamic_output_dims_to_parity(tmp_path: Path) -> None:
    """PP-OCRv4 rec declares its output [N, T, 6625] and shape inference cannot give T at a fixed input shape:
    the runner got (0, 0, 6625) and raised ValueError reshaping to it. A dynamic (0) dimension is now left to
    measure_parity, which reshapes to the reference's output; a static shape is still applied."""
    from edgecnn.export.api import litert_runner

    src, tfl = save(conv_model(cin=3, cout=8, k=3, hw=16), tmp_path / "c.onnx"), tmp_path / "c.tflite"
    assert invoke("export", src, "-o", tfl, "--no-parity").exit_code == 0
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    (dyn,) = litert_runner(tfl, 1, [(0, 8, 16, 0)])(x)
    (fixed,) = litert_runner(tfl, 1, [(1, 8, 16, 16)])(x)
    assert dyn.size == fixed.size == 8 * 16 * 16 and fixed.shape == (1, 8, 16, 16)


def test_parity_against_the_float_model_the_source_came_from() -> None:
    """Two correct INT8 implementations of a deep model differ by their rounding (PP-OCRv4 rec for Ethos-U: 18.1 dB
    between the TFLite and its QDQ source, 12.8 and 13.7 dB against the float model). With the float model, an
    export as close to it as the source (within 1 dB) passes; one further away fails on the SQNR floor."""
    from edgecnn.export.api import ParityData, measure_parity

    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((1, 64)).astype(np.float32) for _ in range(8)]
    noise = {id(x): (rng.standard_normal((1, 64)) * 0.2, rng.standard_normal((1, 64)) * 0.2) for x in xs}
    data = ParityData(label="x", count=8, batches=lambda: iter(xs))
    kw = {"runtime": "litert", "ref_name": "QDQ ONNX", "min_agreement": 0.0, "min_sqnr": 25.0}
    source = lambda x: [x + noise[id(x)][0]]  # noqa: E731
    close = lambda x: [x + noise[id(x)][1]]  # noqa: E731  as far from float as the source
    far = lambda x: [x + 3 * noise[id(x)][1]]  # noqa: E731  9.5 dB further
    float_model = lambda x: [x]  # noqa: E731
    ok = measure_parity(source, close, data, **kw, float_model=float_model)
    assert ok.sqnr_db < 25 and ok.ok and abs(ok.float_sqnr_db - ok.source_float_sqnr_db) < 1
    bad = measure_parity(source, far, data, **kw, float_model=float_model)
    assert not bad.ok and bad.float_sqnr_db < bad.source_float_sqnr_db - 5
    assert not measure_parity(source, close, data, **kw).ok  # without the float model: the floor alone
    # top-1: a decisive flip against the source passes when the export matches the float model's class as often
    logits = np.array([[1.0, 3.0, 0.0] + [-5.0] * 7])
    other = np.array([[0.0, 0.9, 1.0] + [-5.0] * 7])  # a margin of 3 against an RMS error of 0.8: not a near-tie
    one = ParityData(label="x", count=1, batches=lambda: iter([xs[0]]))
    kw1 = {**kw, "min_agreement": 99.5, "min_sqnr": -100.0}
    assert not measure_parity(lambda x: [logits], lambda x: [other], one, **kw1).ok  # no float model: a flip fails
    assert measure_parity(lambda x: [logits], lambda x: [other], one, **kw1, float_model=lambda x: [other]).ok
    assert measure_parity(
        lambda x: [logits], lambda x: [other], one, **kw1, float_model=lambda x: [logits]
    ).ok  # one image
    two = ParityData(label="x", count=2, batches=lambda: iter(xs[:2]))
    missed = measure_parity(lambda x: [logits], lambda x: [other], two, **kw1, float_model=lambda x: [logits])
    assert not missed.ok and missed.float_top1_agreement == 0.0 and missed.source_float_top1_agreement == 100.0


def test_export_that_quantizes_first_judges_parity_against_the_float_model(tmp_path: Path) -> None:
    js = tmp_path / "e.json"
    r = invoke("export", SAMPLE_MODEL, "--calib", CALIB_DIR, "--samples", "32", "-o", tmp_path / "q.tflite", "--parity-samples", "64", "--json", js)  # fmt: skip
    assert r.exit_code == 0, r.output
    p = json.loads(js.read_text())["parity"]
    assert p["float_sqnr_db"] > 20 and p["source_float_sqnr_db"] > 20 and "vs float model" in r.output
    assert p["float_top1_agreement"] > 95 and "top-1 as float" in r.output


def test_export_for_a_target_quantizes_every_op_it_can(tmp_path: Path) -> None:
    """`export FLOAT.onnx --calib DIR --target ethos-u55` quantizes as `quantize --target` does: ORT's placement
    left the last HardSwish (before GAP, a dropout-scale Mul and the classifier) in float, and Vela refused the
    file ("Failed to parse TFLite file": HARD_SWISH IFM FLOAT32) on PP-LCNet."""
    from onnx import numpy_helper

    from tests.test_quantize_real import shapes, write_folder

    imgs, _ = shapes(32, seed=9)
    calib = write_folder(tmp_path / "calib", imgs)
    rng = np.random.default_rng(0)
    inits = {"w": (rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32), "k": np.array(0.8, np.float32),
             "fc": (rng.standard_normal((8, 4)) * 0.3).astype(np.float32), "fb": np.zeros(4, np.float32)}  # fmt: skip
    inits["w2"] = (rng.standard_normal((8, 8, 1, 1)) * 0.3).astype(np.float32)
    nodes = [  # PP-LCNet's head: GAP, 1x1 conv, HardSwish, dropout scale, flatten, classifier
        helper.make_node("Conv", ["input", "w"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1] * 4),
        helper.make_node("GlobalAveragePool", ["c"], ["g"], name="gap"),
        helper.make_node("Conv", ["g", "w2"], ["c2"], name="last_conv", kernel_shape=[1, 1]),
        helper.make_node("HardSwish", ["c2"], ["h"], name="hswish"),
        helper.make_node("Mul", ["h", "k"], ["d"], name="dropout_scale"),
        helper.make_node("Flatten", ["d"], ["f"], name="flat"),
        helper.make_node("MatMul", ["f", "fc"], ["m"], name="fc"),
        helper.make_node("Add", ["m", "fb"], ["logits"], name="bias"),
    ]
    model = save(
        make_model(nodes, [("input", [1, 3, 32, 32])], [("logits", None)], inits, opset=14), tmp_path / "l.onnx"
    )
    del numpy_helper
    r = invoke("export", model, "--calib", calib, "--target", "ethos-u55", "-o", tmp_path / "l.tflite", "--no-parity")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "l_vela.tflite").is_file()
