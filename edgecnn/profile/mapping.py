"""Map the kernels a runtime executed back to the ONNX nodes they came from.

Runtimes rename and fuse: ONNX Runtime names an NCHWc kernel after the tensor it writes
(``/0/0.2/Relu_output_0_nchwc``) and folds Conv+BatchNorm+Relu(+Add) into it; OpenVINO lists the layers
fused into each executed node (``originalLayersNames``) but may rename the primary one (a Conv fused with
BatchNorm becomes ``Multiply_4561``). One procedure covers both:

1. a kernel *claims* the ONNX nodes whose name it carries, and the producers of the ONNX tensors whose
   name it carries (after stripping the runtime's suffixes);
2. an unclaimed elementwise post-op (Add, Relu, Clip, ...) joins the kernel of its input's producer (an
   Add or Relu fused into the conv before it); any other unclaimed node joins the kernel that claims the
   first node downstream of it, walking forward through unclaimed nodes without crossing another compute
   op (Conv -> BatchNorm -> [Relu: claimed]);
3. still unclaimed nodes try the other direction;
4. a kernel that claims nothing was inserted by the runtime (layout reorders, casts, transposes); an ONNX
   node nothing claims was removed or folded away at load time (constants, identities, Flatten).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import onnx

COMPUTE_OPS = frozenset(
    {"Conv", "ConvTranspose", "Gemm", "MatMul", "ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul"}
)
POST_OPS = frozenset(
    {"Add", "Sum", "Sub", "Mul", "Div", "Relu", "Clip", "Sigmoid", "Tanh", "LeakyRelu", "HardSigmoid", "HardSwish",
     "Elu", "Selu", "PRelu"}
)  # fmt: skip
_SUFFIXES = ("_nchwc", "/sink_port_0", "_output_0")
_PREFIXES = ("InsertedPrecisionFreeCast_",)
_TOKEN = re.compile(r"_token_\d+$")


@dataclass(frozen=True, kw_only=True)
class KernelNames:
    """What a runtime says about one executed kernel: its own name and the original names it lists."""

    key: str
    names: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Mapping:
    members: dict[str, tuple[str, ...]]  # kernel key -> ONNX node names, in graph order
    unmapped_kernels: tuple[str, ...]  # kernel keys that claim no ONNX node
    unclaimed_nodes: tuple[str, ...]  # ONNX nodes no kernel accounts for
    ambiguous_names: tuple[str, ...] = field(default_factory=tuple)  # node names used more than once


def node_names(graph: onnx.GraphProto) -> list[str]:
    """The names the mapping uses for ``graph``'s nodes: the node's name, or ``op_type_index`` when empty."""
    return [n.name or f"{n.op_type}_{i}" for i, n in enumerate(graph.node)]


def map_kernels(graph: onnx.GraphProto, kernels: Sequence[KernelNames]) -> Mapping:
    nodes = [n for n in graph.node if n.op_type != "Constant"]
    all_names = node_names(graph)
    names = [all_names[i] for i, n in enumerate(graph.node) if n.op_type != "Constant"]
    seen: dict[str, int] = {}
    for n, node in zip(names, nodes, strict=True):
        if node.name:
            seen[n] = seen.get(n, 0) + 1
    ambiguous = {n for n, c in seen.items() if c > 1}
    by_name = {n: i for i, (n, node) in enumerate(zip(names, nodes, strict=True)) if node.name and n not in ambiguous}
    producer = {o: i for i, node in enumerate(nodes) for o in node.output if o}
    consumers: dict[str, list[int]] = {}
    for i, node in enumerate(nodes):
        for t in node.input:
            consumers.setdefault(t, []).append(i)

    owner: dict[int, str] = {}
    for k in kernels:
        for raw in k.names:
            for cand in _candidates(raw):
                idx = by_name.get(cand)
                if idx is None:
                    idx = producer.get(cand)
                if idx is not None and idx not in owner:
                    owner[idx] = k.key
                    break

    def forward(i: int) -> str | None:
        cur, hops = i, 0
        while hops < 64:
            outs = [c for o in nodes[cur].output for c in consumers.get(o, [])]
            if not outs:
                return None
            nxt = outs[0]
            if nxt in owner:
                return owner[nxt]
            if nodes[nxt].op_type in COMPUTE_OPS:
                return None
            cur, hops = nxt, hops + 1
        return None

    def backward(i: int) -> str | None:
        for t in nodes[i].input:
            p = producer.get(t)
            if p is not None and p in owner:
                return owner[p]
        return None

    if owner:
        # Elementwise post-ops (the Add and Relu a runtime fuses into the conv before them) look back first;
        # everything else (Conv, BatchNorm, Q/DQ feeding a named kernel) looks forward first.
        for i, node in enumerate(nodes):  # graph order: a chain of post-ops resolves front to back
            if i in owner:
                continue
            first = backward if node.op_type in POST_OPS else forward
            k = first(i)
            if k is not None:
                owner[i] = k
        for i in range(len(nodes)):
            if i not in owner:
                k = forward(i) or backward(i)
                if k is not None:
                    owner[i] = k

    members: dict[str, list[str]] = {k.key: [] for k in kernels}
    for i in sorted(owner):
        members[owner[i]].append(names[i])
    return Mapping(
        members={k: tuple(v) for k, v in members.items()},
        unmapped_kernels=tuple(k for k, v in members.items() if not v),
        unclaimed_nodes=tuple(names[i] for i in range(len(nodes)) if i not in owner),
        ambiguous_names=tuple(sorted(ambiguous)),
    )


def _candidates(raw: str) -> Iterable[str]:
    yield raw
    for prefix in _PREFIXES:  # ORT's FP16 handling: "InsertedPrecisionFreeCast_<tensor>_nchwc"
        if raw.startswith(prefix):
            raw = raw[len(prefix) :]
            yield raw
    s = _TOKEN.sub("", raw)  # ORT's layout transformer: "/0/0.0/Conv_token_1"
    if s != raw:
        yield s
    for suf in _SUFFIXES:
        if s.endswith(suf):
            s = s[: -len(suf)]
            yield s
