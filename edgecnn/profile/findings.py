"""What the runtime actually did, in sentences a user acts on: float kernels in an INT8 model and why,
conversions the runtime inserted and their cost, FP16 on a CPU without FP16 kernels, the precision a
"float" model really ran in, memory-bound time, and preprocessing outside the model.

The same checks run without timing (``explain_executed``) for ``bench --compare``'s verdict."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import onnx

from edgecnn.profile.mapping import COMPUTE_OPS, node_names

if TYPE_CHECKING:
    from edgecnn.profile.core import LayerProfile, ProfileReport

FLOAT_PRECISIONS = frozenset({"fp32", "bf16", "fp16", "fp64"})


def is_quantized(model: onnx.ModelProto) -> bool:
    return any(
        n.op_type in ("QuantizeLinear", "DequantizeLinear") or n.op_type.startswith("QLinear") for n in model.graph.node
    )


def is_fp16(model: onnx.ModelProto) -> bool:
    return any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)


def _why_float(model: onnx.ModelProto, conv_names: Sequence[str], runtime: str) -> list[str]:
    """Reasons the DequantizeLinear -> Conv -> QuantizeLinear pattern of these convs did not fuse."""
    nodes = dict(zip(node_names(model.graph), model.graph.node, strict=True))
    producer = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for t in n.input:
            consumers.setdefault(t, []).append(n)
    inits = {i.name: i for i in model.graph.initializer}
    graph_outputs = {o.name for o in model.graph.output}
    signed_act = no_dq = bn_after = no_q_after = 0
    for name in conv_names:
        node = nodes.get(name)
        if node is None or not node.input:
            continue
        p = producer.get(node.input[0])
        if p is None or p.op_type != "DequantizeLinear":
            no_dq += 1
        else:
            zp = inits.get(p.input[2]) if len(p.input) > 2 else None
            src = producer.get(p.input[0])
            signed = (zp is not None and zp.data_type == onnx.TensorProto.INT8) or (
                src is not None and src.op_type == "QuantizeLinear" and len(src.input) > 2
                and inits.get(src.input[2]) is not None and inits[src.input[2]].data_type == onnx.TensorProto.INT8
            )  # fmt: skip
            signed_act += int(signed)
        outs = [c for o in node.output for c in consumers.get(o, [])]
        if any(c.op_type == "BatchNormalization" for c in outs):
            bn_after += 1
        elif not any(c.op_type == "QuantizeLinear" for c in outs) or any(o in graph_outputs for o in node.output):
            no_q_after += 1
    reasons = []
    if bn_after:
        reasons.append(
            f"{bn_after} are followed by an unfolded BatchNormalization, so no QuantizeLinear follows the Conv: "
            "fold BatchNorm before quantizing (edgecnn quantize does)"
        )
    if signed_act and runtime == "ort":
        reasons.append(
            f"{signed_act} take int8 (signed) activations: ONNX Runtime's x86 CPU kernels fuse uint8 activations "
            "with int8 weights (u8s8, VNNI); per-tensor activations with uint8 fix this on this runtime "
            "(edgecnn quantize's default for ort)"
        )
    if no_dq:
        reasons.append(
            f"{no_dq} have a float activation input (no DequantizeLinear before them): the quantizer left them float"
        )
    if no_q_after and not bn_after:
        reasons.append(
            f"{no_q_after} write float outputs (no QuantizeLinear after them), so no integer kernel can write them"
        )
    if not reasons:
        reasons.append("their DequantizeLinear inputs were not fused into an integer kernel by this runtime")
    return reasons


def float_convs_in_int8(layers: Sequence[LayerProfile]) -> tuple[list[LayerProfile], int]:
    """Compute kernels of a quantized model that ran in a float precision, and how many compute kernels ran."""
    compute = [r for r in layers if r.executed and any(op in COMPUTE_OPS for op in r.onnx_ops)]
    return [r for r in compute if r.precision in FLOAT_PRECISIONS], len(compute)


def findings_for(rep: ProfileReport, model: onnx.ModelProto) -> list[str]:
    from edgecnn.profile.core import Bound, Origin

    out: list[str] = []
    total = rep.kernel_sum_us or 1.0
    layers = [r for r in rep.layers if r.executed]
    if is_quantized(model):
        floats, n_compute = float_convs_in_int8(layers)
        qdq = [r for r in layers if set(r.onnx_ops) <= {"QuantizeLinear", "DequantizeLinear"} and r.onnx_ops]
        if floats:
            t = sum(r.p50_us for r in floats)
            ops = sorted({op for r in floats for op in r.onnx_ops if op in COMPUTE_OPS})
            names = [r.primary for r in floats]
            out.append(
                f"{len(floats)} of {n_compute} {'/'.join(ops)} layers ran in {floats[0].precision.upper()} in this INT8 "
                f"model ({t:.1f} us, {100 * t / total:.0f}% of the time; e.g. {', '.join(names[:3])}): "
                + "; ".join(_why_float(model, names, rep.runtime))
                + "."
            )
        elif n_compute:
            out.append(f"All {n_compute} compute layers ran as integer kernels.")
        bn = [r for r in layers if "BatchNormalization" in r.onnx_ops and not set(r.onnx_ops) & COMPUTE_OPS]
        if bn:
            t = sum(r.p50_us for r in bn)
            out.append(
                f"{len(bn)} BatchNormalization layer(s) ran on their own in float ({t:.1f} us, {100 * t / total:.0f}%): "
                "the Q/DQ pair between Conv and BatchNorm kept the runtime from folding them; fold BatchNorm before "
                "quantizing (edgecnn quantize does)."
            )
        if qdq:
            t = sum(r.p50_us for r in qdq)
            out.append(
                f"{len(qdq)} QuantizeLinear/DequantizeLinear kernel(s) ran on their own ({t:.1f} us, {100 * t / total:.0f}%): "
                "each converts a whole tensor between float and int8."
            )
    if rep.runtime == "litert":
        out += _litert_findings(rep, layers, total)
    inserted = [r for r in layers if r.origin is Origin.INSERTED]
    if inserted:
        t = sum(r.p50_us for r in inserted)
        kinds = sorted({r.runtime_op for r in inserted})
        who = "the ONNX->TFLite conversion" if rep.runtime == "litert" else rep.runtime
        out.append(
            f"{who} inserted {len(inserted)} {'/'.join(kinds)} kernel(s) the ONNX graph does not have "
            f"({t:.1f} us, {100 * t / total:.0f}% of the time): layout or precision conversions between kernels."
        )
    conv_nodes = [r for r in layers if r.origin is Origin.MODEL and set(r.onnx_ops) & {"Cast", "Transpose"}]
    if conv_nodes:
        t = sum(r.p50_us for r in conv_nodes)
        out.append(
            f"The model itself contains {len(conv_nodes)} Cast/Transpose kernel(s) (from the converter or the FP16 "
            f"writer) costing {t:.1f} us ({100 * t / total:.0f}%)."
        )
    if is_fp16(model):
        f32 = [r for r in layers if r.precision in ("fp32", "bf16") and any(op in COMPUTE_OPS for op in r.onnx_ops)]
        has_fp16_isa = any(f in rep.cpu_flags for f in ("avx512_fp16", "amx_fp16", "asimdhp"))
        isa = (
            "this CPU has FP16 arithmetic ("
            + ", ".join(f for f in rep.cpu_flags if "fp16" in f or f == "asimdhp")
            + ") but"
            if has_fp16_isa
            else "this CPU has no FP16 arithmetic (F16C only converts), so"
        )
        if f32:
            how = (
                " (ONNX Runtime's CPU provider rewrote the FP16 graph to FP32: its kernels are named "
                "InsertedPrecisionFreeCast_...)"
                if any(r.kernel.startswith("InsertedPrecisionFreeCast_") for r in layers)
                else ""
            )
            out.append(
                f"FP16 model: {len(f32)} compute layer(s) ran in {f32[0].precision.upper()}: {isa} {rep.runtime} computed "
                f"them in a wider precision, with conversions around them{how}; FP16 pays off on GPUs and NPUs, rarely "
                "on this CPU."
            )
        else:
            out.append(f"FP16 model: compute layers ran in FP16 on {rep.runtime}.")
    if rep.runtime == "openvino" and not is_quantized(model):
        amx = "AMX" if any(f.startswith("amx") for f in rep.cpu_flags) else "AVX512-BF16"
        if rep.precision_used == "bf16":
            out.append(
                f"OpenVINO ran this FP32 model in bf16 (its default on this {amx} CPU): the baseline an INT8 model has "
                "to beat here is bf16, not fp32."
            )
        elif rep.precision_default == "bf16":
            out.append(
                f"OpenVINO's default on this {amx} CPU runs FP32 models in bf16; this profile used {rep.precision_used} "
                "(edgecnn's setting, so results match the float model). An INT8 model here has to beat the bf16 baseline: "
                "profile with --ov-precision default to see it."
            )
    mem = [r for r in layers if r.bound is Bound.MEMORY and r.macs]
    if mem:
        t = sum(r.p50_us for r in mem)
        if t / total >= 0.3:
            out.append(
                f"{len(mem)} compute layer(s) are memory-bound on this machine ({100 * t / total:.0f}% of the time): "
                "fewer MACs will not speed them up; fewer bytes (INT8, fused layers, smaller activations) will."
            )
    if rep.preprocess is not None and rep.preprocess.share >= 0.5:
        p = rep.preprocess
        out.append(
            f"Preprocessing takes {100 * p.share:.0f}% of each image's time ({p.per_batch_us:.0f} us vs inference "
            f"{rep.e2e_p50_us:.0f} us): the bottleneck is outside the model (decode {p.decode_us:.0f} us, "
            f"resize+normalise {p.transform_us:.0f} us per image)."
        )
    overhead = rep.e2e_p50_us - rep.kernel_sum_us
    if rep.e2e_p50_us and overhead / rep.e2e_p50_us >= 0.25:
        out.append(
            f"{100 * overhead / rep.e2e_p50_us:.0f}% of the end-to-end time ({overhead:.1f} us) is outside the kernels "
            f"(the runtime's cost per call, measured at {rep.ceilings.fixed_call_us:.1f} us on a one-layer model): "
            "on a model this small, per-call overhead dominates; batch or fuse work to amortise it."
        )
    return out


def _litert_findings(rep: ProfileReport, layers: Sequence[LayerProfile], total: float) -> list[str]:
    """LiteRT: ops the XNNPACK delegate did not take, standalone QUANTIZE/DEQUANTIZE, float ops in an int8 file."""
    out: list[str] = []
    if any("(XNNPACK)" in r.kernel_type for r in layers):
        left = [r for r in layers if r.kernel_type.endswith("(builtin)")]
        if left:
            t = sum(r.p50_us for r in left)
            kinds = sorted({r.runtime_op for r in left})
            out.append(
                f"XNNPACK did not take {len(left)} op(s) ({', '.join(kinds)}; {t:.1f} us, {100 * t / total:.0f}% of the "
                "time): they ran on LiteRT's builtin kernels, each one a boundary where XNNPACK hands tensors back."
            )
        else:
            out.append(f"XNNPACK took all {len(layers)} op(s).")
    qdq = [r for r in layers if r.runtime_op in ("QUANTIZE", "DEQUANTIZE")]
    if qdq:
        t = sum(r.p50_us for r in qdq)
        out.append(
            f"{len(qdq)} QUANTIZE/DEQUANTIZE op(s) ran on their own ({t:.1f} us, {100 * t / total:.0f}%): float islands "
            "in the int8 graph, each converting a whole tensor."
        )
    ints = [r for r in layers if r.precision == "int8"]
    floats = [r for r in layers if r.precision in FLOAT_PRECISIONS and r.runtime_op not in ("QUANTIZE", "DEQUANTIZE")]
    if ints and floats:
        t = sum(r.p50_us for r in floats)
        out.append(
            f"{len(floats)} op(s) ran in float in this int8 model ({', '.join(sorted({r.runtime_op for r in floats}))}; "
            f"{t:.1f} us, {100 * t / total:.0f}%): the converter kept them float between DEQUANTIZE and QUANTIZE."
        )
    return out
