"""export(): ONNX (float or QDQ) -> TFLite / OpenVINO IR / ONNX, verified on the runtime that ships it.

Order of work: load and validate (fixed shapes), quantize first when asked for INT8 on a float model
(``--calib``, with the target's scheme), check that a QDQ model's scales fit the target's scheme, convert,
run parity on the exported file (LiteRT, OpenVINO or ONNX Runtime) against the ONNX model that was converted
(ONNX Runtime) on the evaluation images, then publish the file. Nothing is written unless every step passed:
outputs are built in temporary files beside the destination and renamed at the end.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from edgecnn.drift.metrics import score_width
from edgecnn.errors import BadInputError, CheckFailedError, DataError
from edgecnn.fsutil import check_output_path, save_onnx, temp_dir
from edgecnn.graph.load import LoadedModel, graph_inputs, load_model
from edgecnn.quantize.params import QuantScheme

if TYPE_CHECKING:
    from edgecnn.export.vela import VelaReport

SCHEMA_VERSION = 1
REPO_EVAL = Path(__file__).resolve().parents[2] / "calibration_data" / "eval"
RANDOM_PARITY_SAMPLES = 32
DEFAULT_MIN_AGREEMENT = 99.5  # % top-1, the bar for INT8 TFLite vs its QDQ source
# Default minimum SQNR of the export vs the ONNX model it was converted from (same arithmetic: only kernel
# rounding differs), and, for `--to onnx` with a precision change, vs the float model (quantization noise).
DEFAULT_MIN_SQNR_DB = {"float32": 40.0, "float16": 25.0, "int8": 25.0}
DEFAULT_MIN_SQNR_CHANGED_DB = {"float16": 25.0, "int8": 15.0}
# When every reference output value is near zero on the parity inputs (within NEAR_ZERO x the tolerance: a text
# detector's probability map on random inputs, ~1e-5), the SQNR of two correct files only measures the float
# rounding of the reference's own kernels (ONNX Runtime's Sigmoid is accurate to ~1e-7 absolute, not relative):
# PP-OCRv5 det exported at 27.4 dB with a max abs error of 1.8e-7 to TFLite and OpenVINO alike. There an export
# no output value of which is further than this absolute tolerance from the reference passes the SQNR floor.
DEFAULT_ATOL = {"float32": 1e-5, "float16": 1e-4, "int8": 1e-3}
NEAR_ZERO = 100.0
_PRECISIONS = ("auto", "float32", "float16", "int8")
Runner = Callable[[np.ndarray], list[np.ndarray]]


class Destination(StrEnum):
    TFLITE = "tflite"
    OPENVINO = "openvino"
    ONNX = "onnx"


RUNTIME_OF = {Destination.TFLITE: "litert", Destination.OPENVINO: "openvino", Destination.ONNX: "ort"}
SUFFIX_OF = {Destination.TFLITE: ".tflite", Destination.OPENVINO: ".xml", Destination.ONNX: ".onnx"}


@dataclass(frozen=True, kw_only=True)
class ExportOptions:
    to: Destination
    precision: str = "auto"  # auto | float32 | float16 | int8
    target: str | None = None  # target spec name or TOML path
    io_dtype: str | None = None  # TFLite I/O; default from the target (int8 for int8-only NPUs) else float32
    calib: Path | None = None
    samples: int | None = None
    method: str = "minmax"
    preprocess: Path | None = None
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    data: Path | None = None  # parity images; default: the bundled eval set when it fits the model
    # the float model a QDQ source was quantized from (the model itself when the export quantizes first): parity
    # then also accepts an export as close to it as the source is (FLOAT_MARGIN_DB)
    float_reference: Path | None = None
    parity_samples: int | None = None
    min_agreement: float = DEFAULT_MIN_AGREEMENT
    min_sqnr_db: float | None = None  # default per precision (DEFAULT_MIN_SQNR_DB)
    parity: bool = True
    threads: int = 2
    vela_accelerator: str | None = None


@dataclass(frozen=True, kw_only=True)
class Parity:
    runtime: str  # where the export ran
    reference: str  # what it was compared with
    data: str  # the images (or "random inputs")
    samples: int
    top1_agreement: float | None  # % (None when the output is not a class-score vector)
    disagreements: int | None
    near_ties: int | None  # of the disagreements, those whose source margin is within NEAR_TIE x the RMS error
    max_abs_error: float
    sqnr_db: float
    min_agreement: float
    min_sqnr_db: float
    ok: bool
    agreement_gated: bool = True  # False on random inputs (see ParityData.images)
    atol: float = 0.0  # the absolute tolerance that passes the SQNR floor when the outputs are near zero
    max_abs_reference: float = 0.0  # the largest |reference output value|
    # with a float reference: SQNR of the export and of its source against the float model
    float_sqnr_db: float | None = None
    source_float_sqnr_db: float | None = None
    float_top1_agreement: float | None = None  # % of images where the export's top-1 is the float model's
    source_float_top1_agreement: float | None = None
    outputs: int = 1  # sqnr_db is the worst output's (each output judged on its own scale)

    @property
    def close_to_float(self) -> bool:
        """The export is within FLOAT_MARGIN_DB of its source's SQNR against the float model."""
        return within_float_margin(self.float_sqnr_db, self.source_float_sqnr_db)

    @property
    def within_atol(self) -> bool:
        """Below the SQNR floor, but the outputs are near zero (within NEAR_ZERO x ``atol``) and no value is further
        from the reference than ``atol``."""
        return within_atol(self.max_abs_error, self.max_abs_reference, self.atol) and self.sqnr_db < self.min_sqnr_db

    @property
    def atol_note(self) -> str:
        """Why an export below the SQNR floor passed on absolute error, or empty."""
        if not self.within_atol:
            return ""
        return f"within the absolute tolerance {self.atol:.2g}: the outputs are near zero on these inputs"

    @property
    def agreement_limit(self) -> str:
        ties = f"{self.near_ties} near-tie(s) not counted; " if self.near_ties else ""
        return ties + (f"min {self.min_agreement}%" if self.agreement_gated else "not gated on random inputs")

    def summary(self) -> str:
        agree = (
            f"top-1 agreement {self.top1_agreement:.2f}% ({self.agreement_limit}), "
            if self.top1_agreement is not None
            else ""
        )
        vs_float = (
            f"; against the float model {self.float_sqnr_db:.1f} dB, the source {self.source_float_sqnr_db:.1f} dB"
            if self.float_sqnr_db is not None and self.source_float_sqnr_db is not None
            else ""
        )
        if self.float_top1_agreement is not None and self.source_float_top1_agreement is not None:
            vs_float += (
                f", top-1 as the float model's {self.float_top1_agreement:.2f}% "
                f"(the source {self.source_float_top1_agreement:.2f}%)"
            )
        atol = f" ({self.atol_note})" if self.atol_note else ""
        return (
            f"{agree}SQNR {self.sqnr_db:.1f} dB{f' (the worst of {self.outputs} outputs)' if self.outputs > 1 else ''} "
            f"(min {self.min_sqnr_db}), max abs error {self.max_abs_error:.4g}"
            f"{atol} over {self.samples} {self.data} ({self.runtime} vs {self.reference}){vs_float}"
        )


