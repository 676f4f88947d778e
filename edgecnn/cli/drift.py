"""`edgecnn drift REFERENCE.onnx CANDIDATE.onnx --data DIR`: accuracy, agreement, per-class recall, output and
per-layer SQNR of a candidate (e.g. the INT8 model) against a reference (e.g. the float model)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from edgecnn.cli import app, command, console, out_file, progress_bar
from edgecnn.fsutil import atomic_write_text, guard_outputs, model_files
from edgecnn.report.fmt import safe

if TYPE_CHECKING:
    from edgecnn.drift.report import DriftReport


@command(app, "drift")
def drift_cmd(
    reference: Annotated[Path, typer.Argument(help="Reference model (e.g. the float ONNX).")],
    candidate: Annotated[Path, typer.Argument(help="Candidate model (e.g. the quantized ONNX).")],
    data: Annotated[Path, typer.Option("--data", help="Evaluation images (+ labels.csv: file,label).")],
    runtime: Annotated[str, typer.Option("--runtime", "-r", help="ort | openvino | litert.")] = "ort",
    preprocess: Annotated[Path | None, typer.Option(help="PreprocessSpec TOML (default: beside the data).")] = None,
    labels: Annotated[Path | None, typer.Option(help="Labels CSV (default: DATA/labels.csv).")] = None,
    require_labels: Annotated[bool, typer.Option("--require-labels", help="Fail (exit 2) without labels.")] = False,
    samples: Annotated[int | None, typer.Option(help="Use the first N images (default: all).")] = None,
    layers: Annotated[bool, typer.Option("--layers/--no-layers", help="Per-layer SQNR of matching tensors.")] = True,
    batch: Annotated[int, typer.Option(help="Images per inference batch.")] = 16,
    threads: Annotated[int, typer.Option(help="Runtime threads (0: the runtime's choice).")] = 0,
    input_shape: Annotated[list[str] | None, typer.Option("--input-shape", help="NAME=1x3x224x224")] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", parser=out_file, metavar="FILE", help="Write the drift report (JSON) here.")
    ] = None,
    plot: Annotated[
        Path | None, typer.Option(parser=out_file, metavar="FILE", help="Write a per-layer SQNR plot (PNG) here.")
    ] = None,
    markdown: Annotated[
        Path | None, typer.Option(parser=out_file, metavar="FILE", help="Write a Markdown summary here.")
    ] = None,
    show: Annotated[int, typer.Option(help="Rows per table (classes, flips, layers).")] = 8,
) -> None:
    """Run REFERENCE and CANDIDATE over --data and report how far the candidate drifted: top-1/top-5, agreement,
    per-class recall, output cosine/SQNR, flipped images, and SQNR layer by layer."""
    from edgecnn.drift.evaluate import evaluate_drift
    from edgecnn.drift.report import write_report
    from edgecnn.graph.load import parse_input_shapes
    from edgecnn.runtimes import check_threads

    guard_outputs(
        [*model_files(reference), *model_files(candidate), data, preprocess, labels],
        {"--json": json_path, "--plot": plot, "--markdown": markdown},
    )
    check_threads(threads)
    with progress_bar("drift") as bar:
        task = bar.add_task("drift", total=None)
        report = evaluate_drift(
            reference,
            candidate,
            data,
            runtime=runtime,
            preprocess=preprocess,
            labels_file=labels,
            samples=samples,
            require_labels=require_labels,
            layers=layers,
            batch=batch,
            threads=threads,
            input_shapes=parse_input_shapes(input_shape),
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    print_report(report, show=show)
    if json_path is not None:
        write_report(json_path, report)
    if plot is not None:
        from edgecnn.report.plots import INSTALL_HINT, write_layer_sqnr_plot

        if not report.layers:
            console.print("[yellow]no per-layer comparison: no plot written[/]")
        elif (
            write_layer_sqnr_plot(
                [la.tensor for la in report.layers if not la.clamped_by],
                [la.sqnr_db for la in report.layers if not la.clamped_by],
                plot,
                title=f"per-layer SQNR: {report.candidate.name} vs {report.reference.name} ({report.images} images)",
                worst=report.worst_layers,
            )
            is None
        ):
            console.print(f"[yellow]matplotlib is not installed: no plot written ({INSTALL_HINT})[/]")
    if markdown is not None:
        from edgecnn.report.markdown import drift_markdown

        atomic_write_text(markdown, drift_markdown(report, show=show))


def _f(v: float | None, unit: str = "", digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}{unit}"


def print_report(r: DriftReport, *, show: int = 8) -> None:
    t = Table(title=safe(f"drift: {r.candidate.name} vs {r.reference.name} on {r.images} images [{r.runtime}]"))
    t.add_column("metric")
    t.add_column("reference", justify="right")
    t.add_column("candidate", justify="right")
    t.add_column("change", justify="right")
    if r.labeled and r.reference_top1_pct is not None:
        t.add_row("top-1", _f(r.reference_top1_pct, "%"), _f(r.candidate_top1_pct, "%"), _pts(r.top1_drop_pts))
        t.add_row(f"top-{r.topk}", _f(r.reference_topk_pct, "%"), _f(r.candidate_topk_pct, "%"), _pts(r.topk_drop_pts))
    if r.agreement_pct is not None:
        t.add_row("prediction agreement", "", _f(r.agreement_pct, "%"), f"{r.flips_total} flipped")
    for o in r.outputs:
        t.add_row(safe(f"output {o.name}: SQNR"), "", _f(o.sqnr_db, " dB", 1), "")
        if o.mostly_constant:  # a mask/heatmap near one value: the constant inflates the SQNR above
            t.add_row(safe(f"output {o.name}: SQNR about its variation"), "", _f(o.sqnr_ac_db, " dB", 1), "")
        t.add_row(safe(f"output {o.name}: cosine mean / min"), "", f"{o.cosine_mean:.5f} / {o.cosine_min:.5f}", "")
    console.print(t)
    if r.per_class:
        c = Table(title="per-class recall (largest drop first)")
        for col in ("class", "images", "reference", "candidate", "change"):
            c.add_column(col, justify="left" if col == "class" else "right")
        for row in r.per_class[:show]:
            c.add_row(
                safe(f"{row.index} {row.name}" if row.name != str(row.index) else row.name),
                str(row.support),
                _f(row.reference_pct, "%", 1),
                _f(row.candidate_pct, "%", 1),
                _pts(row.drop_pts),
            )
        console.print(c)
    if r.flips:
        f = Table(title=f"flipped predictions ({r.flips_total}; those the candidate broke first)")
        for col in ("image", "label", "reference", "candidate", "change"):
            f.add_column(col)
        for fl in r.flips[:show]:
            f.add_row(
                safe(fl.file),
                "-" if fl.label is None else str(fl.label),
                str(fl.reference_pred),
                str(fl.candidate_pred),
                fl.change,
            )
        if r.flips_total > show:
            f.add_row("…", "", "", "", f"{r.flips_total - show} more (see --json)")
        console.print(f)
    if r.layers:
        worst = set(r.worst_layers)
        judged = [la for la in r.layers if not la.clamped_by]
        lt = Table(title=f"per-layer SQNR, {len(r.layers)} matching tensors (worst {len(worst)} in red)")
        for col in ("tensor", "op", "SQNR dB", "cosine", "in dB", "noise added"):
            lt.add_column(col, justify="left" if col in ("tensor", "op") else "right")
        for la in sorted(judged, key=lambda la: la.sqnr_db)[:show]:
            lt.add_row(
                safe(la.tensor),
                safe(la.op),
                f"{la.sqnr_db:.1f}",
                f"{la.cosine:.5f}",
                f"{la.input_sqnr_db:.1f}",
                f"{la.added_noise:.2g}",
                style="red" if la.tensor in worst else None,
            )
        console.print(lt)
        console.print(
            "  'in dB': SQNR of the compared tensors feeding it; 'noise added': noise-to-signal power this layer "
            "adds (10^(-SQNR/10) - 10^(-in/10)), where error enters"
        )
        clamped = len(r.layers) - len(judged)
        if clamped:
            console.print(
                f"  {clamped} tensors read only by a clamping activation (HardSigmoid, Relu, Sigmoid...) are judged "
                "after it and not listed: the quantizer may clip them where the activation is flat (see --json)"
            )
        worst_layer = next((la for la in judged if la.tensor == r.lossiest_layer), None)
        if worst_layer is not None:
            console.print(
                f"  the layer that adds the most error: {safe(worst_layer.node)} ({safe(worst_layer.op)}), "
                f"{worst_layer.input_sqnr_db:.1f} dB in -> {worst_layer.sqnr_db:.1f} dB out "
                f"(tensor {safe(worst_layer.tensor)}); try `edgecnn sensitivity` to confirm, --exclude to keep it float"
            )
    for n in r.notes:
        console.print(f"[yellow]note:[/] {safe(n)}")


def _pts(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{(0.0 if abs(v) < 1e-9 else -v):+.2f} pts"
