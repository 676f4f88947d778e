"""benchmarks/export.py (and tflite_int8.py, its edgecnn half): the measuring functions run real converters,
LiteRT and ONNX Runtime, and the README verdicts flip on each side of every goal."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from onnx import helper

from tests.cli_helpers import ROOT
from tests.onnx_builders import make_model, rng_w, save

sys.path.insert(0, str(ROOT / "benchmarks"))

import export
import runner


def classifier(seed: int) -> Any:
    """Conv (stride 4) -> ReLU -> GlobalAveragePool -> Flatten -> Gemm: a 10-class model at 224x224, the input
    size of the benchmark's preprocessing spec."""
    nodes = [
        helper.make_node("Conv", ["input", "w", "b"], ["c"], kernel_shape=[3, 3], strides=[4, 4], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["logits"], transB=1),
    ]
    inits = {
        "w": rng_w(8, 3, 3, 3, seed=seed),
        "b": rng_w(8, seed=seed + 1),
        "fw": rng_w(10, 8, seed=seed + 2),
        "fb": rng_w(10, seed=seed + 3),
    }
    return make_model(nodes, [("input", [1, 3, 224, 224])], [("logits", [1, 10])], inits)


def test_convert_parity_and_latency_on_real_runtimes(tmp_path: Path) -> None:
    src = save(classifier(0), tmp_path / "clf.onnx")
    other = save(classifier(10), tmp_path / "other.onnx")
    out = {p: tmp_path / "work" / f"edgecnn_{p}.tflite" for p in export.PRECISIONS}
    for p in export.PRECISIONS:
        c = export.convert(tool="edgecnn", precision=p, src=str(src), out=str(out[p]), calib_samples=4, threads=1,
                           batch=1)  # fmt: skip
        assert out[p].read_bytes()[4:8] == b"TFL3"
        assert c["convert_s"] > 0 and c["convert_peak_rss_mib"] > 10 and c["size_mib"] > 0 and len(c["sha256"]) == 16
    assert out["int8"].with_suffix(".qdq.onnx").is_file()  # edgecnn's own QDQ model, for the "same numbers" row
    assert [p.name for p in (tmp_path / "work").iterdir() if p.name.startswith("edgecnn-export-bench-")] == []
    fp = export.parity(reference=str(src), candidate=str(out["float32"]), samples=4, threads=1, batch=1)
    assert fp["samples"] == 4 and fp["top1_agreement_pct"] == 100.0 and fp["sqnr_db"] > 60
    q = export.parity(reference=str(src), candidate=str(out["int8"]), samples=4, threads=1, batch=1)
    assert 10 < q["sqnr_db"] < fp["sqnr_db"]
    # negative control: the same file against a model with other weights is far off
    wrong = export.parity(reference=str(other), candidate=str(out["float32"]), samples=4, threads=1, batch=1)
    assert wrong["sqnr_db"] < 10 and wrong["max_abs_error"] > fp["max_abs_error"]
    lat = export.measure(model=str(out["int8"]), runs=5, threads=1, batch=1)
    assert 0 < lat["min_ms"] <= lat["p50_ms"] <= lat["p90_ms"]


