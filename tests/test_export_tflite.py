"""onnx_to_tflite on the real LiteRT interpreter against ONNX Runtime: float32, float16, INT8 from edgecnn's QDQ."""

from __future__ import annotations

import collections
import json
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from ai_edge_litert.interpreter import Interpreter
from onnx import TensorProto, helper, numpy_helper

from edgecnn.errors import BadInputError, ModelError
from edgecnn.export.tflite_writer import TFLiteGraph, read_tflite
from edgecnn.export.to_tflite import UnsupportedOpError, onnx_to_tflite, read_preprocess
from edgecnn.preprocess import Layout, load_spec
from edgecnn.quantize.api import QuantizeConfig, quantize
from edgecnn.quantize.dataset import ImageDataset
from edgecnn.quantize.params import QuantScheme
from tests.conftest import CALIB_DIR, EVAL_DIR, ROOT, SAMPLE_MODEL
from tests.onnx_builders import make_model, rng_w

SPEC = ROOT / "calibration_data" / "preprocess.toml"


# -- helpers ---------------------------------------------------------------------------------------------
class Lite:
    """A LiteRT interpreter over exported bytes; inputs given in ONNX (NCHW) order are transposed for it."""

    def __init__(self, data: bytes, threads: int = 2) -> None:
        self.it = Interpreter(model_content=data, num_threads=threads)
        self.it.allocate_tensors()
        self.inp = self.it.get_input_details()
        self.out = self.it.get_output_details()

    def __call__(self, *xs: np.ndarray) -> list[np.ndarray]:
        for d, x in zip(self.inp, xs, strict=True):
            if x.ndim == 4 and tuple(d["shape"]) != x.shape:
                x = x.transpose(0, 2, 3, 1)
            if d["dtype"] != np.float32:
                s, z = d["quantization"]
                x = np.clip(np.rint(x / s) + z, np.iinfo(d["dtype"]).min, np.iinfo(d["dtype"]).max)
            self.it.set_tensor(d["index"], np.ascontiguousarray(x.astype(d["dtype"])))
        self.it.invoke()
        outs = []
        for d in self.out:
            y = self.it.get_tensor(d["index"])
            if d["dtype"] != np.float32 and d["quantization"][0]:
                s, z = d["quantization"]
                y = (y.astype(np.float32) - z) * s
            outs.append(y.copy())
        return outs


def ort_run(model: onnx.ModelProto, *xs: np.ndarray) -> list[np.ndarray]:
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {i.name: x for i, x in zip(s.get_inputs(), xs, strict=True)})


def int8_ops(g: TFLiteGraph) -> Counter:
    return Counter(op.builtin for op in g.ops if g.tensors[op.outputs[0]].dtype == "int8")


def eval_images(n: int | None = None) -> list[np.ndarray]:
    ds = ImageDataset.open(EVAL_DIR, load_spec(SPEC), n)
    return list(ds.batches(1))


def qdq_of(
    model_path: Path,
    *,
    per_channel: bool = True,
    outputs: bool = False,
    spec=None,
    samples: int = 64,
    runtime: str = "tflite-cpu",
):
    scheme = QuantScheme(weights_per_channel=per_channel, quantize_outputs=outputs)
    ds = ImageDataset.open(CALIB_DIR, spec or load_spec(SPEC), samples)
    # the placement `export` quantizes with (export.api: runtime "tflite-cpu"), not ORT's own
    q, _ = quantize(model_path, ds, QuantizeConfig(scheme=scheme, runtime=runtime))
    return q


@pytest.fixture(scope="module")
def sample_qdq() -> onnx.ModelProto:
    return qdq_of(SAMPLE_MODEL)


# -- float --------------------------------------------------------------------------------------------------
def test_float32_sample_cnn_matches_onnxruntime_and_carries_nhwc_preprocess() -> None:
    m = onnx.load(str(SAMPLE_MODEL))
    ex = onnx_to_tflite(m, preprocess=load_spec(SPEC))
    assert (ex.precision, ex.io_dtype, ex.input_layout) == ("float32", "float32", "NHWC")
    lite = Lite(ex.data)
    assert list(lite.inp[0]["shape"]) == [1, 32, 32, 3]
    worst = 0.0
    for x in eval_images(16):
        (y,) = lite(x)
        (r,) = ort_run(m, x)
        worst = max(worst, float(np.abs(y - r).max()))
    assert worst < 1e-4, worst
    spec = read_preprocess(ex.data)
    assert spec is not None and spec.layout is Layout.NHWC
    assert replace(spec, layout=Layout.NCHW, source="") == replace(load_spec(SPEC), source="")
    g = read_tflite(ex.data)
    assert "TRANSPOSE" not in {op.builtin for op in g.ops}  # GAP -> Flatten needs no transpose
    assert any("BatchNormalization" in f for f in ex.folded)


def test_float16_stores_fp16_weights_with_dequantize() -> None:
    m = onnx.load(str(SAMPLE_MODEL))
    ex32, ex16 = onnx_to_tflite(m), onnx_to_tflite(m, precision="float16")
    g = read_tflite(ex16.data)
    fp16 = [t for t in g.tensors if t.dtype == "float16"]
    assert fp16 and all(t.has_data for t in fp16)
    deq = [op for op in g.ops if op.builtin == "DEQUANTIZE"]
    assert len(deq) == len(fp16)
    assert len(ex16.data) < 0.6 * len(ex32.data)
    x = eval_images(4)
    for xi in x:
        (a,) = Lite(ex16.data)(xi)
        (b,) = ort_run(m, xi)
        assert np.abs(a - b).max() < 0.05 * np.abs(b).max()
        assert a.argmax() == b.argmax()


