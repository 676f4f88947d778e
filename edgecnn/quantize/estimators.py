"""Range estimators over streaming statistics: minmax, percentile, entropy (KL) and MSE.

Each returns the float range (lo, hi) to map onto the integer grid. The searches are vectorised
numpy over the histogram; the only Python loop is over candidate thresholds (entropy).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgecnn.errors import BadInputError
from edgecnn.quantize.collectors import TensorStats
from edgecnn.quantize.params import QuantScheme, activation_qparams, qrange


class Method(StrEnum):
    MINMAX = "minmax"
    PERCENTILE = "percentile"
    ENTROPY = "entropy"
    MSE = "mse"
    AUTO = "auto"


def parse_method(value: str) -> Method:
    try:
        return Method(value)
    except ValueError:
        raise BadInputError(f"--method {value!r}; valid methods are {', '.join(m.value for m in Method)}") from None


# Share of non-zero values an entropy threshold must keep unclipped (percent).
ENTROPY_KEEP = 99.99


def _one_sided(st: TensorStats) -> bool:
    return st.min >= 0.0


def _folded(st: TensorStats, drop_zeros: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Histogram of |x| over [0, radius] (bins/2 bins) and the upper edge of each bin.

    ``drop_zeros`` removes exact zeros from the first bin: they quantize without error at any
    threshold, and a ReLU output's spike at 0 would otherwise dominate a divergence search.
    """
    half = st.bins // 2
    folded = st.hist[half:].astype(np.float64) + st.hist[:half][::-1].astype(np.float64)
    if drop_zeros:
        folded[0] = max(0.0, folded[0] - st.zeros)
    upper = (np.arange(half) + 1) * (st.radius / half)
    return folded, upper


def _clip(st: TensorStats, t: float) -> tuple[float, float]:
    """Range for threshold ``t`` on |x|, never wider than what was seen."""
    if _one_sided(st):
        return 0.0, min(st.max, t)
    return max(st.min, -t), min(st.max, t)


def minmax(st: TensorStats) -> tuple[float, float]:
    return st.min, st.max


def percentile(st: TensorStats, pct: float = 99.999) -> tuple[float, float]:
    """Clip at the ``pct`` percentile of |x| (histogram resolution)."""
    h, upper = _folded(st)
    total = h.sum()
    if total == 0:
        return minmax(st)
    cdf = np.cumsum(h) / total
    i = int(np.searchsorted(cdf, pct / 100.0))
    return _clip(st, float(upper[min(i, len(upper) - 1)]))


def entropy(
    st: TensorStats, levels: int | None = None, candidates: int = 160, keep: float = ENTROPY_KEEP
) -> tuple[float, float]:
    """Threshold minimising KL(P || Q), P the clipped |x| histogram, Q its quantized version.

    ``levels`` is the number of quantization levels on the side being searched (128 for a signed
    symmetric range, 256 for a one-sided range mapped to uint8).
    """
    h, upper = _folded(st, drop_zeros=True)
    if h.sum() == 0:
        return minmax(st)
    nz = np.nonzero(h)[0]
    last = int(nz[-1]) + 1
    if levels is None:
        levels = 256 if _one_sided(st) else 128
    if last <= levels:
        return minmax(st)
    # KL weighs a clipped value like any other mismatch, however far it is clipped; in CNN feature maps the
    # rare large activations carry the signal (edges, strokes), so thresholds that clip more than
    # (100 - keep)% of the non-zero values are not candidates.
    floor_bin = int(np.searchsorted(np.cumsum(h) / h.sum(), keep / 100.0)) + 1
    first = max(levels, min(floor_bin, last))
    starts = np.unique(np.linspace(first, last, num=min(candidates, last - first + 1)).astype(np.int64))
    best_kl, best_i = np.inf, last
    for i in starts:
        p = h[:i].copy()
        p[i - 1] += h[i:].sum()
        group = (np.arange(i) * levels) // i
        nonzero = (p > 0).astype(np.float64)
        gsum = np.bincount(group, weights=h[:i], minlength=levels)
        gcnt = np.bincount(group, weights=nonzero, minlength=levels)
        q = np.where(nonzero > 0, (gsum / np.maximum(gcnt, 1))[group], 0.0)
        if q.sum() == 0:
            continue
        kl = _kl(_smooth(p), _smooth(q))
        if kl < best_kl:
            best_kl, best_i = kl, int(i)
    return _clip(st, float(upper[best_i - 1]))


