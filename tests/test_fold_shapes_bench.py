"""The fold_shapes README blocks are computed from the benchmark JSON: the verdict sentence flips when the
numbers do (synthetic payloads in the runner's format), and the committed result came from the runner."""

from __future__ import annotations

import copy
import sys
from typing import Any

import pytest

from tests.cli_helpers import ROOT

BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(BENCH))

import fold_shapes  # noqa: E402
import readme_tables  # noqa: E402
from runner import summarize  # noqa: E402

OPS = '{"Concat": 4, "Conv": 20}'


def _variant(name: str, times: list[float], *, ops: str = OPS, same: bool = True, changed: str = "-") -> dict:
    return {
        "name": name,
        "params": {},
        "status": "ok",
        "rounds_ok": len(times),
        "summary": {
            "fold_s": summarize(times),
            "nodes": summarize([47] * len(times)),
            "shape_nodes_left": summarize([4] * len(times)),
        },
        "facts": {"version": "1.0", "ops": ops, "same_outputs": same, "changed_op_types": changed},
        "rounds": [],
    }


def _payload(edgecnn: list[float], onnxsim: list[float], **kw: Any) -> dict[str, Any]:
    return {
        "settings": {"rounds": len(edgecnn)},
        "machine": {"loadavg_before": [1.0], "loadavg_after": [1.0]},
        "variants": [_variant("edgecnn", edgecnn, **kw), _variant("onnxslim", onnxsim), _variant("onnxsim", onnxsim)],
        "fold_shapes": {
            "fixed": [1, 3, 256, 256],
            "nodes_before": 131,
            "shape_before": 13,
            "folded": {},
            "check": [
                {"target": "ethos-u55", "off_unfolded": 81, "nodes_unfolded": 128, "off_folded": 0, "nodes_folded": 47}
            ],
        },
    }


FAST = [0.10, 0.11, 0.09, 0.10, 0.12]
SLOW = [0.50, 0.45, 0.55, 0.48, 0.52]


def test_verdict_says_faster_only_when_every_round_is_faster() -> None:
    text = fold_shapes.readme_verdict(_payload(FAST, SLOW))
    assert "leaves the same graph as onnxsim, about 5x faster" in text
    assert "81/128 -> 0/47 on ethos-u55" in text
    slower = fold_shapes.readme_verdict(_payload(SLOW, FAST))
    assert "faster" not in slower.split(";")[0] and "slower (5.00x" in slower
    overlap = fold_shapes.readme_verdict(_payload([0.40, 0.45, 0.50, 0.60, 0.70], SLOW))
    assert "about" not in overlap and "not reliably faster" in overlap


@pytest.mark.parametrize(
    ("kw", "said"),
    [
        ({"ops": '{"Concat": 5, "Conv": 20}'}, "leaves a different graph from onnxsim"),
        ({"same": False}, "DIFFERENT outputs"),
        ({"changed": "Conv,FusedConv"}, "changes non-shape op types"),
    ],
)
def test_verdict_follows_graph_outputs_and_fusions(kw: dict[str, Any], said: str) -> None:
    good = fold_shapes.readme_verdict(_payload(FAST, SLOW))
    bad = fold_shapes.readme_verdict(_payload(FAST, SLOW, **kw))
    assert said not in good and said in bad


def test_failed_tool_is_stated_not_compared() -> None:
    p = _payload(FAST, SLOW)
    failed = copy.deepcopy(p)
    failed["variants"][2].update(status="failed: boom", rounds_ok=0)
    assert "no comparison is stated" in fold_shapes.readme_verdict(failed)
    assert "| onnxsim | - | - | failed: boom | - |" in fold_shapes.readme_table(failed)
    assert "| onnxsim 1.0 | 47 | 4 | 0.500 [0.450-0.550] | yes |" in fold_shapes.readme_table(p)


def test_committed_result_comes_from_the_runner() -> None:
    p = readme_tables.load("fold_shapes", BENCH / "results")
    assert p["kind"] == "benchmark" and p["settings"]["rounds"] >= 5
    assert [v["name"] for v in p["variants"]] == list(fold_shapes.TOOLS)
    for v in p["variants"]:
        assert v["status"] == "ok" and v["summary"]["fold_s"]["n"] == p["settings"]["rounds"], v["status"]
    assert {c["target"] for c in p["fold_shapes"]["check"]} >= {"ethos-u55", "qualcomm-htp", "intel-cpu"}
