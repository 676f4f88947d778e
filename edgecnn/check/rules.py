"""Rules: small functions, one per constraint, each returning a Verdict; the docstring is what the user reads.

A rule's docstring has two lines of user-facing text, both ``str.format`` templates over the node's facts
(``label``, ``accel``, ``limit`` and the rule's own fields): the first says what failed, the line starting
``Fix:`` says what to change. ``docs/targets.md`` is generated from these docstrings
(``python -m edgecnn.check.docs``). ``CONSTRAINTS`` is the explicit registry: the TOML key, its value
type and the rule that checks it. Rules never raise on a model; an attribute they cannot read is a pass.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class FixKind(StrEnum):
    """What the user changes to move a node onto the accelerator."""

    QUANTIZE = "requantize"
    REPLACE_OP = "replace op"
    CHANGE_KERNEL = "change kernel/stride/padding"
    CHANGE_SHAPE = "change tensor shape"
    CHANGE_ATTRIBUTE = "change attribute"


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """One rule's verdict on one node: ``ok`` or the reason it fails, the fix, and the source it cites."""

    ok: bool
    rule: str
    reason: str = ""
    fix: str = ""
    fix_kind: FixKind | None = None
    source: str = ""


PASS = Verdict(ok=True, rule="")


@dataclass(frozen=True, kw_only=True)
class NodeFacts:
    """What the rules need to know about one ONNX node, read once from the shape-inferred graph."""

    name: str
    op_type: str
    accel: str
    target: str
    precision: str
    fallback: str = ""  # the target's fallback device ("" = none)
    in_shapes: tuple[tuple[int, ...], ...]
    out_shapes: tuple[tuple[int, ...], ...]
    const_inputs: tuple[bool, ...] = ()
    kernel: tuple[int, ...] = ()
    strides: tuple[int, ...] = ()
    dilations: tuple[int, ...] = ()
    pads: tuple[int, ...] = ()
    group: int = 1
    in_channels: int = 0
    out_channels: int = 0
    attrs: dict[str, Any] = field(default_factory=dict)
    # "NCHW" for ONNX graphs; "NHWC" for TFLite graphs (edgecnn/check/tflite_graph.py): which axes of a 4-D
    # activation are channels and spatial ones.
    layout: str = "NCHW"
    # (scale, zero point) of each activation input / output when quantized per tensor, else None.
    quant_in: tuple[tuple[float, int] | None, ...] = ()
    quant_out: tuple[tuple[float, int] | None, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.op_type} '{self.name}'"

    @property
    def depthwise(self) -> bool:
        return self.op_type == "Conv" and self.group > 1 and self.group == self.in_channels

    @property
    def grouped(self) -> bool:
        return self.op_type in ("Conv", "ConvTranspose") and self.group > 1 and not self.depthwise


def spatial_axes(rank: int, layout: str) -> tuple[int, ...]:
    """The H and W axes of a 4-D activation in ``layout`` (NCHW: 2, 3; NHWC: 1, 2); () for other ranks."""
    if rank != 4:
        return ()
    return (1, 2) if layout == "NHWC" else (2, 3)


def channel_axis(rank: int, layout: str) -> int:
    """The channel axis of a 4-D activation in ``layout`` (NCHW: 1; NHWC: 3); -1 (last) for other ranks."""
    if rank == 4 and layout != "NHWC":
        return 1
    return rank - 1


def _x(dims: tuple[int, ...] | list[int]) -> str:
    return "x".join(str(d) for d in dims)


def _texts(fn: Callable[..., Any]) -> tuple[str, str]:
    doc = inspect.cleandoc(fn.__doc__ or "")
    lines = [ln.strip() for ln in doc.splitlines() if ln.strip()]
    msg = next((ln for ln in lines if not ln.startswith("Fix:")), "")
    fix = next((ln[4:].strip() for ln in lines if ln.startswith("Fix:")), "")
    return msg, fix


def _fail(fn: Callable[..., Any], f: NodeFacts, limit: Any = None, **kw: Any) -> Verdict:
    msg, fix = _texts(fn)
    vals = {"label": f.label, "accel": f.accel, "target": f.target, "op": f.op_type, "limit": limit, **kw}
    return Verdict(
        ok=False,
        rule=fn.__name__,
        reason=msg.format(**vals),
        fix=fix.format(**vals),
        fix_kind=_FIX_KINDS.get(fn.__name__),
    )


# ---- generic rules (always applied) -----------------------------------------------------------------


def op_not_listed(f: NodeFacts, source: str = "") -> Verdict:
    """{label}: {op} is not in the {accel}'s published operator list{where}.
    Fix: replace {op} with an operator the target lists{hint} (see `edgecnn targets show {target}`){confirm}."""
    hint = f" such as {REPLACEMENTS[f.op_type]}" if f.op_type in REPLACEMENTS else ""
    if f.fallback:
        where, confirm = f", so it runs on the fallback device ({f.fallback})", ""
    else:
        # "Not in the published list" is not "cannot run": say what is known, and how to find out.
        where = "; the target has no fallback device, so the model runs only if the vendor's compiler accepts it"
        confirm = ", or confirm with the vendor's compiler"
    return _fail(op_not_listed, f, hint=hint, where=where, confirm=confirm)


def op_unsupported(f: NodeFacts, note: str = "") -> Verdict:
    """{label}: the {accel} does not run {op}{why}.
    Fix: replace {op}{hint}, or accept a CPU partition here."""
    hint = f" with {REPLACEMENTS[f.op_type]}" if f.op_type in REPLACEMENTS else ""
    return _fail(op_unsupported, f, why=f" ({note})" if note else "", hint=hint)


def precision(f: NodeFacts, allowed: list[str]) -> Verdict:
    """{label}: computes in {precision}, but the {accel} requires {allowed_s} tensors.
    Fix: {fix_s}"""
    if _precision_ok(f.precision, allowed):
        return PASS
    if f.precision in ("float32", "float16"):
        fix_s = f"run `edgecnn quantize MODEL --target {f.target}` to write a QDQ {allowed[0]} model."
    elif f.precision in ("int32", "int64"):
        fix_s = "keep index arithmetic out of the accelerated graph (fold it at a fixed --input-shape) or cast it"
    else:
        fix_s = "give this target the float model (it computes in floating point), or quantize to one of " + ", ".join(
            allowed
        )
    allowed_s = " or ".join(allowed) + (" quantized" if not set(allowed) & {"float32", "float16"} else "")
    return _fail(precision, f, precision=f.precision, allowed_s=allowed_s, fix_s=fix_s)


def _precision_ok(p: str, allowed: list[str]) -> bool:
    if p in allowed:
        return True
    # A float32 model runs on an fp16-only accelerator: the runtime converts weights and activations.
    return p == "float32" and "float16" in allowed


# ---- constraint rules (keyed by TOML constraint name) -----------------------------------------------


def dtypes(f: NodeFacts, limit: list[str]) -> Verdict:
    """{label}: computes in {precision}; the {accel} runs {op} only in {allowed}.
    Fix: {fix_s}"""
    if _precision_ok(f.precision, limit):
        return PASS
    if f.precision in ("float32", "float16"):
        fix_s = f"quantize this op to {' or '.join(limit)} (`edgecnn quantize --target {f.target}`) or replace it."
    elif set(limit) & {"float32", "float16"}:
        # Not the command that wrote the model: quantize --target keeps such ops float; say how.
        fix_s = f"keep {f.op_type} in float (`edgecnn quantize --exclude {f.op_type}`), or replace it."
    else:
        fix_s = f"compute this op in {' or '.join(limit)}, or replace it."
    return _fail(dtypes, f, precision=f.precision, allowed=" or ".join(limit), fix_s=fix_s)


def kernel_max(f: NodeFacts, limit: int) -> Verdict:
    """{label}: kernel {kernel} exceeds the {accel}'s kernel limit of {limit} per side.
    Fix: use kernels of at most {limit}x{limit} (e.g. stack 3x3 layers for a large receptive field)."""
    if f.kernel and max(f.kernel) > limit:
        return _fail(kernel_max, f, limit, kernel=_x(f.kernel))
    return PASS


