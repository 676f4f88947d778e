"""Streaming, mergeable drift metrics: each accumulator folds one batch at a time (memory independent of
the number of images) and two accumulators over disjoint shards merge into the one-pass result.

SQNR (signal-to-quantization-noise ratio) of a candidate tensor y against a reference x:
``10 * log10(sum(x^2) / sum((x - y)^2))`` in dB over every element seen; identical tensors report
``SQNR_EXACT_DB``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

SQNR_EXACT_DB = 200.0  # reported when the error is exactly zero (JSON has no infinity)


def sqnr_db(signal_power: float, noise_power: float) -> float:
    """SQNR in dB from summed squares; ``SQNR_EXACT_DB`` for zero noise, -SQNR_EXACT_DB for zero signal."""
    if noise_power <= 0.0:
        return SQNR_EXACT_DB
    if signal_power <= 0.0:
        return -SQNR_EXACT_DB
    return float(min(SQNR_EXACT_DB, 10.0 * math.log10(signal_power / noise_power)))


def score_width(shape: tuple[int, ...] | list[int]) -> int | None:
    """The class count when ``shape`` ([N, C] or [N, C, 1, 1]) is a per-image score vector, else None: top-1
    means something only there (the argmax of a feature map, a box grid or a mask flips on near-ties)."""
    inner = [int(d) for d in list(shape)[1:] if d != 1]
    return inner[0] if len(shape) >= 2 and len(inner) == 1 and inner[0] >= 2 else None


def _nsr(sqnr_db: float) -> float:
    """Noise-to-signal power, capped at 1 (0 dB: noise as strong as the signal, nothing left to lose)."""
    return min(1.0, 10.0 ** (-sqnr_db / 10.0))


def added_noise(input_sqnr_db: float, output_sqnr_db: float) -> float:
    """Noise-to-signal power a layer adds (each side capped at 1), at least 0. The input's 200 -> 44 dB is a
    large drop in dB but adds 4e-5; a layer taking 12 dB to 9 dB adds 0.06."""
    return max(0.0, _nsr(output_sqnr_db) - _nsr(input_sqnr_db))


def blame(input_sqnr_db: float, output_sqnr_db: float) -> float:
    """How much of the model's error a layer puts in: the noise it adds times the share of its output's noise
    that is new. Noise added alone blames the layers after a bad one (they amplify the error they were
    handed: 0.019 in -> 0.049 out adds as much as 0.0004 -> 0.019); the drop in dB alone blames the
    input (exact -> 44 dB). Ranks layers for DriftReport.lossiest_layer."""
    out = _nsr(output_sqnr_db)
    added = added_noise(input_sqnr_db, output_sqnr_db)
    return added * added / out if out > 0 else 0.0


@dataclass(kw_only=True)
class TensorDrift:
    """Running sums for one tensor compared across two models."""

    count: int = 0
    sum_ref: float = 0.0
    sum_ref2: float = 0.0
    sum_cand2: float = 0.0
    sum_err2: float = 0.0
    sum_dot: float = 0.0
    max_abs_err: float = 0.0

    def update(self, ref: np.ndarray, cand: np.ndarray) -> None:
        r = np.asarray(ref, dtype=np.float32).ravel()
        c = np.asarray(cand, dtype=np.float32).ravel()
        if r.shape != c.shape:
            raise ValueError(f"shapes differ: {ref.shape} vs {cand.shape}")
        e = r - c
        self.count += r.size
        # float64 pairwise sums: exact enough for dB at any tensor size, and fast (no BLAS threads)
        self.sum_ref += float(r.sum(dtype=np.float64))
        self.sum_ref2 += float(np.square(r, dtype=np.float64).sum())
        self.sum_cand2 += float(np.square(c, dtype=np.float64).sum())
        self.sum_err2 += float(np.square(e, dtype=np.float64).sum())
        self.sum_dot += float(np.multiply(r, c, dtype=np.float64).sum())
        if e.size:
            self.max_abs_err = max(self.max_abs_err, float(np.max(np.abs(e))))

    def merged(self, other: TensorDrift) -> TensorDrift:
        return TensorDrift(
            count=self.count + other.count,
            sum_ref=self.sum_ref + other.sum_ref,
            sum_ref2=self.sum_ref2 + other.sum_ref2,
            sum_cand2=self.sum_cand2 + other.sum_cand2,
            sum_err2=self.sum_err2 + other.sum_err2,
            sum_dot=self.sum_dot + other.sum_dot,
            max_abs_err=max(self.max_abs_err, other.max_abs_err),
        )

    @property
    def sqnr_db(self) -> float:
        return sqnr_db(self.sum_ref2, self.sum_err2)

    @property
    def sqnr_ac_db(self) -> float:
        """SQNR about the reference's variation (its mean removed from the signal, not from the error): a sigmoid
        mask or heatmap near 0.5 everywhere has most of its power in that constant, which ``sqnr_db`` counts."""
        var = max(self.sum_ref2 - self.sum_ref * self.sum_ref / self.count, 0.0) if self.count else 0.0
        return sqnr_db(var, self.sum_err2)

    @property
    def cosine(self) -> float:
        den = math.sqrt(self.sum_ref2 * self.sum_cand2)
        if den == 0.0:
            return 1.0 if self.sum_ref2 == self.sum_cand2 else 0.0
        return float(self.sum_dot / den)


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of ``a`` with the same row of ``b`` (1.0 where both are zero)."""
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    dot = np.sum(a * b, axis=1)
    den = na * nb
    out = np.where(den > 0, dot / np.where(den > 0, den, 1.0), np.where(na == nb, 1.0, 0.0))
    return np.clip(out, -1.0, 1.0)


