"""Integer lookup tables: a float activation between a DequantizeLinear and a QuantizeLinear becomes one
256-entry table indexed by the 8-bit input (``Cast`` to int32, then ``Gather`` on a constant uint8/int8 table).

Why: ONNX Runtime (1.32, CPU EP) has no QLinear kernel for HardSigmoid or HardSwish, so in a QDQ model each
one runs as DequantizeLinear -> float op -> QuantizeLinear, three passes over the tensor in float. With 8-bit
input there are only 256 possible inputs, so the whole DQ -> f -> Q chain is a function of the input byte and
a table computes it exactly as the float chain rounds it (the table entry *is* Q(f(DQ(i)))). Gather copies
bytes, so the QDQ fusions around it (QLinearConv before, QLinearMul/QLinearConv after) are untouched.

The opset < 14 form of HardSwish, ``Mul(x, HardSigmoid(x))``, becomes one table too (x -> x * HardSigmoid(x)
quantized with the Mul's output scale), which also removes the QLinearMul and the gate's rounding.

Which ops get a table is the runtime policy's ``lookup_ops`` (edgecnn.quantize.qdq); the numbers that chose
it are printed by benchmarks/int8_placement.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgecnn.graph.external import to_array
from edgecnn.graph.load import node_attr

# The float functions a table can stand for, from the node's attributes (ONNX operator definitions).
_FLOAT_FUNCS: dict[str, Callable[[onnx.NodeProto], Callable[[np.ndarray], np.ndarray]]] = {}


def _hard_sigmoid(node: onnx.NodeProto) -> Callable[[np.ndarray], np.ndarray]:
    alpha, beta = float(node_attr(node, "alpha", 0.2)), float(node_attr(node, "beta", 0.5))
    return lambda x: np.clip(alpha * x + beta, 0.0, 1.0)


def _hard_swish(node: onnx.NodeProto) -> Callable[[np.ndarray], np.ndarray]:
    return lambda x: x * np.clip(x / 6.0 + 0.5, 0.0, 1.0)


_FLOAT_FUNCS["HardSigmoid"] = _hard_sigmoid
_FLOAT_FUNCS["HardSwish"] = _hard_swish
LOOKUP_CAPABLE = frozenset(_FLOAT_FUNCS)


def _scalar(inits: dict[str, onnx.TensorProto], name: str) -> np.ndarray | None:
    t = inits.get(name)
    if t is None:
        return None
    a = numpy_helper.to_array(t)
    return a if a.size == 1 else None


def table(
    func: Callable[[np.ndarray], np.ndarray],
    x_scale: float,
    x_zp: np.ndarray,
    y_scale: float,
    y_zp: np.ndarray,
) -> np.ndarray:
    """The 256 outputs Q(func(DQ(i))) for every input byte, ordered by the byte's unsigned value so that a
    Gather indexed by the int32 value of an int8 input (-128..127, negative indices wrap) finds its entry."""
    x_dtype, y_dtype = np.dtype(x_zp.dtype), np.dtype(y_zp.dtype)
    codes = np.arange(256, dtype=np.uint8).view(x_dtype).astype(np.float64)
    xf = (codes - float(x_zp)) * np.float64(np.float32(x_scale))
    # The float chain runs in float32: evaluate the function there too, then QuantizeLinear's rounding
    # (round half to even) and saturation.
    yf = func(xf.astype(np.float32)).astype(np.float32)
    info = np.iinfo(y_dtype)
    q = np.rint(yf / np.float32(y_scale)) + float(y_zp)
    return np.clip(q, info.min, info.max).astype(y_dtype)


def apply_lookups(model: onnx.ModelProto, ops: frozenset[str], keys: dict[str, str]) -> dict[str, str]:
    """Replace, in place, each ``DQ -> op -> Q`` (``op`` in ``ops``) and each ``Mul(x, HardSigmoid(x))``
    between Q/DQ by a table. ``keys``: a node's first output -> the name the report uses for the node; only
    these nodes (the ones the plan quantized, not excluded) are replaced. Returns report name -> what was
    done, for every node replaced."""
    g = model.graph
    inits, producer, consumers, outputs = _index(g)

    def only(t: str, op: str) -> onnx.NodeProto | None:
        cons = consumers.get(t, [])
        return cons[0] if len(cons) == 1 and cons[0].op_type == op and t not in outputs else None

    def qparams(n: onnx.NodeProto) -> tuple[float, np.ndarray] | None:
        return _qp(inits, n)

    removed: set[int] = set()
    added: list[tuple[onnx.NodeProto, list[onnx.NodeProto]]] = []  # (insert before this node, new nodes)
    new_inits: list[onnx.TensorProto] = []
    casts: dict[str, str] = {}
    done: dict[str, str] = {}
    for n in list(g.node):
        if n.op_type not in ops or n.op_type not in _FLOAT_FUNCS or id(n) in removed or n.output[0] not in keys:
            continue
        dq = producer.get(n.input[0])
        q = only(n.output[0], "QuantizeLinear")
        if dq is None or dq.op_type != "DequantizeLinear" or q is None:
            continue
        xp, yp = qparams(dq), qparams(q)
        if xp is None or yp is None:
            continue
        func = _FLOAT_FUNCS[n.op_type](n)
        chain = [n, q]
        out = q.output[0]
        what = f"integer lookup table (256-entry Gather): ONNX Runtime has no QLinear{n.op_type}"
        hswish = _hard_swish_tail(n, q, dq, producer, only, qparams, keys)
        if hswish is not None:
            g_dq, mul, q3 = hswish
            yp = qparams(q3)
            assert yp is not None
            gate = func
            func = lambda x, gate=gate: x * gate(x)  # noqa: E731
            chain += [g_dq, mul, q3]
            out = q3.output[0]
            what = (
                "integer lookup table (256-entry Gather) for HardSwish (x·HardSigmoid(x)): "
                "ONNX Runtime has no QLinearHardSwish"
            )
        xq = dq.input[0]
        tab = table(func, xp[0], xp[1], yp[0], yp[1])
        t_name = f"{out}_lut"
        new_inits.append(numpy_helper.from_array(tab, t_name))
        fresh = []
        if xq not in casts:
            casts[xq] = f"{xq}_index"
            fresh.append(helper.make_node("Cast", [xq], [casts[xq]], name=f"{xq}_Cast", to=TensorProto.INT32))
        fresh.append(helper.make_node("Gather", [t_name, casts[xq]], [out], name=f"{n.name or out}_lut", axis=0))
        added.append((n, fresh))
        removed.update(id(c) for c in chain)
        done[keys.get(n.output[0], n.name)] = what
        if hswish is not None:
            done[keys.get(hswish[1].output[0], hswish[1].name)] = "part of the HardSwish lookup table"
    if not done:
        return done
    before = {id(n): fresh for n, fresh in added}
    final: list[onnx.NodeProto] = []
    for n in g.node:
        final.extend(before.get(id(n), []))
        if id(n) not in removed:
            final.append(n)
    _replace_nodes(model, final, new_inits)
    return done


def decompose(
    model: onnx.ModelProto,
    ops: frozenset[str],
    keys: dict[str, str],
    base_dir: Path | None = None,
    channel_min: dict[str, np.ndarray] | None = None,
) -> dict[str, str]:
    """Rewrite, in place, each ``DQ -> HardSigmoid|HardSwish -> Q`` into ops the runtime fuses into integer
    kernels: HardSigmoid(x) = Clip(alpha*x + beta, 0, 1) is one Add of a constant to the input re-read with
    scale alpha*s (the multiply costs nothing: it is the DequantizeLinear's scale), and the Clip is the output
    Q's saturation (its grid spans at most [0, 1]); HardSwish(x) = x * HardSigmoid(x) adds a Mul. ONNX Runtime
    runs them as QLinearAdd / QLinearMul, which, unlike a Gather, its NHWC layout pass keeps without Transposes.
    PRelu becomes a QLinearMul and a QLinearAdd too (``_prelu``; ``channel_min``: each PRelu input's per-channel
    minimum from calibration, which bounds its Mul's grid). ``base_dir``: where external weights live.
    ``keys``: a node's first output -> its report name (only these nodes are rewritten). Returns report name
    -> what was done."""
    g = model.graph
    inits, producer, consumers, outputs = _index(g)
    new_inits: list[onnx.TensorProto] = []
    replace: dict[int, list[onnx.NodeProto]] = {}
    done: dict[str, str] = {}
    for n in list(g.node):
        if n.op_type not in ops or n.op_type not in ("HardSigmoid", "HardSwish", "PRelu") or n.output[0] not in keys:
            continue
        dq = producer.get(n.input[0])
        cons = consumers.get(n.output[0], [])
        if dq is None or dq.op_type != "DequantizeLinear" or len(cons) != 1 or n.output[0] in outputs:
            continue
        q = cons[0]
        xp, yp = _qp(inits, dq), _qp(inits, q) if q.op_type == "QuantizeLinear" else None
        if xp is None or yp is None:
            continue
        (s, z), (s2, z2) = xp, yp
        if n.op_type == "PRelu":
            q_x = producer.get(dq.input[0])
            x_min = (
                (channel_min or {}).get(q_x.input[0]) if q_x is not None and q_x.op_type == "QuantizeLinear" else None
            )
            fresh = _prelu(n, dq, s, z, inits, new_inits, base_dir, x_min)
            if fresh is None:
                continue
            replace[id(n)] = fresh
            done[keys.get(n.output[0], n.name)] = (
                "integer form: QLinearMul + QLinearAdd (x + (1 - slope)·Relu(-x), the Relu = the Q's saturation): "
                "ONNX Runtime has no integer PRelu"
            )
            continue
        alpha, beta = (
            (float(node_attr(n, "alpha", 0.2)), float(node_attr(n, "beta", 0.5)))
            if n.op_type == "HardSigmoid"
            else (1 / 6, 0.5)
        )
        if alpha <= 0:
            continue
        base = n.output[0]
        fresh: list[onnx.NodeProto] = []
        if n.op_type == "HardSigmoid":
            # The output grid must not reach below 0 nor (beyond rounding) above 1: then saturation is the Clip.
            info = np.iinfo(z2.dtype)
            if info.min - int(z2) < 0 or (info.max - int(z2)) * s2 > 1 + s2 / 2:
                continue
            fresh += _gate(base, dq.input[0], s, z, alpha, beta, base, new_inits)
            what = (
                "integer form: QLinearAdd (alpha·x read at the input's scale, Clip = the output Q's saturation): "
                "ONNX Runtime has no QLinearHardSigmoid"
            )
        else:
            if z.dtype != np.uint8:
                # Measured (tests/test_quantize_int_forms.py): ORT 1.32 on x86 leaves an int8 DQ -> Mul -> Q in
                # float, so an int8 HardSwish would gain float ops, not lose them.
                continue
            info = np.iinfo(z.dtype)
            gs, gz = 1.0 / (info.max - info.min), np.array(info.min, z.dtype)  # the gate's grid: exactly [0, 1]
            gate = f"{base}_gate"
            fresh += _gate(gate, dq.input[0], s, z, alpha, beta, gate, new_inits)
            sn, zn = f"{gate}_scale", f"{gate}_zero_point"
            new_inits += [numpy_helper.from_array(np.array(gs, np.float32), sn), numpy_helper.from_array(gz, zn)]
            fresh += [
                helper.make_node("QuantizeLinear", [gate, sn, zn], [f"{gate}_q"], name=f"{gate}_QuantizeLinear"),
                helper.make_node("DequantizeLinear", [f"{gate}_q", sn, zn], [f"{gate}_dq"], name=f"{gate}_dq"),
                helper.make_node("Mul", [dq.output[0], f"{gate}_dq"], [base], name=f"{base}_mul"),
            ]
            what = "integer form: QLinearAdd + QLinearMul (x·HardSigmoid(x); ONNX Runtime has no QLinearHardSwish)"
        replace[id(n)] = fresh
        done[keys.get(n.output[0], n.name)] = what
    if done:
        final = [m for n in g.node for m in replace.get(id(n), [n])]
        _replace_nodes(model, final, new_inits)
    return done


def _prelu(
    n: onnx.NodeProto,
    dq: onnx.NodeProto,
    s: float,
    z: np.ndarray,
    inits: dict[str, onnx.TensorProto],
    new_inits: list[onnx.TensorProto],
    base_dir: Path | None,
    x_min: np.ndarray | None = None,
) -> list[onnx.NodeProto] | None:
    """``PRelu(x) = x + (1 - slope)·Relu(-x)`` from ops ONNX Runtime runs in integer: a Mul of x by the constant
    ``slope - 1`` (<= 0) whose output grid starts at 0, so the Q's saturation is the Relu (QLinearMul), then an Add
    of x (QLinearAdd). Needs a constant slope <= 1 (else the Mul's negative side is not the Relu) and uint8 x
    (ORT 1.32 on x86 leaves an int8 DQ -> Mul -> Q in float). None where it does not apply.

    The Mul's grid ends at the largest ``(1 - slope_c)·(-x)``. Without ``x_min`` that is bounded by the widest
    slope times x's grid bottom; with ``x_min`` (x's calibrated minimum per channel, one per slope) by each
    channel's own: a channel with a wide negative range and a slope near 1 no longer sets a coarse step for all
    (benchmarks/prelu_placement.py: 33.1 -> 36.0 dB on prelu-net-32, the float island's accuracy)."""
    if z.dtype != np.uint8 or len(n.input) < 2 or n.input[1] not in inits:
        return None
    slope = to_array(inits[n.input[1]], base_dir).astype(np.float64)
    if slope.size == 0 or not np.all(np.isfinite(slope)) or np.any(slope > 1):
        return None
    info = np.iinfo(z.dtype)
    neg = (1.0 - slope) * max(0.0, -(info.min - int(z)) * s)  # the largest (1 - slope)·(-x) on x's grid
    top = float(np.max(neg))
    if x_min is not None and x_min.size == slope.size > 1:
        seen = float(np.max((1.0 - slope.ravel()) * np.maximum(0.0, -x_min.astype(np.float64).ravel())))
        if seen > 0:
            top = min(top, seen)
    cmax = float(np.max(1.0 - slope))
    if top <= 0 or cmax <= 0:
        return None  # x never negative on its grid, or slope 1 everywhere: PRelu is the identity there
    span = info.max - info.min
    # slope - 1 on a grid [-cmax, 0] (zero point at the top) and the Mul's output on [0, top] (zero point at the
    # bottom: its saturation is Relu(-x)).
    cs = cmax / span
    cq = np.clip(np.round((slope - 1.0) / cs) + info.max, info.min, info.max).astype(z.dtype)
    base = n.output[0]
    names = [f"{base}_negslope_q", f"{base}_negslope_scale", f"{base}_negslope_zero_point"]
    mn = [f"{base}_neg_scale", f"{base}_neg_zero_point"]
    new_inits += [
        numpy_helper.from_array(cq, names[0]),
        numpy_helper.from_array(np.array(cs, np.float32), names[1]),
        numpy_helper.from_array(np.array(info.max, z.dtype), names[2]),
        numpy_helper.from_array(np.array(top / span, np.float32), mn[0]),
        numpy_helper.from_array(np.array(info.min, z.dtype), mn[1]),
    ]
    return [
        helper.make_node("DequantizeLinear", names, [f"{base}_negslope"], name=f"{base}_negslope_dq"),
        helper.make_node("Mul", [dq.output[0], f"{base}_negslope"], [f"{base}_neg"], name=f"{base}_neg_mul"),
        helper.make_node("QuantizeLinear", [f"{base}_neg", *mn], [f"{base}_neg_q"], name=f"{base}_neg_q"),
        helper.make_node("DequantizeLinear", [f"{base}_neg_q", *mn], [f"{base}_neg_dq"], name=f"{base}_neg_dq"),
        helper.make_node("Add", [dq.output[0], f"{base}_neg_dq"], [base], name=f"{base}_add"),
    ]


def _replace_nodes(model: onnx.ModelProto, final: list[onnx.NodeProto], new_inits: list[onnx.TensorProto]) -> None:
    """Set the graph's nodes to ``final`` (plus ``new_inits``), dropping a DequantizeLinear nothing reads any
    more (a runtime would still run it) and initializers nothing uses."""
    g = model.graph
    outputs = {o.name for o in g.output}
    used = {i for n in final for i in n.input} | outputs
    final = [n for n in final if n.op_type != "DequantizeLinear" or any(o in used for o in n.output)]
    used = {i for n in final for i in n.input} | outputs
    del g.node[:]
    g.node.extend(final)
    g.initializer.extend(new_inits)
    keep = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)


def _gate(
    base: str, xq: str, s: float, z: np.ndarray, alpha: float, beta: float, out: str, inits: list[onnx.TensorProto]
) -> list[onnx.NodeProto]:
    """``alpha*DQ(xq) + beta`` as DQ(xq, alpha*s) + DQ(beta as a one-value constant): an Add ORT fuses."""
    info = np.iinfo(z.dtype)
    # beta as the extreme code of a grid whose other end is 0 (zero point 0 for int8, 0 or 255 for uint8),
    # so that DequantizeLinear gives beta back to float32 rounding.
    if beta >= 0:
        bz = 0
        bq = info.max
    else:
        bz = 0 if info.min < 0 else info.max
        bq = info.min
    bs = abs(beta) / abs(bq - bz) if beta else 1.0
    if beta == 0:
        bq = bz
    names = [f"{base}_ax_scale", f"{base}_beta_q", f"{base}_beta_scale", f"{base}_beta_zero_point"]
    inits += [
        numpy_helper.from_array(np.array(alpha * s, np.float32), names[0]),
        numpy_helper.from_array(np.array(bq, z.dtype), names[1]),
        numpy_helper.from_array(np.array(bs, np.float32), names[2]),
        numpy_helper.from_array(np.array(bz, z.dtype), names[3]),
    ]
    zn = f"{base}_ax_zero_point"
    inits.append(numpy_helper.from_array(np.array(z, z.dtype), zn))
    return [
        helper.make_node("DequantizeLinear", [xq, names[0], zn], [f"{base}_ax"], name=f"{base}_ax_dq"),
        helper.make_node("DequantizeLinear", names[1:], [f"{base}_beta"], name=f"{base}_beta_dq"),
        helper.make_node("Add", [f"{base}_ax", f"{base}_beta"], [out], name=f"{base}_add"),
    ]


def _index(
    g: onnx.GraphProto,
) -> tuple[dict[str, onnx.TensorProto], dict[str, onnx.NodeProto], dict[str, list[onnx.NodeProto]], set[str]]:
    """Initializers by name, each tensor's producer and consumers, and the graph's output names."""
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    return {t.name: t for t in g.initializer}, producer, consumers, {o.name for o in g.output}


def _qp(inits: dict[str, onnx.TensorProto], n: onnx.NodeProto) -> tuple[float, np.ndarray] | None:
    """(scale, zero point) of a Q/DQ node with per-tensor 8-bit parameters, else None."""
    if len(n.input) < 3 or any(a.name == "axis" for a in n.attribute):
        return None
    s, z = _scalar(inits, n.input[1]), _scalar(inits, n.input[2])
    if s is None or z is None or z.dtype not in (np.uint8, np.int8):
        return None
    return float(s.reshape(())), z.reshape(())


def _hard_swish_tail(
    hs: onnx.NodeProto,
    q: onnx.NodeProto,
    dq: onnx.NodeProto,
    producer: dict[str, onnx.NodeProto],
    only: Callable[[str, str], onnx.NodeProto | None],
    qparams: Callable[[onnx.NodeProto], tuple[float, np.ndarray] | None],
    keys: dict[str, str],
) -> tuple[onnx.NodeProto, onnx.NodeProto, onnx.NodeProto] | None:
    """For ``HardSigmoid(DQ(x))`` whose quantized gate only multiplies ``DQ(x)`` itself (HardSwish written as
    HardSigmoid·Mul), the gate's DQ, the Mul and the Mul's Q; else None."""
    if hs.op_type != "HardSigmoid":
        return None
    g_dq = only(q.output[0], "DequantizeLinear")
    if g_dq is None:
        return None
    mul = only(g_dq.output[0], "Mul")
    if mul is None or len(mul.input) != 2:
        return None
    other = mul.input[1] if mul.input[0] == g_dq.output[0] else mul.input[0]
    odq = producer.get(other)
    if odq is None or odq.op_type != "DequantizeLinear" or odq.input[0] != dq.input[0]:
        return None
    q3 = only(mul.output[0], "QuantizeLinear")
    if q3 is None or qparams(q3) is None or mul.output[0] not in keys:
        return None
    return g_dq, mul, q3
