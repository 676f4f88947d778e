"""decide(): every policy rule against the drift report, the bench results and the baseline.

Rules return results, not exceptions: each has the measured value, the limit and a status, and all of
them are evaluated (never stop at the first failure). Inputs that cannot be compared -- a rule whose
report is missing, reports for different models, data other than the baseline's -- are bad input
(exit 2), never a silent pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from edgecnn.bench.harness import BenchResult
from edgecnn.drift.report import DriftReport
from edgecnn.errors import BadInputError
from edgecnn.gate.baseline import Baseline
from edgecnn.gate.policy import RULES, Needs, Policy

# Measured values within this much of the limit count as equal (float noise, e.g. 0.1 + 0.2).
EPS = 1e-9


class Status(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True, kw_only=True)
class RuleResult:
    rule: str  # policy rule name, with "[runtime]" for per-runtime rules
    status: Status
    measured: float | None
    limit: float
    bound: str  # "max" | "min"
    unit: str
    detail: str  # what was measured, or why it was skipped

    @property
    def ok(self) -> bool:
        return self.status is not Status.FAIL


@dataclass(frozen=True, kw_only=True)
class Decision:
    passed: bool
    model: str
    candidate: str
    results: tuple[RuleResult, ...]

    @property
    def failures(self) -> tuple[RuleResult, ...]:
        return tuple(r for r in self.results if r.status is Status.FAIL)

    def to_dict(self) -> dict[str, object]:
        from dataclasses import asdict

        return asdict(self)


def check_inputs(
    policy: Policy,
    drift: DriftReport,
    bench: Sequence[BenchResult],
    baseline: Baseline | None,
    *,
    have_baseline_file: bool,
    bench_sources: Sequence[str] = (),
) -> list[BenchResult]:
    """Raise BadInputError for reports the policy cannot be judged on; the candidate's bench results."""
    needs = policy.needs()
    if Needs.LABELS in needs and not drift.labeled:
        rules = [r for r in policy.rules if Needs.LABELS in RULES[r].needs]
        raise BadInputError(
            f"policy {policy.source}: rule(s) {', '.join(rules)} need accuracy, but the drift report was computed "
            f"without labels ({drift.data_dir} has no labels.csv)"
        )
    if Needs.DRIFT in needs and drift.num_classes is None and "min_agreement" in policy.rules:
        raise BadInputError(
            f"policy {policy.source}: min_agreement needs class predictions, but {drift.reference.name}'s first "
            "output is not a class-score vector"
        )
    mine: list[BenchResult] = []
    for i, r in enumerate(bench):
        src = bench_sources[i] if i < len(bench_sources) else "bench report"
        if r.model_sha256 == drift.candidate.sha256:
            mine.append(r)
        elif r.model_sha256 != drift.reference.sha256:
            raise BadInputError(
                f"{src}: benchmarks {r.model_name} (sha256 {r.model_sha256[:12]}…), but the drift report's candidate "
                f"is {drift.candidate.name} (sha256 {drift.candidate.sha256[:12]}…); bench the same model file"
            )
    if Needs.BENCH in needs and not mine:
        rules = [r for r in policy.rules if Needs.BENCH in RULES[r].needs]
        raise BadInputError(
            f"policy {policy.source}: rule(s) {', '.join(rules)} need a bench report of the candidate "
            f"{drift.candidate.name}; pass --bench REPORT.json"
        )
    if Needs.BASELINE in needs and baseline is None and not have_baseline_file:
        raise BadInputError(
            f"policy {policy.source}: baseline rules need --baseline FILE (create it with --update-baseline)"
        )
    if baseline is not None:
        if baseline.model != drift.reference.name:
            raise BadInputError(
                f"the reports are for model {drift.reference.name!r} but the baseline is for {baseline.model!r}; "
                "use that model's baseline, or start a new one with --update-baseline"
            )
        if baseline.data_digest != drift.data_digest:
            raise BadInputError(
                f"the drift report was computed on other evaluation data ({drift.data_dir}, digest "
                f"{drift.data_digest[:12]}…) than the baseline ({baseline.data_digest[:12]}…); compare like with like"
            )
    return mine


def decide(policy: Policy, drift: DriftReport, bench: Sequence[BenchResult], baseline: Baseline | None) -> Decision:
    """Evaluate every rule of ``policy``; ``bench`` holds the candidate's results only (see check_inputs)."""
    results: list[RuleResult] = []
    for name, limit in policy.rules.items():
        results.extend(_evaluate(name, limit, drift, bench, baseline))
    return Decision(
        passed=all(r.ok for r in results),
        model=drift.reference.name,
        candidate=Path(drift.candidate.path).name,
        results=tuple(results),
    )


def _judge(name: str, limit: float, measured: float, detail: str, suffix: str = "") -> RuleResult:
    d = RULES[name]
    ok = measured <= limit + EPS if d.bound == "max" else measured >= limit - EPS
    return RuleResult(
        rule=name + suffix,
        status=Status.PASS if ok else Status.FAIL,
        measured=measured,
        limit=limit,
        bound=d.bound,
        unit=d.unit,
        detail=detail,
    )


