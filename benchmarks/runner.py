#!/usr/bin/env python3
"""The one benchmark runner behind every script in `benchmarks/`: how a number in the README is made.

A benchmark is a list of variants (one tool or configuration each) and a measuring function per variant.
The runner guarantees, for every script alike:

- **a fresh process per measurement**: each (variant, round) runs in its own child
  (`python benchmarks/runner.py --child MODULE:FUNCTION PARAMS_JSON`), so imports, allocator state, caches and peak RSS
  belong to that one measurement;
- **>= 5 alternating rounds**: round 1 runs the variants in order, round 2 in reverse, and so on, so a drift
  in machine load hits every variant alike;
- **median with spread**: every numeric field a measuring function returns is summarised as median, min,
  max, q1, q3 and n over the rounds; the raw per-round values are kept;
- **equal batch size and threads for every tool**: `threads` and `batch` are settings of the benchmark, not
  of a variant; the runner passes the same values to every measuring function (and sets OMP/MKL/OpenBLAS
  thread variables to match), and a variant cannot override them;
- **machine facts**: CPU, cores, memory, OS, python, package versions, load average before and after, the
  git commit, and the time, in the JSON output.

Each child's wall time (imports included) and peak RSS (VmHWM, read in the child just before it reports)
are recorded for every measurement; a watchdog kills a child above `rss_limit_mib` ("does not fit") or past
`timeout_s`.

Using it from a benchmark script (see `int8_speed.py`, `fp16_speed.py`, `calibration.py`):

    from runner import Settings, Variant, run_benchmark

    def measure(*, model: str, runtime: str, threads: int, batch: int) -> dict:   # runs in the child
        return latency(runtime, model, threads=threads, batch=batch)

    variants = [Variant(name=f"{m}/{rt}", fn="my_script:measure", params={"model": m, "runtime": rt}) ...]
    result = run_benchmark("my_script", variants, Settings(threads=2, batch=1, rounds=5))

The result is written to `benchmarks/results/<name>.json` (`schema_version` 1, kind `benchmark`);
`benchmarks/readme_tables.py` renders README tables from those files.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS = BENCH_DIR / "results"
SCHEMA_VERSION = 1
KIND = "benchmark"
MIN_ROUNDS = 5
RESULT_MARK = "@@edgecnn-benchmark-result@@ "
PACKAGES = ("edgecnn", "onnx", "onnxruntime", "openvino", "nncf", "numpy", "ai-edge-litert", "ethos-u-vela")
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

for _p in (str(REPO), str(BENCH_DIR)):
    if _p not in sys.path:
        sys.path.insert(0, _p)


@dataclass(frozen=True, kw_only=True)
class Settings:
    """What every variant of one benchmark shares. ``threads``/``batch`` reach every measuring function."""

    threads: int = 2
    batch: int = 1
    rounds: int = MIN_ROUNDS
    rss_limit_mib: float = 12 * 1024
    timeout_s: float = 1800.0

    def __post_init__(self) -> None:
        if self.rounds < MIN_ROUNDS:
            raise ValueError(f"rounds = {self.rounds}; the runner needs at least {MIN_ROUNDS} alternating rounds")
        if self.threads < 1 or self.batch < 1:
            raise ValueError(f"threads = {self.threads}, batch = {self.batch}; both must be >= 1")


@dataclass(frozen=True, kw_only=True)
class Variant:
    """One tool or configuration: ``fn`` is "module:function" (a module in benchmarks/), called in a fresh
    child with ``**params, threads=, batch=`` and returning a flat dict of numbers (and fact strings)."""

    name: str
    fn: str
    params: dict[str, Any] = field(default_factory=dict)
    rounds: int | None = None  # None: the benchmark's rounds; 1 only for deterministic facts (sizes, op counts)

    def __post_init__(self) -> None:
        reserved = {"threads", "batch"} & set(self.params)
        if reserved:
            raise ValueError(f"variant {self.name}: {sorted(reserved)} are benchmark settings, equal for every tool")


def summarize(values: Sequence[float]) -> dict[str, float | int]:
    """Median, min, max, quartiles and n of the finite values (NaN/None dropped)."""
    v = sorted(float(x) for x in values if x is not None and math.isfinite(float(x)))
    if not v:
        return {"n": 0}
    q = statistics.quantiles(v, n=4, method="inclusive") if len(v) > 1 else [v[0]] * 3
    return {"median": statistics.median(v), "min": v[0], "max": v[-1], "q1": q[0], "q3": q[2], "n": len(v)}


# ------------------------------------------------------------------------------------------ child side --------
def peak_rss_mib() -> float:
    """This process's peak RSS (VmHWM), or its largest waited-for child's when that is larger, MiB: a measurement
    that runs the tool as a subprocess (pretrained.py runs `edgecnn quantize` so) is the child's memory, not the
    38 MiB of the process waiting for it."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux: KiB
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return max(int(line.split()[1]) / 1024, children)
    return float("nan")