# -- int8 ---------------------------------------------------------------------------------------------------
def test_int8_sample_cnn_agrees_with_its_qdq_model_on_the_eval_set(sample_qdq: onnx.ModelProto) -> None:
    ex = onnx_to_tflite(sample_qdq)
    assert ex.precision == "int8"
    g = read_tflite(ex.data)
    ops = Counter(op.builtin for op in g.ops)
    # integer convolutions, one QUANTIZE at the input, one DEQUANTIZE before the float classifier
    assert int8_ops(g)["CONV_2D"] == 5 and int8_ops(g)["DEPTHWISE_CONV_2D"] == 4
    assert ops["QUANTIZE"] == 1 and ops["DEQUANTIZE"] == 1 and ops["TRANSPOSE"] == 0
    lite = Lite(ex.data)
    sess = ort.InferenceSession(sample_qdq.SerializeToString(), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    images = eval_images()
    assert len(images) == 1000
    agree = 0
    for x in images:
        (y,) = lite(x)
        (r,) = sess.run(None, {name: x})
        agree += int(y.argmax() == r.argmax())
    assert agree / len(images) >= 0.995, agree


def _q_tensor_params(q: onnx.ModelProto) -> dict[str, tuple[float, int, str]]:
    inits = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}
    out = {}
    for n in q.graph.node:
        if n.op_type == "QuantizeLinear":
            zp = inits[n.input[2]]
            out[n.input[0]] = (float(inits[n.input[1]]), int(zp) - (128 if zp.dtype == np.uint8 else 0), n.output[0])
    return out


def test_int8_scales_and_zero_points_equal_the_qdq_model(sample_qdq: onnx.ModelProto) -> None:
    g = read_tflite(onnx_to_tflite(sample_qdq).data)
    names = {t.name: t for t in g.tensors}
    params = _q_tensor_params(sample_qdq)
    assert len(params) >= 10
    for x, (scale, zp, t) in params.items():
        tt = names.get(x) if names.get(x) is not None and names[x].dtype == "int8" else names[t]
        assert tt.dtype == "int8", x
        assert np.float32(tt.scale[0]) == np.float32(scale), (x, tt.scale, scale)
        assert tt.zero_point == (zp,), (x, tt.zero_point, zp)
    # weights: per-channel, on dim 0 of OHWI (CONV_2D) and dim 3 of 1HWC (DEPTHWISE_CONV_2D), the QDQ scales
    inits = {t.name: numpy_helper.to_array(t) for t in sample_qdq.graph.initializer}
    checked = 0
    for op in g.ops:
        if op.builtin not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            continue
        w = g.tensors[op.inputs[1]]
        base = w.name.removesuffix("/tfl")
        want = inits[base.removesuffix("_dq") + "_scale"]
        assert w.dtype == "int8" and len(w.scale) == w.shape[w.quantized_dimension] == want.size
        assert w.quantized_dimension == (3 if op.builtin == "DEPTHWISE_CONV_2D" else 0)
        np.testing.assert_array_equal(np.float32(w.scale), want)
        b = g.tensors[op.inputs[2]]
        in_s = g.tensors[op.inputs[0]].scale[0]
        assert b.dtype == "int32"
        np.testing.assert_allclose(b.scale, np.float32(in_s) * want, rtol=1e-6)
        checked += 1
    assert checked == 9


def test_per_tensor_and_per_channel_weights_both_export() -> None:
    for per_channel in (True, False):
        q = qdq_of(SAMPLE_MODEL, per_channel=per_channel, samples=16)
        ex = onnx_to_tflite(q)
        g = read_tflite(ex.data)
        convs = [op for op in g.ops if op.builtin == "CONV_2D"]
        counts = {len(g.tensors[op.inputs[1]].scale) for op in convs}
        if per_channel:
            assert counts == {g.tensors[op.inputs[1]].shape[0] for op in convs} or min(counts) > 1
        else:
            assert counts == {1}
        lite = Lite(ex.data)
        for x in eval_images(8):
            (y,) = lite(x)
            (r,) = ort_run(q, x)
            assert np.abs(y - r).max() <= 0.05 * np.abs(r).max() + 1e-3


def test_int8_io_for_npus(sample_qdq: onnx.ModelProto) -> None:
    # outputs float in the QDQ model: int8 output is impossible, said with the output's name
    with pytest.raises(BadInputError, match="output 'logits'"):
        onnx_to_tflite(sample_qdq, io_dtype="int8")
    q = qdq_of(SAMPLE_MODEL, outputs=True, samples=16)
    for io in ("int8", "uint8"):
        ex = onnx_to_tflite(q, io_dtype=io)
        lite = Lite(ex.data)
        assert lite.inp[0]["dtype"] == np.dtype(io) and lite.out[0]["dtype"] == np.dtype(io)
        g = read_tflite(ex.data)
        ops = Counter(op.builtin for op in g.ops)
        assert ops["DEQUANTIZE"] == 0 and "FULLY_CONNECTED" in int8_ops(g)
        assert ops["QUANTIZE"] == (0 if io == "int8" else 2)
        io_meta = json.loads(g.metadata["edgecnn.io"])
        assert io_meta["inputs"][0]["dtype"] == io
        s, z = lite.inp[0]["quantization"]
        assert (np.float32(io_meta["inputs"][0]["scale"]), io_meta["inputs"][0]["zero_point"]) == (np.float32(s), z)
        spec = read_preprocess(ex.data)
        assert spec is not None and spec.dtype == "float32" and spec.layout is Layout.NHWC
        agree = sum(int(lite(x)[0].argmax() == ort_run(q, x)[0].argmax()) for x in eval_images(50))
        assert agree >= 49


