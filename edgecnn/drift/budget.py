"""Accuracy-budgeted quantization (``edgecnn quantize --max-drop PTS``): keep the most sensitive layers in
float until the measured top-1 drop on labeled evaluation data is within the budget.

1. Quantize everything; if the drop is within budget, done (nothing stays float).
2. Rank the layers by sensitivity (drift.sensitivity, cached).
3. Keep the k most sensitive in float, k found by bisection over 1..n-1 (each probe quantized and
   measured, so the answer is a measurement, not a prediction); the smallest k that meets the budget wins.
4. Measure what that costs in latency: the all-INT8 and the mixed model benchmarked the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import onnx

from edgecnn.drift.evaluate import EvalData
from edgecnn.drift.sensitivity import Mode, Score, Variants, run_sensitivity
from edgecnn.errors import BadInputError, CheckFailedError
from edgecnn.fsutil import save_onnx, temp_dir
from edgecnn.quantize.api import QuantizeConfig, QuantizeReport
from edgecnn.quantize.dataset import ImageDataset

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True, kw_only=True)
class Trial:
    float_layers: int
    top1_pct: float
    drop_pts: float


@dataclass(frozen=True, kw_only=True)
class BudgetReport:
    max_drop_pts: float
    float_top1_pct: float
    int8_top1_pct: float  # everything quantized
    final_top1_pct: float
    final_drop_pts: float
    kept_float: tuple[str, ...]  # most sensitive first
    trials: tuple[Trial, ...]
    int8_p50_ms: float | None
    int8_p99_ms: float | None
    final_p50_ms: float | None
    final_p99_ms: float | None
    sensitivity_cache: str

    @property
    def latency_cost_pct(self) -> float | None:
        if not self.int8_p50_ms or self.final_p50_ms is None:
            return None
        return 100.0 * (self.final_p50_ms - self.int8_p50_ms) / self.int8_p50_ms

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "latency_cost_pct": self.latency_cost_pct}


def quantize_within_budget(
    model_path: Path,
    calib: ImageDataset,
    data: EvalData,
    config: QuantizeConfig,
    max_drop: float,
    *,
    runtime: str = "ort",
    cache_dir: Path | None = None,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    latency: bool = True,
    progress: Progress | None = None,
) -> tuple[onnx.ModelProto, QuantizeReport, BudgetReport]:
    """The quantized model with the fewest float layers whose top-1 drop is at most ``max_drop`` points."""
    if max_drop < 0:
        raise BadInputError(f"--max-drop {max_drop}; expected 0 or more percentage points of top-1")
    if data.labels is None:
        raise BadInputError(f"{data.dataset.root}: no labels.csv; --max-drop measures top-1 and needs labels")
    v = Variants(model_path, calib, data, config, runtime=runtime, cache_dir=cache_dir, input_shapes=input_shapes)
    assert v.float_top1 is not None
    trials: list[Trial] = []

    def measure(exclude: frozenset[str]) -> Score:
        s = v.score(exclude)
        assert s.top1_pct is not None
        trials.append(Trial(float_layers=len(exclude), top1_pct=s.top1_pct, drop_pts=v.float_top1 - s.top1_pct))
        return s

    full = measure(frozenset())
    ranked: list[str] = []
    chosen: frozenset[str] = frozenset()
    final = full
    if v.float_top1 - (full.top1_pct or 0.0) > max_drop + 1e-9:
        sens = run_sensitivity(
            model_path, calib, data, config, mode=Mode.ONE, rank_by="top1", variants=v, progress=progress
        )
        ranked = [r.node for r in sens.layers]
        n = len(ranked)
        if n < 2:
            raise CheckFailedError(
                f"--max-drop {max_drop}: the top-1 drop is {v.float_top1 - (full.top1_pct or 0):.2f} points and "
                "the model has a single quantizable layer; nothing can stay float"
            )
        best: tuple[int, Score] | None = None
        lo, hi = 1, n - 1
        while lo <= hi:
            k = (lo + hi) // 2
            s = measure(frozenset(ranked[:k]))
            if v.float_top1 - (s.top1_pct or 0.0) <= max_drop + 1e-9:
                best, hi = (k, s), k - 1
            else:
                lo = k + 1
        if best is None:
            worst = trials[-1]
            raise CheckFailedError(
                f"--max-drop {max_drop}: not reachable; with {worst.float_layers} of {n} layers in float the top-1 "
                f"drop is still {worst.drop_pts:.2f} points (float {v.float_top1:.2f}%); check the calibration data"
            )
        chosen, final = frozenset(ranked[: best[0]]), best[1]
    model, qreport = v.build(chosen)
    kept = {**qreport.kept_float}
    for i, node in enumerate(ranked[: len(chosen)], start=1):
        kept[node] = f"kept float by --max-drop (sensitivity rank {i})"
    qreport = replace(qreport, kept_float=kept)
    lat = _latency(v, model, runtime) if latency else (None, None, None, None)
    assert final.top1_pct is not None
    return (
        model,
        qreport,
        BudgetReport(
            max_drop_pts=max_drop,
            float_top1_pct=v.float_top1,
            int8_top1_pct=full.top1_pct or 0.0,
            final_top1_pct=final.top1_pct,
            final_drop_pts=v.float_top1 - final.top1_pct,
            kept_float=tuple(ranked[: len(chosen)]),
            trials=tuple(trials),
            int8_p50_ms=lat[0],
            int8_p99_ms=lat[1],
            final_p50_ms=lat[2],
            final_p99_ms=lat[3],
            sensitivity_cache=str(v.cache.path or ""),
        ),
    )


def _latency(
    v: Variants, model: onnx.ModelProto, runtime: str
) -> tuple[float | None, float | None, float | None, float | None]:
    """p50/p99 of the all-INT8 model and of ``model``, each in its own measuring process (edgecnn.bench)."""
    from edgecnn.bench.harness import run_bench

    with temp_dir("budget") as tmp:
        full, _ = v.build(frozenset())
        a, b = Path(tmp) / "int8.onnx", Path(tmp) / "mixed.onnx"
        save_onnx(full, a)
        save_onnx(model, b)
        ra = run_bench(a, runtime, warmup=20, iterations=300)
        rb = run_bench(b, runtime, warmup=20, iterations=300)
    return ra.stats.p50_ms, ra.stats.p99_ms, rb.stats.p50_ms, rb.stats.p99_ms
