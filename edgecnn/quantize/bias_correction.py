"""Empirical bias correction for depthwise convolutions: remove the mean output shift that weight rounding adds.

A depthwise convolution (``group`` == input channels == output channels) has only k*k weights per output
channel (9 for a 3x3). Rounding them to int8 leaves a per-channel error ``dW = W_q - W`` that rarely
averages out over so few terms, and because the input of a depthwise conv usually has a non-zero mean
(after ReLU/HardSwish it is mostly positive), the output of every channel moves by a constant:

    E[W_q * x] - E[W * x] = E[dW * x]      (per output channel, over images and positions)

That constant is subtracted from the bias (the "empirical bias correction" of Nagel et al., "Data-Free
Quantization Through Weight Equalization and Bias Correction", ICCV 2019, section 4.2; here from data).

How it is measured: for each depthwise Conv the calibration graph gets one more node, ``Conv(x, dW)`` with the
same strides, pads, dilations and group (no bias), followed by GlobalAveragePool, so padding and stride are
exact and only ``batch x channels`` numbers per conv leave the runtime. One streamed pass over the
calibration images accumulates their sum; memory is that sum, whatever the number of images. ``dW`` comes
from the very same weight quantization the QDQ writer applies (``params.weight_params``/``quantize_array``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgecnn.graph.external import to_array
from edgecnn.graph.passes import save_with_outputs
from edgecnn.quantize.dataset import CalibrationData, feeds_of
from edgecnn.quantize.params import QuantScheme, dequantize_array, quantize_array, weight_params
from edgecnn.quantize.qdq import QdqPlan, node_key
from edgecnn.runtimes import open_session

_COPIED_ATTRS = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")


@dataclass(frozen=True, kw_only=True)
class BiasCorrection:
    """What the correction did: per corrected Conv, the largest |shift| removed from one channel's bias,
    relative to the largest |bias| of that conv (or absolute when the bias is all zero)."""

    corrected: dict[str, float] = field(default_factory=dict)
    samples: int = 0


def depthwise_convs(
    model: onnx.ModelProto, the_plan: QdqPlan, base_dir: Path | None = None
) -> list[tuple[str, onnx.NodeProto, np.ndarray]]:
    """The quantized depthwise Convs with a constant weight: (node key, node, float weight)."""
    inits = {t.name: t for t in model.graph.initializer}
    quantized = set(the_plan.quantized_nodes)
    activations = set(the_plan.activations)
    out = []
    for i, n in enumerate(model.graph.node):
        key = node_key(n, i)
        if n.op_type != "Conv" or key not in quantized or len(n.input) < 2 or n.input[1] not in inits:
            continue
        if n.input[0] not in activations:  # the writer quantizes the weight only when the input has a grid
            continue
        group = next((helper.get_attribute_value(a) for a in n.attribute if a.name == "group"), 1)
        dims = list(inits[n.input[1]].dims)
        if group > 1 and len(dims) >= 3 and dims[1] == 1 and dims[0] == group:  # before reading any weight
            out.append((key, n, to_array(inits[n.input[1]], base_dir).astype(np.float32)))
    return out


def weight_error(w: np.ndarray, scheme: QuantScheme) -> np.ndarray:
    """``W_q - W`` for the weight quantization the QDQ writer applies (per output channel, axis 0)."""
    scale, zp = weight_params(w, scheme, axis=0)
    wq = dequantize_array(quantize_array(w, scale, zp, scheme.weight_dtype, axis=0), scale, zp, axis=0)
    return (wq - w).astype(np.float32)


def correct_depthwise_bias(
    model: onnx.ModelProto,
    the_plan: QdqPlan,
    scheme: QuantScheme,
    dataset: CalibrationData,
    input_name: str | Sequence[str],
    *,
    workdir: Path,
    threads: int = 0,
) -> tuple[onnx.ModelProto, BiasCorrection]:
    """``model`` with the bias of every quantized depthwise Conv corrected for the mean error its weight
    quantization introduces on ``dataset``; ``model`` itself is left as it is. No depthwise conv: the same
    model object back and an empty report (no pass over the data)."""
    convs = depthwise_convs(model, the_plan, workdir)
    if not convs:
        return model, BiasCorrection()
    first = input_name if isinstance(input_name, str) else input_name[0]
    nodes: list[onnx.NodeProto] = []
    outputs: list[str] = []
    for i, (_, n, w) in enumerate(convs):
        dw, y, m = f"edgecnn_bc_dw_{i}", f"edgecnn_bc_y_{i}", f"edgecnn_bc_mean_{i}"
        nodes.append(
            helper.make_node("Constant", [], [dw], name=dw, value=numpy_helper.from_array(weight_error(w, scheme), dw))
        )
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute if a.name in _COPIED_ATTRS}
        nodes.append(helper.make_node("Conv", [n.input[0], dw], [y], name=y, **attrs))
        nodes.append(helper.make_node("GlobalAveragePool", [y], [m], name=m))
        outputs.append(m)
    sums = [np.zeros(w.shape[0], np.float64) for _, _, w in convs]
    count = 0
    # Saved beside the external weights (workdir) so the runtime finds them; batch 1 keeps the extra Conv
    # outputs as small as the model's own activations for one image.
    path = Path(workdir) / "biascorr.onnx"
    save_with_outputs(model, outputs, path, 1, nodes)
    try:
        sess = open_session("ort", path, threads=threads)
        index = {o.name: k for k, o in enumerate(sess.outputs())}
        for x in dataset.batches(1, prefetch=True):
            got = sess.run(feeds_of(x, first))
            for k, o in enumerate(outputs):
                v = got[index[o]]
                sums[k] += v.reshape(v.shape[0], v.shape[1]).sum(axis=0, dtype=np.float64)
            count += 1
        del sess
    finally:
        path.unlink(missing_ok=True)
    if count == 0:
        return model, BiasCorrection()
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = {t.name: t for t in out.graph.initializer}
    corrected: dict[str, float] = {}
    by_name = {node_key(n, i): n for i, n in enumerate(out.graph.node)}
    for (key, _, w), s in zip(convs, sums, strict=True):
        shift = s / count  # E[W_q x] - E[W x] per output channel
        n = by_name[key]
        bias = (
            to_array(inits[n.input[2]], workdir).astype(np.float64)
            if len(n.input) > 2 and n.input[2] in inits
            else np.zeros(w.shape[0], np.float64)
        )
        name = f"{key}_bias_corrected"
        out.graph.initializer.append(numpy_helper.from_array((bias - shift).astype(np.float32), name))
        if len(n.input) > 2:
            n.input[2] = name
        else:
            n.input.append(name)
        top = float(np.max(np.abs(bias)))
        corrected[key] = float(np.max(np.abs(shift)) / top) if top > 0 else float(np.max(np.abs(shift)))
    return out, BiasCorrection(corrected=corrected, samples=count)
