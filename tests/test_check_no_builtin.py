"""ONNX configurations with no TFLite builtin (edgecnn/check/no_builtin.py) cannot run on a TFLite target.

Each table entry, float32 and QDQ int8, on every ``format = "tflite"`` target: UNSUPPORTED (not a fallback),
the model not runnable, the verdict naming the missing builtin and the nearest supported form. Negative
controls on the other side of each limit keep their verdict (accelerator or fallback); the same models on the
ONNX targets never get the verdict. The agreement with ``edgecnn export --to tflite`` is checked with the real
CLI: every entry is refused, every negative control converts. The schema facts each entry cites are read from
the installed ``ai_edge_litert.schema_py_generated``, and the configurations left out of the table because a
builtin does compute them (REDUCE_WINDOW, CONV_3D_TRANSPOSE) are run on the LiteRT interpreter.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from edgecnn.check.no_builtin import RULE, SCHEMA_PATH, TABLE
from edgecnn.check.placement import NodeVerdict, Placement, SupportReport, TargetReport, check_model, check_target
from edgecnn.check.report import render_markdown, summary_rows
from edgecnn.check.spec import Format, available_targets, load_target
from edgecnn.graph.load import load_model
from tests.cli_helpers import invoke, run_cli
from tests.onnx_builders import make_model, rng_w
from tests.onnx_tfl_cases import gelu_chain, gelu_chain_qdq, qdq
from tests.tflite_oracles import xnnpack_claimed

TFLITE_TARGETS = sorted(n for n in available_targets() if load_target(n).format is Format.TFLITE)
OTHER_TARGETS = sorted(n for n in available_targets() if load_target(n).format is not Format.TFLITE)
X = [1, 4, 8, 8]
N = helper.make_node


def test_the_tflite_targets_are_the_five_with_a_fallback_device() -> None:
    assert TFLITE_TARGETS == ["arm-cpu-xnnpack", "edgetpu", "ethos-u55", "ethos-u65", "mobile-gpu"]
    assert all(load_target(t).fallback for t in TFLITE_TARGETS)  # so UNSUPPORTED here is the new verdict


# ---- one-node models (the node is always named "n") ------------------------------------------------------------


def _one(node: onnx.NodeProto, inits: dict[str, np.ndarray] | None = None, x: list[int] | None = None,
         opset: int = 17) -> onnx.ModelProto:  # fmt: skip
    return make_model([node], [("x", x or X)], [("y", None)], inits or {}, opset=opset)


def _resize(mode: str, scale: float = 2.0, opset: int = 17, **attrs: object) -> onnx.ModelProto:
    sc = np.array([1, 1, scale, scale], np.float32)
    return _one(N("Resize", ["x", "", "s"], ["y"], name="n", mode=mode, **attrs), {"s": sc}, opset=opset)


def _deconv(**attrs: object) -> onnx.ModelProto:
    group = int(attrs.get("group", 1))  # type: ignore[call-overload]
    node = N("ConvTranspose", ["x", "w"], ["y"], name="n", kernel_shape=[2, 2], strides=[2, 2], **attrs)
    return _one(node, {"w": rng_w(4, 4 // group, 2, 2)})


def _pool(op: str, x: list[int] | None = None, opset: int = 19, **attrs: object) -> onnx.ModelProto:
    k = len(x or X) - 2
    attrs = {"kernel_shape": [2] * k, "strides": [2] * k, **attrs}
    return _one(N(op, ["x"], ["y"], name="n", **attrs), x=x, opset=opset)


def _pad(mode: str, p: int, opset: int = 17) -> onnx.ModelProto:
    pads = np.array([0, 0, p, p, 0, 0, p, p], np.int64)
    return _one(N("Pad", ["x", "p"], ["y"], name="n", mode=mode), {"p": pads}, opset=opset)


def _maxpool_indices(quantized: bool) -> onnx.ModelProto:
    """MaxPool with its Indices output (int64, a graph output); QDQ around the values only."""
    if not quantized:
        node = N("MaxPool", ["x"], ["y", "i"], name="n", kernel_shape=[2, 2], strides=[2, 2])
        return make_model([node], [("x", X)], [("y", None), ("i", None)])
    s = {"s": np.array(0.05, np.float32), "z": np.array(0, np.int8)}
    nodes = [N("QuantizeLinear", ["x", "s", "z"], ["xq"], name="xq"),
             N("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="xd"),
             N("MaxPool", ["xd"], ["yf", "i"], name="n", kernel_shape=[2, 2], strides=[2, 2]),
             N("QuantizeLinear", ["yf", "s", "z"], ["yq"], name="yq"),
             N("DequantizeLinear", ["yq", "s", "z"], ["y"], name="yd")]  # fmt: skip
    return make_model(nodes, [("x", X)], [("y", None), ("i", None)], s)


def _argmax(op: str, last: int, quantized: bool) -> onnx.ModelProto:
    """ArgMax/ArgMin over channels; QDQ: the input through Q/DQ, the int64 output as it is."""
    node = N(op, ["xd" if quantized else "x"], ["y"], name="n", axis=1, select_last_index=last)
    if not quantized:
        return make_model([node], [("x", X)], [("y", None)])
    s = {"s": np.array(0.05, np.float32), "z": np.array(0, np.int8)}
    nodes = [N("QuantizeLinear", ["x", "s", "z"], ["xq"], name="xq"),
             N("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="xd"), node]  # fmt: skip
    return make_model(nodes, [("x", X)], [("y", None)], s)


Build = Callable[[bool], onnx.ModelProto]  # quantized? -> model


def _q(build: Callable[[], onnx.ModelProto]) -> Build:
    return lambda quantized: qdq(build()) if quantized else build()


# One model per table entry (entry key -> build).
ENTRIES: dict[str, Build] = {
    "Resize.cubic": _q(lambda: _resize("cubic")),
    "Resize.antialias": _q(lambda: _resize("linear", 0.5, opset=18, antialias=1)),
    "ConvTranspose.grouped": _q(lambda: _deconv(group=2)),
    "AveragePool.dilated": _q(lambda: _pool("AveragePool", strides=[1, 1], dilations=[2, 2])),
    "AveragePool.3d": _q(lambda: _pool("AveragePool", x=[1, 4, 4, 8, 8])),
    "LpPool.p": _q(lambda: _pool("LpPool", opset=17, p=3)),
    "MaxPool.indices": _maxpool_indices,
    "Erf": _q(lambda: _one(N("Erf", ["x"], ["y"], name="n"))),
    "LRN.even": _q(lambda: _one(N("LRN", ["x"], ["y"], name="n", size=2))),
    "Elu.alpha": _q(lambda: _one(N("Elu", ["x"], ["y"], name="n", alpha=0.5))),
    "ArgMax.select_last_index": lambda quantized: _argmax("ArgMax", 1, quantized),
    "Pad.edge": _q(lambda: _pad("edge", 2)),
    "Pad.wrap": _q(lambda: _pad("wrap", 1, opset=19)),
}
# The same op on the other side of each limit; every one converts with `edgecnn export --to tflite`.
CONTROLS: dict[str, Build] = {
    "resize-linear": _q(lambda: _resize("linear")),
    "resize-nearest": _q(lambda: _resize("nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")),
    "resize-linear-antialias-upscale": _q(lambda: _resize("linear", 2.0, opset=18, antialias=1)),
    "deconv-group1": _q(lambda: _deconv()),
    "maxpool-dil1": _q(lambda: _pool("MaxPool", dilations=[1, 1])),
    # int8: the default dilations (onnxruntime's QDQ AveragePool fusion, the parity reference, fails on the attribute)
    "avgpool-dil1": lambda q: qdq(_pool("AveragePool")) if q else _pool("AveragePool", dilations=[1, 1]),
    "maxpool-one-output": _q(lambda: _pool("MaxPool")),
    "lrn-odd": lambda quantized: _one(N("LRN", ["x"], ["y"], name="n", size=3)),  # TFLite's LRN is float only
    "elu-alpha1": _q(lambda: _one(N("Elu", ["x"], ["y"], name="n"))),
    "argmax-first": lambda quantized: _argmax("ArgMax", 0, quantized),
    "argmin-first": lambda quantized: _argmax("ArgMin", 0, quantized),
    "pad-reflect": _q(lambda: _pad("reflect", 2)),
    "pad-constant": _q(lambda: _pad("constant", 2)),
    "gelu-chain": lambda quantized: gelu_chain_qdq() if quantized else gelu_chain(),
}
# Converter limits, not missing builtins: `edgecnn export` refuses them, yet a builtin performs each, so check
# keeps its verdict (REDUCE_WINDOW, CONV_3D_TRANSPOSE, MIRROR_PAD SYMMETRIC, L2_POOL_2D, AVERAGE_POOL_2D over a
# reshaped tensor; edgecnn/check/no_builtin.py).
CONVERTER_LIMITS: dict[str, Build] = {
    "maxpool-dilated": _q(lambda: _pool("MaxPool", strides=[1, 1], dilations=[2, 2])),
    "maxpool-3d": _q(lambda: _pool("MaxPool", x=[1, 4, 4, 8, 8])),
    "deconv-dilated": _q(lambda: _deconv(dilations=[2, 2])),
    "pad-edge-by-1": _q(lambda: _pad("edge", 1)),
    "lppool-p2": _q(lambda: _pool("LpPool", opset=17, p=2)),
    "avgpool-3d-window-2d": _q(lambda: _pool("AveragePool", x=[1, 4, 4, 8, 8], kernel_shape=[1, 2, 2])),
}
PRECISIONS = {"float32": False, "int8": True}


def test_every_table_entry_has_a_model() -> None:
    assert sorted(ENTRIES) == sorted(e.key for e in TABLE)


def _check(tmp_path: Path, model: onnx.ModelProto, target: str) -> TargetReport:
    p = tmp_path / "m.onnx"
    onnx.save(model, p)
    return check_target(load_model(p), load_target(target))


def _node(rep: TargetReport) -> NodeVerdict:
    (n,) = [v for v in rep.nodes if v.name == "n"]
    return n


def _rules(n: NodeVerdict) -> list[str]:
    return [f.rule for f in n.failures]


# ---- each entry cannot run on each TFLite target ---------------------------------------------------------------


@pytest.mark.parametrize("target", TFLITE_TARGETS)
@pytest.mark.parametrize("prec", PRECISIONS)
@pytest.mark.parametrize("key", sorted(ENTRIES))
def test_entry_is_unsupported_on_tflite_target(tmp_path: Path, key: str, prec: str, target: str) -> None:
    (entry,) = [e for e in TABLE if e.key == key]
    rep = _check(tmp_path, ENTRIES[key](PRECISIONS[prec]), target)
    n = _node(rep)
    assert n.placement == Placement.UNSUPPORTED and not rep.runnable, (n, _rules(n))
    v = n.failures[0]
    assert v.rule == RULE and not v.ok and n.maps_to == []
    assert v.reason.startswith(f"{n.op_type} 'n': cannot run: no TFLite builtin for {entry.what} ("), v.reason
    assert v.reason.endswith(f"; nearest supported: {entry.nearest}"), v.reason
    assert SCHEMA_PATH in v.source and "ai-edge-litert 2.3.0" in v.source and "BuiltinOperator" in v.source
    assert v.fix.startswith(f"use {entry.nearest}") and v.fix_kind == entry.fix_kind
    # the QDQ model is judged as one quantized node (its Q/DQ absorbed), as before
    if PRECISIONS[prec] and key not in ("MaxPool.indices", "ArgMax.select_last_index"):
        assert n.precision == "int8" and n.absorbed, n
    rows = dict(summary_rows(SupportReport(model="m.onnx", targets=[rep])))
    assert rows["model runs"] == ["NO: no TFLite builtin for 1 node(s)"]
    assert rows["verdict"] == ["cannot run: no TFLite builtin for 1 node(s)"]


@pytest.mark.parametrize("target", TFLITE_TARGETS)
@pytest.mark.parametrize("prec", PRECISIONS)
@pytest.mark.parametrize("key", sorted(CONTROLS) + sorted(CONVERTER_LIMITS))
def test_other_side_of_each_limit_keeps_its_verdict(tmp_path: Path, key: str, prec: str, target: str) -> None:
    build = CONTROLS.get(key) or CONVERTER_LIMITS[key]
    rep = _check(tmp_path, build(PRECISIONS[prec]), target)
    assert rep.runnable, [(n.name, n.placement, _rules(n)) for n in rep.nodes]
    for n in rep.nodes:
        assert RULE not in _rules(n) and n.placement in (Placement.ACCELERATOR, Placement.FALLBACK), n


DILATED = {
    "maxpool": (lambda d: _pool("MaxPool", strides=[1, 1], dilations=[d, d]), "MAX_POOL_2D", "REDUCE_WINDOW"),
    "deconv": (lambda d: _deconv(dilations=[d, d]), "TRANSPOSE_CONV", "CONV_3D_TRANSPOSE"),
}


@pytest.mark.parametrize("target", TFLITE_TARGETS)
@pytest.mark.parametrize("prec", PRECISIONS)
@pytest.mark.parametrize("key", sorted(DILATED))
def test_dilated_maxpool_and_deconv_are_another_builtin_that_falls_back(
    tmp_path: Path, key: str, prec: str, target: str
) -> None:
    # MAX_POOL_2D and TRANSPOSE_CONV have no dilation: a dilated one is REDUCE_WINDOW / CONV_3D_TRANSPOSE, which
    # no delegate or NPU compiler of these targets takes (the XNNPACK side is measured in the LiteRT tests below).
    build, builtin, dilated_builtin = DILATED[key]
    quantized = PRECISIONS[prec]
    model = (lambda d: qdq(build(d))) if quantized else build
    n = _node(_check(tmp_path, model(2), target))
    assert n.placement == Placement.FALLBACK and "dilation_max" in _rules(n) and RULE not in _rules(n), n
    assert n.maps_to == [dilated_builtin], n.maps_to
    control = _node(_check(tmp_path, model(1), target))  # the same op undilated: no dilation verdict
    assert "dilation_max" not in _rules(control) and control.maps_to == [builtin], control


@pytest.mark.parametrize("target", TFLITE_TARGETS)
def test_gelu_chain_erf_is_not_a_standalone_erf_even_where_gelu_is_not_listed(tmp_path: Path, target: str) -> None:
    # ethos-u65 and edgetpu do not list Gelu: the chain is judged op by op there, its Erf a fallback as before
    # (the export writes the chain as one GELU, which their CPU runs), never "no TFLite builtin".
    lists_gelu = "Gelu" in load_target(target).ops
    for quantized in (False, True):
        rep = _check(tmp_path, gelu_chain_qdq() if quantized else gelu_chain(), target)
        erfs = [n for n in rep.nodes if n.op_type == "Erf"]
        assert rep.runnable and all(RULE not in _rules(n) for n in rep.nodes)
        assert (not erfs) if lists_gelu else (erfs and erfs[0].placement == Placement.FALLBACK), rep.nodes
    # An Erf beside a GELU chain, read by something else, is a standalone Erf again.
    m = gelu_chain()
    m.graph.output.append(helper.make_tensor_value_info("e", onnx.TensorProto.FLOAT, X))  # the Erf's output
    rep = _check(tmp_path, m, target)
    assert [n.op_type for n in rep.nodes if RULE in _rules(n)] == ["Erf"] and not rep.runnable


@pytest.mark.parametrize("target", OTHER_TARGETS)
@pytest.mark.parametrize("key", sorted(ENTRIES))
def test_onnx_targets_never_get_the_verdict(tmp_path: Path, key: str, target: str) -> None:
    for quantized in (False, True):
        rep = _check(tmp_path, ENTRIES[key](quantized), target)
        assert all(RULE not in _rules(n) for n in rep.nodes), (key, target)


@pytest.mark.parametrize("target", ["ort-cpu", "intel-cpu"])
def test_cubic_resize_on_an_onnx_runtime_target_is_unchanged(tmp_path: Path, target: str) -> None:
    for quantized in (False, True):
        rep = _check(tmp_path, ENTRIES["Resize.cubic"](quantized), target)
        assert rep.runnable and rep.all_accelerated and _node(rep).failures == [], rep.nodes


def test_unreadable_attributes_match_nothing(tmp_path: Path) -> None:
    # Pad with pads computed at run time: the mode alone does not say the pad is wider than 1.
    node = N("Pad", ["x", "p"], ["y"], name="n", mode="edge")
    m = make_model([node], [("x", X), ("p", [8])], [("y", None)])
    m.graph.input[1].type.tensor_type.elem_type = onnx.TensorProto.INT64
    rep = _check(tmp_path, m, "arm-cpu-xnnpack")
    assert RULE not in _rules(_node(rep)) and rep.runnable


# ---- agreement with `edgecnn export --to tflite` ------------------------------------------------------------


def _export(tmp_path: Path, model: onnx.ModelProto, name: str):
    src, out = tmp_path / f"{name}.onnx", tmp_path / f"{name}.tflite"
    onnx.save(model, src)
    return invoke("export", src, "--to", "tflite", "-o", out), out


@pytest.mark.parametrize("prec", PRECISIONS)
@pytest.mark.parametrize("key", sorted(ENTRIES))
def test_agreement_export_refuses_every_entry(tmp_path: Path, key: str, prec: str) -> None:
    m = ENTRIES[key](PRECISIONS[prec])
    r, out = _export(tmp_path, m, key)
    assert not out.exists() and not list(tmp_path.glob("*.tflite*")), r.output
    assert r.exit_code == 2 and "node 'n'" in r.output and "nearest supported" in r.output, r.output
    # ... and check says the same on every TFLite target
    for target in TFLITE_TARGETS:
        assert not _check(tmp_path, m, target).runnable


@pytest.mark.parametrize("prec", PRECISIONS)
@pytest.mark.parametrize("key", sorted(CONTROLS))
def test_agreement_export_converts_every_control(tmp_path: Path, key: str, prec: str) -> None:
    r, out = _export(tmp_path, CONTROLS[key](PRECISIONS[prec]), key)
    assert r.exit_code == 0 and out.is_file(), r.output


@pytest.mark.parametrize("key", sorted(CONVERTER_LIMITS))
def test_converter_limits_are_refused_by_export_but_not_in_the_table(tmp_path: Path, key: str) -> None:
    # One way only: the table is what no builtin computes, a subset of what edgecnn's converter refuses
    # (test_other_side_of_each_limit_keeps_its_verdict checks the verdicts of these models).
    r, out = _export(tmp_path, CONVERTER_LIMITS[key](False), key)
    assert r.exit_code == 2 and "nearest supported" in r.output and not out.exists(), r.output


# ---- the schema facts each entry cites ------------------------------------------------------------------------


def test_schema_facts_of_every_entry() -> None:
    s = pytest.importorskip("ai_edge_litert.schema_py_generated")
    ops = {k for k in vars(s.BuiltinOperator) if not k.startswith("_")}
    assert len(ops) == 210 and "REDUCE_WINDOW" in ops  # the schema of ai-edge-litert 2.3.0 the table cites
    for e in TABLE:
        assert set(e.builtins) <= ops, (e.key, set(e.builtins) - ops)
        assert not [o for o in ops for sub in e.absent if sub in o], e.key
        for table, fields in e.options:
            assert set(vars(getattr(s, table + "T")())) == set(fields), (e.key, table)
    # the families the messages name in full
    assert {o for o in ops if "RESIZE" in o} == {"RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR"}
    assert {o for o in ops if "POOL" in o} == {"AVERAGE_POOL_2D", "L2_POOL_2D", "MAX_POOL_2D"}
    assert {o for o in ops if "TRANSPOSE" in o and "CONV" in o} == {"TRANSPOSE_CONV", "CONV_3D_TRANSPOSE"}
    assert {o for o in ops if "CONVOLUTION" in o} == {"STABLEHLO_CONVOLUTION"}
    enum = lambda cls: {k for k in vars(cls) if not k.startswith("_")}  # noqa: E731
    assert enum(s.ReduceWindowFunction) == {"UNSUPPORTED", "ADD", "MUL", "MINIMUM", "MAXIMUM", "ALL", "ANY"}
    assert enum(s.MirrorPadMode) == {"REFLECT", "SYMMETRIC"}
    assert not [o for o in enum(s.BuiltinOptions) | enum(s.BuiltinOptions2) if "Elu" in o]  # ELU takes no options
    # what the exclusions rest on: a dilated 3-D transposed conv and a dilated windowed max are builtins
    assert {"dilationHFactor", "dilationWFactor"} <= set(vars(s.Conv3DOptionsT()))
    assert {"windowDilations"} <= set(vars(s.StablehloReduceWindowOptionsT()))


# ---- the exclusions run on LiteRT: a builtin computes them ----------------------------------------------------


def _litert(data: bytes, x: np.ndarray) -> np.ndarray:
    interp = pytest.importorskip("ai_edge_litert.interpreter")
    it = interp.Interpreter(model_content=data)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])


def _with_options(data: bytes, set_options: Callable[[object, object], None]) -> bytes:
    """Re-pack a one-op flatbuffer after ``set_options(op, schema)`` (options the builder has no table for)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    from edgecnn.export.tflite_writer import FILE_IDENTIFIER

    m = s.ModelT.InitFromPackedBuf(data, 0)
    set_options(m.subgraphs[0].operators[0], s)
    b = flatbuffers.Builder(1 << 16)
    b.Finish(m.Pack(b), file_identifier=FILE_IDENTIFIER)
    return bytes(b.Output())


