"""`edgecnn gate --policy POLICY.toml --drift DRIFT.json [--bench BENCH.json] [--baseline BASE.json]`: the CI
accuracy- and latency-regression gate. Exit 0 pass, 1 a rule failed, 2 bad input."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from edgecnn.cli import app, command, console, out_file
from edgecnn.errors import CheckFailedError
from edgecnn.fsutil import atomic_write_text, guard_outputs
from edgecnn.report.fmt import safe

if TYPE_CHECKING:
    from edgecnn.gate.decide import Decision


@command(app, "gate")
def gate_cmd(
    policy: Annotated[Path, typer.Option("--policy", help="Policy TOML: a \\[rules] table of limits.")],
    drift: Annotated[Path, typer.Option("--drift", help="Drift report (edgecnn drift --json).")],
    bench: Annotated[
        list[Path] | None, typer.Option("--bench", help="Bench report(s) (edgecnn bench --json), repeatable.")
    ] = None,
    baseline: Annotated[Path | None, typer.Option("--baseline", help="Baseline JSON to compare against.")] = None,
    update_baseline: Annotated[
        bool,
        typer.Option("--update-baseline", help="Write the current numbers as the new baseline when the gate passes."),
    ] = False,
    junit: Annotated[
        Path | None,
        typer.Option("--junit", parser=out_file, metavar="FILE", help="Write JUnit XML (one test case per rule)."),
    ] = None,
    markdown: Annotated[
        Path | None,
        typer.Option("--markdown", parser=out_file, metavar="FILE", help="Write a Markdown summary (CI job summary)."),
    ] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", parser=out_file, metavar="FILE", help="Write the decision as JSON.")
    ] = None,
    force_baseline: Annotated[
        bool,
        typer.Option(
            "--force-baseline", help="With --update-baseline: replace a baseline of another model or other data."
        ),
    ] = False,
) -> None:
    """Judge a candidate model: every policy rule with its measured value and limit, pass/fail, JUnit and Markdown."""
    from edgecnn.bench.report import read_report as read_bench
    from edgecnn.drift.report import read_report as read_drift
    from edgecnn.gate.baseline import baseline_from, plan_baseline, write_baseline
    from edgecnn.gate.decide import check_inputs, decide
    from edgecnn.gate.policy import load_policy

    t0 = time.perf_counter()
    guard_outputs(
        [policy, drift, *(bench or []), None if update_baseline else baseline],
        {
            "--junit": junit,
            "--markdown": markdown,
            "--json": json_path,
            "--baseline": baseline if update_baseline else None,
        },
    )
    pol = load_policy(policy)
    report = read_drift(drift)
    results, sources = [], []
    for b in bench or []:
        for r in read_bench(b):
            results.append(r)
            sources.append(str(b))
    plan = plan_baseline(baseline, report, update=update_baseline, force=force_baseline)
    notes = list(plan.notes)
    mine = check_inputs(pol, report, results, plan.compare, have_baseline_file=plan.writes_first, bench_sources=sources)
    decision = decide(pol, report, mine, plan.compare)
    print_decision(decision)
    write, note = plan.after(decision.passed)
    if write and plan.path is not None:
        write_baseline(plan.path, baseline_from(report, mine))
    if note:
        notes.append(note)
    for n in notes:
        console.print(f"[yellow]note:[/] {safe(n)}")
    if junit is not None:
        from edgecnn.report.junit import write_gate_junit

        write_gate_junit(junit, decision, seconds=time.perf_counter() - t0)
    if markdown is not None:
        from edgecnn.report.markdown import gate_markdown

        atomic_write_text(markdown, gate_markdown(decision, drift=report, bench=mine, notes=notes))
    if json_path is not None:
        from edgecnn.report.jsonio import write_json

        write_json(json_path, decision.to_dict(), kind="gate", schema_version=1)
    if not decision.passed:
        raise CheckFailedError(
            "gate failed: "
            + "; ".join(
                f"{r.rule} {_v(r.measured, r.unit)} {'>' if r.bound == 'max' else '<'} {_v(r.limit, r.unit)}"
                for r in decision.failures
            )
        )


def _v(v: float | None, unit: str) -> str:
    if v is None:
        return "-"
    digits = 5 if unit == "" else (3 if unit == "ms" else 2)
    return f"{v:.{digits}f}{'' if unit in ('', '%') else ' '}{unit}"


def print_decision(d: Decision) -> None:
    t = Table(title=safe(f"gate: {d.candidate} ({d.model}): {'PASSED' if d.passed else 'FAILED'}"))
    for col in ("rule", "status", "measured", "limit", "detail"):
        t.add_column(col, justify="right" if col in ("measured", "limit") else "left")
    style = {"pass": "green", "fail": "bold red", "skip": "yellow"}
    for r in d.results:
        t.add_row(
            safe(r.rule),
            f"[{style[r.status.value]}]{r.status.value}[/]",
            _v(r.measured, r.unit),
            ("≤ " if r.bound == "max" else "≥ ") + _v(r.limit, r.unit),
            safe(r.detail),
        )
    console.print(t)
