"""Gate policy: a TOML file of rules, each a limit on one measured value.

```toml
schema_version = 1
[rules]
max_top1_drop = 0.5          # points, candidate vs reference (drift report)
min_agreement = 99.0         # percent of images where both models predict the same class
max_class_recall_drop = 3.0  # points, the worst class
max_p99_regression = 10.0    # percent, candidate p99 latency vs the baseline's (bench report)
```
Unknown keys and rules are errors, limits must be non-negative numbers, percentages at most 100.

Each rule is one function below whose docstring is what a user reads; ``RULES`` is the one registry
(policy key -> function, bound, unit, the reports it needs). ``decide`` judges what the functions measure.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from edgecnn.errors import ConfigError
from edgecnn.fsutil import read_toml

if TYPE_CHECKING:
    from edgecnn.bench.harness import BenchResult
    from edgecnn.drift.report import DriftReport
    from edgecnn.gate.baseline import Baseline

SCHEMA_VERSION = 1


class Needs(StrEnum):
    DRIFT = "drift"
    LABELS = "labels"  # a drift report computed with labels
    BENCH = "bench"
    BASELINE = "baseline"


@dataclass(frozen=True, kw_only=True)
class Measured:
    """What one rule measured (one per runtime for latency rules); ``value`` None means skipped, and
    ``detail`` then says why."""

    value: float | None
    detail: str
    suffix: str = ""  # "[runtime]" for per-runtime rules


# A rule reads the candidate's drift report, its bench results and the baseline (None on the first run).
Evaluate = Callable[["DriftReport", "Sequence[BenchResult]", "Baseline | None"], list[Measured]]


@dataclass(frozen=True, kw_only=True)
class RuleDef:
    name: str
    bound: str  # "max" (measured must be <= limit) or "min" (>=)
    unit: str
    needs: frozenset[Needs]
    evaluate: Evaluate
    pct_limit: bool = False  # the limit is a percentage (<= 100)

    @property
    def doc(self) -> str:
        """What a user reads: the first line of the rule function's docstring."""
        return inspect.cleandoc(self.evaluate.__doc__ or "").splitlines()[0]


# ---- the rules: one function each; the docstring's first line is what a user reads ------------------------
def max_top1_drop(drift: DriftReport, bench: Sequence[BenchResult], baseline: Baseline | None) -> list[Measured]:
    """Top-1 accuracy lost by the candidate vs the reference (points)."""
    assert drift.top1_drop_pts is not None  # Needs.LABELS is checked before any rule runs
    ref, cand = drift.reference.name, drift.candidate.name
    detail = f"top-1 {drift.reference_top1_pct:.2f}% ({ref}) -> {drift.candidate_top1_pct:.2f}% ({cand})"
    return [Measured(value=drift.top1_drop_pts, detail=detail)]


def max_top5_drop(drift: DriftReport, bench: Sequence[BenchResult], baseline: Baseline | None) -> list[Measured]:
    """Top-5 accuracy lost by the candidate vs the reference (points)."""
    assert drift.topk_drop_pts is not None
    detail = f"top-{drift.topk} {drift.reference_topk_pct:.2f}% -> {drift.candidate_topk_pct:.2f}%"
    return [Measured(value=drift.topk_drop_pts, detail=detail)]


def min_top1(drift: DriftReport, bench: Sequence[BenchResult], baseline: Baseline | None) -> list[Measured]:
    """Top-1 accuracy of the candidate (percent)."""
    assert drift.candidate_top1_pct is not None
    return [Measured(value=drift.candidate_top1_pct, detail=f"{drift.candidate.name} on {drift.images} images")]


def min_agreement(drift: DriftReport, bench: Sequence[BenchResult], baseline: Baseline | None) -> list[Measured]:
    """Images where candidate and reference predict the same class (percent)."""
    assert drift.agreement_pct is not None
    detail = f"{drift.flips_total} of {drift.images} predictions flipped"
    return [Measured(value=drift.agreement_pct, detail=detail)]