def _child(fn_ref: str, params_json: str) -> int:
    params = json.loads(params_json)
    mod, attr = fn_ref.split(":")
    fn: Callable[..., dict[str, Any]] = getattr(importlib.import_module(mod), attr)
    t0 = time.perf_counter()
    out = dict(fn(**params))
    out.setdefault("child_s", time.perf_counter() - t0)
    out["peak_rss_mib"] = peak_rss_mib()
    sys.stdout.write(RESULT_MARK + json.dumps(out) + "\n")
    sys.stdout.flush()
    return 0


def openvino_precision(compiled: Any) -> str:
    """The precision OpenVINO actually runs float layers in, from the compiled model (f32, bf16 or f16)."""
    hint = compiled.get_property("INFERENCE_PRECISION_HINT")
    return hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)


def timed_ms(call: Any, iterations: int, warmup: int) -> Any:
    """Milliseconds of ``iterations`` timed calls of ``call`` (a numpy array) after ``warmup`` untimed ones,
    garbage collection paused while timing: the latency loop every benchmark uses."""
    import gc

    import numpy as np

    for _ in range(warmup):
        call()
    ts = np.empty(iterations, dtype=np.int64)
    gc.disable()
    try:
        for i in range(iterations):
            t = time.perf_counter_ns()
            call()
            ts[i] = time.perf_counter_ns() - t
    finally:
        gc.enable()
    return ts / 1e6


def latency(
    runtime: str,
    model: str | Path,
    *,
    threads: int,
    batch: int = 1,
    iterations: int = 100,
    warmup: int = 15,
    openvino_hint: str | None = "f32",
) -> dict[str, Any]:
    """Time one model on one runtime in this (child) process: p50/p90/mean/min ms over ``iterations`` calls,
    inputs bound once, GC paused. OpenVINO: ``openvino_hint`` is the INFERENCE_PRECISION_HINT edgecnn's adapter
    passes (f32 by default), ``None`` compiles with OpenVINO's own default (bf16 on AMX CPUs); either way the
    precision the compiled model reports is returned as ``openvino_precision``."""

    import numpy as np

    facts: dict[str, Any] = {}
    if runtime == "openvino" and openvino_hint is None:
        import openvino as ov

        core = ov.Core()
        m = core.read_model(str(model))
        if batch != 1:
            m.reshape({m.inputs[0].get_any_name(): [batch, *list(m.inputs[0].get_partial_shape().to_shape())[1:]]})
        compiled = core.compile_model(m, "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": str(threads)})
        req = compiled.create_infer_request()
        port = compiled.inputs[0]
        x = np.random.default_rng(0).standard_normal(tuple(port.get_shape()), dtype=np.float32)
        req.set_tensor(port, ov.Tensor(x, shared_memory=True))
        call = req.infer
        facts["openvino_precision"] = openvino_precision(compiled)
    else:
        from edgecnn.runtimes import open_session, random_feeds

        options = {"inference_precision": openvino_hint} if runtime == "openvino" and openvino_hint else None
        sess = open_session(runtime, model, threads=threads, options=options)
        feeds = random_feeds(sess.inputs())
        if batch != 1:
            feeds = {k: np.repeat(v, batch, axis=0) for k, v in feeds.items()}
        bind = getattr(sess, "bind", None)
        call = bind(feeds) if callable(bind) else (lambda: sess.run(feeds))
        if runtime == "openvino":
            reported = getattr(sess, "inference_precision", None)  # the adapter's own report, when it has one
            compiled = getattr(sess, "_compiled", None)
            facts["openvino_precision"] = (
                str(reported) if reported else (openvino_precision(compiled) if compiled is not None else "?")
            )
    ms = timed_ms(call, iterations, warmup)
    return {
        "p50_ms": float(np.median(ms)),
        "p90_ms": float(np.percentile(ms, 90)),
        "mean_ms": float(ms.mean()),
        "min_ms": float(ms.min()),
        **facts,
    }


