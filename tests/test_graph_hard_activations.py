"""Hard-sigmoid / hard-swish written out in elementwise ops become HardSigmoid (+ Mul), and a Conv's bias
written as a separate Add folds into the Conv (graph.passes.prepare); each spelling on real onnxruntime, with
negative controls on the other side of each rule."""

from __future__ import annotations

import collections
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper

from edgecnn.graph.load import node_attr
from edgecnn.graph.passes import canonical_hard_activations, prepare
from tests.onnx_builders import make_model, rng_w

C, HW = 8, 6
N = helper.make_node


def _c(v: float) -> np.ndarray:
    return np.array(v, np.float32)


def _model(body: Callable[[], tuple[list[onnx.NodeProto], dict[str, np.ndarray]]], opset: int = 13) -> onnx.ModelProto:
    """x -> Conv -> (body: conv_out -> y) -> y."""
    nodes, inits = body()
    conv = N("Conv", ["x", "w", "b"], ["t"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    inits = {"w": rng_w(C, 3, 3, 3), "b": rng_w(C, seed=1), **inits}
    return make_model([conv, *nodes], [("x", [1, 3, HW, HW])], [("y", None)], inits, opset=opset)


# Each spelling of hard-swish x * relu6(x + 3) / 6 on the conv output t (what exporters write).
def paddle() -> tuple[list[onnx.NodeProto], dict[str, np.ndarray]]:  # Paddle2ONNX hardswish
    return [
        N("Add", ["t", "three"], ["a"], name="add3"),
        N("Clip", ["a", "zero", "six"], ["c"], name="clip"),
        N("Mul", ["t", "c"], ["m"], name="mul"),
        N("Div", ["m", "six"], ["y"], name="div6"),
    ], {"three": _c(3), "zero": _c(0), "six": _c(6)}


def relu_min_scale() -> tuple[list[onnx.NodeProto], dict[str, np.ndarray]]:  # relu6 as Relu+Min, then * 1/6
    return [
        N("Add", ["three", "t"], ["a"], name="add3"),
        N("Relu", ["a"], ["r"], name="relu"),
        N("Min", ["r", "six"], ["c"], name="min6"),
        N("Mul", ["c", "sixth"], ["h"], name="mul_sixth"),
        N("Mul", ["h", "t"], ["y"], name="mul"),
    ], {"three": _c(3), "six": _c(6), "sixth": _c(1 / 6)}


def scale_first() -> tuple[list[onnx.NodeProto], dict[str, np.ndarray]]:  # clip(x / 6 + 0.5, 0, 1) * x
    return [
        N("Div", ["t", "six"], ["d"], name="div6"),
        N("Add", ["d", "half"], ["a"], name="add_half"),
        N("Max", ["a", "zero"], ["lo"], name="max0"),
        N("Min", ["lo", "one"], ["c"], name="min1"),
        N("Mul", ["t", "c"], ["y"], name="mul"),
    ], {"six": _c(6), "half": _c(0.5), "zero": _c(0), "one": _c(1)}


def clip_attrs() -> tuple[list[onnx.NodeProto], dict[str, np.ndarray]]:  # opset 10: Clip min/max attributes
    return [
        N("Add", ["t", "three"], ["a"], name="add3"),
        N("Clip", ["a"], ["c"], name="clip", min=0.0, max=6.0),
        N("Mul", ["c", "t"], ["m"], name="mul"),
        N("Mul", ["m", "sixth"], ["y"], name="mul_sixth"),
    ], {"three": _c(3), "sixth": _c(0.16666667)}


def _run(m: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


X = np.random.default_rng(3).uniform(-3, 3, (1, 3, HW, HW)).astype(np.float32)


@pytest.mark.parametrize(
    ("body", "opset"), [(paddle, 13), (relu_min_scale, 13), (scale_first, 13), (clip_attrs, 10)], ids=str
)
def test_hard_swish_spellings_become_hardsigmoid_mul(body: Callable, opset: int) -> None:
    m = _model(body, opset)
    out, n = canonical_hard_activations(m)
    ops = [x.op_type for x in out.graph.node]
    assert n == 1 and ops == ["Conv", "HardSigmoid", "Mul"], ops
    hs = out.graph.node[1]
    attrs = {a.name: a.f for a in hs.attribute}
    assert attrs["alpha"] == pytest.approx(1 / 6, rel=1e-5) and attrs["beta"] == pytest.approx(0.5, rel=1e-5)
    assert sorted(out.graph.node[2].input) == sorted(["t", hs.output[0]]) and out.graph.node[2].output[0] == "y"
    assert not out.graph.initializer[2:]  # the chains' scalar constants are gone: only w and b are left
    onnx.checker.check_model(out, full_check=True)
    ref, got = _run(m, X), _run(out, X)
    assert np.abs(ref).max() > 1 and np.allclose(ref, got, atol=1e-5)  # the conv output spans the knees


def _all_tensors(m: onnx.ModelProto, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every node output of m, by name, on real onnxruntime."""
    m = onnx.ModelProto.FromString(m.SerializeToString())
    have = {o.name for o in m.graph.output}
    names = [o for n in m.graph.node for o in n.output if o]
    m.graph.output.extend(onnx.ValueInfoProto(name=o) for o in names if o not in have)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    outs = [o.name for o in sess.get_outputs()]
    return dict(zip(outs, sess.run(outs, {"x": x}), strict=True))


@pytest.mark.parametrize("body", [paddle, relu_min_scale, scale_first, clip_attrs], ids=str)
def test_a_tensor_that_keeps_its_name_keeps_its_values(body: Callable) -> None:
    """drift compares layers by name: a rewritten tensor (the HardSigmoid holds clamp(x + 3, 0, 6) / 6, not
    clamp(x + 3, 0, 6)) must get a new name, or the report blames a layer for a factor of 6."""
    m = _model(body, 10 if body is clip_attrs else 13)
    ref, got = _all_tensors(m, X), _all_tensors(prepare(m), X)
    shared = sorted(set(ref) & set(got))
    assert "t" in shared and "y" in shared  # the conv output and the model output are compared
    for name in shared:
        assert np.allclose(ref[name], got[name], atol=1e-5), name
    hs = [n for n in prepare(m).graph.node if n.op_type == "HardSigmoid"]
    assert len(hs) == 1
    # clamp(.., 0, 6) becomes a new tensor; a chain that already ends in [0, 1] is the HardSigmoid itself
    assert (hs[0].output[0] in ref) == (body in (scale_first, relu_min_scale))


def test_hard_sigmoid_gate_alone_becomes_hardsigmoid() -> None:
    """An SE gate relu6(x + 3) / 6 (no Mul by x) is a HardSigmoid on its own."""

    def gate() -> tuple[list[onnx.NodeProto], dict[str, np.ndarray]]:
        return [
            N("Add", ["t", "three"], ["a"], name="add3"),
            N("Clip", ["a", "zero", "six"], ["c"], name="clip"),
            N("Div", ["c", "six"], ["y"], name="div6"),
        ], {"three": _c(3), "zero": _c(0), "six": _c(6)}

    m = _model(gate)
    out, n = canonical_hard_activations(m)
    assert n == 1 and [x.op_type for x in out.graph.node] == ["Conv", "HardSigmoid"]
    assert out.graph.node[1].output[0] == "y"
    assert np.allclose(_run(m, X), _run(out, X), atol=1e-6)


def _unchanged(body: Callable) -> None:
    m = _model(body)
    out, n = canonical_hard_activations(m)
    assert n == 0 and [x.op_type for x in out.graph.node] == [x.op_type for x in m.graph.node]


def test_negative_controls_stay_as_written() -> None:
    # A plain ReLU6 after a conv is not a hard-sigmoid (one clamp, range [0, 6]).
    _unchanged(lambda: ([N("Clip", ["t", "zero", "six"], ["y"], name="relu6")], {"zero": _c(0), "six": _c(6)}))
    # x * relu6(x + 3) / 5: the scale does not bring the range to [0, 1].
    _unchanged(
        lambda: (
            [
                N("Add", ["t", "three"], ["a"], name="add3"),
                N("Clip", ["a", "zero", "six"], ["c"], name="clip"),
                N("Mul", ["t", "c"], ["m"], name="mul"),
                N("Div", ["m", "five"], ["y"], name="div5"),
            ],
            {"three": _c(3), "zero": _c(0), "six": _c(6), "five": _c(5)},
        )
    )
    # A decreasing map: clip(-x / 6 + 0.5, 0, 1) is not HardSigmoid's increasing form.
    _unchanged(
        lambda: (
            [
                N("Mul", ["t", "m6"], ["d"], name="mul_neg"),
                N("Add", ["d", "half"], ["a"], name="add_half"),
                N("Clip", ["a", "zero", "one"], ["y"], name="clip01"),
            ],
            {"m6": _c(-1 / 6), "half": _c(0.5), "zero": _c(0), "one": _c(1)},
        )
    )
    # The clamp's output is also used elsewhere (a second consumer): its value must stay what it is.
    _unchanged(
        lambda: (
            [
                N("Add", ["t", "three"], ["a"], name="add3"),
                N("Clip", ["a", "zero", "six"], ["c"], name="clip"),
                N("Mul", ["t", "c"], ["m"], name="mul"),
                N("Div", ["m", "six"], ["d"], name="div6"),
                N("Add", ["d", "c"], ["y"], name="reuse"),
            ],
            {"three": _c(3), "zero": _c(0), "six": _c(6)},
        )
    )


# -- Conv bias written as a separate Add ----------------------------------------------------------------------
def _bias_add_model(bias_shape: tuple[int, ...]) -> onnx.ModelProto:
    nodes = [
        N("Conv", ["x", "w"], ["t"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        N("Add", ["t", "bias"], ["a"], name="bias_add"),
        N("Relu", ["a"], ["y"], name="relu"),
    ]
    inits = {"w": rng_w(C, 3, 3, 3), "bias": rng_w(*bias_shape, seed=2)}
    return make_model(nodes, [("x", [1, 3, HW, HW])], [("y", None)], inits)


@pytest.mark.parametrize("shape", [(1, C, 1, 1), (C, 1, 1), (1,)])
def test_conv_bias_add_folds_into_the_conv(shape: tuple[int, ...]) -> None:
    m = _bias_add_model(shape)
    out = prepare(m)
    assert [x.op_type for x in out.graph.node] == ["Conv", "Relu"] and len(out.graph.node[0].input) == 3
    assert np.allclose(_run(m, X), _run(out, X), atol=1e-5)


def test_bias_add_along_the_last_axis_is_not_a_conv_bias() -> None:
    """A (C,) constant broadcasts along the width axis (here width == C), not the channels: it stays an Add."""
    global HW
    old, HW = HW, C
    try:
        m = _bias_add_model((C,))
        x = np.random.default_rng(4).uniform(-3, 3, (1, 3, HW, HW)).astype(np.float32)
        out = prepare(m)
        assert [x_.op_type for x_ in out.graph.node] == ["Conv", "Add", "Relu"]
        assert np.allclose(_run(m, x), _run(out, x), atol=1e-5)
    finally:
        HW = old


def test_conv_affine_chain_folds_into_the_conv() -> None:
    """PP-LCNet's learnable affine block after a Conv: Mul(scalar) -> Add(scalar) (and / or - by constants)."""
    nodes = [
        N("Conv", ["x", "w", "b"], ["t"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        N("Mul", ["s", "t"], ["m"], name="lab_scale"),
        N("Add", ["m", "c"], ["a"], name="lab_bias"),
        N("Div", ["a", "two"], ["d"], name="half"),
        N("Sub", ["d", "pc"], ["e"], name="minus_per_channel"),
        N("Relu", ["e"], ["y"], name="relu"),
    ]
    inits = {"w": rng_w(C, 3, 3, 3), "b": rng_w(C, seed=1), "s": _c(1.7), "c": _c(-0.3), "two": _c(2.0),
             "pc": rng_w(1, C, 1, 1, seed=5)}  # fmt: skip
    m = make_model(nodes, [("x", [1, 3, HW, HW])], [("y", None)], inits)
    out = prepare(m)
    assert [x.op_type for x in out.graph.node] == ["Conv", "Relu"]
    assert np.allclose(_run(m, X), _run(out, X), atol=1e-5)
    # Control: c - x (the constant first) is not taken, only x - c and x / c are; its Sub stays.
    nodes[4] = N("Sub", ["pc", "d"], ["e"], name="per_channel_minus")
    m2 = make_model(nodes, [("x", [1, 3, HW, HW])], [("y", None)], inits)
    out2 = prepare(m2)
    assert [x.op_type for x in out2.graph.node] == ["Conv", "Sub", "Relu"]
    assert np.allclose(_run(m2, X), _run(out2, X), atol=1e-5)


def _bn_inits(prefix: str, c: int, seed: int) -> dict[str, np.ndarray]:
    r = np.random.default_rng(seed)
    return {
        f"{prefix}_g": r.uniform(0.5, 2, c).astype(np.float32), f"{prefix}_b": r.uniform(-1, 1, c).astype(np.float32),
        f"{prefix}_m": r.uniform(-1, 1, c).astype(np.float32), f"{prefix}_v": r.uniform(0.2, 3, c).astype(np.float32),
    }  # fmt: skip


def _bn(x: str, prefix: str, y: str) -> onnx.NodeProto:
    return N("BatchNormalization", [x, *(f"{prefix}_{k}" for k in "gbmv")], [y], name=f"{prefix}_bn", epsilon=1e-3)


def _db_head(group: int = 1, bias_shape: tuple[int, ...] = (1, 2 * C, 1, 1)) -> onnx.ModelProto:
    """PP-OCR's DB head as Paddle exports it: ConvTranspose (no bias) -> Add (the bias) -> BatchNormalization ->
    Relu -> ConvTranspose -> Add -> Sigmoid; ``group`` on the first ConvTranspose."""
    nodes = [
        N("Conv", ["x", "w0"], ["c0"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        N("Relu", ["c0"], ["r0"], name="relu0"),
        N("ConvTranspose", ["r0", "wt0"], ["t0"], name="ct0", kernel_shape=[2, 2], strides=[2, 2], group=group),
        N("Add", ["t0", "bt0"], ["a0"], name="ct0_bias"),
        _bn("a0", "bn0", "n0"),
        N("Relu", ["n0"], ["r1"], name="relu1"),
        N("ConvTranspose", ["r1", "wt1"], ["t1"], name="ct1", kernel_shape=[2, 2], strides=[2, 2]),
        N("Add", ["t1", "bt1"], ["a1"], name="ct1_bias"),
        N("Sigmoid", ["a1"], ["y"], name="sigmoid"),
    ]
    inits = {
        "w0": rng_w(C, 3, 3, 3), "wt0": rng_w(C, 2 * C // group, 2, 2, seed=3), "bt0": rng_w(*bias_shape, seed=4),
        "wt1": rng_w(2 * C, 1, 2, 2, seed=5), "bt1": rng_w(1, 1, 1, 1, seed=6), **_bn_inits("bn0", 2 * C, 7),
    }  # fmt: skip
    return make_model(nodes, [("x", [1, 3, HW, HW])], [("y", None)], inits)


@pytest.mark.parametrize("group", [1, 2])
def test_conv_transpose_bias_add_and_batchnorm_fold_into_it(group: int) -> None:
    """Left alone, the Add and the BN are float ops between the ConvTranspose and its Relu (on OpenVINO an INT8
    ppocrv4-det spent 2.4 ms of 14 in layout Reorders around them: docs/design-notes.md, session 23)."""
    m = _db_head(group)
    out = prepare(m)
    assert [x.op_type for x in out.graph.node] == ["Conv", "Relu", "ConvTranspose", "Relu", "ConvTranspose", "Sigmoid"]
    assert all(len(n.input) == 3 for n in out.graph.node if n.op_type == "ConvTranspose")
    assert np.allclose(_run(m, X), _run(out, X), atol=1e-5)


def test_conv_bias_add_then_batchnorm_fold_into_the_conv() -> None:
    nodes = [
        N("Conv", ["x", "w"], ["t"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        N("Add", ["t", "bias"], ["a"], name="bias_add"),
        _bn("a", "bn", "n"),
        N("Mul", ["n", "s"], ["y"], name="scale"),
    ]
    inits = {"w": rng_w(C, 3, 3, 3), "bias": rng_w(1, C, 1, 1, seed=2), "s": _c(0.5), **_bn_inits("bn", C, 3)}
    m = make_model(nodes, [("x", [1, 3, HW, HW])], [("y", None)], inits)
    out = prepare(m)
    assert [x.op_type for x in out.graph.node] == ["Conv"]
    assert np.allclose(_run(m, X), _run(out, X), atol=1e-5)


def test_conv_transpose_chain_that_does_not_fold() -> None:
    """Controls: a bias that broadcasts along the width (not the channels) stops the chain at the ConvTranspose,
    and the BN after it then stays a BN (the standalone-BN pass makes it a depthwise Conv); a ConvTranspose
    output read twice is not folded."""
    m = _db_head(bias_shape=(HW * 2,))
    out = prepare(m)
    ops = [x.op_type for x in out.graph.node]
    assert ops[:4] == ["Conv", "Relu", "ConvTranspose", "Add"] and ops.count("ConvTranspose") == 2, ops
    assert np.allclose(_run(m, X), _run(out, X), atol=1e-5)
    m2 = _db_head()
    m2.graph.output.append(helper.make_tensor_value_info("t0", onnx.TensorProto.FLOAT, None))
    out2 = prepare(m2)
    assert [x.op_type for x in out2.graph.node][2:4] == ["ConvTranspose", "Add"]
    so = ort.SessionOptions()
    so.log_severity_level = 3
    runs = [ort.InferenceSession(x.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, {"x": X})
            for x in (m2, out2)]  # fmt: skip
    for a, b in zip(*runs, strict=True):
        assert np.allclose(a, b, atol=1e-5)


def test_a_model_whose_constants_live_in_an_external_file_quantizes(tmp_path: Path) -> None:
    """quantize moves weights above 1 KiB to a temp file first; a large constant added after a Conv (not a
    per-channel bias, so it is not folded) used to be read without that file's folder while the hard-activation
    walker looked for scalars: torchvision's ConvNeXt failed with 'should be stored in weights.bin'."""
    from edgecnn.preprocess import find_spec
    from edgecnn.quantize.api import QuantizeConfig, quantize
    from edgecnn.quantize.dataset import ImageDataset
    from tests.conftest import CALIB_DIR

    conv = N("Conv", ["x", "w", "b"], ["t"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    nodes = [
        conv,
        N("Add", ["t", "pos"], ["a"], name="add_pos"),
        N("Relu", ["a"], ["r"], name="relu"),
        N("Conv", ["r", "w2"], ["y"], name="conv2", kernel_shape=[1, 1]),
    ]
    inits = {"w": rng_w(C, 3, 3, 3), "b": rng_w(C, seed=1), "pos": rng_w(1, C, 32, 32, seed=2), "w2": rng_w(4, C, 1, 1)}
    path = tmp_path / "m.onnx"
    onnx.save(make_model(nodes, [("x", [1, 3, 32, 32])], [("y", None)], inits), str(path))
    q, report = quantize(path, ImageDataset.open(CALIB_DIR, find_spec(CALIB_DIR), 8), QuantizeConfig())
    assert report.weights_quantized == 2 and "add_pos" not in report.kept_float  # 32 KiB "pos": external
    assert any(n.op_type == "QuantizeLinear" for n in q.graph.node)


# -- ReduceMean over H and W (a squeeze-excitation's pooling, as Paddle2ONNX writes it) ---------------------------
def _se(axes: list[int], keepdims: int = 1, opset: int = 13) -> onnx.ModelProto:
    """Conv -> ReduceMean(axes) -> Conv 1x1 -> HardSigmoid -> Mul with the conv output (PP-LCNetV3's SE)."""
    kw: dict[str, object] = {"keepdims": keepdims}
    inputs, extra = ["t"], {}
    if opset >= 18:
        inputs.append("axes")
        extra = {"axes": np.array(axes, np.int64)}
    else:
        kw["axes"] = axes
    nodes = [
        N("Conv", ["x", "w", "b"], ["t"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        N("ReduceMean", inputs, ["p"], name="pool", **kw),
        N("Conv", ["p", "w2"], ["s"], name="squeeze", kernel_shape=[1, 1]),
        N("HardSigmoid", ["s"], ["g"], name="gate"),
        N("Mul", ["t", "g"], ["y"], name="excite"),
    ]
    inits = {"w": rng_w(C, 3, 3, 3), "b": rng_w(C, seed=1), "w2": rng_w(C, C, 1, 1, seed=2), **extra}
    return make_model(nodes, [("x", [1, 3, HW, HW])], [("y", None)], inits, opset=opset)


@pytest.mark.parametrize("opset", [13, 18])
@pytest.mark.parametrize("axes", [[2, 3], [-1, -2]])
def test_spatial_reduce_mean_becomes_global_average_pool(opset: int, axes: list[int]) -> None:
    m = _se(axes, opset=opset)
    out = prepare(m)
    pool = next(n for n in out.graph.node if n.name == "pool")
    assert pool.op_type == "GlobalAveragePool" and list(pool.output) == ["p"]  # same name, same values
    assert "axes" not in {t.name for t in out.graph.initializer}
    assert np.allclose(_run(m, X), _run(out, X), atol=1e-5)


@pytest.mark.parametrize("opset", [13, 18])
def test_a_spatial_mean_without_kept_dims_becomes_a_pool_and_a_flatten(opset: int) -> None:
    """``x.mean([2, 3])`` before a classifier (torchvision's MNASNet): GlobalAveragePool, then Flatten to [N, C]
    writing the ReduceMean's output, the same values; ONNX Runtime then runs the pool in integer."""
    pool_only = _se([2, 3], keepdims=0, opset=opset)
    m = make_model(
        [*pool_only.graph.node[:2], N("Gemm", ["p", "wg"], ["y"], name="fc", transB=1)],
        [("x", [1, 3, HW, HW])], [("y", None)],
        {"w": rng_w(C, 3, 3, 3), "b": rng_w(C, seed=1), "wg": rng_w(4, C, seed=3),
         **({"axes": np.array([2, 3], np.int64)} if opset >= 18 else {})},
        opset=opset,
    )  # fmt: skip
    out = prepare(m)
    ops = [(n.op_type, list(n.output)) for n in out.graph.node]
    assert ops[1][0] == "GlobalAveragePool" and ops[2] == ("Flatten", ["p"]), ops
    assert "ReduceMean" not in [o for o, _ in ops]
    assert np.allclose(_run(m, X), _run(out, X), atol=1e-5)
    pooled = next(vi for vi in out.graph.value_info if vi.name == ops[1][1][0])
    assert [d.dim_value for d in pooled.type.tensor_type.shape.dim] == [1, C, 1, 1]


@pytest.mark.parametrize(("axes", "keepdims"), [([1], 1), ([1], 0), ([1, 2, 3], 1), ([3], 1), ([3], 0)])
def test_other_reductions_stay_reduce_mean(axes: list[int], keepdims: int) -> None:
    m = _se(axes, keepdims)
    if keepdims == 0 or len(axes) == 3:  # the pooled tensor no longer fits the 1x1 Conv: pool only
        m = make_model([m.graph.node[0], m.graph.node[1]], [("x", [1, 3, HW, HW])], [("p", None)],
                       {"w": rng_w(C, 3, 3, 3), "b": rng_w(C, seed=1)})  # fmt: skip
    out = prepare(m)
    assert next(n for n in out.graph.node if n.name == "pool").op_type == "ReduceMean"


def _quantized_on_ort(m: onnx.ModelProto, tmp_path: Path) -> tuple[dict[str, str], collections.Counter[str]]:
    """``m`` quantized with the defaults on 8 random HWxHW RGB images: (its kept-float nodes, the op types ONNX
    Runtime executes after its graph optimizations)."""
    from PIL import Image

    from edgecnn.preprocess import find_spec
    from edgecnn.quantize.api import QuantizeConfig, quantize
    from edgecnn.quantize.dataset import ImageDataset
    from tests.test_quantize_real import ort_runs

    d = tmp_path / "img"
    d.mkdir()
    rng = np.random.default_rng(1)
    for i in range(8):
        Image.fromarray(rng.integers(0, 255, (HW, HW, 3), dtype=np.uint8), "RGB").save(d / f"{i}.png")
    (d / "preprocess.toml").write_text(
        f'schema_version = 1\ncolor_order = "RGB"\nlayout = "NCHW"\nresize = [{HW}, {HW}]\n'
    )
    src = tmp_path / "m.onnx"
    onnx.save(m, str(src))
    q, report = quantize(src, ImageDataset.open(d, find_spec(d)), QuantizeConfig())
    onnx.save(q, str(tmp_path / "q.onnx"))
    return report.kept_float, ort_runs(tmp_path / "q.onnx", tmp_path)


def test_the_pooled_tensor_is_quantized_and_ort_runs_an_integer_pool(tmp_path: Path) -> None:
    """End to end on ONNX Runtime: the SE pooling is integer (QLinearGlobalAveragePool in the graph ORT runs)
    where a ReduceMean had no integer kernel and ran in float between a DQ and a Q."""
    kept, ran = _quantized_on_ort(_se([2, 3]), tmp_path)
    assert "pool" not in kept, kept
    assert ran["QLinearGlobalAveragePool"] and not ran["ReduceMean"], ran


# -- a BatchNormalization no Conv absorbs (DenseNet's pre-activation BN -> ReLU -> Conv) --------------------------
def _pre_activation(bn_params_constant: bool = True) -> onnx.ModelProto:
    """Conv -> Relu -> BN -> Relu -> Conv 1x1: the BN follows a Relu, so no Conv can absorb it."""
    g = np.random.default_rng(4)
    inits = {
        "w": rng_w(C, 3, 3, 3), "b": rng_w(C, seed=1), "w2": rng_w(C, C, 1, 1, seed=2),
        "g": g.uniform(0.5, 2.0, C).astype(np.float32), "be": g.normal(0, 0.5, C).astype(np.float32),
        "mu": g.uniform(0.1, 1.0, C).astype(np.float32), "var": g.uniform(0.2, 3.0, C).astype(np.float32),
    }  # fmt: skip
    inputs: list[tuple[str, list[int]]] = [("x", [1, 3, HW, HW])]
    if not bn_params_constant:  # the scale comes in at run time: nothing to fold
        del inits["g"]
        inputs.append(("g", [C]))
    nodes = [
        N("Conv", ["x", "w", "b"], ["t"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        N("Relu", ["t"], ["r"], name="act"),
        N("BatchNormalization", ["r", "g", "be", "mu", "var"], ["n"], name="bn", epsilon=1e-3),
        N("Relu", ["n"], ["r2"], name="act2"),
        N("Conv", ["r2", "w2"], ["y"], name="conv2", kernel_shape=[1, 1]),
    ]
    return make_model(nodes, inputs, [("y", None)], inits)


def test_a_batchnorm_no_conv_absorbs_becomes_a_depthwise_conv_that_ort_runs_in_integer(tmp_path: Path) -> None:
    """The BN becomes a depthwise 1x1 Conv with the same values; quantized, ORT runs it as a QLinearConv where a
    BatchNormalization ran in float between a DQ and a Q. Control: a BN whose scale is a graph input stays."""
    m = _pre_activation()
    out = prepare(m)
    bn = next(n for n in out.graph.node if n.name == "bn")
    assert bn.op_type == "Conv" and node_attr(bn, "group") == C and list(bn.output) == ["n"]
    assert np.allclose(_run(m, X), _run(out, X), rtol=1e-5, atol=1e-5)
    assert next(n for n in prepare(_pre_activation(False)).graph.node if n.name == "bn").op_type == "BatchNormalization"
    kept, ran = _quantized_on_ort(m, tmp_path)
    assert "bn" not in kept, kept
    # the first conv and the BN's; the last conv writes the float graph output, so ORT runs it as a float Conv
    assert ran["QLinearConv"] == 2 and ran["Conv"] == 1 and not ran["BatchNormalization"], ran