@dataclass(frozen=True, kw_only=True)
class ExportResult:
    source: str
    output: str
    destination: str
    precision: str
    io_dtype: str
    input_layout: str
    target: str | None
    size_bytes: int
    seconds_convert: float
    quantized_first: bool
    files: tuple[str, ...]
    folded: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    parity: Parity | None = None
    vela: VelaReport | None = None  # Vela's report for Ethos-U targets

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


# -- helpers ------------------------------------------------------------------------------------------
def has_qdq(model: onnx.ModelProto) -> bool:
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)


def _init_array(model: onnx.ModelProto, name: str) -> np.ndarray | None:
    for t in model.graph.initializer:
        if t.name == name:
            return onnx.numpy_helper.to_array(t)
    for n in model.graph.node:
        if n.op_type == "Constant" and n.output[0] == name:
            return onnx.numpy_helper.to_array(n.attribute[0].t)
    return None


# Parity: a top-1 flip counts against the agreement only when the source preferred its class by more than this
# many times the RMS error of the scores (per element, over the parity set): below that, the same rounding noise
# that gives the SQNR decides a near-tie either way (a PP-LCNet orientation export for Ethos-U at 26 dB flipped
# one of 8 images).
NEAR_TIE = 3.0
# Parity with a float reference: the export may be this much further from the float model than its INT8 source
# (PP-OCRv4 rec for Ethos-U: TFLite 12.8 dB and the QDQ source 13.7 dB against float, 18.1 dB between them).
FLOAT_MARGIN_DB = 1.0


def within_atol(max_err: float, max_ref: float, atol: float) -> bool:
    return atol > 0.0 and max_ref <= NEAR_ZERO * atol and max_err <= atol


def within_float_margin(export_db: float | None, source_db: float | None) -> bool:
    return export_db is not None and source_db is not None and export_db >= source_db - FLOAT_MARGIN_DB


FILTER_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})