def test_vela_compiles_the_int8_io_export_entirely_onto_the_npu(tmp_path: Path) -> None:
    q = qdq_of(SAMPLE_MODEL, outputs=True, samples=16)
    src = tmp_path / "s8.tflite"
    src.write_bytes(onnx_to_tflite(q, io_dtype="int8").data)
    vela = shutil.which("vela") or str(Path(sys.executable).with_name("vela"))
    r = subprocess.run(
        [vela, str(src), "--output-dir", str(tmp_path / "out"), "--accelerator-config", "ethos-u55-128"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "CPU operators = 0 " in r.stdout, r.stdout
    assert [op.builtin for op in read_tflite((tmp_path / "out" / "s8_vela.tflite").read_bytes()).ops] == ["CUSTOM"]


# -- YOLO-style detector block -----------------------------------------------------------------------------------
def yolo_block(hw: int = 32) -> onnx.ModelProto:
    """Conv + SiLU (Sigmoid * Mul), Split, Concat, MaxPool (SPPF), Resize nearest 2x, a shape subgraph feeding a
    Reshape, a Reshape/Transpose/Softmax head and Add/Sub/Mul/Div with constants."""
    nodes: list[onnx.NodeProto] = []
    inits: dict[str, np.ndarray] = {}
    k = [0]

    def conv_silu(x: str, cin: int, cout: int, ksz: int = 3, stride: int = 1, act: bool = True) -> str:
        k[0] += 1
        i = k[0]
        inits[f"w{i}"] = rng_w(cout, cin, ksz, ksz, seed=i) * np.float32(np.sqrt(2.0 / (cin * ksz * ksz)) * 2)
        inits[f"b{i}"] = rng_w(cout, seed=100 + i) * np.float32(0.2)
        p = ksz // 2
        nodes.append(
            helper.make_node(
                "Conv",
                [x, f"w{i}", f"b{i}"],
                [f"c{i}"],
                name=f"conv{i}",
                kernel_shape=[ksz, ksz],
                pads=[p] * 4,
                strides=[stride, stride],
            )
        )
        if not act:
            return f"c{i}"
        nodes.append(helper.make_node("Sigmoid", [f"c{i}"], [f"s{i}"], name=f"sig{i}"))
        nodes.append(helper.make_node("Mul", [f"c{i}", f"s{i}"], [f"a{i}"], name=f"silu{i}"))
        return f"a{i}"

    f0 = conv_silu("input", 3, 8, 3, 1)  # hw
    x = conv_silu("input", 3, 16, 3, 2)  # hw/2
    c = conv_silu(x, 16, 32)
    nodes.append(helper.make_node("Split", ["c", "split"], ["sa", "sb"], name="split", axis=1))
    nodes[-1].input[0] = c
    inits["split"] = np.array([16, 16], np.int64)
    b2 = conv_silu("sb", 16, 16)
    nodes.append(helper.make_node("Concat", ["sa", "sb", b2], ["cat1"], name="cat1", axis=1))
    p = conv_silu("cat1", 48, 32, 1)
    nodes.append(helper.make_node("MaxPool", [p], ["mp"], name="sppf", kernel_shape=[5, 5], pads=[2] * 4))
    nodes.append(helper.make_node("Concat", [p, "mp"], ["cat2"], name="cat2", axis=1))
    q = conv_silu("cat2", 64, 32, 1)
    inits["scales"] = np.array([1, 1, 2, 2], np.float32)
    nodes.append(
        helper.make_node(
            "Resize",
            [q, "", "scales"],
            ["up"],
            name="up",
            mode="nearest",
            coordinate_transformation_mode="asymmetric",
            nearest_mode="floor",
        )
    )
    nodes.append(helper.make_node("Concat", ["up", f0], ["cat3"], name="cat3", axis=1))
    # head 1: DFL-style distribution, Reshape via a shape subgraph, Transpose, Softmax over the bins
    d = conv_silu("cat3", 40, 64, 1, act=False)
    inits["i0"] = np.array(0, np.int64)
    inits["rest"] = np.array([4, 16, -1], np.int64)
    nodes += [
        helper.make_node("Shape", [d], ["d_shape"], name="shape"),
        helper.make_node("Gather", ["d_shape", "i0"], ["d_batch"], name="gather", axis=0),
        helper.make_node("Unsqueeze", ["d_batch", "ax0"], ["d_batch1"], name="unsq"),
        helper.make_node("Concat", ["d_batch1", "rest"], ["d_newshape"], name="shape_cat", axis=0),
        helper.make_node("Reshape", [d, "d_newshape"], ["d_r"], name="head_reshape"),
        helper.make_node("Transpose", ["d_r"], ["d_t"], name="head_transpose", perm=[0, 2, 1, 3]),
        helper.make_node("Softmax", ["d_t"], ["dist"], name="head_softmax", axis=1),
    ]
    inits["ax0"] = np.array([0], np.int64)
    # head 2: boxes with constant arithmetic
    bx = conv_silu("cat3", 40, 4, 1, act=False)
    inits["k_sub"] = np.array([0.5, -0.5, 0.25, 0.0], np.float32).reshape(1, 4, 1, 1)
    inits["k_mul"] = np.float32(2.0).reshape(())
    inits["k_div"] = np.array(4.0, np.float32)
    inits["k_add"] = np.float32(1.0).reshape(1, 1, 1, 1)
    inits["box_shape"] = np.array([0, 4, -1], np.int64)
    nodes += [
        helper.make_node("Sub", [bx, "k_sub"], ["b_sub"], name="b_sub"),
        helper.make_node("Mul", ["b_sub", "k_mul"], ["b_mul"], name="b_mul"),
        helper.make_node("Div", ["b_mul", "k_div"], ["b_div"], name="b_div"),
        helper.make_node("Add", ["b_div", "k_add"], ["b_add"], name="b_add"),
        helper.make_node("Reshape", ["b_add", "box_shape"], ["boxes"], name="box_reshape"),
    ]
    # head 3: class scores
    cl = conv_silu("cat3", 40, 3, 1, act=False)
    nodes.append(helper.make_node("Sigmoid", [cl], ["scores"], name="cls_sigmoid"))
    return make_model(nodes, [("input", [1, 3, hw, hw])], [("dist", None), ("boxes", None), ("scores", None)], inits)


@pytest.fixture(scope="module")
def yolo_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    m = yolo_block()
    onnx.checker.check_model(m, full_check=True)
    path = tmp_path_factory.mktemp("yolo") / "yolo.onnx"
    onnx.save(m, str(path))
    return m, qdq_of(path, samples=32)


def test_yolo_block_float_parity_and_shape_subgraph_folded(yolo_files) -> None:
    m, _ = yolo_files
    ex = onnx_to_tflite(m)
    assert {"shape", "gather", "unsq", "shape_cat"} <= set(ex.folded)
    g = read_tflite(ex.data)
    ops = {op.builtin for op in g.ops}
    assert {"LOGISTIC", "SPLIT", "CONCATENATION", "MAX_POOL_2D", "RESIZE_NEAREST_NEIGHBOR", "SOFTMAX"} <= ops
    assert "SHAPE" not in ops and "GATHER" not in ops
    # where ONNX order is needed: before the head Reshape and the box Reshape, the head's own Transpose, and
    # the two 4-D outputs (dist, scores) handed back in ONNX order
    assert sum(op.builtin == "TRANSPOSE" for op in g.ops) == 5
    lite = Lite(ex.data)
    for x in eval_images(4):
        got, ref = lite(x), ort_run(m, x)
        for a, b in zip(got, ref, strict=True):
            assert a.shape == b.shape
            assert np.abs(a - b).max() < 1e-4 * max(1.0, np.abs(b).max()), np.abs(a - b).max()


def test_yolo_block_int8_parity(yolo_files) -> None:
    _, q = yolo_files
    ex = onnx_to_tflite(q)
    g = read_tflite(ex.data)
    i8 = int8_ops(g)
    assert i8["CONV_2D"] == 9 and i8["LOGISTIC"] == 7 and i8["MUL"] == 6 and i8["CONCATENATION"] == 3
    assert i8["MAX_POOL_2D"] == 1 and i8["RESIZE_NEAREST_NEIGHBOR"] == 1
    lite = Lite(ex.data)
    for x in eval_images(4):
        got, ref = lite(x), ort_run(q, x)
        for a, b in zip(got, ref, strict=True):
            assert a.shape == b.shape
            err = np.abs(a - b)
            # int8 Sigmoid on a 1/256 grid vs ORT's float Sigmoid between Q/DQ: a few output steps at most
            assert err.mean() < 0.02 * max(np.abs(b).max(), 1e-3), (err.mean(), np.abs(b).max())
            sqnr = 10 * np.log10((b**2).mean() / max((err**2).mean(), 1e-20))
            assert sqnr > 25, sqnr


def test_yolo_block_int8_needs_no_requantization(yolo_files, tmp_path: Path) -> None:
    """The export placement writes the grids a .tflite needs: each Sigmoid output on LOGISTIC's fixed grid (scale
    1/256, zero point -128) and each Concat with its inputs and their sources on one grid, so the file has no
    QUANTIZE but the input's. Negative control: the ORT CPU placement (calibrated Sigmoid grids, only inputs
    that feed nothing else join a Concat's grid) costs a QUANTIZE after each LOGISTIC and before Concats, and
    is no closer to the float model."""
    m, q = yolo_files
    path = tmp_path / "yolo.onnx"
    onnx.save(m, str(path))
    ctl = qdq_of(path, samples=32, runtime="ort-float-act")
    ours, theirs = read_tflite(onnx_to_tflite(q).data), read_tflite(onnx_to_tflite(ctl).data)

    def count(g, op: str) -> int:
        return sum(o.builtin == op for o in g.ops)

    assert count(ours, "QUANTIZE") == 1, collections.Counter(o.builtin for o in ours.ops)
    assert count(theirs, "QUANTIZE") >= 1 + 5, collections.Counter(o.builtin for o in theirs.ops)
    lite = {"ours": Lite(onnx_to_tflite(q).data), "theirs": Lite(onnx_to_tflite(ctl).data)}
    xs = eval_images(8)
    refs = [ort_run(m, x) for x in xs]
    for k in range(len(refs[0])):  # each output: no further from the float model than the control
        ref = np.concatenate([np.ravel(r[k]) for r in refs]).astype(np.float64)
        sq = {}
        for name, run in lite.items():
            got = np.concatenate([np.ravel(run(x)[k]) for x in xs]).astype(np.float64)
            sq[name] = float(10 * np.log10((ref**2).sum() / max(((got - ref) ** 2).sum(), 1e-20)))
        assert sq["ours"] >= sq["theirs"] - 0.5, (k, sq)


def test_hand_written_qdq_conv_transpose_runs_int8_per_channel() -> None:
    """A QDQ model written by hand (int8 activations, as ORT's quantizer writes them), not by edgecnn."""
    w = rng_w(6, 4, 2, 2)
    w_s = (np.abs(w).max(axis=(0, 2, 3)) / 127).astype(np.float32)  # per output channel: axis 1
    wq = np.clip(np.rint(w / w_s[None, :, None, None]), -127, 127).astype(np.int8)
    x_s, y_s = np.float32(0.03), np.float32(0.05)
    b = rng_w(4, seed=3)
    bq = np.rint(b / (x_s * w_s)).astype(np.int32)
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
        helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=1),
        helper.make_node("DequantizeLinear", ["bq", "bs", "bz"], ["bd"], axis=0),
        helper.make_node(
            "ConvTranspose", ["xd", "wd", "bd"], ["c"], name="deconv", kernel_shape=[2, 2], strides=[2, 2]
        ),
        helper.make_node("QuantizeLinear", ["c", "ys", "yz"], ["cq"]),
        helper.make_node("DequantizeLinear", ["cq", "ys", "yz"], ["y"]),
    ]
    inits = {"xs": x_s, "xz": np.int8(0), "wq": wq, "ws": w_s, "wz": np.zeros(4, np.int8), "bq": bq,
             "bs": (x_s * w_s).astype(np.float32), "bz": np.zeros(4, np.int32), "ys": y_s, "yz": np.int8(3)}  # fmt: skip
    m = make_model(nodes, [("x", [1, 6, 5, 7])], [("y", [1, 4, 10, 14])], {k: np.asarray(v) for k, v in inits.items()})
    ex = onnx_to_tflite(m)
    g = read_tflite(ex.data)
    (op,) = [op for op in g.ops if op.builtin == "TRANSPOSE_CONV"]
    wt = g.tensors[op.inputs[1]]
    assert wt.dtype == "int8" and wt.shape == (4, 2, 2, 6) and wt.quantized_dimension == 0
    np.testing.assert_array_equal(np.float32(wt.scale), w_s)
    assert g.tensors[op.outputs[0]].dtype == "int8"
    x = np.random.default_rng(5).standard_normal((1, 6, 5, 7)).astype(np.float32)
    (got,), (ref,) = Lite(ex.data)(x), ort_run(m, x)
    assert np.abs(got - ref).max() <= float(y_s) + 1e-6  # at most one output step apart


