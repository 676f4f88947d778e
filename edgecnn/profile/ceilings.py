"""The machine's ceilings, measured: memory bandwidth (numpy copy), FP32 / INT8 (and on OpenVINO bf16) conv
throughput through the runtime itself, and the runtime's fixed cost per call -- cached per machine.

Each number is a short micro-benchmark (about a second in all), stored as JSON in the user cache dir
(``$EDGECNN_CACHE_DIR`` or ``~/.cache/edgecnn``, ``profile/``) under a key made of the CPU model, the
runtime and its version, and the thread count, so a new CPU, runtime release or thread count measures anew.

The runtime's fixed cost per call (dispatch, input/output handling: what no kernel's time contains) is
the end-to-end time of a one-op model on 16 values, measured without the profiler.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgecnn.fsutil import atomic_write_text, temp_dir

CACHE_VERSION = 3  # 3: OpenVINO timed on its own C++ clock, as bench does


@dataclass(frozen=True, kw_only=True)
class Ceilings:
    """Roofline ceilings of one machine x runtime x threads. GMAC/s per precision; GB/s of memory."""

    key: str
    cpu_model: str
    runtime: str
    runtime_version: str
    threads: int
    bandwidth_gbs: float
    gmacs: dict[str, float]  # precision ("fp32", "int8", "bf16") -> measured peak GMAC/s
    fixed_call_us: float  # runtime cost per inference outside any kernel (dispatch, I/O)
    measured_at: str
    cached: bool = False

    def peak(self, precision: str) -> float:
        if precision in self.gmacs:
            return self.gmacs[precision]
        return self.gmacs.get("fp32", 0.0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_cache_dir() -> Path:
    base = os.environ.get("EDGECNN_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "edgecnn"
    )
    return Path(base) / "profile"


def cache_key(cpu_model: str, runtime: str, version: str, threads: int) -> str:
    raw = f"v{CACHE_VERSION}|{cpu_model}|{runtime}|{version}|{threads}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def memory_bandwidth_gbs(mib: int = 256, repeats: int = 5) -> float:
    """Best of ``repeats`` numpy copies of a ``mib`` MiB buffer: bytes read + written per second."""
    src = np.ones(mib * 1024 * 1024 // 4, dtype=np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)  # touch the pages
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return 2 * src.nbytes / best / 1e9


# -- micro-models ---------------------------------------------------------------------------------------
def _save(graph: onnx.GraphProto, path: Path) -> Path:
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgecnn-profile")
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def conv_model(path: Path, *, int8: bool, c: int = 128, hw: int = 28) -> tuple[Path, int]:
    """A 3x3 conv (c -> c channels, hw x hw): FP32, or QDQ with uint8 activations and int8 per-channel
    weights (the form both CPU runtimes fuse into an integer kernel). Returns the path and its MACs."""
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((c, c, 3, 3)) * 0.05).astype(np.float32)
    b = np.zeros(c, np.float32)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, hw, hw])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, hw, hw])
    if not int8:
        node = helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="conv")
        g = helper.make_graph(
            [node], "ceiling_fp32", [x], [y], [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")]
        )
    else:
        ws = (np.abs(w).reshape(c, -1).max(axis=1) / 127).astype(np.float32)
        wq = np.clip(np.round(w / ws[:, None, None, None]), -127, 127).astype(np.int8)
        inits = [
            numpy_helper.from_array(wq, "wq"),
            numpy_helper.from_array(ws, "ws"),
            numpy_helper.from_array(np.zeros(c, np.int8), "wz"),
            numpy_helper.from_array(np.array(0.02, np.float32), "xs"),
            numpy_helper.from_array(np.array(128, np.uint8), "xz"),
            numpy_helper.from_array(np.zeros(c, np.int32), "bq"),
            numpy_helper.from_array((0.02 * ws).astype(np.float32), "bs"),
            numpy_helper.from_array(np.zeros(c, np.int32), "bz"),
        ]
        nodes = [
            helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"], name="q_in"),
            helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"], name="dq_in"),
            helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], name="dq_w", axis=0),
            helper.make_node("DequantizeLinear", ["bq", "bs", "bz"], ["bd"], name="dq_b", axis=0),
            helper.make_node("Conv", ["xd", "wd", "bd"], ["yc"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="conv"),
            helper.make_node("QuantizeLinear", ["yc", "xs", "xz"], ["yq"], name="q_out"),
            helper.make_node("DequantizeLinear", ["yq", "xs", "xz"], ["y"], name="dq_out"),
        ]
        g = helper.make_graph(nodes, "ceiling_int8", [x], [y], inits)
    return _save(g, path), c * c * 9 * hw * hw


# -- measuring ------------------------------------------------------------------------------------------
def session_timer(sess: Any, call: Any) -> Callable[[], int]:
    """One timed run of ``call`` (bound on ``sess``) in ns, on the clock ``bench`` uses for that session: the
    runtime's own clock around its C++ call when the adapter has one (OpenVINO), else perf_counter_ns around
    the call. Profile and bench then measure end-to-end time the same way."""
    clock = sess.clock() if callable(getattr(sess, "clock", None)) else None
    if clock is not None:
        read, unit = clock.read_last, clock.unit_ns

        def timed() -> int:
            call()
            return round(read() * unit)

        return timed
    pc = time.perf_counter_ns

    def timed_pc() -> int:
        t0 = pc()
        call()
        return pc() - t0

    return timed_pc


def time_call(call: Any, runs: int, warmup: int = 20, *, sess: Any = None) -> list[int]:
    timed = session_timer(sess, call) if sess is not None else None
    pc = time.perf_counter_ns
    for _ in range(warmup):
        call()
    out = [0] * runs
    if timed is not None:
        for i in range(runs):
            out[i] = timed()
        return out
    for i in range(runs):
        t0 = pc()
        call()
        out[i] = pc() - t0
    return out


def interleaved(
    plain_call: Any,
    prof: Any,
    prof_call: Any,
    runs: int,
    warmup: int = 20,
    block: int = 20,
    *,
    plain_timer: Callable[[], int] | None = None,
) -> tuple[list[int], list[list[dict[str, Any]]]]:
    """Profiled runs and timed plain runs in alternating blocks of ``block`` (as many of each), so that
    drift in machine load hits both alike while each session runs warm, as in ``bench``: (plain
    end-to-end samples in ns, the profiled runs' kernels). The first plain run of each block, right after
    the switch from the other session, is not kept."""
    pc = time.perf_counter_ns
    for _ in range(warmup):
        plain_call()
        prof_call()
    e2e: list[int] = []
    count = [0]

    def between() -> None:
        count[0] += 1
        if count[0] % block and count[0] != runs:
            return
        plain_call()
        if plain_timer is not None:  # the session's own clock (session_timer), as bench times it
            for _ in range(block):
                e2e.append(plain_timer())
            return
        for _ in range(block):
            t0 = pc()
            plain_call()
            e2e.append(pc() - t0)

    kernels = prof.kernel_runs(prof_call, runs, between=between)
    return e2e, kernels


def _p50_us(samples_ns: list[int]) -> float:
    return statistics.median(samples_ns) / 1e3


def _throughput(runtime: str, path: Path, macs: int, threads: int, options: dict[str, str]) -> float:
    from edgecnn.runtimes import open_session, random_feeds

    sess = open_session(runtime, path, threads=threads, options=options)
    call = sess.bind(random_feeds(sess.inputs()))  # type: ignore[attr-defined]
    return macs / (_p50_us(time_call(call, 30, warmup=5)) * 1e3)  # MAC/ns = GMAC/s


def _fixed_cost(runtime: str, folder: Path, threads: int, options: dict[str, str]) -> float:
    """The runtime's cost per inference outside any kernel, microseconds: the end-to-end time of a model
    with one elementwise op on 16 values, whose kernel takes well under a microsecond (no profiler on)."""
    from edgecnn.runtimes import open_session, random_feeds

    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="relu")],  # an op every runtime (and the TFLite export) has
        "fixed_cost",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])],
    )
    path = _save(g, folder / "one_op.onnx")
    plain = open_session(runtime, path, threads=threads, options=options)
    call = plain.bind(random_feeds(plain.inputs()))  # type: ignore[attr-defined]
    return _p50_us(time_call(call, 1000, warmup=200, sess=plain))


def measure_ceilings(
    runtime: str,
    threads: int,
    *,
    cache_dir: Path | None = None,
    refresh: bool = False,
    options: dict[str, str] | None = None,
    roofline: bool = True,
) -> Ceilings:
    """The ceilings for ``runtime`` with ``threads`` on this machine, from the cache when present.
    ``roofline=False`` measures only the fixed cost per call (a fraction of a second, not cached)."""
    from edgecnn.bench.machine import cpu_model
    from edgecnn.runtimes import runtime_version

    version = runtime_version(runtime)
    cpu = cpu_model()
    opts = dict(options or {})
    key = cache_key(cpu, runtime, version + json.dumps(opts, sort_keys=True), threads)
    if not roofline:
        with temp_dir("ceil") as d:  # created with interrupts held, removed on Ctrl-C/SIGTERM, swept after SIGKILL
            fixed = _fixed_cost(runtime, Path(d), threads, opts)
        return Ceilings(
            key=key, cpu_model=cpu, runtime=runtime, runtime_version=version, threads=threads, bandwidth_gbs=0.0,
            gmacs={}, fixed_call_us=fixed, measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )  # fmt: skip
    folder = cache_dir if cache_dir is not None else default_cache_dir()
    path = folder / f"ceilings-{runtime}-{key}.json"
    if path.is_file() and not refresh:
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
            if d.get("cache_version") == CACHE_VERSION:
                d.pop("cache_version")
                d["cached"] = True
                return Ceilings(**d)
        except (OSError, ValueError, TypeError):
            pass  # a damaged cache entry is measured again
    with temp_dir("ceil") as d:  # created with interrupts held, removed on Ctrl-C/SIGTERM, swept after SIGKILL
        tmp = Path(d)
        bw = memory_bandwidth_gbs()
        gmacs: dict[str, float] = {}
        fp32_path, macs = conv_model(tmp / "fp32.onnx", int8=False)
        int8_path, _ = conv_model(tmp / "int8.onnx", int8=True)
        gmacs["fp32"] = _throughput(runtime, fp32_path, macs, threads, opts)
        gmacs["int8"] = _throughput(runtime, int8_path, macs, threads, opts)
        if runtime == "openvino":
            gmacs["bf16"] = _throughput(runtime, fp32_path, macs, threads, {**opts, "inference_precision": "bf16"})
        fixed = _fixed_cost(runtime, tmp, threads, opts)
    c = Ceilings(
        key=key,
        cpu_model=cpu,
        runtime=runtime,
        runtime_version=version,
        threads=threads,
        bandwidth_gbs=bw,
        gmacs=gmacs,
        fixed_call_us=fixed,
        measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps({"cache_version": CACHE_VERSION, **c.to_dict()}, indent=2))
    except OSError:
        pass  # an unwritable cache only costs a re-measurement next time
    return c
