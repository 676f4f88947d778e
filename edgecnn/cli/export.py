"""`edgecnn export MODEL --to tflite|openvino|onnx -o OUT` and `edgecnn export --from-torch FILE.py:factory`."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from edgecnn.cli import app, command, console, out_file
from edgecnn.errors import BadInputError
from edgecnn.fsutil import guard_outputs, model_files, save_onnx
from edgecnn.report.fmt import human_bytes, safe

if TYPE_CHECKING:
    from edgecnn.export.api import Destination, ExportResult, Parity


@command(app, "export")
def export_cmd(
    model: Annotated[
        Path | None, typer.Argument(help="ONNX model (float or QDQ INT8 from `edgecnn quantize`).")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", parser=out_file, metavar="FILE", help="Output file (.tflite, .xml or .onnx)."),
    ] = None,
    to: Annotated[
        str | None, typer.Option("--to", help="tflite | openvino | onnx (default: from the -o suffix).")
    ] = None,
    precision: Annotated[
        str, typer.Option(help="auto (int8 for a QDQ model or with --calib) | float32 | float16 | int8.")
    ] = "auto",
    target: Annotated[
        str | None,
        typer.Option(help="Target spec (e.g. ethos-u55, edgetpu): its quant scheme and I/O dtype; Vela for Ethos-U."),
    ] = None,
    io_dtype: Annotated[
        str | None, typer.Option("--io-dtype", help="TFLite input/output: float32 | int8 | uint8.")
    ] = None,
    calib: Annotated[
        Path | None, typer.Option("--calib", help="Calibration images: quantize a float model first.")
    ] = None,
    samples: Annotated[int | None, typer.Option(help="Calibration images to use (default: all).")] = None,
    method: Annotated[
        str, typer.Option(help="Range estimator for --calib: minmax, percentile, entropy, mse.")
    ] = "minmax",
    preprocess: Annotated[Path | None, typer.Option(help="PreprocessSpec TOML (default: beside the images).")] = None,
    input_shape: Annotated[
        list[str] | None, typer.Option("--input-shape", help="NAME=1x3x224x224 (ONNX); 1x3x224x224 (--from-torch).")
    ] = None,
    data: Annotated[
        Path | None, typer.Option("--data", help="Parity images (default: the bundled eval set when it fits).")
    ] = None,
    parity_samples: Annotated[int | None, typer.Option(help="Parity images to use (default: all).")] = None,
    float_reference: Annotated[
        Path | None,
        typer.Option(
            "--float-reference",
            help="The float model a QDQ MODEL was quantized from: parity also accepts an export as close to it "
            "as the QDQ model is (within 1 dB).",
        ),
    ] = None,
    min_agreement: Annotated[float, typer.Option(help="Parity: minimum top-1 agreement with the source, %.")] = 99.5,
    min_sqnr: Annotated[float | None, typer.Option(help="Parity: minimum SQNR in dB (default per precision).")] = None,
    parity: Annotated[
        bool, typer.Option("--parity/--no-parity", help="Run the exported model against its source.")
    ] = True,
    threads: Annotated[int, typer.Option(help="Runtime threads for parity.")] = 2,
    vela_accelerator: Annotated[str | None, typer.Option(help="Ethos-U MAC configuration, e.g. ethos-u55-256.")] = None,
    from_torch: Annotated[
        str | None, typer.Option("--from-torch", help="FILE.py:factory returning a torch.nn.Module.")
    ] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset for --from-torch.")] = 17,
    dynamic_batch: Annotated[
        bool, typer.Option("--dynamic-batch", help="--from-torch: symbolic batch dimension.")
    ] = False,
    json_path: Annotated[
        Path | None,
        typer.Option("--json", parser=out_file, metavar="FILE", help="Write the export report (JSON) here."),
    ] = None,
) -> None:
    """Write the deployable file (TFLite, OpenVINO IR, ONNX) and verify it on its own runtime (parity).

    INT8 TFLite keeps the QDQ model's scales and zero points; `--target ethos-u55|ethos-u65` also runs Arm's Vela.
    """
    from edgecnn.export.api import SCHEMA_VERSION, ExportOptions
    from edgecnn.graph.load import parse_input_shapes
    from edgecnn.report.jsonio import write_json

    if output is None:
        raise BadInputError("-o/--output is required: the file to write (.tflite, .xml, or .onnx)")
    if not (math.isfinite(min_agreement) and 0 <= min_agreement <= 100):
        raise BadInputError(f"--min-agreement {min_agreement}: expected a percentage 0..100")
    if min_sqnr is not None and not (math.isfinite(min_sqnr) and -100 <= min_sqnr <= 300):
        raise BadInputError(f"--min-sqnr {min_sqnr}: expected a finite number of dB (-100..300)")
    if parity_samples is not None and not 1 <= parity_samples <= MAX_PARITY_SAMPLES:
        raise BadInputError(
            f"--parity-samples {parity_samples}: expected 1..{MAX_PARITY_SAMPLES} images (or --no-parity)"
        )
    torch_file = Path(from_torch.rsplit(":", 1)[0]) if from_torch else None
    target_name = target
    if target and target.endswith(".toml"):
        from edgecnn.check.spec import load_target

        target_name = load_target(target).name
    guard_outputs(
        [*model_files(model), torch_file, calib, data, preprocess, float_reference,
         Path(target) if target and target.endswith(".toml") else None],
        {"-o": output, "--json": json_path, **_side_outputs(to, output, target_name)},
    )  # fmt: skip
    if from_torch is not None:
        return _from_torch(
            from_torch,
            model,
            output,
            input_shape,
            opset,
            dynamic_batch,
            data,
            parity,
            threads,
            json_path,
            parity_samples,
        )
    if model is None:
        raise BadInputError("give the ONNX model to export (or --from-torch FILE.py:factory)")
    dest = _destination(to, output)
    opts = ExportOptions(
        to=dest,
        precision=precision,
        target=target,
        io_dtype=io_dtype,
        calib=calib,
        samples=samples,
        method=method,
        preprocess=preprocess,
        input_shapes=parse_input_shapes(input_shape),
        data=data,
        float_reference=float_reference,
        parity_samples=parity_samples,
        min_agreement=min_agreement,
        min_sqnr_db=min_sqnr,
        parity=parity,
        threads=threads,
        vela_accelerator=vela_accelerator,
    )
    from edgecnn.export.api import export_model

    with console.status("exporting", spinner="dots") if console.is_terminal else _null():
        result = export_model(model, output, opts)
    print_result(result)
    if json_path is not None:
        write_json(json_path, result.to_dict(), kind="export", schema_version=SCHEMA_VERSION)
        console.print(f"wrote {safe(json_path)}")


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: Any) -> None:
        return None


MAX_PARITY_SAMPLES = 100_000  # random inputs beyond the data's images: a bound, not an endless loop


def _side_outputs(to: str | None, output: Path, target: str | None) -> dict[str, Path]:
    """What the export will write beside -o; none while -o and --to name no format (that error comes after the
    output-vs-input guard, which has the more important thing to say)."""
    from edgecnn.export.api import side_outputs

    try:
        return side_outputs(output, _destination(to, output), target)
    except BadInputError:
        return {}


def _destination(to: str | None, output: Path) -> Destination:
    from edgecnn.export.api import Destination

    valid = ", ".join(d.value for d in Destination)
    if to is None:
        by_suffix = {".tflite": Destination.TFLITE, ".xml": Destination.OPENVINO, ".onnx": Destination.ONNX}
        if output.suffix.lower() not in by_suffix:
            raise BadInputError(f"-o {output}: cannot tell the format from '{output.suffix}'; pass --to {valid}")
        return by_suffix[output.suffix.lower()]
    try:
        return Destination(to)
    except ValueError:
        raise BadInputError(f"--to {to!r}; valid destinations are {valid}") from None


def _from_torch(
    spec: str,
    model: Path | None,
    output: Path,
    input_shape: list[str] | None,
    opset: int,
    dynamic_batch: bool,
    data: Path | None,
    parity: bool,
    threads: int,
    json_path: Path | None,
    parity_samples: int | None = None,
) -> None:
    import time

    from edgecnn.export.api import SCHEMA_VERSION, ort_runner, parity_data
    from edgecnn.export.from_torch import torch_runner, torch_to_onnx
    from edgecnn.fsutil import atomic_path
    from edgecnn.graph.load import load_model
    from edgecnn.report.jsonio import write_json

    if model is not None:
        raise BadInputError(f"give either a MODEL ({model}) or --from-torch {spec}, not both")
    if output.suffix.lower() != ".onnx":
        raise BadInputError(f"-o {output}: --from-torch writes ONNX; give a path ending in .onnx (then export that)")
    if not input_shape or len(input_shape) != 1:
        raise BadInputError("--from-torch needs one --input-shape, e.g. --input-shape 1x3x224x224")
    t0 = time.perf_counter()
    exp = torch_to_onnx(spec, input_shape[0], opset=opset, dynamic_batch=dynamic_batch)
    seconds = time.perf_counter() - t0
    par: Parity | None = None
    with atomic_path(output) as tmp:
        save_onnx(exp.model, tmp)
        if parity:
            from edgecnn.export.api import DEFAULT_ATOL, measure_parity

            name = exp.model.graph.input[0].name
            loaded = load_model(tmp, {name: exp.input_shape} if dynamic_batch else None)
            pdata = parity_data(loaded, data, None, parity_samples)
            par = measure_parity(
                torch_runner(exp.module),
                ort_runner(tmp, threads),
                pdata,
                runtime="ort",
                ref_name="PyTorch module",
                min_agreement=99.5,
                min_sqnr=40.0,
                atol=DEFAULT_ATOL["float32"],
            )
            if not par.ok:
                from edgecnn.errors import CheckFailedError

                raise CheckFailedError(f"parity failed for {spec} -> {output}: {par.summary()}; nothing was written")
    t = Table(title=f"export --from-torch -> {safe(output)}", show_header=False)
    t.add_column("what")
    t.add_column("value")
    t.add_row("source", f"{safe(spec)} (torch {exp.torch_version})")
    t.add_row(
        "ONNX",
        f"opset {exp.opset}, input {'x'.join(map(str, exp.input_shape))}{' (batch dynamic)' if dynamic_batch else ''}",
    )
    t.add_row("size", human_bytes(output.stat().st_size))
    t.add_row("time", f"{seconds:.2f} s")
    if par is not None:
        _parity_rows(t, par)
    console.print(t)
    if json_path is not None:
        payload = {
            "source": spec,
            "output": str(output),
            "destination": "onnx",
            "opset": exp.opset,
            "input_shape": list(exp.input_shape),
            "dynamic_batch": dynamic_batch,
            "torch_version": exp.torch_version,
            "seconds_convert": seconds,
            "parity": par,
        }
        write_json(json_path, payload, kind="export", schema_version=SCHEMA_VERSION)


def _parity_rows(t: Table, p: Parity) -> None:
    from edgecnn.export.api import FLOAT_MARGIN_DB

    status = "[green]ok[/]" if p.ok else "[red]FAILED[/]"
    t.add_row("parity", f"{status}: {p.runtime} vs {safe(p.reference)}, {p.samples} {safe(p.data)}")
    if p.top1_agreement is not None:
        t.add_row("  top-1 agreement", f"{p.top1_agreement:.2f}% ({p.disagreements} differ; {p.agreement_limit})")
    atol = f" ({p.atol_note})" if p.atol_note else ""
    t.add_row("  max abs error", f"{p.max_abs_error:.4g}{atol}")
    t.add_row("  SQNR", f"{p.sqnr_db:.1f} dB (min {p.min_sqnr_db} dB)")
    if p.float_sqnr_db is not None and p.source_float_sqnr_db is not None:
        t.add_row(
            "  vs float model",
            f"export {p.float_sqnr_db:.1f} dB, source {p.source_float_sqnr_db:.1f} dB ("
            + ("within" if p.close_to_float else "NOT within")
            + f" {FLOAT_MARGIN_DB:g} dB of the source)",
        )
    if p.float_top1_agreement is not None and p.source_float_top1_agreement is not None:
        t.add_row(
            "  top-1 as float",
            f"export {p.float_top1_agreement:.2f}%, source {p.source_float_top1_agreement:.2f}% "
            "(passes when at most one image below the source)",
        )


def grouped_notes(notes: Sequence[str], show: int = 3) -> list[str]:
    """Notes that differ only in the names and numbers they quote as one line each beyond ``show`` of a kind
    (a PP-LCNet export notes 28 HardSwish gate constants): the first, and how many more (all in --json)."""
    groups: dict[str, list[str]] = {}
    for n in notes:
        groups.setdefault(re.sub(r"'[^']*'|\d+(\.\d+)?(e-?\d+)?", "#", n), []).append(n)
    out: list[str] = []
    for g in groups.values():
        out.extend(g if len(g) <= show else [f"{g[0]} (and {len(g) - 1} more like it; all in --json)"])
    return out


def print_result(r: ExportResult) -> None:
    t = Table(title=f"export -> {safe(r.output)}", show_header=False)
    t.add_column("what")
    t.add_column("value")
    t.add_row("source", safe(r.source) + (" (quantized first with --calib)" if r.quantized_first else ""))
    t.add_row("format / precision", f"{r.destination} / {r.precision}")
    if r.destination == "tflite":
        t.add_row("input / output", f"{r.input_layout}, {r.io_dtype}")
    if r.target:
        t.add_row("target", r.target)
    t.add_row("size", human_bytes(r.size_bytes))
    t.add_row("files", safe(", ".join(r.files)))
    t.add_row("convert time", f"{r.seconds_convert:.2f} s")
    if r.folded:
        t.add_row("folded", f"{len(r.folded)} ONNX node(s) (shape subgraphs, Q/DQ absorbed)")
    if r.parity is not None:
        _parity_rows(t, r.parity)
    console.print(t)
    for n in grouped_notes(r.notes):
        console.print(f"note: {safe(n)}", highlight=False)
    if r.vela is not None:
        print_vela(r.vela)


def print_vela(v: Any) -> None:
    t = Table(title=f"Vela {v.vela_version}: {v.accelerator}, {v.system_config}, {v.memory_mode} -> {safe(v.output)}")
    for col in ("#", "operator", "output", "runs on", "why (Vela)"):
        t.add_column(col)
    for op in v.ops:
        where = "[green]NPU[/]" if op.placement == "npu" else "[yellow]CPU[/]"
        t.add_row(str(op.index), op.op, safe(op.output), where, safe("; ".join(op.reasons)))
    console.print(t)
    s = Table(show_header=False, title="Vela estimate")
    s.add_column("what")
    s.add_column("value")
    s.add_row("operators", f"{v.npu_ops} on the NPU, {v.cpu_ops} on the CPU")
    s.add_row("SRAM used", f"{v.sram_used_kib:.1f} KiB")
    s.add_row("flash used", f"{v.flash_used_kib:.1f} KiB")
    if v.inference_time_ms is not None:
        s.add_row(
            "inference time (est.)", f"{v.inference_time_ms:.3f} ms ({v.inferences_per_second:.0f}/s), NPU part only"
        )
    console.print(s)