def kernel_area_max(f: NodeFacts, limit: int) -> Verdict:
    """{label}: kernel {kernel} has {area} taps, above the {accel}'s limit of {limit}.
    Fix: use a smaller kernel, or split the window into two smaller ones."""
    area = 1
    for k in f.kernel:
        area *= k
    if f.kernel and area > limit:
        return _fail(kernel_area_max, f, limit, kernel=_x(f.kernel), area=area)
    return PASS


def stride_max(f: NodeFacts, limit: int) -> Verdict:
    """{label}: stride {stride} exceeds the {accel}'s stride limit of {limit}.
    Fix: use stride <= {limit} (e.g. stride {limit} here and downsample in a following layer)."""
    if f.strides and max(f.strides) > limit:
        return _fail(stride_max, f, limit, stride=_x(f.strides))
    return PASS


def strides_allowed(f: NodeFacts, limit: list[int]) -> Verdict:
    """{label}: stride {stride} is not one the {accel} supports ({allowed}).
    Fix: use a stride in {allowed}."""
    if f.strides and any(s not in limit for s in f.strides):
        return _fail(strides_allowed, f, limit, stride=_x(f.strides), allowed=", ".join(map(str, limit)))
    return PASS


def tconv_stride_pairs(f: NodeFacts, limit: bool) -> Verdict:
    """{label}: transposed convolution with stride HxW {stride} on a {ih}x{iw} input with a {kh}x{kw} kernel; the {accel} takes strides 1x1 and 2x2, 1x2 (HxW) only when the input and kernel are 1 high, and 2x1 only when they are 1 wide.
    Fix: use equal strides (1 or 2), or make the layer 1-D along its strided axis (input and kernel 1 along the other)."""
    if not limit or len(f.strides) != 2:
        return PASS
    sh, sw = f.strides
    if (sh, sw) in ((1, 1), (2, 2)):
        return PASS
    ih, iw = (
        (f.in_shapes[0][a] for a in spatial_axes(4, f.layout)) if f.in_shapes and len(f.in_shapes[0]) == 4 else (0, 0)
    )
    kh, kw = tuple(f.kernel) if len(f.kernel) == 2 else (0, 0)
    if ((sh, sw) == (1, 2) and ih == 1 and kh == 1) or ((sh, sw) == (2, 1) and iw == 1 and kw == 1):
        return PASS
    return _fail(tconv_stride_pairs, f, limit, stride=_x(f.strides), ih=ih, iw=iw, kh=kh, kw=kw)


def dilation_max(f: NodeFacts, limit: int) -> Verdict:
    """{label}: dilation {dilation} exceeds the {accel}'s limit of {limit}.
    Fix: use dilation <= {limit}, or an undilated larger kernel."""
    if f.dilations and max(f.dilations) > limit:
        return _fail(dilation_max, f, limit, dilation=_x(f.dilations))
    return PASS


def dilated_kernel_h_max(f: NodeFacts, limit: int) -> Verdict:
    """{label}: dilated kernel height {dk} exceeds the {accel}'s limit of {limit}.
    Fix: reduce the kernel height or the dilation so that (k-1)*d+1 <= {limit}."""
    if len(f.kernel) >= 1:
        d = f.dilations[0] if f.dilations else 1
        dk = (f.kernel[0] - 1) * d + 1
        if dk > limit:
            return _fail(dilated_kernel_h_max, f, limit, dk=dk)
    return PASS


def dilated_kernel_area_max(f: NodeFacts, limit: int) -> Verdict:
    """{label}: dilated kernel {dk} covers {area} positions, above the {accel}'s limit of {limit}.
    Fix: reduce the kernel size or the dilation."""
    if len(f.kernel) == 2:
        d = f.dilations or (1, 1)
        dk = [(k - 1) * dd + 1 for k, dd in zip(f.kernel, d, strict=False)]
        if dk[0] * dk[1] > limit:
            return _fail(dilated_kernel_area_max, f, limit, dk=_x(dk), area=dk[0] * dk[1])
    return PASS


def pad_max(f: NodeFacts, limit: int) -> Verdict:
    """{label}: padding {pads} exceeds the {accel}'s limit of {limit} per side.
    Fix: pad explicitly in a smaller step, or use a smaller kernel."""
    if f.pads and max(f.pads) > limit:
        return _fail(pad_max, f, limit, pads=list(f.pads))
    return PASS


def rank_max(f: NodeFacts, limit: int) -> Verdict:
    """{label}: a tensor of rank {rank} ({shape}); the {accel} handles at most {limit}-D tensors.
    Fix: reshape to at most {limit} dimensions around this op."""
    for s in (*f.in_shapes, *f.out_shapes):
        if len(s) > limit:
            return _fail(rank_max, f, limit, rank=len(s), shape=_x(s))
    return PASS


def _activation_shapes(f: NodeFacts) -> tuple[tuple[int, ...], ...]:
    """Shapes of the tensors that flow between ops (not weights): the ones dimension limits apply to.

    A 4-D Conv weight (O, I, kh, kw) becomes a constant buffer of the compiled op, not a tensor the
    accelerator's data path moves, so the Edge TPU's "3 innermost dimensions" rule and dimension limits
    do not apply to it.
    """
    ins = tuple(s for i, s in enumerate(f.in_shapes) if not (i < len(f.const_inputs) and f.const_inputs[i]))
    return (*ins, *f.out_shapes)


def dim_max(f: NodeFacts, limit: int) -> Verdict:
    """{label}: dimension {dim} in tensor {shape} exceeds the {accel}'s limit of {limit}.
    Fix: tile or reshape so that no dimension exceeds {limit}."""
    for s in _activation_shapes(f):
        for d in s:
            if d > limit:
                return _fail(dim_max, f, limit, dim=d, shape=_x(s))
    return PASS


def batch_max(f: NodeFacts, limit: int) -> Verdict:
    """{label}: batch {batch} exceeds the {accel}'s limit of {limit}.
    Fix: export the model with batch {limit} (--input-shape NAME=1x...) and loop over images."""
    for s in f.in_shapes[:1]:
        if len(s) >= 3 and s[0] > limit:
            return _fail(batch_max, f, limit, batch=s[0])
    return PASS


def channels_max(f: NodeFacts, limit: int) -> Verdict:
    """{label}: {channels} channels in tensor {shape} exceed the {accel}'s limit of {limit}.
    Fix: split the channels into groups of at most {limit} (Split, then Concat)."""
    for s in (*f.in_shapes[:1], *f.out_shapes[:1]):
        if len(s) == 4 and s[channel_axis(4, f.layout)] > limit:
            return _fail(channels_max, f, limit, channels=s[channel_axis(4, f.layout)], shape=_x(s))
    return PASS


def innermost_nonunit_max(f: NodeFacts, limit: int) -> Verdict:
    """{label}: tensor {shape} has a dimension > 1 outside its {limit} innermost ones; the {accel} does not allow that.
    Fix: reshape so that only the {limit} innermost dimensions exceed 1 (e.g. batch 1)."""
    for s in _activation_shapes(f):
        if len(s) > limit and any(d > 1 for d in s[:-limit]):
            return _fail(innermost_nonunit_max, f, limit, shape=_x(s))
    return PASS


def ceil_mode(f: NodeFacts, limit: bool) -> Verdict:
    """{label}: ceil_mode=1, which the {accel} does not support.
    Fix: export with ceil_mode=0 and pad the input so that the output size stays the same."""
    if not limit and int(f.attrs.get("ceil_mode", 0)):
        return _fail(ceil_mode, f, limit)
    return PASS


def grouped(f: NodeFacts, limit: bool) -> Verdict:
    """{label}: grouped convolution (group={group}); the {accel} runs only dense and depthwise convolutions.
    Fix: use group=1 or a depthwise convolution (group = input channels), or split into {group} convolutions + Concat."""
    if not limit and f.grouped:
        return _fail(grouped, f, limit, group=f.group)
    return PASS


