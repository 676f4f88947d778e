"""`edgecnn sensitivity MODEL.onnx --calib DIR --data DIR`: rank layers by the accuracy (or SQNR) that
quantizing them costs; cached, with a progress bar, a table, a plot and JSON."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from edgecnn.cli import app, command, console, out_file, progress_bar
from edgecnn.errors import BadInputError
from edgecnn.fsutil import guard_outputs, model_files
from edgecnn.report.fmt import safe

if TYPE_CHECKING:
    pass

if TYPE_CHECKING:
    from edgecnn.drift.sensitivity import SensitivityReport


@command(app, "sensitivity")
def sensitivity_cmd(
    model: Annotated[Path, typer.Argument(help="Float ONNX model.")],
    calib: Annotated[Path, typer.Option("--calib", help="Calibration images.")],
    data: Annotated[Path, typer.Option("--data", help="Evaluation images (labels.csv for accuracy).")],
    mode: Annotated[
        str, typer.Option(help="one (only this layer INT8) | all-but-one (only this layer float).")
    ] = "one",
    rank_by: Annotated[str | None, typer.Option(help="top1 | sqnr (default: top1 with labels).")] = None,
    method: Annotated[str, typer.Option(help="Range estimator: minmax, percentile, entropy, mse.")] = "minmax",
    calib_samples: Annotated[int | None, typer.Option(help="Use the first N calibration images.")] = None,
    samples: Annotated[int | None, typer.Option(help="Use the first N evaluation images.")] = None,
    runtime: Annotated[str, typer.Option("--runtime", "-r", help="Runtime to score on.")] = "ort",
    target: Annotated[str | None, typer.Option(help="Target spec: its quantization scheme.")] = None,
    exclude: Annotated[list[str] | None, typer.Option("--exclude", help="Node or op type kept float.")] = None,
    preprocess: Annotated[Path | None, typer.Option(help="PreprocessSpec TOML (default: beside the data).")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Cache folder (default: ~/.cache/edgecnn).")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the cache.")] = False,
    input_shape: Annotated[list[str] | None, typer.Option("--input-shape", help="NAME=1x3x224x224")] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", parser=out_file, metavar="FILE", help="Write the ranking (JSON) here.")
    ] = None,
    plot: Annotated[
        Path | None, typer.Option(parser=out_file, metavar="FILE", help="Write a bar chart (PNG) here.")
    ] = None,
    show: Annotated[int, typer.Option(help="Rows in the table.")] = 15,
) -> None:
    """Quantize one layer at a time (or all but one) and rank the layers by what they cost."""
    from edgecnn.drift.evaluate import open_eval_data
    from edgecnn.drift.sensitivity import Mode, default_cache_dir, run_sensitivity
    from edgecnn.graph.load import load_model, parse_input_shapes
    from edgecnn.preprocess import find_spec
    from edgecnn.quantize.api import QuantizeConfig
    from edgecnn.quantize.dataset import ImageDataset
    from edgecnn.quantize.estimators import parse_method
    from edgecnn.quantize.params import resolve_scheme
    from edgecnn.quantize.qdq import OP_POLICIES
    from edgecnn.report.jsonio import write_json

    if mode not in ("one", "all-but-one"):
        raise BadInputError(f"--mode {mode!r}; valid values are one, all-but-one")
    guard_outputs(
        [*model_files(model), calib, data, preprocess, Path(target) if target and target.endswith(".toml") else None],
        {"--json": json_path, "--plot": plot},
    )
    shapes = parse_input_shapes(input_shape)
    loaded = load_model(model, shapes)
    ds = ImageDataset.open(calib, find_spec(calib, preprocess), calib_samples, option="--calib-samples")
    evald = open_eval_data(
        data,
        loaded,
        preprocess=preprocess,
        samples=samples,
        require_labels="--rank-by top1" if rank_by == "top1" else None,
    )
    del loaded
    config = QuantizeConfig(
        method=parse_method(method),
        scheme=resolve_scheme(target, runtime),
        exclude=frozenset(exclude or []),
        # the variants are the files `quantize --runtime/--target` would write
        runtime="integer" if target else runtime if runtime in OP_POLICIES else "ort",
    )
    with progress_bar() as bar:
        task = bar.add_task("sensitivity", total=None)
        rep = run_sensitivity(
            model,
            ds,
            evald,
            config,
            mode=Mode(mode),
            rank_by=rank_by,
            runtime=runtime,
            cache_dir=None if no_cache else (cache_dir or default_cache_dir()),
            input_shapes=shapes,
            progress=lambda done, total, what: bar.update(
                task, completed=done, total=total, description=f"sensitivity {what[-40:]}"
            ),
        )
    print_sensitivity(rep, show=show)
    if json_path is not None:
        write_json(json_path, rep.to_dict(), kind="sensitivity", schema_version=1)
    if plot is not None:
        from edgecnn.report.plots import INSTALL_HINT, write_sensitivity_plot

        by_top1 = rep.rank_by == "top1"
        what = "top-1 points" if by_top1 else "output SQNR dB"
        title = f"{Path(rep.model).name}: cost of quantizing {'each layer alone' if rep.mode == 'one' else 'all but each layer'}"
        if (
            write_sensitivity_plot(
                [r.node for r in rep.layers],
                [(r.cost_top1_pts or 0.0) if by_top1 else r.cost_sqnr_db for r in rep.layers],
                plot,
                xlabel=f"cost ({what})"
                + ("" if by_top1 or rep.mode != "one" else ": minus the SQNR of the model with only this layer INT8"),
                title=title,
            )
            is None
        ):
            console.print(f"[yellow]matplotlib is not installed: no plot written ({INSTALL_HINT})[/]")


def print_sensitivity(rep: SensitivityReport, *, show: int = 15) -> None:
    alone = rep.mode == "one"
    t = Table(
        title=f"sensitivity of {safe(Path(rep.model).name)} ({'one layer INT8 at a time' if alone else 'all but one layer INT8'}, "
        f"{rep.images} images, ranked by {rep.rank_by})"
    )
    for col in ("rank", "node", "op", "top-1", "top-1 cost", "agreement", "SQNR dB"):
        t.add_column(col, justify="left" if col in ("node", "op") else "right")
    for i, r in enumerate(rep.layers[:show], start=1):
        s = r.score
        t.add_row(
            str(i),
            safe(r.node),
            safe(r.op) + (f" (with {safe(', '.join(r.quantized_with))})" if r.quantized_with else ""),
            "-" if s.top1_pct is None else f"{s.top1_pct:.2f}%",
            "-" if r.cost_top1_pts is None else f"{r.cost_top1_pts:+.2f} pts",
            f"{s.agreement_pct:.2f}%",
            f"{s.sqnr_db:.1f}",
        )
    console.print(t)
    fl = "-" if rep.float_top1_pct is None else f"{rep.float_top1_pct:.2f}%"
    i8 = "-" if rep.int8.top1_pct is None else f"{rep.int8.top1_pct:.2f}%"
    console.print(
        f"float top-1 {fl}; all layers INT8: top-1 {i8}, agreement {rep.int8.agreement_pct:.2f}%, "
        f"output SQNR {rep.int8.sqnr_db:.1f} dB"
    )
    if alone:
        console.print("  top-1 cost: float top-1 minus the top-1 with only this layer in INT8")
    else:
        console.print("  top-1 cost: top-1 won back by keeping only this layer in float")
    if rep.cache_file:
        console.print(f"  cache: {safe(rep.cache_file)} ({rep.cached_layers} result(s) reused)")
    if not rep.labeled:
        console.print("[yellow]note:[/] no labels.csv in the data folder: ranked by output SQNR only")
