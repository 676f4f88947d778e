"""`edgecnn inspect MODEL.onnx`: validate a model and print its per-layer cost table."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from edgecnn.cli import app, command, console, out_file
from edgecnn.fsutil import guard_outputs, model_files
from edgecnn.report.fmt import human_bytes, human_count, safe

if TYPE_CHECKING:
    from edgecnn.graph.summary import ModelSummary

InputShape = Annotated[
    list[str] | None,
    typer.Option("--input-shape", help="Fix dynamic dims: NAME=1x3x224x224 (repeatable)."),
]


@command(app, "inspect")
def inspect_cmd(
    model: Annotated[Path, typer.Argument(help="ONNX model file.")],
    input_shape: InputShape = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", parser=out_file, metavar="FILE", help="Write the summary as JSON here.")
    ] = None,
    top: Annotated[int, typer.Option(help="Rows of the per-layer table (0 = all).")] = 0,
) -> None:
    """Validate MODEL (full checker, strict shape inference) and print params, MACs, bytes and flags per layer.

    A .tflite file: its inputs and outputs (layout, quantization), operators and the PreprocessSpec it carries."""
    from edgecnn.graph.artifact import ModelFormat, format_of
    from edgecnn.graph.load import load_model, parse_input_shapes
    from edgecnn.graph.summary import SCHEMA_VERSION, summarize
    from edgecnn.report.jsonio import write_json

    guard_outputs(model_files(model), {"--json": json_path})
    if format_of(model) is ModelFormat.TFLITE:
        return _inspect_tflite(model, json_path)
    loaded = load_model(model, parse_input_shapes(input_shape))
    summary = summarize(loaded)
    print_summary(summary, top=top)
    if json_path is not None:
        write_json(json_path, summary.to_dict(), kind="inspect", schema_version=SCHEMA_VERSION)
        console.print(f"wrote {safe(json_path)}")


def print_summary(s: ModelSummary, top: int = 0) -> None:
    console.print(f"[bold]{safe(s.path)}[/]  opset {s.opset}  IR {s.ir_version}  producer {safe(s.producer or '?')}")
    io = Table(title="Inputs and outputs", show_lines=False)
    for col in ("kind", "name", "dtype", "shape", "layout"):
        io.add_column(col)
    for kind, items in (("input", s.inputs), ("output", s.outputs)):
        for t in items:
            io.add_row(kind, safe(t.name), t.dtype, safe("x".join(map(str, t.shape))), t.layout or "-")
    console.print(io)

    layers = s.layers
    if top:
        layers = sorted(layers, key=lambda lay: lay.macs, reverse=True)[:top]
    tab = Table(title="Layers" + (f" (top {top} by MACs)" if top else ""))
    for col, just in (
        ("#", "right"), ("name", "left"), ("op", "left"), ("output", "left"), ("params", "right"),
        ("MACs", "right"), ("read", "right"), ("written", "right"), ("MAC/B", "right"), ("flags", "left"),
    ):  # fmt: skip
        tab.add_column(col, justify=just)  # type: ignore[arg-type]
    index = {id(lay): i for i, lay in enumerate(s.layers)}
    for lay in layers:
        tab.add_row(
            str(index[id(lay)]),
            safe(lay.name),
            safe(lay.op_type),
            safe("x".join(map(str, lay.output_shape))),
            human_count(lay.params) if lay.params else "",
            human_count(lay.macs) if lay.macs else "",
            human_bytes(lay.bytes_read),
            human_bytes(lay.bytes_written),
            f"{lay.intensity:.1f}" if lay.macs else "",
            safe(", ".join(lay.flags)),
        )
    console.print(tab)

    tot = Table(title="Totals", show_header=False)
    tot.add_column("what")
    tot.add_column("value", justify="right")
    tot.add_row("parameters", f"{s.total_params:,}")
    tot.add_row("MACs", f"{s.total_macs:,} ({human_count(s.total_macs)})")
    tot.add_row("model file", human_bytes(s.model_bytes))
    tot.add_row("weights", human_bytes(s.weight_bytes))
    tot.add_row("peak activations (est.)", human_bytes(s.peak_activation_bytes))
    tot.add_row("ops", safe(", ".join(f"{k} {v}" for k, v in s.op_histogram.items())))
    console.print(tot)
    for w in s.warnings:
        console.print(f"[yellow]warning:[/] {safe(w)}", highlight=False)


def _inspect_tflite(path: Path, json_path: Path | None) -> None:
    from edgecnn.graph.artifact import SCHEMA_VERSION as ARTIFACT_SCHEMA
    from edgecnn.graph.artifact import open_artifact
    from edgecnn.report.jsonio import write_json

    art = open_artifact(path)
    console.print(f"[bold]{safe(art.path)}[/]  TFLite  {human_bytes(art.size_bytes)}  {safe(art.description)}")
    io = Table(title="Inputs and outputs")
    for col in ("kind", "name", "dtype", "shape", "layout", "quantization"):
        io.add_column(col)
    for kind, items in (("input", art.inputs), ("output", art.outputs)):
        for t in items:
            q = f"scale {t.scale:.6g}, zero point {t.zero_point}" if t.scale is not None else "-"
            io.add_row(
                kind,
                safe(t.name),
                t.dtype,
                "x".join(map(str, t.shape)),
                art.input_layout if kind == "input" else "-",
                q,
            )
    console.print(io)
    tot = Table(title="Totals", show_header=False)
    tot.add_column("what")
    tot.add_column("value")
    tot.add_row("operators", f"{sum(art.ops.values())}: " + ", ".join(f"{k} {v}" for k, v in art.ops.items()))
    tot.add_row(
        "preprocess (metadata)", safe(art.preprocess.to_json()) if art.preprocess else "none: layout assumed NHWC"
    )
    console.print(tot)
    if json_path is not None:
        write_json(json_path, art.to_dict(), kind="inspect-tflite", schema_version=ARTIFACT_SCHEMA)
        console.print(f"wrote {safe(json_path)}")
