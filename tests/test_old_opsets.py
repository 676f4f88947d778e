"""Classic ONNX Model Zoo files: opset 7-12, IR 3 (every weight also listed as a graph input), nodes without
names. Each used to fail somewhere: weights listed as inputs were fed as runtime inputs after BN folding, the
bias-correction graph was built at opset 8 (no QuantizeLinear there), and the opset-13 conversion inside the
writer moved node positions, so unnamed nodes were matched to the wrong ops (a KeyError, or a MatMul silently
left float). Real ONNX files, real ONNX Runtime and LiteRT sessions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.cli_helpers import invoke
from tests.conftest import CALIB_DIR

RNG = np.random.default_rng(0)


def _w(name: str, *shape: int, scale: float = 0.2) -> onnx.TensorProto:
    return numpy_helper.from_array((RNG.standard_normal(shape) * scale).astype(np.float32), name)


def _bn(p: str, c: int) -> list[onnx.TensorProto]:
    return [
        numpy_helper.from_array((1 + 0.1 * RNG.standard_normal(c)).astype(np.float32), f"{p}_s"),
        numpy_helper.from_array((0.1 * RNG.standard_normal(c)).astype(np.float32), f"{p}_b"),
        numpy_helper.from_array((0.1 * RNG.standard_normal(c)).astype(np.float32), f"{p}_m"),
        numpy_helper.from_array((0.5 + RNG.random(c)).astype(np.float32), f"{p}_v"),
    ]


def zoo_model(opset: int, *, named: bool, weights_as_inputs: bool) -> onnx.ModelProto:
    """A small classifier the way opset-7/8 exporters wrote it: Conv+BN(spatial)+Relu, Clip with min/max
    attributes (opset < 11), MaxPool, a three-input Sum, GlobalAveragePool, Flatten, Gemm(transB), Softmax."""
    inits = [_w("w1", 8, 3, 3, 3), *_bn("bn1", 8), _w("w2", 8, 8, 3, 3, scale=0.1), *_bn("bn2", 8),
             _w("w3", 8, 1, 3, 3), _w("fcw", 10, 8), _w("fcb", 10)]  # fmt: skip
    bn_attrs = {"epsilon": 1e-5, **({"spatial": 1} if opset < 9 else {})}
    clip = (
        helper.make_node("Clip", ["b2"], ["r2"], min=0.0, max=6.0)
        if opset < 11
        else helper.make_node("Clip", ["b2", "lo", "hi"], ["r2"])
    )
    if opset >= 11:
        inits += [numpy_helper.from_array(np.array(0, np.float32), "lo"), numpy_helper.from_array(np.array(6, np.float32), "hi")]  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["data_0", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "bn1_s", "bn1_b", "bn1_m", "bn1_v"], ["b1"], **bn_attrs),
        helper.make_node("Relu", ["b1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c2", "bn2_s", "bn2_b", "bn2_m", "bn2_v"], ["b2"], **bn_attrs),
        clip,
        helper.make_node("Conv", ["r2", "w3"], ["c3"], pads=[1, 1, 1, 1], group=8),
        helper.make_node("Sum", ["c3", "r2", "p1"], ["s"]),
        helper.make_node("GlobalAveragePool", ["s"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "fcw", "fcb"], ["fc"], transB=1),
        helper.make_node("Softmax", ["fc"], ["prob"], axis=1),
    ]
    if named:
        for i, n in enumerate(nodes):
            n.name = f"{n.op_type.lower()}_{i}"
    inputs = [helper.make_tensor_value_info("data_0", TensorProto.FLOAT, [1, 3, 32, 32])]
    if weights_as_inputs:
        inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in inits]
    g = helper.make_graph(nodes, "zoo", inputs, [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, 10])], inits)  # fmt: skip
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="zoo-style")
    m.ir_version = 3 if weights_as_inputs else 4
    onnx.checker.check_model(m, full_check=True)
    return m


def _probs(path: Path, x: np.ndarray) -> np.ndarray:
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([s.run(None, {s.get_inputs()[0].name: x[i : i + 1]})[0] for i in range(len(x))])


@pytest.mark.parametrize(
    ("opset", "named", "weights_as_inputs"),
    [(8, True, True), (8, False, True), (8, False, False), (12, False, False)],
    ids=["op8-ir3-named", "op8-ir3-unnamed", "op8-unnamed", "op12-unnamed"],
)
def test_zoo_style_model_quantizes_every_layer(
    tmp_path: Path, opset: int, named: bool, weights_as_inputs: bool
) -> None:
    src = tmp_path / "zoo.onnx"
    onnx.save(zoo_model(opset, named=named, weights_as_inputs=weights_as_inputs), str(src))
    out, js = tmp_path / "zoo.int8.onnx", tmp_path / "q.json"
    res = invoke("quantize", src, "-o", out, "--calib", CALIB_DIR, "--samples", "32", "--json", js)
    assert res.exit_code == 0, res.output
    rep = json.loads(js.read_text())
    q = onnx.load(str(out))
    assert {o.version for o in q.opset_import if o.domain in ("", "ai.onnx")} >= {13}
    assert rep["weights_quantized"] == 4  # 3 Conv + the Gemm, named or not (unnamed: the Gemm stayed float)
    assert not [k for k in rep["kept_float"] if not k.lower().startswith("softmax")], rep["kept_float"]
    assert not [i.name for i in q.graph.input if i.name != "data_0"]  # weights are constants, not feeds
    from edgecnn.preprocess import list_images, load_spec

    spec = load_spec(CALIB_DIR.parent / "preprocess.toml")
    x = np.stack([spec.load(p) for p in list_images(CALIB_DIR)[:16]]).astype(np.float32)
    ref, got = _probs(src, x), _probs(out, x)
    sqnr = 10 * np.log10(np.sum(ref**2) / np.sum((ref - got) ** 2))
    assert sqnr > 25, sqnr


def test_zoo_style_model_exports_to_tflite_with_parity(tmp_path: Path) -> None:
    """IR 3 with weights as inputs: the converter used to turn the 13 weights into runtime inputs."""
    src = tmp_path / "zoo.onnx"
    onnx.save(zoo_model(8, named=False, weights_as_inputs=True), str(src))
    res = invoke("export", src, "--to", "tflite", "-o", tmp_path / "zoo.tflite")
    assert res.exit_code == 0, res.output
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(tmp_path / "zoo.tflite"))
    assert len(it.get_input_details()) == 1


@pytest.mark.parametrize("count_include_pad", [1, 0])
def test_average_pool_counting_its_padding_exports_exactly(tmp_path: Path, count_include_pad: int) -> None:
    """Caffe-style Inception pools: 3x3, stride 1, pads 1, count_include_pad=1. TFLite's SAME average divides
    an edge window by its valid elements; ONNX divides by 9 there. Exported as an explicit zero PAD + VALID pool
    (parity used to fail at 22 dB); count_include_pad=0 is TFLite's SAME as it is."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 16, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 16, 16])
    pool = helper.make_node("AveragePool", ["c"], ["y"], name="pool", kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                            count_include_pad=count_include_pad)  # fmt: skip
    conv = helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1])
    g = helper.make_graph([conv, pool], "pool", [x], [y], [_w("w", 4, 4, 3, 3)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 11)])
    src = tmp_path / "pool.onnx"
    onnx.save(m, str(src))
    res = invoke("export", src, "--to", "tflite", "-o", tmp_path / "pool.tflite")
    assert res.exit_code == 0, res.output
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(tmp_path / "pool.tflite"))
    it.allocate_tensors()
    xv = RNG.standard_normal((1, 4, 16, 16)).astype(np.float32) + 2.0  # a mean far from 0: edges differ
    nhwc = tuple(it.get_input_details()[0]["shape"]) == (1, 16, 16, 4)
    it.set_tensor(it.get_input_details()[0]["index"], xv.transpose(0, 2, 3, 1) if nhwc else xv)
    it.invoke()
    got = it.get_tensor(it.get_output_details()[0]["index"])
    got = got.transpose(0, 3, 1, 2) if got.shape[-1] == 4 else got
    ref = _probs(src, xv)
    assert np.abs(got - ref).max() < 1e-4
