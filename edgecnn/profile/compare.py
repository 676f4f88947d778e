"""``profile --compare``: two models (FP32 vs INT8, before vs after a change) layer by layer on one runtime,
where time went up or down and why; and the same explanation, without timing, for ``bench --compare``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgecnn.bench.stats import round_ratios, rounds_spread, rounds_verdict
from edgecnn.errors import BadInputError
from edgecnn.profile.core import LayerProfile, Origin, ProfileReport
from edgecnn.profile.mapping import COMPUTE_OPS


@dataclass(frozen=True, kw_only=True)
class LayerDelta:
    layer: str  # ONNX node name (the compute op of a fused kernel), or a category
    op: str
    base_us: float
    other_us: float
    base_precision: str
    other_precision: str
    base_kernel: str
    other_kernel: str
    base_p90_us: float = 0.0  # the base layer's own spread: a slower layer must be slower than this

    @property
    def delta_us(self) -> float:
        return self.other_us - self.base_us


@dataclass(frozen=True, kw_only=True)
class ProfileComparison:
    base: ProfileReport
    other: ProfileReport
    rows: tuple[LayerDelta, ...]  # matched layers, graph order of the base
    categories: tuple[LayerDelta, ...]  # conversions, inserted kernels, unmatched layers, per-call cost
    sentences: tuple[str, ...]

    @property
    def speedup(self) -> float:
        return self.base.e2e_p50_us / self.other.e2e_p50_us if self.other.e2e_p50_us else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "base": self.base.to_dict(),
            "other": self.other.to_dict(),
            "speedup": self.speedup,
            "rows": [{**asdict(r), "delta_us": r.delta_us} for r in self.rows],
            "categories": [{**asdict(r), "delta_us": r.delta_us} for r in self.categories],
            "sentences": list(self.sentences),
        }


def check_same_inputs(
    base: str | Path, other: str | Path, input_shapes: dict[str, tuple[int, ...]] | None = None
) -> None:
    """Two models are comparable layer by layer only when they take the same inputs (names and shapes), after
    ``input_shapes`` (--input-shape) fixed the dynamic dims of either: an FP32 export with a dynamic batch and
    its INT8 written with a fixed shape are the same network."""
    from edgecnn.graph.load import dims_of, graph_inputs, load_model

    kinds = {_is_tflite(base), _is_tflite(other)}
    if kinds == {True, False}:
        raise BadInputError(
            f"--compare {other}: one model is .tflite and the other ONNX ({base}); compare two .tflite files on "
            "--runtime litert, or two ONNX models (litert converts ONNX in memory)"
        )
    if kinds == {True}:
        a, b = _tflite_inputs(base), _tflite_inputs(other)
    else:
        a = {vi.name: dims_of(vi) for vi in graph_inputs(load_model(base, input_shapes).model)}
        b = {vi.name: dims_of(vi) for vi in graph_inputs(load_model(other, input_shapes).model)}
    if a != b:
        fmt = lambda d: ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in d.items())  # noqa: E731
        raise BadInputError(
            f"--compare {other}: its inputs ({fmt(b)}) differ from {base}'s ({fmt(a)}); compare two versions of the same "
            "network (e.g. FP32 and its INT8), with the same input names and shapes"
        )


def _is_tflite(path: str | Path) -> bool:
    return Path(path).suffix.lower() == ".tflite"


def _tflite_inputs(path: str | Path) -> dict[str, list[int]]:
    from edgecnn.runtimes import open_session

    sess = open_session("litert", Path(path), threads=1, input_shapes={}, options={})
    return {t.name: list(t.shape) for t in sess.inputs()}


# TFLite compute ops: two .tflite files are matched op by op by their names (edgecnn's converter names each op
# after the ONNX tensor it writes, the same in the float and the int8 export)
TFLITE_COMPUTE = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "BATCH_MATMUL"})


def _by_layer(rep: ProfileReport) -> tuple[dict[str, LayerProfile], list[LayerProfile]]:
    """Kernels keyed by the ONNX compute node they run (their primary member), or for a .tflite file by the
    op's name; the rest separately."""
    keyed: dict[str, LayerProfile] = {}
    rest: list[LayerProfile] = []
    tfl = _is_tflite(rep.model)
    for r in rep.layers:
        if tfl and r.runtime_op in TFLITE_COMPUTE:
            keyed[r.kernel] = r
        elif not tfl and r.origin is Origin.MODEL and any(op in COMPUTE_OPS for op in r.onnx_ops):
            keyed[r.primary] = r
        else:
            rest.append(r)
    return keyed, rest