def check_scheme(model: onnx.ModelProto, scheme: QuantScheme, target: str) -> None:
    """BadInputError naming the node when a QDQ model's quantization cannot be represented on ``target``
    (per-channel weights for a per-tensor target, asymmetric filters for a symmetric one). uint8 activations
    are representable as int8 (zero point - 128, same scale: the same real values), so they pass."""
    inits = {t.name for t in model.graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    problems: list[str] = []
    for n in model.graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in inits:  # a weight
            users = ", ".join(f"'{c.name}' ({c.op_type})" for c in consumers.get(n.output[0], [])) or f"'{n.name}'"
            scale = _init_array(model, n.input[1])
            if scale is not None and scale.size > 1 and not scheme.weights_per_channel:
                problems.append(f"node {users} has per-channel weight scales ({scale.size} channels)")
            zp = _init_array(model, n.input[2]) if len(n.input) > 2 and n.input[2] else None
            # TFLite's int8 spec wants zero point 0 for filters (Conv, FullyConnected); an Add/Mul constant is an
            # ordinary int8 operand with its own zero point (PP-LCNet's dropout-scale Mul, a MatMul's bias Add)
            filters = any(c.op_type in FILTER_OPS for c in consumers.get(n.output[0], []))
            if zp is not None and scheme.weights_symmetric and filters and np.any(zp != 0):
                problems.append(f"node {users} has asymmetric weights (zero point != 0)")
    if problems:
        raise BadInputError(
            f"the QDQ model's quantization cannot be represented on {target} ({scheme.describe()}): "
            + "; ".join(problems[:3])
            + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
            + f"; re-quantize the float model with `edgecnn quantize --target {target}` or `export --calib DIR`"
        )


def _preprocess_of(model: onnx.ModelProto) -> dict[str, Any] | None:
    for p in model.metadata_props:
        if p.key == "edgecnn.preprocess" and p.value:
            try:
                d = json.loads(p.value)
            except json.JSONDecodeError:
                return None
            return d or None
    return None


# -- parity data --------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class ParityData:
    label: str
    count: int
    batches: Callable[[], Iterator[np.ndarray]]  # NCHW (the ONNX model's input), one sample per batch
    # images the model is meant for; random inputs put a classifier's scores near ties, where any rounding
    # flips the top-1, so on them the agreement is reported and SQNR alone gates
    images: bool = True


def parity_data(
    loaded: LoadedModel,
    data: Path | None,
    preprocess: Path | None,
    samples: int | None,
    calib: Path | None = None,
) -> ParityData:
    """``--data`` (an error when it does not fit), else the ``--calib`` images, else the bundled eval set when it
    fits, else random inputs."""
    from edgecnn.preprocess import find_spec
    from edgecnn.quantize.dataset import ImageDataset

    # the user's own images before the bundled sample set, which fits any 1x3x32x32 model by shape alone
    candidates = (
        [data] if data is not None else [*([calib] if calib else []), *([REPO_EVAL] if REPO_EVAL.is_dir() else [])]
    )
    for d in candidates:
        try:
            ds = ImageDataset.open(d, find_spec(d, preprocess))
            if samples is not None and samples < len(ds):  # more than the folder holds: all of them
                ds = ImageDataset.open(d, ds.spec, samples, option="--parity-samples")
            ds.check_model(loaded)
        except (DataError, BadInputError):
            if data is not None:
                raise
            continue
        return ParityData(label=f"images of {d}", count=len(ds), batches=lambda ds=ds: ds.batches(1))
    (vi,) = graph_inputs(loaded.model)[:1] or [None]
    if vi is None or len(graph_inputs(loaded.model)) != 1:
        raise DataError(
            f"{loaded.path}: parity feeds images to a model with one input; this one has "
            f"{len(graph_inputs(loaded.model))} (or none): export it with --no-parity"
        )
    shape = loaded.input_shapes[vi.name]
    n = samples or RANDOM_PARITY_SAMPLES

    def rand() -> Iterator[np.ndarray]:
        rng = np.random.default_rng(0)
        for _ in range(n):
            yield rng.standard_normal(shape).astype(np.float32)

    return ParityData(
        label="random inputs (no evaluation images fit the model; --data gives some)",
        count=n,
        batches=rand,
        images=False,
    )


def measure_parity(
    reference: Runner,
    candidate: Runner,
    data: ParityData,
    *,
    runtime: str,
    ref_name: str,
    min_agreement: float,
    min_sqnr: float,
    float_model: Runner | None = None,
    atol: float = 0.0,
) -> Parity:
    """The candidate against the reference on ``data``. With ``float_model`` (the float model an INT8 reference
    was quantized from), an export whose SQNR against the float model is within FLOAT_MARGIN_DB of the
    reference's also passes the SQNR floor: two correct INT8 implementations of a deep model differ by their
    rounding, amplified layer after layer, while a conversion error moves the export away from the float model.
    So does an export no output value of which is further from the reference than ``atol`` when the reference's
    outputs are all near zero (see DEFAULT_ATOL).
    Likewise for top-1: an export that misses the float model's class on at most one image more than the
    reference does passes the agreement floor."""
    # per output: a detector's boxes (hundreds) would hide its scores (0..1) in one pooled SQNR; the worst counts
    sig: list[float] = []
    noise: list[float] = []
    fsig: list[float] = []
    fnoise_ref: list[float] = []
    fnoise_cand: list[float] = []
    noise0 = 0.0
    fagree_ref = fagree_cand = 0  # top-1 agreement with the float model
    max_err = max_ref = 0.0
    agree = total = n0 = 0
    margins: list[float] = []  # per flip: how much the source preferred its class over the one the export chose
    classify = True
    for x in data.batches():
        ref = [np.asarray(r, np.float64) for r in reference(x)]
        got = [np.asarray(g, np.float64) for g in candidate(x)]
        if not sig:
            sig, noise = [0.0] * len(ref), [0.0] * len(ref)
            fsig, fnoise_ref, fnoise_cand = [0.0] * len(ref), [0.0] * len(ref), [0.0] * len(ref)
        for k, (r, g) in enumerate(zip(ref, got, strict=True)):
            g = g.reshape(r.shape)
            sig[k] += float(np.sum(r * r))
            noise[k] += float(np.sum((r - g) ** 2))
            max_err = max(max_err, float(np.max(np.abs(r - g))) if r.size else 0.0)
            max_ref = max(max_ref, float(np.max(np.abs(r))) if r.size else 0.0)
        r0, g0 = ref[0].reshape(ref[0].shape[0], -1), got[0].reshape(ref[0].shape[0], -1)
        if float_model is not None:
            fouts = [np.asarray(f, np.float64).reshape(r.shape) for f, r in zip(float_model(x), ref, strict=True)]
            for k, (f, r, g) in enumerate(zip(fouts, ref, got, strict=True)):
                fsig[k] += float(np.sum(f * f))
                fnoise_ref[k] += float(np.sum((f - r) ** 2))
                fnoise_cand[k] += float(np.sum((f - g.reshape(r.shape)) ** 2))
            fa = np.argmax(fouts[0].reshape(r0.shape[0], -1), 1)
            fagree_ref += int(np.sum(fa == np.argmax(r0, 1)))
            fagree_cand += int(np.sum(fa == np.argmax(g0, 1)))
        if score_width(ref[0].shape) is None:  # a feature map, boxes, a mask: SQNR only
            classify = False
        noise0 += float(np.sum((r0 - g0) ** 2))
        n0 += r0.size
        a, b = np.argmax(r0, 1), np.argmax(g0, 1)
        agree += int(np.sum(a == b))
        total += r0.shape[0]
        margins += [float(r0[i, a[i]] - r0[i, b[i]]) for i in np.flatnonzero(a != b)]
    per_output = [_db(a, b) for a, b in zip(sig, noise, strict=True)] or [_db(0.0, 0.0)]
    worst = int(np.argmin(per_output))
    sqnr = per_output[worst]
    top1 = 100.0 * agree / max(total, 1) if classify else None
    # a flip whose margin is within the scores' own noise is a near-tie any rounding decides; one beyond it is not
    tie = NEAR_TIE * float(np.sqrt(noise0 / max(n0, 1)))
    near = sum(m <= tie for m in margins) if classify else None
    gated = 100.0 * (agree + (near or 0)) / max(total, 1)
    vs_float: list[float | None] = [None, None]
    if float_model is not None and fsig:  # the output whose export loses the most against its source
        pairs = [(_db(a, c), _db(a, r)) for a, r, c in zip(fsig, fnoise_ref, fnoise_cand, strict=True)]
        vs_float = list(min(pairs, key=lambda p: p[0] - p[1]))
    # with the float model, top-1 too: the export may miss the float model's class on at most one image more
    # than its source does
    agrees_like_source = float_model is not None and fagree_cand >= fagree_ref - 1
    ok = (sqnr >= min_sqnr or within_atol(max_err, max_ref, atol) or within_float_margin(*vs_float)) and (
        top1 is None or gated >= min_agreement or agrees_like_source or not data.images
    )
    return Parity(
        runtime=runtime,
        reference=ref_name,
        data=data.label,
        samples=total,
        top1_agreement=top1,
        disagreements=(total - agree) if classify else None,
        near_ties=near,
        max_abs_error=max_err,
        sqnr_db=sqnr,
        min_agreement=min_agreement,
        min_sqnr_db=min_sqnr,
        ok=ok,
        agreement_gated=data.images,
        atol=atol,
        max_abs_reference=max_ref,
        float_sqnr_db=vs_float[0],
        source_float_sqnr_db=vs_float[1],
        outputs=len(per_output),
        float_top1_agreement=100.0 * fagree_cand / max(total, 1) if float_model is not None and classify else None,
        source_float_top1_agreement=100.0 * fagree_ref / max(total, 1)
        if float_model is not None and classify
        else None,
    )


def _db(signal: float, noise: float) -> float:
    return 999.0 if noise == 0 else min(999.0, 10.0 * float(np.log10(max(signal, 1e-300) / noise)))


# -- runners: one sample (ONNX layout, float) in, float outputs (ONNX layout) out ----------------------------
def ort_runner(path: Path, threads: int) -> Runner:
    from edgecnn.runtimes import open_session

    sess = open_session("ort", path, threads=threads)
    name = sess.inputs()[0].name
    return lambda x: sess.run({name: x})


def openvino_runner(path: Path, threads: int) -> Runner:
    from edgecnn.runtimes import open_session

    sess = open_session("openvino", path, threads=threads)
    name = sess.inputs()[0].name
    return lambda x: sess.run({name: x})


def litert_runner(path: Path, threads: int, onnx_outputs: list[tuple[int, ...]]) -> Runner:
    """A ``.tflite`` file as it ships: the input goes in the layout its metadata says (NHWC for images),
    quantized when its I/O is integer; outputs are dequantized and given the ONNX shapes (the converter keeps
    outputs in the ONNX order; only the rank may differ, e.g. [N, C] vs [N, C, 1, 1])."""
    from edgecnn.graph.artifact import from_output, image_input, open_artifact, to_input
    from edgecnn.runtimes import open_session

    art = open_artifact(path)
    tin = image_input(art)
    sess = open_session("litert", path, threads=threads)

    def run(x: np.ndarray) -> list[np.ndarray]:
        outs = sess.run({tin.name: to_input(onnx_to_tflite_layout(x, tin.shape, art.input_layout), tin)})
        # a dynamic dimension of the ONNX output (0 here) is left to measure_parity, which reshapes each output
        # to the reference's
        return [
            from_output(y, t).reshape(want) if all(d > 0 for d in want) else from_output(y, t)
            for y, t, want in zip(outs, art.outputs, onnx_outputs, strict=True)
        ]

    return run


def tflite_input_perm(
    onnx_shape: tuple[int, ...], tflite_shape: tuple[int, ...], layout: str
) -> tuple[int, ...] | None:
    """How an input in the ONNX model's layout becomes the TFLite input: (0, 2, 3, 1) where the export moved the
    channels last (``layout`` NHWC, a 4-D input), None where the ONNX model already took NHWC (its input shape is
    the TFLite one: tf2onnx exports) or the layouts are the same."""
    if layout != "NHWC" or len(onnx_shape) != 4:
        return None
    moved = (onnx_shape[0], onnx_shape[2], onnx_shape[3], onnx_shape[1])
    if tuple(onnx_shape[1:]) == tuple(tflite_shape[1:]) and tuple(moved[1:]) != tuple(tflite_shape[1:]):
        return None
    return (0, 2, 3, 1)


VELA_TARGETS = ("ethos-u55", "ethos-u65")  # export runs Vela for these and writes its file beside -o
OPENVINO_WEIGHTS = "the OpenVINO weights beside -o"
VELA_FILE = "Vela's compiled file beside -o"


def side_outputs(output: Path, to: Destination, target: str | None) -> dict[str, Path]:
    """The files an export writes beside ``output`` (description -> path): OpenVINO's ``.bin`` for an ``.xml``,
    Vela's ``NAME_vela.tflite`` for an Ethos-U target. The CLI guards them like ``-o`` itself (an input of the
    same name was overwritten)."""
    out: dict[str, Path] = {}
    if to is Destination.OPENVINO:
        out[OPENVINO_WEIGHTS] = output.with_suffix(".bin")
    if to is Destination.TFLITE and target in VELA_TARGETS:
        out[VELA_FILE] = output.with_name(f"{output.stem}_vela.tflite")
    return out


def onnx_to_tflite_layout(x: np.ndarray, tflite_shape: tuple[int, ...], layout: str) -> np.ndarray:
    """A sample in the ONNX model's input layout, in the TFLite input's (``tflite_input_perm``)."""
    perm = tflite_input_perm(tuple(x.shape), tflite_shape, layout)
    return x if perm is None else x.transpose(perm)


def tflite_input_layout(path: Path) -> str:
    """The layout a ``.tflite`` file's input wants (its PreprocessSpec metadata, else NHWC for 4-D)."""
    from edgecnn.graph.artifact import open_artifact

    return open_artifact(path).input_layout


# -- the export ----------------------------------------------------------------------------------------
def _resolve_precision(opts: ExportOptions, qdq: bool) -> str:
    if opts.precision not in _PRECISIONS:
        raise BadInputError(f"--precision {opts.precision!r}; valid values are {', '.join(_PRECISIONS)}")
    if opts.precision == "auto":
        return "int8" if qdq or opts.calib is not None else "float32"
    if opts.precision in ("float32", "float16") and qdq:
        raise BadInputError(
            f"--precision {opts.precision} on a quantized (QDQ) model; export the float model instead, or use --precision int8"
        )
    return opts.precision


def _target(opts: ExportOptions) -> Any:
    if opts.target is None:
        return None
    from edgecnn.check.spec import load_target

    spec = load_target(opts.target)
    want = {Destination.TFLITE: "tflite", Destination.OPENVINO: "openvino", Destination.ONNX: "onnx"}[opts.to]
    if str(spec.format) != want:
        raise BadInputError(
            f"--target {spec.name} consumes {spec.format} models; use --to {spec.format} for it (got --to {opts.to})"
        )
    return spec


def _scheme(opts: ExportOptions, spec: Any) -> QuantScheme:
    from dataclasses import replace

    from edgecnn.quantize.params import RUNTIME_SCHEMES

    if spec is not None:
        if spec.quant is None:
            raise BadInputError(f"--target {spec.name} runs float only; use --precision float32 or float16")
        return replace(spec.quant, quantize_outputs=spec.requires_quantization)
    return RUNTIME_SCHEMES[RUNTIME_OF[opts.to]]


def export_model(
    model_path: Path, output: Path, opts: ExportOptions, *, progress: Callable[[str], None] | None = None
) -> ExportResult:
    """Convert ``model_path`` per ``opts``, verify it (parity), and write ``output`` (+ companions)."""
    say = progress or (lambda _s: None)
    output = check_output_path(Path(output))
    want_suffix = SUFFIX_OF[opts.to]
    if output.suffix.lower() != want_suffix:
        raise BadInputError(
            f"-o {output}: --to {opts.to} writes a {want_suffix} file; give a path ending in {want_suffix}"
        )
    from edgecnn.graph.artifact import ModelFormat, format_of

    if format_of(model_path) is not ModelFormat.ONNX:
        raise BadInputError(f"{model_path}: is a {format_of(model_path)} model; export reads ONNX (float or QDQ)")
    loaded = load_model(model_path, opts.input_shapes or None)
    qdq = has_qdq(loaded.model)
    if qdq and opts.calib is not None:
        raise BadInputError(
            f"{model_path}: already quantized (QDQ); --calib {opts.calib} would be ignored: drop --calib, or give "
            "the float model"
        )
    precision = _resolve_precision(opts, qdq)
    spec = _target(opts)
    if spec is not None and spec.requires_quantization and precision != "int8":
        raise BadInputError(
            f"--target {spec.name} computes integer only ({', '.join(map(str, spec.precisions))}); "
            "export INT8: a QDQ model from `edgecnn quantize`, or --calib DIR"
        )
    scheme = _scheme(opts, spec) if precision == "int8" else None
    if scheme is not None and opts.io_dtype in ("int8", "uint8"):
        from dataclasses import replace

        scheme = replace(scheme, quantize_outputs=True)  # integer outputs need quantized outputs (--calib)
    with temp_dir("export") as work:
        source_path = loaded.path
        model = loaded.model
        quantized_first = False
        if precision == "int8" and not qdq:
            if opts.calib is None:
                raise BadInputError(
                    f"{model_path}: a float model and --precision int8 need calibration images: pass --calib DIR "
                    "(or quantize first with `edgecnn quantize`)"
                )
            model, source_path = _quantize_first(loaded, opts, scheme, work, say)  # type: ignore[arg-type]
            quantized_first = True
        elif precision == "float16" and opts.to is Destination.ONNX:
            model, source_path = _fp16_onnx(loaded, opts, work, say)
        if precision == "int8" and scheme is not None and spec is not None:
            check_scheme(model, scheme, str(opts.target))
        # parity reference: the ONNX that was converted (the QDQ model when quantized first); for an ONNX
        # export the reference is the model the user gave.
        ref_path = loaded.path if opts.to is Destination.ONNX else source_path
        t0 = time.perf_counter()
        say(f"converting to {opts.to}")
        tmp_out = work / f"out{want_suffix}"
        notes: list[str] = []
        folded: tuple[str, ...] = ()
        io_dtype, layout = "float32", "NCHW"
        if opts.to is Destination.TFLITE:
            from edgecnn.export.to_tflite import onnx_to_tflite

            io_dtype = opts.io_dtype or (
                scheme.activation_dtype if spec is not None and spec.requires_quantization and scheme else "float32"
            )
            from edgecnn.export.to_tflite import UnsupportedOpError

            pre = _preprocess_spec(model)
            try:
                exp = onnx_to_tflite(
                    model, precision=precision, io_dtype=io_dtype, base_dir=source_path.parent, preprocess=pre
                )
            except BadInputError as e:  # the converter names the node (or op); the message also names the file
                raise (e if str(model_path) in str(e) else UnsupportedOpError(f"{model_path}: {e}")) from None
            tmp_out.write_bytes(exp.data)
            notes.extend(exp.notes)
            folded = exp.folded
            io_dtype, layout = exp.io_dtype, exp.input_layout
        elif opts.to is Destination.OPENVINO:
            from edgecnn.export.to_openvino import onnx_to_openvino

            onnx_to_openvino(model, tmp_out, precision=precision)
        else:
            save_onnx(model, tmp_out)
        seconds = time.perf_counter() - t0

        parity = None
        if opts.parity:
            say("parity")
            parity = _parity(loaded, ref_path, tmp_out, opts, precision, work)
            if not parity.ok:
                hint = (
                    "; --float-reference FLOAT.onnx (the model it was quantized from) also accepts an export as "
                    "close to it as this QDQ model is"
                    if parity.float_sqnr_db is None and has_qdq(loaded.model) and precision == "int8"
                    else ""
                )
                raise CheckFailedError(
                    f"parity failed for {model_path} -> {output}: {parity.summary()}; nothing was written{hint}"
                )

        vela = None
        files = [output]
        if spec is not None and spec.name in VELA_TARGETS and opts.to is Destination.TFLITE:
            from edgecnn.export.vela import run_vela

            say("Vela")
            vela_out = work / "out_vela.tflite"
            vela = run_vela(tmp_out, vela_out, target=spec.name, accelerator=opts.vela_accelerator)
        # publish: everything passed
        if opts.to is Destination.OPENVINO:
            _publish(tmp_out.with_suffix(".bin"), side_outputs(output, opts.to, None)[OPENVINO_WEIGHTS])
            files.append(output.with_suffix(".bin"))
        size = tmp_out.stat().st_size + (
            output.with_suffix(".bin").stat().st_size if opts.to is Destination.OPENVINO else 0
        )
        if vela is not None:
            final_vela = side_outputs(output, opts.to, spec.name)[VELA_FILE]
            _publish(work / "out_vela.tflite", final_vela)
            files.append(final_vela)
            from dataclasses import replace

            vela = replace(vela, input=str(output), output=str(final_vela))
        _publish(tmp_out, output)
    return ExportResult(
        source=str(model_path),
        output=str(output),
        destination=str(opts.to),
        precision=precision,
        io_dtype=io_dtype,
        input_layout=layout,
        target=spec.name if spec is not None else None,
        size_bytes=size,
        seconds_convert=seconds,
        quantized_first=quantized_first,
        files=tuple(str(f) for f in files),
        folded=tuple(folded),
        notes=tuple(notes),
        parity=parity,
        vela=vela,
    )


def _publish(src: Path, dst: Path) -> None:
    """Move a finished file from the work folder (maybe another filesystem, e.g. a tmpfs /tmp) into place:
    copied to a hidden temporary file beside ``dst``, then renamed, so ``dst`` is never half-written."""
    import shutil

    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()


def _preprocess_spec(model: onnx.ModelProto) -> Any:
    """The PreprocessSpec a quantized model carries (so the TFLite metadata states it too)."""
    from edgecnn.preprocess import spec_from_dict

    d = _preprocess_of(model)
    if not d:
        return None
    try:
        return spec_from_dict(d, Path("<model metadata>"))
    except Exception:  # metadata from another tool: the converter writes its default then
        return None


def _quantize_first(
    loaded: LoadedModel, opts: ExportOptions, scheme: QuantScheme, work: Path, say: Callable[[str], None]
) -> tuple[onnx.ModelProto, Path]:
    from edgecnn.preprocess import find_spec
    from edgecnn.quantize.api import Precision, QuantizeConfig, quantize
    from edgecnn.quantize.dataset import ImageDataset
    from edgecnn.quantize.estimators import parse_method

    assert opts.calib is not None
    say(f"quantizing with {opts.calib}")
    dataset = ImageDataset.open(opts.calib, find_spec(opts.calib, opts.preprocess), opts.samples)
    # For a target: every op it can run in integer, as `quantize --target` writes it (ORT's placement keeps a
    # float tail, and Vela refuses a float HARD_SWISH: "Failed to parse TFLite file" on PP-LCNet). Otherwise
    # the CPU placement (HardSigmoid/HardSwish float between Q/DQ), not the ORT-only integer forms of
    # quantize.qdq.ORT_POLICY, with the grids a .tflite needs (quantize.qdq.TFLITE_CPU_POLICY).
    config = QuantizeConfig(
        precision=Precision.INT8,
        method=parse_method(opts.method),
        scheme=scheme,
        runtime="integer" if opts.target else "tflite-cpu",
    )
    model, _ = quantize(loaded.path, dataset, config, input_shapes=opts.input_shapes or None)
    path = work / "quantized.onnx"
    save_onnx(model, path)
    return model, path


def _fp16_onnx(
    loaded: LoadedModel, opts: ExportOptions, work: Path, say: Callable[[str], None]
) -> tuple[onnx.ModelProto, Path]:
    from edgecnn.quantize.api import Precision, QuantizeConfig, quantize

    say("converting weights to FP16")
    model, _ = quantize(
        loaded.path, None, QuantizeConfig(precision=Precision.FP16), input_shapes=opts.input_shapes or None
    )
    path = work / "fp16.onnx"
    save_onnx(model, path)
    return model, path


def _parity(loaded: LoadedModel, ref_path: Path, out: Path, opts: ExportOptions, precision: str, work: Path) -> Parity:
    data = parity_data(loaded, opts.data, opts.preprocess, opts.parity_samples, opts.calib)
    ref_loaded = loaded if ref_path == loaded.path else load_model(ref_path, opts.input_shapes or None)
    ref = ort_runner(_fixed_copy(ref_loaded, ref_path, work), opts.threads)
    out_shapes = [tuple(d.dim_value for d in o.type.tensor_type.shape.dim) for o in ref_loaded.model.graph.output]
    if opts.to is Destination.TFLITE:
        cand, rt = litert_runner(out, opts.threads, out_shapes), "litert"
    elif opts.to is Destination.OPENVINO:
        cand, rt = openvino_runner(out, opts.threads), "openvino"
    else:
        cand, rt = ort_runner(out, opts.threads), "ort"
    changed = ref_path == loaded.path and precision != "float32" and not has_qdq(loaded.model)
    defaults = DEFAULT_MIN_SQNR_CHANGED_DB if changed else DEFAULT_MIN_SQNR_DB
    min_sqnr = opts.min_sqnr_db if opts.min_sqnr_db is not None else defaults[precision]
    ref_qdq = has_qdq(ref_loaded.model)
    what = "QDQ ONNX" if ref_qdq else "ONNX"
    float_path = loaded.path if ref_path != loaded.path and not has_qdq(loaded.model) else opts.float_reference
    float_model = None
    if float_path is not None and ref_qdq:
        float_loaded = loaded if float_path == loaded.path else load_model(float_path, opts.input_shapes or None)
        float_model = ort_runner(_fixed_copy(float_loaded, float_path, work, "float_reference.onnx"), opts.threads)
    return measure_parity(
        ref,
        cand,
        data,
        runtime=rt,
        ref_name=f"{what} source on ort",
        min_agreement=opts.min_agreement,
        min_sqnr=min_sqnr,
        float_model=float_model,
        atol=DEFAULT_ATOL[precision],
    )


def _fixed_copy(loaded: LoadedModel, path: Path, work: Path, name: str = "reference.onnx") -> Path:
    """The model file ORT should load: as given, unless --input-shape fixed a dynamic dimension (then the
    validated model, whose inputs carry the fixed shape, saved in the work folder)."""
    original = onnx.load(str(path), load_external_data=False)
    from edgecnn.graph.load import dims_of

    if all(all(isinstance(d, int) for d in dims_of(vi)) for vi in graph_inputs(original)):
        return path
    fixed = work / name
    save_onnx(loaded.model, fixed)
    return fixed
