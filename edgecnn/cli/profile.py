"""`edgecnn profile MODEL.onnx --runtime ort|openvino|litert [--compare OTHER.onnx]`: per-layer latency from the
runtime's own profiler, on the machine's measured roofline, and why the model is slow."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgecnn.cli import app, command, console, out_file
from edgecnn.fsutil import guard_outputs, model_files


@command(app, "profile")
def profile_cmd(
    model: Annotated[Path, typer.Argument(help="ONNX model file (or .tflite with -r litert).")],
    runtime: Annotated[str, typer.Option("--runtime", "-r", help="ort | openvino | litert.")] = "ort",
    compare: Annotated[
        Path | None, typer.Option("--compare", help="A second model (e.g. the INT8 of MODEL): layer by layer.")
    ] = None,
    threads: Annotated[int | None, typer.Option(help="Intra-op threads (default: the runtime's choice).")] = None,
    runs: Annotated[int, typer.Option("--runs", "-n", help="Profiled runs (and as many timed plain runs).")] = 200,
    warmup: Annotated[int, typer.Option(help="Untimed runs first.")] = 20,
    rounds: Annotated[
        int, typer.Option(help="With --compare: alternating rounds the runs are split into (A B, B A, ...).")
    ] = 4,
    input_shape: Annotated[
        list[str] | None, typer.Option("--input-shape", help="Fix dynamic dims: NAME=1x3x224x224 (repeatable).")
    ] = None,
    input_source: Annotated[
        Path | None, typer.Option("--input", help="Folder of images: time their preprocessing beside inference.")
    ] = None,
    preprocess: Annotated[
        Path | None, typer.Option(help="PreprocessSpec for --input (default: its preprocess.toml).")
    ] = None,
    ov_precision: Annotated[
        str,
        typer.Option(help="OpenVINO float precision: f32 (as bench), bf16, f16, or default (the CPU plugin's choice)."),
    ] = "f32",
    ov_property: Annotated[
        list[str] | None,
        typer.Option(
            "--ov-property",
            help="OpenVINO compile property NAME=VALUE, as your deployment passes it (repeatable), e.g. "
            "CPU_DENORMALS_OPTIMIZATION=YES.",
        ),
    ] = None,
    json_path: Annotated[
        Path | None,
        typer.Option("--json", parser=out_file, metavar="FILE", help="Write the report (schema_version) here."),
    ] = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", parser=out_file, metavar="FILE", help="Write the roofline PNG here.")
    ] = None,
    top: Annotated[int, typer.Option(help="Rows of the layer table, slowest first (0 = all, graph order).")] = 0,
    refresh_ceilings: Annotated[
        bool, typer.Option("--refresh-ceilings", help="Measure the machine's ceilings again.")
    ] = False,
    cache_dir: Annotated[Path | None, typer.Option(help="Ceilings cache (default: ~/.cache/edgecnn/profile).")] = None,
    onnx_source: Annotated[
        Path | None, typer.Option("--onnx", help="For a .tflite MODEL: the ONNX it came from (MACs, ONNX node names).")
    ] = None,
) -> None:
    """Profile MODEL layer by layer on the runtime's own profiler: time per layer (fused kernels list their ONNX
    nodes), precision and kernel the runtime chose, GMAC/s and GB/s against the measured roofline, inserted
    conversions, preprocessing share; with --compare, where a second model gained or lost time and why."""
    from edgecnn.errors import BadInputError
    from edgecnn.graph.load import parse_input_shapes
    from edgecnn.profile.core import check_runtime, profile_model
    from edgecnn.profile.report import print_comparison, print_profile, write_profile_json, write_roofline_png
    from edgecnn.runtimes import check_threads, ov_property_options

    check_runtime(runtime)
    if threads is not None:
        check_threads(threads, zero_ok=False)
    if not 1 <= runs <= 10**7 or not 0 <= warmup <= 10**7:
        raise BadInputError(
            f"--runs {runs} / --warmup {warmup}: expected 1..10000000 runs and 0..10000000 warm-up runs"
        )
    guard_outputs(
        [*model_files(model), *model_files(compare), *model_files(onnx_source), input_source, preprocess],
        {"--json": json_path, "--plot": plot},
    )
    shapes = parse_input_shapes(input_shape)
    ov_properties = ov_property_options(ov_property, [runtime])
    if compare is not None:
        from edgecnn.profile.compare import check_same_inputs

        check_same_inputs(model, compare, shapes)
    kw = dict(
        threads=threads or 0, runs=runs, warmup=warmup, input_shapes=shapes, ov_precision=ov_precision,
        cache_dir=cache_dir, refresh_ceilings=refresh_ceilings, preprocess=preprocess, ov_properties=ov_properties,
    )  # fmt: skip
    cmp = None
    if compare is None:
        with console.status(f"profiling {model.name} on {runtime}…"):
            rep = profile_model(model, runtime, images=input_source, onnx_source=onnx_source, **kw)  # type: ignore[arg-type]
        print_profile(rep, console, top=top)
    else:
        from edgecnn.profile.compare import compare_profiles
        from edgecnn.profile.core import profile_pair

        with console.status(f"profiling {model.name} and {compare.name} on {runtime}, {rounds} alternating rounds…"):
            rep, other = profile_pair(
                model,
                compare,
                runtime,
                rounds=rounds,
                images=input_source,
                onnx_source=onnx_source,
                **kw,  # type: ignore[arg-type]
            )
        print_profile(rep, console, top=top)
        print_profile(other, console, top=top)
        cmp = compare_profiles(rep, other)
        print_comparison(cmp, console)
    if json_path is not None:
        write_profile_json(json_path, rep, cmp)
        console.print(f"wrote {json_path}")
    if plot is not None:
        written = write_roofline_png(plot, rep, cmp.other if cmp is not None else None)
        if written is None:
            from edgecnn.report.plots import INSTALL_HINT

            console.print(f"no roofline PNG: matplotlib is not installed ({INSTALL_HINT})")
        else:
            console.print(f"wrote {written}")