@pytest.mark.parametrize("regrid", [True, False])
def test_codes_read_on_another_grid_than_written_export_exactly(regrid: bool) -> None:
    """Q(x) -> DQ on another grid -> Conv: how edgecnn's ONNX Runtime writer absorbs a scalar affine (y = s * h +
    b: the DQ reads h's codes on y's grid). The export maps each code to itself on the DQ's grid (an int8 MUL,
    then an ADD for the zero-point shift), so LiteRT agrees with ONNX Runtime to an output step. Control: a DQ on
    the Q's own grid is the same tensor (no MUL/ADD)."""
    x_s, x_z = np.float32(0.05), np.int8(3)
    d_s, d_z = (np.float32(0.035), np.int8(-10)) if regrid else (x_s, x_z)
    w = rng_w(4, 3, 3, 3)
    w_s = (np.abs(w).max(axis=(1, 2, 3)) / 127).astype(np.float32)
    wq = np.clip(np.rint(w / w_s[:, None, None, None]), -127, 127).astype(np.int8)
    y_s, y_z = np.float32(0.08), np.int8(0)
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "ds", "dz"], ["xd"], name="regrid_dq"),
        helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=0),
        helper.make_node("Conv", ["xd", "wd"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1] * 4),
        helper.make_node("QuantizeLinear", ["c", "ys", "yz"], ["cq"]),
        helper.make_node("DequantizeLinear", ["cq", "ys", "yz"], ["y"]),
    ]
    inits = {"xs": x_s, "xz": x_z, "ds": d_s, "dz": d_z, "wq": wq, "ws": w_s, "wz": np.zeros(4, np.int8),
             "ys": y_s, "yz": y_z}  # fmt: skip
    m = make_model(nodes, [("x", [1, 3, 8, 8])], [("y", [1, 4, 8, 8])], {k: np.asarray(v) for k, v in inits.items()})
    ex = onnx_to_tflite(m)
    ops = int8_ops(read_tflite(ex.data))
    assert (ops["MUL"], ops["ADD"]) == ((1, 1) if regrid else (0, 0)), ops
    x = np.random.default_rng(5).uniform(-3, 3, (1, 3, 8, 8)).astype(np.float32)
    (got,), (ref,) = Lite(ex.data)(x), ort_run(m, x)
    assert np.abs(got - ref).max() <= float(y_s) + 1e-6  # at most one output step apart