def depth_multiplier_max(f: NodeFacts, limit: int) -> Verdict:
    """{label}: depthwise convolution with depth multiplier {mult}; the {accel} allows at most {limit} unless the input has 1 channel.
    Fix: use depth multiplier 1 followed by a 1x1 convolution to widen the channels."""
    if f.depthwise and f.in_channels > 1 and f.in_channels and f.out_channels // f.in_channels > limit:
        return _fail(depth_multiplier_max, f, limit, mult=f.out_channels // f.in_channels)
    return PASS


def runtime_weights_dtypes(f: NodeFacts, limit: list[str]) -> Verdict:
    """{label}: multiplies two run-time tensors in {precision}; the {accel} runs a matmul of two activations (or a layer with run-time weights) only in {allowed}.
    Fix: quantize this MatMul to {allowed}, or make its right-hand side a constant."""
    if len(f.const_inputs) > 1 and not f.const_inputs[1] and not _precision_ok(f.precision, limit):
        return _fail(runtime_weights_dtypes, f, limit, precision=f.precision, allowed=" or ".join(limit))
    return PASS


def weights_const(f: NodeFacts, limit: bool) -> Verdict:
    """{label}: its weights are computed at run time; the {accel} needs constant weights.
    Fix: make the weights an initializer (constant-fold the graph before export)."""
    if f.op_type == "MatMul" and f.const_inputs[:2] == (False, False):
        return PASS  # activation x activation is a batched matmul, not a layer with weights
    if limit and len(f.const_inputs) > 1 and not f.const_inputs[1]:
        return _fail(weights_const, f, limit)
    return PASS


def axes_spatial_only(f: NodeFacts, limit: bool) -> Verdict:
    """{label}: reduces over axes {axes} of a {rank}-D tensor; the {accel} reduces only over height and width.
    Fix: reduce over the spatial axes (2, 3 in NCHW) only, e.g. with GlobalAveragePool."""
    if not limit:
        return PASS
    rank = len(f.in_shapes[0]) if f.in_shapes else 0
    axes = f.attrs.get("axes")
    if axes is None:
        axes = list(range(rank))
    axes = sorted({int(a) % rank for a in axes}) if rank else []
    if rank != 4 or not set(axes) <= set(spatial_axes(4, f.layout)) or not axes:
        return _fail(axes_spatial_only, f, limit, axes=axes, rank=rank)
    return PASS


def keepdims(f: NodeFacts, limit: bool) -> Verdict:
    """{label}: keepdims={have}; the {accel} supports only keepdims={want}.
    Fix: set keepdims={want} and add a Reshape after it if needed."""
    have = int(f.attrs.get("keepdims", 1))
    if bool(have) != limit:
        return _fail(keepdims, f, limit, have=have, want=int(limit))
    return PASS


def softmax_axis(f: NodeFacts, limit: list[int]) -> Verdict:
    """{label}: softmax over axis {axis} of a {rank}-D tensor; the {accel} supports axes {allowed}.
    Fix: transpose so that the softmax runs over an allowed axis, or move it to post-processing."""
    rank = len(f.in_shapes[0]) if f.in_shapes else 0
    axis = int(f.attrs.get("axis", -1))
    ax = axis % rank if rank else axis
    allowed = {a % rank for a in limit} if rank else set(limit)
    if rank and ax not in allowed:
        return _fail(softmax_axis, f, limit, axis=axis, rank=rank, allowed=sorted(allowed))
    return PASS


def resize_modes(f: NodeFacts, limit: list[str]) -> Verdict:
    """{label}: resize mode '{mode}'; the {accel} supports {allowed}.
    Fix: use mode {allowed} (nearest is cheapest on most NPUs)."""
    mode = str(f.attrs.get("mode", "nearest"))
    if mode not in limit:
        return _fail(resize_modes, f, limit, mode=mode, allowed=" or ".join(limit))
    return PASS


def _resize_scales(f: NodeFacts) -> list[float]:
    if not f.in_shapes or not f.out_shapes or len(f.in_shapes[0]) != 4 or len(f.out_shapes[0]) != 4:
        return []
    i, o = f.in_shapes[0], f.out_shapes[0]
    return [o[k] / i[k] for k in spatial_axes(4, f.layout) if i[k]]


def resize_scales(f: NodeFacts, limit: list[int]) -> Verdict:
    """{label}: scales {have} from {ins} to {outs}; the {accel} resizes only by integer factors {allowed} (equal in H and W).
    Fix: resize by one of {allowed} (chain resizes for larger factors) or resize in pre/post-processing."""
    sc = _resize_scales(f)
    if not sc:
        return PASS
    ok = all(s == int(s) and int(s) in limit for s in sc) and len(set(sc)) == 1
    if not ok:
        return _fail(
            resize_scales, f, limit, have=[round(s, 3) for s in sc], ins=_x(f.in_shapes[0]), outs=_x(f.out_shapes[0]),
            allowed=", ".join(map(str, limit)),
        )  # fmt: skip
    return PASS


def pad_spatial_only(f: NodeFacts, limit: bool) -> Verdict:
    """{label}: pads dimensions other than height and width; the {accel} pads only H and W.
    Fix: pad only the spatial axes (fold channel padding into the next Conv's weights)."""
    pads = f.attrs.get("pads_value")
    if not limit or pads is None:
        return PASS
    rank = len(pads) // 2
    keep = spatial_axes(rank, f.layout) or (rank - 2, rank - 1)
    for ax in range(rank):
        if ax in keep:
            continue
        if pads[ax] or pads[ax + rank]:
            return _fail(pad_spatial_only, f, limit)
    return PASS


def pad_modes(f: NodeFacts, limit: list[str]) -> Verdict:
    """{label}: pad mode '{mode}'; the {accel} supports {allowed}.
    Fix: use mode {allowed}."""
    mode = str(f.attrs.get("mode", "constant"))
    if mode not in limit:
        return _fail(pad_modes, f, limit, mode=mode, allowed=" or ".join(limit))
    return PASS


def clip_relu_only(f: NodeFacts, limit: bool) -> Verdict:
    """{label}: Clip({lo}, {hi}) is not a ReLU/ReLU6; the {accel} runs Clip only as ReLU (min 0) or ReLU6 (0..6).
    Fix: clip to [0, 6] (ReLU6) or [0, inf) (ReLU)."""
    lo, hi = f.attrs.get("clip_min"), f.attrs.get("clip_max")
    if limit and not (lo == 0.0 and hi in (None, 6.0)):
        return _fail(clip_relu_only, f, limit, lo=lo, hi=hi)
    return PASS


def static_shapes(f: NodeFacts, limit: bool) -> Verdict:
    """{label}: tensor {shape} has a dynamic dimension; the {accel} needs static shapes, so the model cannot run there.
    Fix: export with fixed input sizes (or pass --input-shape NAME=1x3xHxW / OpenVINO model.reshape) before compiling."""
    if not limit:
        return PASS
    for s in (*f.in_shapes, *f.out_shapes):
        if any(d < 0 for d in s):
            return _fail(static_shapes, f, limit, shape=_x(["?" if d < 0 else d for d in s]))
    return PASS


# --- TFLite-target rules ---
# Constraints of the TFLite-consuming targets (Ethos-U via Vela, XNNPACK, the GPU delegate, the Edge TPU
# compiler), read from the vendors' current code and checked against Vela and the LiteRT interpreter
# (tests/test_target_vela.py, tests/test_target_xnnpack.py). They read the same NodeFacts for an ONNX node
# and for a TFLite operator (edgecnn/check/tflite_graph.py); ``layout`` says where H, W and C are.


def _padded(f: NodeFacts) -> bool:
    return any(p != 0 for p in f.pads)


def large_stride_valid_only(f: NodeFacts, limit: int) -> Verdict:
    """{label}: stride {stride} above {limit} with {why}; the {accel} takes strides above {limit} only without padding and dilation.
    Fix: use stride <= {limit}, or drop the padding (VALID) and dilation so that the large stride is allowed."""
    if not f.strides or max(f.strides) <= limit or f.depthwise:
        return PASS  # a depthwise conv is judged by its own stride range (its variant's stride_max)
    dilated = bool(f.dilations) and max(f.dilations) > 1
    if _padded(f) or dilated:
        why = " and ".join(w for w, c in (("padding " + str(list(f.pads)), _padded(f)), ("dilation", dilated)) if c)
        return _fail(large_stride_valid_only, f, limit, stride=_x(f.strides), why=why)
    return PASS


def padded_kernel_max(f: NodeFacts, limit: int) -> Verdict:
    """{label}: kernel {kernel} with padding; the {accel} pads windows of at most {limit}x{limit}.
    Fix: use a kernel of at most {limit} per side, or VALID padding (pad explicitly before the op)."""
    if f.kernel and _padded(f) and max(f.kernel) > limit:
        return _fail(padded_kernel_max, f, limit, kernel=_x(f.kernel))
    return PASS


def kernel_h_max(f: NodeFacts, limit: int) -> Verdict:
    """{label}: kernel height {kh} exceeds the {accel}'s limit of {limit}.
    Fix: use a kernel at most {limit} high (split the window into two pooling steps)."""
    if f.kernel and f.kernel[0] > limit:
        return _fail(kernel_h_max, f, limit, kh=f.kernel[0])
    return PASS


def unit_kernel_stride(f: NodeFacts, limit: bool) -> Verdict:
    """{label}: a 1x1 window with stride {stride}; the {accel} does not run 1x1 pooling with a stride above 1.
    Fix: replace it with a strided Slice (or a 1x1 stride-2 depthwise Conv), or pool with a larger window."""
    if not limit and f.kernel and all(k == 1 for k in f.kernel) and f.strides and max(f.strides) > 1:
        return _fail(unit_kernel_stride, f, limit, stride=_x(f.strides))
    return PASS


def quant_match(f: NodeFacts, limit: bool) -> Verdict:
    """{label}: input quantization {qin} differs from the output's {qout}; the {accel} needs them equal for {op}.
    Fix: give every input of {op} the output's scale and zero point (calibrate them together)."""
    if not limit or not f.quant_out or f.quant_out[0] is None:
        return PASS
    out = f.quant_out[0]
    for q in f.quant_in:
        if q is not None and not _same_q(q, out):
            return _fail(quant_match, f, limit, qin=_q_s(q), qout=_q_s(out))
    return PASS


def scale_ratio_range(f: NodeFacts, limit: list[float]) -> Verdict:
    """{label}: input {which} scale / output scale = {ratio:.6g}, outside [{lo:.6g}, {hi:.6g}); the {accel} rejects {op} with that requantization.
    Fix: calibrate the inputs and the output of {op} to closer ranges (a wildly wider or narrower output range than its inputs)."""
    out = f.quant_out[0] if f.quant_out else None
    if out is None or not out[0] > 0:
        return PASS
    lo, hi = limit
    for i, q in enumerate(f.quant_in[:2]):
        if q is not None and q[0] > 0 and not lo <= q[0] / out[0] < hi:
            return _fail(scale_ratio_range, f, limit, which=i + 1, ratio=q[0] / out[0], lo=lo, hi=hi)
    return PASS


def product_scale_ratio_range(f: NodeFacts, limit: list[float]) -> Verdict:
    """{label}: input scales' product / output scale = {ratio:.6g}, outside [{lo:.6g}, {hi:.6g}); the {accel} rejects {op} with that requantization.
    Fix: calibrate the output of {op} to a range closer to the product of its inputs' ranges."""
    out = f.quant_out[0] if f.quant_out else None
    qs = [q for q in f.quant_in[:2] if q is not None]
    if out is None or not out[0] > 0 or len(qs) != 2:
        return PASS
    lo, hi = limit
    ratio = qs[0][0] * qs[1][0] / out[0]
    if not lo <= ratio < hi:
        return _fail(product_scale_ratio_range, f, limit, ratio=ratio, lo=lo, hi=hi)
    return PASS


def leaky_relu_scales(f: NodeFacts, limit: bool) -> Verdict:
    """{label}: quantized LeakyRelu with input/output scale ratio {pos:.6g} and alpha {alpha:g} (negative ratio {neg:.6g}); the {accel} needs the ratio in [1/256, 128] and |alpha x ratio| in [1/256, 128].
    Fix: calibrate the LeakyRelu's input and output to similar ranges (and avoid a tiny alpha in an integer model)."""
    qi = f.quant_in[0] if f.quant_in else None
    qo = f.quant_out[0] if f.quant_out else None
    if not limit or qi is None or qo is None or not (qi[0] > 0 and qo[0] > 0):
        return PASS
    alpha = float(f.attrs.get("alpha", 0.01))
    pos = qi[0] / qo[0]
    neg = pos * alpha
    # XNNPACK delegate, LEAKY_RELU: 1/256 <= pos <= 128; -127.99609375 <= neg <= 128; |neg| >= 1/256.
    if not (1 / 256 <= pos <= 128 and -127.99609375 <= neg <= 128 and abs(neg) >= 1 / 256):
        return _fail(leaky_relu_scales, f, limit, pos=pos, neg=neg, alpha=alpha)
    return PASS


def hard_sigmoid_grid(f: NodeFacts, limit: bool) -> Verdict:
    """{label}: quantized HardSigmoid whose output grid reaches {top:.4g}, above its clamp at 1; the clamp is then a MINIMUM, which the {accel} runs only in float.
    Fix: calibrate the HardSigmoid's output to its real range [0, 1] (edgecnn quantize does, from the data), so that the grid's own saturation is the clamp."""
    qo = f.quant_out[0] if f.quant_out else None
    if not limit or qo is None or f.precision not in ("int8", "uint8") or qo[0] <= 0:
        return PASS
    # int8: MUL by alpha, ADD beta with a fused RELU (the clamp at 0), and MINIMUM 1 only when the grid reaches
    # above 1 by more than half a step (edgecnn.export.to_tflite._op_HardSigmoid)
    top = ((255 if f.precision == "uint8" else 127) - qo[1]) * qo[0]
    if top > 1.0 + qo[0] / 2:
        return _fail(hard_sigmoid_grid, f, limit, top=top)
    return PASS


def pow_square(f: NodeFacts, limit: bool) -> Verdict:
    """{label}: Pow with exponent {exponent}; the {accel} runs x^2 (SQUARE in float, MUL(x, x) in int8) and, in float, x^0.5 (SQRT); any other power is a POW it does not take.
    Fix: write x^2 as x * x (or keep this Pow on the CPU); a square root as Sqrt."""
    e = f.attrs.get("exponent")
    if not limit:
        return PASS
    ok = e == 2.0 or (e in (0.5, 1.0) and f.precision in ("float32", "float16"))
    return PASS if ok else _fail(pow_square, f, limit, exponent="computed at run time" if e is None else f"{e:g}")


def _same_q(a: tuple[float, int], b: tuple[float, int]) -> bool:
    return abs(a[0] - b[0]) <= 1e-6 * max(abs(a[0]), abs(b[0])) and a[1] == b[1]


def _q_s(q: tuple[float, int]) -> str:
    return f"(scale {q[0]:.6g}, zero point {q[1]})"


def depth_reduce_needs_unit(f: NodeFacts, limit: bool) -> Verdict:
    """{label}: reduces over channels of a {shape} tensor; the {accel} reduces channels only when H, W or C is 1.
    Fix: reduce over H and W only, or reshape so that one of H, W, C is 1."""
    if not limit or not f.in_shapes or len(f.in_shapes[0]) != 4:
        return PASS
    shape = f.in_shapes[0]
    axes = f.attrs.get("axes")
    axes = list(range(4)) if axes is None else [int(a) % 4 for a in axes]
    c = channel_axis(4, f.layout)
    h, w = spatial_axes(4, f.layout)
    if c in axes and 1 not in (shape[h], shape[w], shape[c]):
        return _fail(depth_reduce_needs_unit, f, limit, shape=_x(shape))
    return PASS


def _resize_geometry(f: NodeFacts) -> tuple[tuple[int, int], tuple[int, int]] | None:
    if not f.in_shapes or not f.out_shapes or len(f.in_shapes[0]) != 4 or len(f.out_shapes[0]) != 4:
        return None
    h, w = spatial_axes(4, f.layout)
    i, o = f.in_shapes[0], f.out_shapes[0]
    return (i[h], i[w]), (o[h], o[w])


def _coord_mode(f: NodeFacts) -> str:
    return str(f.attrs.get("coordinate_transformation_mode", "half_pixel"))


def resize_factors(f: NodeFacts, limit: list[int]) -> Verdict:
    """{label}: resize {ins} -> {outs} is a factor of {have}; the {accel} resizes by {allowed} only (equal in H and W).
    Fix: resize by one of {allowed} (chain resizes for other factors) or resize in pre/post-processing."""
    g = _resize_geometry(f)
    if g is None:
        return PASS
    (ih, iw), (oh, ow) = g
    if (ih, iw) == (oh, ow) or (ih, iw) == (1, 1):
        return PASS
    align = _coord_mode(f) == "align_corners"

    def factor(i: int, o: int) -> float:
        if align and i > 1 and o > 1:
            return (o - 1) / (i - 1)
        return o / i if i else 0.0

    fh, fw = factor(ih, oh), factor(iw, ow)
    # Unequal factors only for a 1-D resize: the output is 1 along the other axis and that axis is not scaled.
    one_d = (ow == 1 and fw == 1 and fh in limit) or (oh == 1 and fh == 1 and fw in limit)
    ok = one_d if fh != fw else fh in limit
    if not ok:
        have = f"{fh:g}x{fw:g}" + (" (align_corners)" if align else "")
        return _fail(
            resize_factors, f, limit, ins=f"{ih}x{iw}", outs=f"{oh}x{ow}", have=have,
            allowed=", ".join(f"{v}x" for v in limit),
        )  # fmt: skip
    return PASS


_HALF_PIXEL = ("half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn")


def half_pixel_factors(f: NodeFacts, limit: list[int]) -> Verdict:
    """{label}: half-pixel resize {ins} -> {outs}; with half-pixel centers the {accel} resizes by {allowed} only.
    Fix: resize by {allowed}, or export with coordinate_transformation_mode='asymmetric' or 'align_corners'."""
    g = _resize_geometry(f)
    if g is None or _coord_mode(f) not in _HALF_PIXEL:
        return PASS
    (ih, iw), (oh, ow) = g
    if (ih, iw) == (oh, ow) or (ih, iw) == (1, 1):
        return PASS
    if not all(i and o / i in limit for i, o in ((ih, oh), (iw, ow)) if not (o == 1 and i == 1)):
        return _fail(
            half_pixel_factors, f, limit, ins=f"{ih}x{iw}", outs=f"{oh}x{ow}",
            allowed=", ".join(f"{v}x" for v in limit),
        )  # fmt: skip
    return PASS


def _axis_names(rank: int, layout: str) -> list[str]:
    if rank == 4 and layout != "NHWC":
        return ["N", "C", "H", "W"]
    return (["N"] * max(rank - 3, 0) + ["H", "W", "C"])[-rank:] if rank else []


def resize_coord_modes(f: NodeFacts, limit: list[str]) -> Verdict:
    """{label}: coordinate_transformation_mode '{mode}' has no {accel} (TFLite RESIZE_*) equivalent; supported: {allowed}.
    Fix: export the Resize with one of {allowed} (align_corners or half_pixel cover most models)."""
    mode = _coord_mode(f)
    if mode not in limit:
        return _fail(resize_coord_modes, f, limit, mode=mode, allowed=", ".join(limit))
    return PASS


def slice_step_axes(f: NodeFacts, limit: list[str]) -> Verdict:
    """{label}: steps {steps} (axes {axes}); the {accel} slices with a step other than 1 only along {allowed}.
    Fix: slice with step 1 here and subsample with a strided Conv or pooling, or move the slice to post-processing."""
    steps = f.attrs.get("steps_value")
    if not steps or not f.in_shapes:
        return PASS
    rank = len(f.in_shapes[0])
    names = _axis_names(rank, f.layout)
    axes = f.attrs.get("axes_value") or list(range(len(steps)))
    bad = []
    for ax, st in zip(axes, steps, strict=False):
        ax = int(ax) % rank if rank else int(ax)
        if int(st) != 1 and (int(st) < 1 or ax >= len(names) or names[ax] not in limit):
            bad.append(ax)
    if bad:
        allowed = ", ".join(limit) if limit else "no axis"
        return _fail(slice_step_axes, f, limit, steps=list(steps), axes=bad, allowed=allowed)
    return PASS


def inputs_max(f: NodeFacts, limit: int) -> Verdict:
    """{label}: {n} inputs; the {accel} runs {op} with at most {limit}.
    Fix: split it into a tree of {op} nodes with at most {limit} inputs each."""
    n = sum(1 for _ in f.in_shapes)
    if n > limit:
        return _fail(inputs_max, f, limit, n=n)
    return PASS


def outputs_max(f: NodeFacts, limit: int) -> Verdict:
    """{label}: {n} outputs; the {accel} runs {op} with at most {limit}.
    Fix: split in two steps with at most {limit} outputs each (or use Slice for each part)."""
    n = len(f.out_shapes)
    if n > limit:
        return _fail(outputs_max, f, limit, n=n)
    return PASS


def pad_value_zero(f: NodeFacts, limit: bool) -> Verdict:
    """{label}: pads with the constant {value} (TFLite PADV2); the {accel} pads only with zeros (PAD).
    Fix: pad with 0 (or fold the padding into the next Conv/pool as SAME padding)."""
    value = f.attrs.get("pad_constant")
    if limit and value not in (None, 0, 0.0):
        return _fail(pad_value_zero, f, limit, value=value)
    return PASS


def batch_axis_untouched(f: NodeFacts, limit: bool) -> Verdict:
    """{label}: works along the batch dimension (axis 0: {what}); the {accel} does not {op} across the batch.
    Fix: keep axis 0 out of {op} (reshape the batch into another axis first, or run this step per image)."""
    if not limit or not f.in_shapes or not f.in_shapes[0]:
        return PASS
    rank = len(f.in_shapes[0])
    what = ""
    axes = f.attrs.get("axes")
    if f.op_type.startswith("Reduce") and axes is None:
        axes = list(range(rank))  # no axes: a reduction over every axis, the batch included
    if f.op_type.startswith("Reduce") or f.op_type == "Split":
        ax = list(axes) if f.op_type.startswith("Reduce") else [f.attrs.get("axis", 0)]
        if 0 in [int(a) % rank for a in ax]:
            what = f"axes {ax}"
    pads = f.attrs.get("pads_value")
    if pads and len(pads) == 2 * rank and (pads[0] or pads[rank]):
        what = f"pads {list(pads)}"
    perm = f.attrs.get("perm")
    if f.op_type == "Transpose" and perm is not None and int(perm[0]) != 0:
        what = f"perm {list(perm)}"
    if what:
        return _fail(batch_axis_untouched, f, limit, what=what)
    return PASS


def depth_axis_max(f: NodeFacts, limit: int) -> Verdict:
    """{label}: works along axis {axis} of a {shape} tensor; the {accel} runs {op} only along the channel axis, at most {limit} deep.
    Fix: run {op} over the channels ({limit} or fewer), e.g. transpose first, or move it to post-processing."""
    if not f.in_shapes or not f.in_shapes[0]:
        return PASS
    shape = f.in_shapes[0]
    rank = len(shape)
    axis = int(f.attrs.get("axis", 0)) % rank
    c = channel_axis(rank, f.layout)
    if axis != c or shape[c] > limit:
        return _fail(depth_axis_max, f, limit, axis=axis, shape=_x(shape))
    return PASS


def _same_upper_pads(f: NodeFacts) -> tuple[int, ...] | None:
    """The pads TFLite SAME padding adds (extra on the end side), in ONNX order, or None if unknown."""
    if not f.in_shapes or not f.out_shapes or not f.kernel:
        return None
    x, y = f.in_shapes[0], f.out_shapes[0]
    n = len(f.kernel)
    if len(x) != n + 2 or len(y) != n + 2:
        return None
    sp = spatial_axes(len(x), f.layout) or tuple(range(2, 2 + n))
    d = f.dilations or (1,) * n
    s = f.strides or (1,) * n
    tot = [max((y[a] - 1) * s[i] + (f.kernel[i] - 1) * d[i] + 1 - x[a], 0) for i, a in enumerate(sp)]
    return (*(t // 2 for t in tot), *(t - t // 2 for t in tot))


def pads_same_or_none(f: NodeFacts, limit: bool) -> Verdict:
    """{label}: pads {pads} are neither none nor TFLite SAME padding {same}; they become a separate {pad_op} before it, which the {accel} does not take.
    Fix: pad as SAME does (the extra row/column at the end), or remove the padding (VALID)."""
    if not limit or not f.pads or not any(f.pads):
        return PASS
    same = _same_upper_pads(f)
    if same is not None and tuple(f.pads) != same:
        pad_op = "PADV2 (padding with -inf)" if f.op_type == "MaxPool" else "PAD"
        return _fail(pads_same_or_none, f, limit, pads=list(f.pads), same=list(same), pad_op=pad_op)
    return PASS


def weight_abs_sum_max(f: NodeFacts, limit: int) -> Verdict:
    """{label}: one output channel's int8 weights add up to {have} in absolute value, above the {accel}'s limit of {limit}.
    Fix: split the input channels (two convolutions + Add), or use a smaller kernel, so that each output's weight sum stays under {limit}."""
    have = f.attrs.get("weight_abs_sum")
    if have is not None and have > limit:
        return _fail(weight_abs_sum_max, f, limit, have=have)
    return PASS


def reduced_axis_max(f: NodeFacts, limit: int) -> Verdict:
    """{label}: reduces an axis of {n} elements ({shape}); the {accel} reduces axes of at most {limit}.
    Fix: reduce in two steps (e.g. reshape the long axis into two and reduce each), or pool first."""
    if not f.in_shapes or not f.in_shapes[0]:
        return PASS
    shape = f.in_shapes[0]
    rank = len(shape)
    if f.op_type.startswith("Global"):
        axes = list(spatial_axes(rank, f.layout) or range(2, rank))
    else:
        axes = f.attrs.get("axes")
        axes = list(range(rank)) if axes is None else [int(a) % rank for a in axes]
    big = [shape[a] for a in axes if shape[a] > limit]
    if big:
        return _fail(reduced_axis_max, f, limit, n=big[0], shape=_x(shape))
    return PASS


def softmax_rows_max(f: NodeFacts, limit: int) -> Verdict:
    """{label}: softmax over {rows} rows of {shape}; the {accel} takes at most {limit} (H x W of the input).
    Fix: split the softmax input, or move the softmax to post-processing on the CPU."""
    if not f.in_shapes or not f.in_shapes[0]:
        return PASS
    shape = f.in_shapes[0]
    rank = len(shape)
    axis = int(f.attrs.get("axis", -1)) % rank
    rows = 1
    for i, d in enumerate(shape):
        if i != axis and not (rank == 4 and i == 0):
            rows *= d
    if rows > limit:
        return _fail(softmax_rows_max, f, limit, rows=rows, shape=_x(shape))
    return PASS


def channel_reduce_multiple(f: NodeFacts, limit: int) -> Verdict:
    """{label}: reduces over {c} channels; the {accel} reduces over channels only when their count is a multiple of {limit}.
    Fix: pad the channels to a multiple of {limit} (zeros do not change a sum; rescale a mean), or reduce over H and W."""
    if not f.in_shapes or len(f.in_shapes[0]) < 2:
        return PASS
    shape = f.in_shapes[0]
    rank = len(shape)
    axes = f.attrs.get("axes")
    axes = list(range(rank)) if axes is None else [int(a) % rank for a in axes]
    c = channel_axis(rank, f.layout)
    if c in axes and shape[c] % limit:
        return _fail(channel_reduce_multiple, f, limit, c=shape[c])
    return PASS


def equal_dilation(f: NodeFacts, limit: bool) -> Verdict:
    """{label}: dilation {dilation} differs between height and width; the {accel} needs the same dilation in x and y.
    Fix: use the same dilation along height and width."""
    if limit and len(f.dilations) == 2 and f.dilations[0] != f.dilations[1]:
        return _fail(equal_dilation, f, limit, dilation=_x(f.dilations))
    return PASS


def _split_sizes(f: NodeFacts) -> list[int]:
    """The part sizes along a Split's axis ([] when the shapes are unknown)."""
    if len(f.out_shapes) < 2 or not f.in_shapes or not f.in_shapes[0]:
        return []
    axis = int(f.attrs.get("axis", 0)) % len(f.in_shapes[0])
    return [s[axis] for s in f.out_shapes if len(s) > axis]


def split_equal(f: NodeFacts, limit: bool) -> Verdict:
    """{label}: splits into unequal parts {sizes} (TFLite SPLIT_V); the {accel} takes only equal splits (SPLIT).
    Fix: split into equal parts, or write each part as a SLICE (as `edgecnn export` does), or accept a CPU kernel here."""
    sizes = _split_sizes(f)
    if limit and len(set(sizes)) > 1:
        return _fail(split_equal, f, limit, sizes=sizes)
    return PASS


def transpose_axis_product_max(f: NodeFacts, limit: int) -> Verdict:
    """{label}: transposes {shape} with perm {perm}; the {accel} needs every product of {k} axes <= {limit} for this permutation.
    Fix: transpose a smaller tensor (split it first) or keep the channel axis last so that no transpose is needed."""
    perm = f.attrs.get("perm")
    if not f.in_shapes or not f.in_shapes[0]:  # rank unknown (shape inference could not follow)
        return PASS
    shape = f.in_shapes[0]
    rank = len(shape)
    perm = list(range(rank))[::-1] if perm is None else [int(p) % rank for p in perm]
    moved = [i for i, p in enumerate(perm) if p != i]
    if not moved:
        return PASS
    # Only unit axes outside the last three: a 3-D transpose, each of H, W, C up to the limit.
    lead = range(max(rank - 3, 0))
    if all(shape[i] == 1 and perm[i] == i for i in lead) and all(d <= limit for d in shape[-3:]):
        return PASS
    k = max(rank - 2, 1)
    from itertools import combinations

    for axes in combinations(range(rank), k):
        prod = 1
        for a in axes:
            prod *= shape[a]
        if prod > limit:
            return _fail(transpose_axis_product_max, f, limit, shape=_x(shape), perm=perm, k=k)
    return PASS


def pad_nonnegative(f: NodeFacts, limit: bool) -> Verdict:
    """{label}: negative pads {pads} (cropping); the {accel} pads only by non-negative amounts.
    Fix: crop with a Slice instead of a negative Pad."""
    pads = f.attrs.get("pads_value")
    if limit and pads is not None and any(int(p) < 0 for p in pads):
        return _fail(pad_nonnegative, f, limit, pads=list(pads))
    return PASS


# --- generic rules ---
# Rules any target may use (keys of CONSTRAINTS like the ones above); placement.py applies `spatial_dims`
# by default where a TFLite builtin is 2-D only.


def spatial_dims(f: NodeFacts, limit: list[int]) -> Verdict:
    """{label}: a {n}-D {op} (kernel {kernel}); the {accel} runs {op} over {allowed} spatial dimension(s) only.
    Fix: use a {allowed_max}-D {op} (fold the extra dimension into batch or channels with a Reshape)."""
    n = len(f.kernel)
    if n and n not in limit:
        return _fail(
            spatial_dims, f, limit, n=n, kernel=_x(f.kernel), allowed=" or ".join(map(str, limit)),
            allowed_max=max(limit) if limit else 2,
        )  # fmt: skip
    return PASS


def auto_pad_modes(f: NodeFacts, limit: list[str]) -> Verdict:
    """{label}: auto_pad={mode}; the {accel} supports auto_pad {allowed}.
    Fix: export with explicit pads (auto_pad=NOTSET)."""
    mode = str(f.attrs.get("auto_pad", "NOTSET"))
    if mode not in limit:
        return _fail(auto_pad_modes, f, limit, mode=mode, allowed=" or ".join(limit))
    return PASS


def width_max(f: NodeFacts, limit: int) -> Verdict:
    """{label}: width {w} of tensor {shape} exceeds the {accel}'s limit of {limit} for {op}.
    Fix: split the tensor along its last axis (Split, then Concat) so that no part is wider than {limit}."""
    for s in _activation_shapes(f):
        if len(s) >= 2 and s[-1] > limit:
            return _fail(width_max, f, limit, w=s[-1], shape=_x(s))
    return PASS


def elements_max(f: NodeFacts, limit: int) -> Verdict:
    """{label}: tensor {shape} has {n} elements, above the {accel}'s limit of {limit} for {op}.
    Fix: tile the computation into parts of at most {limit} elements."""
    for s in _activation_shapes(f):
        n = 1
        for d in s:
            n *= max(d, 1)
        if n > limit:
            return _fail(elements_max, f, limit, n=n, shape=_x(s))
    return PASS


def input_rank(f: NodeFacts, limit: list[int]) -> Verdict:
    """{label}: input of rank {rank} ({shape}); the {accel} runs {op} on rank {allowed} inputs only.
    Fix: reshape the input to rank {allowed} around this op."""
    if f.in_shapes and f.in_shapes[0] is not None:
        s = f.in_shapes[0]
        if len(s) not in limit:
            return _fail(
                input_rank, f, limit, rank=len(s), shape=_x(s) or "scalar", allowed=" or ".join(map(str, limit))
            )
    return PASS


# ---- registries --------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Constraint:
    kind: str  # "int" | "bool" | "ints" | "strs" | "range" ([low, high] numbers): the TOML value type
    rule: Callable[..., Verdict]
    what: str  # one line for the docs page: what the value means


CONSTRAINTS: dict[str, Constraint] = {
    "dtypes": Constraint(kind="strs", rule=dtypes, what="precisions this op runs in (overrides the target's)"),
    "kernel_max": Constraint(kind="int", rule=kernel_max, what="largest kernel size per spatial side"),
    "kernel_area_max": Constraint(kind="int", rule=kernel_area_max, what="largest kernel height x width"),
    "stride_max": Constraint(kind="int", rule=stride_max, what="largest stride per spatial side"),
    "strides_allowed": Constraint(kind="ints", rule=strides_allowed, what="the only strides allowed"),
    "dilation_max": Constraint(kind="int", rule=dilation_max, what="largest dilation"),
    "dilated_kernel_h_max": Constraint(kind="int", rule=dilated_kernel_h_max, what="largest (k_h-1)*d_h+1"),
    "dilated_kernel_area_max": Constraint(kind="int", rule=dilated_kernel_area_max, what="largest dilated h x w"),
    "pad_max": Constraint(kind="int", rule=pad_max, what="largest padding per side"),
    "rank_max": Constraint(kind="int", rule=rank_max, what="largest tensor rank"),
    "dim_max": Constraint(kind="int", rule=dim_max, what="largest size of any dimension"),
    "batch_max": Constraint(kind="int", rule=batch_max, what="largest batch (first dim of the input, rank >= 3)"),
    "channels_max": Constraint(kind="int", rule=channels_max, what="largest channel count (dim 1 of 4-D tensors)"),
    "innermost_nonunit_max": Constraint(
        kind="int", rule=innermost_nonunit_max, what="only this many innermost dims may exceed 1"
    ),
    "ceil_mode": Constraint(kind="bool", rule=ceil_mode, what="whether pooling with ceil_mode=1 is supported"),
    "grouped": Constraint(kind="bool", rule=grouped, what="whether grouped (non-depthwise) convolution is supported"),
    "depth_multiplier_max": Constraint(kind="int", rule=depth_multiplier_max, what="largest depthwise multiplier"),
    "weights_const": Constraint(kind="bool", rule=weights_const, what="weights (input 1) must be constant"),
    "axes_spatial_only": Constraint(kind="bool", rule=axes_spatial_only, what="reduce only over H and W of 4-D"),
    "keepdims": Constraint(kind="bool", rule=keepdims, what="the only keepdims value supported"),
    "softmax_axis": Constraint(kind="ints", rule=softmax_axis, what="axes softmax may run over"),
    "resize_modes": Constraint(kind="strs", rule=resize_modes, what="Resize modes supported"),
    "resize_scales": Constraint(kind="ints", rule=resize_scales, what="integer H/W scale factors supported"),
    "pad_spatial_only": Constraint(kind="bool", rule=pad_spatial_only, what="Pad only over H and W"),
    "pad_modes": Constraint(kind="strs", rule=pad_modes, what="Pad modes supported"),
    "clip_relu_only": Constraint(kind="bool", rule=clip_relu_only, what="Clip only as ReLU or ReLU6"),
    "static_shapes": Constraint(kind="bool", rule=static_shapes, what="every tensor shape must be fully static"),
    # TFLite-target rules
    "large_stride_valid_only": Constraint(
        kind="int", rule=large_stride_valid_only, what="strides above this only without padding and dilation"
    ),
    "padded_kernel_max": Constraint(kind="int", rule=padded_kernel_max, what="largest kernel side when padded"),
    "kernel_h_max": Constraint(kind="int", rule=kernel_h_max, what="largest kernel height"),
    "unit_kernel_stride": Constraint(kind="bool", rule=unit_kernel_stride, what="whether 1x1 windows may stride"),
    "quant_match": Constraint(kind="bool", rule=quant_match, what="inputs quantized exactly like the output"),
    "scale_ratio_range": Constraint(
        kind="range", rule=scale_ratio_range, what="[low, high) allowed for each input scale / output scale"
    ),
    "product_scale_ratio_range": Constraint(
        kind="range", rule=product_scale_ratio_range, what="[low, high) allowed for input1 x input2 / output scale"
    ),
    "leaky_relu_scales": Constraint(kind="bool", rule=leaky_relu_scales, what="LeakyRelu scale-ratio limits apply"),
    "pow_square": Constraint(kind="bool", rule=pow_square, what="only x^2 (and x^0.5 in float) as SQUARE/MUL/SQRT"),
    "hard_sigmoid_grid": Constraint(
        kind="bool", rule=hard_sigmoid_grid, what="a quantized HardSigmoid's output grid must end at its clamp (1)"
    ),
    "runtime_weights_dtypes": Constraint(
        kind="strs",
        rule=runtime_weights_dtypes,
        what="precisions when input 1 (weights / right operand) is not constant",
    ),
    "tconv_stride_pairs": Constraint(
        kind="bool", rule=tconv_stride_pairs, what="ConvTranspose strides 1x1, 2x2, or 1x2/2x1 (HxW) when 1 high/wide"
    ),
    "depth_reduce_needs_unit": Constraint(
        kind="bool", rule=depth_reduce_needs_unit, what="channel reduction only when H, W or C is 1"
    ),
    "resize_factors": Constraint(kind="ints", rule=resize_factors, what="resize factors (align_corners aware)"),
    "half_pixel_factors": Constraint(kind="ints", rule=half_pixel_factors, what="factors with half-pixel centers"),
    "resize_coord_modes": Constraint(
        kind="strs", rule=resize_coord_modes, what="Resize coordinate_transformation_mode values supported"
    ),
    "slice_step_axes": Constraint(kind="strs", rule=slice_step_axes, what="axes (N/H/W/C) where a step != 1 is ok"),
    "inputs_max": Constraint(kind="int", rule=inputs_max, what="most inputs"),
    "outputs_max": Constraint(kind="int", rule=outputs_max, what="most outputs"),
    "transpose_axis_product_max": Constraint(
        kind="int", rule=transpose_axis_product_max, what="largest product of rank-2 axes moved by a transpose"
    ),
    "pad_nonnegative": Constraint(kind="bool", rule=pad_nonnegative, what="pads must be >= 0"),
    "split_equal": Constraint(kind="bool", rule=split_equal, what="Split only into equal parts (TFLite SPLIT)"),
    "weight_abs_sum_max": Constraint(
        kind="int", rule=weight_abs_sum_max, what="largest per-output sum of |int8 weight - zero point|"
    ),
    "reduced_axis_max": Constraint(kind="int", rule=reduced_axis_max, what="largest size of a reduced axis"),
    "softmax_rows_max": Constraint(kind="int", rule=softmax_rows_max, what="largest H x W of a softmax input"),
    "channel_reduce_multiple": Constraint(
        kind="int", rule=channel_reduce_multiple, what="a channel reduction needs channels % this == 0"
    ),
    "equal_dilation": Constraint(kind="bool", rule=equal_dilation, what="same dilation along height and width"),
    "pads_same_or_none": Constraint(
        kind="bool", rule=pads_same_or_none, what="pads none or exactly TFLite SAME (else a separate PAD op)"
    ),
    "depth_axis_max": Constraint(
        kind="int", rule=depth_axis_max, what="only along the channel axis, at most this deep"
    ),
    "batch_axis_untouched": Constraint(
        kind="bool", rule=batch_axis_untouched, what="no reduce/split/pad/transpose across axis 0 (the batch)"
    ),
    "pad_value_zero": Constraint(kind="bool", rule=pad_value_zero, what="constant Pad only with 0 (TFLite PAD)"),
    # --- generic rules ---
    "spatial_dims": Constraint(kind="ints", rule=spatial_dims, what="spatial dims a Conv/pool may have (2 = 2-D)"),
    "auto_pad_modes": Constraint(kind="strs", rule=auto_pad_modes, what="auto_pad values supported"),
    "width_max": Constraint(kind="int", rule=width_max, what="largest last dimension of an activation"),
    "elements_max": Constraint(kind="int", rule=elements_max, what="largest element count of an activation"),
    "input_rank": Constraint(kind="ints", rule=input_rank, what="ranks input 0 may have"),
}

GENERIC_RULES: dict[str, Callable[..., Verdict]] = {
    "op_not_listed": op_not_listed,
    "op_unsupported": op_unsupported,
    "precision": precision,
}

# Variants select a sub-table of an op's spec (e.g. [ops.Conv.depthwise]): name -> one-line meaning.
VARIANTS: dict[str, str] = {
    "depthwise": "Conv with group == input channels (TFLite DEPTHWISE_CONV_2D)",
    "nearest": "Resize with mode='nearest'",
    "linear": "Resize with mode='linear' (bilinear)",
    "relu6": "Clip with min 0 and max 6 (TFLite RELU6)",
    "const_divisor": "ONNX Div by a constant (a TFLite converter writes MUL by the reciprocal)",
    "unequal_split": "ONNX Split into unequal parts (edgecnn export writes one SLICE per part)",
}

_FIX_KINDS: dict[str, FixKind] = {
    "op_not_listed": FixKind.REPLACE_OP, "op_unsupported": FixKind.REPLACE_OP, "precision": FixKind.QUANTIZE,
    "dtypes": FixKind.QUANTIZE, "kernel_max": FixKind.CHANGE_KERNEL, "kernel_area_max": FixKind.CHANGE_KERNEL,
    "stride_max": FixKind.CHANGE_KERNEL, "strides_allowed": FixKind.CHANGE_KERNEL,
    "dilation_max": FixKind.CHANGE_KERNEL, "dilated_kernel_h_max": FixKind.CHANGE_KERNEL,
    "dilated_kernel_area_max": FixKind.CHANGE_KERNEL, "pad_max": FixKind.CHANGE_KERNEL,
    "rank_max": FixKind.CHANGE_SHAPE, "dim_max": FixKind.CHANGE_SHAPE, "batch_max": FixKind.CHANGE_SHAPE,
    "channels_max": FixKind.CHANGE_SHAPE, "innermost_nonunit_max": FixKind.CHANGE_SHAPE,
    "ceil_mode": FixKind.CHANGE_ATTRIBUTE, "grouped": FixKind.REPLACE_OP, "depth_multiplier_max": FixKind.REPLACE_OP,
    "weights_const": FixKind.CHANGE_ATTRIBUTE, "axes_spatial_only": FixKind.CHANGE_ATTRIBUTE,
    "keepdims": FixKind.CHANGE_ATTRIBUTE, "softmax_axis": FixKind.CHANGE_ATTRIBUTE,
    "resize_modes": FixKind.CHANGE_ATTRIBUTE, "resize_scales": FixKind.CHANGE_SHAPE,
    "pad_spatial_only": FixKind.CHANGE_ATTRIBUTE, "pad_modes": FixKind.CHANGE_ATTRIBUTE,
    "clip_relu_only": FixKind.CHANGE_ATTRIBUTE, "static_shapes": FixKind.CHANGE_SHAPE,
    "large_stride_valid_only": FixKind.CHANGE_KERNEL, "padded_kernel_max": FixKind.CHANGE_KERNEL,
    "kernel_h_max": FixKind.CHANGE_KERNEL, "unit_kernel_stride": FixKind.CHANGE_KERNEL,
    "quant_match": FixKind.QUANTIZE, "scale_ratio_range": FixKind.QUANTIZE,
    "product_scale_ratio_range": FixKind.QUANTIZE, "leaky_relu_scales": FixKind.QUANTIZE,
    "hard_sigmoid_grid": FixKind.QUANTIZE, "pow_square": FixKind.REPLACE_OP,
    "tconv_stride_pairs": FixKind.CHANGE_KERNEL, "runtime_weights_dtypes": FixKind.QUANTIZE,
    "depth_reduce_needs_unit": FixKind.CHANGE_ATTRIBUTE, "resize_factors": FixKind.CHANGE_SHAPE,
    "half_pixel_factors": FixKind.CHANGE_ATTRIBUTE, "resize_coord_modes": FixKind.CHANGE_ATTRIBUTE, "slice_step_axes": FixKind.CHANGE_ATTRIBUTE,
    "inputs_max": FixKind.CHANGE_SHAPE, "outputs_max": FixKind.CHANGE_SHAPE,
    "transpose_axis_product_max": FixKind.CHANGE_SHAPE, "pad_nonnegative": FixKind.CHANGE_ATTRIBUTE,
    "split_equal": FixKind.CHANGE_SHAPE, "pad_value_zero": FixKind.CHANGE_ATTRIBUTE,
    "batch_axis_untouched": FixKind.CHANGE_SHAPE, "depth_axis_max": FixKind.CHANGE_SHAPE,
    "pads_same_or_none": FixKind.CHANGE_KERNEL, "weight_abs_sum_max": FixKind.CHANGE_KERNEL,
    "channel_reduce_multiple": FixKind.CHANGE_SHAPE, "equal_dilation": FixKind.CHANGE_KERNEL,
    "reduced_axis_max": FixKind.CHANGE_SHAPE, "softmax_rows_max": FixKind.CHANGE_SHAPE,
    "spatial_dims": FixKind.CHANGE_SHAPE, "auto_pad_modes": FixKind.CHANGE_ATTRIBUTE, "width_max": FixKind.CHANGE_SHAPE,
    "elements_max": FixKind.CHANGE_SHAPE, "input_rank": FixKind.CHANGE_SHAPE,
}  # fmt: skip

# Common substitutions an engineer makes when an op is missing on an accelerator.
REPLACEMENTS: dict[str, str] = {
    "Gelu": "Relu or HardSwish",
    "Elu": "Relu",
    "Selu": "Relu",
    "Mish": "HardSwish",
    "Softplus": "Relu",
    "Erf": "a HardSwish-based activation",
    "LayerNormalization": "BatchNormalization folded into the preceding Conv",
    "InstanceNormalization": "BatchNormalization folded into the preceding Conv",
    "Upsample": "Resize",
    "GlobalMaxPool": "GlobalAveragePool",
    "ConvTranspose": "Resize(nearest) + Conv",
    "Gemm": "a 1x1 Conv",
    "MatMul": "a 1x1 Conv",
    "Sigmoid": "HardSigmoid",
    "Tanh": "Clip or HardSigmoid",
    "Div": "Mul by the reciprocal",
    "Softmax": "post-processing on the CPU (argmax needs no softmax)",
    "BatchNormalization": "BatchNormalization folded into the preceding Conv (edgecnn quantize folds it)",
}


def rule_docs() -> list[tuple[str, str, str, str]]:
    """(key, value kind, message template, fix template) for every rule, generic first; for the docs page."""
    from edgecnn.check.no_builtin import RULE, no_tflite_builtin  # it builds on this module's types

    out = [(name, "-", *_texts(fn)) for name, fn in GENERIC_RULES.items()]
    out.append((RULE, "-", *_texts(no_tflite_builtin)))  # TFLite targets; its table is edgecnn.check.no_builtin
    out += [(key, c.kind, *_texts(c.rule)) for key, c in CONSTRAINTS.items()]
    return out


def variant_of(f: NodeFacts) -> str | None:
    """The variant sub-table that applies to this node, if any."""
    if f.depthwise:
        return "depthwise"
    if f.op_type == "Resize":
        mode = str(f.attrs.get("mode", "nearest"))
        return "nearest" if mode == "nearest" else "linear" if mode == "linear" else None
    if f.op_type == "Clip" and f.attrs.get("clip_min") == 0.0 and f.attrs.get("clip_max") == 6.0:
        return "relu6"
    if f.op_type == "Div" and "tflite_builtin" not in f.attrs and len(f.const_inputs) > 1 and f.const_inputs[1]:
        return "const_divisor"
    if f.op_type == "Split" and "tflite_builtin" not in f.attrs and _split_sizes(f) and len(set(_split_sizes(f))) > 1:
        return "unequal_split"
    return None
