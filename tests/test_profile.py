"""`edgecnn profile`: per-layer times from the runtimes' own profilers, mapped to ONNX nodes, adding up to
bench's end-to-end latency; what the runtime executed (INT8 layers left in float and why, inserted
conversions, the bf16 default); --compare; the bench --compare hook; bad input."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import onnx
import pytest

from edgecnn.profile.ceilings import conv_model
from edgecnn.profile.core import Origin, profile_model
from edgecnn.profile.mapping import KernelNames, map_kernels
from edgecnn.report.plots import plots_available
from tests.cli_helpers import assert_one_line_error, invoke, run_cli
from tests.conftest import CALIB_DIR, SAMPLE_MODEL
from tests.onnx_builders import make_model, rng_w, save, small_cnn
from tests.timing import HI, LO, profile_vs_bench

RUNTIMES = ("ort", "openvino")


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ceilings cache for the module: each runtime's micro-benchmarks run once."""
    return tmp_path_factory.mktemp("ceilings")


@pytest.fixture(scope="module")
def int8_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("q") / "sample_int8.onnx"
    res = run_cli("quantize", SAMPLE_MODEL, "--calib", CALIB_DIR, "-o", out)
    assert res.returncode == 0, res.stderr
    return out


def _qdq_conv(folder: Path, *, requantize: bool) -> Path:
    """The QDQ conv (uint8 activations, int8 per-channel weights); without the QuantizeLinear after it, no
    integer kernel can write its output, so ONNX Runtime runs the Conv in float."""
    path, _ = conv_model(folder / f"qdq_{requantize}.onnx", int8=True, c=16, hw=16)
    if requantize:
        return path
    m = onnx.load(str(path))
    keep = [n for n in m.graph.node if n.name not in ("q_out", "dq_out")]
    for n in keep:
        if n.name == "conv":
            n.output[0] = "y"
    del m.graph.node[:]
    m.graph.node.extend(keep)
    onnx.save(m, str(path))
    return path


# -- mapping ------------------------------------------------------------------------------------------------
def test_mapping_follows_both_runtimes_naming() -> None:
    g = small_cnn().graph
    # ONNX Runtime: NCHWc kernels named after the tensor they write, Conv+BN+Relu(+Add) fused, a reorder added.
    ort = [
        KernelNames(key="a", names=("r0_nchwc",)),
        KernelNames(key="b", names=("r1_nchwc",)),
        KernelNames(key="c", names=("pw_nchwc",)),
        KernelNames(key="d", names=("ReorderOutput",)),
        KernelNames(key="e", names=("gap",)),
        KernelNames(key="f", names=("fc",)),
    ]
    m = map_kernels(g, ort)
    assert m.members["a"] == ("stem", "stem_bn", "stem_relu")
    assert m.members["b"] == ("dw", "dw_relu")
    assert m.members["c"] == ("pw", "residual", "res_relu")  # Add and Relu fused after the conv
    assert m.unmapped_kernels == ("d",)
    assert set(m.members["e"]) == {"gap"} and m.members["f"] == ("flatten", "fc")
    # OpenVINO: the primary layer renamed, the fused ones listed.
    ov = [
        KernelNames(key="Multiply_1", names=("Multiply_1", "stem_bn", "stem_relu")),
        KernelNames(key="x", names=("dw", "dw_relu")),
        KernelNames(key="y", names=("pw", "residual", "res_relu")),
        KernelNames(key="logits", names=("logits",)),  # named after the output tensor
    ]
    m = map_kernels(g, ov)
    assert m.members["Multiply_1"] == ("stem", "stem_bn", "stem_relu")
    assert "fc" in m.members["logits"]
    # A name that matches nothing maps to nothing (negative control).
    assert map_kernels(g, [KernelNames(key="z", names=("no_such_layer",))]).unmapped_kernels == ("z",)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_bundled_model_every_conv_in_one_kernel(runtime: str, cache: Path) -> None:
    rep = profile_model(SAMPLE_MODEL, runtime, threads=1, runs=50, cache_dir=cache)
    convs = [n.name for n in onnx.load(str(SAMPLE_MODEL)).graph.node if n.op_type == "Conv"]
    owners = {c: [r.kernel for r in rep.layers if c in r.members] for c in convs}
    assert all(len(v) == 1 for v in owners.values()), owners
    fused = [r for r in rep.layers if "Conv" in r.onnx_ops and "BatchNormalization" in r.onnx_ops]
    assert len(fused) == len(convs)  # BN folded into every conv kernel, and the table lists it
    assert not [r for r in rep.layers if r.origin is Origin.UNMAPPED and r.p50_us > 0]
    assert all(
        r.runtime_op in ("Reorder", "ReorderInput", "ReorderOutput") for r in rep.layers if r.origin is Origin.INSERTED
    )
    assert {r.precision for r in rep.layers if "Conv" in r.onnx_ops} == {"fp32"}
    conv = next(r for r in rep.layers if "Conv" in r.onnx_ops)
    assert conv.macs > 0 and conv.bytes > 0 and conv.gmacs > 0 and conv.bound.value in ("compute", "memory")
    assert rep.ceilings.bandwidth_gbs > 0 and rep.ceilings.gmacs["fp32"] > 0 and rep.ceilings.gmacs["int8"] > 0


