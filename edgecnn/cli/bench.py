"""`edgecnn bench MODEL.onnx [MODEL2 ...]`: latency percentiles, cold start and peak memory, measured in a
fresh process per model and runtime -- locally or on a board over SSH -- with the raw samples kept."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from edgecnn.bench.defaults import COMPARE_ROUNDS, DEFAULT_ITERATIONS, DEFAULT_WARMUP, RANDOM
from edgecnn.cli import app, command, console, out_file
from edgecnn.errors import BadInputError
from edgecnn.fsutil import guard_outputs, model_files, os_error
from edgecnn.report.fmt import human_bytes, safe

if TYPE_CHECKING:
    from edgecnn.bench.harness import BenchResult


@command(app, "bench")
def bench_cmd(
    models: Annotated[list[Path], typer.Argument(help="ONNX model file(s); with --compare the first is the baseline.")],
    runtime: Annotated[
        list[str] | None, typer.Option("--runtime", "-r", help="ort | openvino | litert; repeat for side by side.")
    ] = None,
    threads: Annotated[int | None, typer.Option(help="Intra-op threads (default: the runtime's choice).")] = None,
    warmup: Annotated[int, typer.Option(help="Untimed runs after the first inference.")] = DEFAULT_WARMUP,
    iterations: Annotated[
        int | None, typer.Option("--iterations", "-n", help=f"Timed runs (default {DEFAULT_ITERATIONS}).")
    ] = None,
    duration: Annotated[float | None, typer.Option(help="Run for this many seconds instead of -n.")] = None,
    batch: Annotated[int | None, typer.Option(help="Batch size for a dynamic first dimension.")] = None,
    input_source: Annotated[
        str, typer.Option("--input", help="'random', or a folder of images read through its preprocess.toml.")
    ] = RANDOM,
    preprocess: Annotated[Path | None, typer.Option(help="PreprocessSpec for --input DIR.")] = None,
    input_shape: Annotated[
        list[str] | None, typer.Option("--input-shape", help="Fix dynamic dims: NAME=1x3x224x224 (repeatable).")
    ] = None,
    json_path: Annotated[
        Path | None,
        typer.Option("--json", parser=out_file, metavar="FILE", help="Write the report (raw samples included)."),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Folder for bench.json, raw samples (.npy) and PNG plots.")] = None,
    compare: Annotated[bool, typer.Option("--compare", help="Ratios of every model against the first.")] = False,
    rounds: Annotated[
        int | None,
        typer.Option(
            help="Alternating rounds, each a fresh process per model, the runs split among them "
            "(default: 3 with --compare, else 1)."
        ),
    ] = None,
    ov_property: Annotated[
        list[str] | None,
        typer.Option(
            "--ov-property",
            help="OpenVINO compile property NAME=VALUE, as your deployment passes it (repeatable), e.g. "
            "CPU_DENORMALS_OPTIMIZATION=YES or INFERENCE_PRECISION_HINT=bf16.",
        ),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Run on a board over SSH: user@host.")] = None,
    ssh_option: Annotated[
        list[str] | None, typer.Option("--ssh-option", help="ssh -o KEY=VALUE for --host (repeatable).")
    ] = None,
    remote_python: Annotated[str, typer.Option(help="Python on the board that has edgecnn.")] = "python3",
    connect_timeout: Annotated[float, typer.Option(help="Seconds to wait for --host to answer.")] = 10.0,
) -> None:
    """Benchmark MODELS on each --runtime: load and first-inference time, p50/p90/p95/p99/min/max, mean, std,
    throughput, peak RSS of the measuring process, model size, machine facts."""
    from edgecnn.bench.harness import (
        BenchSettings,
        check_runtime_name,
        merge_rounds,
        prepare_model,
        require_local_runtime,
        run_prepared,
        validate_settings,
    )
    from edgecnn.graph.load import parse_input_shapes

    runtimes = list(dict.fromkeys(runtime or ["ort"]))
    if iterations is None and duration is None:
        iterations = DEFAULT_ITERATIONS
    validate_settings(threads=threads, warmup=warmup, iterations=iterations, duration_s=duration, batch=batch or 1)
    for rt in runtimes:
        check_runtime_name(rt)
    if compare and len(models) < 2:
        raise BadInputError("--compare needs two or more models; the first is the baseline (e.g. fp32.onnx int8.onnx)")
    if rounds is None:  # a comparison in alternating rounds, never more rounds than timed runs
        rounds = min(COMPARE_ROUNDS, iterations or COMPARE_ROUNDS) if compare else 1
    if not 1 <= rounds <= 1000 or (iterations is not None and rounds > iterations):
        raise BadInputError(
            f"--rounds {rounds}: expected 1..1000 rounds, at most one per timed run (-n {iterations})"
            if iterations is not None
            else f"--rounds {rounds}: expected 1..1000 rounds"
        )
    if out is not None and out.exists() and not out.is_dir():
        raise BadInputError(f"--out {out}: exists and is not a folder")
    image_dir = None if input_source == RANDOM else Path(input_source)
    from edgecnn.bench.report import planned_outputs

    # a folder that does not exist yet holds nothing to overwrite (it is created below)
    planned = planned_outputs(out, models, runtimes, host or "local") if out is not None and out.is_dir() else []
    guard_outputs(  # every file --out will hold, named before the run: an input image of the same name stays
        [p for m in models for p in model_files(m)] + [image_dir, preprocess],
        {"--json": json_path, **{f"--out's {p.name}": p for p in planned}},
    )
    if out is not None:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise os_error(out, e, "cannot create the --out folder") from None
    board = None
    if host is not None:
        from edgecnn.bench.remote import SshHost

        board = SshHost(
            host, ssh_options=ssh_option or [], remote_python=remote_python, connect_timeout=connect_timeout
        )
    else:
        for rt in runtimes:
            require_local_runtime(rt)
    from edgecnn.runtimes import ov_property_options

    options = ov_property_options(ov_property, runtimes, local=host is None)  # checked here (exit 2), not per run
    settings = BenchSettings(
        threads=threads, warmup=warmup, iterations=iterations, duration_s=duration, options=options
    )
    shapes = parse_input_shapes(input_shape)
    prepared = [
        prepare_model(m, input_shapes=shapes, batch=batch, input_source=input_source, preprocess=preprocess)
        for m in models
    ]

    runs: dict[tuple[int, str], list[BenchResult]] = {}
    with _progress(len(prepared) * len(runtimes) * rounds) as step:
        # round r: every model in a fresh process, in turn (reversed every other round), so that a machine that
        # slows down or speeds up meanwhile does not favour one model; the runs are split among the rounds
        for r in range(rounds):
            part = replace(
                settings,
                iterations=None if iterations is None else iterations // rounds + (r < iterations % rounds),
                duration_s=None if duration is None else duration / rounds,
            )
            order = list(enumerate(prepared)) if r % 2 == 0 else list(enumerate(prepared))[::-1]
            for rt in runtimes:
                for i, p in order:
                    label = safe(f"{p.name} [{rt}]" + (f" round {r + 1}/{rounds}" if rounds > 1 else ""))
                    res = run_prepared(p, rt, part, host=board, progress=step(label))
                    runs.setdefault((i, rt), []).append(res)
    results = [merge_rounds(runs[(i, rt)]) for i in range(len(prepared)) for rt in runtimes]

    print_results(results)
    comparisons = []
    if compare:
        from edgecnn.bench.compare import compare_results

        comparisons = compare_results(results)
        print_comparisons(results, comparisons)
    _outputs(results, comparisons, json_path, out)


@contextmanager
def _progress(total_runs: int) -> Iterator[Callable[[str], Callable[[int, int], None] | None]]:
    """A rich progress bar on a terminal, driven by the worker's progress lines; nothing otherwise."""
    if not console.is_terminal:
        yield lambda _label: None
        return
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"), TimeRemainingColumn(),
        console=console, transient=True,
    ) as bar:  # fmt: skip

        def step(label: str) -> Callable[[int, int], None]:
            task = bar.add_task(label, total=None, info="")

            def update(done: int, total: int) -> None:
                if total > 0:
                    bar.update(task, completed=done, total=total, info=f"{done}/{total}")
                else:
                    bar.update(task, completed=done, info=f"{done} runs")

            return update

        yield step


