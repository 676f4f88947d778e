"""`edgecnn quantize MODEL.onnx --calib DIR -o OUT.onnx`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import onnx
import typer
from rich.table import Table

from edgecnn.cli import app, command, console, progress_bar
from edgecnn.errors import BadInputError
from edgecnn.fsutil import atomic_path, check_output_path
from edgecnn.graph.load import parse_input_shapes
from edgecnn.preprocess import find_spec
from edgecnn.quantize.api import SCHEMA_VERSION, Precision, QuantizeConfig, QuantizeReport, quantize
from edgecnn.quantize.dataset import CalibrationData, ImageDataset, MultiInputDataset
from edgecnn.quantize.estimators import parse_method
from edgecnn.quantize.params import RUNTIME_SCHEMES, QuantScheme
from edgecnn.report.fmt import human_bytes
from edgecnn.report.jsonio import write_json


def resolve_scheme(target: str | None, runtime: str) -> QuantScheme:
    """The target spec's scheme when --target is given, else the runtime's default."""
    if target:
        from edgecnn.check.spec import load_target

        spec = load_target(target)
        if spec.quant is None:
            raise BadInputError(
                f"--target {target}: runs float only (precisions: {', '.join(str(p) for p in spec.precisions)}); "
                "use --precision fp16 or a target with a [quant] scheme"
            )
        # An accelerator without float (Ethos-U, Edge TPU, HTP) must get the whole graph in integer.
        return replace(spec.quant, quantize_outputs=spec.requires_quantization)
    if runtime not in RUNTIME_SCHEMES:
        raise BadInputError(f"--runtime {runtime!r}; valid runtimes are {', '.join(RUNTIME_SCHEMES)}")
    return RUNTIME_SCHEMES[runtime]


@command(app, "quantize")
def quantize_cmd(
    model: Annotated[Path, typer.Argument(help="Float ONNX model.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the quantized model.")],
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
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the quantization report here.")] = None,
    max_drop: Annotated[
        float | None, typer.Option(help="Top-1 points the INT8 model may lose on --data; sensitive layers stay float.")
    ] = None,
    data: Annotated[Path | None, typer.Option("--data", help="Labeled evaluation images for --max-drop.")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Sensitivity cache for --max-drop.")] = None,
) -> None:
    """Quantize MODEL to INT8 (QDQ, calibrated on real images) or FP16, verified and stamped with provenance."""
    if precision not in ("int8", "fp16"):
        raise BadInputError(f"--precision {precision!r}; valid values are int8, fp16")
    prec = Precision(precision)
    meth = parse_method(method)
    if batch <= 0:
        raise BadInputError(f"--batch {batch}; expected a positive integer")
    check_output_path(output)
    if json_path is not None:
        check_output_path(json_path)
    shapes = parse_input_shapes(input_shape)
    dataset = None
    if prec is Precision.INT8 and calib is None:
        raise BadInputError("--calib DIR is required for --precision int8 (a folder of representative images)")
    if calib:
        dataset = open_calibration(calib, preprocess, samples)
    scheme = resolve_scheme(target, runtime)
    if not per_channel:
        scheme = QuantScheme(**{**scheme.to_dict(), "weights_per_channel": False})  # type: ignore[arg-type]
    config = QuantizeConfig(
        precision=prec,
        method=meth,
        batch=batch,
        scheme=scheme,
        exclude=frozenset(exclude or []),
        runtime="integer" if target else runtime,  # a target's accelerator wants every op it can in integer
    )
    if max_drop is not None or data is not None:
        from edgecnn.cli.sensitivity import quantize_budgeted

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

    with atomic_path(output) as tmp:
        onnx.save(out, str(tmp))
        onnx.checker.check_model(str(tmp), full_check=True)
    print_report(report, output)
    if json_path is not None:
        write_json(
            json_path,
            {"model": str(model), "output": str(output), **report.to_dict()},
            kind="quantize",
            schema_version=SCHEMA_VERSION,
        )


def open_calibration(calib: list[str], preprocess: Path | None, samples: int | None) -> CalibrationData:
    """``--calib DIR`` for a single-input model, or ``--calib NAME=DIR`` once per input."""
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
    t = Table(title=f"quantize -> {output}", show_header=False)
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
    if r.activations_fused:
        t.add_row("activations fused", f"{r.activations_fused} Relu/Clip folded into the quantized op")
    t.add_row("kept float", str(len(r.kept_float)))
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
    if r.kept_float:
        kf = Table(title="Kept in float")
        kf.add_column("node")
        kf.add_column("why")
        for k, why in list(r.kept_float.items())[:20]:
            kf.add_row(k, why)
        if len(r.kept_float) > 20:
            kf.add_row("…", f"{len(r.kept_float) - 20} more (see --json)")
        console.print(kf)