def test_int8_ops_that_need_one_grid_get_one(tmp_path: Path) -> None:
    """AveragePool and bilinear Resize average int8 values without rescaling, and Clip(-1, 2) would compare values
    on different grids: the export keeps them exact (same grid + requantize), checked against ORT."""
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("AveragePool", ["r1"], ["ap"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Resize", ["ap", "", "sc"], ["up"], mode="linear"),
        helper.make_node("Conv", ["up", "w2", "b2"], ["c2"], kernel_shape=[1, 1]),
        helper.make_node("Clip", ["c2", "lo", "hi"], ["cl"]),
        helper.make_node("GlobalAveragePool", ["cl"], ["g"]),
        helper.make_node("Flatten", ["g"], ["y"]),
    ]
    inits = {"w1": rng_w(8, 3, 3, 3), "b1": rng_w(8, seed=1), "sc": np.array([1, 1, 2, 2], np.float32),
             "w2": rng_w(4, 8, 1, 1, seed=2), "b2": rng_w(4, seed=3), "lo": np.float32(-1.0).reshape(()),
             "hi": np.float32(2.0).reshape(())}  # fmt: skip
    path = tmp_path / "grids.onnx"
    onnx.save(make_model(nodes, [("input", [1, 3, 32, 32])], [("y", None)], inits), str(path))
    q = qdq_of(path, samples=16)
    ex = onnx_to_tflite(q)
    g = read_tflite(ex.data)
    for op in g.ops:
        if op.builtin in ("AVERAGE_POOL_2D", "RESIZE_BILINEAR") and g.tensors[op.inputs[0]].dtype == "int8":
            i, o = g.tensors[op.inputs[0]], g.tensors[op.outputs[0]]
            assert (i.scale, i.zero_point) == (o.scale, o.zero_point), op.builtin
        if op.builtin in ("MAXIMUM", "MINIMUM"):  # raw int8 comparison: both operands on the output grid
            grids = {(g.tensors[i].scale, g.tensors[i].zero_point) for i in (*op.inputs, *op.outputs)}
            assert len(grids) == 1, grids
    assert {"AVERAGE_POOL_2D", "RESIZE_BILINEAR", "MAXIMUM", "MINIMUM"} <= set(int8_ops(g))
    out_scale = max(abs(np.asarray(ort_run(q, x)[0])).max() for x in eval_images(2)) / 127
    for x in eval_images(8):
        (y,) = Lite(ex.data)(x)
        (r,) = ort_run(q, x)
        assert np.abs(y - r).max() <= 4 * out_scale + 1e-4, (np.abs(y - r).max(), out_scale)


@pytest.mark.parametrize(("zp", "absorbed"), [(-128, True), (-20, False)])
def test_relu_between_qdq_is_absorbed_only_when_the_grid_is_non_negative(zp: int, absorbed: bool) -> None:
    """Conv -> Q -> DQ -> Relu -> Q -> DQ, as other quantizers write it: with the conv output's grid starting at
    real 0 the Relu changes nothing and disappears; with a grid reaching below 0 it must stay."""
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
        helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=0),
        helper.make_node("Conv", ["xd", "wd"], ["c"], kernel_shape=[1, 1]),
        helper.make_node("QuantizeLinear", ["c", "cs", "cz"], ["cq"]),
        helper.make_node("DequantizeLinear", ["cq", "cs", "cz"], ["cd"]),
        helper.make_node("Relu", ["cd"], ["r"], name="relu"),
        helper.make_node("QuantizeLinear", ["r", "cs", "cz"], ["rq"]),
        helper.make_node("DequantizeLinear", ["rq", "cs", "cz"], ["y"]),
    ]
    wq = np.random.default_rng(0).integers(-127, 128, (4, 3, 1, 1)).astype(np.int8)
    inits = {"xs": np.float32(0.02), "xz": np.int8(0), "wq": wq, "ws": np.full(4, 0.01, np.float32),
             "wz": np.zeros(4, np.int8), "cs": np.float32(0.01), "cz": np.int8(zp)}  # fmt: skip
    m = make_model(nodes, [("x", [1, 3, 6, 6])], [("y", [1, 4, 6, 6])], {k: np.asarray(v) for k, v in inits.items()})
    ex = onnx_to_tflite(m)
    ops = [op.builtin for op in read_tflite(ex.data).ops]
    assert ("RELU" not in ops) is absorbed, ops
    x = np.random.default_rng(1).standard_normal((1, 3, 6, 6)).astype(np.float32)
    (got,), (ref,) = Lite(ex.data)(x), ort_run(m, x)
    assert np.abs(got - ref).max() <= 0.01 + 1e-6


