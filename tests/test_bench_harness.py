"""The harness on the real runtimes: a child process per run, raw samples, cold start, measured memory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import helper
from PIL import Image

from edgecnn.bench import run_bench
from edgecnn.bench.compare import compare_results
from edgecnn.bench.harness import BenchResult
from edgecnn.bench.report import read_report, write_report
from edgecnn.bench.stats import latency_stats
from edgecnn.bench.worker import RESULT_MARK
from edgecnn.errors import DataError, ModelError
from edgecnn.runtimes import available_runtimes
from tests.onnx_builders import make_model, rng_w, save, small_cnn

RUNTIMES = [r for r in ("ort", "openvino", "litert") if r in available_runtimes()]


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save(small_cnn(), tmp_path_factory.mktemp("m") / "small.onnx")


def dynamic_batch_cnn() -> object:
    m = small_cnn()
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    m.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "N"
    return m


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_run_bench_on_real_runtime(small: Path, runtime: str) -> None:
    r = run_bench(small, runtime, threads=1, warmup=2, iterations=40)
    assert r.runtime == runtime and r.runtime_version
    assert r.threads == 1 and r.batch == 1
    assert len(r.samples_ns) == 40 and min(r.samples_ns) > 0
    assert r.stats == latency_stats(r.samples_ns, batch=1)  # derived from the raw samples
    assert r.load_ms > 0 and r.first_inference_ms > 0
    assert 0 < r.memory.baseline_rss <= r.memory.after_load_rss <= r.memory.peak_rss
    assert r.model_bytes == small.stat().st_size and len(r.model_sha256) == 64
    assert r.machine.host == "local" and r.machine.cores_logical >= 1 and r.machine.cpu_model
    # harness cost outside the timed call: measured (its < 20 us goal is a benchmark, not a unit test:
    # benchmarks/harness_vs_benchmark_app.py)
    assert 0 <= r.loop_overhead_ns < float("inf")
    # The timing method's own limits travel with the result: a clock step well under a microsecond, an empty
    # timed call cheaper than the smallest sample, and the runtime's own C++ call inside the timer.
    assert 0 < r.timer_resolution_ns < 1_000 and 0 < r.timer_empty_call_ns < min(r.samples_ns)
    assert r.bound_inputs and r.timed_call == {"ort": "InferenceSession.run_with_iobinding",
                                               "openvino": "InferRequest.infer",
                                               "litert": "InterpreterWrapper.Invoke"}[runtime]  # fmt: skip
    back = BenchResult.from_dict(json.loads(json.dumps(r.to_dict())))
    assert back.timed_call == r.timed_call and (back.clock, back.clock_name, back.wall_p50_ns) == (
        r.clock,
        r.clock_name,
        r.wall_p50_ns,
    )


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_clock_closest_to_the_runtimes_own_is_used_and_named(small: Path, runtime: str) -> None:
    """OpenVINO: the samples are the request's own C++ clock around infer (what benchmark_app's chrono clock
    measures), each inside perf_counter_ns around the same call; the others: perf_counter_ns itself."""
    r = run_bench(small, runtime, threads=1, warmup=20, iterations=300)
    if runtime == "openvino":
        assert r.clock == "runtime" and r.clock_name.startswith("OpenVINO InferRequest.latency")
        assert r.clock_resolution_ns == 1.0
        # inside the Python interval, and not a different quantity: the medians differ by the call's cost only
        assert r.stats.p50_ms * 1e6 <= r.wall_p50_ns and r.wall_p50_ns - r.stats.p50_ms * 1e6 < 50_000
    else:
        assert r.clock == "perf_counter" and r.wall_p50_ns == sorted(r.samples_ns)[len(r.samples_ns) // 2]


def test_a_runtime_clock_longer_than_the_call_is_refused() -> None:
    from edgecnn.bench.harness import BenchError
    from edgecnn.bench.worker import check_clock

    check_clock([900, 1000, 1900], [1000, 1000, 1000], "m.onnx")  # shorter, equal, within 1 us of slack
    with pytest.raises(BenchError, match=r"m.onnx: the runtime's own clock disagrees .* on 1 of 2 calls"):
        check_clock([900, 2500], [1000, 1000], "m.onnx")
    with pytest.raises(BenchError, match="on 1 of 2 calls"):
        check_clock([0, 900], [1000, 1000], "m.onnx")  # a clock that never ticked


def test_peak_rss_is_measured_not_estimated(tmp_path: Path) -> None:
    # 2048x4096 float weights = 32 MiB: the child's peak over its baseline must show them.
    w = rng_w(2048, 4096)
    m = make_model([helper.make_node("MatMul", ["x", "w"], ["y"])], [("x", [1, 2048])], [("y", [1, 4096])], {"w": w})
    big = save(m, tmp_path / "big.onnx")
    r = run_bench(big, "ort", threads=1, warmup=0, iterations=3)
    assert r.memory.peak_over_baseline > 30 * 2**20
    small_r = run_bench(save(small_cnn(), tmp_path / "s.onnx"), "ort", threads=1, warmup=0, iterations=3)
    assert small_r.memory.peak_over_baseline < r.memory.peak_over_baseline - 25 * 2**20


def test_duration_mode_runs_until_time_is_up(small: Path) -> None:
    r = run_bench(small, "ort", threads=1, warmup=0, iterations=None, duration_s=0.3)
    n = r.stats.count
    assert n >= 2
    # the loop's wall time (timed calls + per-iteration loop cost) reached the duration, and the timed calls
    # before the last one had not: it stops at the first check past the deadline (no timing window asserted)
    assert sum(r.samples_ns) + n * r.loop_overhead_ns >= 0.3e9 * (1 - 1e-9)
    assert sum(r.samples_ns[:-1]) < 0.3e9


def test_batch_fills_dynamic_first_dim_and_scales_throughput(tmp_path: Path) -> None:
    p = save(dynamic_batch_cnn(), tmp_path / "dyn.onnx")
    r = run_bench(p, "ort", threads=1, warmup=1, iterations=10, batch=4)
    assert r.batch == 4 and r.input_shapes == {"x": (4, 3, 16, 16)}
    assert r.stats.throughput == pytest.approx(4 * 10 / (sum(r.samples_ns) / 1e9))


def test_fixed_batch_model_rejects_other_batch(small: Path) -> None:
    with pytest.raises(ModelError, match=r"fixed batch of 1 .* --batch 2 needs a dynamic"):
        run_bench(small, "ort", iterations=1, batch=2)


def test_dynamic_dims_without_input_shape_are_rejected(tmp_path: Path) -> None:
    p = save(dynamic_batch_cnn(), tmp_path / "dyn.onnx")
    with pytest.raises(ModelError, match=r"dynamic dimensions.*--input-shape"):
        run_bench(p, "ort", iterations=1)
    r = run_bench(p, "ort", iterations=2, warmup=0, input_shapes={"x": (2, 3, 16, 16)})
    assert r.batch == 2


def _image_dir(tmp_path: Path, n: int, size: int = 16) -> Path:
    d = tmp_path / "imgs"
    d.mkdir()
    (d / "preprocess.toml").write_text(f"schema_version = 1\nresize = [{size}, {size}]\n")
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(d / f"img{i}.png")
    return d


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_image_folder_input_through_preprocess_spec(tmp_path: Path, runtime: str) -> None:
    d = _image_dir(tmp_path, 3)
    r = run_bench(save(small_cnn(), tmp_path / "s.onnx"), runtime, threads=1, warmup=1, iterations=6, input_source=d)
    assert r.input_source == str(d) and r.input_batches == 3


def test_image_folder_mismatching_spec_is_an_error_before_work(tmp_path: Path) -> None:
    d = _image_dir(tmp_path, 2, size=32)
    with pytest.raises(DataError, match=r"spatial size: spec 32x32, model 16x16"):
        run_bench(save(small_cnn(), tmp_path / "s.onnx"), "ort", iterations=1, input_source=d)


def test_folder_without_usable_images(tmp_path: Path) -> None:
    d = tmp_path / "data"
    d.mkdir()
    (d / "preprocess.toml").write_text("schema_version = 1\nresize = [16, 16]\n")
    (d / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"has no image files"):
        run_bench(save(small_cnn(), tmp_path / "s.onnx"), "ort", iterations=1, input_source=d)
    (d / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"broken.png: not a readable image"):  # as in quantize and drift
        run_bench(save(small_cnn(), tmp_path / "s.onnx"), "ort", iterations=1, input_source=d)


def test_report_round_trip_recomputes_stats(small: Path, tmp_path: Path) -> None:
    a = run_bench(small, "ort", threads=1, warmup=0, iterations=8)
    b = run_bench(small, RUNTIMES[-1], threads=1, warmup=0, iterations=8)
    path = write_report(tmp_path / "bench.json", [a, b], compare_results([a, a]))
    raw = json.loads(path.read_text())
    assert raw["schema_version"] == 1 and raw["kind"] == "bench"
    back = read_report(path)
    assert back == [a, b]
    assert isinstance(back[0], BenchResult) and back[0].stats == a.stats


def test_worker_runs_as_a_module_and_prints_one_result(small: Path) -> None:
    cfg = {"model": str(small), "runtime": "ort", "threads": 1, "warmup": 0, "iterations": 5}
    proc = subprocess.run(
        [sys.executable, "-m", "edgecnn.bench.worker", json.dumps(cfg)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    (line,) = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_MARK)]
    data = json.loads(line[len(RESULT_MARK) :])
    assert data["ok"] and len(data["samples_ns"]) == 5


def test_worker_reports_errors_in_protocol(tmp_path: Path) -> None:
    cfg = {"model": str(tmp_path / "missing.onnx"), "runtime": "ort", "iterations": 5}
    proc = subprocess.run(
        [sys.executable, "-m", "edgecnn.bench.worker", json.dumps(cfg)], capture_output=True, text=True, timeout=60
    )
    data = json.loads(proc.stdout.split(RESULT_MARK, 1)[1])
    assert proc.returncode == 2 and data["ok"] is False and "missing.onnx" in data["error"]


def test_missing_runtime_names_the_install_command(small: Path, tmp_path: Path) -> None:
    """In an environment where ai_edge_litert cannot be imported, the worker answers exit 3 with the pip command."""
    from tests.absent import env_without

    code = (
        "import sys\n"
        "from edgecnn.bench.harness import run_bench\n"
        "from edgecnn.errors import EdgecnnError\n"
        "try:\n"
        f"    run_bench({str(small)!r}, 'litert', iterations=1)\n"
        "except EdgecnnError as e:\n"
        "    print(e.exit_code, e)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=env_without("ai_edge_litert", tmp_path),
    )
    assert proc.stdout.startswith("3 "), proc.stdout + proc.stderr
    assert "install it with: pip install 'edgecnn[litert]'" in proc.stdout


def test_progress_reports_reach_the_parent(small: Path) -> None:
    seen: list[tuple[int, int]] = []
    run_bench(small, "ort", threads=1, warmup=0, iterations=20, progress=lambda d, t: seen.append((d, t)))
    assert seen and seen[-1] == (20, 20)


@pytest.mark.parametrize(
    ("latency_factor", "words"),
    [
        (1 / 1.5, "is 1.50x faster than"),
        (1 / 1.06, "is 1.06x faster than"),
        (1 / 1.04, "is NOT meaningfully faster than"),
        (1.0, "is NOT meaningfully faster than"),
        (1 / 0.96, "is NOT meaningfully faster than"),
        (1.25, "is SLOWER than"),
    ],
)
def test_compare_verdict_follows_the_ratio(small: Path, latency_factor: float, words: str) -> None:
    """Real samples, scaled: the sentence says faster only beyond the noise band, and SLOWER below it."""
    from dataclasses import replace

    base = run_bench(small, "ort", threads=1, warmup=0, iterations=20)
    samples = tuple(round(s * latency_factor) for s in base.samples_ns)
    other = replace(base, model_name="int8", samples_ns=samples, stats=latency_stats(samples, batch=1))
    (c,) = compare_results([base, other])
    assert c.speedup_p50 == pytest.approx(1 / latency_factor, rel=1e-4)
    assert words in c.verdict and c.verdict.startswith("int8 ")


def test_rounds_merge_and_the_verdict_needs_every_round(small: Path) -> None:
    """Three real runs merged as bench --rounds merges them: every sample, each round's p50, the highest memory;
    a comparison calls the candidate faster only when every round agrees, and says when the rounds disagree."""
    from dataclasses import replace

    from edgecnn.bench.harness import merge_rounds

    parts = [run_bench(small, "ort", threads=1, warmup=0, iterations=n) for n in (5, 6, 7)]
    base = merge_rounds(parts)
    assert base.samples_ns == tuple(x for p in parts for x in p.samples_ns)
    assert base.stats == latency_stats(base.samples_ns, batch=1)
    assert base.round_p50_ms == tuple(p.stats.p50_ms for p in parts)
    assert base.memory.peak_rss == max(p.memory.peak_rss for p in parts)
    assert merge_rounds(parts[:1]) is parts[0]
    assert BenchResult.from_dict(base.to_dict()).round_p50_ms == base.round_p50_ms

    # The verdicts below from rounds of one steady latency (the real p50, every sample): a 0.025 ms model run
    # with warmup=0 has outliers that move the merged median of scaled real samples (CI saw 1.04x, not 2x).
    steady = round(parts[0].stats.p50_ms * 1e6)

    def scaled(factors: tuple[float, ...], name: str = "int8") -> BenchResult:  # round i at steady * factors[i]
        rounds = [
            replace(p, samples_ns=(round(steady * f),) * len(p.samples_ns)) for p, f in zip(parts, factors, strict=True)
        ]
        rounds = [replace(r, stats=latency_stats(r.samples_ns, batch=1)) for r in rounds]
        return replace(merge_rounds(rounds), model_name=name)

    steady_base = scaled((1.0, 1.0, 1.0), "small")
    for factors, words in (
        ((0.5, 0.5, 0.5), "faster than"),
        ((0.5, 0.5, 1.5), "NOT measurably faster or slower"),  # one round the other way
        ((1.5, 1.5, 1.5), "is SLOWER than"),
        ((1.5, 0.7, 1.5), "NOT measurably faster or slower"),
        ((1.02, 0.98, 1.0), "NOT meaningfully faster"),  # within the noise band
    ):
        (c,) = compare_results([steady_base, scaled(factors)], explain=None)
        assert words in c.verdict and "over 3 alternating rounds" in c.verdict, c.verdict
        assert len(c.round_speedups) == 3
