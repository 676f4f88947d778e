"""The real-model and bias-correction README blocks are computed from their JSON: a changed number flips the
sentence (negative controls on copies of the committed results), and the bias-correction default in the code is
the one the committed measurement supports."""

from __future__ import annotations

import copy
import sys
from typing import Any

import pytest

from tests.cli_helpers import ROOT

BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(BENCH))

import bias_correction  # noqa: E402
import readme_tables  # noqa: E402
import real_models  # noqa: E402


@pytest.fixture(scope="module")
def real() -> dict[str, Any]:
    return readme_tables.load("real_models", BENCH / "results")


@pytest.fixture(scope="module")
def bc() -> dict[str, Any]:
    return readme_tables.load("bias_correction", BENCH / "results")


def _set(payload: dict[str, Any], variant: str, metric: str, value: float | None = None, factor: float = 1.0) -> None:
    v = next(x for x in payload["variants"] if x["name"] == variant)
    s = v["summary"][metric]
    for k in ("median", "min", "max", "q1", "q3"):
        s[k] = value if value is not None else s[k] * factor


def test_committed_run_uses_the_runner_and_covers_every_model(real: dict[str, Any]) -> None:
    assert real["kind"] == "benchmark" and real["settings"]["rounds"] >= 5
    assert set(real["models"]) == set(real_models.MODEL_NAMES)
    lat = [v for v in real["variants"] if v["name"].endswith(("/ort", "/openvino", "-f32", "-default"))]
    assert lat and all(len(v["rounds"]) == real["settings"]["rounds"] for v in lat)
    text = real_models.readme_verdict(real)
    for goal in ("SQNR >= the best", "Agreement >= 99.5%", "NNCF's INT8 on OpenVINO", "0.7x FP32", "25 dB"):
        assert goal in text


def test_sqnr_goal_flips_when_edgecnn_loses(real: dict[str, Any]) -> None:
    worse = copy.deepcopy(real)
    _set(worse, "tinted-cls/edgecnn/accuracy", "sqnr_db_0", value=-50.0)
    assert "NOT met on tinted-cls" in real_models.readme_verdict(worse)
    better = copy.deepcopy(real)
    for m in real_models.MODEL_NAMES:
        for k in range(int(real_models.median(better, f"{m}/edgecnn/accuracy", "outputs") or 0)):
            _set(better, f"{m}/edgecnn/accuracy", f"sqnr_db_{k}", value=500.0)
    assert "met on every model" in real_models.readme_verdict(better)


def test_latency_goals_are_decided_from_the_spreads(real: dict[str, Any]) -> None:
    slow = copy.deepcopy(real)
    _set(slow, "yolo320/edgecnn-ov/openvino", "p50_ms", factor=100.0)
    _set(slow, "yolo320/edgecnn/ort", "p50_ms", factor=100.0)
    text = real_models.readme_verdict(slow)
    assert "`--runtime openvino` NOT met (slower beyond noise)" in text
    assert "0.7x FP32 on ONNX Runtime:** NOT met" in text
    fast = copy.deepcopy(real)
    _set(fast, "yolo320/edgecnn-ov/openvino", "p50_ms", value=1e-3)
    _set(fast, "yolo320/edgecnn/ort", "p50_ms", value=1e-3)
    text = real_models.readme_verdict(fast)
    assert "`--runtime openvino` met (faster beyond noise)" in text
    assert "0.7x FP32 on ONNX Runtime:** met" in text
    same = copy.deepcopy(real)  # identical ranges: neither faster nor slower
    nncf = next(x for x in same["variants"] if x["name"] == "yolo320/nncf-ov/openvino")["summary"]["p50_ms"]
    ours = next(x for x in same["variants"] if x["name"] == "yolo320/edgecnn-ov/openvino")["summary"]["p50_ms"]
    ours.update({k: nncf[k] for k in ("median", "min", "max", "q1", "q3")})
    assert real_models.compare(same, "yolo320/edgecnn-ov/openvino", "yolo320/nncf-ov/openvino") == "within noise"


def test_agreement_goal_names_a_model_where_a_peer_reaches_99_5(real: dict[str, Any]) -> None:
    assert "no peer reaches 99.5%" in real_models.readme_verdict(_with_agreement(real, peer=99.0, ours=98.0))
    text = real_models.readme_verdict(_with_agreement(real, peer=99.8, ours=98.0))
    assert "tinted-cls: not met" in text
    text = real_models.readme_verdict(_with_agreement(real, peer=99.8, ours=99.9))
    assert "tinted-cls: met" in text


def _with_agreement(real: dict[str, Any], peer: float, ours: float) -> dict[str, Any]:
    p = copy.deepcopy(real)
    for m in real_models.MODEL_NAMES:  # no peer reaches 99.5% anywhere ...
        for v in real_models.PEERS:
            if real_models.median(p, f"{m}/{v}/accuracy", "agreement_pct") is not None:
                _set(p, f"{m}/{v}/accuracy", "agreement_pct", value=min(99.0, peer))
    _set(p, "tinted-cls/nncf-onnx/accuracy", "agreement_pct", value=peer)  # ... except here, when peer >= 99.5
    _set(p, "tinted-cls/edgecnn/accuracy", "agreement_pct", value=ours)
    return p


def test_bias_correction_default_is_the_measured_one(bc: dict[str, Any]) -> None:
    from edgecnn.quantize.api import QuantizeConfig

    assert bias_correction.default_on(bc) is QuantizeConfig().bias_correction
    verdicts = {m: g["verdict"] for m, g in bias_correction.deltas(bc).items()}
    assert set(verdicts) == set(bias_correction.MODEL_NAMES)
    for m, v in verdicts.items():  # "no-op" exactly where no conv was corrected
        assert v.startswith("no-op") == (not bias_correction.median(bc, f"{m}/on", "convs_corrected")), (m, v)


def test_bias_correction_verdict_flips_when_it_hurts(bc: dict[str, Any]) -> None:
    hurt = copy.deepcopy(bc)
    for k in ("sqnr_db", "sqnr_even_db", "sqnr_odd_db"):
        off = bias_correction.median(hurt, "sample_cnn/off", k)
        _set(hurt, "sample_cnn/on", k, value=(off or 0.0) - 3.0)
    text = bias_correction.readme_verdict(hurt)
    assert "hurts on sample_cnn" in text and "stays an option" in text
    assert bias_correction.default_on(hurt) is False