def _ort(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_dilated_maxpool_is_reduce_window_max_on_litert() -> None:
    pytest.importorskip("ai_edge_litert.interpreter")
    from edgecnn.export.tflite_writer import TFLiteBuilder

    x = np.random.default_rng(0).standard_normal((1, 4, 9, 9)).astype(np.float32)
    node = N("MaxPool", ["x"], ["y"], kernel_shape=[2, 3], dilations=[2, 3])
    ref = _ort(make_model([node], [("x", [1, 4, 9, 9])], [("y", None)]), x)
    b = TFLiteBuilder()
    xi = b.add_tensor("x", [1, 9, 9, 4], "float32")
    ins = [xi, b.add_tensor("init", [], "float32", data=np.array(-np.inf, np.float32))]
    for name, v in (("shape", [1, 2, 3, 1]), ("strides", [1, 1, 1, 1]), ("dilations", [1, 2, 3, 1])):
        ins.append(b.add_tensor(name, [4], "int64", data=np.array(v, np.int64)))
    y = b.add_tensor("y", [1, *ref.shape[2:], 4], "float32")
    b.add_op("REDUCE_WINDOW", ins, [y])
    b.set_io([xi], [y])

    def opts(op, s) -> None:
        o = s.ReduceWindowOptionsT()
        o.reduceFunction = s.ReduceWindowFunction.MAXIMUM
        op.builtinOptions2Type, op.builtinOptions2 = s.BuiltinOptions2.ReduceWindowOptions, o

    data = _with_options(b.to_bytes(), opts)
    got = _litert(data, np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
    np.testing.assert_array_equal(got.transpose(0, 3, 1, 2), ref)
    assert xnnpack_claimed(data) == [False]  # LiteRT's CPU kernel runs it, not the XNNPACK delegate


def test_dilated_conv_transpose_is_conv_3d_transpose_on_litert() -> None:
    pytest.importorskip("ai_edge_litert.interpreter")
    from edgecnn.export.tflite_writer import TFLiteBuilder

    x = np.random.default_rng(0).standard_normal((1, 4, 9, 9)).astype(np.float32)
    w = rng_w(4, 3, 2, 2)  # ONNX [C_in, C_out, kh, kw]
    node = N("ConvTranspose", ["x", "w"], ["y"], kernel_shape=[2, 2], strides=[2, 2], dilations=[2, 2])
    ref = _ort(make_model([node], [("x", [1, 4, 9, 9])], [("y", None)], {"w": w}), x)
    oh, ow = ref.shape[2:]
    b = TFLiteBuilder()
    shape = b.add_tensor("shape", [5], "int32", data=np.array([1, 1, oh, ow, 3], np.int32))
    wt = np.ascontiguousarray(w.transpose(2, 3, 1, 0)[None])  # [D=1, kh, kw, C_out, C_in]
    wi = b.add_tensor("w", list(wt.shape), "float32", data=wt)
    xi = b.add_tensor("x", [1, 1, 9, 9, 4], "float32")
    y = b.add_tensor("y", [1, 1, oh, ow, 3], "float32")
    b.add_op("CONV_3D_TRANSPOSE", [shape, wi, xi], [y])
    b.set_io([xi], [y])

    def opts(op, s) -> None:
        o = s.Conv3DOptionsT()
        o.padding, o.strideD, o.strideH, o.strideW = s.Padding.VALID, 1, 2, 2
        o.dilationDFactor, o.dilationHFactor, o.dilationWFactor = 1, 2, 2
        op.builtinOptionsType, op.builtinOptions = s.BuiltinOptions.Conv3DOptions, o

    data = _with_options(b.to_bytes(), opts)
    got = _litert(data, np.ascontiguousarray(x.transpose(0, 2, 3, 1)[:, None]))
    np.testing.assert_allclose(got[:, 0].transpose(0, 3, 1, 2), ref, atol=1e-5)
    assert xnnpack_claimed(data) == [False]  # LiteRT's CPU kernel runs it, not the XNNPACK delegate


@pytest.mark.parametrize("p", [1, 2])
def test_edge_pad_is_mirror_pad_symmetric_only_by_one(p: int) -> None:
    # Pad.edge starts above 1: MIRROR_PAD SYMMETRIC repeats the edge element for a pad of 1, not beyond it.
    pytest.importorskip("ai_edge_litert.interpreter")
    from edgecnn.export.tflite_writer import TFLiteBuilder

    x = np.random.default_rng(0).standard_normal((1, 4, 5, 6)).astype(np.float32)
    pads = np.array([0, 0, p, p, 0, 0, p, p], np.int64)
    ref = _ort(make_model([N("Pad", ["x", "p"], ["y"], mode="edge")], [("x", [1, 4, 5, 6])], [("y", None)],
                          {"p": pads}), x)  # fmt: skip
    b = TFLiteBuilder()
    xi = b.add_tensor("x", [1, 5, 6, 4], "float32")
    pt = b.add_tensor("p", [4, 2], "int32", data=np.array([[0, 0], [p, p], [p, p], [0, 0]], np.int32))
    y = b.add_tensor("y", [1, 5 + 2 * p, 6 + 2 * p, 4], "float32")
    b.add_op("MIRROR_PAD", [xi, pt], [y], {"mode": "SYMMETRIC"})
    b.set_io([xi], [y])
    got = _litert(b.to_bytes(), np.ascontiguousarray(x.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)
    assert np.array_equal(got, ref) == (p == 1)


def test_stablehlo_convolution_has_no_litert_kernel() -> None:
    # The one builtin with a group count for a transposed convolution: the interpreter cannot run it.
    pytest.importorskip("ai_edge_litert.interpreter")
    from edgecnn.export.tflite_writer import TFLiteBuilder

    b = TFLiteBuilder()
    xi = b.add_tensor("x", [1, 9, 9, 4], "float32")
    w = b.add_tensor("w", [2, 2, 2, 4], "float32", data=rng_w(2, 2, 2, 4))
    y = b.add_tensor("y", [1, 8, 8, 4], "float32")
    b.add_op("STABLEHLO_CONVOLUTION", [xi, w], [y])
    b.set_io([xi], [y])
    with pytest.raises(Exception, match="STABLEHLO_CONVOLUTION"):
        _litert(b.to_bytes(), np.zeros((1, 9, 9, 4), np.float32))


# ---- end to end: `edgecnn check` on the command line ---------------------------------------------------------


def test_cli_check_says_cannot_run_and_keeps_the_exit_codes(tmp_path: Path) -> None:
    p = tmp_path / "m.onnx"
    onnx.save(ENTRIES["Resize.cubic"](False), p)
    js, md = tmp_path / "r.json", tmp_path / "r.md"
    r = run_cli("check", p, "-t", "arm-cpu-xnnpack", "--json", js, "--markdown", md)
    # A model that cannot run is a verdict, not a failure: exit 0 without --strict, as for a target with no
    # fallback device (README: --strict exits 1 when any node falls back or the model cannot run).
    assert r.returncode == 0, r.stderr
    out = " ".join(r.stdout.split())
    for words in ("cannot run: no TFLite builtin", "no TFLite builtin for Resize with mode 'cubic'",
                  "RESIZE_BILINEAR and RESIZE_NEAREST_NEIGHBOR", "nearest supported: Resize with mode 'linear'",
                  "NO: no TFLite builtin for 1 node(s)", "cannot run: no TFLite builtin for 1 node(s)"):  # fmt: skip
        assert words in out, (words, r.stdout)
    assert "NO: no fallback device" not in out  # the target has one; it cannot run the node either
    t = json.loads(js.read_text())["targets"][0]
    (node,) = t["nodes"]
    assert t["runnable"] is False and node["placement"] == "unsupported" and node["failures"][0]["rule"] == RULE
    assert "| cannot run: no TFLite builtin |" in md.read_text() and SCHEMA_PATH in md.read_text()
    strict = run_cli("check", p, "-t", "arm-cpu-xnnpack", "--strict")
    assert strict.returncode == 1 and "cannot run on arm-cpu-xnnpack" in strict.stderr, strict.stderr
    # the ONNX target next to it runs the same model, and says so
    both = run_cli("check", p, "-t", "ort-cpu", "-t", "arm-cpu-xnnpack", "--json", tmp_path / "b.json")
    assert both.returncode == 0
    runnable = {t["target"]: t["runnable"] for t in json.loads((tmp_path / "b.json").read_text())["targets"]}
    assert runnable == {"ort-cpu": True, "arm-cpu-xnnpack": False}


def test_markdown_report_names_the_reason(tmp_path: Path) -> None:
    p = tmp_path / "m.onnx"
    onnx.save(ENTRIES["ConvTranspose.grouped"](True), p)
    text = render_markdown(check_model(load_model(p), [load_target(t) for t in TFLITE_TARGETS]))
    assert text.count("cannot run: no TFLite builtin for 1 node(s)") == len(TFLITE_TARGETS)  # summary row cells
    assert text.count("| cannot run: no TFLite builtin |") == len(TFLITE_TARGETS)
    assert "CONVOLUTION has feature\\_group\\_count but no LiteRT kernel" in text  # md_text escapes "_"


_OWN_TARGET = """schema_version = 1
name = "tflite-no-fallback"
description = "a TFLite NPU with no fallback device"
runtime = "test"
format = "tflite"
accelerator = "Test NPU"
fallback = ""
precisions = ["float32"]
source = "doc"

[sources.doc]
url = "https://example.com/ops"
version = "1.0"

[ops.Resize]
source = "doc"
tflite = ["RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR"]
"""


def test_a_tflite_target_without_fallback_names_both_reasons(tmp_path: Path) -> None:
    # Resize (listed) in mode cubic has no builtin; Sigmoid is not listed and there is no fallback device.
    (tmp_path / "t.toml").write_text(_OWN_TARGET)
    nodes = [N("Resize", ["x", "", "s"], ["r"], name="n", mode="cubic"), N("Sigmoid", ["r"], ["y"], name="sig")]
    m = make_model(nodes, [("x", X)], [("y", None)], {"s": np.array([1, 1, 2, 2], np.float32)})
    p = tmp_path / "m.onnx"
    onnx.save(m, p)
    rep = check_target(load_model(p), load_target(tmp_path / "t.toml"))
    assert {n.name: _rules(n)[0] for n in rep.nodes} == {"n": RULE, "sig": "op_not_listed"}
    rows = dict(summary_rows(SupportReport(model="m.onnx", targets=[rep])))
    assert rows["model runs"] == ["NO: no TFLite builtin for 1 node(s); no fallback device"]
    assert rows["verdict"] == ["cannot run: no TFLite builtin for 1 node(s)"]