def max_class_recall_drop(
    drift: DriftReport, bench: Sequence[BenchResult], baseline: Baseline | None
) -> list[Measured]:
    """Recall lost by the worst class, candidate vs reference (points)."""
    worst = drift.worst_class
    if worst is None:
        return [Measured(value=None, detail="no per-class recall in the drift report")]
    detail = f"class {worst.name}: {worst.reference_pct:.1f}% -> {worst.candidate_pct:.1f}% of {worst.support} images"
    return [Measured(value=worst.drop_pts, detail=detail)]


def min_output_sqnr_db(drift: DriftReport, bench: Sequence[BenchResult], baseline: Baseline | None) -> list[Measured]:
    """SQNR of the candidate's outputs against the reference's, the worst output (dB)."""
    o = min(drift.outputs, key=lambda x: x.sqnr_db)
    return [Measured(value=o.sqnr_db, detail=f"output {o.name}")]


def min_output_cosine(drift: DriftReport, bench: Sequence[BenchResult], baseline: Baseline | None) -> list[Measured]:
    """Mean per-image cosine similarity of the outputs, the worst output."""
    o = min(drift.outputs, key=lambda x: x.cosine_mean)
    return [Measured(value=o.cosine_mean, detail=f"output {o.name}, worst image {o.cosine_min:.5f}")]


def max_top1_drop_vs_baseline(
    drift: DriftReport, bench: Sequence[BenchResult], baseline: Baseline | None
) -> list[Measured]:
    """Top-1 accuracy lost vs the baseline's accepted candidate (points)."""
    if baseline is None or baseline.top1_pct is None:
        return [Measured(value=None, detail="no baseline yet" if baseline is None else "the baseline has no accuracy")]
    assert drift.candidate_top1_pct is not None
    detail = f"top-1 {baseline.top1_pct:.2f}% (baseline {baseline.candidate}) -> {drift.candidate_top1_pct:.2f}%"
    return [Measured(value=baseline.top1_pct - drift.candidate_top1_pct, detail=detail)]


def max_class_recall_drop_vs_baseline(
    drift: DriftReport, bench: Sequence[BenchResult], baseline: Baseline | None
) -> list[Measured]:
    """Recall lost by the worst class vs the baseline (points)."""
    if baseline is None or not baseline.class_recall_pct:
        why = "no baseline yet" if baseline is None else "the baseline has no per-class recall"
        return [Measured(value=None, detail=why)]
    drops = [
        (baseline.class_recall_pct[str(c.index)] - c.candidate_pct, c)
        for c in drift.per_class
        if str(c.index) in baseline.class_recall_pct
    ]
    drop, c = max(drops, key=lambda x: x[0])
    detail = f"class {c.name}: {baseline.class_recall_pct[str(c.index)]:.1f}% (baseline) -> {c.candidate_pct:.1f}%"
    return [Measured(value=drop, detail=detail)]


def max_p99_regression(drift: DriftReport, bench: Sequence[BenchResult], baseline: Baseline | None) -> list[Measured]:
    """p99 latency increase vs the baseline's, per runtime (percent)."""
    out = []
    for r in bench:
        base = baseline.latency.get(r.runtime) if baseline is not None else None
        if base is None:
            why = "no baseline yet" if baseline is None else f"the baseline has no {r.runtime} latency"
            out.append(Measured(value=None, detail=why, suffix=f"[{r.runtime}]"))
            continue
        reg = 100.0 * (r.stats.p99_ms - base.p99_ms) / base.p99_ms if base.p99_ms > 0 else 0.0
        machine = "" if base.cpu_model == r.machine.cpu_model else f" (baseline measured on {base.cpu_model})"
        detail = f"p99 {base.p99_ms:.3f} ms -> {r.stats.p99_ms:.3f} ms{machine}"
        out.append(Measured(value=reg, detail=detail, suffix=f"[{r.runtime}]"))
    return out


