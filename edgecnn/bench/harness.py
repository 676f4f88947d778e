"""The parent side of a benchmark: validate the model and inputs, start the measuring process (locally
or on a board over SSH), turn its raw samples into a ``BenchResult``.

``run_bench`` is the library entry point other commands (the CI gate, the quantize benchmark) call.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.bench.defaults import DEFAULT_ITERATIONS, DEFAULT_WARMUP, RANDOM
from edgecnn.bench.stats import LatencyStats, latency_stats
from edgecnn.bench.worker import PROGRESS_MARK, RESULT_MARK, WORKER_SCHEMA_VERSION
from edgecnn.errors import BadInputError, DataError, EdgecnnError, MissingRuntimeError, ModelError
from edgecnn.fsutil import temp_dir

# progress(done, total): total < 0 means a duration run of -total nanoseconds.
ProgressFn = Callable[[int, int], None]

_MAX_IMAGE_BATCHES = 16
MAX_RUNS = 10_000_000  # timed or warm-up runs: the samples are kept in memory (8 bytes each)
MAX_DURATION_S = 24 * 3600


class BenchError(EdgecnnError):
    """The measuring process failed; carries the exit code it reported (3 when it crashed)."""

    def __init__(self, message: str, exit_code: int = 3) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True, kw_only=True)
class BenchSettings:
    """How to measure. ``threads=None`` lets the runtime choose (recorded as 0); exactly one of
    ``iterations`` and ``duration_s`` is set."""

    threads: int | None = None
    warmup: int = DEFAULT_WARMUP
    iterations: int | None = DEFAULT_ITERATIONS
    duration_s: float | None = None
    seed: int = 0
    options: dict[str, str] = field(default_factory=dict)
    timeout_s: float | None = None  # whole worker run; None = no limit

    def __post_init__(self) -> None:
        validate_settings(
            threads=self.threads, warmup=self.warmup, iterations=self.iterations, duration_s=self.duration_s
        )


def validate_settings(
    *, threads: int | None, warmup: int, iterations: int | None, duration_s: float | None, batch: int = 1
) -> None:
    """One-line errors for counts a benchmark cannot use."""
    if threads is not None:
        from edgecnn.runtimes import check_threads

        check_threads(threads, zero_ok=False)
    if not 0 <= warmup <= MAX_RUNS:
        raise BadInputError(f"--warmup {warmup}: expected 0..{MAX_RUNS} untimed runs")
    if iterations is not None and duration_s is not None:
        raise BadInputError("--iterations and --duration both given; choose one: a run count or seconds")
    if iterations is None and duration_s is None:
        raise BadInputError("give --iterations N or --duration SECONDS")
    if iterations is not None and not 0 < iterations <= MAX_RUNS:
        raise BadInputError(
            f"--iterations {iterations}: expected a positive number of timed runs up to {MAX_RUNS}, e.g. 200"
        )
    if duration_s is not None and not 0 < duration_s <= MAX_DURATION_S:  # NaN and inf fail this too
        raise BadInputError(
            f"--duration {duration_s}: expected a positive number of seconds up to {MAX_DURATION_S}, e.g. 10"
        )
    if batch <= 0:
        raise BadInputError(f"--batch {batch}: expected a positive batch size, e.g. 1")


@dataclass(frozen=True, kw_only=True)
class MemoryStats:
    """Resident memory of the measuring process, bytes. Baseline: after importing the runtime, before
    loading the model. Peak: the process's high-water mark at the end of the run."""

    baseline_rss: int
    after_load_rss: int
    after_first_inference_rss: int
    peak_rss: int

    @property
    def peak_over_baseline(self) -> int:
        return max(0, self.peak_rss - self.baseline_rss)


@dataclass(frozen=True, kw_only=True)
class MachineInfo:
    host: str  # "local" or the --host given
    hostname: str
    cpu_model: str
    arch: str
    cores_logical: int
    cores_physical: int | None
    cores_usable: int
    memory_bytes: int | None
    os: str
    python: str


