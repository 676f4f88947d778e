"""Latency statistics derived from raw per-iteration samples (nanoseconds); never from averages alone."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

PERCENTILES = (50, 90, 95, 99)


@dataclass(frozen=True, kw_only=True)
class LatencyStats:
    """Per-batch latency in milliseconds; percentiles use linear interpolation between order statistics
    (numpy's default). ``throughput`` is items per second: batch x count / total timed time."""

    count: int
    batch: int
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float
    mean_ms: float
    std_ms: float
    throughput: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def latency_stats(samples_ns: Sequence[int] | np.ndarray, *, batch: int = 1) -> LatencyStats:
    """Statistics of ``samples_ns`` (one entry per timed run of a ``batch``-sized input)."""
    a = np.asarray(samples_ns, dtype=np.float64)
    if a.ndim != 1 or a.size == 0:
        raise ValueError("latency_stats needs a non-empty 1-D sequence of samples")
    if batch < 1:
        raise ValueError(f"batch = {batch}; expected >= 1")
    ms = a / 1e6
    p50, p90, p95, p99 = (float(v) for v in np.percentile(ms, PERCENTILES))
    total_s = float(a.sum()) / 1e9
    lo, hi = float(ms.min()), float(ms.max())
    return LatencyStats(
        count=int(a.size),
        batch=batch,
        p50_ms=p50,
        p90_ms=p90,
        p95_ms=p95,
        p99_ms=p99,
        min_ms=lo,
        max_ms=hi,
        mean_ms=min(max(float(ms.mean()), lo), hi),  # float rounding must not put the mean outside
        std_ms=float(ms.std(ddof=1)) if a.size > 1 else 0.0,
        throughput=batch * a.size / total_s if total_s > 0 else float("inf"),
    )


# A median speed-up within this of 1 is run-to-run noise on a quiet CPU (bench --compare, profile --compare).
NOISE = 0.05


def round_ratios(base: Sequence[float], other: Sequence[float]) -> tuple[float, ...]:
    """Per alternating round, ``base``'s p50 / ``other``'s (> 1: other faster); empty unless both ran the same
    two or more rounds."""
    if len(base) != len(other) or len(other) < 2 or min(other) <= 0:
        return ()
    return tuple(a / b for a, b in zip(base, other, strict=True))


def rounds_spread(ratios: Sequence[float]) -> str:
    """The per-round range a comparison's sentence quotes ("" without rounds)."""
    return f"; per round {min(ratios):.2f}-{max(ratios):.2f}x over {len(ratios)} alternating rounds" if ratios else ""


def rounds_verdict(speedup: float, round_speedups: Sequence[float], noise: float = NOISE) -> str:
    """Is B faster than A? ``speedup``: A's p50 / B's over all samples; ``round_speedups``: the same per alternating
    round (empty when they were not measured in rounds). "faster" / "slower" need the median beyond ``noise`` and
    every round on the same side of 1; "same" within ``noise``; else "disagree" (the rounds contradict the median:
    the machine's noise is larger than the gap)."""
    if speedup >= 1 + noise and all(r > 1 for r in round_speedups):
        return "faster"
    if speedup <= 1 - noise and all(r < 1 for r in round_speedups):
        return "slower"
    if 1 - noise < speedup < 1 + noise:
        return "same"
    return "disagree"
