"""Range estimators over streaming statistics: minmax, percentile, entropy (KL) and MSE.

Each returns the float range (lo, hi) to map onto the integer grid. The searches are vectorised
numpy over the histogram; the only Python loop is over candidate thresholds (entropy).
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np

from edgecnn.errors import BadInputError
from edgecnn.quantize.collectors import TensorStats


class Method(StrEnum):
    MINMAX = "minmax"
    PERCENTILE = "percentile"
    ENTROPY = "entropy"
    MSE = "mse"


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


def estimate(st: TensorStats, method: Method) -> tuple[float, float]:
    lo, hi = ESTIMATORS[method](st)
    return min(lo, 0.0), max(hi, 0.0)  # the range must contain 0 (zero padding, ReLU)
