"""`edgecnn profile -r litert`: per-op times (each op of the .tflite run alone with the session's delegate,
scaled to the whole model), mapped back to ONNX nodes through the tensor names edgecnn's converter keeps,
adding up to bench's latency for the same .tflite; what XNNPACK took and did not take; int8 islands."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np
import pytest
from onnx import helper

from edgecnn.export.to_tflite import onnx_to_tflite
from edgecnn.graph.load import load_model
from edgecnn.profile.core import Origin, profile_model
from edgecnn.runtimes.litert import one_op_models
from tests.cli_helpers import assert_one_line_error, invoke, run_cli
from tests.conftest import CALIB_DIR, SAMPLE_MODEL
from tests.onnx_builders import make_model, rng_w, save
from tests.timing import HI, LO, profile_vs_bench

pytest.importorskip("ai_edge_litert")  # installed here and in CI; the import guard only names the dependency


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ceilings")


@pytest.fixture(scope="module")
def sample_tflite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    loaded = load_model(SAMPLE_MODEL)
    out = tmp_path_factory.mktemp("tfl") / "sample_cnn.tflite"
    out.write_bytes(onnx_to_tflite(loaded.model, base_dir=loaded.path.parent).data)
    return out


def _gather_model(tmp: Path, *, gather: bool) -> Path:
    """MatMul -> [Gather] -> Relu: XNNPACK takes FULLY_CONNECTED and RELU but not GATHER."""
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm")]
    inits = {"w": rng_w(64, 64)}
    if gather:
        nodes.append(helper.make_node("Gather", ["h", "idx"], ["g"], name="gather", axis=1))
        inits["idx"] = np.arange(0, 64, 8).astype(np.int64)
    nodes.append(helper.make_node("Relu", ["g" if gather else "h"], ["y"], name="relu"))
    m = make_model(nodes, [("x", [1, 64])], [("y", [1, 8 if gather else 64])], inits)
    return save(m, tmp / f"gather_{gather}.onnx")


def test_one_op_models_cut_the_file_op_by_op(sample_tflite: Path) -> None:
    ops = one_op_models(sample_tflite.read_bytes())
    assert [o.builtin for o in ops][:3] == ["CONV_2D", "PAD", "DEPTHWISE_CONV_2D"] and len(ops) == 16
    assert ops[-1].outputs == ("logits",) and all(o.data[4:8] == b"TFL3" for o in ops)


def test_bundled_model_ops_map_to_onnx_nodes(cache: Path) -> None:
    rep = profile_model(SAMPLE_MODEL, "litert", threads=1, runs=40, cache_dir=cache)
    convs = [r for r in rep.layers if r.runtime_op in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    assert len(convs) == 9 and all("Conv" in r.onnx_ops and "BatchNormalization" in r.onnx_ops for r in convs)
    assert all(r.kernel_type.endswith("(XNNPACK)") and r.precision == "fp32" for r in rep.layers)
    pads = [r for r in rep.layers if r.runtime_op == "PAD"]
    assert len(pads) == 2 and all(r.origin is Origin.INSERTED for r in pads)  # explicit padding from the converter
    assert not [r for r in rep.layers if r.origin is Origin.UNMAPPED]
    assert any("TfLiteXNNPackDelegate" in n and "16 of 16 ops" in n for n in rep.notes)
    assert any("no op profiler" in n for n in rep.notes)
    assert "XNNPACK took all 16 op(s)." in rep.findings
    assert any("ONNX->TFLite conversion inserted 2 PAD" in f for f in rep.findings)


def test_layer_times_add_up_to_bench_on_the_tflite_export(sample_tflite: Path, cache: Path) -> None:
    """The .tflite export of the bundled model: op p50s + the fixed cost per call add up to what bench's worker
    measures for the same file and threads, each side's quietest round compared (tests/timing.py), within the
    same 0.75-1.33 band as tests/test_profile.py: on a loaded machine the rounds ranged 33-54 us. Alone, each op
    runs with cold caches and the raw op sum is about twice the model's time (scale 0.5-0.66), which would fail.
    The 10% goal is measured by benchmarks/profile_accuracy.py."""
    ratio, pairs, scales, res = profile_vs_bench(sample_tflite, "litert", cache, runs=150, warmup=50, iterations=300)
    assert LO <= ratio <= HI, (ratio, [(round(p, 1), round(b, 1)) for p, b in pairs])
    # negative control: the raw op sum is off by more than the band allows (it failed as ratio / scale > HI
    # when a loaded round put the ratio at 0.81: the control then tested the noise, not the correction)
    assert statistics.median(scales) < LO, scales
    assert res["timed_call"] == "InterpreterWrapper.Invoke"


def test_ops_xnnpack_did_not_take_are_named(cache: Path, tmp_path: Path) -> None:
    rep = profile_model(_gather_model(tmp_path, gather=True), "litert", threads=1, runs=20, cache_dir=cache)
    g = next(r for r in rep.layers if r.runtime_op == "GATHER")
    assert g.kernel_type == "GATHER (builtin)" and g.members == ("gather",)
    assert any(f.startswith("XNNPACK did not take 1 op(s) (GATHER;") for f in rep.findings), rep.findings
    assert any("inside 2 TfLiteXNNPackDelegate node(s)" in n for n in rep.notes)  # GATHER splits the partition
    # negative control: without the Gather, XNNPACK takes everything in one partition
    ok = profile_model(_gather_model(tmp_path, gather=False), "litert", threads=1, runs=20, cache_dir=cache)
    assert "XNNPACK took all 1 op(s)." in ok.findings  # Relu fused into FULLY_CONNECTED
    assert any("inside 1 TfLiteXNNPackDelegate node(s)" in n for n in ok.notes)


def test_int8_islands_and_float_ops_said(cache: Path, tmp_path: Path) -> None:
    int8 = tmp_path / "sample_int8.onnx"
    assert run_cli("quantize", SAMPLE_MODEL, "--calib", CALIB_DIR, "-o", int8).returncode == 0
    rep = profile_model(int8, "litert", threads=1, runs=30, cache_dir=cache)
    convs = [r for r in rep.layers if r.runtime_op in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    assert convs and {r.precision for r in convs} == {"int8"}
    assert any("QUANTIZE/DEQUANTIZE op(s) ran on their own" in f for f in rep.findings), rep.findings
    fc = next(r for r in rep.layers if r.runtime_op == "FULLY_CONNECTED")
    assert fc.precision == "fp32"  # edgecnn's quantizer leaves the final Gemm's output float
    assert any("ran in float in this int8 model (FULLY_CONNECTED" in f for f in rep.findings), rep.findings
    # negative control: the float model has no Q/DQ ops and no "float in int8" sentence
    fp = profile_model(SAMPLE_MODEL, "litert", threads=1, runs=20, cache_dir=cache)
    assert not any("QUANTIZE" in f or "in this int8 model" in f for f in fp.findings)
    # the same reasons reach bench --compare's verdict on LiteRT
    from edgecnn.profile.compare import explain_slower

    why = explain_slower(SAMPLE_MODEL, int8, "litert", threads=1)
    assert any("QUANTIZE/DEQUANTIZE op(s) ran on their own" in w for w in why), why
    assert not any("QUANTIZE" in w for w in explain_slower(SAMPLE_MODEL, SAMPLE_MODEL, "litert", threads=1))


def test_tflite_cli_with_and_without_its_onnx(sample_tflite: Path, cache: Path, tmp_path: Path) -> None:
    js = tmp_path / "p.json"
    args = ["--threads", "1", "-n", "20", "--cache-dir", cache]
    res = invoke("profile", sample_tflite, "-r", "litert", *args, "--onnx", SAMPLE_MODEL, "--json", js)
    assert res.exit_code == 0, res.output
    rep = json.loads(js.read_text())["profile"]
    assert rep["runtime"] == "litert" and not [r for r in rep["layers"] if r["origin"] == "unmapped"]
    assert any(r["macs"] > 0 for r in rep["layers"])
    # without the ONNX source: the ops keep their TFLite names, and the report says how to map them
    res = invoke("profile", sample_tflite, "-r", "litert", *args)
    assert res.exit_code == 0, res.output
    flat = " ".join(res.output.split())
    assert "could not be mapped to ONNX nodes" in flat and "--onnx SOURCE.onnx" in flat
    assert_one_line_error(invoke("profile", sample_tflite, "-r", "ort"), 2, "sample_cnn.tflite", "--runtime litert")
    res = invoke("profile", SAMPLE_MODEL, "-r", "litert", "--onnx", SAMPLE_MODEL)
    assert_one_line_error(res, 2, "--onnx", "only for a .tflite")


def test_compare_two_tflite_files_op_by_op(sample_tflite: Path, cache: Path, tmp_path: Path) -> None:
    """`profile --compare` on two .tflite exports (float and int8): ops matched by their names (edgecnn's
    converter names each op after its ONNX tensor), precisions from the files; an ONNX/.tflite mix or
    different inputs is exit 2 with the reason."""
    int8_onnx = tmp_path / "int8.onnx"
    assert run_cli("quantize", SAMPLE_MODEL, "--calib", CALIB_DIR, "-o", int8_onnx).returncode == 0
    int8 = tmp_path / "sample_int8.tflite"
    loaded = load_model(int8_onnx)
    int8.write_bytes(onnx_to_tflite(loaded.model, base_dir=loaded.path.parent).data)
    js = tmp_path / "c.json"
    res = invoke("profile", sample_tflite, "-r", "litert", "--threads", "1", "-n", "20", "--cache-dir", cache,
                 "--compare", int8, "--json", js)  # fmt: skip
    assert res.exit_code == 0, res.output
    cmp = json.loads(js.read_text())["compare"]
    compute = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}
    ops = [r for r in cmp["base"]["layers"] if r["runtime_op"] in compute]
    assert sorted(r["layer"] for r in cmp["rows"]) == sorted(r["kernel"] for r in ops)  # every compute op matched
    assert {r["base_precision"] for r in cmp["rows"]} == {"fp32"} and "int8" in {
        r["other_precision"] for r in cmp["rows"]
    }
    text = " ".join(cmp["sentences"])
    assert "sample_int8 is" in text and "than sample_cnn on litert" in text
    floats = [r["layer"] for r in cmp["rows"] if r["other_precision"] == "fp32"]
    assert ("dequantized before it" in text) == bool(floats), text  # the last FC of a QDQ model stays float
    # bad input: a .tflite against an ONNX model, and two .tflite files with different inputs
    res = invoke("profile", sample_tflite, "-r", "litert", "--compare", SAMPLE_MODEL)
    assert_one_line_error(res, 2, "--compare", "one model is .tflite and the other ONNX")
    other = tmp_path / "gather.tflite"
    g = load_model(_gather_model(tmp_path, gather=False))
    other.write_bytes(onnx_to_tflite(g.model, base_dir=g.path.parent).data)
    res = invoke("profile", sample_tflite, "-r", "litert", "--compare", other)
    assert_one_line_error(res, 2, f"--compare {other}", "differ", "same input names and shapes")