# -- accuracy -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_layer_times_add_up_to_bench(runtime: str, cache: Path) -> None:
    """Per-layer p50s + the runtime's fixed cost per call add up to what bench's worker measures for the same
    model and threads, in the same process: rounds alternate which of the two runs first, and each side's
    quietest round is compared (tests/timing.py). The band is 0.75-1.33: the ~50 us bundled model's round
    medians moved 40-96 us on shared machines, and a 2-core CI run had no bench round under 58 us against 51
    for the profile (0.87). Unscaled kernel times, about twice the model's time on ORT (scale 0.45), still fail.
    How close the two are (goal 10%) is measured in fresh processes by benchmarks/profile_accuracy.py."""
    # the first round warms both paths (its profile ran cold: 31 us against 40 on a CI run) and is not counted
    quiet, pairs, scales, res = profile_vs_bench(
        SAMPLE_MODEL, runtime, cache, runs=100, warmup=200, iterations=200, warm=True
    )
    assert LO <= quiet <= HI, (quiet, [(round(p, 1), round(b, 1)) for p, b in pairs])
    if runtime == "ort":  # negative control: ORT's raw kernel times alone are off by more than the band allows
        assert statistics.median(scales) < LO, scales
    assert res["timer_resolution_ns"] > 0 and res["timer_empty_call_ns"] >= res["timer_resolution_ns"]


def test_ort_profiler_raw_times_match_end_to_end_on_a_real_conv(cache: Path, tmp_path: Path) -> None:
    """Where kernels dominate (a 1.5 ms conv), ONNX Runtime's own kernel times -- unscaled -- nearly add up
    to the measured end-to-end latency minus the fixed cost per call: the scale applied stays near 1
    (1.09-1.12 on the 2-core VM this was written on; a 15% bound for noisy CI machines)."""
    path, _ = conv_model(tmp_path / "conv.onnx", int8=False, c=64, hw=56)
    scales = [profile_model(path, "ort", threads=1, runs=40, warmup=5, cache_dir=cache).scale for _ in range(3)]
    assert 0.85 <= statistics.median(scales) <= 1.15, scales


# -- what the runtime executed --------------------------------------------------------------------------------
def test_int8_conv_left_in_float_is_named_with_its_reason(cache: Path, tmp_path: Path) -> None:
    bad = profile_model(_qdq_conv(tmp_path, requantize=False), "ort", threads=1, runs=30, cache_dir=cache)
    conv = next(r for r in bad.layers if "Conv" in r.onnx_ops)
    assert conv.precision == "fp32"
    text = " ".join(bad.findings)
    assert "1 of 1 Conv layers ran in FP32" in text and "write float outputs" in text
    good = profile_model(_qdq_conv(tmp_path, requantize=True), "ort", threads=1, runs=30, cache_dir=cache)
    conv = next(r for r in good.layers if "Conv" in r.onnx_ops)
    assert conv.precision == "int8" and conv.runtime_op == "QLinearConv"
    assert any("ran as integer kernels" in f for f in good.findings)
    assert not any("ran in FP32" in f for f in good.findings)