# -- benchmark models (low resolution keeps the test fast) --------------------------------------------------------
def _bench_model(name: str, hw: int) -> onnx.ModelProto:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import build_models as bm

    m, _ = bm.BUILDERS[name](np.random.default_rng(bm.model_seed(name, 0)), 0)
    dims = m.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_value = dims[3].dim_value = hw
    del m.graph.value_info[:]
    return m


@pytest.mark.parametrize("name", ["resnet18", "mobilenetv2"])
def test_benchmark_models_int8_convert_and_run(name: str, tmp_path: Path) -> None:
    m = _bench_model(name, 64)
    path = tmp_path / f"{name}.onnx"
    onnx.save(m, str(path))
    spec = replace(load_spec(SPEC), resize=(64, 64))
    q = qdq_of(path, spec=spec, samples=4)
    ex = onnx_to_tflite(q)
    g = read_tflite(ex.data)
    ops = Counter(op.builtin for op in g.ops)
    i8 = int8_ops(g)
    assert ops["TRANSPOSE"] == 0 and ops["QUANTIZE"] == 1 and ops["DEQUANTIZE"] == 1
    assert i8["CONV_2D"] + i8["DEPTHWISE_CONV_2D"] == ops["CONV_2D"] + ops["DEPTHWISE_CONV_2D"] >= 20
    x = np.random.default_rng(1).standard_normal((1, 3, 64, 64)).astype(np.float32)
    (y,) = Lite(ex.data)(x)
    (r,) = ort_run(q, x)
    assert y.argmax() == r.argmax()
    assert np.abs(y - r).max() < 0.05 * np.abs(r).max()


