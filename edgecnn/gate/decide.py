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
from edgecnn.gate.policy import RULES, Measured, Needs, Policy

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
        results.extend(_result(name, limit, m) for m in RULES[name].evaluate(drift, bench, baseline))
    return Decision(
        passed=all(r.ok for r in results),
        model=drift.reference.name,
        candidate=Path(drift.candidate.path).name,
        results=tuple(results),
    )


def _result(name: str, limit: float, m: Measured) -> RuleResult:
    d = RULES[name]
    common = {"rule": name + m.suffix, "limit": limit, "bound": d.bound, "unit": d.unit, "detail": m.detail}
    if m.value is None:
        return RuleResult(status=Status.SKIP, measured=None, **common)  # type: ignore[arg-type]
    ok = m.value <= limit + EPS if d.bound == "max" else m.value >= limit - EPS
    return RuleResult(status=Status.PASS if ok else Status.FAIL, measured=m.value, **common)  # type: ignore[arg-type]