def test_fp16_model_on_cpu_said(cache: Path, tmp_path: Path) -> None:
    fp16 = tmp_path / "fp16.onnx"
    res = run_cli("quantize", SAMPLE_MODEL, "--precision", "fp16", "-o", fp16)
    assert res.returncode == 0, res.stderr
    rep = profile_model(fp16, "ort", threads=1, runs=30, cache_dir=cache)
    said = [f for f in rep.findings if f.startswith("FP16 model:")]
    assert said and "ran in FP32" in said[0] and "InsertedPrecisionFreeCast_" in said[0]
    convs = [r for r in rep.layers if "Conv" in r.onnx_ops]
    n_conv = sum(n.op_type == "Conv" for n in onnx.load(str(SAMPLE_MODEL)).graph.node)
    assert len(convs) == n_conv and {r.precision for r in convs} == {"fp32"}  # mapped through ORT's renaming
    assert any(set(r.onnx_ops) == {"Cast"} for r in rep.layers)  # the writer's boundary casts, with their cost
    fp32 = profile_model(SAMPLE_MODEL, "ort", threads=1, runs=30, cache_dir=cache)
    assert not any(f.startswith("FP16 model:") for f in fp32.findings)


def test_openvino_precision_and_bf16_default_said(cache: Path) -> None:
    from edgecnn.runtimes.openvino import default_cpu_precision

    rep = profile_model(SAMPLE_MODEL, "openvino", threads=1, runs=30, cache_dir=cache, ov_precision="default")
    default = default_cpu_precision()
    assert rep.precision_default == ("bf16" if default == "bf16" else rep.precision_default)
    convs = [r for r in rep.layers if "Conv" in r.onnx_ops]
    said = any("ran this FP32 model in bf16" in f for f in rep.findings)
    if default == "bf16":  # AMX / AVX512-BF16 CPUs: the runtime's own default is bf16, and the report says so
        assert rep.precision_used == "bf16" and {r.precision for r in convs} == {"bf16"} and said
        assert "bf16" in rep.ceilings.gmacs
    else:
        assert not said
    f32 = profile_model(SAMPLE_MODEL, "openvino", threads=1, runs=30, cache_dir=cache)
    assert {r.precision for r in f32.layers if "Conv" in r.onnx_ops} == {"fp32"}
    assert not any("ran this FP32 model in bf16" in f for f in f32.findings)


def test_preprocessing_share_timed_through_the_spec(cache: Path) -> None:
    rep = profile_model(SAMPLE_MODEL, "ort", threads=1, runs=30, cache_dir=cache, images=CALIB_DIR)
    p = rep.preprocess
    assert p is not None and p.images > 0 and p.decode_us > 0 and p.transform_us > 0
    assert 0 < p.share < 1 and p.per_batch_us == pytest.approx(p.decode_us + p.transform_us)


# -- compare and the bench hook -------------------------------------------------------------------------------
def test_compare_fp32_int8_layer_by_layer(cache: Path, int8_model: Path, tmp_path: Path) -> None:
    js, png = tmp_path / "p.json", tmp_path / "roof.png"
    res = invoke("profile", SAMPLE_MODEL, "-r", "ort", "--threads", "1", "-n", "50", "--compare", int8_model,
                 "--cache-dir", cache, "--json", js, "--plot", png)  # fmt: skip
    assert res.exit_code == 0, res.output
    data = json.loads(js.read_text())
    assert data["schema_version"] == 1 and data["kind"] == "profile"
    rows = data["compare"]["rows"]
    convs = [n.name for n in onnx.load(str(SAMPLE_MODEL)).graph.node if n.op_type in ("Conv", "Gemm")]
    assert sorted(r["layer"] for r in rows) == sorted(convs)  # every compute layer matched by its ONNX name
    assert {(r["base_precision"], r["other_precision"]) for r in rows} == {("fp32", "int8")}
    assert any("matched compute layers ran as integer kernels" in s for s in data["compare"]["sentences"])
    assert "layer by layer" in res.output and "Where the time goes" in res.output
    # measured in alternating rounds (4 by default), 50 profiled runs split over them
    for side in ("base", "other"):
        assert len(data["compare"][side]["round_p50_us"]) == 4
        assert all(v > 0 for v in data["compare"][side]["round_p50_us"])
    assert "over 4 alternating rounds" in data["compare"]["sentences"][0]
    if plots_available():
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_names_why_onnxruntimes_own_int8_is_slower(cache: Path, tmp_path: Path) -> None:
    """ONNX Runtime's quantize_static with its defaults (QDQ, int8 activations, no BN folding) on the bundled
    model: --compare names the float convs and the reasons, the standalone BatchNorms and conversions."""
    from onnxruntime.quantization import QuantFormat, quantize_static

    from benchmarks.common import ort_reader

    ortq = tmp_path / "ort_int8.onnx"
    reader = ort_reader(CALIB_DIR, 16, CALIB_DIR.parent / "preprocess.toml")
    quantize_static(str(SAMPLE_MODEL), str(ortq), reader, quant_format=QuantFormat.QDQ)
    from edgecnn.profile.compare import compare_profiles

    base = profile_model(SAMPLE_MODEL, "ort", threads=1, runs=40, cache_dir=cache)
    other = profile_model(ortq, "ort", threads=1, runs=40, cache_dir=cache)
    text = " ".join(compare_profiles(base, other).sentences)
    assert "matched compute layers (Conv) ran in FP32 in ort_int8" in text and "int8 (signed) activations" in text
    assert "BatchNormalization layer(s) ran on their own" in text
    assert "Q/DQ conversions (standalone) cost" in text