# ------------------------------------------------------------------------------------------ parent side -------
def machine_facts(settings: Settings) -> dict[str, Any]:
    from edgecnn.bench.machine import machine_facts as facts

    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain"], capture_output=True, text=True).stdout
    cpu_flags = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        flags = next((ln for ln in cpuinfo.read_text().splitlines() if ln.startswith("flags")), "")
        wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8", "amx_fp16", "avx512_fp16")
        cpu_flags = " ".join(f for f in flags.split() if f in wanted)
    f = facts()
    return {
        **{k: v for k, v in f.items() if k != "hostname"},
        "cpu_flags": cpu_flags,
        "threads": settings.threads,
        "batch": settings.batch,
        "versions": versions,
        "git_commit": commit.strip()[:12] + ("+dirty" if dirty.strip() else ""),
        "platform": platform.platform(terse=True),
    }


def _spawn(variant: Variant, settings: Settings) -> dict[str, Any]:
    """Run one measurement of ``variant`` in a fresh child; its result dict plus wall_s, or a status."""
    import psutil

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(BENCH_DIR), os.environ.get("PYTHONPATH", "")]))
    env.update({v: str(settings.threads) for v in _THREAD_VARS})
    params = {**variant.params, "threads": settings.threads, "batch": settings.batch}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--child", variant.fn, json.dumps(params)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    ps = psutil.Process(proc.pid)
    status = "ok"
    while proc.poll() is None:
        try:
            if ps.memory_info().rss / 2**20 > settings.rss_limit_mib:
                proc.kill()
                status = f"does not fit (> {settings.rss_limit_mib / 1024:.0f} GiB)"
                break
        except psutil.NoSuchProcess:
            break
        if time.perf_counter() - t0 > settings.timeout_s:
            proc.kill()
            status = f"timeout (> {settings.timeout_s:.0f} s)"
            break
        time.sleep(0.05)
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    line = next((ln for ln in reversed(stdout.splitlines()) if ln.startswith(RESULT_MARK)), None)
    if status == "ok" and (proc.returncode != 0 or line is None):
        status = f"failed: {(stderr.strip().splitlines() or ['no output'])[-1][:160]}"
    if status != "ok":
        return {"status": status, "wall_s": wall}
    return {"status": "ok", "wall_s": wall, **json.loads(line[len(RESULT_MARK) :])}


def _summarize_variant(variant: Variant, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in rounds if r.get("status") == "ok"]
    numeric: dict[str, list[float]] = {}
    facts: dict[str, Any] = {}
    for r in ok:
        for k, v in r.items():
            if k in ("status", "round"):
                continue
            if isinstance(v, bool) or not isinstance(v, int | float):
                facts.setdefault(k, [])
                if v not in facts[k]:
                    facts[k].append(v)
            else:
                numeric.setdefault(k, []).append(float(v))
    statuses = sorted({r["status"] for r in rounds})
    return {
        "name": variant.name,
        "params": variant.params,
        "status": "ok" if statuses == ["ok"] else "; ".join(statuses),
        "rounds_ok": len(ok),
        "summary": {k: summarize(v) for k, v in numeric.items()},
        "facts": {k: v[0] if len(v) == 1 else v for k, v in facts.items()},
        "rounds": rounds,
    }


