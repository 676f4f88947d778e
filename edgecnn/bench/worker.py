"""The measuring process: ``python -m edgecnn.bench.worker CONFIG`` (a JSON file, ``-`` for stdin, or
inline JSON).

It runs in a fresh process -- locally a child of ``edgecnn bench``, on a board the command run over SSH --
so that its peak RSS belongs to one model on one runtime. Order of events: import the runtime, sample the
baseline RSS, load (timed), first inference (timed, cold), warm-up (untimed), then N timed iterations with
``time.perf_counter_ns`` around the inference call only, inputs allocated and bound before the loop and GC
paused. Adapters with ``bind`` (ONNX Runtime: io_binding with preallocated outputs; OpenVINO: an infer request
with preset tensors) return the runtime's own C++ inference call, so no Python argument handling, input copy
or output conversion sits inside the timer. The result also reports the timer's resolution and the cost of
an empty timed call. It prints one line ``RESULT_MARK + json`` on stdout; errors come back the same way with
``ok: false`` and the exit code, so the parent re-raises them with the same meaning.
"""

from __future__ import annotations

import gc
import json
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgecnn.runtimes.base import RuntimeClock

WORKER_SCHEMA_VERSION = 1
RESULT_MARK = "@@edgecnn-bench-result@@ "
PROGRESS_MARK = "@@edgecnn-bench-progress@@ "
_PROGRESS_EVERY_NS = 250_000_000


def _progress(done: int, total: int) -> None:
    sys.stderr.write(f"{PROGRESS_MARK}{done} {total}\n")
    sys.stderr.flush()


def _load_feeds(cfg: dict[str, Any]) -> list[dict[str, Any]] | None:
    path = cfg.get("feeds_npz")
    if not path:
        return None
    import numpy as np

    from edgecnn.errors import DataError

    names: list[str] = cfg["feed_names"]
    try:
        with np.load(path) as z:
            n = int(z["count"])
            return [{name: np.ascontiguousarray(z[f"b{j}_i{k}"]) for k, name in enumerate(names)} for j in range(n)]
    except (OSError, KeyError, ValueError) as e:
        raise DataError(f"{path}: cannot read the prepared input batches ({e})") from None


def _binder(sess: Any) -> Callable[[dict[str, Any]], Callable[[], Any]]:
    """``bind(feeds)`` -> zero-argument inference call. Adapters may offer ``bind`` to set inputs once
    (no per-call copies); otherwise the call is ``sess.run(feeds)``."""
    bind = getattr(sess, "bind", None)
    if callable(bind):
        return bind  # type: ignore[no-any-return]
    run = sess.run
    return lambda feeds: lambda: run(feeds)


def describe_call(call: Any) -> str:
    """The name of what sits inside the timer as ``Owner.method``, e.g. ``InferRequest.infer``."""
    inner = getattr(call, "func", call)  # functools.partial -> its function; its first argument may be the owner
    name = getattr(inner, "__name__", None) or type(inner).__name__
    args = getattr(call, "args", None) or ()
    owner = args[0] if args and hasattr(type(args[0]), name) else getattr(inner, "__self__", None)
    return f"{type(owner).__name__}.{name}" if owner is not None and not isinstance(owner, type(sys)) else str(name)


def _runtime_clock(sess: Any) -> RuntimeClock | None:
    """The adapter's own clock around the bound call (``clock()``, OpenVINO), or None: perf_counter_ns then."""
    clock = getattr(sess, "clock", None)
    return clock() if callable(clock) and callable(getattr(sess, "bind", None)) else None  # type: ignore[no-any-return]


def check_clock(runtime_ns: list[int], wall_ns: list[int], model: str) -> None:
    """The runtime clock's reading sits inside the perf_counter interval around the same call: it may be
    shorter, never longer (1 us slack for two clocks' ticks), and never zero. A clock that breaks this is not
    the call's duration, and the benchmark stops rather than report it."""
    from edgecnn.bench.harness import BenchError

    bad = sum(1 for r, w in zip(runtime_ns, wall_ns, strict=True) if r <= 0 or r > w + 1000)
    if bad:
        raise BenchError(
            f"{model}: the runtime's own clock disagrees with perf_counter_ns on {bad} of {len(wall_ns)} calls "
            "(longer than the call, or zero); not reporting its numbers"
        )


