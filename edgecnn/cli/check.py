"""`edgecnn check MODEL.onnx --target NAME ...`: which nodes run where on each target, and exactly why."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from edgecnn.cli import app, command, console, out_file
from edgecnn.errors import BadInputError, CheckFailedError
from edgecnn.fsutil import atomic_write_text, guard_outputs, model_files
from edgecnn.report.fmt import human_count, safe

if TYPE_CHECKING:
    from edgecnn.check.placement import SupportReport


@command(app, "check")
def check_cmd(
    model: Annotated[
        Path, typer.Argument(help="ONNX model (float or QDQ-quantized), or a .tflite file: then its own operators.")
    ],
    target: Annotated[
        list[str],
        typer.Option("--target", "-t", help="Target name (see `edgecnn targets list`) or a .toml path; repeatable."),
    ],
    input_shape: Annotated[
        list[str] | None, typer.Option("--input-shape", help="Fix dynamic dims: NAME=1x3x224x224 (repeatable).")
    ] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", parser=out_file, metavar="FILE", help="Write the full report as JSON here.")
    ] = None,
    markdown: Annotated[
        Path | None,
        typer.Option("--markdown", parser=out_file, metavar="FILE", help="Write a Markdown report (for CI) here."),
    ] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when any node falls back or cannot run.")] = False,
    all_nodes: Annotated[
        bool, typer.Option("--all-nodes", help="List every node, not only those off the accelerator.")
    ] = False,
) -> None:
    """Place every node of MODEL on each TARGET (accelerator or fallback) and give every reason a node falls back."""
    from edgecnn.check.placement import SCHEMA_VERSION, check_model
    from edgecnn.check.report import render_markdown
    from edgecnn.check.spec import load_target
    from edgecnn.check.tflite_graph import check_tflite
    from edgecnn.graph.load import load_model, parse_input_shapes
    from edgecnn.report.jsonio import write_json

    guard_outputs(
        [*model_files(model), *(Path(t) for t in target if t.endswith(".toml"))],
        {"--json": json_path, "--markdown": markdown},
    )
    specs = [load_target(t) for t in target]
    if model.suffix.lower() == ".tflite":
        from edgecnn.graph.load import model_file_size

        model_file_size(model, "a .tflite model")
        if input_shape:
            raise BadInputError(f"{model}: --input-shape applies to ONNX models; a .tflite file has fixed shapes")
        report = check_tflite(model, specs)  # the verdict is on the file that ships
    else:
        loaded = load_model(model, parse_input_shapes(input_shape))
        report = check_model(loaded, specs)
    print_report(report, all_nodes=all_nodes)
    if json_path is not None:
        write_json(json_path, report.to_dict(), kind="check", schema_version=SCHEMA_VERSION)
        console.print(f"wrote {safe(json_path)}")
    if markdown is not None:
        atomic_write_text(markdown, render_markdown(report))
        console.print(f"wrote {safe(markdown)}")
    if strict and report.any_fallback:
        bad = [t.target for t in report.targets if not t.all_accelerated]
        raise CheckFailedError(
            f"{model}: --strict: nodes fall back or cannot run on {', '.join(bad)}; see the reasons above"
        )


def print_report(report: SupportReport, *, all_nodes: bool = False) -> None:
    from edgecnn.check.placement import Placement
    from edgecnn.check.report import folded_line, placement_label, summary_rows

    for t in report.targets:
        rows = [n for n in t.nodes if all_nodes or n.placement != Placement.ACCELERATOR]
        title = safe(
            f"{t.target}: {t.accelerator}" + (f" (fallback: {t.fallback})" if t.fallback else " (no fallback)")
        )
        if not rows:
            console.print(f"[bold]{title}[/]: every node runs on the accelerator", highlight=False)
            continue
        tab = Table(title=title, show_lines=True, title_justify="left")
        for col, just in (("node", "left"), ("op", "left"), ("prec", "left"), ("MACs", "right"),
                          ("placement", "left"), ("reasons", "left")):  # fmt: skip
            tab.add_column(col, justify=just)  # type: ignore[arg-type]
        for n in rows:
            color = {"accelerator": "green", "fallback": "yellow", "unsupported": "red"}.get(n.placement, "")
            tab.add_row(
                safe(n.name), safe(n.op_type + (f" -> {'+'.join(n.maps_to)}" if n.maps_to else "")), n.precision,
                human_count(n.macs) if n.macs else "", f"[{color}]{safe(placement_label(n))}[/]",
                safe("\n".join(f.reason for f in n.failures)),
            )  # fmt: skip
        console.print(tab)
        for a in t.advice:
            console.print(f"  [bold]{safe(a.fix_kind)}[/] ({a.nodes} node(s)): {safe(a.example)}", highlight=False)
    summary = Table(title=f"Summary: {safe(report.model)}", title_justify="left")
    summary.add_column("")
    for t in report.targets:
        summary.add_column(safe(t.target))
    for label, cells in summary_rows(report):
        summary.add_row(safe(label), *(safe(c) for c in cells))
    worst = [safe(", ".join(f"{w.name} ({w.op_type})" for w in t.worst[:3]) or "-") for t in report.targets]
    summary.add_row("worst offenders", *worst)
    console.print(summary)
    if folded_line(report):
        console.print(folded_line(report), highlight=False)
    for t in report.targets:
        if t.checked_as:
            console.print(
                f"{t.target}: a float model, checked as `edgecnn quantize --target {t.target}` would write it "
                f"({t.checked_as}); the verdicts above assume that quantization.",
                highlight=False,
            )