def _cat(rest: Sequence[LayerProfile], pick: Any) -> tuple[float, int]:
    sel = [r for r in rest if pick(r)]
    return sum(r.p50_us for r in sel), len(sel)


def compare_profiles(base: ProfileReport, other: ProfileReport) -> ProfileComparison:
    from edgecnn.profile.findings import FLOAT_PRECISIONS

    a, arest = _by_layer(base)
    b, brest = _by_layer(other)
    rows = []
    for name, ra in a.items():
        rb = b.get(name)
        if rb is None:
            continue
        op = next((op for op in ra.onnx_ops if op in COMPUTE_OPS), ra.runtime_op)
        rows.append(
            LayerDelta(
                layer=name, op=op, base_us=ra.p50_us, other_us=rb.p50_us, base_precision=ra.precision,
                other_precision=rb.precision, base_kernel=ra.kernel_type, other_kernel=rb.kernel_type,
                base_p90_us=ra.p90_us,
            )
        )  # fmt: skip
    cats = []

    def qdq(r: LayerProfile) -> bool:
        return (
            r.origin is Origin.MODEL and bool(r.onnx_ops) and set(r.onnx_ops) <= {"QuantizeLinear", "DequantizeLinear"}
        )

    for label, pick in (
        ("Q/DQ conversions (standalone)", qdq),
        ("inserted by the runtime", lambda r: r.origin is Origin.INSERTED),
        ("other layers", lambda r: not qdq(r) and r.origin is not Origin.INSERTED),
    ):
        ta, na = _cat(arest, pick)
        tb, nb = _cat(brest, pick)
        if na or nb:
            cats.append(
                LayerDelta(layer=label, op=f"{na} / {nb} kernels", base_us=ta, other_us=tb, base_precision="",
                           other_precision="", base_kernel="", other_kernel="")
            )  # fmt: skip
    unmatched_a = sum(r.p50_us for k, r in a.items() if k not in b)
    unmatched_b = sum(r.p50_us for k, r in b.items() if k not in a)
    if unmatched_a or unmatched_b:
        cats.append(
            LayerDelta(layer="compute layers in one model only", op="", base_us=unmatched_a, other_us=unmatched_b,
                       base_precision="", other_precision="", base_kernel="", other_kernel="")
        )  # fmt: skip
    cats.append(
        LayerDelta(layer="runtime cost per call", op="", base_us=base.ceilings.fixed_call_us,
                   other_us=other.ceilings.fixed_call_us, base_precision="", other_precision="", base_kernel="",
                   other_kernel="")
    )  # fmt: skip

    bn, on = Path(base.model).stem, Path(other.model).stem
    s: list[str] = []
    s.append(speed_verdict(base, other, bn, on))
    got_slower = measured_slower(base, other)
    float_rows = [r for r in rows if r.other_precision in FLOAT_PRECISIONS]
    from edgecnn.graph.load import load_model
    from edgecnn.profile.findings import _why_float, is_quantized

    shapes = {k: tuple(v) for k, v in other.inputs.items()}  # what it was profiled with (--input-shape)
    other_model = None if _is_tflite(other.model) else load_model(other.model, shapes).model
    quantized = (
        is_quantized(other_model) if other_model is not None else any(r.precision == "int8" for r in other.layers)
    )
    if quantized:
        if float_rows:
            t = sum(r.other_us for r in float_rows)
            ops = sorted({r.op for r in float_rows})
            reasons = (
                _why_float(other_model, [r.layer for r in float_rows], other.runtime)
                if other_model is not None
                else [_TFLITE_FLOAT]
            )
            s.append(
                f"{len(float_rows)} of {len(rows)} matched compute layers ({'/'.join(ops)}) ran in "
                f"{float_rows[0].other_precision.upper()} "
                f"in {on} ({t:.1f} us, e.g. {', '.join(r.layer for r in float_rows[:3])}): " + "; ".join(reasons) + "."
            )
        elif rows:
            s.append(f"All {len(rows)} matched compute layers ran as integer kernels in {on}.")
            if got_slower:
                up = sum(r.delta_us for r in rows if r.delta_us > 0)
                extra = sum(max(0.0, c.other_us - c.base_us) for c in cats if c.layer != "runtime cost per call")
                biggest = max((r.bytes for r in other.layers), default=0)
                s.append(
                    f"Yet {on} is slower: its compute layers gained {up:.1f} us where they got slower and the kernels "
                    f"outside them (conversions, inserted layout changes, other layers) {extra:.1f} us. On layers this "
                    f"small (the largest moves {biggest / 1024:.0f} KiB) each integer kernel's fixed costs "
                    "(requantization, layout changes) outweigh the MACs it saves; INT8 pays off on larger layers."
                )
    if base.precision_used != other.precision_used or (base.runtime == "openvino" and base.precision_used == "bf16"):
        s.append(
            f"{bn}'s float layers ran in {base.precision_used} on {base.runtime}"
            + (" (its default on this CPU)" if base.precision_used == base.precision_default else "")
            + f"; {on}'s in {other.precision_used}: that is the baseline INT8 has to beat."
        )
    elif base.runtime == "openvino" and base.precision_default == "bf16" and base.precision_used != "bf16":
        s.append(
            f"On this CPU OpenVINO's default for {bn} would be bf16, not {base.precision_used}: with --ov-precision default "
            "the float baseline is faster and the INT8 speed-up smaller."
        )
    s.extend(f for f in other.findings if "BatchNormalization layer(s) ran on their own" in f)
    for label, pick in (("Q/DQ conversions (standalone)", 0), ("inserted by the runtime", 1)):
        c = next((c for c in cats if c.layer == label), None)
        if c is not None and c.other_us - c.base_us > 0.05 * max(other.e2e_p50_us, 1e-9):
            s.append(
                f"{label[0].upper() + label[1:]} cost {c.other_us:.1f} us in {on} vs {c.base_us:.1f} us in {bn} "
                f"({c.op}): " + ("each converts a whole tensor between float and int8." if pick == 0 else
                                 "layout or precision conversions between kernels.")
            )  # fmt: skip
    islands = float_islands(other) if other_model is not None and is_quantized(other_model) else []
    if islands:
        t = sum(r.p50_us for r in islands)
        q = [r for r in other.layers if r.executed and _is_qdq(r)]
        ops = ", ".join(f"{op} x{n}" for op, n in _counts(op for r in islands for op in r.onnx_ops).items())
        s.append(
            f"Float islands: {len(islands)} kernel(s) of {on} ran in {islands[0].precision.upper()} ({ops}; {t:.1f} us)"
            + (
                f", entered and left through {len(q)} standalone QuantizeLinear/DequantizeLinear kernel(s) "
                f"({sum(r.p50_us for r in q):.1f} us)"
                if q
                else ""
            )
            + f": {other.runtime} fused no integer kernel for these ops, so their tensors go to float and back; "
            + (
                "edgecnn quantize already left them float for this reason (its 'Kept in float' table says why per "
                "node): to remove the conversions, replace these ops by ones the runtime runs in integer, or "
                "`--exclude` the layers around them so that one float region replaces several islands."
                if other_model is not None and other_model.producer_name == "edgecnn"
                else f"quantize for this runtime (edgecnn quantize --runtime {other.runtime}) so ops without an "
                "integer kernel get no Q/DQ around them."
            )
        )
    ins_b = [r for r in other.layers if r.executed and r.origin is Origin.INSERTED]
    ins_a = [r for r in base.layers if r.executed and r.origin is Origin.INSERTED]
    if len(ins_b) > len(ins_a):
        kinds = ", ".join(f"{op} x{n}" for op, n in _counts(r.runtime_op for r in ins_b).items())
        s.append(
            f"{other.runtime} inserted {len(ins_b)} conversion kernel(s) in {on} ({kinds}; "
            f"{sum(r.p50_us for r in ins_b):.1f} us) vs {len(ins_a)} in {bn} ({sum(r.p50_us for r in ins_a):.1f} us): "
            "layout and precision changes between integer and float kernels, none of them in the ONNX graph."
        )
    worse = sorted((r for r in rows if slower(r, base)), key=lambda r: -r.delta_us)[:3]
    better = sorted((r for r in rows if r.delta_us < 0), key=lambda r: r.delta_us)[:3]
    if worse:
        s.append(
            "Slower layers: "
            + "; ".join(
                f"{r.layer} ({r.op}) {r.base_us:.1f} -> {r.other_us:.1f} us ({r.base_precision} -> {r.other_precision}), "
                f"why: {slower_reason(r, base, other, other_model)}"
                for r in worse
            )
            + "."
        )
    elif rows and got_slower:
        s.append(
            f"No matched compute layer got slower in {on} beyond the profile's noise (more than 15% and more than its "
            f"p90 in {bn}): the extra time is outside them (the conversions, float islands and inserted kernels above)."
        )
    elif rows:
        s.append(
            f"No layer got slower in {on} beyond the profile's noise (more than 15% and more than its p90 in {bn}); "
            "nothing to fix layer by layer."
        )
    if better:
        s.append(
            "Faster layers: "
            + "; ".join(
                f"{r.layer} {r.base_us:.1f} -> {r.other_us:.1f} us ({r.base_precision} -> {r.other_precision})"
                for r in better
            )
            + "."
        )
    return ProfileComparison(base=base, other=other, rows=tuple(rows), categories=tuple(cats), sentences=tuple(s))