def _smooth(d: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    """Give empty bins a little mass (taken from the others) so KL stays finite; normalise."""
    d = d / d.sum()
    zero = d == 0
    n_zero = int(zero.sum())
    if n_zero and n_zero < d.size:
        d = np.where(zero, eps, d - eps * n_zero / (d.size - n_zero))
        d = np.maximum(d, 0.0)
        d = d / d.sum()
    return d


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / np.maximum(q[mask], 1e-300))))


def mse(st: TensorStats, levels: int | None = None, candidates: int = 128) -> tuple[float, float]:
    """Threshold minimising the expected squared error (rounding inside, clipping outside)."""
    h, upper = _folded(st)
    if h.sum() == 0:
        return minmax(st)
    amax = max(abs(st.min), abs(st.max))
    if levels is None:
        levels = 255 if _one_sided(st) else 127
    centers = upper - (upper[0] / 2.0)
    ts = np.linspace(amax / candidates, amax, candidates)[:, None]  # (C, 1)
    step = ts / levels
    clipped = np.minimum(centers[None, :], ts)
    rounding = np.where(centers[None, :] <= ts, step**2 / 12.0, 0.0)
    err = ((centers[None, :] - clipped) ** 2 + rounding) @ h
    return _clip(st, float(ts[int(np.argmin(err)), 0]))


ESTIMATORS = {Method.MINMAX: minmax, Method.PERCENTILE: percentile, Method.ENTROPY: entropy, Method.MSE: mse}


def estimate(st: TensorStats, method: Method, consumer: Consumer | None = None) -> tuple[float, float]:
    """``method``'s range for ``st``; read only by ``consumer``'s function, without the part it flattens
    (``tighten``: nothing the next layer sees is lost)."""
    if method is Method.AUTO:
        return choose(st, QuantScheme(), consumer=consumer or Consumer.IDENTITY)[0]
    lo, hi = ESTIMATORS[method](st)
    r = min(lo, 0.0), max(hi, 0.0)  # the range must contain 0 (zero padding, ReLU)
    return tighten(r, consumer) if consumer is not None else r


@dataclass(frozen=True)
class Consumer:
    """The elementwise function every consumer of a tensor applies to it: its quantization error is judged where
    it lands, after that function (a saturating function hides the error of its flat tails).

    ``kind``: identity, sigmoid, silu (x * sigmoid(x)), tanh, hardsigmoid (clip(alpha*x + beta, 0, 1)),
    hardswish (x * hardsigmoid(x)) or clip (to [lo, hi]: Relu, Relu6, Clip). ``a``, ``b``: alpha and beta of
    the hard functions, or the bounds of clip."""

    kind: str = "identity"
    a: float = 0.0
    b: float = 0.0

    IDENTITY: ClassVar[Consumer]
    SIGMOID: ClassVar[Consumer]
    SILU: ClassVar[Consumer]
    TANH: ClassVar[Consumer]

    @staticmethod
    def hard_sigmoid(alpha: float, beta: float) -> Consumer:
        return Consumer("hardsigmoid", alpha, beta)

    @staticmethod
    def hard_swish(alpha: float = 1.0 / 6.0, beta: float = 0.5) -> Consumer:
        return Consumer("hardswish", alpha, beta)

    @staticmethod
    def clip(lo: float, hi: float) -> Consumer:
        return Consumer("clip", lo, hi)


