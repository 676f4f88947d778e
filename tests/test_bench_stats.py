"""LatencyStats from raw samples, the comparison verdicts and the terminal histogram."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecnn.bench.stats import latency_stats
from edgecnn.report.plots import text_histogram


def test_stats_match_numpy_reference() -> None:
    samples = np.array([1_000_000, 2_000_000, 3_000_000, 4_000_000, 10_000_000], dtype=np.int64)
    s = latency_stats(samples, batch=2)
    ms = samples / 1e6
    assert s.count == 5 and s.batch == 2
    assert s.p50_ms == pytest.approx(3.0)
    assert s.p90_ms == pytest.approx(np.percentile(ms, 90))
    assert s.p99_ms == pytest.approx(np.percentile(ms, 99))
    assert (s.min_ms, s.max_ms) == (1.0, 10.0)
    assert s.mean_ms == pytest.approx(4.0)
    assert s.std_ms == pytest.approx(np.std(ms, ddof=1))
    assert s.throughput == pytest.approx(2 * 5 / 0.020)  # 10 items in 20 ms


def test_single_sample_has_zero_std() -> None:
    s = latency_stats([5_000], batch=1)
    assert s.std_ms == 0.0 and s.p50_ms == s.p99_ms == s.min_ms == s.max_ms == 0.005


@pytest.mark.parametrize("bad", [[], [[1, 2]]])
def test_empty_or_2d_samples_are_rejected(bad: list) -> None:
    with pytest.raises(ValueError):
        latency_stats(bad)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=10**10), min_size=1, max_size=300))
def test_percentiles_are_ordered_and_bounded(samples: list[int]) -> None:
    s = latency_stats(samples)
    assert s.min_ms <= s.p50_ms <= s.p90_ms <= s.p95_ms <= s.p99_ms <= s.max_ms
    assert s.min_ms <= s.mean_ms <= s.max_ms
    assert s.throughput == pytest.approx(len(samples) / (sum(samples) / 1e9))


def test_text_histogram_counts_every_sample() -> None:
    x = np.concatenate([np.full(90, 1.0), np.linspace(1.0, 2.0, 9), [50.0]])
    lines = text_histogram(x, bins=5)
    assert sum(int(line.split()[-1]) for line in lines) == x.size
    assert lines[-1].split()[-1] == "1"  # the slow tail beyond p99 gets its own row