@dataclass(frozen=True, kw_only=True)
class BenchResult:
    """One model on one runtime on one machine: raw samples and what is derived from them."""

    model: str
    model_name: str
    model_bytes: int
    model_sha256: str
    runtime: str
    runtime_version: str
    device: str
    threads_requested: int  # 0 = runtime default
    threads: int  # as the runtime reports it (0 = runtime default, not reported)
    batch: int
    input_shapes: dict[str, tuple[int, ...]]
    input_source: str  # "random" or the image folder
    input_batches: int
    warmup: int
    load_ms: float
    first_inference_ms: float
    stats: LatencyStats
    memory: MemoryStats
    machine: MachineInfo
    samples_ns: tuple[int, ...]
    loop_overhead_ns: float  # per iteration, outside the timed call (loop, sample store)
    bound_inputs: bool  # inputs bound once through the adapter's bind(); else run(feeds) per call
    inference_precision: str = ""  # what the runtime computes float layers in (OpenVINO: bf16 on AMX CPUs)
    # The timing method's own limits, measured in the worker: the smallest perf_counter_ns step, the cost of an
    # empty timed call (inside every sample), and the name of the call inside the timer. 0 / "" in old reports.
    timer_resolution_ns: float = 0.0
    timer_empty_call_ns: float = 0.0
    timed_call: str = ""
    # Which clock made samples_ns: "runtime" (the runtime's own C++ clock around its inference call, read after
    # each call; OpenVINO) or "perf_counter" (Python's clock around the call). wall_p50_ns: perf_counter's p50
    # around the same calls, so the Python->C++ call cost stays visible.
    clock: str = "perf_counter"
    clock_name: str = ""
    clock_resolution_ns: float = 0.0
    wall_p50_ns: float = 0.0
    # --rounds: the p50 of each round's fresh process, in the order they ran (samples_ns holds them all); empty
    # for one round
    round_p50_ms: tuple[float, ...] = ()
    # --ov-property: each property asked for, as the compiled model reports it back (empty: none asked)
    runtime_properties: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        where = "" if self.machine.host == "local" else f"@{self.machine.host}"
        return f"{self.model_name} [{self.runtime}{where}]"

    def samples_ms(self) -> np.ndarray:
        return np.asarray(self.samples_ns, dtype=np.float64) / 1e6

    def to_dict(self, *, samples: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {
            "model": self.model,
            "model_name": self.model_name,
            "model_bytes": self.model_bytes,
            "model_sha256": self.model_sha256,
            "runtime": self.runtime,
            "runtime_version": self.runtime_version,
            "device": self.device,
            "threads_requested": self.threads_requested,
            "threads": self.threads,
            "batch": self.batch,
            "input_shapes": {k: list(v) for k, v in self.input_shapes.items()},
            "input_source": self.input_source,
            "input_batches": self.input_batches,
            "warmup": self.warmup,
            "load_ms": self.load_ms,
            "first_inference_ms": self.first_inference_ms,
            "stats": self.stats.to_dict(),
            "memory": {
                "baseline_rss": self.memory.baseline_rss,
                "after_load_rss": self.memory.after_load_rss,
                "after_first_inference_rss": self.memory.after_first_inference_rss,
                "peak_rss": self.memory.peak_rss,
                "peak_over_baseline": self.memory.peak_over_baseline,
            },
            "machine": {k: getattr(self.machine, k) for k in MachineInfo.__dataclass_fields__},
            "loop_overhead_ns": self.loop_overhead_ns,
            "bound_inputs": self.bound_inputs,
            "inference_precision": self.inference_precision,
            "runtime_properties": dict(self.runtime_properties),
            "timer": {
                "clock": self.clock,
                "clock_name": self.clock_name or "Python time.perf_counter_ns around the call",
                "clock_resolution_ns": self.clock_resolution_ns or self.timer_resolution_ns,
                "wall_p50_ns": self.wall_p50_ns,
                "resolution_ns": self.timer_resolution_ns,
                "empty_timed_call_ns": self.timer_empty_call_ns,
                "loop_overhead_ns": self.loop_overhead_ns,
                "timed_call": self.timed_call,
            },
        }
        if self.round_p50_ms:
            d["round_p50_ms"] = list(self.round_p50_ms)
        if samples:
            d["samples_ns"] = list(self.samples_ns)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BenchResult:
        """Rebuild from ``to_dict`` output; statistics are recomputed from the raw samples."""
        samples = tuple(int(x) for x in d["samples_ns"])
        mem = {k: int(v) for k, v in d["memory"].items() if k != "peak_over_baseline"}
        timer = d.get("timer") or {}
        return cls(
            **{k: d[k] for k in _PLAIN_FIELDS},
            input_shapes={k: tuple(v) for k, v in d["input_shapes"].items()},
            stats=latency_stats(samples, batch=int(d["batch"])),
            memory=MemoryStats(**mem),
            machine=MachineInfo(**d["machine"]),
            samples_ns=samples,
            inference_precision=str(d.get("inference_precision", "")),
            timer_resolution_ns=float(timer.get("resolution_ns", 0.0)),
            timer_empty_call_ns=float(timer.get("empty_timed_call_ns", 0.0)),
            timed_call=str(timer.get("timed_call", "")),
            clock="runtime" if timer.get("clock") == "runtime" else "perf_counter",
            clock_name=str(timer.get("clock_name", "")),
            clock_resolution_ns=float(timer.get("clock_resolution_ns") or 0.0),
            wall_p50_ns=float(timer.get("wall_p50_ns") or 0.0),
            round_p50_ms=tuple(float(v) for v in d.get("round_p50_ms") or ()),
            runtime_properties={str(k): str(v) for k, v in (d.get("runtime_properties") or {}).items()},
        )


def merge_rounds(rounds: Sequence[BenchResult]) -> BenchResult:
    """One result from the same model and runtime measured in several rounds (each a fresh process): every
    sample of every round (percentiles over all of them), each round's p50 (``round_p50_ms``), the rounds'
    median cold start, and the highest memory of any round."""
    first = rounds[0]
    if len(rounds) == 1:
        return first
    samples = tuple(x for r in rounds for x in r.samples_ns)

    def med(get: Callable[[BenchResult], float]) -> float:
        return float(np.median([get(r) for r in rounds]))

    mem = MemoryStats(
        **{k: max(getattr(r.memory, k) for r in rounds) for k in MemoryStats.__dataclass_fields__}  # type: ignore[arg-type]
    )
    stats = latency_stats(samples, batch=first.batch)
    # Python's clock around the same calls: the merged p50 plus the rounds' median gap between the two clocks
    # (only the gap is known per round, not its samples)
    wall = stats.p50_ms * 1e6 + med(lambda r: r.wall_p50_ns - r.stats.p50_ms * 1e6)
    return replace(
        first,
        samples_ns=samples,
        stats=stats,
        memory=mem,
        load_ms=med(lambda r: r.load_ms),
        first_inference_ms=med(lambda r: r.first_inference_ms),
        loop_overhead_ns=med(lambda r: r.loop_overhead_ns),
        wall_p50_ns=wall if all(r.wall_p50_ns > 0 for r in rounds) else 0.0,
        timer_empty_call_ns=med(lambda r: r.timer_empty_call_ns),
        round_p50_ms=tuple(r.stats.p50_ms for r in rounds),
    )


_PLAIN_FIELDS = (
    "model", "model_name", "model_bytes", "model_sha256", "runtime", "runtime_version", "device",
    "threads_requested", "threads", "batch", "input_source", "input_batches", "warmup", "load_ms",
    "first_inference_ms", "loop_overhead_ns", "bound_inputs",
)  # fmt: skip


# -- model and inputs ---------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class PreparedModel:
    """A model checked for benchmarking: every input shape known, the inputs to feed ready."""

    path: Path
    name: str
    size_bytes: int
    sha256: str
    input_shapes: dict[str, tuple[int, ...]]  # all inputs, resolved
    pass_shapes: dict[str, tuple[int, ...]]  # those the runtime must be told (dynamic or overridden)
    batch: int
    input_source: str
    feeds: tuple[dict[str, np.ndarray], ...] | None  # None = random, generated in the worker


def check_runtime_name(name: str) -> None:
    from edgecnn.runtimes import RUNTIMES

    if name not in RUNTIMES:
        raise BadInputError(f"--runtime '{name}': unknown runtime; valid runtimes are {', '.join(RUNTIMES)}")


def require_local_runtime(name: str) -> None:
    """Exit 3 with the install command when ``name``'s package is not importable here (without importing it)."""
    from edgecnn.runtimes import RUNTIMES

    check_runtime_name(name)
    _, module, install = RUNTIMES[name]
    if importlib.util.find_spec(module) is None:
        raise MissingRuntimeError(f"runtime '{name}' (python module {module})", install)


def prepare_model(
    path: str | Path,
    *,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    batch: int | None = None,
    input_source: str | Path = RANDOM,
    preprocess: Path | None = None,
) -> PreparedModel:
    """Validate ``path`` and resolve every input shape (``batch`` fills a dynamic or 1-sized first dim);
    with an image folder, read the images through its PreprocessSpec into ready batches."""
    import onnx

    from edgecnn.fsutil import sha256_file
    from edgecnn.graph.artifact import ModelFormat, format_of
    from edgecnn.graph.load import PROTO_LIMIT, dims_of, graph_inputs, load_model

    path = Path(path)
    if format_of(path) is ModelFormat.TFLITE:
        return _prepare_tflite(
            path, input_shapes=input_shapes, batch=batch, input_source=input_source, preprocess=preprocess
        )
    user = dict(input_shapes or {})
    if batch is not None and batch <= 0:
        raise BadInputError(f"--batch {batch}: expected a positive batch size, e.g. 1")
    shapes = dict(user)
    declared: dict[str, list[int | str]] = {}
    with contextlib.suppress(Exception):  # unreadable files get load_model's precise error below
        if not path.is_file() or path.stat().st_size >= PROTO_LIMIT:  # a FIFO or device: load_model says so
            raise ValueError(path)
        for vi in graph_inputs(onnx.load(str(path), load_external_data=False)):
            declared[vi.name] = dims_of(vi)
    for name, dims in declared.items():
        if name in shapes or not dims or batch is None:
            continue
        first = dims[0]
        if isinstance(first, int) and first != batch:
            raise ModelError(
                f"{path}: input '{name}' has a fixed batch of {first} ({dims}); --batch {batch} needs a dynamic "
                "first dimension (re-export with a dynamic batch, or pass --input-shape)"
            )
        if all(isinstance(d, int) for d in dims[1:]):
            shapes[name] = (batch, *(int(d) for d in dims[1:]))
    loaded = load_model(path, shapes)  # full checker, dynamic dims -> clear error naming --input-shape
    resolved = dict(loaded.input_shapes)
    check_benchable(loaded, resolved)
    pass_shapes = {
        k: v for k, v in resolved.items() if k in user or not all(isinstance(d, int) for d in declared.get(k, [None]))
    }
    first_shape = next(iter(resolved.values()), (1,))
    eff_batch = int(first_shape[0]) if first_shape else 1

    feeds: tuple[dict[str, np.ndarray], ...] | None = None
    source = RANDOM
    if str(input_source) != RANDOM:
        source = str(input_source)
        feeds = _image_batches(loaded, Path(input_source), preprocess, resolved)
    return PreparedModel(
        path=path,
        name=path.stem,
        size_bytes=path.stat().st_size,
        sha256=sha256_file(path),
        input_shapes=resolved,
        pass_shapes=pass_shapes,
        batch=eff_batch,
        input_source=source,
        feeds=feeds,
    )


# Element types the measuring process can generate random inputs for.
_FEEDABLE = {"float32", "float16", "float64", "uint8", "int8", "int16", "uint16", "int32", "int64", "bool"}
MAX_INPUT_BYTES = 2 << 30  # one batch of inputs; beyond this the run would only measure swapping


def check_benchable(loaded: Any, shapes: dict[str, tuple[int, ...]]) -> None:
    """Exit 2 before a process starts: inputs of a type no one can feed, or larger than memory (bench and
    profile both feed random tensors)."""
    from onnx.helper import tensor_dtype_to_np_dtype

    from edgecnn.graph.load import graph_inputs

    total = 0
    for vi in graph_inputs(loaded.model):
        try:
            dt = np.dtype(tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type))
        except (KeyError, TypeError, ValueError):
            dt = None
        if dt is None or dt.name not in _FEEDABLE:
            raise ModelError(
                f"{loaded.path}: input '{vi.name}' has element type {dt or vi.type.tensor_type.elem_type}; "
                f"bench feeds numeric tensors ({', '.join(sorted(_FEEDABLE))})"
            )
        total += int(np.prod([int(d) for d in shapes[vi.name]], dtype=object)) * dt.itemsize
    if total > MAX_INPUT_BYTES:
        raise ModelError(
            f"{loaded.path}: inputs {shapes} need {total / (1 << 30):.1f} GiB per batch; bench allows at most "
            f"{MAX_INPUT_BYTES >> 30} GiB (use a smaller --input-shape or --batch)"
        )