def _ms(v: float) -> str:
    return f"{v:.3f}" if v < 100 else f"{v:.1f}"


def print_results(results: Sequence[BenchResult]) -> None:
    tab = Table(title="Latency per batch (ms), from raw samples")
    remote = any(r.machine.host != "local" for r in results)
    cols = ["model", "runtime", *(["host"] if remote else []), "thr", "batch", "load", "first"]
    cols += ["p50", "p90", "p95", "p99", "min", "max", "mean", "std", "items/s", "peak RSS MiB (+model)", "size"]
    for c in cols:
        tab.add_column(c, justify="left" if c in ("model", "runtime", "host") else "right")
    mib = 1024 * 1024
    for r in results:
        s = r.stats
        tab.add_row(
            safe(r.model_name),
            r.runtime,
            *([safe(r.machine.host)] if remote else []),
            str(r.threads) if r.threads else "auto",
            str(r.batch),
            _ms(r.load_ms),
            _ms(r.first_inference_ms),
            *(_ms(v) for v in (s.p50_ms, s.p90_ms, s.p95_ms, s.p99_ms, s.min_ms, s.max_ms, s.mean_ms, s.std_ms)),
            f"{s.throughput:,.1f}",
            f"{r.memory.peak_rss / mib:.1f} (+{r.memory.peak_over_baseline / mib:.1f})",
            human_bytes(r.model_bytes),
        )
    console.print(tab)
    machines = Table(title="Machines")
    for c in ("host", "hostname", "CPU", "cores (logical/physical/usable)", "OS", "python", "runtimes"):
        machines.add_column(c)
    seen: dict[str, list[BenchResult]] = {}
    for r in results:
        seen.setdefault(r.machine.host, []).append(r)
    for h, rs in seen.items():
        m = rs[0].machine
        versions = ", ".join(
            sorted(
                {
                    f"{r.runtime} {r.runtime_version} ({r.device}{f', float in {r.inference_precision}' if r.inference_precision else ''}"
                    + "".join(f", {k}={v}" for k, v in sorted(r.runtime_properties.items()))
                    + ")"
                    for r in rs
                }
            )
        )
        machines.add_row(
            safe(h), safe(m.hostname), safe(m.cpu_model), f"{m.cores_logical}/{m.cores_physical or '?'}/{m.cores_usable}",
            safe(m.os), safe(m.python), safe(versions),
        )  # fmt: skip
    console.print(machines)
    n = results[0].stats.count if results else 0
    console.print(
        f"{n} timed runs each after {results[0].warmup if results else 0} warm-up runs; load and first = cold start; "
        "peak RSS is the measuring process's high-water mark, (+) over its baseline before the model was loaded.",
        highlight=False,
    )
    for line in timer_lines(results):
        console.print(line, highlight=False)
    for line in denormal_hints(results):
        console.print(line, highlight=False)