def run_benchmark(
    name: str,
    variants: Sequence[Variant],
    settings: Settings,
    *,
    extra: dict[str, Any] | None = None,
    results: Path = RESULTS,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
) -> dict[str, Any]:
    """Measure every variant in alternating rounds, each in a fresh process; write and return the JSON payload."""
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ValueError(f"variant names must be unique: {names}")
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    load_before = os.getloadavg()
    rounds: dict[str, list[dict[str, Any]]] = {v.name: [] for v in variants}
    total = sum(v.rounds or settings.rounds for v in variants)
    done = 0
    for i in range(settings.rounds):
        order = list(variants) if i % 2 == 0 else list(reversed(variants))
        for v in order:
            if i >= (v.rounds or settings.rounds):
                continue
            done += 1
            log(f"[{name} {done}/{total}] round {i + 1}: {v.name}")
            rounds[v.name].append({"round": i + 1, **_spawn(v, settings)})
    payload = {
        "schema_version": SCHEMA_VERSION,
        "kind": KIND,
        "benchmark": name,
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "started": started,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "settings": asdict(settings),
        "machine": {
            **machine_facts(settings),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        },
        "variants": [_summarize_variant(v, rounds[v.name]) for v in variants],
        **(extra or {}),
    }
    write_result(payload, Path(results) / f"{name}.json")
    return payload


def write_result(payload: dict[str, Any], path: Path) -> None:
    from edgecnn.report.jsonio import write_json

    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, payload, kind=KIND, schema_version=SCHEMA_VERSION)
    print(f"wrote {path}", file=sys.stderr)


def read_result(path: Path) -> dict[str, Any]:
    from edgecnn.report.jsonio import read_json

    return read_json(path, kind=KIND, schema_version=SCHEMA_VERSION)


def median(payload: dict[str, Any], variant: str, metric: str) -> float | None:
    """The median of ``metric`` for ``variant`` in a result payload (None when not measured)."""
    v = next((x for x in payload["variants"] if x["name"] == variant), None)
    s = (v or {}).get("summary", {}).get(metric)
    return None if not s or not s.get("n") else float(s["median"])


def spread(payload: dict[str, Any], variant: str, metric: str) -> tuple[float, float] | None:
    """(min, max) of ``metric`` over the rounds."""
    v = next((x for x in payload["variants"] if x["name"] == variant), None)
    s = (v or {}).get("summary", {}).get(metric)
    return None if not s or not s.get("n") else (float(s["min"]), float(s["max"]))


def model_names(payload: dict[str, Any]) -> list[str]:
    """The ``model_name`` params of a payload's variants, each once, in the order they ran."""
    return list(dict.fromkeys(v["params"]["model_name"] for v in payload["variants"]))


def variant_of(payload: dict[str, Any], name: str) -> dict[str, Any]:
    """The result of variant ``name`` in a payload ({} when it did not run)."""
    return next((v for v in payload["variants"] if v["name"] == name), {})


def status_of(payload: dict[str, Any], name: str) -> str:
    """Its status ("ok", a failure message) or "not measured"."""
    v = variant_of(payload, name)
    return str(v.get("status", "not measured")) if v else "not measured"


def fact_of(payload: dict[str, Any], name: str, key: str) -> str:
    """A fact the variant recorded (its first round's), or "-"."""
    v = variant_of(payload, name).get("facts", {}).get(key)
    return "-" if v is None else str(v if not isinstance(v, list) else v[0])