# -- layout-sensitive ops, float, against ONNX Runtime ------------------------------------------------------------
def _layout_cases() -> dict[str, onnx.ModelProto]:
    w = rng_w(6, 3, 3, 3)
    conv = helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    base = {"w": w}
    x = [("x", [1, 3, 8, 10])]
    cases = {
        "reshape_4d_map": ([conv, helper.make_node("Reshape", ["c", "s"], ["y"])], {**base, "s": np.array([1, 6, 80], np.int64)}),
        "flatten_map": ([conv, helper.make_node("Flatten", ["c"], ["y"], axis=1)], base),
        "transpose_perm": ([conv, helper.make_node("Transpose", ["c"], ["y"], perm=[0, 3, 1, 2])], base),
        "softmax_axis1": ([conv, helper.make_node("Softmax", ["c"], ["y"], axis=1)], base),
        "softmax_axis2": ([conv, helper.make_node("Softmax", ["c"], ["y"], axis=2)], base),
        "slice_channels_and_width": (
            [conv, helper.make_node("Slice", ["c", "st", "en", "ax", "sp"], ["y"])],
            {**base, "st": np.array([1, 2], np.int64), "en": np.array([5, 9], np.int64),
             "ax": np.array([1, 3], np.int64), "sp": np.array([1, 2], np.int64)},
        ),
        "pad_reflect": ([conv, helper.make_node("Pad", ["c", "p"], ["y"], mode="reflect")],
                        {**base, "p": np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64)}),
        "reduce_mean_hw": ([conv, helper.make_node("ReduceMean", ["c"], ["y"], axes=[2, 3], keepdims=0)], base),
        "concat_axis1_split": (
            [conv, helper.make_node("Concat", ["c", "x"], ["cc"], axis=1),
             helper.make_node("Split", ["cc", "sz"], ["y", "y2"], axis=1)],
            {**base, "sz": np.array([4, 5], np.int64)},
        ),
        "resize_bilinear": ([conv, helper.make_node("Resize", ["c", "", "sc"], ["y"], mode="linear")],
                            {**base, "sc": np.array([1, 1, 2, 2], np.float32)}),
        "bcast_channel_const_and_avgpool": (
            [conv, helper.make_node("Mul", ["c", "k"], ["m"]),
             helper.make_node("AveragePool", ["m"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                              count_include_pad=1)],
            {**base, "k": np.arange(6, dtype=np.float32).reshape(6, 1, 1)},
        ),
        "conv_transpose_valid_2x": (
            [conv, helper.make_node("ConvTranspose", ["c", "wt", "bt"], ["y"], kernel_shape=[2, 2], strides=[2, 2])],
            {**base, "wt": rng_w(6, 4, 2, 2), "bt": rng_w(4)},
        ),
        "conv_transpose_same_k4": (
            [conv, helper.make_node("ConvTranspose", ["c", "wt"], ["y"], kernel_shape=[4, 4], strides=[2, 2],
                                    pads=[1, 1, 1, 1])],
            {**base, "wt": rng_w(6, 4, 4, 4)},
        ),
        "unary_chain": (
            [conv, helper.make_node("HardSwish", ["c"], ["h"]), helper.make_node("LeakyRelu", ["h"], ["l"], alpha=0.2),
             helper.make_node("Tanh", ["l"], ["t"]), helper.make_node("Max", ["t", "k1"], ["mx"]),
             helper.make_node("Min", ["mx", "k2"], ["mn"]), helper.make_node("HardSigmoid", ["mn"], ["hs"], alpha=0.4),
             helper.make_node("Mul", ["c", "hs"], ["y"])],
            {**base, "k1": np.float32(-0.5).reshape(()), "k2": np.full((1, 6, 1, 1), 0.7, np.float32)},
        ),
        "bn_after_add_and_clip": (
            [conv, helper.make_node("Add", ["c", "c"], ["a"]),
             helper.make_node("BatchNormalization", ["a", "g", "bb", "mu", "var"], ["bn"]),
             helper.make_node("Clip", ["bn", "lo", "hi"], ["y"])],
            {**base, "g": rng_w(6) + 1, "bb": rng_w(6), "mu": rng_w(6), "var": np.abs(rng_w(6)) + 0.5,
             "lo": np.float32(-1.0).reshape(()), "hi": np.float32(2.0).reshape(())},
        ),
        "global_max_squeeze_matmul_unsqueeze": (
            [conv, helper.make_node("GlobalMaxPool", ["c"], ["g"]), helper.make_node("Squeeze", ["g", "ax23"], ["s"]),
             helper.make_node("MatMul", ["s", "mw"], ["mm"]), helper.make_node("Unsqueeze", ["mm", "ax1"], ["y"])],
            {**base, "ax23": np.array([2, 3], np.int64), "mw": rng_w(6, 5), "ax1": np.array([1], np.int64)},
        ),
        "reduce_max_channels_keepdims": (
            [conv, helper.make_node("ReduceMax", ["c"], ["y"], axes=[1], keepdims=1)], base
        ),
        "div_by_activation_and_pad_value": (
            [conv, helper.make_node("Sigmoid", ["c"], ["sg"]), helper.make_node("Div", ["c", "sg"], ["d"]),
             helper.make_node("Pad", ["d", "p", "pv"], ["y"])],
            {**base, "p": np.array([0, 0, 1, 0, 0, 0, 0, 2], np.int64), "pv": np.float32(0.5).reshape(())},
        ),
        "gather_channel_and_rows": (
            [conv, helper.make_node("Gather", ["c", "i0"], ["g0"], axis=1),
             helper.make_node("Gather", ["g0", "rows"], ["y"], axis=1)],
            {**base, "i0": np.array(2, np.int64), "rows": np.array([0, -1, 3], np.int64)},
        ),
        "gemm_after_reshape": (
            [conv, helper.make_node("Reshape", ["c", "s"], ["r"]), helper.make_node("Gemm", ["r", "g"], ["y"])],
            {**base, "s": np.array([1, -1], np.int64), "g": rng_w(480, 5)},
        ),
    }  # fmt: skip
    out = {}
    for k, (nodes, inits) in cases.items():
        outs = [("y", None)] + ([("y2", None)] if k == "concat_axis1_split" else [])
        out[k] = make_model(nodes, x, outs, inits)
    return out