def _skip(name: str, limit: float, why: str, suffix: str = "") -> RuleResult:
    d = RULES[name]
    return RuleResult(
        rule=name + suffix, status=Status.SKIP, measured=None, limit=limit, bound=d.bound, unit=d.unit, detail=why
    )


def _evaluate(
    name: str, limit: float, drift: DriftReport, bench: Sequence[BenchResult], baseline: Baseline | None
) -> list[RuleResult]:
    ref, cand = drift.reference.name, drift.candidate.name
    if name == "max_top1_drop":
        assert drift.top1_drop_pts is not None
        return [
            _judge(
                name,
                limit,
                drift.top1_drop_pts,
                f"top-1 {drift.reference_top1_pct:.2f}% ({ref}) -> {drift.candidate_top1_pct:.2f}% ({cand})",
            )
        ]
    if name == "max_top5_drop":
        assert drift.topk_drop_pts is not None
        return [
            _judge(
                name,
                limit,
                drift.topk_drop_pts,
                f"top-{drift.topk} {drift.reference_topk_pct:.2f}% -> {drift.candidate_topk_pct:.2f}%",
            )
        ]
    if name == "min_top1":
        assert drift.candidate_top1_pct is not None
        return [_judge(name, limit, drift.candidate_top1_pct, f"{cand} on {drift.images} images")]
    if name == "min_agreement":
        assert drift.agreement_pct is not None
        return [_judge(name, limit, drift.agreement_pct, f"{drift.flips_total} of {drift.images} predictions flipped")]
    if name == "max_class_recall_drop":
        worst = drift.worst_class
        if worst is None:
            return [_skip(name, limit, "no per-class recall in the drift report")]
        return [
            _judge(
                name,
                limit,
                worst.drop_pts,
                f"class {worst.name}: {worst.reference_pct:.1f}% -> {worst.candidate_pct:.1f}% of {worst.support} images",
            )
        ]
    if name == "min_output_sqnr_db":
        o = min(drift.outputs, key=lambda x: x.sqnr_db)
        return [_judge(name, limit, o.sqnr_db, f"output {o.name}")]
    if name == "min_output_cosine":
        o = min(drift.outputs, key=lambda x: x.cosine_mean)
        return [_judge(name, limit, o.cosine_mean, f"output {o.name}, worst image {o.cosine_min:.5f}")]
    if name == "max_top1_drop_vs_baseline":
        if baseline is None or baseline.top1_pct is None:
            return [_skip(name, limit, "no baseline yet" if baseline is None else "the baseline has no accuracy")]
        assert drift.candidate_top1_pct is not None
        return [
            _judge(
                name,
                limit,
                baseline.top1_pct - drift.candidate_top1_pct,
                f"top-1 {baseline.top1_pct:.2f}% (baseline {baseline.candidate}) -> {drift.candidate_top1_pct:.2f}%",
            )
        ]
    if name == "max_class_recall_drop_vs_baseline":
        if baseline is None or not baseline.class_recall_pct:
            return [
                _skip(name, limit, "no baseline yet" if baseline is None else "the baseline has no per-class recall")
            ]
        drops = [
            (baseline.class_recall_pct[str(c.index)] - c.candidate_pct, c)
            for c in drift.per_class
            if str(c.index) in baseline.class_recall_pct
        ]
        drop, c = max(drops, key=lambda x: x[0])
        return [
            _judge(
                name,
                limit,
                drop,
                f"class {c.name}: {baseline.class_recall_pct[str(c.index)]:.1f}% (baseline) -> {c.candidate_pct:.1f}%",
            )
        ]
    if name == "max_p99_ms":
        return [
            _judge(
                name, limit, r.stats.p99_ms, f"{r.model_name} on {r.runtime}, {r.stats.count} runs", f"[{r.runtime}]"
            )
            for r in bench
        ]
    if name == "max_p99_regression":
        out = []
        for r in bench:
            base = baseline.latency.get(r.runtime) if baseline is not None else None
            if base is None:
                why = "no baseline yet" if baseline is None else f"the baseline has no {r.runtime} latency"
                out.append(_skip(name, limit, why, f"[{r.runtime}]"))
                continue
            reg = 100.0 * (r.stats.p99_ms - base.p99_ms) / base.p99_ms if base.p99_ms > 0 else 0.0
            machine = "" if base.cpu_model == r.machine.cpu_model else f" (baseline measured on {base.cpu_model})"
            out.append(
                _judge(
                    name, limit, reg, f"p99 {base.p99_ms:.3f} ms -> {r.stats.p99_ms:.3f} ms{machine}", f"[{r.runtime}]"
                )
            )
        return out
    raise AssertionError(f"rule {name} has no evaluator")  # RULES and _evaluate are kept in step by a test
