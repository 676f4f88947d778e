"""ONNX Runtime's own contrib ops in a model file: a model saved by an ORT session after its optimizations carries
com.microsoft.FusedConv (Conv + optional sum + activation). load_model expands each into the standard ops it
fuses, exactly (checked against ORT running the fused file), so every command reads the model as exported;
an activation it does not know is left fused (the other side)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgecnn.graph.load import expand_fused_convs, load_model
from tests.cli_helpers import assert_one_line_error, invoke
from tests.conftest import CALIB_DIR, SAMPLE_MODEL
from tests.test_export_tflite import ort_run


def _fused(act: str, params: list[float], with_sum: bool, opset: int = 13) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.5, (4, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.normal(0, 0.5, 4).astype(np.float32), "b")]  # fmt: skip
    ins = ["x", "w", "b"]
    nodes = []
    if with_sum:
        nodes.append(helper.make_node("Conv", ["x", "w"], ["z"], name="side", pads=[1, 1, 1, 1]))
        ins.append("z")
    kw: dict[str, object] = {"activation": act} if act else {}
    if params:
        kw["activation_params"] = params
    nodes.append(helper.make_node("FusedConv", ins, ["y"], name="fused", domain="com.microsoft", pads=[1, 1, 1, 1],
                                  kernel_shape=[3, 3], **kw))  # fmt: skip
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], inits)  # fmt: skip
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid("com.microsoft", 1)])
    m.ir_version = 8
    return m


@pytest.mark.parametrize(
    ("act", "params", "with_sum", "opset"),
    [("Relu", [], False, 13), ("Relu", [], True, 13), ("Clip", [0.0, 6.0], False, 13), ("Clip", [-1.0, 1.0], True, 10),
     ("LeakyRelu", [0.1], False, 13), ("HardSigmoid", [0.2, 0.5], False, 13), ("Sigmoid", [], True, 13),
     ("", [], True, 13)],
    ids=["relu", "relu-sum", "relu6", "clip-opset10-sum", "leaky", "hardsigmoid", "sigmoid-sum", "no-activation-sum"],
)  # fmt: skip
def test_fused_conv_becomes_the_standard_ops_it_fuses(
    tmp_path: Path, act: str, params: list[float], with_sum: bool, opset: int
) -> None:
    m = _fused(act, params, with_sum, opset)
    p = tmp_path / "m.onnx"
    onnx.save(m, str(p))
    loaded = load_model(p)
    ops = [(n.domain, n.op_type) for n in loaded.model.graph.node]
    assert ("com.microsoft", "FusedConv") not in ops and ("", "Conv") in ops, ops
    assert all(o.domain != "com.microsoft" for o in loaded.model.opset_import)
    x = np.random.default_rng(1).normal(0, 1, (1, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(ort_run(loaded.model, x)[0], ort_run(m, x)[0], rtol=1e-5, atol=1e-5)


def test_an_unknown_activation_stays_fused() -> None:
    m = _fused("Gelu", [], False)  # not an activation FusedConv expands here: left as written
    assert expand_fused_convs(m) == 0 and m.graph.node[-1].op_type == "FusedConv"


def test_an_ort_optimized_model_quantizes_like_its_source(tmp_path: Path) -> None:
    """The bundled model saved by an ORT session at the extended level (FusedConv inside): quantize works on it
    as on the source; left fused, shape inference stopped at the first FusedConv and nothing was quantized."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    so.log_severity_level = 3
    ort.InferenceSession(str(SAMPLE_MODEL), so, providers=["CPUExecutionProvider"])
    assert any(n.op_type == "FusedConv" for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node)
    r = invoke("quantize", tmp_path / "opt.onnx", "--calib", CALIB_DIR, "-o", tmp_path / "q.onnx", "--samples", "32")
    assert r.exit_code == 0, r.output
    q = onnx.load(str(tmp_path / "q.onnx"))
    assert sum(n.op_type == "QuantizeLinear" for n in q.graph.node) > 3
    assert not any(n.domain == "com.microsoft" for n in q.graph.node)


def test_an_ort_all_level_model_is_refused_by_quantize(tmp_path: Path) -> None:
    """At ORT_ENABLE_ALL an ORT session on x86 saves CPU-specific NCHWc ops (com.microsoft.nchwc Conv, ReorderInput):
    no tool reads them and they hide every Conv, so quantize refuses with the way out (it exited 0 having quantized
    only the classifier). Built here as ORT writes it (the bundled model's Convs in that domain), so the case does
    not depend on the CPU; the extended-level file of the same model quantizes (the test above)."""
    m = onnx.load(str(SAMPLE_MODEL))
    for n in m.graph.node:
        if n.op_type == "Conv":
            n.domain = "com.microsoft.nchwc"
    m.opset_import.append(helper.make_opsetid("com.microsoft.nchwc", 1))
    src, out = tmp_path / "all.onnx", tmp_path / "q.onnx"
    onnx.save(m, str(src))
    r = invoke("quantize", src, "--calib", CALIB_DIR, "-o", out, "--samples", "8")
    assert_one_line_error(r, 2, "com.microsoft.nchwc", "ORT_ENABLE_EXTENDED")
    assert not out.exists()