@pytest.mark.parametrize("case", sorted(_layout_cases()))
def test_layout_sensitive_ops_match_onnxruntime(case: str) -> None:
    m = _layout_cases()[case]
    ex = onnx_to_tflite(m)
    x = np.random.default_rng(3).standard_normal((1, 3, 8, 10)).astype(np.float32)
    got, ref = Lite(ex.data)(x), ort_run(m, x)
    for a, b in zip(got, ref, strict=True):
        assert a.shape == b.shape, (a.shape, b.shape)
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)


def test_layout_transposes_only_where_semantics_need_them() -> None:
    cases = _layout_cases()
    n_transposes = {
        k: sum(op.builtin == "TRANSPOSE" for op in read_tflite(onnx_to_tflite(cases[k]).data).ops)
        for k in ("flatten_map", "softmax_axis1", "reduce_mean_hw", "reshape_4d_map")
    }
    # channel softmax is the NHWC last axis; mean over H, W leaves [N, C]; a 4-D map flattened needs NCHW order
    assert n_transposes == {"flatten_map": 1, "softmax_axis1": 1, "reduce_mean_hw": 0, "reshape_4d_map": 1}


def test_nhwc_onnx_input_stays_nhwc_and_its_transpose_disappears() -> None:
    """A model exported from an NHWC framework: input [1, H, W, C] then Transpose to NCHW for the Conv."""
    m = make_model(
        [
            helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
            helper.make_node("Conv", ["t", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
            helper.make_node("Transpose", ["c"], ["y"], perm=[0, 2, 3, 1]),
        ],
        [("x", [1, 12, 10, 3])],
        [("y", None)],
        {"w": rng_w(5, 3, 3, 3)},
    )
    ex = onnx_to_tflite(m)
    g = read_tflite(ex.data)
    assert g.tensors[g.inputs[0]].shape == (1, 12, 10, 3) and ex.input_layout == "NHWC"
    assert [op.builtin for op in g.ops] == ["CONV_2D"]
    x = np.random.default_rng(2).standard_normal((1, 12, 10, 3)).astype(np.float32)
    (got,), (ref,) = Lite(ex.data)(x), ort_run(m, x)
    np.testing.assert_allclose(got, ref, atol=1e-4)


# -- errors -------------------------------------------------------------------------------------------------------
def test_unsupported_op_names_node_op_and_alternative() -> None:
    m = make_model([helper.make_node("Erf", ["x"], ["y"], name="gelu_erf")], [("x", [1, 3, 8, 8])], [("y", None)])
    with pytest.raises(UnsupportedOpError, match=r"node 'gelu_erf' \(Erf\).*nearest supported: Gelu") as e:
        onnx_to_tflite(m)
    assert e.value.exit_code == 2 and "\n" not in str(e.value)
    # a ConvTranspose whose output runs past the full transposed convolution (output_padding beyond the end pads:
    # no VALID-and-slice form) is refused, not approximated
    deconv = make_model(
        [helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="up3", kernel_shape=[3, 3], strides=[2, 2],
                          pads=[0, 0, 0, 0], output_padding=[1, 1])],
        [("x", [1, 3, 8, 8])],
        [("y", None)],
        {"w": rng_w(3, 4, 3, 3)},
    )  # fmt: skip
    with pytest.raises(UnsupportedOpError, match=r"node 'up3' \(ConvTranspose\).*no TFLite SAME/VALID form"):
        onnx_to_tflite(deconv)
    resize = make_model(
        [helper.make_node("Resize", ["x", "", "sc"], ["y"], name="rs", mode="cubic")],
        [("x", [1, 4, 8, 8])],
        [("y", None)],
        {"sc": np.array([1, 1, 2, 2], np.float32)},
    )
    with pytest.raises(UnsupportedOpError, match=r"node 'rs' \(Resize\): mode cubic"):
        onnx_to_tflite(resize)


def test_bad_requests_are_one_line_errors(sample_qdq: onnx.ModelProto) -> None:
    m = onnx.load(str(SAMPLE_MODEL))
    with pytest.raises(BadInputError, match="needs a QDQ model"):
        onnx_to_tflite(m, precision="int8")
    with pytest.raises(BadInputError, match="drop its calibrated scales"):
        onnx_to_tflite(sample_qdq, precision="float32")
    with pytest.raises(BadInputError, match="choose one of"):
        onnx_to_tflite(m, precision="int4")
    dyn = make_model([helper.make_node("Relu", ["x"], ["y"])], [("x", ["batch", 3, 8, 8])], [("y", ["batch", 3, 8, 8])])
    with pytest.raises(ModelError, match=r"dynamic.*--input-shape"):
        onnx_to_tflite(dyn)
    del dyn.graph.input[0].type.tensor_type.shape.dim[0]
    assert dyn.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
