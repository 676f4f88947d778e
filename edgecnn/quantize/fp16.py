"""FP16 conversion: weights and compute in float16, float32 kept at the model's inputs and outputs.

Ops in the block list stay float32 with Casts around them. Note for CPUs: x86 runtimes without native
fp16 arithmetic run such a model through inserted Casts (ONNX Runtime's CPU provider does exactly
that), so FP16 is usually *slower* than FP32 on a desktop CPU; `edgecnn bench --compare` shows it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgecnn.errors import ModelError
from edgecnn.graph.external import to_array
from edgecnn.graph.load import infer_shapes_inplace

# Ops whose float16 versions lose accuracy or are missing in common runtimes.
DEFAULT_BLOCK = frozenset(
    {"Softmax", "LogSoftmax", "ReduceMean", "ReduceSum", "Exp", "Log", "Pow", "Sqrt", "Div", "Range",
     "Resize", "Upsample", "TopK", "NonMaxSuppression", "RoiAlign", "CumSum", "LayerNormalization"}
)  # fmt: skip


def convert_fp16(
    model: onnx.ModelProto, block: frozenset[str] = DEFAULT_BLOCK, base_dir: Path | None = None
) -> tuple[onnx.ModelProto, list[str]]:
    """Return the FP16 model and the names of the nodes kept in float32.

    ``base_dir``: where external weights of ``model`` live (graph.external).
    """
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    inits = {t.name for t in g.initializer}
    blocked = {i for i, n in enumerate(g.node) if n.op_type in block or (n.name and n.name in block)}
    kept = [n.name or f"{n.op_type}_{i}" for i, n in enumerate(g.node) if i in blocked]

    # Float initializers used only by non-blocked nodes become fp16.
    users: dict[str, set[int]] = {}
    for i, n in enumerate(g.node):
        for t in n.input:
            users.setdefault(t, set()).add(i)
    new_inits = []
    for t in g.initializer:
        if t.data_type == TensorProto.FLOAT and not (users.get(t.name, set()) & blocked):
            arr = to_array(t, base_dir)
            new_inits.append(numpy_helper.from_array(np.clip(arr, -65504, 65504).astype(np.float16), t.name))
        else:
            new_inits.append(t)
    del g.initializer[:]
    g.initializer.extend(new_inits)

    # Constant nodes and float attributes of Cast targets.
    for i, n in enumerate(g.node):
        if i in blocked:
            continue
        if n.op_type in ("Constant", "ConstantOfShape"):  # ConstantOfShape: an LSTM's zero initial_h/initial_c
            for a in n.attribute:
                if a.name == "value" and a.t.data_type == TensorProto.FLOAT:
                    a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(np.float16), a.t.name))
        if n.op_type == "Cast":
            for a in n.attribute:
                if a.name == "to" and a.i == TensorProto.FLOAT:
                    a.i = TensorProto.FLOAT16

    new_nodes: list[onnx.NodeProto] = []
    # Inputs: cast float32 -> float16 once.
    rename: dict[str, str] = {}
    for vi in g.input:
        if vi.name not in inits and vi.type.tensor_type.elem_type == TensorProto.FLOAT:
            rename[vi.name] = f"{vi.name}_fp16"
            new_nodes.append(
                helper.make_node(
                    "Cast", [vi.name], [rename[vi.name]], name=f"{vi.name}_to_fp16", to=TensorProto.FLOAT16
                )
            )
    outputs = {o.name for o in g.output if o.type.tensor_type.elem_type == TensorProto.FLOAT}
    float_vals = _float_values(model)
    for i, n in enumerate(g.node):
        for k, t in enumerate(n.input):
            if t in rename:
                n.input[k] = rename[t]
        if i in blocked:
            # fp16 in -> fp32 for the op -> fp16 out
            for k, t in enumerate(n.input):
                if t and t not in inits and t in float_vals | set(rename.values()):
                    c = f"{t}_to_fp32_{i}"
                    new_nodes.append(helper.make_node("Cast", [t], [c], name=c, to=TensorProto.FLOAT))
                    n.input[k] = c
            new_nodes.append(n)
            for k, t in enumerate(n.output):
                if t in float_vals and t not in outputs:
                    raw = f"{t}_fp32"
                    n.output[k] = raw
                    new_nodes.append(helper.make_node("Cast", [raw], [t], name=f"{t}_to_fp16", to=TensorProto.FLOAT16))
            continue
        new_nodes.append(n)
        for k, t in enumerate(n.output):
            if t in outputs:
                raw = f"{t}_fp16"
                n.output[k] = raw
                new_nodes.append(helper.make_node("Cast", [raw], [t], name=f"{t}_to_fp32", to=TensorProto.FLOAT))
    # Fix consumers of renamed outputs of blocked nodes (they read t, which the Cast now produces): nothing to do.
    del g.node[:]
    g.node.extend(new_nodes)
    try:
        infer_shapes_inplace(m)
    except onnx.shape_inference.InferenceError as e:  # an op whose float32 input the rewrite did not reach
        raise ModelError(
            f"the FP16 rewrite made an invalid graph: {str(e).splitlines()[0]}; --exclude that node"
        ) from None
    return m, kept


def _float_values(model: onnx.ModelProto) -> set[str]:
    inferred = onnx.ModelProto()
    inferred.CopyFrom(model)
    infer_shapes_inplace(inferred)
    return {
        vi.name
        for vi in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]
        if vi.type.tensor_type.elem_type == TensorProto.FLOAT
    }
