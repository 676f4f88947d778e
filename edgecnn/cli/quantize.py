"""`edgecnn quantize MODEL.onnx --calib DIR -o OUT.onnx`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from edgecnn.cli import app, command, console, out_file, progress_bar
from edgecnn.errors import BadInputError
from edgecnn.fsutil import atomic_path, guard_outputs, model_files, save_onnx
from edgecnn.report.fmt import human_bytes, safe

if TYPE_CHECKING:
    import onnx

    from edgecnn.drift.budget import BudgetReport
    from edgecnn.quantize.api import QuantizeConfig, QuantizeReport
    from edgecnn.quantize.dataset import CalibrationData, ImageDataset


@command(app, "quantize")
def quantize_cmd(
    model: Annotated[Path, typer.Argument(help="Float ONNX model.")],
    output: Annotated[
        Path,
        typer.Option("-o", "--output", parser=out_file, metavar="FILE", help="Where to write the quantized model."),
    ],
    calib: Annotated[
        list[str] | None,
        typer.Option(
            "--calib", help="Folder of calibration images (INT8); NAME=DIR once per input for a multi-input model."
        ),
    ] = None,
    precision: Annotated[str, typer.Option(help="int8 or fp16.")] = "int8",
    method: Annotated[
        str, typer.Option(help="Range estimator: auto (per tensor), minmax, percentile, entropy, mse.")
    ] = "auto",
    samples: Annotated[int | None, typer.Option(help="Use the first N images (default: all).")] = None,
    batch: Annotated[int, typer.Option(help="Calibration batch size.")] = 8,
    target: Annotated[str | None, typer.Option(help="Target spec name or TOML path: its quantization scheme.")] = None,
    runtime: Annotated[
        str, typer.Option(help="Runtime whose scheme and integer kernels to target without --target: ort, openvino.")
    ] = "ort",
    per_channel: Annotated[bool, typer.Option("--per-channel/--per-tensor", help="Weight scales.")] = True,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", help="Node name or op type to keep in float (repeatable).")
    ] = None,
    preprocess: Annotated[Path | None, typer.Option(help="PreprocessSpec TOML (default: beside the data).")] = None,
    input_shape: Annotated[list[str] | None, typer.Option("--input-shape", help="NAME=1x3x224x224")] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", parser=out_file, metavar="FILE", help="Write the quantization report here.")
    ] = None,
    max_drop: Annotated[
        float | None, typer.Option(help="Top-1 points the INT8 model may lose on --data; sensitive layers stay float.")
    ] = None,
    data: Annotated[Path | None, typer.Option("--data", help="Labeled evaluation images for --max-drop.")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Sensitivity cache for --max-drop.")] = None,
    workers: Annotated[int, typer.Option(help="Calibration shards collected in parallel, merged exactly.")] = 1,
    backend: Annotated[str, typer.Option(help="Where shards run: local (processes) or ray (RAY_ADDRESS).")] = "local",
    bias_correction: Annotated[
        bool,
        typer.Option(
            "--bias-correction/--no-bias-correction",
            help="Correct Conv biases for the mean error of weight rounding (one extra pass).",
        ),
    ] = True,
    silu_form: Annotated[
        str,
        typer.Option(
            help="--runtime openvino: SiLU as exported (sigmoid) or as x*(0.5+0.5*tanh(x/2)) (tanh); auto: tanh "
            "on a CPU with AMX int8, where OpenVINO's int8 conv with a fused Sigmoid is slow."
        ),
    ] = "auto",
) -> None:
    """Quantize MODEL to INT8 (QDQ, calibrated on real images) or FP16, verified and stamped with provenance."""
    from edgecnn.graph.load import parse_input_shapes
    from edgecnn.quantize.api import SCHEMA_VERSION, SILU_FORMS, Precision, QuantizeConfig, quantize
    from edgecnn.quantize.estimators import parse_method
    from edgecnn.quantize.params import QuantScheme, resolve_scheme
    from edgecnn.report.jsonio import write_json

    if precision not in ("int8", "fp16"):
        raise BadInputError(f"--precision {precision!r}; valid values are int8, fp16")
    prec = Precision(precision)
    meth = parse_method(method)
    if batch <= 0:
        raise BadInputError(f"--batch {batch}; expected a positive integer")
    guard_outputs(
        [
            *model_files(model),
            *_calib_dirs(calib),
            data,
            preprocess,
            Path(target) if target and target.endswith(".toml") else None,
        ],
        {"-o": output, "--json": json_path},
    )
    if max_drop is not None and not (0 <= max_drop <= 100):
        raise BadInputError(f"--max-drop {max_drop}; expected 0..100 percentage points of top-1")
    shapes = parse_input_shapes(input_shape)
    dataset = None
    if prec is Precision.INT8 and calib is None:
        raise BadInputError("--calib DIR is required for --precision int8 (a folder of representative images)")
    if calib:
        dataset = open_calibration(calib, preprocess, samples)
    scheme = resolve_scheme(target, runtime)
    if not per_channel:
        scheme = QuantScheme(**{**scheme.to_dict(), "weights_per_channel": False})  # type: ignore[arg-type]
    if exclude:
        check_exclude(model, exclude)
    keep_float: frozenset[str] = frozenset()
    if target and prec is Precision.INT8:
        from edgecnn.check.spec import load_target

        keep_float = load_target(target).float_only_ops  # ops the target runs only in float stay float
    from edgecnn.quantize.distributed import parse_backend

    if silu_form not in SILU_FORMS:
        raise BadInputError(f"--silu-form {silu_form!r}; valid values are {', '.join(SILU_FORMS)}")
    if silu_form != "auto" and (target or runtime != "openvino" or prec is not Precision.INT8):
        raise BadInputError(
            f"--silu-form {silu_form}: applies to --precision int8 --runtime openvino without --target (got "
            f"{'--target ' + target if target else '--runtime ' + runtime + ' --precision ' + precision})"
        )
    if not 1 <= workers <= 1024:
        raise BadInputError(f"--workers {workers}; expected an integer from 1 to 1024")
    config = QuantizeConfig(
        precision=prec,
        method=meth,
        batch=batch,
        scheme=scheme,
        exclude=frozenset(exclude or []) | keep_float,
        runtime="integer" if target else runtime,  # a target's accelerator wants every op it can in integer
        workers=workers,
        backend=parse_backend(backend).value,
        bias_correction=bias_correction,
        silu_form=silu_form,
    )
    if max_drop is not None or data is not None:
        if max_drop is None or data is None or prec is not Precision.INT8:
            raise BadInputError("--max-drop PTS and --data DIR go together, with --precision int8")
        return quantize_budgeted(
            model, output, dataset, config, max_drop, data, preprocess, cache_dir, shapes, json_path
        )

    with progress_bar("calibrating", disable=prec is Precision.FP16) as bar:
        task = bar.add_task("calib", total=len(dataset) if dataset else 0)
        out, report = quantize(
            model, dataset, config, progress=lambda done, total: bar.update(task, completed=done), input_shapes=shapes
        )

    save_model(out, output)
    print_report(report, output)
    if json_path is not None:
        write_json(
            json_path,
            {"model": str(model), "output": str(output), **report.to_dict()},
            kind="quantize",
            schema_version=SCHEMA_VERSION,
        )


def save_model(model: onnx.ModelProto, output: Path) -> None:
    """Write ``model`` atomically as one file and check it; a model protobuf cannot hold (> 2 GiB) is exit 2."""
    import onnx

    with atomic_path(output) as tmp:
        try:
            save_onnx(model, tmp)
        except ValueError as e:  # protobuf EncodeError: a message over 2 GiB
            raise BadInputError(
                f"{output}: the quantized model cannot be written as one ONNX file ({e.__class__.__name__}: "
                "a protobuf message is limited to 2 GiB); quantize a smaller model"
            ) from None
        onnx.checker.check_model(str(tmp), full_check=True)


def _calib_dirs(calib: list[str] | None) -> list[Path]:
    """The folders ``--calib DIR`` or ``--calib NAME=DIR`` name (what quantize reads)."""
    return [Path(c.partition("=")[2]) if "=" in c and not Path(c).exists() else Path(c) for c in calib or []]


def open_calibration(calib: list[str], preprocess: Path | None, samples: int | None) -> CalibrationData:
    """``--calib DIR`` for a single-input model, or ``--calib NAME=DIR`` once per input."""
    from edgecnn.preprocess import find_spec
    from edgecnn.quantize.dataset import ImageDataset, MultiInputDataset

    named = [c for c in calib if "=" in c and not Path(c).exists()]
    if not named:
        if len(calib) > 1:
            raise BadInputError(
                f"--calib given {len(calib)} times ({', '.join(calib)}); for a multi-input model write NAME=DIR per input"
            )
        d = Path(calib[0])
        return ImageDataset.open(d, find_spec(d, preprocess), samples)
    if len(named) != len(calib):
        raise BadInputError(f"--calib {', '.join(calib)}: give either one DIR or NAME=DIR for every input")
    inputs: dict[str, ImageDataset] = {}
    for c in named:
        name, _, folder = c.partition("=")
        if name in inputs:
            raise BadInputError(f"--calib {c}: input '{name}' given twice")
        d = Path(folder)
        inputs[name] = ImageDataset.open(d, find_spec(d, preprocess), samples)
    return MultiInputDataset(inputs=inputs)


def print_report(r: QuantizeReport, output: Path) -> None:
    from edgecnn.quantize.params import QuantScheme

    t = Table(title=f"quantize -> {safe(output)}", show_header=False)
    t.add_column("what")
    t.add_column("value")
    method = r.method
    if r.methods_chosen:
        method += " (" + ", ".join(f"{k} {v}" for k, v in sorted(r.methods_chosen.items(), key=lambda kv: -kv[1])) + ")"
    t.add_row("precision / method", f"{r.precision} / {method}")
    if r.precision == "int8":
        t.add_row("integer kernels of", r.runtime)
        if r.float_reference:
            t.add_row("float reference", r.float_reference)
        if r.checks_on and r.checks_on != r.float_reference:
            t.add_row("checks ran on", r.checks_on)
    for name, (lo, hi) in r.input_ranges.items():
        t.add_row(f"input '{name}' range", f"[{lo:.4g}, {hi:.4g}] from the data")
    if r.scheme:
        t.add_row("scheme", f"{r.scheme['name']}: {QuantScheme(**r.scheme).describe()}")  # type: ignore[arg-type]
    if r.samples:
        t.add_row(
            "calibration",
            f"{r.samples} images, sha256 {r.calibration_sha256[:16]}…, "
            + (f"histograms {human_bytes(r.stats_bytes)}" if r.stats_bytes else "running min/max only"),
        )
    if r.precision == "fp16":
        t.add_row("converted to fp16", f"{r.weights_quantized} weight tensors; inputs and outputs stay float32")
    else:
        t.add_row("tensors quantized", f"{r.tensors_quantized} activations, {r.weights_quantized} weights")
    from edgecnn.quantize.api import DEPTH_WINS_BELOW, MSE_WINS_BELOW

    if r.range_check:
        picked = {0.0: "per-tensor choice", 1.0: "MSE ranges on every tensor"}.get(
            r.mse_depth, f"MSE ranges on the first {r.mse_depth:.0%} of the graph, per-tensor choice after"
        )
        errs = ", ".join(f"{k} {v:.3g}" for k, v in r.range_check.items())
        t.add_row(
            "auto ranges",
            f"{picked} (output error on the calibration images: {errs}; MSE everywhere ships below "
            f"{MSE_WINS_BELOW:.2f}x the error of what ships before it, the first half or quarter below "
            f"{DEPTH_WINS_BELOW:.2f}x)",
        )
    if r.stem_check:
        from edgecnn.quantize.qdq import STEM_DEPTHWISE_REASON

        i, f = r.stem_check["integer"], r.stem_check["float"]
        picked = "float with the stem" if STEM_DEPTHWISE_REASON in r.kept_float.values() else "integer"
        t.add_row(
            "depthwise after the stem",
            f"{picked} (output error on the calibration images: integer {i:.3g}, float {f:.3g}; "
            f"float ships below {MSE_WINS_BELOW:.2f}x)",
        )
    if r.channel_check or r.per_channel_grids:
        n = len(r.per_channel_grids)
        picked = f"{n} depthwise conv input(s)" if n else "none (one grid per tensor ships)"
        errs = (
            f" (output error on the calibration images: per-tensor {r.channel_check['per-tensor']:.3g}, per-channel "
            f"{r.channel_check['per-channel']:.3g}; per-channel ships below {MSE_WINS_BELOW:.2f}x)"
            if r.channel_check
            else ""
        )
        t.add_row("grid per channel", picked + errs)
    if r.equalize_check:
        a, e = r.equalize_check["as exported"], r.equalize_check["equalized"]
        n = len(r.equalized)
        picked = f"{n} Conv -> HardSwish block(s), factors up to {max(r.equalized.values()):.0f}x" if n else "none"
        t.add_row(
            "channels equalized",
            f"{picked} (output error on the calibration images: as exported {a:.3g}, equalized {e:.3g}; "
            f"equalized ships below {MSE_WINS_BELOW:.2f}x)",
        )
    if r.bias_correction_scope == "none":
        t.add_row("bias corrected", "none (no correction came closer to float on the calibration images)")
    if r.bias_corrected:
        t.add_row(
            "bias corrected",
            f"{len(r.bias_corrected)} Conv(s), {r.bias_correction_scope} (mean rounding shift removed; "
            "the scope closest to float on the calibration images)",
        )
    if r.activations_fused:
        t.add_row("activations fused", f"{r.activations_fused} Relu/Clip folded into the quantized op")
    if r.silu_form:
        form, why = r.silu_form.split(": ", 1)
        n = (
            f"{r.silu_as_tanh} SiLU(s) on Conv outputs written as x·(0.5 + 0.5·tanh(x/2))"
            if form == "tanh"
            else "as exported"
        )
        t.add_row("SiLU form", f"{n} ({why})")
    t.add_row("kept float", str(len(r.kept_float)))
    if r.integer_forms:
        t.add_row("integer forms", f"{len(r.integer_forms)} node(s) without a runtime kernel rewritten in integer")
    t.add_row(
        "size",
        f"{human_bytes(r.size_before)} -> {human_bytes(r.size_after)} ({r.size_after / max(r.size_before, 1):.2f}x)",
    )
    if r.samples:  # verified against the original on the first calibration image
        t.add_row("graph prep check", f"max relative diff {r.prep_max_abs_diff:.1e} after folding (BN, constants)")
    t.add_row(
        "time", f"prepare {r.seconds_prepare:.2f}s, calibrate {r.seconds_calibrate:.2f}s, write {r.seconds_write:.2f}s"
    )
    console.print(t)
    for w in r.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}")
    for title, column, rows in (
        ("Kept in float", "why", r.kept_float),
        ("Integer forms (no kernel for the op itself)", "what and why", r.integer_forms),
    ):
        if rows:
            t = Table(title=title)
            t.add_column("node")
            t.add_column(column)
            for k, why in list(rows.items())[:20]:
                t.add_row(safe(k), safe(why))
            if len(rows) > 20:
                t.add_row("…", f"{len(rows) - 20} more (see --json)")
            console.print(t)


def print_budget(b: BudgetReport) -> None:
    """What ``quantize --max-drop`` did: the layers kept float, the accuracy and the latency it cost."""
    t = Table(title=f"accuracy budget: top-1 drop at most {b.max_drop_pts:.2f} pts", show_header=False)
    t.add_column("what")
    t.add_column("value")
    t.add_row("float top-1", f"{b.float_top1_pct:.2f}%")
    t.add_row("all INT8", f"{b.int8_top1_pct:.2f}% (drop {b.float_top1_pct - b.int8_top1_pct:+.2f} pts)")
    t.add_row("result", f"{b.final_top1_pct:.2f}% (drop {b.final_drop_pts:+.2f} pts)")
    t.add_row("kept float", safe(", ".join(b.kept_float)) if b.kept_float else "none: all INT8 is within the budget")
    t.add_row("tried", "; ".join(f"{tr.float_layers} float -> {tr.drop_pts:+.2f} pts" for tr in b.trials))
    if b.final_p50_ms is not None and b.int8_p50_ms is not None:
        t.add_row(
            "latency cost",
            f"p50 {b.int8_p50_ms:.3f} -> {b.final_p50_ms:.3f} ms ({b.latency_cost_pct:+.1f}%), "
            f"p99 {b.int8_p99_ms:.3f} -> {b.final_p99_ms:.3f} ms",
        )
    console.print(t)


def quantize_budgeted(
    model: Path,
    output: Path,
    calib: ImageDataset | None,
    config: QuantizeConfig,
    max_drop: float,
    data: Path,
    preprocess: Path | None,
    cache_dir: Path | None,
    shapes: dict[str, tuple[int, ...]],
    json_path: Path | None,
) -> None:
    """``edgecnn quantize ... --max-drop PTS --data DIR``: the budgeted search, then the usual outputs."""
    from edgecnn.drift.budget import quantize_within_budget
    from edgecnn.drift.evaluate import open_eval_data
    from edgecnn.drift.sensitivity import default_cache_dir
    from edgecnn.graph.load import load_model
    from edgecnn.quantize.api import SCHEMA_VERSION
    from edgecnn.report.jsonio import write_json

    assert calib is not None
    if not 0 <= max_drop <= 100:
        raise BadInputError(f"--max-drop {max_drop}; expected 0..100 percentage points of top-1")
    evald = open_eval_data(data, load_model(model, shapes), preprocess=preprocess, require_labels="--max-drop")
    with progress_bar() as bar:
        task = bar.add_task("accuracy budget", total=None)
        out, report, budget = quantize_within_budget(
            model,
            calib,
            evald,
            config,
            max_drop,
            cache_dir=cache_dir or default_cache_dir(),
            input_shapes=shapes,
            progress=lambda done, total, what: bar.update(
                task, completed=done, total=total, description=f"sensitivity {what[-40:]}"
            ),
        )
    save_model(out, output)
    print_report(report, output)
    print_budget(budget)
    if json_path is not None:
        write_json(
            json_path,
            {"model": str(model), "output": str(output), **report.to_dict(), "budget": budget.to_dict()},
            kind="quantize",
            schema_version=SCHEMA_VERSION,
        )


def check_exclude(model: Path, exclude: list[str]) -> None:
    """Every ``--exclude`` names a node or an op type of ``model`` (a node without a name is OP_INDEX, as the
    quantize report calls it): a typo would otherwise quantize the layer the user meant to keep float."""
    import difflib
    import re

    import onnx

    try:
        graph = onnx.load(str(model), load_external_data=False).graph
    except Exception:  # quantize reports an unreadable model in its own words
        return
    names = {n.name for n in graph.node if n.name}
    ops = {n.op_type for n in graph.node}
    for e in exclude:
        m = re.fullmatch(r"(\w+)_(\d+)", e)
        if e in names or e in ops or (m is not None and m.group(1) in ops):
            continue
        near = difflib.get_close_matches(e, sorted(names | ops), n=3)
        hint = f"; did you mean {', '.join(near)}?" if near else f"; op types here: {', '.join(sorted(ops))}"
        raise BadInputError(f"--exclude {e!r}: {model} has no node or op type of that name{hint}")
