"""``profile``: per-layer latency from the runtime's own profiler, mapped to ONNX nodes, joined with
``inspect``'s MACs and bytes, placed on the machine's roofline, with what the runtime really executed.

Order of events (one process, like a ``bench`` worker): open the model twice on the runtime -- plainly, and
with the runtime's profiler on -- bind inputs and outputs once on both, warm up, then alternate: one
profiled run (every kernel's time recorded), one timed run of the plain session (the end-to-end latency
``bench`` measures: only the inference call inside the timer). Alternating makes drift in machine load hit
both alike.

LiteRT has no op profiler reachable from Python: its adapter times each op of the file alone (one-op models,
same delegate) in the profiled runs; see ``edgecnn/runtimes/litert.py``.

A profiler has a cost of its own: ONNX Runtime's records shapes and memory statistics inside each
kernel's window (2-5 us per kernel here, more than a small kernel's own time), OpenVINO's counters have
1 us resolution. So the kernel times are *scaled* to the measured end-to-end latency minus the runtime's
fixed cost per call (measured on a one-layer model, see ``ceilings``): ``scale`` = (end-to-end - fixed) /
sum of raw kernel medians. The raw times and the scale are in the report; a scale far from 1 is said.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgecnn.errors import BadInputError, EdgecnnError
from edgecnn.profile.ceilings import Ceilings, interleaved, measure_ceilings, session_timer
from edgecnn.profile.mapping import COMPUTE_OPS, KernelNames, map_kernels, node_names

SCHEMA_VERSION = 1
PROFILED_RUNTIMES = ("ort", "openvino", "litert")
# Kernels a runtime (or, for LiteRT, the ONNX->TFLite converter) adds on its own: layout reorders, precision
# conversions, copies, explicit padding. Only kernels that claim no ONNX node count as inserted.
INSERTED_OPS = frozenset(
    {"Reorder", "ReorderInput", "ReorderOutput", "Transpose", "Cast", "Convert", "MemcpyToHost", "MemcpyFromHost",
     "TRANSPOSE", "CAST", "PAD", "QUANTIZE", "DEQUANTIZE"}
)  # fmt: skip
_TFL_PREC = {"float32": "fp32", "float16": "fp16", "int8": "int8", "uint8": "int8", "int16": "int16", "int32": "int32"}
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"})
_ORT_INT_OPS = ("QLinear", "Integer", "QGemm", "QAttention", "DynamicQuantize")


class ProfilingUnsupportedError(EdgecnnError):
    """The runtime is known but edgecnn cannot read per-layer times from it (exit 3: environment)."""

    exit_code = 3


class Bound(StrEnum):
    COMPUTE = "compute"
    MEMORY = "memory"
    NONE = "-"  # not executed, or no work the roofline can place


class Origin(StrEnum):
    MODEL = "model"  # maps to ONNX node(s)
    INSERTED = "inserted"  # added by the runtime (reorder, cast, transpose)
    UNMAPPED = "unmapped"  # the runtime's name matches nothing in the ONNX graph


@dataclass(frozen=True, kw_only=True)
class LayerProfile:
    """One executed kernel. Times in microseconds per inference, scaled (see the module docstring)."""

    kernel: str
    runtime_op: str
    kernel_type: str
    precision: str
    origin: Origin
    members: tuple[str, ...]
    onnx_ops: tuple[str, ...]
    executed: bool
    raw_p50_us: float
    p50_us: float
    p90_us: float
    p99_us: float
    mean_us: float
    share: float
    macs: int
    bytes: int
    intensity: float
    gmacs: float
    gbs: float
    bound: Bound
    attainable_gmacs: float
    efficiency: float  # achieved / attainable (roofline), 0..1+

    @property
    def primary(self) -> str:
        """The ONNX node this kernel is named after in tables: its compute op, else its first member."""
        for name, op in zip(self.members, self.onnx_ops, strict=True):
            if op in COMPUTE_OPS:
                return name
        return self.members[0] if self.members else self.kernel


@dataclass(frozen=True, kw_only=True)
class PreprocessTiming:
    """Decode and resize+normalise (the PreprocessSpec) per image, microseconds, beside inference."""

    images: int
    spec: str
    decode_us: float
    transform_us: float
    per_batch_us: float  # batch x (decode + transform)
    share: float  # of preprocessing + inference per batch


@dataclass(frozen=True, kw_only=True)
class ProfileReport:
    model: str
    runtime: str
    runtime_version: str
    device: str
    threads: int
    runs: int
    warmup: int
    inputs: dict[str, list[int]]
    precision_used: str  # what the runtime computed float layers in
    precision_default: str  # what it would use with no option
    e2e_p50_us: float  # plain session, bound I/O, timed between the profiled runs: bench's measurement
    e2e_p50_first_half_us: float
    e2e_p50_second_half_us: float
    kernel_sum_us: float  # sum of the layers' p50
    accounted_us: float  # kernel_sum + fixed cost per call
    raw_kernel_sum_us: float
    scale: float  # applied to the raw kernel times
    timer_resolution_ns: float
    ceilings: Ceilings
    layers: tuple[LayerProfile, ...]
    unclaimed_nodes: tuple[str, ...]
    notes: tuple[str, ...]
    findings: tuple[str, ...]
    preprocess: PreprocessTiming | None = None
    cpu_flags: tuple[str, ...] = field(default_factory=tuple)
    # the clock the end-to-end samples were taken with: bench's for the runtime (OpenVINO: its own C++ clock)
    clock: str = "Python perf_counter_ns around the call"
    # profile --compare (profile_pair): the end-to-end p50 of each alternating round, in order; empty otherwise
    round_p50_us: tuple[float, ...] = ()
    # --ov-property: each property asked for, as the compiled model reports it back
    runtime_properties: dict[str, str] = field(default_factory=dict)

    @property
    def accounted_ratio(self) -> float:
        return self.accounted_us / self.e2e_p50_us if self.e2e_p50_us else float("nan")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["accounted_ratio"] = self.accounted_ratio
        return d


# -- helpers ----------------------------------------------------------------------------------------------
def cpu_flags() -> tuple[str, ...]:
    """The CPU features that decide precision: AMX, AVX512-BF16/FP16/VNNI, F16C (Linux /proc/cpuinfo)."""
    want = (
        "amx_bf16",
        "amx_int8",
        "amx_fp16",
        "avx512_bf16",
        "avx512_fp16",
        "avx512_vnni",
        "avx_vnni",
        "f16c",
        "asimdhp",
        "fphp",
    )
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return ()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            have = set(line.split(":", 1)[1].split())
            return tuple(f for f in want if f in have)
    return ()


def timer_resolution_ns(samples: int = 2000) -> float:
    """Smallest non-zero step of ``time.perf_counter_ns`` seen in back-to-back reads (what one timed
    sample can resolve, including the cost of reading the clock)."""
    pc = time.perf_counter_ns
    best = math.inf
    for _ in range(samples):
        a = pc()
        b = pc()
        while b == a:
            b = pc()
        best = min(best, b - a)
    return float(best)


def _precision_ort(k: dict[str, Any]) -> str:
    op = k.get("op", "")
    types = k.get("input_types") or []
    if op in QDQ_OPS or op == "Cast":
        return "convert"
    if any(t in op for t in _ORT_INT_OPS):
        return "int8"
    first = types[0] if types else ""
    return {
        "float": "fp32",
        "float16": "fp16",
        "double": "fp64",
        "uint8": "int8",
        "int8": "int8",
        "bfloat16": "bf16",
    }.get(first, first or "-")


_OV_PREC = {"f32": "fp32", "bf16": "bf16", "f16": "fp16", "i8": "int8", "u8": "int8", "i32": "int32", "i64": "int64"}


def _tensor_bytes(model: onnx.ModelProto) -> dict[str, int]:
    from edgecnn.graph.summary import _itemsize, _numel, static_value_types

    return {name: _numel(shape) * _itemsize(et) for name, (et, shape) in static_value_types(model).items()}


def _boundary_bytes(
    nodes: Sequence[onnx.NodeProto], sizes: dict[str, int], consumers: dict[str, int], outputs: set[str]
) -> int:
    produced = {o for n in nodes for o in n.output}
    read = sum(sizes.get(t, 0) for n in nodes for t in dict.fromkeys(n.input) if t and t not in produced)
    inside = {}
    for n in nodes:
        for t in n.input:
            inside[t] = inside.get(t, 0) + 1
    written = sum(
        sizes.get(o, 0)
        for n in nodes
        for o in n.output
        if o and (o in outputs or consumers.get(o, 0) > inside.get(o, 0))
    )
    return read + written


def _pct(a: np.ndarray, q: float) -> float:
    return float(np.percentile(a, q)) if a.size else 0.0


# -- the run ------------------------------------------------------------------------------------------------
def check_runtime(runtime: str) -> None:
    from edgecnn.runtimes import RUNTIMES

    if runtime not in RUNTIMES:
        raise BadInputError(f"--runtime '{runtime}': unknown runtime; valid runtimes are {', '.join(RUNTIMES)}")
    if runtime not in PROFILED_RUNTIMES:
        raise ProfilingUnsupportedError(
            f"--runtime {runtime}: edgecnn has no per-layer profiling for this runtime (it reads ONNX Runtime's "
            "profiler, OpenVINO's performance counters and LiteRT's ops one by one); use --runtime "
            + " or --runtime ".join(PROFILED_RUNTIMES)
        )


@dataclass(kw_only=True)
class _Opened:
    """One model opened for profiling on one runtime: its plain and profiled sessions with inputs bound, the
    graph the kernels map to, the machine's ceilings and the preprocessing timing, before any measuring.
    ``reopen`` opens the profiled session again (with its bound call) for a runtime whose profiler reads one
    series of runs per session (``profiles_once``: ONNX Runtime)."""

    runtime: str
    path: Path
    model: onnx.ModelProto
    shapes: dict[str, tuple[int, ...]]
    tflite: bool
    onnx_source: Path | None
    pre: PreprocessTiming | None
    plain: Any
    prof: Any
    call: Any
    pcall: Any
    timer: Any
    ceilings: Ceilings
    reopen: Any
    measured: bool = False

    def measure(self, runs: int, warmup: int) -> tuple[list[int], list[list[dict[str, Any]]]]:
        """``runs`` profiled runs alternating with timed plain ones (ceilings.interleaved)."""
        if self.measured and getattr(self.prof, "profiles_once", False):
            self.prof = None  # the finished profiler's session goes before the next one opens
            self.prof, self.pcall = self.reopen()
        self.measured = True
        return interleaved(self.call, self.prof, self.pcall, runs, warmup=warmup, plain_timer=self.timer)


def _open_profile(
    model_path: str | Path,
    runtime: str = "ort",
    *,
    threads: int = 0,
    runs: int = 200,
    warmup: int = 20,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    ov_precision: str = "f32",
    cache_dir: Path | None = None,
    refresh_ceilings: bool = False,
    images: Path | None = None,
    preprocess: Path | None = None,
    roofline: bool = True,
    onnx_source: Path | None = None,
    ov_properties: dict[str, str] | None = None,
) -> _Opened:
    """Check the arguments and open ``model_path`` for profile_model / profile_pair."""
    from edgecnn.graph.load import load_model
    from edgecnn.runtimes import open_session, random_feeds

    check_runtime(runtime)
    if runs < 1:
        raise BadInputError(f"--runs {runs}: expected a positive number of profiled runs, e.g. 200")
    if warmup < 0:
        raise BadInputError(f"--warmup {warmup}: expected 0 or more untimed runs")
    if threads < 0:
        raise BadInputError(f"--threads {threads}: expected a positive number (omit it for the runtime default)")
    if ov_precision not in ("f32", "bf16", "f16", "default"):
        raise BadInputError(f"--ov-precision {ov_precision}: valid values are f32, bf16, f16, default")
    tflite = Path(model_path).suffix.lower() == ".tflite"
    if tflite and runtime != "litert":
        raise BadInputError(f"{model_path}: a TFLite model is profiled on --runtime litert, not '{runtime}'")
    if onnx_source is not None and not tflite:
        raise BadInputError(f"--onnx {onnx_source}: only for a .tflite MODEL (its ONNX source); {model_path} is ONNX")
    options = {"inference_precision": ov_precision, **(ov_properties or {})} if runtime == "openvino" else {}
    if tflite:
        if images is not None:
            raise BadInputError(f"--input {images}: preprocessing timing needs the ONNX model, not a .tflite file")
        plain = open_session(runtime, model_path, threads=threads, input_shapes={}, options=options)
        shapes = {t.name: tuple(t.shape) for t in plain.inputs()}
        if onnx_source is not None:
            model = load_model(onnx_source).model
        else:  # no ONNX graph: every op keeps its TFLite name (the report says so)
            model = onnx.helper.make_model(onnx.helper.make_graph([], "tflite", [], []))
        path = Path(model_path)
        pre = None
    else:
        loaded = load_model(model_path, input_shapes or {})
        model = loaded.model
        shapes = dict(loaded.input_shapes)
        path = loaded.path
        from edgecnn.bench.harness import check_benchable  # string inputs, inputs over 2 GiB: exit 2

        check_benchable(loaded, shapes)
        # images and their spec are checked against the model before any measuring starts
        pre = _preprocess_timing(model, shapes, images, preprocess, 0.0) if images is not None else None
        plain = open_session(runtime, path, threads=threads, input_shapes=shapes, options=options)

    def open_profiled() -> tuple[Any, Any]:
        sess = open_session(runtime, path, threads=threads, input_shapes=shapes, options={**options, "profile": "1"})
        return sess, sess.bind(feeds) if callable(getattr(sess, "bind", None)) else None  # type: ignore[attr-defined]

    feeds = random_feeds(plain.inputs())
    prof, pcall = open_profiled()
    if not callable(getattr(prof, "kernel_runs", None)):
        raise ProfilingUnsupportedError(
            f"--runtime {runtime}: edgecnn's adapter for it has no per-layer profiling; use --runtime ort or openvino"
        )
    ceilings = measure_ceilings(
        runtime, threads, cache_dir=cache_dir, refresh=refresh_ceilings, options=options, roofline=roofline
    )
    call = plain.bind(feeds)  # type: ignore[attr-defined]
    return _Opened(
        runtime=runtime, path=Path(path), model=model, shapes=shapes, tflite=tflite, onnx_source=onnx_source, pre=pre,
        plain=plain, prof=prof, call=call, pcall=pcall, timer=session_timer(plain, call), ceilings=ceilings,
        reopen=open_profiled,
    )  # fmt: skip


def profile_model(
    model_path: str | Path,
    runtime: str = "ort",
    *,
    threads: int = 0,
    runs: int = 200,
    warmup: int = 20,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    ov_precision: str = "f32",
    cache_dir: Path | None = None,
    refresh_ceilings: bool = False,
    images: Path | None = None,
    preprocess: Path | None = None,
    roofline: bool = True,
    onnx_source: Path | None = None,
    ov_properties: dict[str, str] | None = None,
) -> ProfileReport:
    """Profile ``model_path`` on ``runtime`` (see the module docstring). A ``.tflite`` file runs on ``litert``;
    ``onnx_source`` is the ONNX model it was converted from (MACs, bytes and the mapping to ONNX nodes); without
    it the ops keep their TFLite names (edgecnn's converter names them after the ONNX tensors)."""
    o = _open_profile(
        model_path, runtime, threads=threads, runs=runs, warmup=warmup, input_shapes=input_shapes,
        ov_precision=ov_precision, cache_dir=cache_dir, refresh_ceilings=refresh_ceilings, images=images,
        preprocess=preprocess, roofline=roofline, onnx_source=onnx_source, ov_properties=ov_properties,
    )  # fmt: skip
    samples_ns, per_run = o.measure(runs, warmup)
    return _report(o, samples_ns, per_run, runs=runs, warmup=warmup)


# Alternating rounds of profile_pair (profile --compare): A B B A A B B A, so that drift in machine load and clock
# speed hits both models alike; a verdict says when the rounds disagree.
COMPARE_ROUNDS = 4
SWITCH_WARMUP = 5  # untimed runs of each session after the other model ran (its caches are cold again)


def profile_pair(
    base: str | Path,
    other: str | Path,
    runtime: str = "ort",
    *,
    rounds: int = COMPARE_ROUNDS,
    runs: int = 200,
    warmup: int = 20,
    images: Path | None = None,
    onnx_source: Path | None = None,
    **kw: Any,
) -> tuple[ProfileReport, ProfileReport]:
    """Profile two models on ``runtime`` for ``profile --compare``: both opened side by side, then ``rounds``
    alternating rounds (A B, B A, ...) of about ``runs / rounds`` profiled runs each, so that a machine that
    slows down or speeds up during the measurement does not decide the comparison. Each report keeps its rounds'
    end-to-end p50 (``round_p50_us``). ``images`` (preprocessing timing) and ``onnx_source`` apply to ``base``."""
    if not 1 <= rounds <= 1000:
        raise BadInputError(f"--rounds {rounds}: expected 1..1000 alternating rounds")
    models = [
        _open_profile(base, runtime, runs=runs, warmup=warmup, images=images, onnx_source=onnx_source, **kw),
        _open_profile(other, runtime, runs=runs, warmup=warmup, images=None, **kw),
    ]
    rounds = min(rounds, runs)
    samples: list[list[int]] = [[], []]
    kernels: list[list[list[dict[str, Any]]]] = [[], []]
    per_round: list[list[float]] = [[], []]
    for r in range(rounds):
        n = runs // rounds + (1 if r < runs % rounds else 0)
        for i in (0, 1) if r % 2 == 0 else (1, 0):
            s, k = models[i].measure(n, warmup if r == 0 else min(warmup, SWITCH_WARMUP))
            samples[i] += s
            kernels[i] += k
            per_round[i].append(statistics.median(s) / 1e3)
    a, b = (
        _report(o, samples[i], kernels[i], runs=runs, warmup=warmup, round_p50_us=tuple(per_round[i]))
        for i, o in enumerate(models)
    )
    return a, b


def _report(
    o: _Opened,
    samples_ns: list[int],
    per_run: list[list[dict[str, Any]]],
    *,
    runs: int,
    warmup: int,
    round_p50_us: tuple[float, ...] = (),
) -> ProfileReport:
    """The report of ``o`` from its end-to-end samples and its profiled runs' kernels."""
    from edgecnn.graph.summary import node_macs, static_value_types

    runtime, path, model, shapes, tflite = o.runtime, o.path, o.model, o.shapes, o.tflite
    onnx_source, pre, plain, prof, ceilings = o.onnx_source, o.pre, o.plain, o.prof, o.ceilings
    e2e = statistics.median(samples_ns) / 1e3
    half = len(samples_ns) // 2
    before, after = samples_ns[: max(1, half)], samples_ns[half:] or samples_ns

    executed_graph = prof.executed_graph() if hasattr(prof, "executed_graph") else []  # type: ignore[attr-defined]
    exec_info = {n["name"]: n for n in executed_graph} if runtime != "litert" else {}
    precision_used = "fp32"
    precision_default = "fp32"
    if runtime == "openvino":
        from edgecnn.runtimes.openvino import default_cpu_precision

        precision_used = _OV_PREC.get(prof.precision(), prof.precision())  # type: ignore[attr-defined]
        precision_default = _OV_PREC.get(default_cpu_precision(), default_cpu_precision())

    # kernels in execution order (first run), their times over all runs
    order: list[dict[str, Any]] = []
    samples: dict[str, list[float]] = {}
    for r in per_run:
        for k in r:
            if k["key"] not in samples:
                samples[k["key"]] = []
                order.append(k)
            samples[k["key"]].append(float(k["us"]))
    if runtime == "openvino":  # counters also list layers fused away (NOT_RUN, absent from the executed graph)
        order = [
            k
            for k in order
            if k["name"] in exec_info and exec_info[k["name"]].get("layerType") not in ("Input", "Output")
        ]
    kernels = []
    if runtime == "litert":
        # Each op ran alone, so its time includes the interpreter's cost per Invoke (the one-op model's time):
        # taken out here, as it is counted once per whole-model call in the fixed cost below.
        for key in samples:
            samples[key] = [max(0.0, us - ceilings.fixed_call_us) for us in samples[key]]
    for k in order:
        names = [k["name"], *k.get("outputs", [])]
        orig = exec_info.get(k["name"], {}).get("originalLayersNames", "")
        names += [n for n in orig.split(",") if n]
        kernels.append(KernelNames(key=k["key"], names=tuple(names)))
    mapping = map_kernels(model.graph, kernels)

    graph_nodes = {n: node for n, node in zip(node_names(model.graph), model.graph.node, strict=True)}
    sizes = _tensor_bytes(model)
    types = static_value_types(model)
    consumers: dict[str, int] = {}
    for node in model.graph.node:
        for t in node.input:
            consumers[t] = consumers.get(t, 0) + 1
    outputs = {o.name for o in model.graph.output}
    raw_sum = sum(float(np.median(samples[k["key"]])) for k in order if k.get("executed", True))
    scale = max(0.0, e2e - ceilings.fixed_call_us) / raw_sum if raw_sum > 0 else 1.0

    rows: list[LayerProfile] = []
    for k in order:
        key = k["key"]
        raw = np.asarray(samples[key], dtype=np.float64)
        executed = bool(k.get("executed", True))
        corr = raw * scale if executed else raw * 0
        members = mapping.members.get(key, ())
        mnodes = [graph_nodes[m] for m in members if m in graph_nodes]
        ops = tuple(n.op_type for n in mnodes)
        macs = sum(node_macs(n, types) for n in mnodes)
        nbytes = _boundary_bytes(mnodes, sizes, consumers, outputs) if mnodes else 0
        info = exec_info.get(k["name"], {})
        op = info.get("layerType", k.get("op", ""))
        if runtime == "openvino":
            prec = _OV_PREC.get(info.get("runtimePrecision", ""), info.get("runtimePrecision", "") or "-")
            if (
                op in ("Reorder", "Convert")
                and info.get("outputPrecisions")
                and prec != _OV_PREC.get(info["outputPrecisions"], prec)
            ):
                prec = "convert"
            ktype = info.get("primitiveType") or k.get("exec_type", "")
        elif runtime == "litert":
            dt = (k.get("input_types") or [""])[0]
            prec = "convert" if op in ("QUANTIZE", "DEQUANTIZE", "CAST") else _TFL_PREC.get(dt, dt or "-")
            ktype = f"{op} ({'XNNPACK' if k.get('delegated') else 'builtin'})"
        else:
            prec = _precision_ort(k)
            ktype = k.get("op", "") + (" (NCHWc)" if k["name"].endswith("_nchwc") else "")
        origin = Origin.MODEL if members else (Origin.INSERTED if op in INSERTED_OPS else Origin.UNMAPPED)
        p50 = _pct(corr, 50)
        rows.append(
            LayerProfile(
                kernel=k["name"],
                runtime_op=op,
                kernel_type=ktype,
                precision=prec,
                origin=origin,
                members=tuple(members),
                onnx_ops=ops,
                executed=bool(executed and raw.max(initial=0) > 0),
                raw_p50_us=_pct(raw, 50),
                p50_us=p50,
                p90_us=_pct(corr, 90),
                p99_us=_pct(corr, 99),
                mean_us=float(corr.mean()) if corr.size else 0.0,
                share=0.0,
                macs=int(macs),
                bytes=int(nbytes),
                intensity=macs / nbytes if nbytes else 0.0,
                gmacs=macs / (p50 * 1e3) if p50 > 0 else 0.0,
                gbs=nbytes / (p50 * 1e3) if p50 > 0 else 0.0,
                bound=Bound.NONE,
                attainable_gmacs=0.0,
                efficiency=0.0,
            )
        )
    total = sum(r.p50_us for r in rows)
    rows = [_place(r, total, ceilings) for r in rows]
    notes: list[str] = []
    unmapped = [r for r in rows if r.origin is Origin.UNMAPPED and (r.executed or r.p50_us > 0)]
    if unmapped:
        t = sum(r.p50_us for r in unmapped)
        why = (
            f"; node names used more than once in the ONNX graph: {', '.join(mapping.ambiguous_names[:3])}"
            if mapping.ambiguous_names
            else ""
        )
        notes.append(
            f"{len(unmapped)} of {len(rows)} kernels ({t:.1f} us, {100 * t / total if total else 0:.0f}% of the time) "
            f"could not be mapped to ONNX nodes; they are shown with {runtime}'s own names{why}"
            + (" (give --onnx SOURCE.onnx to map a .tflite file's ops)" if tflite and onnx_source is None else "")
        )
    if runtime == "litert":
        notes.append(
            "LiteRT's Python API exposes no op profiler: each op was timed on its own (a one-op model with the same "
            f"delegate, {'XNNPACK' if getattr(prof, 'delegate', '') == 'xnnpack' else getattr(prof, 'delegate', '-')}), "
            "minus the cost of one Invoke, and scaled to the whole model's time; XNNPACK runs its partitions as "
            "single TfLiteXNNPackDelegate nodes, so inside them this split is the ops' stand-alone cost, not a trace"
        )
        delegates = [n for n in executed_graph if n.get("op") == "DELEGATE"]
        taken = [n for n in executed_graph if n.get("op") != "DELEGATE" and n.get("delegated")]
        if delegates:
            notes.append(
                f"the whole model ran {len(taken)} of {len(executed_graph) - len(delegates)} ops inside "
                f"{len(delegates)} TfLiteXNNPackDelegate node(s): "
                + ", ".join(f"{op} x{c}" for op, c in _counts(n["op"] for n in taken).items())
            )
    above = [r for r in rows if r.bound is Bound.MEMORY and r.efficiency > 1.2]
    if above:
        notes.append(
            f"{len(above)} memory-bound layer(s) run above the memory roof: their tensors fit in the CPU caches, while "
            "the roof is main-memory bandwidth (a 256 MiB copy); for them the roof is a floor, not a limit"
        )
    budget = e2e - ceilings.fixed_call_us
    if scale < 0.67 and runtime == "litert":
        notes.append(
            f"the ops run one by one took {raw_sum:.1f} us for {budget:.1f} us measured end to end (minus the fixed cost "
            f"per call): op times were scaled by {scale:.2f}; alone, each op starts with cold caches and its own "
            "thread hand-off, which the whole model pays once"
        )
    elif scale < 0.67:
        notes.append(
            f"{runtime}'s profiler reported {raw_sum:.1f} us of kernel time for {budget:.1f} us measured end to end "
            f"(minus the fixed cost per call): kernel times were scaled by {scale:.2f}; on kernels this small the "
            "profiler's own cost per kernel is a large part of each one's time, so compare layers with each other "
            "rather than to the microsecond"
        )
    elif scale > 1.5:
        notes.append(
            f"the kernels {runtime} timed add up to only {100 / scale:.0f}% of the {budget:.1f} us measured end to end "
            f"(minus the fixed cost per call); kernel times were scaled by {scale:.2f}. The rest is outside any timed "
            "kernel: waiting for CPU time on a loaded machine, thread synchronisation, or work the runtime does not "
            "attribute to a layer"
        )
    report = ProfileReport(
        model=str(path),
        runtime=runtime,
        runtime_version=plain.version,
        device=str(plain.device),
        threads=int(plain.threads),
        runs=runs,
        warmup=warmup,
        inputs={k: list(v) for k, v in shapes.items()},
        precision_used=precision_used,
        precision_default=precision_default,
        runtime_properties=dict(getattr(plain, "properties", {})),
        e2e_p50_us=e2e,
        e2e_p50_first_half_us=statistics.median(before) / 1e3,
        e2e_p50_second_half_us=statistics.median(after) / 1e3,
        kernel_sum_us=total,
        accounted_us=total + ceilings.fixed_call_us,
        raw_kernel_sum_us=raw_sum,
        scale=scale,
        timer_resolution_ns=timer_resolution_ns(),
        ceilings=ceilings,
        layers=tuple(rows),
        unclaimed_nodes=mapping.unclaimed_nodes,
        notes=tuple(notes),
        findings=(),
        preprocess=_replace(pre, share=pre.per_batch_us / (pre.per_batch_us + e2e)) if pre is not None else None,
        cpu_flags=cpu_flags(),
        clock=_clock_name(plain),
        round_p50_us=round_p50_us,
    )
    from edgecnn.profile.findings import findings_for

    return _replace(report, findings=tuple(findings_for(report, model)))


def _clock_name(sess: Any) -> str:
    clock = sess.clock() if callable(getattr(sess, "clock", None)) else None
    return f"runtime clock (C++): {clock.name}" if clock is not None else "Python perf_counter_ns around the call"


def _counts(items: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for x in items:
        out[x] = out.get(x, 0) + 1
    return out


def _replace(obj: Any, **kw: Any) -> Any:
    import dataclasses

    return dataclasses.replace(obj, **kw)


def _place(r: LayerProfile, total: float, c: Ceilings) -> LayerProfile:
    """Roofline placement: attainable = min(peak for the kernel's precision, intensity x bandwidth)."""
    share = r.p50_us / total if total else 0.0
    if not r.executed or r.p50_us <= 0 or r.bytes <= 0 or not c.gmacs:
        return _replace(r, share=share)
    bw = c.bandwidth_gbs
    if r.macs <= 0:
        # data movement only: the ceiling is the memory bandwidth
        return _replace(r, share=share, bound=Bound.MEMORY, efficiency=r.gbs / bw if bw else 0.0)
    peak = c.peak(r.precision if r.precision in c.gmacs else "fp32")
    ridge = peak / bw if bw else math.inf
    attainable = min(peak, r.intensity * bw)
    return _replace(
        r,
        share=share,
        bound=Bound.MEMORY if r.intensity < ridge else Bound.COMPUTE,
        attainable_gmacs=attainable,
        efficiency=r.gmacs / attainable if attainable else 0.0,
    )


def _preprocess_timing(
    model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]], images: Path, preprocess: Path | None, e2e_us: float
) -> PreprocessTiming:
    from onnx.helper import tensor_dtype_to_np_dtype

    from edgecnn.errors import DataError
    from edgecnn.graph.load import graph_inputs
    from edgecnn.preprocess import find_spec, list_images

    if not Path(images).is_dir():
        raise BadInputError(
            f"--input {images}: not a directory; give a folder of images (read through its preprocess.toml)"
        )
    vis = graph_inputs(model)
    if len(vis) != 1:
        raise DataError(f"--input {images}: preprocessing feeds one image input; the model has {len(vis)} inputs")
    vi = vis[0]
    shape = shapes[vi.name]
    spec = find_spec(Path(images), preprocess)
    dtype = np.dtype(tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)).name
    spec.check_against(vi.name, shape, dtype, model_name="the model")
    files = list_images(Path(images))[:32]
    pc = time.perf_counter_ns
    dec, tr = [], []
    for p in files:
        t0 = pc()
        img = spec.decode(p)  # the one decoder: bombs and unreadable files are one-line errors
        t1 = pc()
        spec.apply(img, name=str(p))
        t2 = pc()
        dec.append(t1 - t0)
        tr.append(t2 - t1)
    d, t = statistics.median(dec) / 1e3, statistics.median(tr) / 1e3
    batch = int(shape[0]) if shape else 1
    per_batch = batch * (d + t)
    return PreprocessTiming(
        images=len(files),
        spec=spec.source or "(spec)",
        decode_us=d,
        transform_us=t,
        per_batch_us=per_batch,
        share=per_batch / (per_batch + e2e_us) if per_batch + e2e_us > 0 else 0.0,
    )