def max_p99_ms(drift: DriftReport, bench: Sequence[BenchResult], baseline: Baseline | None) -> list[Measured]:
    """p99 latency of the candidate, per runtime (ms)."""
    return [
        Measured(
            value=r.stats.p99_ms, detail=f"{r.model_name} on {r.runtime}, {r.stats.count} runs", suffix=f"[{r.runtime}]"
        )
        for r in bench
    ]


def _rule(fn: Evaluate, unit: str, needs: set[Needs], pct_limit: bool = False) -> RuleDef:
    name = fn.__name__  # type: ignore[attr-defined]
    return RuleDef(
        name=name, bound=name.split("_")[0], unit=unit, needs=frozenset(needs), evaluate=fn, pct_limit=pct_limit
    )


_ACC = {Needs.DRIFT, Needs.LABELS}
# The one registry: policy key -> rule (its function, bound from the name's prefix, unit, what it needs).
RULES: dict[str, RuleDef] = {
    r.name: r
    for r in (
        _rule(max_top1_drop, "pts", _ACC),
        _rule(max_top5_drop, "pts", _ACC),
        _rule(min_top1, "%", _ACC, pct_limit=True),
        _rule(min_agreement, "%", {Needs.DRIFT}, pct_limit=True),
        _rule(max_class_recall_drop, "pts", _ACC),
        _rule(min_output_sqnr_db, "dB", {Needs.DRIFT}),
        _rule(min_output_cosine, "", {Needs.DRIFT}),
        _rule(max_top1_drop_vs_baseline, "pts", {*_ACC, Needs.BASELINE}),
        _rule(max_class_recall_drop_vs_baseline, "pts", {*_ACC, Needs.BASELINE}),
        _rule(max_p99_regression, "%", {Needs.BENCH, Needs.BASELINE}),
        _rule(max_p99_ms, "ms", {Needs.BENCH}),
    )
}
_TOP_KEYS = {"schema_version", "rules"}


@dataclass(frozen=True, kw_only=True)
class Policy:
    rules: dict[str, float]  # rule name -> limit, in file order
    source: str

    def needs(self) -> set[Needs]:
        return {n for r in self.rules for n in RULES[r].needs}


def policy_from_dict(d: dict[str, object], source: str) -> Policy:
    unknown = sorted(set(d) - _TOP_KEYS)
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {unknown}; a policy has schema_version and a [rules] table")
    ver = d.get("schema_version")
    if ver != SCHEMA_VERSION:
        raise ConfigError(f"{source}: schema_version {ver!r} is not supported; expected {SCHEMA_VERSION}")
    rules = d.get("rules")
    if not isinstance(rules, dict) or not rules:
        raise ConfigError(f"{source}: no [rules] table; add at least one rule, e.g. max_top1_drop = 0.5")
    out: dict[str, float] = {}
    for name, limit in rules.items():
        if name not in RULES:
            raise ConfigError(f"{source}: unknown rule {name!r}; valid rules are {', '.join(RULES)}")
        if isinstance(limit, bool) or not isinstance(limit, int | float):
            raise ConfigError(f"{source}: {name} = {limit!r}; expected a number")
        if not math.isfinite(limit) or limit < 0:
            raise ConfigError(f"{source}: {name} = {limit}; limits must be finite numbers, 0 or more")
        if RULES[name].pct_limit and limit > 100:
            raise ConfigError(f"{source}: {name} = {limit}; a percentage must be at most 100")
        if name == "min_output_cosine" and limit > 1:
            raise ConfigError(f"{source}: {name} = {limit}; a cosine similarity is at most 1")
        out[name] = float(limit)
    return Policy(rules=out, source=source)


def load_policy(path: Path) -> Policy:
    path = Path(path)
    d = read_toml(path, "policy", "expected a TOML file with a [rules] table")
    return policy_from_dict(d, str(path))