def _prepare_tflite(
    path: Path,
    *,
    input_shapes: dict[str, tuple[int, ...]] | None,
    batch: int | None,
    input_source: str | Path,
    preprocess: Path | None,
) -> PreparedModel:
    """A ``.tflite`` file: fixed shapes as written; image inputs read in the file's own layout (NHWC for a
    converted image model, from the same images and spec as its ONNX source) and quantized with the
    input's scale when the file has integer I/O."""
    from edgecnn.graph.artifact import image_input, open_artifact, spec_for, to_input
    from edgecnn.preprocess import find_spec, list_images

    art = open_artifact(path)
    shapes = {t.name: t.shape for t in art.inputs}
    for name, want in (input_shapes or {}).items():
        if shapes.get(name) != tuple(want):
            raise BadInputError(
                f"{path}: --input-shape {name}={'x'.join(map(str, want))}: a TFLite model has fixed shapes "
                f"({', '.join(f'{k}={list(v)}' for k, v in shapes.items())}); re-export it at that shape"
            )
    first = next(iter(shapes.values()), (1,))
    if batch is not None and (not first or first[0] != batch):
        raise ModelError(
            f"{path}: --batch {batch}, but the TFLite model's batch is fixed at {first[0] if first else 1}"
        )
    feeds: tuple[dict[str, np.ndarray], ...] | None = None
    source = RANDOM
    if str(input_source) != RANDOM:
        data_dir = Path(input_source)
        source = str(input_source)
        if not data_dir.is_dir():
            raise BadInputError(f"--input {data_dir}: not a directory; give 'random' or a folder of images")
        t = image_input(art)
        spec = spec_for(art, find_spec(data_dir, preprocess))
        spec.check_against(t.name, t.shape, "float32", model_name=str(path))
        images = list_images(data_dir)[: t.shape[0] * _MAX_IMAGE_BATCHES]
        n = max(1, len(images) // t.shape[0])
        out = []
        for j in range(n):
            items = [spec.load(images[(j * t.shape[0] + k) % len(images)]) for k in range(t.shape[0])]
            out.append({t.name: np.ascontiguousarray(to_input(np.stack(items).reshape(t.shape), t))})
        feeds = tuple(out)
    return PreparedModel(
        path=path,
        name=path.stem,
        size_bytes=art.size_bytes,
        sha256=art.sha256,
        input_shapes=dict(shapes),
        pass_shapes={},
        batch=int(first[0]) if first else 1,
        input_source=source,
        feeds=feeds,
    )


def _image_batches(
    loaded: Any, data_dir: Path, preprocess: Path | None, shapes: dict[str, tuple[int, ...]]
) -> tuple[dict[str, np.ndarray], ...]:
    from onnx.helper import tensor_dtype_to_np_dtype

    from edgecnn.graph.load import graph_inputs
    from edgecnn.preprocess import find_spec, list_images

    if not data_dir.is_dir():
        raise BadInputError(f"--input {data_dir}: not a directory; give 'random' or a folder of images")
    inputs = graph_inputs(loaded.model)
    if len(inputs) != 1:
        raise DataError(
            f"{loaded.path}: --input {data_dir} feeds one image input, but the model has {len(inputs)} inputs "
            f"({', '.join(i.name for i in inputs)}); use --input random"
        )
    vi = inputs[0]
    shape = shapes[vi.name]
    dtype = np.dtype(tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)).name
    spec = find_spec(data_dir, preprocess)
    spec.check_against(vi.name, shape, dtype, model_name=str(loaded.path))  # before any image is read
    images = list_images(data_dir)
    batch = shape[0]
    want = min(len(images), batch * _MAX_IMAGE_BATCHES)
    tensors: list[np.ndarray] = []
    for p in images[:want]:  # a corrupt image is an error, as in quantize and drift
        tensors.append(spec.load(p))
    n_batches = max(1, len(tensors) // batch)
    out = []
    for j in range(n_batches):
        items = [tensors[(j * batch + k) % len(tensors)] for k in range(batch)]
        out.append({vi.name: np.ascontiguousarray(np.stack(items).reshape(shape))})
    return tuple(out)


# -- running ------------------------------------------------------------------------------------------
def worker_config(
    prepared: PreparedModel, runtime: str, settings: BenchSettings, *, model_path: str, feeds_npz: str | None
) -> dict[str, Any]:
    names = list(prepared.feeds[0]) if prepared.feeds else []
    return {
        "model": model_path,
        "runtime": runtime,
        "threads": settings.threads or 0,
        "warmup": settings.warmup,
        "iterations": settings.iterations,
        "duration_s": settings.duration_s,
        "input_shapes": {k: list(v) for k, v in prepared.pass_shapes.items()},
        "feeds_npz": feeds_npz,
        "feed_names": names,
        "seed": settings.seed,
        "options": dict(settings.options),
    }


def write_feeds(prepared: PreparedModel, folder: Path) -> Path | None:
    """Save prepared image batches as one .npz (``b{j}_i{k}`` arrays, ``count``) for the worker."""
    if not prepared.feeds:
        return None
    arrays: dict[str, np.ndarray] = {"count": np.asarray(len(prepared.feeds))}
    for j, feeds in enumerate(prepared.feeds):
        for k, arr in enumerate(feeds.values()):
            arrays[f"b{j}_i{k}"] = arr
    path = folder / f"feeds-{prepared.sha256[:12]}.npz"
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


def _wait(proc: subprocess.Popen[str], timeout_s: float | None) -> int:
    """``proc.wait`` in short slices: a signal the kernel hands to a reader thread still reaches the main
    thread's handler within 0.1 s (a single blocking waitpid would sleep through it)."""
    import time

    from edgecnn.interrupts import check

    end = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        check()
        step = 0.1 if end is None else max(0.0, min(0.1, end - time.monotonic()))
        try:
            return proc.wait(timeout=step)
        except subprocess.TimeoutExpired:
            if end is not None and time.monotonic() >= end:
                raise


def _die_with_parent() -> None:
    """In the child before exec: Linux sends it SIGKILL when edgecnn dies (even by SIGKILL): no orphans."""
    import signal

    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def run_worker_process(
    argv: Sequence[str],
    *,
    stdin_text: str | None,
    what: str,
    progress: ProgressFn | None,
    timeout_s: float | None,
    env: dict[str, str] | None = None,
    on_failure: Callable[[int, str], EdgecnnError | None] | None = None,
) -> dict[str, Any]:
    """Run a worker command (local python or ssh), stream its progress lines, parse its result line."""
    from edgecnn.interrupts import check, deferred

    out_chunks: list[str] = []
    err_lines: list[str] = []

    def read_stdout() -> None:
        assert proc is not None and proc.stdout is not None
        out_chunks.append(proc.stdout.read())

    def read_stderr() -> None:
        assert proc is not None and proc.stderr is not None
        for line in proc.stderr:
            if line.startswith(PROGRESS_MARK):
                if progress is not None:
                    with contextlib.suppress(ValueError):
                        done, total = (int(x) for x in line[len(PROGRESS_MARK) :].split())
                        progress(done, total)
            else:
                err_lines.append(line.rstrip("\n"))

    proc: subprocess.Popen[str] | None = None
    threads = [threading.Thread(target=read_stdout, daemon=True), threading.Thread(target=read_stderr, daemon=True)]
    try:
        with deferred():  # no handler may raise inside fork's at-fork hooks; raised right after
            proc = subprocess.Popen(
                list(argv),
                preexec_fn=_die_with_parent,
                stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
        check()
        for t in threads:
            t.start()
        if stdin_text is not None:
            assert proc.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.write(stdin_text)
                proc.stdin.close()
        rc = _wait(proc, timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise BenchError(f"{what}: no result within {timeout_s:g} s; the run was stopped") from None
    except KeyboardInterrupt:
        if proc is not None:
            proc.kill()
            proc.wait()
        raise
    for t in threads:
        t.join(timeout=5)
    stdout = "".join(out_chunks)
    result_line = next((ln for ln in reversed(stdout.splitlines()) if ln.startswith(RESULT_MARK)), None)
    if result_line is None:
        tail = " | ".join(ln for ln in err_lines[-3:] if ln.strip()) or "no output"
        if on_failure is not None:
            err = on_failure(rc, "\n".join(err_lines))
            if err is not None:
                raise err
        reason = f"killed by signal {-rc}" if rc < 0 else f"exit code {rc}"
        raise BenchError(f"{what}: the measuring process ended without a result ({reason}): {tail}")
    data = json.loads(result_line[len(RESULT_MARK) :])
    if not data.get("ok"):
        code = int(data.get("exit_code", 3))
        if data.get("error_type") == "MissingRuntimeError":
            raise BenchError(str(data.get("error")), 3)
        raise BenchError(str(data.get("error")), code)
    if data.get("worker_schema_version") != WORKER_SCHEMA_VERSION:
        raise BenchError(
            f"{what}: the worker speaks result version {data.get('worker_schema_version')!r}, this edgecnn expects "
            f"{WORKER_SCHEMA_VERSION}; install the same edgecnn version on both sides"
        )
    return data


def result_from_worker(prepared: PreparedModel, data: dict[str, Any], *, host: str) -> BenchResult:
    samples = tuple(int(x) for x in data["samples_ns"])
    if not samples:
        raise BenchError(f"{prepared.path}: the run produced no timed samples (is --duration too short?)")
    stats = latency_stats(samples, batch=prepared.batch)
    loop_overhead = max(0.0, data["loop_ns"] / len(samples) - float(np.mean(samples)))
    m = data["machine"]
    return BenchResult(
        model=str(prepared.path),
        model_name=prepared.name,
        model_bytes=prepared.size_bytes,
        model_sha256=prepared.sha256,
        runtime=data["runtime"],
        runtime_version=data["runtime_version"],
        device=data["device"],
        threads_requested=int(data["threads_requested"]),
        threads=int(data["threads"]),
        batch=prepared.batch,
        input_shapes=dict(prepared.input_shapes),
        input_source=prepared.input_source,
        input_batches=int(data["input_batches"]),
        warmup=int(data["warmup"]),
        load_ms=data["load_ns"] / 1e6,
        first_inference_ms=data["first_inference_ns"] / 1e6,
        stats=stats,
        memory=MemoryStats(
            baseline_rss=int(data["rss_baseline_bytes"]),
            after_load_rss=int(data["rss_after_load_bytes"]),
            after_first_inference_rss=int(data["rss_after_first_bytes"]),
            peak_rss=int(data["rss_peak_bytes"]),
        ),
        machine=MachineInfo(host=host, **{k: m.get(k) for k in MachineInfo.__dataclass_fields__ if k != "host"}),
        samples_ns=samples,
        loop_overhead_ns=loop_overhead,
        bound_inputs=bool(data.get("bound_inputs")),
        inference_precision=str(data.get("inference_precision", "")),
        timer_resolution_ns=float(data.get("timer_resolution_ns", 0.0)),
        timer_empty_call_ns=float(data.get("timer_empty_call_ns", 0.0)),
        timed_call=str(data.get("timed_call", "")),
        clock=str(data.get("clock", "perf_counter")),
        clock_name=str(data.get("clock_name", "")),
        clock_resolution_ns=float(data.get("clock_resolution_ns") or data.get("timer_resolution_ns", 0.0)),
        wall_p50_ns=float(data.get("wall_p50_ns") or 0.0),
        runtime_properties={str(k): str(v) for k, v in (data.get("runtime_properties") or {}).items()},
    )


@contextlib.contextmanager
def _scratch() -> Iterator[Path]:
    with temp_dir("bench") as d:
        yield Path(d)


def run_prepared(
    prepared: PreparedModel,
    runtime: str,
    settings: BenchSettings,
    *,
    host: Any = None,
    progress: ProgressFn | None = None,
) -> BenchResult:
    """Measure ``prepared`` on ``runtime`` in a fresh process: local, or on ``host`` (an ``SshHost``)."""
    check_runtime_name(runtime)
    if prepared.path.suffix.lower() == ".tflite" and runtime != "litert":
        raise BadInputError(f"{prepared.path}: a TFLite model runs on -r litert, not on '{runtime}'")
    if host is not None:
        return host.run(prepared, runtime, settings, progress=progress)
    require_local_runtime(runtime)
    with _scratch() as tmp:
        npz = write_feeds(prepared, tmp)
        cfg = worker_config(
            prepared, runtime, settings, model_path=str(prepared.path.resolve()), feeds_npz=str(npz) if npz else None
        )
        cfg["progress"] = progress is not None
        cfg_path = tmp / "config.json"
        cfg_path.write_text(json.dumps(cfg), encoding="utf-8")
        env = dict(os.environ)
        # The worker must import this same edgecnn, also when it runs from a source tree.
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        data = run_worker_process(
            [sys.executable, "-m", "edgecnn.bench.worker", str(cfg_path)],
            stdin_text=None,
            what=f"{prepared.path} on {runtime}",
            progress=progress,
            timeout_s=settings.timeout_s,
            env=env,
        )
    return result_from_worker(prepared, data, host="local")


def run_bench(
    model_path: str | Path,
    runtime: str = "ort",
    *,
    threads: int | None = None,
    warmup: int = DEFAULT_WARMUP,
    iterations: int | None = DEFAULT_ITERATIONS,
    duration_s: float | None = None,
    batch: int | None = None,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    input_source: str | Path = RANDOM,
    preprocess: Path | None = None,
    options: dict[str, str] | None = None,
    host: Any = None,
    progress: ProgressFn | None = None,
    timeout_s: float | None = None,
) -> BenchResult:
    """Benchmark one model on one runtime in a child process (or on ``host``) and return raw samples,
    latency percentiles, cold-start times, peak RSS and machine facts."""
    if duration_s is not None and iterations == DEFAULT_ITERATIONS:
        iterations = None
    settings = BenchSettings(
        threads=threads,
        warmup=warmup,
        iterations=iterations,
        duration_s=duration_s,
        options=dict(options or {}),
        timeout_s=timeout_s,
    )
    check_runtime_name(runtime)
    if host is None:
        require_local_runtime(runtime)
    prepared = prepare_model(
        model_path, input_shapes=input_shapes, batch=batch, input_source=input_source, preprocess=preprocess
    )
    return run_prepared(prepared, runtime, settings, host=host, progress=progress)
