"""Graph passes: pure functions ModelProto -> ModelProto whose results pass the checker and shape inference.

- ``fold_batchnorm``: Conv followed by BatchNormalization becomes one Conv.
- ``remove_identities``: Identity and inference-mode Dropout nodes are bypassed.
- ``fold_constants``: Constant nodes become initializers (so every weight is an initializer), and nodes
  whose inputs are all constant (shape arithmetic, weight reshapes, casts) are computed once.
- ``fold_static_shapes``: at fixed input shapes, Shape/Size of a tensor whose shape is known become
  constants, then ``fold_constants`` computes the shape arithmetic that hangs off them (Gather, Unsqueeze,
  Concat, Range, ConstantOfShape, ...), as a vendor converter does at a fixed input size.
- ``canonical_hard_activations``: hard-sigmoid and hard-swish written out in elementwise ops (how Paddle,
  tf2onnx and hand-written exports spell them: ``x * clip(x + 3, 0, 6) / 6``, ``relu6(x + 3) / 6``, ...)
  become one HardSigmoid (and its Mul), the form quantizers and runtimes have integer and fused kernels for.
- ``prepare``: all of the above but static shapes; a Conv or ConvTranspose followed by per-channel constant
  Add/Sub/Mul/Div and BatchNormalization (a Paddle export's bias Add) absorbs them; then shape inference; then a
  ReduceMean over H and W of a 4-D tensor (keeping dims) becomes GlobalAveragePool, the op runtimes have
  integer kernels for.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Container, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgecnn.fsutil import save_onnx
from edgecnn.graph.external import scalar_of, to_array
from edgecnn.graph.load import infer_shapes_inplace, node_attr


@dataclass(frozen=True)
class GeluChain:
    """One exact GELU written as ops: ``x`` its input, ``nodes`` its ops in order, the last one writing its output."""

    x: str
    nodes: tuple[onnx.NodeProto, ...]


def gelu_erf_chains(
    nodes: Iterable[onnx.NodeProto], scalar: Callable[[str], float | None], outputs: Container[str]
) -> list[GeluChain]:
    """The exact GELU as exporters write it before opset 20: Div(x, sqrt 2) or Mul(x, 1/sqrt 2) -> Erf -> Add 1
    -> Mul by x and by 0.5 in any order (x * 0.5 first, the product by x first, or -- torch.onnx's dynamo
    exporter -- the 0.5 first). Structure and constants are both checked (``scalar``:
    a tensor's value if it is a constant scalar, else None); an intermediate that is a graph output, or that
    feeds anything else, breaks the chain. The one matcher for quantize (keep the chain float) and the TFLite
    converter (write one GELU)."""
    nodes = list(nodes)
    producer = {o: n for n in nodes for o in n.output}
    users: dict[str, list[onnx.NodeProto]] = {}
    for n in nodes:
        for i in n.input:
            users.setdefault(i, []).append(n)

    def only(t: str, op: str) -> onnx.NodeProto | None:
        u = users.get(t, [])
        return u[0] if len(u) == 1 and u[0].op_type == op and t not in outputs else None

    def other(n: onnx.NodeProto, t: str) -> str:
        return n.input[1] if n.input[0] == t else n.input[0]

    def near(v: float | None, want: float) -> bool:
        return v is not None and abs(v - want) <= 1e-4 * abs(want)

    chains = []
    for erf in (n for n in nodes if n.op_type == "Erf"):
        pre = producer.get(erf.input[0])
        if pre is None or len(pre.input) != 2 or only(pre.output[0], "Erf") is not erf:
            continue
        if (pre.op_type == "Div" and near(scalar(pre.input[1]), 2**0.5)) or (
            pre.op_type == "Mul" and near(scalar(pre.input[1]), 2**-0.5)
        ):
            x = pre.input[0]
        elif pre.op_type == "Mul" and near(scalar(pre.input[0]), 2**-0.5):
            x = pre.input[1]
        else:
            continue
        add = only(erf.output[0], "Add")
        if add is None or not near(scalar(other(add, erf.output[0])), 1.0):
            continue
        m1 = only(add.output[0], "Mul")
        if m1 is None:
            continue
        partner = other(m1, add.output[0])
        if near(scalar(partner), 0.5):  # torch.onnx dynamo: x * ((erf(...) + 1) * 0.5)
            m2 = only(m1.output[0], "Mul")
            if m2 is not None and other(m2, m1.output[0]) == x:
                chains.append(GeluChain(x, (pre, erf, add, m1, m2)))
            continue
        if partner == x:
            m2 = only(m1.output[0], "Mul")
            if m2 is not None and near(scalar(other(m2, m1.output[0])), 0.5):
                chains.append(GeluChain(x, (pre, erf, add, m1, m2)))
            continue
        half = producer.get(partner)
        is_half = half is not None and half.op_type == "Mul" and x in half.input
        if is_half and near(scalar(other(half, x)), 0.5) and only(partner, "Mul") is m1:
            chains.append(GeluChain(x, (pre, erf, add, half, m1)))
    return chains


def _consumers(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    out: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            out.setdefault(i, []).append(n)
    return out


def _rename_input(model: onnx.ModelProto, old: str, new: str) -> None:
    for n in model.graph.node:
        for k, i in enumerate(n.input):
            if i == old:
                n.input[k] = new
    for o in model.graph.output:
        if o.name == old:
            o.name = new


def _names_in_use(model: onnx.ModelProto) -> set[str]:
    g = model.graph
    used = {t.name for t in g.initializer} | {i.name for i in g.input}
    used.update(x for n in g.node for x in (*n.input, *n.output))
    return used


def _fresh_name(used: set[str], want: str) -> str:
    """``want``, or ``want_2``, ``want_3``...: a tensor name not in ``used`` (which it is added to)."""
    name, k = want, 2
    while name in used:
        name, k = f"{want}_{k}", k + 1
    used.add(name)
    return name


# Nodes computed ahead of time when all their inputs are constant: shape arithmetic, reshapes of
# weights, casts. Outputs above this size stay in the graph (folding must not bloat the file).
FOLD_MAX_BYTES = 1 << 20
_NEVER_FOLD = frozenset({"QuantizeLinear", "DequantizeLinear", "RandomNormal", "RandomUniform", "RandomNormalLike",
                         "RandomUniformLike", "Multinomial", "Bernoulli", "If", "Loop", "Scan"})  # fmt: skip


# A constant subgraph that would produce more than this is refused: neither edgecnn nor a runtime's own
# constant folding can materialise it (ConstantOfShape/Expand/Tile to billions of elements).
FOLD_HARD_LIMIT = 1 << 30


def _predicted_bytes(n: onnx.NodeProto, inits: dict[str, onnx.TensorProto], shapes: dict[str, list[int]]) -> int | None:
    """Bytes the node's outputs would take, from inferred shapes or (for size-making ops) the constant inputs."""
    total, known = 0, False
    for o in n.output:
        dims = shapes.get(o)
        if dims and all(d > 0 for d in dims):
            total += int(np.prod(dims, dtype=object)) * 4
            known = True
    if known:
        return total
    try:
        vals = [numpy_helper.to_array(inits[i]) if inits[i].data_location != onnx.TensorProto.EXTERNAL else None
                for i in n.input if i]  # fmt: skip
        if n.op_type == "ConstantOfShape" and vals[0] is not None:
            return int(np.prod([int(v) for v in vals[0].ravel()], dtype=object)) * 4
        if n.op_type == "Expand" and vals[1] is not None:
            a = list(inits[n.input[0]].dims)
            b = [int(v) for v in vals[1].ravel()]
            r = max(len(a), len(b))
            a, b = [1] * (r - len(a)) + a, [1] * (r - len(b)) + b
            return int(np.prod([max(x, y) for x, y in zip(a, b, strict=True)], dtype=object)) * 4
        if n.op_type == "Tile" and vals[1] is not None:
            d = list(inits[n.input[0]].dims)
            return int(np.prod([x * int(r) for x, r in zip(d, vals[1].ravel(), strict=False)], dtype=object)) * 4
        if n.op_type == "Range" and all(v is not None for v in vals[:3]):
            start, limit, delta = (float(np.asarray(v).ravel()[0]) for v in vals[:3])
            return int(max(0.0, np.ceil((limit - start) / delta))) * 8 if delta else None
    except (IndexError, KeyError, ValueError, OverflowError, TypeError):
        return None
    return None


def _fold_constants(m: onnx.ModelProto, base_dir: Path | None = None) -> onnx.ModelProto:
    """Constant nodes become initializers; then nodes whose inputs are all constant are evaluated once
    (onnx's reference evaluator) and replaced by their values, in graph order, so constant subgraphs vanish."""
    keep = []
    for n in m.graph.node:
        t = _constant_value(n)
        if t is not None:
            m.graph.initializer.append(t)
        else:
            keep.append(n)
    inits = {t.name: t for t in m.graph.initializer}
    elem_types = {
        vi.name: vi.type.tensor_type.elem_type
        for vi in [*m.graph.input, *m.graph.value_info, *m.graph.output]
        if vi.type.tensor_type.elem_type
    }
    graph_outputs = {o.name for o in m.graph.output}
    opset = [o for o in m.opset_import]
    shapes = {
        vi.name: [d.dim_value if d.HasField("dim_value") else -1 for d in vi.type.tensor_type.shape.dim]
        for vi in [*m.graph.value_info, *m.graph.output]
        if vi.type.tensor_type.HasField("shape")
    }
    folded: list[onnx.NodeProto] = []
    for n in keep:
        ins = [i for i in n.input if i]
        like = elem_types.get(n.input[1]) if n.op_type == "CastLike" and len(n.input) > 1 else None
        if like and n.input[0] in inits and n.output[0] not in graph_outputs:
            # CastLike reads only its second input's type (the torch dynamo exporter's zero bias is
            # CastLike(0.0, activation)): a constant first input makes a constant
            value = to_array(inits[n.input[0]], base_dir).astype(helper.tensor_dtype_to_np_dtype(like))
            t = numpy_helper.from_array(value, n.output[0])
            m.graph.initializer.append(t)
            inits[t.name] = t
            continue
        foldable = (
            n.domain in ("", "ai.onnx")
            and n.op_type not in _NEVER_FOLD
            and ins
            and all(i in inits for i in ins)
            and not any(o in graph_outputs for o in n.output)
            and all(
                inits[i].ByteSize() <= FOLD_MAX_BYTES or inits[i].data_location == onnx.TensorProto.EXTERNAL
                for i in ins
            )
        )
        if not foldable:
            folded.append(n)
            continue
        size = _predicted_bytes(n, inits, shapes)
        if size is not None and size > FOLD_HARD_LIMIT:
            from edgecnn.errors import ModelError

            raise ModelError(
                f"node '{n.name or n.output[0]}' ({n.op_type}) computes a constant of {size / (1 << 30):.1f} GiB from "
                f"constant inputs; edgecnn refuses constants above {FOLD_HARD_LIMIT >> 30} GiB (is a shape wrong?)"
            )
        if size is not None and size > FOLD_MAX_BYTES:
            folded.append(n)
            continue
        try:
            from onnx.reference import ReferenceEvaluator  # only when there is something to fold

            feeds = {i: to_array(inits[i], base_dir) for i in ins}
            one = helper.make_model(
                helper.make_graph([n], "fold", [], [helper.make_tensor_value_info(o, 0, None) for o in n.output if o]),
                opset_imports=opset,
            )
            values = ReferenceEvaluator(one).run(None, feeds)
        except Exception:  # an op the reference evaluator cannot run: leave it to the runtime
            folded.append(n)
            continue
        if sum(np.asarray(v).nbytes for v in values) > FOLD_MAX_BYTES:
            folded.append(n)
            continue
        for name, v in zip([o for o in n.output if o], values, strict=True):
            t = numpy_helper.from_array(np.asarray(v), name)
            m.graph.initializer.append(t)
            inits[name] = t
    del m.graph.node[:]
    m.graph.node.extend(folded)
    return m


def _constant_value(n: onnx.NodeProto) -> onnx.TensorProto | None:
    """The tensor a Constant node holds, named as its output: ``value``, or the scalar/list forms exporters also
    write (``value_float(s)``, ``value_int(s)``: the torch dynamo exporter's shapes). None otherwise."""
    if n.op_type != "Constant" or n.domain not in ("", "ai.onnx"):
        return None
    for a in n.attribute:
        v = helper.get_attribute_value(a)
        if a.name == "value" and isinstance(v, onnx.TensorProto):
            t = onnx.TensorProto()
            t.CopyFrom(v)
            t.name = n.output[0]
            return t
        arr = {
            "value_float": lambda v: np.array(v, np.float32),
            "value_floats": lambda v: np.array(list(v), np.float32),
            "value_int": lambda v: np.array(v, np.int64),
            "value_ints": lambda v: np.array(list(v), np.int64),
        }.get(a.name)
        if arr is not None:
            return numpy_helper.from_array(arr(v), n.output[0])
    return None


def _remove_identities(m: onnx.ModelProto) -> onnx.ModelProto:
    graph_outputs = {o.name for o in m.graph.output}
    keep = []
    for n in m.graph.node:
        if n.op_type in ("Identity", "Dropout") and n.output[0] not in graph_outputs:
            _rename_input(m, n.output[0], n.input[0])
        else:
            keep.append(n)
    del m.graph.node[:]
    m.graph.node.extend(keep)
    return m


def foldable_conv_bn(
    m: onnx.ModelProto, base_dir: Path | None = None
) -> Iterator[tuple[onnx.NodeProto, onnx.NodeProto, np.ndarray, np.ndarray]]:
    """Every Conv -> BatchNormalization pair that folds: the BN is the Conv's only consumer and not a graph
    output, and the weights, bias and BN statistics are constants. Yields ``(conv, bn, factor, bias)`` with
    ``factor = gamma / sqrt(var + eps)`` per output channel and the folded ``bias = (b - mean) * factor + beta``,
    both float64. The one rule for "this BN folds"; callers choose how the weights take the factor
    (``_fold_batchnorm`` rewrites them, the TFLite converter applies it when it reads them) and then call
    ``absorb_bn``."""
    inits = {t.name: t for t in m.graph.initializer}
    consumers = _consumers(m)
    graph_outputs = {o.name for o in m.graph.output}
    producers = {o: n for n in m.graph.node for o in n.output}
    for bn in m.graph.node:
        if bn.op_type != "BatchNormalization" or (len(bn.output) != 1 and any(bn.output[1:])):
            continue
        conv = producers.get(bn.input[0])
        if conv is None or conv.op_type != "Conv" or conv.input[1] not in inits:
            continue
        if len(consumers.get(conv.output[0], [])) != 1 or conv.output[0] in graph_outputs:
            continue
        if not all(name in inits for name in bn.input[1:5]):
            continue
        if len(conv.input) > 2 and conv.input[2] and conv.input[2] not in inits:
            continue
        gamma, beta, mean, var = (to_array(inits[x], base_dir).astype(np.float64) for x in bn.input[1:5])
        factor = gamma / np.sqrt(var + float(node_attr(bn, "epsilon", 1e-5)))  # type: ignore[arg-type]
        cout = int(inits[conv.input[1]].dims[0])
        b = (
            to_array(inits[conv.input[2]], base_dir).astype(np.float64)
            if len(conv.input) > 2 and conv.input[2]
            else np.zeros(cout)
        )
        yield conv, bn, factor, (b - mean) * factor + beta


def absorb_bn(conv: onnx.NodeProto, bn: onnx.NodeProto, bias_name: str) -> None:
    """Point ``conv`` at its folded bias and at the BN's output; ``drop_absorbed_bns`` then removes ``bn``."""
    if len(conv.input) > 2:
        conv.input[2] = bias_name
    else:
        conv.input.append(bias_name)
    conv.output[0] = bn.output[0]


def drop_absorbed_bns(m: onnx.ModelProto, outputs: set[str]) -> None:
    """Remove the BatchNormalization nodes whose output a Conv now writes (``absorb_bn``), keeping the order of
    the rest. Matched by output name: protobuf wrapper objects are not stable identities."""
    keep = [n for n in m.graph.node if not (n.op_type == "BatchNormalization" and n.output[0] in outputs)]
    del m.graph.node[:]
    m.graph.node.extend(keep)


def _channel_constant(c: np.ndarray, cout: int, rank: int) -> np.ndarray | None:
    """``c`` as one value per output channel, when it broadcasts against a (N, C, spatial...) tensor of
    ``rank`` dims along the channel axis alone: (1, C, 1, 1), (C, 1, 1) or one value. A (C,) constant
    broadcasts along the last axis, not the channels: None."""
    if not np.issubdtype(c.dtype, np.floating) or not np.all(np.isfinite(c)):
        return None
    if c.size == 1:
        return np.full(cout, float(c.reshape(-1)[0]))
    if c.size == cout and c.ndim >= rank - 1 and c.shape[c.ndim - (rank - 1)] == cout:
        return c.reshape(-1).astype(np.float64)
    return None


def affine_tail(
    y: str, consumers: dict[str, list[onnx.NodeProto]], constants: Container[str], outputs: Container[str]
) -> list[onnx.NodeProto]:
    """The Add/Sub/Mul/Div nodes by a constant that follow tensor ``y`` one after another, each the only reader
    of the one before and none a graph output; ``x - c`` and ``x / c`` qualify, ``c - x`` and ``c / x`` (not
    affine in the right way) end the chain."""
    tail: list[onnx.NodeProto] = []
    while y not in outputs:
        cons = consumers.get(y, [])
        if len(cons) != 1 or cons[0].op_type not in ("Add", "Sub", "Mul", "Div") or len(cons[0].input) != 2:
            break
        n = cons[0]
        other = n.input[1] if n.input[0] == y else n.input[0]
        if other == y or other not in constants or (n.op_type in ("Sub", "Div") and n.input[0] != y):
            break
        tail.append(n)
        y = n.output[0]
    return tail


def compose_affine(
    op_type: str, c: float | np.ndarray, scale: float | np.ndarray, shift: float | np.ndarray
) -> tuple[float | np.ndarray, float | np.ndarray]:
    """``y = scale * x + shift`` followed by ``y <op> c`` (an ``affine_tail`` link: Add, Sub, Mul or Div by the
    constant ``c``) as the new ``(scale, shift)``; scalars or per-channel arrays alike."""
    if op_type == "Add":
        return scale, shift + c
    if op_type == "Sub":
        return scale, shift - c
    k = c if op_type == "Mul" else 1.0 / c
    return scale * k, shift * k


def _fold_conv_affine(m: onnx.ModelProto, base_dir: Path | None = None) -> onnx.ModelProto:
    """Conv or ConvTranspose -> a chain of Add/Sub/Mul/Div by constants per output channel (or one value) and
    inference BatchNormalizations becomes one Conv (ConvTranspose): W' = W * s, b' = b * s + t. How Paddle exports
    write a convolution's bias (a separate Add) -- PP-OCR's DB head: ConvTranspose -> Add (bias) -> BatchNormalization
    -> Relu -- and PP-LCNet's learnable affine blocks (Mul and Add by a scalar after the Conv). Left alone, each is
    a separate float op between the Conv and its activation: it stops the runtime's Conv+bias+activation fusion
    and, in an INT8 model, is a float island between a DQ and a Q. Every link must be the previous one's only
    consumer (not a graph output); ``x - c`` and ``x / c`` fold, ``c - x`` and ``c / x`` do not (not affine in
    the right way), nor a constant that broadcasts along another axis."""
    inits = {t.name: t for t in m.graph.initializer}
    consumers = _consumers(m)
    graph_outputs = {o.name for o in m.graph.output}
    absorbed: set[str] = set()
    for conv in list(m.graph.node):
        if conv.op_type not in ("Conv", "ConvTranspose") or conv.domain not in ("", "ai.onnx"):
            continue
        if len(conv.input) < 2 or conv.input[1] not in inits:
            continue
        if len(conv.input) > 2 and conv.input[2] and conv.input[2] not in inits:
            continue
        w_t = inits[conv.input[1]]
        rank = len(w_t.dims)
        group = int(node_attr(conv, "group", 1))
        transposed = conv.op_type == "ConvTranspose"
        # ConvTranspose weights are (Cin, Cout / group, k...): output channel g * Cout/group + j is column j of
        # group g's rows
        cout = int(w_t.dims[1]) * group if transposed else int(w_t.dims[0])
        if rank < 3 or (transposed and int(w_t.dims[0]) % group):
            continue
        scale, shift = np.ones(cout), np.zeros(cout)
        out, chain = conv.output[0], []
        while True:
            links = affine_tail(out, consumers, inits, graph_outputs)
            for n in links:
                other = n.input[1] if n.input[0] == out else n.input[0]
                c = _channel_constant(to_array(inits[other], base_dir), cout, rank)
                if c is None or (n.op_type == "Div" and np.any(c == 0)):
                    break
                scale, shift = compose_affine(n.op_type, c, scale, shift)
                chain.append(n)
                out = n.output[0]
            bn = _inference_bn(out, consumers, inits, graph_outputs, cout, base_dir)
            if bn is None:
                break
            (node, s, t) = bn
            scale, shift = scale * s, shift * s + t
            chain.append(node)
            out = node.output[0]
        if not chain:
            continue
        w = to_array(w_t, base_dir)
        b = (
            to_array(inits[conv.input[2]], base_dir).astype(np.float64)
            if len(conv.input) > 2 and conv.input[2]
            else np.zeros(cout)
        )
        key = conv.name or conv.output[0]
        w_name, b_name = f"{conv.input[1]}_{key}_affine", f"{key}_bias_affine"
        if np.any(scale != 1.0):
            if transposed:
                cin_g, cout_g = int(w.shape[0]) // group, int(w.shape[1])
                per = scale.reshape(group, 1, cout_g, *([1] * (rank - 2)))
                w_new = (w.astype(np.float64).reshape(group, cin_g, *w.shape[1:]) * per).reshape(w.shape)
            else:
                w_new = w.astype(np.float64) * scale.reshape(-1, *([1] * (rank - 1)))
            m.graph.initializer.append(numpy_helper.from_array(w_new.astype(w.dtype), w_name))
            conv.input[1] = w_name
        m.graph.initializer.append(numpy_helper.from_array((b * scale + shift).astype(w.dtype), b_name))
        if len(conv.input) > 2:
            conv.input[2] = b_name
        else:
            conv.input.append(b_name)
        conv.output[0] = out
        absorbed.update(n.output[0] for n in chain)
    if absorbed:
        convs = ("Conv", "ConvTranspose")
        keep = [n for n in m.graph.node if not (n.op_type not in convs and n.output and n.output[0] in absorbed)]
        del m.graph.node[:]
        m.graph.node.extend(keep)
        remove_unused_initializers(m)
    return m


def _inference_bn(
    y: str,
    consumers: dict[str, list[onnx.NodeProto]],
    inits: dict[str, onnx.TensorProto],
    outputs: Container[str],
    channels: int,
    base_dir: Path | None,
) -> tuple[onnx.NodeProto, np.ndarray, np.ndarray] | None:
    """The BatchNormalization that alone reads ``y`` (not a graph output) and computes ``s x + t`` over
    ``channels`` channels (``bn_affine``): (node, s, t)."""
    cons = consumers.get(y, [])
    if y in outputs or len(cons) != 1 or cons[0].input[0] != y:
        return None
    st = bn_affine(cons[0], inits, base_dir)
    return None if st is None or st[0].size != channels else (cons[0], *st)


def bn_affine(
    bn: onnx.NodeProto, inits: dict[str, onnx.TensorProto], base_dir: Path | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """(s, t) per channel, float64, with ``bn(x) = s x + t``, for a BatchNormalization in inference mode with one
    output and constant, finite float statistics of one size; None for any other node."""
    if bn.op_type != "BatchNormalization" or bn.domain not in ("", "ai.onnx") or len(bn.input) != 5:
        return None
    if node_attr(bn, "training_mode", 0) != 0 or len([o for o in bn.output if o]) != 1:
        return None
    if not all(i in inits and inits[i].data_type == onnx.TensorProto.FLOAT for i in bn.input[1:]):
        return None
    gamma, beta, mean, var = (to_array(inits[i], base_dir).astype(np.float64).ravel() for i in bn.input[1:])
    if not gamma.size == beta.size == mean.size == var.size:
        return None
    s = gamma / np.sqrt(var + float(node_attr(bn, "epsilon", 1e-5)))
    t = beta - mean * s
    if not (np.isfinite(s).all() and np.isfinite(t).all()):
        return None
    return s, t


def _fold_batchnorm(m: onnx.ModelProto, base_dir: Path | None = None) -> onnx.ModelProto:
    inits = {t.name: t for t in m.graph.initializer}
    absorbed: set[str] = set()
    for conv, bn, factor, bias in foldable_conv_bn(m, base_dir):
        w_raw = to_array(inits[conv.input[1]], base_dir)
        w_new = (w_raw.astype(np.float64) * factor.reshape(-1, *([1] * (w_raw.ndim - 1)))).astype(w_raw.dtype)
        w_name, b_name = f"{conv.input[1]}_bnfold", f"{conv.name or conv.output[0]}_bias_bnfold"
        m.graph.initializer.append(numpy_helper.from_array(w_new, w_name))
        m.graph.initializer.append(numpy_helper.from_array(bias.astype(w_raw.dtype), b_name))
        conv.input[1] = w_name
        absorb_bn(conv, bn, b_name)
        absorbed.add(bn.output[0])
    drop_absorbed_bns(m, absorbed)
    return remove_unused_initializers(m)


def remove_unused_initializers(model: onnx.ModelProto) -> onnx.ModelProto:
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    keep = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    inputs = [i for i in model.graph.input if i.name in used or i.name not in {t.name for t in keep}]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    return model


def remove_dead_nodes(model: onnx.ModelProto) -> onnx.ModelProto:
    """In place: nodes none of whose outputs is read (by a node or as a graph output), repeatedly, then the
    initializers only they read. ONNX Runtime still executes a dangling DequantizeLinear of a constant: 81 of
    them cost 0.33 ms of EfficientNet-B0's 5 ms."""
    g = model.graph
    outputs = {o.name for o in g.output}
    while True:
        used = {i for n in g.node for i in n.input} | outputs
        keep = [n for n in g.node if any(o in used for o in n.output if o)]
        if len(keep) == len(g.node):
            break
        del g.node[:]
        g.node.extend(keep)
    return remove_unused_initializers(model)


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    return m


QDQ_OPSET = 13  # per-axis QuantizeLinear/DequantizeLinear (per-channel weights) start at opset 13


def at_least_opset13(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` at ai.onnx opset 13 or later (``onnx.version_converter``; a later opset is kept).
    Quantization writes QuantizeLinear (opset 10) with per-axis scales (13), and every graph built from the
    prepared model (calibration, bias correction, the QDQ writer) must be able to hold them; converting once,
    before any node is planned, keeps node positions the same from the plan to the written model (a later
    conversion inserts Constant nodes and moved them: unnamed nodes were then matched to the wrong ops)."""
    from edgecnn.errors import ModelError
    from edgecnn.graph.load import default_opset

    opset = default_opset(model)
    if opset >= QDQ_OPSET:
        return _copy(model)
    try:
        out = onnx.version_converter.convert_version(model, QDQ_OPSET)
    except (RuntimeError, ValueError, onnx.checker.ValidationError) as e:  # the converter's C++ errors
        first = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        raise ModelError(
            f"opset {opset} cannot be converted to opset {QDQ_OPSET}, which quantization needs: {first}; "
            "re-export the model at opset 13 or later"
        ) from None
    return out


def fold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """Turn Constant nodes into initializers and precompute nodes whose inputs are all constant."""
    return _fold_constants(_copy(model))


def _static_dims(vi: onnx.ValueInfoProto) -> list[int] | None:
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return None
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
    return None if any(d < 0 for d in dims) else dims


def fold_static_shapes(model: onnx.ModelProto) -> tuple[onnx.ModelProto, Counter[str]]:
    """Fold the shape subgraphs of a model whose tensor shapes are all inferred (a fixed --input-shape).

    ``Shape`` (with opset-15 ``start``/``end``) and ``Size`` of a tensor with a static shape become
    constants; then every node whose inputs are all constant is computed with onnx's reference evaluator
    (``fold_constants``). Returns the new model (shapes re-inferred) and how many nodes of each op type were
    folded away. The input model is not modified; needs shapes inferred (``load_model`` does that).
    """
    m = _copy(model)
    before = Counter(n.op_type for n in m.graph.node if n.op_type != "Constant")
    # until nothing changes: a Shape whose input's shape is only known once an earlier chain has folded (a
    # Reshape to a computed shape) folds on a later pass (PP-OCRv4 rec: 13 nodes were left after one)
    for _ in range(8):
        n_before = len(m.graph.node)
        m = _fold_shapes_once(m)
        if len(m.graph.node) == n_before:
            break
    after = Counter(n.op_type for n in m.graph.node)
    folded = Counter({op: c - after.get(op, 0) for op, c in before.items() if c > after.get(op, 0)})
    return m, folded


def _fold_shapes_once(m: onnx.ModelProto) -> onnx.ModelProto:
    g = m.graph
    known: dict[str, list[int]] = {}
    for vi in [*g.input, *g.value_info, *g.output]:
        dims = _static_dims(vi)
        if dims is not None:
            known[vi.name] = dims
    for t in g.initializer:
        known[t.name] = list(t.dims)
    keep = []
    for n in g.node:
        src = n.input[0] if n.input else ""
        if n.op_type in ("Shape", "Size") and src in known and n.output[0] not in {o.name for o in g.output}:
            dims = known[src]
            if n.op_type == "Shape":
                rank = len(dims)
                start = int(node_attr(n, "start", 0))  # type: ignore[arg-type]
                end = int(node_attr(n, "end", rank))  # type: ignore[arg-type]
                value = np.array(dims[slice(start, end)], np.int64)
            else:
                value = np.array(int(np.prod(dims, dtype=np.int64)), np.int64)
            g.initializer.append(numpy_helper.from_array(value, n.output[0]))
        else:
            keep.append(n)
    del g.node[:]
    g.node.extend(keep)
    m = remove_unused_initializers(_fold_constants(m))
    infer_shapes_inplace(m)
    return m


def remove_identities(model: onnx.ModelProto) -> onnx.ModelProto:
    """Bypass Identity and inference-mode Dropout nodes."""
    return _remove_identities(_copy(model))


def fold_batchnorm(model: onnx.ModelProto) -> onnx.ModelProto:
    """Fold BatchNormalization into the Conv that feeds it (when that Conv feeds nothing else).

    W' = W * gamma / sqrt(var + eps) per output channel; b' = (b - mean) * gamma / sqrt(var + eps) + beta.
    """
    return _fold_batchnorm(_copy(model))


def prepare(model: onnx.ModelProto, base_dir: Path | None = None) -> onnx.ModelProto:
    """Everything quantization needs first: constants folded into initializers, no identities, BN folded,
    shapes inferred.

    One copy of the model, then the passes work in place on it. ``base_dir``: where the model's
    external weights live (see graph.external), so that a large model need not sit in memory.
    """
    m = _fold_batchnorm(_remove_identities(_fold_constants(at_least_opset13(model), base_dir)), base_dir)
    _fold_conv_affine(m, base_dir)
    _canonical_hard_activations(m)
    _sums_as_adds(m)
    infer_shapes_inplace(m)
    _scalar_prelus_as_leaky_relu(m, base_dir)  # reads ranks: the slope must not broadcast x to a higher rank
    _canonical_global_pools(m, base_dir)  # reads the ranks inference gave; the pool's output shape is the ReduceMean's
    _standalone_bns_as_depthwise(m, base_dir)  # reads ranks too
    pads_on_every_axis(m, base_dir)
    return m


def _standalone_bns_as_depthwise(m: onnx.ModelProto, base_dir: Path | None = None) -> int:
    """In place: a BatchNormalization (inference mode, constant parameters, on a 4-D tensor) that no Conv absorbed
    -- DenseNet's pre-activation BN -> ReLU -> Conv, a BN after a Concat or on the input -- becomes the depthwise
    1x1 Conv that computes it, y = s x + b per channel (s = gamma / sqrt(var + eps), b = beta - mean s). The same
    function up to float rounding, and an op the runtimes run in integer (a QLinearConv whose per-channel int8
    weight holds s exactly), where a BatchNormalization ran in float between a DQ and a Q: 62 such islands in
    torchvision's DenseNet-121. Returns how many."""
    ranks = tensor_ranks(m)
    inits = {t.name: t for t in m.graph.initializer}
    used = _names_in_use(m)
    count = 0
    for n in m.graph.node:
        st = bn_affine(n, inits, base_dir) if n.op_type == "BatchNormalization" else None
        if st is None or ranks.get(n.input[0]) != 4:
            continue
        scale, shift = st
        c = scale.size
        w, b = _fresh_name(used, f"{n.name or n.output[0]}_dw_w"), _fresh_name(used, f"{n.name or n.output[0]}_dw_b")
        m.graph.initializer.extend([
            numpy_helper.from_array(scale.astype(np.float32).reshape(c, 1, 1, 1), w),
            numpy_helper.from_array(shift.astype(np.float32), b),
        ])  # fmt: skip
        n.CopyFrom(
            helper.make_node("Conv", [n.input[0], w, b], [n.output[0]], name=n.name, group=c, kernel_shape=[1, 1])
        )
        count += 1
    if count:
        remove_unused_initializers(m)
    return count


def _scalar_prelus_as_leaky_relu(m: onnx.ModelProto, base_dir: Path | None = None) -> int:
    """In place: a PRelu with one constant slope for every channel (``nn.PReLU()``'s default) becomes
    LeakyRelu(alpha=slope): the same function, and the op runtimes have integer kernels and conv fusions for
    (ONNX Runtime's QLinearLeakyRelu, one rounding; it has no integer PRelu). A slope whose rank is above x's
    (it would broadcast x up) or that is not constant is left. Returns how many."""
    ranks = tensor_ranks(m)
    inits = {t.name: t for t in m.graph.initializer}
    count = 0
    for n in m.graph.node:
        if n.op_type != "PRelu" or n.domain not in ("", "ai.onnx") or len(n.input) != 2:
            continue
        t = inits.get(n.input[1])
        rank = ranks.get(n.input[0])
        if t is None or rank is None or int(np.prod(t.dims)) != 1 or len(t.dims) > rank:
            continue
        alpha = float(to_array(t, base_dir).reshape(()))
        if not np.isfinite(alpha):
            continue
        n.CopyFrom(helper.make_node("LeakyRelu", [n.input[0]], list(n.output), name=n.name, alpha=alpha))
        count += 1
    if count:
        remove_unused_initializers(m)
    return count


def pads_on_every_axis(m: onnx.ModelProto, base_dir: Path | None = None) -> int:
    """In place: a Pad with a constant ``axes`` input (opset 18) gets pads for every axis (0 where none was
    given) and no ``axes``: the same values, in the form runtimes and converters handle (ONNX Runtime's QDQ
    optimizer built an out-of-range Gather from it, and the TFLite converter refused it). Reads ranks from
    shape inference. Returns how many."""
    ranks = tensor_ranks(m)
    inits = {t.name: t for t in m.graph.initializer}
    used = _names_in_use(m)
    count = 0
    for n in m.graph.node:
        if n.op_type != "Pad" or n.domain not in ("", "ai.onnx") or len(n.input) < 4 or not n.input[3]:
            continue
        rank = ranks.get(n.input[0])
        if rank is None or n.input[1] not in inits or n.input[3] not in inits:
            continue
        pads = to_array(inits[n.input[1]], base_dir).astype(np.int64).ravel()
        axes = [int(a) % rank for a in to_array(inits[n.input[3]], base_dir).ravel()]
        full = np.zeros(2 * rank, np.int64)
        for i, a in enumerate(axes):
            full[a], full[rank + a] = pads[i], pads[len(axes) + i]
        name = _fresh_name(used, f"{n.name or n.output[0]}_pads")
        m.graph.initializer.append(numpy_helper.from_array(full, name))
        n.input[1] = name
        del n.input[3:]
        while n.input and not n.input[-1]:  # no constant_value either: drop the empty slot
            del n.input[-1]
        count += 1
    if count:
        remove_unused_initializers(m)
    return count


def tensor_ranks(m: onnx.ModelProto) -> dict[str, int]:
    """Each tensor with a known shape (graph inputs, value_info from shape inference, outputs) -> its rank."""
    return {
        vi.name: len(vi.type.tensor_type.shape.dim)
        for vi in [*m.graph.input, *m.graph.value_info, *m.graph.output]
        if vi.type.tensor_type.HasField("shape")
    }


def _canonical_global_pools(m: onnx.ModelProto, base_dir: Path | None = None) -> int:
    """In place: ReduceMean over both spatial axes of a 4-D tensor becomes GlobalAveragePool with the same
    output: keeping dims (how Paddle, tf2onnx and timm's squeeze-excitation write the pooling) the pool alone;
    without (``x.mean([2, 3])`` before a classifier, torchvision's MNASNet) the pool and a Flatten to [N, C]. The
    same values, and ops the runtimes have integer kernels for (ONNX Runtime's QLinearGlobalAveragePool, with the
    Flatten's Q/DQ pair dropped; its ReduceMean runs in float between a DQ and a Q). Axes from the attribute
    (opset < 18) or a constant input. Returns how many."""
    ranks = tensor_ranks(m)
    inits = {t.name: t for t in m.graph.initializer}
    infos = {vi.name: vi for vi in m.graph.value_info}
    used = _names_in_use(m)
    count = 0
    nodes: list[onnx.NodeProto] = []
    for n in m.graph.node:
        nodes.append(n)
        if n.op_type != "ReduceMean" or n.domain not in ("", "ai.onnx") or ranks.get(n.input[0]) != 4:
            continue
        if node_attr(n, "keepdims", 1) not in (0, 1) or node_attr(n, "noop_with_empty_axes", 0) != 0:
            continue
        axes = node_attr(n, "axes")
        if len(n.input) > 1 and n.input[1]:
            if n.input[1] not in inits:
                continue
            axes = to_array(inits[n.input[1]], base_dir).ravel().tolist()
        if axes is None or sorted(int(a) % 4 for a in axes) != [2, 3]:  # type: ignore[union-attr]
            continue
        out = n.output[0]
        if node_attr(n, "keepdims", 1) == 1:
            nodes[-1] = helper.make_node("GlobalAveragePool", [n.input[0]], [out], name=n.name)
        else:
            pooled = _fresh_name(used, f"{out}_pooled")
            nodes[-1:] = [
                helper.make_node("GlobalAveragePool", [n.input[0]], [pooled], name=n.name),
                helper.make_node("Flatten", [pooled], [out], name=_fresh_name(used, f"{n.name or out}_flatten"), axis=1),
            ]  # fmt: skip
            vi = infos.get(out)
            if vi is not None and vi.type.tensor_type.HasField("shape"):  # [N, C] -> [N, C, 1, 1]
                dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in vi.type.tensor_type.shape.dim]
                m.graph.value_info.append(
                    helper.make_tensor_value_info(pooled, vi.type.tensor_type.elem_type, [*dims, 1, 1])
                )
        count += 1
    if count:
        del m.graph.node[:]
        m.graph.node.extend(nodes)
        remove_unused_initializers(m)  # an axes input
    return count


# -- hard-sigmoid / hard-swish written out in elementwise ops ------------------------------------------------
_CHAIN_OPS = frozenset({"Add", "Sub", "Mul", "Div", "Relu", "Clip", "Min", "Max"})
_HS_TOL = 1e-4  # relative: exporters write 1/6 as 0.16666667 or 0.1666


@dataclass(frozen=True)
class HardChain:
    """``nodes`` compute y = clamp(a * x + b, lo, hi) elementwise from tensor ``x`` (every node has one
    non-constant input, the previous node's output, and scalar constants)."""

    x: str
    nodes: tuple[onnx.NodeProto, ...]
    a: float
    b: float
    lo: float
    hi: float


_FLOATS = frozenset(
    {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}
)


def _scalar(name: str, inits: dict[str, onnx.TensorProto]) -> float | None:
    """A finite one-element float constant (a chain's +3, /6, clamp bounds), else None."""
    t = inits.get(name) if name else None
    f = scalar_of(t) if t is not None and t.data_type in _FLOATS else None
    return f if f is not None and np.isfinite(f) else None


def _step(
    n: onnx.NodeProto, t: str, inits: dict[str, onnx.TensorProto], state: tuple[float, float, float, float]
) -> tuple[float, float, float, float] | None:
    """The affine-clamp state after node ``n`` applied to tensor ``t``, or None when ``n`` is not an
    increasing affine map or a clamp of ``t`` with scalar constants."""
    a, b, lo, hi = state
    if n.op_type in ("Relu", "Clip"):
        if not n.input or n.input[0] != t:
            return None
        if n.op_type == "Relu":
            lo2, hi2 = 0.0, np.inf
        elif len(n.input) > 1 or not any(x.name in ("min", "max") for x in n.attribute):
            lo_c = _scalar(n.input[1], inits) if len(n.input) > 1 and n.input[1] else -np.inf
            hi_c = _scalar(n.input[2], inits) if len(n.input) > 2 and n.input[2] else np.inf
            if lo_c is None or hi_c is None:
                return None
            lo2, hi2 = lo_c, hi_c
        else:  # opset < 11: attributes
            lo2, hi2 = float(node_attr(n, "min", -np.inf)), float(node_attr(n, "max", np.inf))  # type: ignore[arg-type]
        lo, hi = max(lo, lo2), min(hi, hi2)
        return (a, b, lo, hi) if lo < hi else None
    if len(n.input) != 2 or t not in n.input or n.input[0] == n.input[1]:
        return None
    first = n.input[0] == t
    c = _scalar(n.input[1] if first else n.input[0], inits)
    if c is None:
        return None
    if n.op_type == "Min":
        hi = min(hi, c)
        return (a, b, lo, hi) if lo < hi else None
    if n.op_type == "Max":
        lo = max(lo, c)
        return (a, b, lo, hi) if lo < hi else None
    if n.op_type in ("Add", "Sub"):
        if n.op_type == "Sub":
            if not first:  # c - t decreases
                return None
            c = -c
        return (a, b + c, lo + c, hi + c)
    if n.op_type == "Div":
        if not first or c <= 0:
            return None
        c = 1.0 / c
    if c <= 0:  # Mul by a negative or zero constant flips or kills the clamp
        return None
    return (a * c, b * c, lo * c, hi * c)


def _hard_chains(m: onnx.ModelProto) -> Iterator[HardChain]:
    """Maximal affine-clamp chains with a finite clamp, from each tensor that starts one (intermediate
    tensors feed only the next node and are not graph outputs)."""
    inits = {t.name: t for t in m.graph.initializer}
    consumers = _consumers(m)
    outputs = {o.name for o in m.graph.output}
    used: set[str] = set()
    for start in m.graph.node:
        if start.op_type not in _CHAIN_OPS or start.output[0] in used:
            continue
        xs = [i for i in start.input if i and i not in inits]
        if len(xs) != 1:
            continue
        x, t, node = xs[0], xs[0], start
        state: tuple[float, float, float, float] = (1.0, 0.0, -np.inf, np.inf)
        nodes: list[onnx.NodeProto] = []
        states: list[tuple[float, float, float, float]] = []  # the state after each node of ``nodes``
        while node is not None and node.op_type in _CHAIN_OPS:
            nxt = _step(node, t, inits, state)
            if nxt is None:
                break
            state, t = nxt, node.output[0]
            nodes.append(node)
            states.append(state)
            cons = consumers.get(t, [])
            node = cons[0] if len(cons) == 1 and t not in outputs else None
        # the longest prefix whose clamp is finite on both sides
        for k in range(len(nodes), 0, -1):
            a, b, lo, hi = states[k - 1]
            if np.isfinite(lo) and np.isfinite(hi) and a > 0:
                used.update(n.output[0] for n in nodes[:k])
                yield HardChain(x=x, nodes=tuple(nodes[:k]), a=a, b=b, lo=lo, hi=hi)
                break


def _close(v: float, want: float) -> bool:
    return abs(v - want) <= _HS_TOL * max(1.0, abs(want))


def _sums_as_adds(m: onnx.ModelProto) -> int:
    """In place: each ``Sum`` (how opset 7/8 exporters wrote residual additions, with two inputs or more) becomes
    the chain of ``Add`` s it computes, left to right, the last writing the Sum's output under its name: the op
    runtimes quantize (QLinearAdd, int8 ADD); Sum has no integer kernel. A one-input Sum becomes Identity.
    Returns how many."""
    used = _names_in_use(m)
    out: list[onnx.NodeProto] = []
    count = 0
    for n in m.graph.node:
        ins = [i for i in n.input if i]
        if n.op_type != "Sum" or n.domain not in ("", "ai.onnx") or not ins:
            out.append(n)
            continue
        count += 1
        base = n.name or n.output[0]
        if len(ins) == 1:
            out.append(helper.make_node("Identity", ins, list(n.output), name=base))
            continue
        acc = ins[0]
        for k, nxt in enumerate(ins[1:], start=1):
            last = k == len(ins) - 1
            y = n.output[0] if last else _fresh_name(used, f"{base}_partial{k}")
            out.append(helper.make_node("Add", [acc, nxt], [y], name=base if last else f"{base}_add{k}"))
            acc = y
    if count:
        del m.graph.node[:]
        m.graph.node.extend(out)
    return count


def _canonical_hard_activations(m: onnx.ModelProto) -> int:
    """In place: every chain computing clamp(a*x + b, 0, 1) with a != 1 becomes HardSigmoid(alpha=a, beta=b); a chain
    computing clamp(a*x + b, 0, H) whose only use is x * chain, scaled by 1/H right after (``x * clip(x + 3, 0,
    6) / 6``), becomes HardSigmoid(alpha=a/H, beta=b/H) and the Mul by x. Returns how many were rewritten.
    Other clamps (a plain Relu6, Clip(0, 6) after a Conv) are left as they are."""
    consumers = _consumers(m)
    inits = {t.name: t for t in m.graph.initializer}
    outputs = {o.name for o in m.graph.output}
    drop: set[str] = set()  # nodes by first output name (protobuf wrappers are not stable identities)
    rewrites: dict[str, list[onnx.NodeProto]] = {}
    count = 0
    used = _names_in_use(m)
    for ch in list(_hard_chains(m)):
        if len(ch.nodes) < 2 or not _close(ch.lo, 0.0):
            continue  # a lone Relu/Clip is not a hard-sigmoid
        out = ch.nodes[-1].output[0]
        if _close(ch.hi, 1.0):
            if _close(ch.a, 1.0):  # clip(x + b, 0, 1) has no slope: a clamp the quantizer fuses as it is
                continue
            alpha, beta, hs_out = ch.a, ch.b, out
        else:
            cons = consumers.get(out, [])
            mul = cons[0] if len(cons) == 1 else None
            if (
                mul is None
                or mul.op_type != "Mul"
                or sorted(mul.input) != sorted([ch.x, out])
                or mul.output[0] in outputs
            ):
                continue
            after = consumers.get(mul.output[0], [])
            scale = after[0] if len(after) == 1 else None
            if scale is None or scale.op_type not in ("Mul", "Div") or scale.input[0] != mul.output[0]:
                continue
            k = _scalar(scale.input[1], inits)
            if k is None or k <= 0:
                continue
            k = 1.0 / k if scale.op_type == "Div" else k
            if not _close(ch.hi * k, 1.0):
                continue
            alpha, beta = ch.a * k, ch.b * k
            # a new name: the chain's output held clamp(.., 0, H); the HardSigmoid's holds 1/H of it, and a
            # tensor that keeps its name must keep its values (drift compares layers by name)
            hs_out = _fresh_name(used, f"{out}_hardsigmoid")
            new_mul = helper.make_node(
                "Mul", [ch.x, hs_out], [scale.output[0]], name=mul.name or f"{scale.name}_hswish"
            )
            rewrites[scale.output[0]] = [new_mul]
            drop.update((mul.output[0], scale.output[0]))
        hs = helper.make_node(
            "HardSigmoid", [ch.x], [hs_out], name=ch.nodes[-1].name or f"{hs_out}_hardsigmoid", alpha=alpha, beta=beta
        )
        drop.update(n.output[0] for n in ch.nodes)
        rewrites[out] = [hs]
        count += 1
    if not count:
        return 0
    # each replacement takes the place of the node it replaces (the chain's last node, the scale after the
    # Mul), so the graph stays in topological order
    nodes: list[onnx.NodeProto] = []
    for n in m.graph.node:
        key = n.output[0] if n.output else ""
        nodes.extend(rewrites.get(key, ()))
        if key not in drop:
            nodes.append(n)
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    remove_unused_initializers(m)  # the chains' scalar constants
    return count


def canonical_hard_activations(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """A copy of ``model`` with hard-sigmoid/hard-swish chains as HardSigmoid (+ Mul): see
    ``_canonical_hard_activations``. Returns the copy and how many chains were rewritten."""
    m = _copy(model)
    n = _canonical_hard_activations(m)
    return m, n


def save_with_outputs(
    model: onnx.ModelProto,
    extra: list[str],
    path: Path,
    batch: int | str | None = None,
    nodes: list[onnx.NodeProto] | None = None,
    initializers: list[onnx.TensorProto] | None = None,
) -> None:
    """Save ``model`` to ``path`` with ``extra`` tensors as additional graph outputs and, if ``batch`` is
    given, the first dim of every input and output set to it (an int, or a symbol for a free batch).
    ``nodes`` are appended first (e.g. reductions whose outputs are among ``extra``), with ``initializers``
    (best external: graph.external.external_tensors).

    Used to read intermediate tensors (calibration, per-layer drift). The model is edited in place and
    restored afterwards, so its weights are never copied: a ResNet-18 is 45 MiB of them.
    """
    graph = model.graph
    n_out, n_nodes, n_init = len(graph.output), len(graph.node), len(graph.initializer)
    graph.node.extend(nodes or [])
    graph.initializer.extend(initializers or [])
    have = {o.name for o in graph.output}
    first_dims = []
    for vi in [*graph.input, *graph.output]:
        dims = vi.type.tensor_type.shape.dim
        old = onnx.TensorShapeProto.Dimension()
        if len(dims) and batch is not None:
            old.CopyFrom(dims[0])
            dims[0].Clear()
            if isinstance(batch, int):
                dims[0].dim_value = batch
            else:
                dims[0].dim_param = batch
        first_dims.append(old)
    value_info = list(graph.value_info)
    del graph.value_info[:]  # stale once the batch changes; the runtime infers them again
    for t in dict.fromkeys(extra):
        if t not in have:
            graph.output.append(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None))
    try:
        save_onnx(model, path)
    finally:
        del graph.output[n_out:]
        del graph.node[n_nodes:]
        del graph.initializer[n_init:]
        graph.value_info.extend(value_info)
        if batch is not None:
            for vi, old in zip([*graph.input, *graph.output], first_dims, strict=True):
                dims = vi.type.tensor_type.shape.dim
                if len(dims):
                    dims[0].CopyFrom(old)
