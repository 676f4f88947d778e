"""Markdown summaries (GitHub-flavoured tables) for CI job summaries: drift reports and gate decisions."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgecnn.bench.harness import BenchResult
    from edgecnn.drift.report import DriftReport
    from edgecnn.gate.decide import Decision, RuleResult


def code(name: object) -> str:
    """``name`` (from a model or a file) as an inline code span that nothing in it can close: a fence longer
    than any run of backticks inside, control characters shown as ``\\xNN``. Markup inside stays text."""
    from edgecnn.report.fmt import plain

    text = plain(name).replace("\n", " ")
    fence = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _cell(s: object) -> str:
    from edgecnn.report.fmt import plain

    return plain(s).replace("|", "\\|").replace("\n", " ")


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    out = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _num(v: float | None, unit: str = "", digits: int = 2) -> str:
    if v is None:
        return "-"
    sep = "" if unit in ("", "%") else " "
    return f"{v:.{digits}f}{sep}{unit}"


def drift_markdown(r: DriftReport, *, show: int = 5, heading: str = "###") -> str:
    lines = [
        f"{heading} Drift: {code(r.candidate.name)} vs {code(r.reference.name)} ({r.images} images, {r.runtime})",
        "",
    ]
    rows: list[list[object]] = []
    if r.reference_top1_pct is not None:
        rows.append(["top-1", _num(r.reference_top1_pct, "%"), _num(r.candidate_top1_pct, "%"), _pts(r.top1_drop_pts)])
        rows.append(
            [f"top-{r.topk}", _num(r.reference_topk_pct, "%"), _num(r.candidate_topk_pct, "%"), _pts(r.topk_drop_pts)]
        )
    if r.agreement_pct is not None:
        rows.append(["agreement", "", _num(r.agreement_pct, "%"), f"{r.flips_total} flipped"])
    for o in r.outputs:
        rows.append([f"{code(o.name)} SQNR / cosine", "", f"{o.sqnr_db:.1f} dB / {o.cosine_mean:.5f}", ""])
    lines += [table(["metric", "reference", "candidate", "change"], rows), ""]
    if r.per_class:
        worst = [c for c in r.per_class if c.drop_pts > 0][:show]
        if worst:
            lines.append(
                "Classes that lost most: "
                + ", ".join(f"{c.name} ({c.reference_pct:.1f}% → {c.candidate_pct:.1f}%)" for c in worst)
            )
            lines.append("")
    if r.worst_layers:
        by = {la.tensor: la for la in r.layers}
        lines.append(
            "Worst layers (SQNR): " + ", ".join(f"{code(t)} {by[t].sqnr_db:.1f} dB" for t in r.worst_layers[:show])
        )
        lines.append("")
    if not r.labeled:
        lines += ["_No labels: agreement and SQNR only._", ""]
    for n in r.notes:
        lines.append(f"> note: {n}")
    return "\n".join(lines).rstrip() + "\n"


def _pts(v: float | None) -> str:
    return "-" if v is None else f"{(0.0 if abs(v) < 1e-9 else -v):+.2f} pts"


def _rule_value(r: RuleResult, v: float | None) -> str:
    if v is None:
        return "-"
    digits = 5 if r.unit == "" else (3 if r.unit == "ms" else 2)
    return _num(v, r.unit, digits)


def gate_markdown(
    d: Decision, *, drift: DriftReport | None = None, bench: Sequence[BenchResult] = (), notes: Sequence[str] = ()
) -> str:
    icon = {"pass": "✅ pass", "fail": "❌ fail", "skip": "⏭️ skip"}
    verdict = "PASSED" if d.passed else f"FAILED ({len(d.failures)} of {len(d.results)} rules)"
    lines = [f"## edgecnn gate: {verdict}", "", f"Model {code(d.model)}, candidate {code(d.candidate)}.", ""]
    rows = [
        [
            icon[r.status.value],
            code(r.rule),
            _rule_value(r, r.measured),
            ("≤ " if r.bound == "max" else "≥ ") + _rule_value(r, r.limit),
            r.detail,
        ]
        for r in d.results
    ]
    lines += [table(["", "rule", "measured", "limit", "detail"], rows), ""]
    if drift is not None:
        lines.append(drift_markdown(drift, heading="###"))
    if bench:
        lines += ["### Latency", ""]
        lines.append(
            table(
                ["model", "runtime", "p50", "p99", "machine"],
                [
                    [
                        r.model_name,
                        r.runtime,
                        _num(r.stats.p50_ms, "ms", 3),
                        _num(r.stats.p99_ms, "ms", 3),
                        r.machine.cpu_model,
                    ]
                    for r in bench
                ],
            )
        )
        lines.append("")
    for n in notes:
        lines.append(f"> {n}")
    return "\n".join(lines).rstrip() + "\n"