def denormal_hints(results: Sequence[BenchResult]) -> list[str]:
    """A line per INT8 ONNX model run on OpenVINO here, on a CPU with AMX int8, without
    CPU_DENORMALS_OPTIMIZATION, that has a Sigmoid on a Conv's output (a SiLU as exported, which OpenVINO fuses
    into the int8 convolution): those convolutions ran 2-3x slower there, the Sigmoid in their epilogue meeting
    denormal floats (README, "SiLU written with Tanh"; benchmarks/ov_denormals.py, ov_silu_form.py). Two fixes:
    the file written with `quantize --silu-form tanh`, or a deployment config line."""
    from edgecnn.profile.core import cpu_flags

    todo = [
        r
        for r in results
        if r.runtime == "openvino"
        and r.machine.host == "local"
        and "CPU_DENORMALS_OPTIMIZATION" not in r.runtime_properties
    ]
    if not todo or "amx_int8" not in cpu_flags():
        return []
    out = []
    for r in todo:
        n = _int8_conv_sigmoids(Path(r.model)) if Path(r.model).suffix.lower() == ".onnx" else 0
        if not n:
            continue
        out.append(
            f"{safe(r.model_name)} is INT8 on OpenVINO on a CPU with AMX, with {n} Sigmoid(s) on Conv outputs: "
            "OpenVINO fuses them into the int8 convolutions, which there take 2-3x as long without "
            "CPU_DENORMALS_OPTIMIZATION=YES in compile_model's config. Measure with --ov-property "
            "CPU_DENORMALS_OPTIMIZATION=YES, or write the SiLUs with Tanh: edgecnn quantize --runtime openvino "
            '--silu-form tanh (README: "SiLU written with Tanh").'
        )
    return out


def _int8_conv_sigmoids(path: Path) -> int:
    """How many Sigmoids read a Conv's output in a QDQ model (0 for a float model, or a file onnx cannot parse)."""
    import onnx

    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception:  # bench ran it; a file onnx cannot parse here gets no hint
        return 0
    if not any(n.op_type == "QuantizeLinear" for n in graph.node):
        return 0
    convs = {o for n in graph.node if n.op_type == "Conv" for o in n.output}
    return sum(1 for n in graph.node if n.op_type == "Sigmoid" and n.input and n.input[0] in convs)