def _speedups(base: ProfileReport, other: ProfileReport) -> tuple[float, tuple[float, ...]]:
    """base's end-to-end p50 / other's (> 1: other faster), overall and per alternating round of profile_pair
    (empty when the two were not measured in rounds together)."""
    sp = base.e2e_p50_us / other.e2e_p50_us if other.e2e_p50_us else float("nan")
    return sp, round_ratios(base.round_p50_us, other.round_p50_us)


def measured_slower(base: ProfileReport, other: ProfileReport) -> bool:
    """``other`` slower than ``base`` beyond noise end to end, in every alternating round when there were rounds."""
    return rounds_verdict(*_speedups(base, other)) == "slower"


def speed_verdict(base: ProfileReport, other: ProfileReport, bn: str, on: str) -> str:
    """One sentence: is ``other`` faster than ``base`` end to end (bench.stats.rounds_verdict)?"""
    sp, rs = _speedups(base, other)
    verdict = {
        "faster": f"{on} is faster than {bn}",
        "slower": f"{on} is SLOWER than {bn}",
        "same": f"{on} is about as fast as {bn} (within 5%)",
        "disagree": f"{on} is not measurably faster or slower than {bn} (the rounds disagree: noise larger than the gap)",
    }[rounds_verdict(sp, rs)]
    return (
        f"{verdict} on {base.runtime}: {other.e2e_p50_us:.1f} us vs {base.e2e_p50_us:.1f} us "
        f"end to end ({sp:.2f}x{rounds_spread(rs)})."
    )


