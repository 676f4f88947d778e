"""Markdown summaries (GitHub-flavoured tables) for CI job summaries: drift reports and gate decisions."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgecnn.bench.harness import BenchResult
    from edgecnn.drift.report import DriftReport
    from edgecnn.gate.decide import Decision, RuleResult


class Md(str):
    """Text that is already Markdown (a code span, a number we formatted): inserted as is."""


# Characters that make Markdown inline syntax: code spans, links and images, emphasis, strike-through, escapes.
_MD_SYNTAX = re.compile(r"([\\`*_\[\]~])")


def md_text(text: object) -> Md:
    """The one escaping of text from a file (a node, model, class or rule name, a path, a spec field, a note)
    into Markdown: shown as itself wherever it lands (a paragraph, a heading, a table cell), never live HTML
    (``<``, ``>``, ``&`` become entities), never a link, image, emphasis or code span (their characters are
    backslash-escaped), never a cell break (``|`` becomes ``&#124;``) nor a new line; control characters as
    ``\\xNN``. GitHub renders job summaries and PR comments as HTML, so a name like ``<img src=x onerror=...>``
    or ``</table>`` must stay text."""
    from edgecnn.report.fmt import plain

    s = plain(text).replace("\r", " ").replace("\n", " ")
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "&#124;")
    return Md(_MD_SYNTAX.sub(r"\\\1", s))


def code(name: object) -> Md:
    """``name`` (from a model or a file) as an inline code span that nothing in it can close: a fence longer
    than any run of backticks inside, control characters shown as ``\\xNN``. Markup and HTML inside stay text
    (a code span is never parsed); in a table cell its pipes are escaped by ``table``."""
    from edgecnn.report.fmt import plain

    text = plain(name).replace("\r", " ").replace("\n", " ")
    fence = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return Md(f"{fence}{pad}{text}{pad}{fence}")


def cell(value: object) -> str:
    """A table cell: ``Md`` as is with its pipes escaped (GFM splits cells before code spans), anything else
    through ``md_text``."""
    if isinstance(value, Md):
        return value.replace("|", "\\|")
    return md_text(value)


def table(header: Sequence[object], rows: Sequence[Sequence[object]], *, right: Sequence[int] = ()) -> str:
    """A GFM table; ``right``: indexes of right-aligned (numeric) columns."""
    rule = "|" + "".join("---:|" if i in right else "---|" for i in range(len(header)))
    out = ["| " + " | ".join(cell(h) for h in header) + " |", rule]
    out += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _num(v: float | None, unit: str = "", digits: int = 2) -> str:
    if v is None:
        return "-"
    sep = "" if unit in ("", "%") else " "
    return f"{v:.{digits}f}{sep}{unit}"


def drift_markdown(r: DriftReport, *, show: int = 5, heading: str = "###") -> str:
    lines = [
        f"{heading} Drift: {code(r.candidate.name)} vs {code(r.reference.name)} ({r.images} images, {md_text(r.runtime)})",
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
        rows.append([Md(f"{code(o.name)} SQNR / cosine"), "", f"{o.sqnr_db:.1f} dB / {o.cosine_mean:.5f}", ""])
    lines += [table(["metric", "reference", "candidate", "change"], rows), ""]
    if r.per_class:
        worst = [c for c in r.per_class if c.drop_pts > 0][:show]
        if worst:
            lines.append(
                "Classes that lost most: "
                + ", ".join(f"{md_text(c.name)} ({c.reference_pct:.1f}% → {c.candidate_pct:.1f}%)" for c in worst)
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
        lines.append(f"> note: {md_text(n)}")
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
        lines.append(f"> {md_text(n)}")
    return "\n".join(lines).rstrip() + "\n"
