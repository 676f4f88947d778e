"""ONNX node configurations that no TFLite builtin operator computes: on a TFLite target nothing can run them.

A TFLite target runs what a converter writes into the ``.tflite`` file, and the file can only hold builtin
operators (a ``CUSTOM`` op needs a kernel the device does not ship). A node that fails the accelerator's
rules falls back to the TFLite CPU kernels, but only if some builtin computes it; for the configurations
below none does, so ``edgecnn check`` places them UNSUPPORTED on every ``format = "tflite"`` target, whatever
its fallback device, and ``edgecnn export --to tflite`` refuses them too (tests/test_check_no_builtin.py
converts a one-node model of each entry and checks the refusal).

What counts as "no builtin": no TFLite builtin operator performs this operation in this configuration. The
builtins the op maps to (RESIZE_BILINEAR for a linear Resize, AVERAGE_POOL_2D for an AveragePool, ...) have no
option or input for the attribute, and no other builtin performs the same operation with it. The operand may be
reshaped or padded to fit a builtin, as for any op (a 1-D Conv is a CONV_2D over a unit dimension, explicit
pool pads are a PAD before the pool); a different algorithm does not count, however exact: a composition of
several ops (a grouped ConvTranspose as one ConvTranspose per group), changed weights (block-diagonal ones), or
a reshuffle of the data (TensorFlow lowers a dilated pool to SPACE_TO_BATCH_ND + pool + BATCH_TO_SPACE_ND).
Those are rewrites, which the verdict names as the nearest supported form. By the same rule some converter
refusals are NOT here, because a builtin performs them:

- a 3-D Conv is CONV_3D; an odd-size LRN is LOCAL_RESPONSE_NORMALIZATION; LpPool with p=2 is L2_POOL_2D; a
  3-D AveragePool whose window spans at most two dims is AVERAGE_POOL_2D on the tensor transposed and
  reshaped so that those two dims are its H and W;
- a dilated MaxPool (and a MaxPool over up to 6 dims) is REDUCE_WINDOW with reduce_function MAXIMUM and
  window_dilations (LiteRT tflite/kernels/reduce_window.cc; on ai-edge-litert 2.3.0 it equals onnxruntime's
  dilated MaxPool exactly: tests/test_check_no_builtin.py runs it);
- a dilated ConvTranspose is CONV_3D_TRANSPOSE with depth 1 (Conv3DOptions has dilation_{d,h,w}_factor; it
  matches onnxruntime on ai-edge-litert 2.3.0, run by the same test file);
- Pad mode 'edge' with every pad at most 1 is MIRROR_PAD SYMMETRIC (the mirrored element is the edge one;
  equal to onnxruntime for a pad of 1, not of 2, on ai-edge-litert 2.3.0: the same test file).

Grouped ConvTranspose is listed although the schema has STABLEHLO_CONVOLUTION (feature_group_count,
lhs_dilation): LiteRT registers no kernel for it (tflite/kernels/register.cc; the ai-edge-litert 2.3.0
interpreter refuses a model holding one: "Didn't find op for builtin opcode 'STABLEHLO_CONVOLUTION'").

Source: the TFLite flatbuffer schema, tensorflow/compiler/mlir/lite/schema/schema.fbs (``enum BuiltinOperator``
and the ``*Options`` tables), as generated into ``ai_edge_litert.schema_py_generated`` of ai-edge-litert 2.3.0
(210 builtin operators). Each entry lists the schema facts it
rests on (``builtins``: operators that exist, ``absent``: substrings no operator name has, ``options``: every
field of the options tables); tests/test_check_no_builtin.py checks them against the installed schema, so a schema that
grows e.g. a dilation field for Pool2DOptions fails the test instead of leaving a wrong verdict.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from edgecnn.check.rules import FixKind, NodeFacts, Verdict

RULE = "no_tflite_builtin"
LITERT_VERSION = "ai-edge-litert 2.3.0"
SCHEMA_PATH = "tensorflow/compiler/mlir/lite/schema/schema.fbs"
SCHEMA_URL = f"https://github.com/tensorflow/tensorflow/blob/master/{SCHEMA_PATH}"


@dataclass(frozen=True, kw_only=True)
class NoBuiltin:
    """One ONNX configuration with no TFLite builtin, and the schema facts that say so."""

    key: str
    op_types: tuple[str, ...]
    what: str  # the configuration, as the message names it
    schema: str  # why no builtin computes it, in schema names
    nearest: str  # the nearest form a builtin computes
    fix_kind: FixKind
    matches: Callable[[NodeFacts], bool]
    builtins: tuple[str, ...] = ()  # BuiltinOperator names that exist (the op family's builtins)
    absent: tuple[str, ...] = ()  # substrings no BuiltinOperator name contains (e.g. "CUBIC", "ERF")
    options: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (options table, every field it has)

    @property
    def cite(self) -> str:
        tables = ", ".join(["BuiltinOperator", *(t for t, _ in self.options)])
        return f"{SCHEMA_URL} ({LITERT_VERSION}: ai_edge_litert.schema_py_generated), {tables}"


def _attr_int(f: NodeFacts, name: str, default: int) -> int:
    try:
        return int(f.attrs.get(name, default))
    except (TypeError, ValueError):
        return default


def _attr_float(f: NodeFacts, name: str, default: float) -> float:
    try:
        return float(f.attrs.get(name, default))
    except (TypeError, ValueError):
        return default


def _mode(f: NodeFacts, default: str) -> str:
    return str(f.attrs.get("mode", default))


def _downscales(f: NodeFacts) -> bool:
    """An output dimension smaller than the input's (both known): Resize shrinks the tensor somewhere."""
    if not f.in_shapes or not f.out_shapes or len(f.in_shapes[0]) != len(f.out_shapes[0]):
        return False
    return any(0 < o < i for i, o in zip(f.in_shapes[0], f.out_shapes[0], strict=True))


