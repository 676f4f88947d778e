"""The exact GELU as exporters write it before opset 20 (Div(x, sqrt 2) -> Erf -> Add 1 -> Mul x -> Mul 0.5, as
in ConvNeXt-style blocks): quantize keeps the chain as one float unit between a DQ and a Q, so the model stays as
accurate and `export --to tflite` writes one GELU (a Q/DQ inside the chain left an Erf TFLite has no op for). A
chain with a wrong constant is not a GELU and is quantized like any other ops (the negative control)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from edgecnn.errors import BadInputError
from edgecnn.export.tflite_writer import read_tflite
from edgecnn.export.to_tflite import onnx_to_tflite
from edgecnn.preprocess import find_spec
from edgecnn.quantize.api import QuantizeConfig, quantize
from edgecnn.quantize.dataset import ImageDataset
from edgecnn.quantize.qdq import CONTRIB_GELU_REASON, GELU_REASON
from edgecnn.runtimes import open_session
from tests.test_quantize_real import ort_runs


def gelu_model(sqrt2: float = 2**0.5, half_first: bool = False, dynamo: bool = False) -> onnx.ModelProto:
    """The exact GELU after a Conv, with the two Muls in the legacy exporter's order, with x * 0.5 first
    (``half_first``), or as torch.onnx's dynamo exporter writes it: x * ((erf + 1) * 0.5) (``dynamo``)."""
    rng = np.random.default_rng(0)
    inits = {
        "w1": rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32),
        "w2": rng.normal(0, 0.3, (4, 8, 1, 1)).astype(np.float32),
        "sqrt2": np.array(sqrt2, np.float32), "one": np.array(1.0, np.float32), "half": np.array(0.5, np.float32),
    }  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Div", ["c", "sqrt2"], ["d"], name="div"),
        helper.make_node("Erf", ["d"], ["e"], name="erf"),
        helper.make_node("Add", ["e", "one"], ["a"], name="add1"),
    ]
    if dynamo:
        nodes += [
            helper.make_node("Mul", ["a", "half"], ["h"], name="half"),
            helper.make_node("Mul", ["c", "h"], ["g"], name="mul_x"),
        ]
    elif half_first:
        nodes += [
            helper.make_node("Mul", ["c", "half"], ["h"], name="half"),
            helper.make_node("Mul", ["h", "a"], ["g"], name="mul_x"),
        ]
    else:
        nodes += [
            helper.make_node("Mul", ["c", "a"], ["m"], name="mul_x"),
            helper.make_node("Mul", ["m", "half"], ["g"], name="half"),
        ]
    nodes.append(helper.make_node("Conv", ["g", "w2"], ["y"], name="conv2"))
    g = helper.make_graph(
        nodes, "gelu", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 16, 16])],
        initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()],
    )  # fmt: skip
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> ImageDataset:
    d = tmp_path_factory.mktemp("rgb")
    rng = np.random.default_rng(1)
    for i in range(16):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8), "RGB").save(d / f"img_{i:02d}.png")
    (d / "preprocess.toml").write_text('schema_version = 1\ncolor_order = "RGB"\nlayout = "NCHW"\nresize = [16, 16]\n')
    return ImageDataset.open(d, find_spec(d))


def _quantize(tmp_path: Path, m: onnx.ModelProto, ds: ImageDataset, name: str) -> tuple[onnx.ModelProto, object]:
    src = tmp_path / f"{name}.onnx"
    onnx.save(m, str(src))
    return quantize(src, ds, QuantizeConfig())


def _quantized_after(q: onnx.ModelProto, a: str) -> bool:
    """Whether the output of node ``a`` goes into a QuantizeLinear."""
    by_name = {n.name: n for n in q.graph.node}
    consumers = {i: n for n in q.graph.node for i in n.input}
    first = consumers.get(by_name[a].output[0])
    return first is not None and first.op_type == "QuantizeLinear"


