"""Forms newer exporters write that older passes did not expect: Pad with an ``axes`` input (opset 18, the
torch dynamo exporter and tf2onnx). ONNX Runtime's QDQ optimizer built an out-of-range Gather from a quantized
one (quantize crashed in bias correction; with it off, the file did not run), and the TFLite converter refused
it. Real ONNX Runtime and LiteRT sessions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.cli_helpers import invoke
from tests.conftest import CALIB_DIR


def _opset18(nodes: list[onnx.NodeProto], inits: dict[str, np.ndarray], name: str) -> onnx.ModelProto:
    """x [1, 3, 32, 32] -> nodes -> y [1, 8, 32, 32] at opset 18, checked."""
    g = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 32, 32])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )  # fmt: skip
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(m, full_check=True)
    return m


def pad18_model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits = {
        "w1": (rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32),
        "w2": (rng.standard_normal((8, 8, 3, 3)) * 0.1).astype(np.float32),
        "pads": np.array([1, 1, 1, 1], np.int64),  # H and W: begin, begin, end, end
        "axes": np.array([2, 3], np.int64),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Pad", ["r1", "pads", "", "axes"], ["p"], name="pad"),
        helper.make_node("Conv", ["p", "w2"], ["y"], name="conv2"),
    ]
    return _opset18(nodes, inits, "pad18")


def test_pad_with_axes_quantizes_runs_and_exports(tmp_path: Path) -> None:
    src = tmp_path / "pad18.onnx"
    onnx.save(pad18_model(), str(src))
    q = tmp_path / "pad18.int8.onnx"
    res = invoke("quantize", src, "-o", q, "--calib", CALIB_DIR, "--samples", "16")
    assert res.exit_code == 0, res.output
    pad = next(n for n in onnx.load(str(q)).graph.node if n.op_type == "Pad")
    assert len(pad.input) < 4  # pads for every axis, no axes input
    import onnxruntime as ort

    x = np.random.default_rng(1).random((1, 3, 32, 32)).astype(np.float32)
    ref = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = ort.InferenceSession(str(q), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]  # ORT_ENABLE_ALL
    assert 10 * np.log10(np.sum(ref**2) / np.sum((ref - got) ** 2)) > 25
    res = invoke("export", src, "--to", "tflite", "-o", tmp_path / "pad18.tflite")  # parity checked inside
    assert res.exit_code == 0, res.output


def dynamo_raw_model() -> onnx.ModelProto:
    """torch.onnx.export(dynamo=True, optimize=False): shapes as Constant(value_ints), the conv's zero bias as
    Expand(CastLike(0.0, activation), shape), then BatchNormalization."""
    rng = np.random.default_rng(0)
    inits = {
        "w": (rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32),
        "zero": np.array(0.0, np.float32),
        "bn_s": (1 + 0.1 * rng.standard_normal(8)).astype(np.float32),
        "bn_b": (0.1 * rng.standard_normal(8)).astype(np.float32),
        "bn_m": (0.1 * rng.standard_normal(8)).astype(np.float32),
        "bn_v": (0.5 + rng.random(8)).astype(np.float32),
    }
    nodes = [
        helper.make_node("Constant", [], ["shape"], name="shape_const", value_ints=[8]),
        helper.make_node("CastLike", ["zero", "x"], ["z"], name="castlike"),
        helper.make_node("Expand", ["z", "shape"], ["bias"], name="expand"),
        helper.make_node("Conv", ["x", "w", "bias"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "bn_s", "bn_b", "bn_m", "bn_v"], ["b"], name="bn"),
        helper.make_node("Relu", ["b"], ["y"], name="relu"),
    ]
    return _opset18(nodes, inits, "raw")


def test_unoptimized_dynamo_constants_fold(tmp_path: Path) -> None:
    """Constant(value_ints) and CastLike of a constant are constants: the bias folds, BatchNorm folds into the
    Conv, nothing is kept float, and the TFLite export has no Constant/CastLike left to refuse."""
    import json

    src = tmp_path / "raw.onnx"
    onnx.save(dynamo_raw_model(), str(src))
    q, js = tmp_path / "raw.int8.onnx", tmp_path / "q.json"
    res = invoke("quantize", src, "-o", q, "--calib", CALIB_DIR, "--samples", "16", "--json", js)
    assert res.exit_code == 0, res.output
    assert json.loads(js.read_text())["kept_float"] == {}
    assert not {"BatchNormalization", "CastLike", "Expand", "Constant"} & {
        n.op_type for n in onnx.load(str(q)).graph.node
    }
    res = invoke("export", src, "--to", "tflite", "-o", tmp_path / "raw.tflite")
    assert res.exit_code == 0, res.output


def _pad_first(value: float) -> onnx.ModelProto:
    """Legacy torch F.pad on the image, then a Conv (TF-style SAME emulation in ported EfficientNets)."""
    w = (np.random.default_rng(0).standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32)
    nodes = [
        helper.make_node("Pad", ["x", "pads", "v"], ["p"], name="pad"),
        helper.make_node("Conv", ["p", "w"], ["c"], name="conv", strides=[2, 2]),
        helper.make_node("Relu", ["c"], ["y"], name="relu"),
    ]
    inits = {"w": w, "pads": np.array([0, 0, 0, 0, 0, 0, 1, 1], np.int64), "v": np.array(value, np.float32)}
    g = helper.make_graph(
        nodes, "padin", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )  # fmt: skip
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def test_a_zero_pad_is_integer_on_an_integer_target(tmp_path: Path) -> None:
    """--target ethos-u55: a zero Pad moves values, so it is integer like MaxPool (TFLite PAD, Vela runs it)
    and the model's own int8 file exports with int8 I/O. A Pad of 1.0 writes a value that may not be on the
    grid: kept float, with its reason (negative control)."""
    import json

    src, q, js = tmp_path / "padin.onnx", tmp_path / "padin.u55.onnx", tmp_path / "q.json"
    onnx.save(_pad_first(0.0), str(src))
    res = invoke("quantize", src, "-o", q, "--target", "ethos-u55", "--calib", CALIB_DIR, "--samples", "16", "--json", js)  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "pad" not in json.loads(js.read_text())["kept_float"]
    producer = {o: n for n in onnx.load(str(q)).graph.node for o in n.output}
    pad = next(n for n in onnx.load(str(q)).graph.node if n.op_type == "Pad")
    assert producer[pad.input[0]].op_type == "DequantizeLinear"
    res = invoke("export", q, "-o", tmp_path / "padin.tflite", "--target", "ethos-u55")
    assert res.exit_code == 0, res.output
    onnx.save(_pad_first(1.0), str(src))
    res = invoke("quantize", src, "-o", q, "--target", "ethos-u55", "--calib", CALIB_DIR, "--samples", "16", "--json", js)  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "non-zero constant value" in json.loads(js.read_text())["kept_float"]["pad"]


def test_a_uint8_image_input_exports_as_uint8_then_cast(tmp_path: Path) -> None:
    """tf2onnx exports of TF models that take raw bytes: uint8 NHWC input -> Cast -> Transpose -> (x - 127.5) /
    127.5. The TFLite file takes the same uint8 bytes and casts them (it refused any non-float input), and
    parity feeds both the same raw pixels."""
    rng = np.random.default_rng(0)
    inits = {
        "sub": np.array(127.5, np.float32), "mul": np.array(1 / 127.5, np.float32),
        "w": (rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32),
        "fcw": (rng.standard_normal((10, 8)) * 0.3).astype(np.float32),
    }  # fmt: skip
    nodes = [
        helper.make_node("Cast", ["image_tensor:0"], ["xf"], name="cast", to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["xf"], ["xt"], name="to_nchw", perm=[0, 3, 1, 2]),
        helper.make_node("Sub", ["xt", "sub"], ["xs"], name="sub"),
        helper.make_node("Mul", ["xs", "mul"], ["xn"], name="mul"),
        helper.make_node("Conv", ["xn", "w"], ["c"], name="conv", pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fcw"], ["y"], name="fc", transB=1),
    ]
    g = helper.make_graph(
        nodes, "u8", [helper.make_tensor_value_info("image_tensor:0", TensorProto.UINT8, [1, 32, 32, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )  # fmt: skip
    src = tmp_path / "u8.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(src))
    spec = tmp_path / "u8.toml"
    spec.write_text('schema_version = 1\ncolor_order = "RGB"\nlayout = "NHWC"\ndtype = "uint8"\nresize = [32, 32]\n')
    out = tmp_path / "u8.tflite"
    res = invoke("export", src, "-o", out, "--preprocess", spec)  # parity on the bundled images, raw bytes
    assert res.exit_code == 0, res.output
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(out))
    (d,) = it.get_input_details()
    assert d["dtype"] == np.uint8 and tuple(d["shape"]) == (1, 32, 32, 3)
