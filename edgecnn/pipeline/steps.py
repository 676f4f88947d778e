"""The pipeline as a list of steps, each exactly one `edgecnn` command line.

A step is data: its argv, the files it reads (hashed for the resume key), the files it writes, and which of
those are artefacts (models, reproducible bit for bit) rather than reports (timings differ run to run). So
the manifest shows the command a user can paste to redo any step by hand, and `run` adds no logic of its
own to what the commands already do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgecnn.pipeline.config import PipelineConfig


@dataclass(frozen=True, kw_only=True)
class Step:
    name: str
    argv: tuple[str, ...]  # arguments after `edgecnn`
    inputs: tuple[Path, ...]  # files or folders read (absolute, or inside the run folder)
    outputs: tuple[str, ...]  # written, relative to the run folder
    artifacts: tuple[str, ...] = ()  # the outputs that must reproduce bit for bit (`run --verify`)
    failing_verdict: bool = False  # exit 1 is a verdict (gate, strict check), not a broken step
    updates: tuple[Path, ...] = ()  # inputs the step also rewrites (the gate's baseline): keyed by their new hash


def _shape_args(cfg: PipelineConfig) -> list[str]:
    return [a for s in cfg.input_shape for a in ("--input-shape", s)]


def _rounds_args(cfg: PipelineConfig) -> list[str]:
    return [] if cfg.bench_rounds is None else ["--rounds", str(cfg.bench_rounds)]


def _data_args(cfg: PipelineConfig) -> list[str]:
    return ["--preprocess", str(cfg.preprocess)] if cfg.preprocess else []


def _data_inputs(cfg: PipelineConfig) -> tuple[Path, ...]:
    return (cfg.preprocess,) if cfg.preprocess else ()


def _stem(cfg: PipelineConfig) -> str:
    return cfg.model.stem


def build_steps(cfg: PipelineConfig, run_dir: Path) -> list[Step]:
    """inspect -> check -> quantize -> export -> bench -> drift -> gate, as configured."""
    out = run_dir
    stem = _stem(cfg)
    model = str(cfg.model)
    steps: list[Step] = [
        Step(
            name="inspect",
            argv=("inspect", model, *_shape_args(cfg), "--json", str(out / "inspect.json")),
            inputs=(cfg.model,),
            outputs=("inspect.json",),
        )
    ]
    if cfg.targets:
        steps.append(
            Step(
                name="check",
                argv=(
                    "check",
                    model,
                    *[a for t in cfg.targets for a in ("--target", t)],
                    *_shape_args(cfg),
                    "--json",
                    str(out / "check.json"),
                    "--markdown",
                    str(out / "check.md"),
                    *(["--strict"] if cfg.strict else []),
                ),
                inputs=(cfg.model, *[p for t in cfg.targets if (p := Path(t)).suffix == ".toml"]),
                outputs=("check.json", "check.md"),
                failing_verdict=cfg.strict,
            )
        )
    quantized: dict[str, str] = {}
    for prec in cfg.precisions:
        name = f"{stem}.{prec}.onnx"
        argv = ["quantize", model, "-o", str(out / name), "--json", str(out / f"quantize-{prec}.json")]
        inputs: list[Path] = [cfg.model]
        if prec == "int8":
            argv += ["--calib", str(cfg.calibration), "--method", cfg.method, *_data_args(cfg)]
            argv += ["--samples", str(cfg.samples)] if cfg.samples else []
            argv += ["--target", cfg.quant_target] if cfg.quant_target else []
            if cfg.workers > 1 or cfg.backend != "local":
                argv += ["--workers", str(cfg.workers), "--backend", cfg.backend]
            inputs += [cfg.calibration, *_data_inputs(cfg)]
        else:
            argv += ["--precision", "fp16"]
        argv += _shape_args(cfg)
        steps.append(
            Step(
                name=f"quantize-{prec}",
                argv=tuple(argv),
                inputs=tuple(inputs),
                outputs=(name, f"quantize-{prec}.json"),
                artifacts=(name,),
            )
        )
        quantized[prec] = name
    source = quantized.get("int8") or quantized.get("fp16")
    for fmt in cfg.formats:
        assert source is not None  # the config refuses exports without a quantized model
        prec = "int8" if source == quantized.get("int8") else "fp16"
        if fmt == "tflite":
            variants: list[str | None] = [None, *cfg.tflite_targets]
        else:
            variants = [None]
        for target in variants:
            label = f"{fmt}" + (f"-{target}" if target else "")
            if fmt == "openvino":
                artefact = f"{stem}.{prec}.xml"
                produced: tuple[str, ...] = (artefact, artefact[:-4] + ".bin")
            elif fmt == "tflite":
                artefact = f"{stem}.{prec}{'.' + target if target else ''}.tflite"
                produced = (artefact,)
            else:
                artefact = f"{stem}.{prec}.exported.onnx"
                produced = (artefact,)
            if target:
                # A target's TFLite is quantized with that target's own scheme (e.g. int8 symmetric activations
                # and int8 I/O for Ethos-U), from the float model and the same calibration images.
                argv = ["export", model, "--to", fmt, "-o", str(out / artefact), "--target", target]
                argv += ["--calib", str(cfg.calibration), "--method", cfg.method]
                argv += ["--samples", str(cfg.samples)] if cfg.samples else []
                inputs = [cfg.model, cfg.calibration]
                if target.startswith("ethos-u"):  # Vela's optimised file, written beside the export
                    produced = (*produced, artefact.removesuffix(".tflite") + "_vela.tflite")
            else:
                argv = ["export", str(out / source), "--to", fmt, "-o", str(out / artefact)]
                inputs = [out / source]
            argv += ["--json", str(out / f"export-{label}.json"), *_shape_args(cfg)]
            argv += ["--data", str(cfg.evaluation), *_data_args(cfg)]
            inputs += [cfg.evaluation, *_data_inputs(cfg)]  # type: ignore[list-item]
            steps.append(
                Step(
                    name=f"export-{label}",
                    argv=tuple(argv),
                    inputs=tuple(inputs),
                    outputs=(*produced, f"export-{label}.json"),
                    artifacts=produced,
                )
            )
    candidate = quantized.get("int8") or quantized.get("fp16")
    onnx_runtimes = [r for r in cfg.bench_runtimes if r != "litert"]
    if candidate and onnx_runtimes:
        steps.append(
            Step(
                name="bench",
                argv=(
                    "bench",
                    model,
                    str(out / candidate),
                    *[a for r in onnx_runtimes for a in ("-r", r)],
                    "--threads",
                    str(cfg.threads),
                    "-n",
                    str(cfg.iterations),
                    "--compare",
                    *_rounds_args(cfg),
                    *_shape_args(cfg),
                    "--json",
                    str(out / "bench.json"),
                    "--out",
                    str(out / "bench"),
                ),
                inputs=(cfg.model, out / candidate),
                outputs=("bench.json",),
            )
        )
    if "fp16" in quantized and candidate != quantized["fp16"] and onnx_runtimes:
        steps.append(
            Step(
                name="bench-fp16",
                argv=(
                    "bench",
                    model,
                    str(out / quantized["fp16"]),
                    *[a for r in onnx_runtimes for a in ("-r", r)],
                    "--threads",
                    str(cfg.threads),
                    "-n",
                    str(cfg.iterations),
                    "--compare",
                    *_rounds_args(cfg),
                    *_shape_args(cfg),
                    "--json",
                    str(out / "bench-fp16.json"),
                ),
                inputs=(cfg.model, out / quantized["fp16"]),
                outputs=("bench-fp16.json",),
            )
        )
    tflites = [s.artifacts[0] for s in steps if s.name.startswith("export-tflite")]
    if "litert" in cfg.bench_runtimes and tflites:
        steps.append(
            Step(
                name="bench-litert",
                argv=(
                    "bench",
                    *[str(out / t) for t in tflites],
                    "-r",
                    "litert",
                    "--threads",
                    str(cfg.threads),
                    "-n",
                    str(cfg.iterations),
                    "--json",
                    str(out / "bench-litert.json"),
                ),
                inputs=tuple(out / t for t in tflites),
                outputs=("bench-litert.json",),
            )
        )
    if candidate:
        argv = ["drift", model, str(out / candidate), "--data", str(cfg.evaluation), "-r", cfg.drift_runtime]
        argv += [*_data_args(cfg), *_shape_args(cfg)]
        argv += ["--samples", str(cfg.drift_samples)] if cfg.drift_samples else []
        argv += ["--json", str(out / "drift.json"), "--plot", str(out / "drift_layers.png")]
        argv += ["--markdown", str(out / "drift.md")]
        steps.append(
            Step(
                name="drift",
                argv=tuple(argv),
                inputs=(cfg.model, out / candidate, cfg.evaluation, *_data_inputs(cfg)),  # type: ignore[arg-type]
                outputs=("drift.json", "drift_layers.png", "drift.md"),
            )
        )
        argv = ["gate", "--policy", str(cfg.policy), "--drift", str(out / "drift.json")]
        inputs = [cfg.policy, out / "drift.json"]
        if any(s.name == "bench" for s in steps):
            argv += ["--bench", str(out / "bench.json")]
            inputs.append(out / "bench.json")
        # The baseline is the last accepted run: the configured file, else one kept in the run folder (so a
        # re-run of the same pipeline is judged against the last run that passed).
        baseline = cfg.baseline or out / "baseline.json"
        argv += ["--baseline", str(baseline), "--update-baseline"]
        inputs.append(baseline)
        argv += ["--markdown", str(out / "gate.md"), "--junit", str(out / "gate.xml"), "--json", str(out / "gate.json")]
        steps.append(
            Step(
                name="gate",
                argv=tuple(argv),
                inputs=tuple(inputs),
                outputs=("gate.md", "gate.xml", "gate.json", *(["baseline.json"] if cfg.baseline is None else [])),
                failing_verdict=True,
                updates=(baseline,),
            )
        )
    return steps
