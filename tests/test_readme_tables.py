"""The README's benchmark tables are generated from the committed results, and the runner behind them keeps
its promises (fresh process per measurement, alternating rounds, equal threads and batch, median + spread)."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from tests.cli_helpers import ROOT

BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(BENCH))

import readme_tables  # noqa: E402
import runner  # noqa: E402


def test_readme_is_rendered_from_the_committed_results() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme_tables.render(text) == text, "README.md is stale: run python benchmarks/readme_tables.py"


def test_every_block_is_in_the_readme_and_every_block_has_a_renderer() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert sorted(readme_tables.blocks_in(text)) == sorted(readme_tables.BLOCKS)
    with pytest.raises(readme_tables.StaleError, match="no renderer"):
        readme_tables.render("<!-- bench:nope -->\nx\n<!-- /bench:nope -->\n")


def test_a_changed_result_changes_the_readme_and_its_verdict(tmp_path: Path) -> None:
    """Negative control: edgecnn's INT8 made 10x slower in a copy of the results must flip the sentence."""
    results = tmp_path / "results"
    shutil.copytree(BENCH / "results", results)
    path = results / "int8_speed.json"
    data = json.loads(path.read_text())
    for v in data["variants"]:
        if v["name"].split("/")[1] == "edgecnn" and "p50_ms" in v["summary"]:
            for k in ("median", "min", "max", "q1", "q3"):
                v["summary"]["p50_ms"][k] *= 10
    path.write_text(json.dumps(data))
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    changed = readme_tables.render(text, results)
    assert changed != text
    verdict = readme_tables.render_block("int8_speed_verdict", results)
    assert "and NOT for" in verdict and "its INT8 is slower than FP32" in verdict


# -- the runner, with real child processes -------------------------------------------------------------------------
def probe(*, tag: str, threads: int, batch: int) -> dict[str, object]:
    """A measuring function the runner starts in its children (imported there as tests.test_readme_tables)."""
    return {"pid": os.getpid(), "at_ns": time.time_ns(), "threads": threads, "batch": batch,
            "omp": os.environ.get("OMP_NUM_THREADS", ""), "tag": tag, "value": {"a": 1.0, "b": 3.0}[tag]}  # fmt: skip


def test_runner_fresh_process_alternating_rounds_equal_settings(tmp_path: Path) -> None:
    variants = [runner.Variant(name=t, fn="tests.test_readme_tables:probe", params={"tag": t}) for t in ("a", "b")]
    payload = runner.run_benchmark(
        "probe", variants, runner.Settings(threads=3, batch=2, rounds=5), results=tmp_path, log=lambda s: None
    )
    assert runner.read_result(tmp_path / "probe.json") == json.loads(json.dumps(payload))
    rounds = {v["name"]: v["rounds"] for v in payload["variants"]}
    pids = [r["pid"] for rs in rounds.values() for r in rs]
    assert len(set(pids)) == 10 and os.getpid() not in pids  # one fresh process per measurement
    for i in range(5):  # forward, reversed, forward, ...
        a, b = rounds["a"][i]["at_ns"], rounds["b"][i]["at_ns"]
        assert (a < b) == (i % 2 == 0), i
    for v in payload["variants"]:
        assert v["status"] == "ok" and v["rounds_ok"] == 5
        assert v["summary"]["threads"]["median"] == 3 and v["summary"]["batch"]["median"] == 2
        assert v["facts"]["omp"] == "3"
        assert v["summary"]["peak_rss_mib"]["n"] == 5 and v["summary"]["wall_s"]["min"] > 0
    assert runner.median(payload, "b", "value") == 3.0 and runner.spread(payload, "a", "value") == (1.0, 1.0)
    m = payload["machine"]
    assert m["threads"] == 3 and m["cores_logical"] >= 1 and m["versions"]["onnxruntime"] and m["git_commit"]


def test_runner_refuses_fewer_rounds_and_per_variant_threads() -> None:
    with pytest.raises(ValueError, match="at least 5"):
        runner.Settings(rounds=4)
    with pytest.raises(ValueError, match="equal for every tool"):
        runner.Variant(name="x", fn="m:f", params={"threads": 8})


def test_summary_statistics() -> None:
    s = runner.summarize([5.0, 1.0, 3.0, float("nan"), 2.0, 4.0])
    assert s == {"median": 3.0, "min": 1.0, "max": 5.0, "q1": 2.0, "q3": 4.0, "n": 5}
    assert runner.summarize([]) == {"n": 0}


def test_int8_placement_verdict_follows_its_numbers(tmp_path: Path) -> None:
    """Negative control for the MobileNetV3 INT8 verdict: the default placement's p50 put 10x above FP32's
    slowest round must read "NOT met"; 10x below FP32's fastest round, "goal met"."""
    results = tmp_path / "results"
    shutil.copytree(BENCH / "results", results)
    path = results / "int8_placement.json"
    original = json.loads(path.read_text())
    fp32 = next(v for v in original["variants"] if v["name"] == "mbv3-224/fp32/ort")["summary"]["p50_ms"]
    for value, expected in ((fp32["max"] * 10, "NOT met"), (fp32["min"] / 10, "goal met")):
        data = json.loads(json.dumps(original))
        for v in data["variants"]:
            if v["name"] == "mbv3-224/default/ort":
                for k in ("median", "min", "max", "q1", "q3"):
                    v["summary"]["p50_ms"][k] = value
        path.write_text(json.dumps(data))
        verdict = readme_tables.render_block("int8_placement_verdict", results)
        assert f"({expected}" in verdict.split(";")[0], verdict


def test_gelu_placement_verdict_follows_its_numbers(tmp_path: Path) -> None:
    """Negative control for the GELU verdict: the contrib placement's p50 put 10x above the chain's slowest round
    reads "SLOWER"; equal to the chain's, "within noise"."""
    results = tmp_path / "results"
    shutil.copytree(BENCH / "results", results)
    path = results / "gelu_placement.json"
    original = json.loads(path.read_text())
    model = original["model"]
    chain = next(v for v in original["variants"] if v["name"] == f"{model}/chain/ort")["summary"]["p50_ms"]
    for value, expected in ((chain["max"] * 10, "SLOWER"), (chain["median"], "within noise")):
        data = json.loads(json.dumps(original))
        for v in data["variants"]:
            if v["name"] == f"{model}/default/ort":
                for k in ("median", "min", "max", "q1", "q3"):
                    v["summary"]["p50_ms"][k] = value
        path.write_text(json.dumps(data))
        assert f"({expected})" in readme_tables.render_block("gelu_placement_verdict", results)