Consumer.IDENTITY = Consumer("identity")
Consumer.SIGMOID = Consumer("sigmoid")
Consumer.SILU = Consumer("silu")  # a Sigmoid and a Mul that multiplies its output by the same tensor
Consumer.TANH = Consumer("tanh")


def flat_beyond(consumer: Consumer) -> tuple[float, float]:
    """Where the consumer's function turns constant: values below the first or above the second all give the
    same result, so a grid that clips them there loses nothing (HardSwish below -beta/alpha = -3, HardSigmoid
    outside [-3, 3], Relu below 0, Clip outside its bounds); (-inf, inf) for the others."""
    k, a, b = consumer.kind, consumer.a, consumer.b
    if k in ("hardsigmoid", "hardswish") and a > 0:
        return -b / a, (np.inf if k == "hardswish" else (1.0 - b) / a)
    if k == "clip":
        return a, b
    return -np.inf, np.inf


def tighten(r: tuple[float, float], consumer: Consumer) -> tuple[float, float]:
    """``r`` without the part where every reader's function is flat (``flat_beyond``), still holding 0."""
    lo_f, hi_f = flat_beyond(consumer)
    return _widen((max(r[0], lo_f), min(r[1], hi_f)))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def apply_consumer(consumer: Consumer, x: np.ndarray) -> np.ndarray:
    k = consumer.kind
    if k == "sigmoid":
        return _sigmoid(x)
    if k == "silu":
        return x * _sigmoid(x)
    if k == "tanh":
        return np.tanh(x)
    if k == "hardsigmoid":
        return np.clip(consumer.a * x + consumer.b, 0.0, 1.0)
    if k == "hardswish":
        return x * np.clip(consumer.a * x + consumer.b, 0.0, 1.0)
    if k == "clip":
        return np.clip(x, consumer.a, consumer.b)
    return x


def consumer_slope(consumer: Consumer, x: np.ndarray) -> np.ndarray:
    """d f / d x: rounding error ``e`` inside the grid becomes ``f'(x) e`` after the consumer."""
    k = consumer.kind
    if k == "sigmoid":
        s = _sigmoid(x)
        return s * (1.0 - s)
    if k == "silu":
        s = _sigmoid(x)
        return s * (1.0 + x * (1.0 - s))
    if k == "tanh":
        return 1.0 - np.tanh(x) ** 2
    if k in ("hardsigmoid", "hardswish"):
        lin = consumer.a * x + consumer.b
        inside = (lin > 0.0) & (lin < 1.0)
        if k == "hardsigmoid":
            return np.where(inside, consumer.a, 0.0)
        return np.clip(lin, 0.0, 1.0) + np.where(inside, consumer.a * x, 0.0)
    if k == "clip":
        return ((x > consumer.a) & (x < consumer.b)).astype(np.float64)
    return np.ones_like(x)


def _centres(st: TensorStats) -> tuple[np.ndarray, np.ndarray]:
    """Non-empty histogram bins: (counts, centres clipped to the value range actually seen)."""
    h = st.hist.astype(np.float64)
    width = 2.0 * st.radius / st.bins
    centers = -st.radius + (np.arange(st.bins) + 0.5) * width
    # The value range actually seen (bins are clipped at its ends) keeps the centres honest for narrow tensors.
    centers = np.clip(centers, st.min, st.max)
    nz = h > 0
    return h[nz], centers[nz]