def test_readme_command_as_a_subprocess(cache: Path) -> None:
    res = run_cli("profile", "models/sample_cnn.onnx", "-r", "ort", "--threads", "1", "-n", "50", "--cache-dir", cache)
    assert res.returncode == 0, res.stderr
    for word in ("Per layer", "/0/0.0/Conv", "Where the time goes", "timer resolution", "ceilings"):
        assert word in res.stdout, word
    assert "Traceback" not in res.stderr


def test_bench_compare_verdict_gets_the_reasons(cache: Path, tmp_path: Path) -> None:
    from edgecnn.bench import run_bench
    from edgecnn.bench.compare import compare_results

    base = run_bench(_qdq_conv(tmp_path, requantize=True), "ort", threads=1, iterations=30, warmup=2)
    slow = run_bench(_qdq_conv(tmp_path, requantize=False), "ort", threads=1, iterations=30, warmup=2)
    (c,) = compare_results([base, base.__class__(**{**base.__dict__, "model": slow.model, "model_name": "float_conv"})])
    assert c.reasons and "ran in FP32" in c.reasons[0] and "Why:" in c.verdict  # speed-up 1.0: not faster
    (c,) = compare_results([base, base], explain=None)
    assert not c.reasons and "Why:" not in c.verdict


# -- bad input ---------------------------------------------------------------------------------------------
def test_runtime_without_profiling_support(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every runtime edgecnn registers today has per-layer profiling; a registered runtime that is not in
    PROFILED_RUNTIMES (here the real LiteRT adapter under a second name) gets exit 3 and the ones that do."""
    from edgecnn.runtimes import RUNTIMES

    monkeypatch.setitem(RUNTIMES, "litert-npu", RUNTIMES["litert"])
    res = invoke("profile", SAMPLE_MODEL, "-r", "litert-npu")
    assert_one_line_error(res, 3, "--runtime litert-npu", "no per-layer profiling", "--runtime ort", "litert")
    res = invoke("profile", SAMPLE_MODEL, "-r", "tensorrt")
    assert_one_line_error(res, 2, "'tensorrt'", "ort, openvino, litert")


def _mlp(names: list[str]) -> onnx.ModelProto:
    nodes = [
        onnx.helper.make_node("MatMul", ["x", "w0"], ["h0"], name=names[0]),
        onnx.helper.make_node("Tanh", ["h0"], ["h1"], name=names[1]),
        onnx.helper.make_node("MatMul", ["h1", "w1"], ["h2"], name=names[2]),
        onnx.helper.make_node("Sigmoid", ["h2"], ["y"], name=names[3]),
    ]
    return make_model(nodes, [("x", [4, 64])], [("y", [4, 64])], {"w0": rng_w(64, 64), "w1": rng_w(64, 64, seed=1)})


def test_unmappable_names_still_profiled_with_runtime_names(cache: Path, tmp_path: Path) -> None:
    """Nodes without names (ONNX allows it): ONNX Runtime makes up its own ("MatMul_0"), which edgecnn does not
    guess back; the table still shows every kernel under ORT's name, and the report says so."""
    path = save(_mlp(["", "", "", ""]), tmp_path / "noname.onnx")
    js = tmp_path / "noname.json"
    res = invoke("profile", path, "-r", "ort", "--threads", "1", "-n", "20", "--cache-dir", cache, "--json", js)
    assert res.exit_code == 0, res.output
    rep = json.loads(js.read_text())["profile"]
    executed = [r for r in rep["layers"] if r["executed"]]
    assert len(executed) == 4 and all(r["origin"] == "unmapped" and r["p50_us"] >= 0 for r in executed)
    assert {r["runtime_op"] for r in executed} == {"MatMul", "Tanh", "Sigmoid"}
    assert any("could not be mapped to ONNX nodes" in n and "ort's own names" in n for n in rep["notes"])
    assert "could not be mapped" in " ".join(res.output.split())
    # negative control: the same graph with names maps completely
    ok = profile_model(
        save(_mlp(["a", "b", "c", "d"]), tmp_path / "named.onnx"), "ort", threads=1, runs=20, cache_dir=cache
    )
    assert not any("could not be mapped" in n for n in ok.notes)
    assert [r.members for r in ok.layers if r.executed] == [("a",), ("b",), ("c",), ("d",)]


def test_compare_with_different_inputs(tmp_path: Path) -> None:
    other = save(small_cnn(), tmp_path / "other.onnx")  # 1x3x16x16 'x' vs the bundled 1x3x32x32 'input'
    res = invoke("profile", SAMPLE_MODEL, "--compare", other)
    assert_one_line_error(res, 2, f"--compare {other}", "differ", "1x3x32x32", "same input names and shapes")


def test_bad_numbers_and_paths(tmp_path: Path) -> None:
    assert_one_line_error(invoke("profile", SAMPLE_MODEL, "-n", "0"), 2, "--runs 0")
    assert_one_line_error(invoke("profile", SAMPLE_MODEL, "--compare", SAMPLE_MODEL, "--rounds", "0"), 2, "--rounds 0")
    assert_one_line_error(invoke("profile", SAMPLE_MODEL, "--threads", "0"), 2, "--threads 0")
    assert_one_line_error(invoke("profile", tmp_path / "missing.onnx"), 2, "missing.onnx")
    assert_one_line_error(invoke("profile", SAMPLE_MODEL, "--json", tmp_path / "no" / "p.json"), 2, "does not exist")
    assert_one_line_error(invoke("profile", SAMPLE_MODEL, "-r", "openvino", "--ov-precision", "f8"), 2, "f32, bf16")
    assert_one_line_error(
        invoke("profile", SAMPLE_MODEL, "--input", tmp_path / "nope"), 2, "--input", "not a directory"
    )
    spec224 = SAMPLE_MODEL.parents[1] / "benchmarks" / "preprocess_224.toml"
    res = invoke("profile", SAMPLE_MODEL, "--input", CALIB_DIR, "--preprocess", spec224)
    assert_one_line_error(res, 2, "spec 224x224, model 32x32")
    assert not list(tmp_path.iterdir())


def test_compare_a_dynamic_export_with_its_fixed_shape_int8(cache: Path, int8_model: Path, tmp_path: Path) -> None:
    """A framework export with a dynamic batch and its INT8 written with a fixed shape are the same network:
    --input-shape fixes the dims of both before their inputs are compared (it used to load the FP32 model
    without them and stop at 'dynamic dimensions'). A shape that does not fit still refuses in one line, exit 2."""
    dyn = onnx.load(str(SAMPLE_MODEL))
    dyn.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    dyn_path = tmp_path / "dynamic.onnx"
    onnx.save(dyn, str(dyn_path))
    name = dyn.graph.input[0].name
    dims = [d.dim_value for d in onnx.load(str(SAMPLE_MODEL)).graph.input[0].type.tensor_type.shape.dim]
    fixed = "x".join(map(str, dims))
    res = invoke("profile", dyn_path, "-r", "ort", "--threads", "1", "-n", "20", "--compare", int8_model,
                 "--input-shape", f"{name}={fixed}", "--cache-dir", cache)  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "layer by layer" in res.output
    # the other way round: the dynamic model is the one compared, and its findings load it with the shape too
    res = invoke("profile", int8_model, "-r", "ort", "--threads", "1", "-n", "20", "--compare", dyn_path,
                 "--input-shape", f"{name}={fixed}", "--cache-dir", cache)  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "layer by layer" in res.output
    # bench --compare's reasons: the same shapes reach the short profile behind them
    from edgecnn.errors import ModelError
    from edgecnn.profile.compare import explain_slower

    assert isinstance(explain_slower(int8_model, dyn_path, "ort", threads=1, input_shapes={name: tuple(dims)}), list)
    with pytest.raises(ModelError, match="dynamic"):
        explain_slower(int8_model, dyn_path, "ort", threads=1)
    wrong = "x".join(map(str, [2, *dims[1:]]))
    res = invoke("profile", dyn_path, "-r", "ort", "--compare", int8_model, "--input-shape", f"{name}={wrong}")
    assert res.exit_code == 2 and res.output.startswith("error: ") and res.output.count("\n") == 1, res.output
