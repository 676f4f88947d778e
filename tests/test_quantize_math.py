"""Quantization arithmetic, streaming statistics and range estimators (hypothesis where it pays)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from edgecnn.quantize.collectors import CalibrationStats, TensorStats
from edgecnn.quantize.estimators import Method, entropy, estimate, mse, percentile
from edgecnn.quantize.params import (
    INT8_SYMMETRIC,
    X86_CPU,
    activation_params,
    dequantize_array,
    qrange,
    quantize_array,
    weight_params,
)

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=32)


@settings(max_examples=200, deadline=None)
@given(lo=st.floats(-100, 0), hi=st.floats(0, 100), x=arrays(np.float32, 64, elements=st.floats(0, 1, width=32)))
def test_activation_roundtrip_within_half_step(lo: float, hi: float, x: np.ndarray) -> None:
    if hi - lo < 1e-3:
        return
    for scheme in (X86_CPU, INT8_SYMMETRIC):
        scale, zp = activation_params(lo, hi, scheme)
        qmin, qmax = qrange(scheme.activation_dtype)
        assert qmin <= zp <= qmax
        v = (lo + x.astype(np.float64) * (hi - lo)).astype(np.float32)
        back = dequantize_array(quantize_array(v, scale, zp, scheme.activation_dtype), scale, zp)
        assert np.max(np.abs(back - v)) <= scale / 2 * (1 + 1e-4) + 1e-6
        # zero is exactly representable (padding, ReLU)
        assert (
            dequantize_array(quantize_array(np.zeros(1, np.float32), scale, zp, scheme.activation_dtype), scale, zp)[0]
            == 0
        )


@settings(max_examples=100, deadline=None)
@given(w=arrays(np.float32, (4, 3, 3, 3), elements=finite))
def test_weight_quantization_per_channel(w: np.ndarray) -> None:
    scale, zp = weight_params(w, X86_CPU, axis=0)
    assert scale.shape == (4,) and np.all(zp == 0)
    q = quantize_array(w, scale, zp, "int8", axis=0)
    assert q.min() >= -127 and q.max() <= 127
    back = dequantize_array(q, scale, zp, axis=0)
    assert np.all(np.abs(back - w) <= scale.reshape(-1, 1, 1, 1) / 2 * (1 + 1e-5) + 1e-30)


@settings(max_examples=100, deadline=None)
@given(a=finite, b=finite)
def test_quantize_is_monotonic(a: float, b: float) -> None:
    scale, zp = activation_params(-5.0, 7.0, X86_CPU)
    qa, qb = quantize_array(np.array([a, b], np.float32), scale, zp, "uint8")
    assert (qa <= qb) if a <= b else (qa >= qb)


def test_histogram_merge_equals_one_pass() -> None:
    rng = np.random.default_rng(0)
    shards = [rng.standard_normal(5000).astype(np.float32) * s for s in (0.3, 4.0, 1.0, 17.0)]
    one = TensorStats()
    for s in shards:
        one.update(s)
    a, b = TensorStats(), TensorStats()
    for s in shards[:2]:
        a.update(s)
    for s in shards[2:]:
        b.update(s)
    merged = a.merged(b)
    assert merged.radius == one.radius and merged.count == one.count == 20000
    np.testing.assert_array_equal(merged.hist, one.hist)
    for m in Method:
        assert estimate(merged, m) == estimate(one, m)


def test_values_at_the_histogram_edges_land_in_the_end_bins() -> None:
    """The grid is [-R, R) bins plus R itself in the last bin: a value equal to R, or a float64 just below R that
    float32 rounds to R, is counted there (not past the end), and -R in the first."""
    for x, last in (([4.0, -4.0, 0.0, 1.5], 1), ([np.nextafter(4.0, 0.0), -1.0], 1), ([3.0, -4.0], 0)):
        st_ = TensorStats()
        st_.update(np.asarray(x, np.float64))
        assert st_.radius == 4.0 and st_.hist.sum() == len(x) and st_.hist[-1] == last, x
        assert st_.hist[0] == (-4.0 in x)


def test_calibration_stats_merge_and_memory_is_flat() -> None:
    rng = np.random.default_rng(1)
    small, large = CalibrationStats(), CalibrationStats()
    batch = {"t1": rng.standard_normal((8, 16)), "t2": np.abs(rng.standard_normal((8, 4)))}
    small.update(batch, 8)
    for _ in range(100):
        large.update({k: v * rng.uniform(0.5, 2) for k, v in batch.items()}, 8)
    assert large.samples == 800 and large.nbytes() == small.nbytes()
    m = small.merged(large)
    assert m.samples == 808 and m.tensors["t1"].count == small.tensors["t1"].count + large.tensors["t1"].count


def test_estimators_clip_outliers_but_minmax_does_not() -> None:
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.standard_normal(200_000), [60.0, -55.0]]).astype(np.float32)
    st_ = TensorStats()
    st_.update(x)
    lo, hi = estimate(st_, Method.MINMAX)
    assert (lo, hi) == (pytest.approx(-55.0), pytest.approx(60.0))
    for fn in (percentile, entropy):
        lo2, hi2 = fn(st_)
        assert 1.0 < hi2 < 20.0 and -20.0 < lo2 < -1.0, fn.__name__

    def sq_err(lo_: float, hi_: float) -> float:
        scale, zp = activation_params(lo_, hi_, INT8_SYMMETRIC)
        back = dequantize_array(quantize_array(x, scale, zp, "int8"), scale, zp)
        return float(np.sum((back.astype(np.float64) - x) ** 2))

    lo3, hi3 = mse(st_)
    assert hi3 < 60.0 and sq_err(lo3, hi3) < sq_err(lo, hi)


def test_one_sided_tensor_stays_one_sided() -> None:
    st_ = TensorStats()
    st_.update(np.abs(np.random.default_rng(3).standard_normal(50_000)).astype(np.float32))
    for m in Method:
        lo, hi = estimate(st_, m)
        assert lo == 0.0 and hi > 1.0, m