@pytest.mark.parametrize("order", ["legacy", "half_first", "dynamo"])
def test_gelu_chain_is_one_contrib_gelu_on_ort_and_exports_as_gelu(
    tmp_path: Path, images: ImageDataset, order: str
) -> None:
    """ONNX Runtime: the chain becomes one com.microsoft.Gelu between a DQ and a Q, the kernel ORT fuses the chain
    into in a float model but cannot form between Q/DQ (it gives the Div and the Mul their own DQ). In each order
    exporters write the two Muls (the dynamo exporter's was not recognised: Q/DQ inside the chain, and the TFLite
    export refused its Erf)."""
    m = gelu_model(half_first=order == "half_first", dynamo=order == "dynamo")
    q, report = _quantize(tmp_path, m, images, "gelu")
    chain = {"div", "erf", "add1", "mul_x", "half"}
    assert all(report.kept_float.get(n) == CONTRIB_GELU_REASON for n in chain), report.kept_float
    gelu = [n for n in q.graph.node if n.op_type == "Gelu"]
    assert len(gelu) == 1 and gelu[0].domain == "com.microsoft" and not chain & {n.name for n in q.graph.node}
    producer = {o: n for n in q.graph.node for o in n.output}
    assert producer[gelu[0].input[0]].op_type == "DequantizeLinear" and _quantized_after(q, gelu[0].name)
    qp, fp = tmp_path / "q.onnx", tmp_path / "f.onnx"
    onnx.save(q, str(qp))
    onnx.save(m, str(fp))
    ran = ort_runs(qp, tmp_path)  # ORT's own Gelu is a com.microsoft kernel
    assert ran["Gelu"] == 1 and not ran["Erf"], ran
    # The quantized model is still close to the float one on the real runtime.
    x = np.random.default_rng(2).random((1, 3, 16, 16)).astype(np.float32)
    yq = open_session("ort", qp).run({"x": x})[0]
    yf = open_session("ort", fp).run({"x": x})[0]
    assert 10 * np.log10(np.sum(yf**2) / np.sum((yf - yq) ** 2)) > 20
    ex = onnx_to_tflite(q)
    ops = [o.builtin for o in read_tflite(ex.data).ops]
    assert "GELU" in ops, ops


def test_other_runtimes_keep_the_chain_in_standard_ops(tmp_path: Path, images: ImageDataset) -> None:
    """The other side: OpenVINO's placement keeps the chain as the exporter wrote it, one float unit in
    standard ONNX ops (no contrib op in a file for OpenVINO), and a TFLite export still writes one GELU. ORT
    running that file leaves the Erf unfused, which is why its own placement writes the contrib Gelu."""
    src = tmp_path / "gelu.onnx"
    onnx.save(gelu_model(), str(src))
    q, report = quantize(src, images, QuantizeConfig(runtime="openvino"))
    assert all(report.kept_float.get(n) == GELU_REASON for n in ("div", "erf", "add1", "mul_x", "half"))
    assert not any(n.domain for n in q.graph.node) and not _quantized_after(q, "add1")
    onnx.save(q, str(tmp_path / "q.onnx"))
    assert ort_runs(tmp_path / "q.onnx", tmp_path)["Erf"]
    ex = onnx_to_tflite(q)
    assert "GELU" in [o.builtin for o in read_tflite(ex.data).ops] and any("GELU pattern" in n for n in ex.notes)


def test_a_chain_with_the_wrong_constant_is_not_a_gelu(tmp_path: Path, images: ImageDataset) -> None:
    q, report = _quantize(tmp_path, gelu_model(sqrt2=2.0), images, "notgelu")
    assert GELU_REASON not in report.kept_float.values()
    assert _quantized_after(q, "add1")  # quantized like any two-activation Mul's input
    with pytest.raises(BadInputError, match="Erf"):
        onnx_to_tflite(q)


def test_a_targets_float_only_ops_keep_the_chain_one_gelu(tmp_path: Path, images: ImageDataset) -> None:
    """`quantize --target arm-cpu-xnnpack` excludes the ops XNNPACK runs only in float (Div, Gelu, ...): the chain
    used to lose its GELU status for that, got Q/DQ between its ops, and `export` refused the Erf left alone
    (PP-OCRv6 rec). Now it is one float unit, and the TFLite export writes one GELU."""
    src = tmp_path / "gelu.onnx"
    onnx.save(gelu_model(), str(src))
    q, report = quantize(src, images, QuantizeConfig(runtime="integer", exclude=frozenset({"Div", "Gelu"})))
    assert all(report.kept_float.get(n) == GELU_REASON for n in ("div", "erf", "add1", "mul_x", "half"))
    assert "GELU" in [o.builtin for o in read_tflite(onnx_to_tflite(q).data).ops]
