"""`profile --compare` names the layers that got slower and why, in issue 15's three YOLO cases, on a small
YOLO-style detector block built here and profiled on the real runtimes (benchmarks/profile_cases.py runs the
same cases on the full yolo320 model):

  a  edgecnn INT8 vs FP32 on ONNX Runtime;
  b  edgecnn INT8 for OpenVINO vs the FP32 model on OpenVINO at its default precision (bf16 on AMX CPUs);
  c  ONNX Runtime's own quantize_static INT8 vs FP32 on ONNX Runtime (signed activations, standalone Q/DQ);

and a negative control: a comparison where nothing got slower says so and names no layer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from edgecnn.bench.stats import round_ratios
from edgecnn.profile.compare import (
    LayerDelta,
    ProfileComparison,
    compare_profiles,
    float_islands,
    measured_slower,
    slower,
    speed_verdict,
)
from edgecnn.profile.core import profile_model, profile_pair
from tests.cli_helpers import run_cli
from tests.conftest import CALIB_DIR
from tests.onnx_builders import make_model, save

RUNS = 20


def detector_block() -> onnx.ModelProto:
    """YOLOv8-style block on 1x3x32x32 ``input``: Conv+SiLU (Sigmoid·Mul) stem and stride-2 conv, a C2f (1x1
    conv, Split, bottleneck with residual Add, Concat, 1x1 conv), an SPPF MaxPool chain + Concat, nearest
    Resize back up + Concat, and two heads: ``boxes`` (1x1 conv) and ``scores`` (1x1 conv, Sigmoid)."""
    rng = np.random.default_rng(15)
    inits: dict[str, np.ndarray] = {}
    nodes: list[onnx.NodeProto] = []

    def conv(x: str, cin: int, cout: int, k: int, name: str, stride: int = 1, silu: bool = True) -> str:
        inits[f"{name}.w"] = (rng.standard_normal((cout, cin, k, k)) * np.sqrt(2.0 / (cin * k * k))).astype(np.float32)
        inits[f"{name}.b"] = rng.normal(0, 0.1, cout).astype(np.float32)
        out = f"{name}.c" if silu else name
        nodes.append(helper.make_node("Conv", [x, f"{name}.w", f"{name}.b"], [out], name=name, kernel_shape=[k, k],
                                      pads=[k // 2] * 4, strides=[stride, stride]))  # fmt: skip
        if silu:
            nodes.append(helper.make_node("Sigmoid", [out], [f"{name}.s"], name=f"{name}.sigmoid"))
            nodes.append(helper.make_node("Mul", [out, f"{name}.s"], [name], name=f"{name}.mul"))
        return name

    stem = conv("input", 3, 16, 3, "stem")  # 32x32
    d = conv(stem, 16, 32, 3, "down", stride=2)  # 16x16
    c = conv(d, 32, 32, 1, "c2f.cv1")
    inits["split"] = np.array([16, 16], np.int64)
    nodes.append(helper.make_node("Split", [c, "split"], ["y0", "y1"], name="c2f.split", axis=1))
    b = conv(conv("y1", 16, 16, 3, "c2f.m.cv1"), 16, 16, 3, "c2f.m.cv2")
    nodes.append(helper.make_node("Add", ["y1", b], ["c2f.add"], name="c2f.add"))
    nodes.append(helper.make_node("Concat", ["y0", "y1", "c2f.add"], ["c2f.cat"], name="c2f.cat", axis=1))
    f = conv("c2f.cat", 48, 32, 1, "c2f.cv2")
    for i, src in enumerate([f, "mp0"]):
        nodes.append(helper.make_node("MaxPool", [src], [f"mp{i}"], name=f"mp{i}", kernel_shape=[5, 5], pads=[2] * 4))
    nodes.append(helper.make_node("Concat", [f, "mp0", "mp1"], ["sppf.cat"], name="sppf.cat", axis=1))
    p = conv("sppf.cat", 96, 32, 1, "sppf.cv2")
    inits["scales"] = np.array([1, 1, 2, 2], np.float32)
    nodes.append(helper.make_node("Resize", [p, "", "scales"], ["up"], name="up", mode="nearest"))
    nodes.append(helper.make_node("Concat", ["up", stem], ["neck.cat"], name="neck.cat", axis=1))
    h = conv("neck.cat", 48, 32, 3, "head")
    conv(h, 32, 16, 1, "boxes", silu=False)
    s = conv(h, 32, 8, 1, "cls", silu=False)
    nodes.append(helper.make_node("Sigmoid", [s], ["scores"], name="scores"))
    return make_model(nodes, [("input", [1, 3, 32, 32])], [("boxes", [1, 16, 32, 32]), ("scores", [1, 8, 32, 32])],
                      inits)  # fmt: skip


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from onnxruntime.quantization import QuantFormat, quantize_static

    from benchmarks.common import ort_reader

    d = tmp_path_factory.mktemp("det")
    fp32 = save(detector_block(), d / "det_fp32.onnx")
    out = {"fp32": fp32}
    for name, extra in (("edgecnn_ort", ["--runtime", "ort"]), ("edgecnn_ov", ["--runtime", "openvino"])):
        out[name] = d / f"{name}.onnx"
        res = run_cli("quantize", fp32, "--calib", CALIB_DIR, "-o", out[name], *extra)
        assert res.returncode == 0, res.stderr
    out["ort_own"] = d / "ort_own.onnx"  # ONNX Runtime's quantizer with its defaults (QDQ, int8 activations)
    reader = ort_reader(CALIB_DIR, 16, CALIB_DIR.parent / "preprocess.toml")
    quantize_static(str(fp32), str(out["ort_own"]), reader, quant_format=QuantFormat.QDQ)
    return out


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ceilings")


def _compare(models: dict[str, Path], other: str, runtime: str, cache: Path, prec: str = "f32") -> ProfileComparison:
    kw = {"threads": 1, "runs": RUNS, "warmup": 5, "cache_dir": cache, "ov_precision": prec}
    return compare_profiles(*profile_pair(models["fp32"], models[other], runtime, rounds=2, **kw))


def _slower_named(cmp: ProfileComparison) -> set[str]:
    """The layers the 'Slower layers' sentence names; each must carry its own reason."""
    said = next((s for s in cmp.sentences if s.startswith("Slower layers: ")), "")
    named = {r.layer for r in cmp.rows if f"{r.layer} ({r.op}) " in said}
    assert said.count(", why: ") == len(named), said
    # the (up to) three that lost the most time beyond noise, and only those
    assert named == {
        r.layer for r in sorted((r for r in cmp.rows if slower(r, cmp.base)), key=lambda r: -r.delta_us)[:3]
    }
    return named


def test_a_edgecnn_int8_on_ort(models: dict[str, Path], cache: Path) -> None:
    cmp = _compare(models, "edgecnn_ort", "ort", cache)
    text = " ".join(cmp.sentences)
    n_conv = sum(n.op_type == "Conv" for n in onnx.load(str(models["fp32"])).graph.node)
    m = onnx.load(str(models["edgecnn_ort"]))
    outs = {o.name for o in m.graph.output}
    heads = {n.name for n in m.graph.node if n.op_type == "Conv" and set(n.output) & outs}  # write graph outputs
    inputs = {i.name for i in m.graph.input}
    stems = {n.name for n in m.graph.node if n.op_type == "Conv" and n.input[0] in inputs}  # the float SiLU stem
    floats = {r.layer for r in cmp.rows if r.other_precision == "fp32"}
    assert floats <= heads | stems and "int8 (signed) activations" not in text, text  # uint8 activations: all fused
    if floats:  # a conv writing a float model output or reading the image stays float, and the report says why
        assert f"{len(floats)} of {n_conv} matched compute layers (Conv) ran in FP32 in edgecnn_ort" in text
        if floats & heads:
            assert "write float outputs (no QuantizeLinear after them)" in text
        if floats & stems:
            assert "have a float activation input (no DequantizeLinear before them)" in text
    else:
        assert f"All {n_conv} matched compute layers ran as integer kernels in edgecnn_ort" in text, text
    _slower_named(cmp)  # the layers that got slower beyond noise are named, each with a reason
    assert ("Float islands" in text) == bool(float_islands(cmp.other)), text
    # edgecnn's own file: the advice is not "quantize with edgecnn" (circular), but what to change
    assert "edgecnn quantize --runtime" not in text, text
    if float_islands(cmp.other):
        assert "edgecnn quantize already left them float" in text, text


def test_b_edgecnn_int8_on_openvino_against_its_default_precision(models: dict[str, Path], cache: Path) -> None:
    from edgecnn.runtimes.openvino import default_cpu_precision

    cmp = _compare(models, "edgecnn_ov", "openvino", cache, prec="default")
    text = " ".join(cmp.sentences)
    assert "matched compute layers ran as integer kernels in edgecnn_ov" in text, text
    if default_cpu_precision() == "bf16":  # AMX / AVX512-BF16: the FP32 model really ran in bf16, and it is said
        assert {r.base_precision for r in cmp.rows} == {"bf16"} and {r.other_precision for r in cmp.rows} == {"int8"}
        assert "det_fp32's float layers ran in bf16 on openvino (its default on this CPU)" in text
        assert "that is the baseline INT8 has to beat" in text
        if _slower_named(cmp):
            assert "why: the baseline already ran it in bf16" in text
    else:
        assert "ran in bf16" not in text
    # the conversions OpenVINO put in the graph are named when the INT8 model has more of them
    ins = [r for r in cmp.other.layers if r.executed and r.origin.value == "inserted"]
    ins0 = [r for r in cmp.base.layers if r.executed and r.origin.value == "inserted"]
    assert ("openvino inserted" in text) == (len(ins) > len(ins0)), text


def test_c_onnxruntimes_own_int8_names_float_convs_islands_and_conversions(
    models: dict[str, Path], cache: Path
) -> None:
    cmp = _compare(models, "ort_own", "ort", cache)
    text = " ".join(cmp.sentences)
    assert "matched compute layers (Conv) ran in FP32 in ort_own" in text and "int8 (signed) activations" in text, text
    assert "per-tensor activations with uint8 fix this" in text  # what to do about it
    assert "Q/DQ conversions (standalone) cost" in text
    isl = next(s for s in cmp.sentences if s.startswith("Float islands:"))
    assert "Sigmoid" in isl and "Mul" in isl and "standalone QuantizeLinear/DequantizeLinear" in isl
    assert "edgecnn quantize --runtime ort" in isl
    named = _slower_named(cmp)
    if named:  # float convs between Q/DQ that lost time are named, each with the reason
        said = next(s for s in cmp.sentences if s.startswith("Slower layers: "))
        why = "why: it still ran in FP32 (Conv) with Q/DQ around it: its activations are int8 (signed)"
        assert said.count(why) == len(named), said
    else:  # 2-4x slower end to end with no compute layer slower: the time went to the conversions, and it says so
        assert "No matched compute layer got slower in ort_own" in text and "the extra time is outside them" in text


def test_negative_control_nothing_slower_names_nothing(models: dict[str, Path], cache: Path) -> None:
    """The same profile on both sides: every layer equal, so no layer is named and the report says so; and
    the rule itself on both sides of each limit."""
    rep = profile_model(models["fp32"], "ort", threads=1, runs=RUNS, warmup=5, cache_dir=cache)
    cmp = compare_profiles(rep, rep)
    text = " ".join(cmp.sentences)
    assert "No layer got slower in det_fp32 beyond the profile's noise" in text
    assert not any(s.startswith(("Slower layers", "Float islands")) for s in cmp.sentences)
    assert "about as fast" in text and "inserted" not in text
    assert not any(r.layer in text for r in cmp.rows)
    base = rep.__class__(**{**rep.__dict__, "e2e_p50_us": 1000.0})

    def row(b: float, o: float, p90: float) -> LayerDelta:
        return LayerDelta(layer="c", op="Conv", base_us=b, other_us=o, base_precision="fp32", other_precision="int8",
                          base_kernel="", other_kernel="", base_p90_us=p90)  # fmt: skip

    assert slower(row(100, 130, 110), base)  # +30%, above p90, 3% of the model
    assert not slower(row(100, 114, 105), base)  # +14%
    assert not slower(row(100, 130, 135), base)  # inside the base layer's own spread
    assert not slower(row(10, 19, 11), base)  # +90%, but 0.9% of the model


def test_pair_alternates_rounds_and_the_verdict_needs_every_round(models: dict[str, Path], cache: Path) -> None:
    """profile --compare measures both models in alternating rounds (A B, B A, ...), every run counted once; the
    verdict calls a model faster or slower only when every round agrees, and says when the rounds disagree."""
    base, other = profile_pair(models["fp32"], models["edgecnn_ort"], "ort", rounds=3, threads=1, runs=31, warmup=2,
                               cache_dir=cache)  # fmt: skip
    assert len(base.round_p50_us) == len(other.round_p50_us) == 3
    assert len(round_ratios(base.round_p50_us, other.round_p50_us)) == 3
    assert sorted([*base.round_p50_us, base.e2e_p50_us])[0] > 0
    # the end-to-end p50 lies within the rounds' range (it is the median of their samples together)
    assert min(base.round_p50_us) <= base.e2e_p50_us <= max(base.round_p50_us)

    def with_rounds(rep, e2e: float, rounds: tuple[float, ...]):  # type: ignore[no-untyped-def]
        return rep.__class__(**{**rep.__dict__, "e2e_p50_us": e2e, "round_p50_us": rounds})

    a = with_rounds(base, 1000.0, (1000.0, 1000.0, 1000.0))
    cases = {  # other's (e2e, rounds) -> the verdict's words
        (800.0, (790.0, 800.0, 820.0)): "is faster than",
        (800.0, (790.0, 800.0, 1100.0)): "not measurably faster or slower",  # one round the other way
        (1250.0, (1200.0, 1250.0, 1300.0)): "is SLOWER than",
        (1250.0, (900.0, 1250.0, 1300.0)): "not measurably faster or slower",
        (1020.0, (1010.0, 1020.0, 1030.0)): "about as fast as",
    }
    for (e2e, rounds), words in cases.items():
        b = with_rounds(other, e2e, rounds)
        said = speed_verdict(a, b, "fp32", "int8")
        assert words in said and "over 3 alternating rounds" in said, said
        assert measured_slower(a, b) == (words == "is SLOWER than")
    # measured apart (profile_model, no rounds): the median alone decides, as before
    assert "is SLOWER than" in speed_verdict(with_rounds(base, 1000.0, ()), with_rounds(other, 1250.0, ()), "a", "b")
