"""Placement verdicts: one model per documented constraint, each side of the limit, citing the source line;
float vs QDQ models on int8 targets; partitions; the CLI (--json, --markdown, --strict) and the docs page."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from edgecnn.check import docs
from edgecnn.check.placement import Placement, TargetReport, check_target
from edgecnn.check.spec import available_targets, load_target
from edgecnn.cli import app
from edgecnn.graph.load import load_model
from tests.onnx_builders import small_cnn
from tests.target_corpus import conv, pool, resize, single_op, softmax

U55 = load_target("ethos-u55")
RK = load_target("rknpu2-rk3588")
GPU = load_target("mobile-gpu")


def _conv_nd(nsp: int, op: str) -> onnx.ModelProto:
    """A Conv or MaxPool over ``nsp`` spatial dims (nsp=3: 5-D tensors)."""
    from onnx import helper

    from tests.target_corpus import _model, _w

    attrs = {"kernel_shape": [3] * nsp, "pads": [1] * (2 * nsp)}
    if op == "Conv":
        node = helper.make_node("Conv", ["x", "w"], ["y"], name="n", **attrs)
        return _model([node], {"w": _w(4, 2, *[3] * nsp)}, x_shape=[1, 2, *[6] * nsp])
    return _model([helper.make_node(op, ["x"], ["y"], name="n", **attrs)], x_shape=[1, 2, *[6] * nsp])


def _check(tmp_path: Path, model: onnx.ModelProto, target: str = "rknpu2-rk3588") -> TargetReport:
    p = tmp_path / "m.onnx"
    onnx.save(model, p)
    return check_target(load_model(p), load_target(target))


def _reasons(rep: TargetReport) -> list[str]:
    return [f.reason for n in rep.nodes for f in n.failures]


# (target, model, expected ok, expected text in the reason, source line cited). RKNPU2 facts: RKNN-Toolkit2
# 2.5.0's own build report (benchmarks/rknn_ground_truth.py): the v1.6.0 list's limits (kernel 31, stride 7,
# ...) no longer hold, so those models run on the NPU; what 2.5.0 puts on the CPU is the failing side.
# Ethos-U facts: Vela SUPPORTED_OPS.md. RKNN accepts float16, so these float models are judged on geometry.
CASES = [
    ("rknpu2-rk3588", lambda: conv(k=33, hw=40), True, "", ""),
    ("rknpu2-rk3588", lambda: conv(stride=8, pad=1), True, "", ""),
    ("rknpu2-rk3588", lambda: conv(k=3, dilation=33, hw=80, pad=15), True, "", ""),
    ("rknpu2-rk3588", lambda: conv(k=3, pad=16), True, "", ""),
    ("rknpu2-rk3588", lambda: conv(k=9, group=8), True, "", ""),
    ("rknpu2-rk3588", lambda: pool(k=8, stride=1), True, "", ""),
    ("rknpu2-rk3588", lambda: pool(ceil=1, hw=33), True, "", ""),
    ("rknpu2-rk3588", lambda: pool(cin=8193, hw=4), True, "", ""),
    ("rknpu2-rk3588", lambda: resize(1.5), True, "", ""),
    ("rknpu2-rk3588", lambda: softmax(2), True, "", ""),
    ("rknpu2-rk3588", lambda: single_op("Gemm"), False, "does not run Gemm", "rknn-toolkit2 2.5.0"),
    ("rknpu2-rk3588", lambda: single_op("Exp"), False, "does not run Exp (RKNN-Toolkit2 2.5.0 places it on the CPU)", "rknn-toolkit2 2.5.0"),
    ("rknpu2-rk3588", lambda: single_op("LayerNormalization"), False, "fails to load an opset-17 LayerNormalization", "rknn-toolkit2 2.5.0"),
    ("rknpu2-rk3588", lambda: single_op("Unsqueeze"), True, "", ""),
    ("rknpu2-rk3588", lambda: single_op("Selu"), False, "Selu is not in the RK3588 NPU's published operator list", "rknn-toolkit2 2.5.0"),
    ("rknpu2-rk3588", lambda: conv(batch=2), True, "", "Convolution"),
    ("rknpu2-rk3588", lambda: pool(), True, "", "MaxPool"),
    ("qualcomm-htp", lambda: _conv_nd(3, "Conv"), True, "", ""),
    ("qualcomm-htp", lambda: _conv_nd(2, "MaxPool"), True, "", ""),
    ("qualcomm-htp", lambda: _conv_nd(3, "MaxPool"), False, "a 3-D MaxPool", "PoolMax3d"),
    ("qualcomm-htp", lambda: softmax(2), True, "", ""),
    ("qualcomm-htp", lambda: single_op("Det"), False, "Det is not in the Hexagon HTP's published operator list, so it runs on the fallback device", "op_builder_factory.cc"),
    ("mobile-gpu", lambda: resize(2.0, "linear"), True, "", "RESIZE_BILINEAR"),
    # LiteRT gpu_compatibility.cc takes RESIZE_NEAREST_NEIGHBOR too; model_builder.cc refuses rank >= 5 tensors.
    ("mobile-gpu", lambda: resize(2.0, "nearest"), True, "", "RESIZE_NEAREST_NEIGHBOR"),
    ("mobile-gpu", lambda: single_op("Relu"), True, "", ""),
]  # fmt: skip


@pytest.mark.parametrize(("target", "build", "ok", "text", "cite"), CASES)
def test_constraint_each_side_of_the_limit(tmp_path: Path, target: str, build, ok: bool, text: str, cite: str) -> None:
    rep = _check(tmp_path, build(), target)
    assert rep.all_accelerated == ok, _reasons(rep)
    if not ok:
        fails = [f for n in rep.nodes for f in n.failures]
        hit = [f for f in fails if text in f.reason]
        assert hit, _reasons(rep)
        assert cite in hit[0].source and "https://" in hit[0].source


def _qdq(tmp_path: Path, model: onnx.ModelProto, per_channel: bool = True) -> onnx.ModelProto:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    src, dst = tmp_path / "float.onnx", tmp_path / "qdq.onnx"
    onnx.save(model, src)
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self.items = iter([{"x": rng.standard_normal(shape).astype(np.float32)} for _ in range(4)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)  # fmt: skip
    return onnx.load(str(dst))


def _u55(tmp_path: Path, model: onnx.ModelProto) -> TargetReport:
    return _check(tmp_path, model, "ethos-u55")


def test_float_model_on_int8_npu_is_checked_as_quantized(tmp_path: Path) -> None:
    # A float model on an int8-only NPU is judged as `edgecnn quantize --target` would write it: the
    # structural verdicts show, not "requantize" on every node; the report says which dtype it assumed.
    rep = _u55(tmp_path, small_cnn())
    assert rep.checked_as == "int8" and rep.n_nodes == 11 and rep.runnable
    assert rep.all_accelerated, _reasons(rep)
    assert all(n.precision == "int8" for n in rep.nodes)
    assert not any(f.rule == "precision" for n in rep.nodes for f in n.failures)
    # A structural limit still shows on the float model (stride 5 > 3 for a depthwise conv on Ethos-U).
    bad = _u55(tmp_path, conv(k=3, group=8, stride=5, pad=1))
    assert [f.rule for n in bad.nodes for f in n.failures] == ["stride_max"]
    # A float-capable target is judged in float, with no assumption.
    assert _check(tmp_path, small_cnn(), "intel-cpu").checked_as == ""


def test_qdq_model_is_judged_on_the_ops_between_qdq_pairs(tmp_path: Path) -> None:
    rep = _u55(tmp_path, _qdq(tmp_path, small_cnn()))
    assert all(n.op_type not in ("QuantizeLinear", "DequantizeLinear") for n in rep.nodes)
    assert rep.absorbed > 0
    conv_nodes = [n for n in rep.nodes if n.op_type == "Conv"]
    assert conv_nodes and all(n.precision == "int8" and n.placement == Placement.ACCELERATOR for n in conv_nodes)
    assert conv_nodes[0].absorbed  # its DQ/Q nodes were fused into it
    assert rep.mac_share > 0.9, _reasons(rep)
    # The same QDQ model on a float-only GPU: the int8 ops need the float model there.
    gpu = _check(tmp_path, _qdq(tmp_path, small_cnn()), "mobile-gpu")
    assert any("computes in int8" in r for r in _reasons(gpu))


def test_every_failure_is_gathered_not_just_the_first(tmp_path: Path) -> None:
    # Float, depthwise stride 4 (> 3, Vela 5.2.0 DEPTHWISE_CONV_2D range 1..3) and a 3-D window on Ethos-U55.
    rep = _u55(tmp_path, conv(k=3, group=8, stride=4, dilation=40, hw=100, pad=40))
    (node,) = rep.nodes
    rules = {f.rule for f in node.failures}
    assert "stride_max" in rules  # Vela 5.2.0 has no dilation limit any more
    assert "Conv 'conv': stride 4x4 exceeds the Ethos-U55 NPU's stride limit of 3." in [f.reason for f in node.failures]
    assert all("TFLite DEPTHWISE_CONV_2D Constraints" in f.source for f in node.failures if f.rule == "stride_max")
    assert node.maps_to == ["DEPTHWISE_CONV_2D"]


def test_dense_conv_on_ethos_u_takes_stride_4_only_without_padding(tmp_path: Path) -> None:
    # Vela 5.2.0 CONV_2D: Stride>3 is only supported IF (dilation = 1 AND padding = VALID).
    rules = {f.rule for n in _u55(tmp_path, conv(stride=4, pad=0)).nodes for f in n.failures}
    assert "large_stride_valid_only" not in rules and "stride_max" not in rules
    rep = _u55(tmp_path, conv(stride=4, pad=1))
    assert any(
        f.rule == "large_stride_valid_only" and "padding [1, 1, 1, 1]" in f.reason
        for n in rep.nodes
        for f in n.failures
    )


def test_partitions_and_copies_count_each_switch(tmp_path: Path) -> None:
    # Conv -> Gemm(CPU on RK3588) : conv [acc] -> flatten [acc] -> fc [cpu]
    from onnx import helper

    from tests.target_corpus import _model, _w

    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="c1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["c"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "fw"], ["h"], name="fc", transB=1),
        helper.make_node("Relu", ["h"], ["y"], name="relu"),
    ]
    m = _model(nodes, {"w": _w(8, 4, 3, 3), "fw": _w(5, 8)})
    rep = _check(tmp_path, m, "rknpu2-rk3588")
    assert [n.placement for n in rep.nodes] == ["accelerator"] * 3 + ["fallback", "accelerator"]
    assert rep.partitions == 2 and rep.copies == 2
    assert rep.worst[0].name == "fc"


def test_model_the_target_cannot_run_at_all(tmp_path: Path) -> None:
    p = tmp_path / "det.onnx"
    onnx.save(single_op("Det"), p)
    r = CliRunner().invoke(app, ["check", str(p), "--target", "intel-cpu", "--strict"])
    assert r.exit_code == 1, r.output
    assert "Det is not in the OpenVINO CPU plugin's published operator list; the target has no fallback" in r.output
    assert "runs only if the vendor's compiler accepts it" in r.output and "runs on the fallback" not in r.output
    assert "not in the published list: confirm with the vendor's compiler" in r.output


def test_cli_json_markdown_strict_and_side_by_side(tmp_path: Path) -> None:
    p = tmp_path / "cnn.onnx"
    onnx.save(small_cnn(), p)
    js, md = tmp_path / "r.json", tmp_path / "r.md"
    args = ["check", str(p), "-t", "ethos-u55", "-t", "intel-cpu", "--json", str(js), "--markdown", str(md)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "ethos-u55" in r.output and "intel-cpu" in r.output and "nodes on accelerator" in r.output
    data = json.loads(js.read_text())
    assert data["schema_version"] == 1 and data["kind"] == "check"
    by = {t["target"]: t for t in data["targets"]}
    assert by["intel-cpu"]["node_share"] == 1.0 and by["ethos-u55"]["checked_as"] == "int8"
    assert "| nodes on accelerator | 11/11 (100.0%) | 11/11 (100.0%) |" in md.read_text()
    assert "| tensor-copy ops on accelerator | 1/1 | 1/1 |" in md.read_text()
    assert "| checked as | int8 (float model, as quantized for it) | as given |" in md.read_text()
    assert CliRunner().invoke(app, [*args, "--strict"]).exit_code == 0
    assert (
        CliRunner().invoke(app, ["check", str(p), "-t", "rknpu2-rk3588", "-t", "intel-cpu", "--strict"]).exit_code == 1
    )
    assert CliRunner().invoke(app, ["check", str(p), "-t", "intel-cpu", "--strict"]).exit_code == 0
    bad = CliRunner().invoke(app, ["check", str(p), "-t", "nope"])
    assert bad.exit_code == 2 and "valid targets are" in bad.output
    r = CliRunner().invoke(app, ["check", str(p), "-t", "intel-cpu", "--input-shape", "x=1x3x16x16"])
    assert r.exit_code == 0, r.output


def test_docs_page_is_up_to_date() -> None:
    assert docs.main(["--check"]) == 0, "docs/targets.md is stale: run python -m edgecnn.check.docs"
    text = docs.DOC_PATH.read_text()
    assert "kernel {kernel} exceeds the {accel}'s kernel limit of {limit} per side." in text
    assert "### `ethos-u55`" in text and "SUPPORTED_OPS.md" in text


def test_readme_command_on_the_bundled_model(sample_model: Path) -> None:
    r = CliRunner().invoke(app, ["check", str(sample_model), "--target", "ethos-u55", "--target", "intel-cpu"])
    assert r.exit_code == 0, r.output
    assert "Summary" in r.output


def test_intel_npu_float_model_runs_in_a_documented_precision(tmp_path: Path) -> None:
    # NPU device page: F32/F16 inference precisions (computed in FP16), U8 quantized: a float model needs no quantizing.
    rep = _check(tmp_path, single_op("Conv"), "intel-npu")
    assert rep.runnable and rep.all_accelerated, _reasons(rep)
    assert [n.precision for n in rep.nodes] == ["float32"]


def _data_dependent_reshape() -> onnx.ModelProto:
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Reshape", ["x", "s"], ["r"], name="reshape"),
        helper.make_node("Relu", ["r"], ["y"], name="relu"),
    ]
    g = helper.make_graph(
        nodes, "dyn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8]),
         helper.make_tensor_value_info("s", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["a", "b"])],
    )  # fmt: skip
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def test_intel_npu_dynamic_dim_cannot_run_static_shapes_required(tmp_path: Path) -> None:
    # The target shape of Reshape is a run-time input, so its output dims are dynamic.
    rep = _check(tmp_path, _data_dependent_reshape(), "intel-npu")
    assert not rep.runnable and rep.n_accelerated == 0
    fails = [f for n in rep.nodes for f in n.failures]
    assert fails and all(f.rule == "static_shapes" for f in fails)
    assert (
        "has a dynamic dimension; the Intel NPU (OpenVINO NPU plugin) needs static shapes, so the model cannot run"
        in (fails[0].reason)
    )
    assert "inference-devices-and-modes/npu-device.html" in fails[0].source
    assert "only models with static shapes are supported on NPU" in fails[0].source
    assert all(n.placement == Placement.UNSUPPORTED for n in rep.nodes)  # no fallback device
    # The same graph is fine on the CPU plugin, which supports dynamic shapes.
    assert _check(tmp_path, _data_dependent_reshape(), "intel-cpu").all_accelerated
    p = tmp_path / "dyn.onnx"
    onnx.save(_data_dependent_reshape(), p)
    r = CliRunner().invoke(app, ["check", str(p), "--target", "intel-npu", "--strict"])
    assert r.exit_code == 1 and "cannot run" in r.output, r.output


QUANT_TARGETS = [n for n in available_targets() if load_target(n).quant is not None]


@pytest.mark.parametrize("target", QUANT_TARGETS)
def test_quantize_for_a_target_writes_what_check_accepts(sample_model: Path, tmp_path: Path, target: str) -> None:
    # `quantize --target X` then `check --target X`: no precision or dtype verdict on the model it wrote, and
    # the verdicts equal those on the float model checked "as quantized" (same nodes on the accelerator).
    from tests.cli_helpers import invoke
    from tests.conftest import CALIB_DIR

    dst = tmp_path / "q.onnx"
    r = invoke("quantize", sample_model, "--calib", CALIB_DIR, "-o", dst, "--target", target, "--samples", "8")
    assert r.exit_code == 0, r.output
    spec = load_target(target)
    q = check_target(load_model(dst), spec)
    assert not [f for n in q.nodes for f in n.failures if f.rule in ("precision", "dtypes")], _reasons(q)
    f = check_target(load_model(sample_model), spec)
    # quantize folds BatchNormalization into the Conv before it: compare what is off the accelerator.
    off = {n.op_type for n in f.nodes if n.placement != Placement.ACCELERATOR} - {"BatchNormalization"}
    assert {n.op_type for n in q.nodes if n.placement != Placement.ACCELERATOR} == off, _reasons(q)
    if spec.requires_quantization:
        assert f.checked_as == spec.quant.activation_dtype and q.checked_as == ""  # type: ignore[union-attr]


def test_model_with_only_shape_ops_is_a_clear_verdict(tmp_path: Path) -> None:
    # Shape -> Gather -> Unsqueeze -> Concat: at fixed input shapes it all folds away; nothing to place.
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Shape", ["x"], ["s"], name="shape"),
        helper.make_node("Gather", ["s", "i"], ["g"], name="gather", axis=0),
        helper.make_node("Unsqueeze", ["g", "a"], ["u"], name="unsq"),
        helper.make_node("Concat", ["u", "u"], ["y"], name="concat", axis=0),
    ]
    g = helper.make_graph(
        nodes, "shapes", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, [2])],
        initializer=[onnx.numpy_helper.from_array(np.array(1, np.int64), "i"),
                     onnx.numpy_helper.from_array(np.array([0], np.int64), "a")],
    )  # fmt: skip
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    p = tmp_path / "shapes.onnx"
    onnx.save(m, p)
    args = ["check", str(p), *[a for t in available_targets() for a in ("-t", t)], "--json", str(tmp_path / "r.json")]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["folded"] == {"Gather": 1, "Shape": 1, "Unsqueeze": 1}  # Concat feeds the graph output: kept
    for t in data["targets"]:
        assert t["n_nodes"] <= 1 and t["macs_total"] == 0, t


@pytest.mark.parametrize("target", available_targets())
def test_5d_tensor_on_every_target_is_a_clear_verdict(tmp_path: Path, target: str) -> None:
    # A 3-D convolution (5-D tensors): every target answers, none crashes, and the answer names the reason.
    from onnx import helper

    from tests.target_corpus import _model, _w

    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv3d", kernel_shape=[3, 3, 3], pads=[1] * 6)
    p = tmp_path / "c3d.onnx"
    onnx.save(_model([node], {"w": _w(4, 2, 3, 3, 3)}, x_shape=[1, 2, 6, 8, 8]), p)
    r = CliRunner().invoke(app, ["check", str(p), "-t", target, "--json", str(tmp_path / "r.json")])
    assert r.exit_code == 0, r.output
    (t,) = json.loads((tmp_path / "r.json").read_text())["targets"]
    (n,) = t["nodes"]
    if n["placement"] != "accelerator":
        assert n["failures"] and all(f["reason"] for f in n["failures"]), n
    assert "CONV_2D" not in n["maps_to"]  # a 3-D Conv is never reported as CONV_2D


def test_output_declared_with_a_negative_dim(tmp_path: Path) -> None:
    """Paddle2ONNX declares a dynamic dimension as -1 (PP-OCR cls: output [-1, 2]); strict shape inference at a
    fixed input shape rejected it ('(1) vs (-1)') and check raised a traceback. It is read as unknown."""
    import numpy as np
    from onnx import helper

    from tests.onnx_builders import make_model, save

    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[1, 1]),
        helper.make_node("GlobalAveragePool", ["c"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["y"], name="flat"),
    ]
    m = make_model(nodes, [("x", [-1, 3, 8, 8])], [("y", [-1, 4])], {"w": np.ones((4, 3, 1, 1), np.float32)})
    path = save(m, tmp_path / "paddle.onnx")
    from tests.cli_helpers import invoke

    r = invoke("check", path, "--target", "ethos-u55", "--input-shape", "x=1x3x8x8")
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize(("gelu", "placement"), [(False, Placement.ACCELERATOR), (True, Placement.FALLBACK)])
def test_a_float_model_is_judged_as_quantize_will_leave_it(tmp_path: Path, gelu: bool, placement: Placement) -> None:
    """On an integer-only target a float model is judged as `quantize --target` writes it. The exact GELU stays
    one float unit there (no integer Erf anywhere), exported as a float GELU that Vela leaves on the CPU; it was
    judged int8 on the NPU (PP-OCRv6 rec on Ethos-U55: 121 of 121 nodes on the NPU, 38 CPU ops in fact). A Relu
    in its place is integer (negative control)."""
    from onnx import TensorProto, helper, numpy_helper

    from tests.onnx_tfl_cases import gelu_nodes

    rng = np.random.default_rng(0)
    inits = {"w1": rng.standard_normal((8, 4, 3, 3)).astype(np.float32) * 0.2,
             "w2": rng.standard_normal((8, 8, 3, 3)).astype(np.float32) * 0.2}  # fmt: skip
    act, consts = gelu_nodes("c1", "g") if gelu else ([helper.make_node("Relu", ["c1"], ["g"], name="act")], {})
    inits.update(consts)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]), *act,
             helper.make_node("Conv", ["g", "w2"], ["y"], name="conv2", pads=[1, 1, 1, 1])]  # fmt: skip
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 16, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])  # fmt: skip
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    rep = check_target(load_model(path), load_target("ethos-u55"))
    by = {v.name: v for v in rep.nodes}
    assert rep.checked_as == "int8" and by["conv1"].placement is Placement.ACCELERATOR
    judged = by.get("gelu_half" if gelu else "act") or next(v for v in rep.nodes if v.op_type in ("Gelu", "Relu"))
    assert judged.placement is placement, judged