def grid_errors(
    st: TensorStats, ranges: np.ndarray, scheme: QuantScheme, consumer: Consumer = Consumer.IDENTITY
) -> tuple[np.ndarray, np.ndarray]:
    """Per candidate range (rows of ``ranges``, shape (C, 2)): the expected squared error per value of
    quantizing ``st``'s distribution on the scheme's real grid, split into (rounding, clipping), both measured
    after ``consumer``: rounding is ``f'(x)^2 step^2 / 12`` inside the grid, clipping ``(f(end) - f(x))^2``
    outside it (``f`` = identity: the plain error). Uses the full, unfolded histogram, so an asymmetric uint8
    grid is judged as the runtime will use it, not as a symmetric one."""
    h, centers = _centres(st)
    total = float(h.sum())
    slope2 = consumer_slope(consumer, centers) ** 2
    f_c = apply_consumer(consumer, centers)
    rounding = np.empty(len(ranges))
    clipping = np.empty(len(ranges))
    for i, (lo, hi) in enumerate(ranges):
        scale, zp, dtype = activation_qparams(float(lo), float(hi), scheme)
        qmin, qmax = qrange(dtype)
        glo, ghi = (qmin - zp) * scale, (qmax - zp) * scale
        inside = (centers >= glo) & (centers <= ghi)
        rounding[i] = float((np.where(inside, slope2, 0.0) * (scale * scale / 12.0)) @ h) / total
        end = np.clip(centers, glo, ghi)
        clipping[i] = float(np.where(inside, 0.0, (apply_consumer(consumer, end) - f_c) ** 2) @ h) / total
    return rounding, clipping


def grid_error(
    st: TensorStats, ranges: np.ndarray, scheme: QuantScheme, consumer: Consumer = Consumer.IDENTITY
) -> np.ndarray:
    """Expected squared error per value for each candidate range (rounding + clipping, see ``grid_errors``)."""
    rounding, clipping = grid_errors(st, ranges, scheme, consumer)
    return rounding + clipping


# How much more expected error than the best a less-clipping range may have and still be chosen. Measured
# (tests/test_quantize_real.py models, output SQNR): 1.02 lets MSE clip where the output loses 1-5 dB
# (detector boxes 27.6 -> 22.8 dB); 1.5 keeps min/max there and still clips where it pays (MobileNetV3
# block +0.6 dB over min/max); 2 and above never clip on these models. A tensor read only by a saturating
# function is judged after it (``Consumer``), with the same tolerance.
AUTO_TOLERANCE = 1.5


def choose(
    st: TensorStats, scheme: QuantScheme, scan: int = 48, consumer: Consumer = Consumer.IDENTITY
) -> tuple[tuple[float, float], Method]:
    """``auto``: per tensor, the range with the least expected error on the scheme's grid among min/max,
    percentile (99.99 and 99.999) and MSE-optimal clipping (the folded search and a scan of clipping
    thresholds judged on the real, possibly asymmetric, grid), all from the same streamed histogram.

    The least clipping range (in this order: minmax, percentile, mse) whose error is within
    ``AUTO_TOLERANCE`` of the best wins: clipping throws away the rare large values a later layer may need
    (the per-tensor error does not see that), so it has to cut the error by a third to earn its place.

    A tensor whose every consumer applies one saturating function (``consumer``: Sigmoid, Tanh, SiLU) is
    judged after it: the error is measured where it lands, and each end of the range is also scanned on its
    own (a SiLU input's negative tail is worth almost nothing after SiLU, its positive tail all). Candidates
    are then tried from the one that clips least *after the function* (an end the function is flat beyond
    clips nothing the next layer sees).
    """
    if not st.with_hist or st.radius == 0.0 or st.hist.sum() == 0:
        return estimate(st, Method.MINMAX), Method.MINMAX
    named: list[tuple[Method, tuple[float, float]]] = [
        (Method.MINMAX, estimate(st, Method.MINMAX)),
        (Method.PERCENTILE, estimate(st, Method.PERCENTILE)),
        (Method.PERCENTILE, _widen(percentile(st, 99.99))),
        (Method.MSE, estimate(st, Method.MSE)),
    ]
    amax = max(abs(st.min), abs(st.max))
    for t in np.linspace(amax / scan, amax, scan):
        named.append((Method.MSE, _widen(_clip(st, float(t)))))
    if consumer != Consumer.IDENTITY:
        lo, hi = estimate(st, Method.MINMAX)
        for f in np.linspace(1.0 / scan, 1.0, scan):
            named.append((Method.MSE, (lo * float(f), hi)))
            named.append((Method.MSE, (lo, hi * float(f))))
    named = [(m, tighten(r, consumer)) for m, r in named]  # nothing is lost where the function is flat
    rounding, clipping = grid_errors(st, np.array([r for _, r in named]), scheme, consumer)
    err = rounding + clipping
    best = float(err.min())
    # Identity: the list order above (min/max first). After a function: least clipping as the next layer sees it.
    # Equal clipping (none, where the function is flat beyond both candidates' ends): the smaller error first.
    order = range(len(named)) if consumer == Consumer.IDENTITY else np.lexsort((err, clipping))
    for i in order:
        if err[i] <= best * AUTO_TOLERANCE + 1e-30:
            return named[i][1], named[i][0]
    raise AssertionError("unreachable")  # pragma: no cover