def timer_lines(results: Sequence[BenchResult]) -> list[str]:
    """The table footer on the timing method: per runtime and host, what the timer wraps, the clock's
    smallest step, the cost of an empty timed call (inside every sample) and the loop's cost outside it."""
    seen: dict[tuple[str, str], list[BenchResult]] = {}
    for r in results:
        seen.setdefault((r.runtime, r.machine.host), []).append(r)
    out = []
    for (runtime, host), rs in seen.items():
        if not any(r.timer_resolution_ns for r in rs):
            continue
        where = "" if host == "local" else f" on {host}"
        call = rs[0].timed_call or "run(feeds)"
        res = min(r.timer_resolution_ns for r in rs)
        empty = statistics.median(r.timer_empty_call_ns for r in rs)
        loop = statistics.median(r.loop_overhead_ns for r in rs)
        bound = " (inputs bound once)" if rs[0].bound_inputs else " (inputs passed per call)"
        if rs[0].clock == "runtime":
            wall = statistics.median(r.wall_p50_ns for r in rs)
            p50 = statistics.median(r.stats.p50_ms for r in rs) * 1e6
            out.append(
                f"clock ({runtime}{where}): runtime clock (C++), {rs[0].clock_name}, around {call}{bound}; "
                f"resolution {rs[0].clock_resolution_ns:.0f} ns. Python perf_counter around the same call: p50 "
                f"{wall / 1e3:.2f} us ({(wall - p50) / 1e3:+.2f} us: the Python->C++ call), "
                f"{loop / 1e3:.2f} us per iteration outside the runtime clock."
            )
            continue
        out.append(
            f"clock ({runtime}{where}): Python perf_counter_ns around {call}{bound}; "
            f"resolution {res:.0f} ns, empty timed call {empty:.0f} ns (inside each sample), "
            f"loop {loop / 1e3:.2f} us per iteration outside the timer."
        )
    return out


def print_comparisons(results: Sequence[BenchResult], comparisons: Sequence[object]) -> None:
    from edgecnn.bench.compare import Comparison
    from edgecnn.bench.stats import rounds_verdict

    tab = Table(title="Compared with the first model (ratios; speed-up > 1 = faster)")
    for c in ("model", "runtime", "host", "p50 speed-up", "p99 speed-up", "throughput", "size", "peak RSS"):
        tab.add_column(c, justify="left" if c in ("model", "runtime", "host") else "right")
    for c in comparisons:
        assert isinstance(c, Comparison)
        tab.add_row(
            safe(c.model_name), c.runtime, safe(c.host), f"{c.speedup_p50:.2f}x", f"{c.speedup_p99:.2f}x",
            f"{c.throughput_ratio:.2f}x", f"{c.size_ratio:.2f}x", f"{c.peak_rss_ratio:.2f}x",
        )  # fmt: skip
    console.print(tab)
    for c in comparisons:
        assert isinstance(c, Comparison)
        style = "green" if rounds_verdict(c.speedup_p50, c.round_speedups) == "faster" else "bold yellow"
        console.print(f"[{style}]{safe(c.verdict)}[/]", highlight=False)


def _outputs(results: list[BenchResult], comparisons: list, json_path: Path | None, out: Path | None) -> None:
    from edgecnn.bench.report import slug, write_report, write_samples
    from edgecnn.report.plots import INSTALL_HINT, LatencySeries, plots_available, text_histogram, write_latency_plots

    if json_path is not None:
        write_report(json_path, results, comparisons)
        console.print(f"wrote {safe(json_path)}")
    pngs: list[Path] = []
    if out is not None:
        report = write_report(out / "bench.json", results, comparisons)
        npys = write_samples(out, results)
        pngs = write_latency_plots(
            [LatencySeries(label=r.label, stem=slug(r), samples_ms=r.samples_ms()) for r in results], out
        )
        console.print(f"wrote {safe(report)}, {len(npys)} raw sample file(s) and {len(pngs)} plot(s) to {safe(out)}")
        if not plots_available():
            console.print(f"no PNG plots: matplotlib is not installed ({INSTALL_HINT}); terminal histogram instead:")
    if not pngs:
        for r in results:
            console.print(f"[bold]{safe(r.label)}[/] latency histogram (ms):", highlight=False)
            for line in text_histogram(r.samples_ms()):
                console.print("  " + line, highlight=False, markup=False)