def _is_qdq(r: LayerProfile) -> bool:
    return r.origin is Origin.MODEL and bool(r.onnx_ops) and set(r.onnx_ops) <= {"QuantizeLinear", "DequantizeLinear"}


def _counts(items: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for x in items:
        out[x] = out.get(x, 0) + 1
    return out


def float_islands(rep: ProfileReport) -> list[LayerProfile]:
    """Kernels of a quantized model's profile that ran in float and are neither compute layers (those are
    named with their own reasons) nor Q/DQ conversions: ops the runtime has no fused integer kernel for."""
    from edgecnn.profile.findings import FLOAT_PRECISIONS

    return [
        r
        for r in rep.layers
        if r.executed
        and r.p50_us > 0
        and r.origin is Origin.MODEL
        and r.precision in FLOAT_PRECISIONS
        and not set(r.onnx_ops) & COMPUTE_OPS
        and not _is_qdq(r)
    ]


def slower(r: LayerDelta, base: ProfileReport) -> bool:
    """A layer got slower beyond the profile's noise: by more than 15% of its time, more than its base p90,
    and by more than 2% of the base model's end-to-end time (a layer that small does not matter)."""
    return (
        r.delta_us > 0.15 * r.base_us and r.other_us > r.base_p90_us and r.delta_us > 0.02 * max(base.e2e_p50_us, 1e-9)
    )


_TFLITE_FLOAT = (
    "the .tflite file has it as a float op, dequantized before it (its ONNX source had no Q/DQ around it); "
    "quantize that layer in the ONNX model before export"
)

# findings._why_float's reasons, said of one layer (the long form is in the sentence on float layers above)
_SHORT_WHY = (
    ("unfolded BatchNormalization", "an unfolded BatchNormalization follows it (fold BatchNorm before quantizing)"),
    ("int8 (signed) activations", "its activations are int8 (signed); ONNX Runtime's x86 kernels fuse uint8 ones"),
    ("float activation input", "its input is float (no DequantizeLinear before it)"),
    ("write float outputs", "its output is float (no QuantizeLinear after it)"),
)


def slower_reason(r: LayerDelta, base: ProfileReport, other: ProfileReport, other_model: Any) -> str:
    """Why one layer got slower, from what the runtime reported for it and around it."""
    from edgecnn.profile.findings import FLOAT_PRECISIONS, _why_float, is_quantized

    if (
        other_model is None
        and r.other_precision in FLOAT_PRECISIONS
        and any(x.precision == "int8" for x in other.layers)
    ):
        return f"it still ran in {r.other_precision.upper()} in the int8 file: {_TFLITE_FLOAT}"
    quantized = other_model is not None and is_quantized(other_model)
    if quantized and r.other_precision in FLOAT_PRECISIONS:
        why = _why_float(other_model, [r.layer], other.runtime)[0]
        short = next((text for key, text in _SHORT_WHY if key in why), "the runtime did not fuse its Q/DQ")
        return f"it still ran in {r.other_precision.upper()} ({r.other_kernel}) with Q/DQ around it: {short}"
    parts = []
    if r.base_precision == "bf16" and r.other_precision not in FLOAT_PRECISIONS:
        amx = any(f.startswith("amx") for f in base.cpu_flags)
        parts.append(
            f"the baseline already ran it in bf16 ({r.base_kernel}{', AMX' if amx else ''}), so int8 has far less to "
            "gain than against fp32 and pays requantization on top"
        )
    order = [x for x in other.layers if x.executed]
    idx = next((i for i, x in enumerate(order) if x.primary == r.layer), None)
    if idx is not None:
        near = [x for x in order[max(0, idx - 2) : idx + 3] if x.origin is Origin.INSERTED or _is_qdq(x)]
        if near:
            kinds = ", ".join(f"{op} x{n}" for op, n in _counts(x.runtime_op for x in near).items())
            parts.append(
                f"next to it in execution order run {len(near)} conversion kernel(s) ({kinds}, "
                f"{sum(x.p50_us for x in near):.1f} us)"
            )
    if not parts:
        parts.append(
            f"it ran as {r.other_kernel} ({r.other_precision}) where {base.model and Path(base.model).stem} ran "
            f"{r.base_kernel} ({r.base_precision}): the same work, a slower kernel on {other.runtime} at this size"
        )
    return "; ".join(parts)


def explain_slower(
    base_model: str | Path,
    model: str | Path,
    runtime: str,
    *,
    threads: int = 0,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
) -> list[str]:
    """Why ``model`` is not faster than ``base_model`` on ``runtime``: what each ran in, from the runtime's
    executed graph (OpenVINO) or a short profile (ONNX Runtime), no timing claims. Used by ``bench --compare``;
    ``input_shapes``: the shapes the models were benchmarked with (``--input-shape`` for dynamic dims)."""
    from edgecnn.graph.load import load_model
    from edgecnn.profile.core import profile_model
    from edgecnn.profile.findings import _why_float, float_convs_in_int8, is_quantized

    if runtime not in ("ort", "openvino", "litert"):
        return []
    shapes = input_shapes or {}
    m = load_model(model, shapes).model
    out: list[str] = []
    rep = profile_model(model, runtime, threads=threads, runs=30, warmup=5, roofline=False, input_shapes=shapes)
    if is_quantized(m):
        floats, n = float_convs_in_int8(rep.layers)
        if floats:
            out.append(
                f"{len(floats)} of {n} compute layers ran in {floats[0].precision.upper()}: "
                + "; ".join(_why_float(m, [r.primary for r in floats], runtime))
            )
    keep = ("QuantizeLinear/DequantizeLinear kernel(s) ran on their own", "BatchNormalization layer(s) ran on their own",
            "inserted", "XNNPACK did not take", "QUANTIZE/DEQUANTIZE op(s)", "in this int8 model")  # fmt: skip
    out.extend(f.rstrip(".") for f in rep.findings if any(k in f for k in keep))
    if runtime == "openvino":
        from edgecnn.runtimes.openvino import default_cpu_precision

        if default_cpu_precision() == "bf16" and not is_quantized(load_model(base_model, shapes).model):
            out.append(
                "OpenVINO runs FP32 models in bf16 by default on this CPU (edgecnn benchmarks them in f32); the bf16 "
                "baseline is harder for INT8 to beat"
            )
    if rep.e2e_p50_us and rep.e2e_p50_us - rep.kernel_sum_us > 0.25 * rep.e2e_p50_us:
        out.append(
            f"the model is small: {rep.e2e_p50_us - rep.kernel_sum_us:.0f} of {rep.e2e_p50_us:.0f} us per call is the "
            "runtime's fixed cost, which quantization does not reduce"
        )
    return out