def _pads(f: NodeFacts) -> list[int] | None:
    pads = f.attrs.get("pads_value")
    return [int(p) for p in pads] if isinstance(pads, list) else None


def _pad_edge_beyond_one(f: NodeFacts) -> bool:
    pads = _pads(f)
    return _mode(f, "constant") == "edge" and pads is not None and max(pads, default=0) > 1


def _pad_wrap(f: NodeFacts) -> bool:
    pads = _pads(f)
    return _mode(f, "constant") == "wrap" and pads is not None and max(pads, default=0) > 0


_POOL2D = ("Pool2DOptions", ("padding", "strideW", "strideH", "filterWidth", "filterHeight", "fusedActivationFunction"))
# Every builtin that pads, and the options of those that take any.
_PAD_BUILTINS = ("MIRROR_PAD", "PAD", "PADV2", "STABLEHLO_PAD")
_PAD_OPTIONS = (
    ("MirrorPadOptions", ("mode",)),
    ("StablehloPadOptions", ("edgePaddingLow", "edgePaddingHigh", "interiorPadding")),
)
_REDUCE_WINDOW = ("ReduceWindowOptions", ("reduceFunction",))  # UNSUPPORTED, ADD, MUL, MINIMUM, MAXIMUM, ALL, ANY

TABLE: tuple[NoBuiltin, ...] = (
    NoBuiltin(
        key="Resize.cubic",
        op_types=("Resize",),
        what="Resize with mode 'cubic'",
        schema="TFLite resizes only with RESIZE_BILINEAR and RESIZE_NEAREST_NEIGHBOR; their options are "
        "align_corners and half_pixel_centers",
        nearest="Resize with mode 'linear' (RESIZE_BILINEAR) or 'nearest' (RESIZE_NEAREST_NEIGHBOR)",
        fix_kind=FixKind.CHANGE_ATTRIBUTE,
        matches=lambda f: _mode(f, "nearest") == "cubic",
        builtins=("RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR"),
        absent=("CUBIC",),
        options=(
            ("ResizeBilinearOptions", ("alignCorners", "halfPixelCenters")),
            ("ResizeNearestNeighborOptions", ("alignCorners", "halfPixelCenters")),
        ),
    ),
    NoBuiltin(
        key="Resize.antialias",
        op_types=("Resize",),
        what="a downscaling linear Resize with antialias=1",
        schema="RESIZE_BILINEAR has no antialiasing filter (ResizeBilinearOptions: align_corners, half_pixel_centers)",
        nearest="Resize with antialias=0 (RESIZE_BILINEAR), or an AveragePool before the resize",
        fix_kind=FixKind.CHANGE_ATTRIBUTE,
        matches=lambda f: _mode(f, "nearest") == "linear" and _attr_int(f, "antialias", 0) == 1 and _downscales(f),
        builtins=("RESIZE_BILINEAR",),
        absent=("ANTIALIAS",),
        options=(("ResizeBilinearOptions", ("alignCorners", "halfPixelCenters")),),
    ),
    NoBuiltin(
        key="ConvTranspose.grouped",
        op_types=("ConvTranspose",),
        what="a grouped ConvTranspose (group > 1)",
        schema="TRANSPOSE_CONV and CONV_3D_TRANSPOSE have no group (TransposeConvOptions, Conv3DOptions); "
        "STABLEHLO_CONVOLUTION has feature_group_count but no LiteRT kernel",
        nearest="one ConvTranspose with group=1 per group on a Split of the channels, then Concat (or one "
        "group=1 ConvTranspose with block-diagonal weights)",
        fix_kind=FixKind.REPLACE_OP,
        matches=lambda f: f.group > 1,
        builtins=("TRANSPOSE_CONV", "CONV_3D_TRANSPOSE", "STABLEHLO_CONVOLUTION"),
        absent=("GROUP",),
        options=(
            ("TransposeConvOptions", ("padding", "strideW", "strideH", "fusedActivationFunction", "quantizedBiasType")),
            (
                "Conv3DOptions",
                (
                    "padding",
                    "strideD",
                    "strideW",
                    "strideH",
                    "fusedActivationFunction",
                    "dilationDFactor",
                    "dilationWFactor",
                    "dilationHFactor",
                ),
            ),
        ),
    ),
    NoBuiltin(
        key="AveragePool.dilated",
        op_types=("AveragePool",),
        what="a dilated AveragePool (dilations > 1)",
        schema="AVERAGE_POOL_2D has no dilation (Pool2DOptions) and REDUCE_WINDOW has no mean "
        "(ReduceWindowFunction: ADD, MUL, MINIMUM, MAXIMUM, ALL, ANY)",
        nearest="AveragePool with dilations 1, or a depthwise Conv with weights 1/(kh*kw) and these dilations "
        "(DEPTHWISE_CONV_2D has dilation factors)",
        fix_kind=FixKind.CHANGE_KERNEL,
        matches=lambda f: any(d > 1 for d in f.dilations),
        builtins=("AVERAGE_POOL_2D", "REDUCE_WINDOW"),
        options=(_POOL2D, _REDUCE_WINDOW),
    ),
    NoBuiltin(
        key="AveragePool.3d",
        op_types=("AveragePool",),
        what="an AveragePool whose window spans 3 or more dims",
        schema="TFLite has AVERAGE_POOL_2D only (no AVERAGE_POOL_3D) and REDUCE_WINDOW has no mean",
        nearest="an AveragePool whose window spans at most 2 dims (kernel 1 along the others), as a 2-D "
        "AveragePool on a reshaped tensor (AVERAGE_POOL_2D)",
        fix_kind=FixKind.CHANGE_KERNEL,
        matches=lambda f: sum(1 for k in f.kernel if k > 1) >= 3,
        builtins=("AVERAGE_POOL_2D", "REDUCE_WINDOW"),
        absent=("POOL_3D",),
        options=(_POOL2D, _REDUCE_WINDOW),
    ),
    NoBuiltin(
        key="LpPool.p",
        op_types=("LpPool",),
        what="an LpPool with p other than 2",
        schema="TFLite's only Lp pooling is L2_POOL_2D (p = 2; Pool2DOptions has no p)",
        nearest="LpPool with p=2 (L2_POOL_2D), or MaxPool/AveragePool",
        fix_kind=FixKind.CHANGE_ATTRIBUTE,
        matches=lambda f: _attr_int(f, "p", 2) != 2,
        builtins=("L2_POOL_2D",),
        absent=("LP_POOL",),
        options=(_POOL2D,),
    ),
    NoBuiltin(
        key="MaxPool.indices",
        op_types=("MaxPool",),
        what="a MaxPool with an Indices output",
        schema="MAX_POOL_2D and REDUCE_WINDOW have one output; no builtin returns the argmax of each window",
        nearest="MaxPool with one output (MAX_POOL_2D)",
        fix_kind=FixKind.REPLACE_OP,
        matches=lambda f: len(f.out_shapes) > 1,
        builtins=("MAX_POOL_2D", "REDUCE_WINDOW"),
        absent=("ARGMAX",),
        options=(_POOL2D,),
    ),
    NoBuiltin(
        key="Erf",
        op_types=("Erf",),
        what="an Erf outside an exact GELU chain",
        schema="the schema has no ERF (nor STABLEHLO_ERF); only a whole GELU is a builtin (GELU, GeluOptions: "
        "approximate)",
        nearest="Gelu (opset 20), or the exact GELU chain Div(x, sqrt 2) -> Erf -> Add 1 -> Mul x -> Mul 0.5, "
        "which converters write as one GELU",
        fix_kind=FixKind.REPLACE_OP,
        matches=lambda f: True,
        builtins=("GELU",),
        absent=("ERF",),
        options=(("GeluOptions", ("approximate",)),),
    ),
    NoBuiltin(
        key="LRN.even",
        op_types=("LRN",),
        what="an LRN with an even size",
        schema="LOCAL_RESPONSE_NORMALIZATION sums over channel +- radius (LocalResponseNormalizationOptions: "
        "radius, bias, alpha, beta), a window of 2 * radius + 1 channels: never even",
        nearest="LRN with an odd size (LOCAL_RESPONSE_NORMALIZATION)",
        fix_kind=FixKind.CHANGE_ATTRIBUTE,
        matches=lambda f: _attr_int(f, "size", 1) % 2 == 0,
        builtins=("LOCAL_RESPONSE_NORMALIZATION",),
        options=(("LocalResponseNormalizationOptions", ("radius", "bias", "alpha", "beta")),),
    ),
    NoBuiltin(
        key="Elu.alpha",
        op_types=("Elu",),
        what="an Elu with alpha other than 1",
        schema="ELU takes no options (the schema has no EluOptions): its alpha is 1",
        nearest="Elu with alpha 1 (ELU)",
        fix_kind=FixKind.CHANGE_ATTRIBUTE,
        matches=lambda f: _attr_float(f, "alpha", 1.0) != 1.0,
        builtins=("ELU",),
    ),
    NoBuiltin(
        key="ArgMax.select_last_index",
        op_types=("ArgMax", "ArgMin"),
        what="an ArgMax/ArgMin with select_last_index=1",
        schema="ARG_MAX/ARG_MIN return the first index of the extreme value (ArgMaxOptions, ArgMinOptions: "
        "output_type only)",
        nearest="select_last_index=0 (ARG_MAX/ARG_MIN)",
        fix_kind=FixKind.CHANGE_ATTRIBUTE,
        matches=lambda f: _attr_int(f, "select_last_index", 0) == 1,
        builtins=("ARG_MAX", "ARG_MIN"),
        options=(("ArgMaxOptions", ("outputType",)), ("ArgMinOptions", ("outputType",))),
    ),
    NoBuiltin(
        key="Pad.edge",
        op_types=("Pad",),
        what="a Pad in mode 'edge' by more than 1",
        schema="MIRROR_PAD mirrors (MirrorPadMode: REFLECT, SYMMETRIC) and PAD/PADV2/STABLEHLO_PAD pad with a "
        "constant; SYMMETRIC repeats the edge only for a pad of 1",
        nearest="Pad in mode 'edge' by at most 1 (MIRROR_PAD SYMMETRIC), 'reflect' (MIRROR_PAD REFLECT) or "
        "'constant' (PAD)",
        fix_kind=FixKind.CHANGE_ATTRIBUTE,
        matches=_pad_edge_beyond_one,
        builtins=_PAD_BUILTINS,
        absent=("EDGE", "REPLICATE"),
        options=_PAD_OPTIONS,
    ),
    NoBuiltin(
        key="Pad.wrap",
        op_types=("Pad",),
        what="a Pad in mode 'wrap'",
        schema="MIRROR_PAD mirrors (MirrorPadMode: REFLECT, SYMMETRIC) and PAD/PADV2/STABLEHLO_PAD pad with a "
        "constant; no builtin pads circularly",
        nearest="Pad in mode 'reflect' (MIRROR_PAD REFLECT) or 'constant' (PAD), or a Concat of Slices",
        fix_kind=FixKind.CHANGE_ATTRIBUTE,
        matches=_pad_wrap,
        builtins=_PAD_BUILTINS,
        absent=("WRAP",),
        options=_PAD_OPTIONS,
    ),
)

_BY_OP: dict[str, tuple[NoBuiltin, ...]] = {
    op: tuple(e for e in TABLE if op in e.op_types) for op in {o for e in TABLE for o in e.op_types}
}


def no_builtin_entry(f: NodeFacts) -> NoBuiltin | None:
    """The table entry this node matches (the first), or None. An attribute it cannot read is no match."""
    for e in _BY_OP.get(f.op_type, ()):
        try:
            if e.matches(f):
                return e
        except (TypeError, ValueError):
            continue
    return None


def no_tflite_builtin(f: NodeFacts, e: NoBuiltin) -> Verdict:
    """{label}: cannot run: no TFLite builtin for {what} ({schema}); nearest supported: {nearest}.
    Fix: use {nearest} (`edgecnn export --to tflite` refuses this node too)."""
    return Verdict(
        ok=False,
        rule=RULE,
        reason=f"{f.label}: cannot run: no TFLite builtin for {e.what} ({e.schema}); nearest supported: {e.nearest}",
        fix=f"use {e.nearest} (`edgecnn export --to tflite` refuses this node too)",
        fix_kind=e.fix_kind,
        source=e.cite,
    )