@dataclass(kw_only=True)
class OutputDriftStats:
    """Per-output drift: SQNR over all elements plus per-image cosine (mean and worst)."""

    tensor: TensorDrift = field(default_factory=TensorDrift)
    cos_sum: float = 0.0
    cos_min: float = 1.0
    images: int = 0

    def update(self, ref: np.ndarray, cand: np.ndarray) -> None:
        self.tensor.update(ref, cand)
        cos = cosine_rows(ref, cand)
        self.cos_sum += float(cos.sum())
        self.cos_min = min(self.cos_min, float(cos.min())) if cos.size else self.cos_min
        self.images += len(cos)

    def merged(self, other: OutputDriftStats) -> OutputDriftStats:
        return OutputDriftStats(
            tensor=self.tensor.merged(other.tensor),
            cos_sum=self.cos_sum + other.cos_sum,
            cos_min=min(self.cos_min, other.cos_min),
            images=self.images + other.images,
        )

    @property
    def cosine_mean(self) -> float:
        return self.cos_sum / self.images if self.images else 1.0


def topk(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest scores per row, best first ([B, k])."""
    s = np.asarray(scores).reshape(len(scores), -1)
    k = min(k, s.shape[1])
    idx = np.argpartition(-s, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(s, idx, axis=1), axis=1, kind="stable")
    return np.take_along_axis(idx, order, axis=1)


@dataclass(kw_only=True)
class ClassificationStats:
    """Streaming classification counts for a reference and a candidate over the same images.

    ``labels`` may be None for a batch (unlabeled data): then only agreement is counted.
    """

    num_classes: int
    k: int = 5
    images: int = 0
    agree: int = 0
    labeled: int = 0
    ref_top1: int = 0
    cand_top1: int = 0
    ref_topk: int = 0
    cand_topk: int = 0
    support: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    ref_correct: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    cand_correct: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __post_init__(self) -> None:
        if self.support.size == 0:
            self.support = np.zeros(self.num_classes, np.int64)
            self.ref_correct = np.zeros(self.num_classes, np.int64)
            self.cand_correct = np.zeros(self.num_classes, np.int64)

    def update(self, ref: np.ndarray, cand: np.ndarray, labels: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Fold one batch of scores ([B, C] each); returns the top-1 predictions (ref, cand)."""
        rk, ck = topk(ref, self.k), topk(cand, self.k)
        rp, cp = rk[:, 0], ck[:, 0]
        self.images += len(rp)
        self.agree += int(np.sum(rp == cp))
        if labels is not None:
            y = np.asarray(labels, dtype=np.int64)
            self.labeled += len(y)
            r_ok, c_ok = rp == y, cp == y
            self.ref_top1 += int(r_ok.sum())
            self.cand_top1 += int(c_ok.sum())
            self.ref_topk += int(np.any(rk == y[:, None], axis=1).sum())
            self.cand_topk += int(np.any(ck == y[:, None], axis=1).sum())
            np.add.at(self.support, y, 1)
            np.add.at(self.ref_correct, y, r_ok.astype(np.int64))
            np.add.at(self.cand_correct, y, c_ok.astype(np.int64))
        return rp, cp

    def merged(self, other: ClassificationStats) -> ClassificationStats:
        return ClassificationStats(
            num_classes=self.num_classes,
            k=self.k,
            images=self.images + other.images,
            agree=self.agree + other.agree,
            labeled=self.labeled + other.labeled,
            ref_top1=self.ref_top1 + other.ref_top1,
            cand_top1=self.cand_top1 + other.cand_top1,
            ref_topk=self.ref_topk + other.ref_topk,
            cand_topk=self.cand_topk + other.cand_topk,
            support=self.support + other.support,
            ref_correct=self.ref_correct + other.ref_correct,
            cand_correct=self.cand_correct + other.cand_correct,
        )


def pct(n: int, d: int) -> float:
    return 100.0 * n / d if d else 0.0