def compare(payload: dict[str, Any], a: str, b: str, metric: str = "p50_ms") -> str | None:
    """'faster' / 'slower' when the [min, max] ranges of ``metric`` over the rounds do not overlap, else
    'within noise'; None when either was not measured."""
    sa, sb = spread(payload, a, metric), spread(payload, b, metric)
    if sa is None or sb is None:
        return None
    if sa[1] < sb[0]:
        return "faster"
    if sa[0] > sb[1]:
        return "slower"
    return "within noise"


def at_least(n: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``n`` (else argparse's one-line usage error, exit 2, before any work)."""

    def parse(v: str) -> int:
        try:
            i = int(v)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{v!r} is not an integer") from None
        if i < n:
            raise argparse.ArgumentTypeError(f"{i}; must be >= {n}")
        return i

    return parse


def common_args(ap: argparse.ArgumentParser, *, threads: int = 2, batch: int = 1, min_rounds: int = MIN_ROUNDS) -> None:
    """The options every benchmark script takes: --threads, --batch, --rounds, --results (``min_rounds``: fewer
    for a script with a quick mode, which then runs the runner's own minimum and says so)."""
    ap.add_argument("--threads", type=at_least(1), default=threads, help="threads for every tool (equal for all)")
    ap.add_argument("--batch", type=at_least(1), default=batch, help="batch size for every tool (equal for all)")
    ap.add_argument(
        "--rounds", type=at_least(min_rounds), default=MIN_ROUNDS, help=f"alternating rounds (>= {min_rounds})"
    )
    ap.add_argument("--results", type=Path, default=RESULTS, help="folder for NAME.json (default benchmarks/results)")


def pick_names(option: str, value: str, valid: Sequence[str]) -> list[str] | None:
    """The comma-separated names of ``value``, or None after a one-line error naming those not in ``valid``."""
    names = value.split(",")
    bad = [n for n in names if n not in valid]
    if bad:
        print(f"error: {option} {','.join(bad)}; valid: {','.join(valid)}", file=sys.stderr)
        return None
    return names


def settings_from(a: argparse.Namespace, **kw: Any) -> Settings:
    return Settings(threads=a.threads, batch=a.batch, rounds=a.rounds, **kw)


def fmt_spread(payload: dict[str, Any], variant: str, metric: str, spec: str = ".2f") -> str:
    """'median [min-max]' for humans."""
    m = median(payload, variant, metric)
    s = spread(payload, variant, metric)
    if m is None or s is None:
        return "-"
    return f"{m:{spec}} [{s[0]:{spec}}-{s[1]:{spec}}]"


def fmt_ratio(payload: dict[str, Any], a: str, b: str, metric: str = "p50_ms") -> str:
    """'0.81x': the median of ``b`` over the median of ``a``, or '-' when either is missing."""
    ma, mb = median(payload, a, metric), median(payload, b, metric)
    return "-" if not ma or mb is None else f"{mb / ma:.2f}x"


def timing_header(payload: dict[str, Any]) -> str:
    """The first sentence of a latency table: rounds, runs, threads, batch, CPU, OpenVINO version."""
    s, mach = payload["settings"], payload["machine"]
    return (
        f"p50 in ms: median over {s['rounds']} alternating rounds, each a fresh process of {payload['iterations']} "
        f"timed runs on a real image [min-max over the rounds]; {s['threads']} threads, batch {s['batch']}; "
        f"{mach['cpu_model']} ({mach['cores_logical']} cores; {mach['cpu_flags']}), OpenVINO "
        f"{mach['versions']['openvino']}"
    )


def load_note(payload: dict[str, Any]) -> str:
    mach = payload["machine"]
    return (
        f"Load average {mach['loadavg_before'][0]:.1f} before, {mach['loadavg_after'][0]:.1f} after (a shared machine)."
    )


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        sys.exit(_child(sys.argv[2], sys.argv[3]))
    print(__doc__)