def _widen(r: tuple[float, float]) -> tuple[float, float]:
    return min(r[0], 0.0), max(r[1], 0.0)


def _elementwise(n: onnx.NodeProto, t: str, inits: dict[str, onnx.TensorProto]) -> Consumer | None:
    """The function node ``n`` applies to its input ``t``, if it is one elementwise function of ``t`` alone."""
    if not n.input or n.input[0] != t or t in n.input[1:]:
        return None
    attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
    if n.op_type == "Sigmoid":
        return Consumer.SIGMOID
    if n.op_type == "Tanh":
        return Consumer.TANH
    if n.op_type == "HardSigmoid":
        return Consumer.hard_sigmoid(float(attrs.get("alpha", 0.2)), float(attrs.get("beta", 0.5)))
    if n.op_type == "HardSwish":
        return Consumer.hard_swish()
    if n.op_type == "Relu":
        return Consumer.clip(0.0, np.inf)
    if n.op_type == "Clip":
        bounds = [float(attrs.get("min", -np.inf)), float(attrs.get("max", np.inf))]
        for k, name in enumerate(n.input[1:3]):
            if name:
                if name not in inits or numpy_helper.to_array(inits[name]).size != 1:
                    return None  # a bound computed at run time
                bounds[k] = float(numpy_helper.to_array(inits[name]).reshape(()))
        return Consumer.clip(*bounds) if bounds[0] < bounds[1] else None
    return None


def tensor_consumers(model: onnx.ModelProto) -> dict[str, Consumer]:
    """Tensors whose every consumer applies one and the same elementwise function that flattens somewhere:
    Sigmoid, Tanh, HardSigmoid, HardSwish, Relu/Clip, or SiLU / the opset < 14 HardSwish (a Sigmoid or
    HardSigmoid of the tensor and a Mul of the tensor by its output, nothing else reading either). Graph
    outputs and tensors read by anything else are left out (their error counts as it is)."""
    readers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in dict.fromkeys(n.input):
            if i:
                readers.setdefault(i, []).append(n)
    inits = {t.name: t for t in model.graph.initializer}
    outputs = {o.name for o in model.graph.output}
    out: dict[str, Consumer] = {}
    for t, ns in readers.items():
        if t in outputs:
            continue
        kinds = {n.op_type for n in ns}
        if len(ns) == 2 and kinds in ({"Sigmoid", "Mul"}, {"HardSigmoid", "Mul"}):
            gate, mul = sorted(ns, key=lambda n: n.op_type == "Mul")
            g, fn = gate.output[0], _elementwise(gate, t, inits)
            if fn and sorted(mul.input) == sorted([t, g]) and g not in outputs and len(readers.get(g, [])) == 1:
                out[t] = Consumer.SILU if fn == Consumer.SIGMOID else Consumer.hard_swish(fn.a, fn.b)
            continue
        fns = {_elementwise(n, t, inits) for n in ns}
        if len(fns) == 1 and (fn := next(iter(fns))) is not None:
            out[t] = fn
    return out