def test_a_failed_conversion_raises_with_the_tools_message(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model")
    with pytest.raises(RuntimeError, match="edgecnn float32 conversion failed"):
        export.convert(tool="edgecnn", precision="float32", src=str(bad), out=str(tmp_path / "x.tflite"),
                       calib_samples=4, threads=1, batch=1)  # fmt: skip
    assert not (tmp_path / "x.tflite").exists()


# -- verdicts from synthetic payloads, summarised by the runner's own code ------------------------------------
def payload(values: dict[str, dict[str, list[float]]]) -> dict[str, Any]:
    """A result payload as run_benchmark writes it: variant name -> metric -> one value per round."""
    variants = []
    for name, metrics in values.items():
        n = len(next(iter(metrics.values())))
        rounds = [{"round": i + 1, "status": "ok", **{k: v[i] for k, v in metrics.items()}} for i in range(n)]
        v = runner.Variant(name=name, fn="export:measure", params={"model_name": name.split("/")[0]})
        variants.append(runner._summarize_variant(v, rounds))
    return {
        "settings": {"threads": 2, "batch": 1, "rounds": 5},
        "machine": {
            "versions": {"ai-edge-litert": "x"},
            "cpu_model": "cpu",
            "cores_logical": 2,
            "loadavg_before": [1.0],
            "loadavg_after": [1.0],
        },
        "variants": variants,
        "runs": 50,
        "calib_samples": 32,
        "parity_samples": 50,
        "onnx2tf_version": "1.29.24 2.19.0",
    }


def latency_pair(tool: str, fp32: list[float], int8: list[float]) -> dict[str, dict[str, list[float]]]:
    return {f"m/{tool}/float32/litert": {"p50_ms": fp32}, f"m/{tool}/int8/litert": {"p50_ms": int8}}


@pytest.mark.parametrize(
    ("int8", "expected"),
    [
        ([5.0, 5.5, 5.9, 5.0, 5.2], "met in every round for m 0.520x"),
        ([5.0, 5.0, 5.0, 8.0, 8.0], "met at the median but not in every round for m 0.500x (up to 0.80x"),
        ([6.1, 7.0, 7.0, 9.0, 6.5], "**NOT met** for m 0.700x [0.61-0.90]"),
    ],
)
def test_int8_goal_on_each_side_of_06(int8: list[float], expected: str) -> None:
    p = payload(latency_pair("edgecnn", [10.0] * 5, int8))
    text = export.readme_verdict(p)
    assert expected in text, text
    assert ("NOT" in text) == ("NOT" in expected)
    row = next(ln for ln in export.readme_table(p).splitlines() if "| int8 |" in ln)
    assert row.endswith(f"| {export._ratio_text(export.int8_ratio(p, 'm', 'edgecnn'))} |")


def test_the_int8_ratio_is_paired_per_round() -> None:
    """Load that doubles every time between rounds moves FP32 and INT8 together: the paired ratio stays 0.5."""
    fp32 = [10.0, 20.0, 40.0, 80.0, 160.0]
    p = payload(latency_pair("edgecnn", fp32, [x / 2 for x in fp32]))
    assert export.int8_ratio(p, "m", "edgecnn") == (0.5, 0.5, 0.5)
    assert "met in every round for m 0.500x" in export.readme_verdict(p)


def both_tools(e_conv: float, o_conv: float, e_rss: float, o_rss: float, e_top1: float, o_top1: float) -> dict:
    v: dict[str, dict[str, list[float]]] = {}
    for tool, conv, rss, top1 in (("edgecnn", e_conv, e_rss, e_top1), ("onnx2tf", o_conv, o_rss, o_top1)):
        for prec in export.PRECISIONS:
            v[f"m/{tool}/{prec}/convert"] = {
                "convert_s": [conv, conv * 1.1],
                "convert_peak_rss_mib": [rss, rss],
                "size_mib": [3.0, 3.0],
            }
            v[f"m/{tool}/{prec}/parity"] = {"top1_agreement_pct": [top1], "sqnr_db": [30.0]}
        v.update(latency_pair(tool, [10.0] * 5, [4.0] * 5))
    return v


def test_conversion_and_parity_goals_on_each_side() -> None:
    good = export.readme_verdict(payload(both_tools(1.0, 100.0, 200.0, 3000.0, 90.0, 80.0)))
    assert "**Conversion time below onnx2tf's** (edgecnn/onnx2tf, medians): met: below onnx2tf's in every round" in good
    assert "**Peak memory below onnx2tf's** (edgecnn/onnx2tf, medians): met:" in good
    assert "onnx2tf's**: met: at least onnx2tf's for m float32 90% vs 80%, m int8 90% vs 80%" in good
    assert "NOT" not in good
    bad = export.readme_verdict(payload(both_tools(200.0, 100.0, 4000.0, 3000.0, 70.0, 80.0)))
    assert (
        "**Conversion time below onnx2tf's** (edgecnn/onnx2tf, medians): NOT met: **NOT below** for m float32 2.00x"
        in bad
    )
    assert "**Peak memory below onnx2tf's** (edgecnn/onnx2tf, medians): NOT met:" in bad
    assert "NOT met: **below** onnx2tf's for m float32 70% vs 80%" in bad
    # overlapping ranges: below at the median only
    noisy = export.readme_verdict(payload(both_tools(95.0, 100.0, 200.0, 3000.0, 80.0, 80.0)))
    assert "below at the median, ranges overlapping, for m float32 0.95x" in noisy
    table = export.readme_table(payload(both_tools(1.0, 100.0, 200.0, 3000.0, 90.0, 80.0)))
    assert "| m | onnx2tf | int8 | 105.0 [100.0-110.0] | 3000 | 3.0 | 80.0 | 30.0 | 4.00 | 0.40x [0.40-0.40] |" in table


def test_the_committed_results_render_both_tools_and_their_verdicts() -> None:
    p = runner.read_result(ROOT / "benchmarks" / "results" / "export.json")
    assert p["benchmark"] == "export" and p["onnx2tf_version"]
    names = {v["name"] for v in p["variants"]}
    for m in ("resnet18", "mobilenetv2"):
        for t in export.TOOLS:
            for prec in export.PRECISIONS:
                assert {f"{m}/{t}/{prec}/{k}" for k in ("convert", "parity", "litert")} <= names
    text = export.readme_verdict(p)
    assert text.count("INT8 <= 0.6x FP32 p50 on LiteRT") == 2 and "Top-1 agreement" in text
    p = runner.read_result(ROOT / "benchmarks" / "results" / "tflite_int8.json")
    assert {v["name"].split("/")[1] for v in p["variants"]} == {"edgecnn"}
    assert np.isfinite(export.int8_ratio(p, "mobilenetv2", "edgecnn") or np.nan).all()