def timer_resolution() -> dict[str, float]:
    """The timing method's own limits: the smallest non-zero step between two back-to-back
    ``perf_counter_ns`` reads, and the median cost of such a pair (what an empty timed call measures)."""
    pc = time.perf_counter_ns
    steps: list[int] = []
    for _ in range(2000):
        a = pc()
        b = pc()
        steps.append(b - a)
    nonzero = [d for d in steps if d > 0]
    steps.sort()
    return {
        "timer_resolution_ns": float(min(nonzero)) if nonzero else 0.0,
        "timer_empty_call_ns": float(steps[len(steps) // 2]),
        "timer_declared_resolution_ns": time.get_clock_info("perf_counter").resolution * 1e9,
    }


def measure(cfg: dict[str, Any]) -> dict[str, Any]:
    """Run one benchmark in this process as described by ``cfg`` and return the raw result."""
    from edgecnn.bench.machine import current_rss, machine_facts, peak_rss
    from edgecnn.errors import BadInputError, DataError
    from edgecnn.runtimes import open_session, runtime_version
    from edgecnn.runtimes.base import random_feeds

    pc = time.perf_counter_ns
    runtime = cfg["runtime"]
    threads = int(cfg.get("threads") or 0)
    warmup = int(cfg.get("warmup", 0))
    iterations = cfg.get("iterations")
    duration_ns = int(float(cfg["duration_s"]) * 1e9) if cfg.get("duration_s") else None
    show = bool(cfg.get("progress"))
    if iterations is None and duration_ns is None:
        raise BadInputError("worker config: give iterations or duration_s")
    version = runtime_version(runtime)  # imports the runtime now, so the baseline includes it
    feeds_list = _load_feeds(cfg)
    gc.collect()
    baseline = current_rss()
    input_shapes = {k: tuple(v) for k, v in (cfg.get("input_shapes") or {}).items()}

    t0 = pc()
    sess = open_session(runtime, cfg["model"], threads=threads, input_shapes=input_shapes, options=cfg.get("options"))
    load_ns = pc() - t0
    after_load = current_rss()

    specs = sess.inputs()
    if feeds_list is None:
        feeds_list = [random_feeds(specs, seed=int(cfg.get("seed", 0)))]
    want = {s.name: (tuple(s.shape), s.dtype) for s in specs}
    have = {k: (tuple(v.shape), v.dtype.name) for k, v in feeds_list[0].items()}
    if want != have:
        raise DataError(f"{cfg['model']}: prepared inputs {have} do not match the loaded model's inputs {want}")
    bind = _binder(sess)
    calls = [bind(feeds_list[0])] if len(feeds_list) == 1 else None

    def call_for(i: int) -> Callable[[], Any]:
        return calls[0] if calls is not None else bind(feeds_list[i % len(feeds_list)])

    c = call_for(0)
    bound = callable(getattr(sess, "bind", None))
    t0 = pc()
    c()
    first_ns = pc() - t0
    after_first = current_rss()
    if bound:
        try:  # a second run reuses the outputs the first allocated
            c()
        except Exception:
            # io_binding checks each output's rank against the model's declaration, run() only warns: a model that
            # returns another rank than it declares (ddddocr's OCR: [1, seqlen] declared, [T, 1, 8210] returned)
            # is timed through run(feeds), and the report says so ("timed_call")
            bound, bind = False, (lambda feeds: lambda: sess.run(feeds))
            calls = [bind(feeds_list[0])] if len(feeds_list) == 1 else None
            c = call_for(0)
            c()

    for i in range(warmup):
        call_for(i + 1)()

    clock = _runtime_clock(sess)
    read = clock.read_last if clock is not None else None
    total = int(iterations) if iterations is not None else 0
    samples: list[int] = [0] * total if iterations is not None else []
    rt: list[float] = [0.0] * total if iterations is not None else []  # the runtime clock's reading per call
    next_report = pc() + _PROGRESS_EVERY_NS
    gc_was_enabled = gc.isenabled()
    gc.disable()
    loop_start = pc()
    try:
        if iterations is not None and calls is not None and read is None:
            # The common case, kept minimal: one bound call, preallocated sample list.
            c = calls[0]
            for i in range(total):
                t0 = pc()
                c()
                t1 = pc()
                samples[i] = t1 - t0
                if show and t1 >= next_report:
                    _progress(i + 1, total)
                    next_report = t1 + _PROGRESS_EVERY_NS
        elif iterations is not None and calls is not None and read is not None:
            # The same, and the runtime's own clock read after each call (outside the timed call).
            c = calls[0]
            for i in range(total):
                t0 = pc()
                c()
                t1 = pc()
                samples[i] = t1 - t0
                rt[i] = read()
                if show and t1 >= next_report:
                    _progress(i + 1, total)
                    next_report = t1 + _PROGRESS_EVERY_NS
        else:
            i = 0
            deadline = loop_start + duration_ns if duration_ns is not None else None
            while True:
                if iterations is not None and i >= total:
                    break
                c = call_for(i + warmup + 1)
                t0 = pc()
                c()
                t1 = pc()
                r = read() if read is not None else 0.0
                if iterations is not None:
                    samples[i] = t1 - t0
                    rt[i] = r
                else:
                    samples.append(t1 - t0)
                    rt.append(r)
                i += 1
                if show and t1 >= next_report:
                    _progress(i, total if iterations is not None else -int(duration_ns or 0))
                    next_report = t1 + _PROGRESS_EVERY_NS
                if deadline is not None and t1 >= deadline:
                    break
    finally:
        loop_ns = pc() - loop_start
        if gc_was_enabled:
            gc.enable()
    if show:
        _progress(len(samples), len(samples))
    wall = samples
    if clock is not None:
        samples = [round(x * clock.unit_ns) for x in rt[: len(wall)]]
        check_clock(samples, wall, cfg["model"])
    timer = {
        "clock": "runtime" if clock is not None else "perf_counter",
        "clock_name": clock.name if clock is not None else "Python time.perf_counter_ns around the call",
        "clock_resolution_ns": clock.resolution_ns if clock is not None else None,
        "wall_p50_ns": sorted(wall)[len(wall) // 2] if wall else 0,
    }

    return {
        "worker_schema_version": WORKER_SCHEMA_VERSION,
        "ok": True,
        "runtime": runtime,
        "runtime_version": version,
        "device": str(sess.device),
        "inference_precision": str(getattr(sess, "inference_precision", "")),
        "runtime_properties": dict(getattr(sess, "properties", {})),
        "threads_requested": threads,
        "threads": int(sess.threads),
        "inputs": [{"name": s.name, "shape": list(s.shape), "dtype": s.dtype} for s in specs],
        "input_batches": len(feeds_list),
        "warmup": warmup,
        "load_ns": load_ns,
        "first_inference_ns": first_ns,
        "loop_ns": loop_ns,
        "samples_ns": samples,
        "rss_baseline_bytes": baseline,
        "rss_after_load_bytes": after_load,
        "rss_after_first_bytes": after_first,
        "rss_peak_bytes": peak_rss(),
        "bound_inputs": bound,
        "timed_call": describe_call(c) if bound else "run(feeds)",
        "machine": machine_facts(),
        **timer_resolution(),
        **timer,
    }


def _read_config(arg: str) -> dict[str, Any]:
    if arg == "-":
        text = sys.stdin.read()
    elif arg.lstrip().startswith("{"):
        text = arg
    else:
        with open(arg, encoding="utf-8") as f:
            text = f.read()
    cfg = json.loads(text)
    if not isinstance(cfg, dict):
        raise ValueError("config must be a JSON object")
    return cfg


def cfg_model(arg: str) -> str:
    try:
        return str(_read_config(arg).get("model", "model"))
    except Exception:
        return "model"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.stderr.write("usage: python -m edgecnn.bench.worker CONFIG.json | - | '{...}'\n")
        return 2
    from edgecnn.errors import EdgecnnError

    try:
        out = measure(_read_config(argv[0]))
        code = 0
    except EdgecnnError as e:
        out = {"ok": False, "error": str(e), "exit_code": e.exit_code, "error_type": type(e).__name__}
        code = e.exit_code
    except (OSError, ValueError, KeyError) as e:
        out = {"ok": False, "error": f"bad worker config: {e}", "exit_code": 2, "error_type": type(e).__name__}
        code = 2
    except Exception as e:  # the runtime rejected the model: still an answer in the protocol, with its type
        msg = " ".join(f"{type(e).__name__}: {e}".split())[:500]
        out = {"ok": False, "error": f"{cfg_model(argv[0])}: the runtime cannot run this model ({msg})"}
        out.update(exit_code=2, error_type=type(e).__name__)
        code = 2
    sys.stdout.write(RESULT_MARK + json.dumps(out) + "\n")
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
