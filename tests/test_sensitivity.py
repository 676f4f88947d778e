"""edgecnn sensitivity (ranking, cache, plot) and quantize --max-drop (layers kept float until the measured
top-1 drop fits the budget)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgecnn.drift.evaluate import open_eval_data
from edgecnn.drift.sensitivity import Mode, run_sensitivity
from edgecnn.graph.load import load_model
from edgecnn.preprocess import find_spec
from edgecnn.quantize.api import QuantizeConfig
from edgecnn.quantize.dataset import ImageDataset
from tests.cli_helpers import assert_one_line_error, invoke
from tests.conftest import CALIB_DIR, EVAL_DIR, SAMPLE_MODEL
from tests.test_drift import dark_calib, eval_subset


@pytest.fixture(scope="module")
def dark(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return dark_calib(tmp_path_factory.mktemp("sens"))


def test_sensitivity_cli_ranks_caches_and_plots(tmp_path: Path) -> None:
    args = ["sensitivity", SAMPLE_MODEL, "--calib", CALIB_DIR, "--calib-samples", 32, "--data", EVAL_DIR,
            "--samples", 200, "--cache-dir", tmp_path / "cache"]  # fmt: skip
    res = invoke(*args, "--json", tmp_path / "s.json", "--plot", tmp_path / "s.png")
    assert res.exit_code == 0, res.output
    assert "sensitivity of sample_cnn.onnx" in res.output and "0 result(s) reused" in res.output
    rep = json.loads((tmp_path / "s.json").read_text())
    assert rep["kind"] == "sensitivity" and rep["rank_by"] == "top1" and rep["mode"] == "one"
    assert len(rep["layers"]) == 14 and {la["op"] for la in rep["layers"]} >= {"Conv", "Gemm", "Add"}
    costs = [(la["cost_top1_pts"], la["cost_sqnr_db"]) for la in rep["layers"]]
    assert costs == sorted(costs, key=lambda c: (-c[0], -c[1]))
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    again = invoke(*args)
    assert again.exit_code == 0 and "15 result(s) reused" in again.output


def test_all_but_one_without_labels_ranks_by_sqnr(tmp_path: Path) -> None:
    d = eval_subset(tmp_path, 60, labels=False)
    data = open_eval_data(d, load_model(SAMPLE_MODEL))
    calib = ImageDataset.open(CALIB_DIR, find_spec(CALIB_DIR), 32)
    rep = run_sensitivity(SAMPLE_MODEL, calib, data, QuantizeConfig(), mode=Mode.ALL_BUT_ONE)
    assert rep.rank_by == "sqnr" and not rep.labeled and rep.float_top1_pct is None
    gains = [la.cost_sqnr_db for la in rep.layers]
    assert gains == sorted(gains, reverse=True) and all(la.cost_top1_pts is None for la in rep.layers)
    res = invoke("sensitivity", SAMPLE_MODEL, "--calib", CALIB_DIR, "--data", d, "--rank-by", "top1", "--no-cache")
    assert_one_line_error(res, 2, "no labels.csv", "--rank-by top1")


def test_max_drop_keeps_sensitive_layers_float(dark: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    res = invoke("quantize", SAMPLE_MODEL, "--calib", dark, "-o", out, "--max-drop", 1.0, "--data", EVAL_DIR,
                 "--cache-dir", tmp_path / "cache", "--json", tmp_path / "q.json")  # fmt: skip
    assert res.exit_code == 0, res.output
    q = json.loads((tmp_path / "q.json").read_text())
    b = q["budget"]
    assert b["int8_top1_pct"] < b["float_top1_pct"] - 1.0  # the damaged calibration costs > 1 point
    assert b["final_drop_pts"] <= 1.0 + 1e-9 and 0 < len(b["kept_float"]) < 14
    assert b["final_p50_ms"] > 0 and b["int8_p50_ms"] > 0 and "latency_cost_pct" in b
    assert all(q["kept_float"][n].startswith("kept float by --max-drop") for n in b["kept_float"])
    assert "accuracy budget" in res.output and "latency cost" in res.output
    # the written model measures what the report says
    from edgecnn.drift.evaluate import evaluate_drift

    r = evaluate_drift(SAMPLE_MODEL, out, EVAL_DIR, layers=False)
    assert r.candidate_top1_pct == pytest.approx(b["final_top1_pct"])


def test_max_drop_bad_input(tmp_path: Path) -> None:
    base = ["quantize", SAMPLE_MODEL, "--calib", CALIB_DIR, "-o", tmp_path / "m.onnx"]
    assert_one_line_error(invoke(*base, "--max-drop", 0.5), 2, "--max-drop", "--data")
    d = eval_subset(tmp_path, 10, labels=False)
    assert_one_line_error(invoke(*base, "--max-drop", 0.5, "--data", d), 2, "no labels.csv", "--max-drop")
    assert_one_line_error(invoke(*base, "--max-drop", -1, "--data", EVAL_DIR), 2, "--max-drop -1")
    assert not (tmp_path / "m.onnx").exists()


def test_one_mode_on_a_dynamic_batch_mobilenetv3_block(tmp_path: Path) -> None:
    """A real export: dynamic batch (fixed with --input-shape), HardSwish written HardSigmoid·Mul and a
    Mul by a constant (Paddle's dropout scale). Each activation, nothing to quantize on its own, is quantized
    with the layer that writes it; the Mul by a constant with its neighbours."""
    from onnx import helper, numpy_helper

    from tests.test_quantize_real import mbv3_block, shapes, tensors, write_folder

    imgs, labels = shapes(160, seed=5)
    train = write_folder(tmp_path / "train", imgs[:96])
    calib, ev = write_folder(tmp_path / "calib", imgs[96:128]), write_folder(tmp_path / "eval", imgs[128:])
    m = mbv3_block(tmp_path, tensors(train), labels[:96])
    fc = next(n for n in m.graph.node if n.op_type == "Gemm")
    fc.input[0] = "feat_scaled"
    m.graph.initializer.append(numpy_helper.from_array(np.array(0.9, np.float32), "keep"))
    m.graph.node.insert(list(m.graph.node).index(fc), helper.make_node("Mul", ["feat", "keep"], ["feat_scaled"], name="dropout_scale"))  # fmt: skip
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    model = tmp_path / "mbv3_dyn.onnx"
    onnx.save(m, str(model))
    args = ["sensitivity", model, "--calib", calib, "--data", ev, "--no-cache", "--json", tmp_path / "s.json", "--show", 40]  # fmt: skip
    assert_one_line_error(invoke(*args), 2, "dynamic", "--input-shape")
    res = invoke(*args, "--input-shape", f"input=1x3x{imgs.shape[1]}x{imgs.shape[2]}")
    assert res.exit_code == 0, res.output
    rows = {la["node"]: la for la in json.loads((tmp_path / "s.json").read_text())["layers"]}
    assert rows["dw_act_hs"]["quantized_with"] == ["dw"]  # the activation with its writer
    assert rows["dropout_scale"]["quantized_with"]  # nothing to quantize alone: with its neighbours
    assert rows["dw"]["quantized_with"] == []  # a conv alone
    sqnrs = {la["score"]["sqnr_db"] for la in rows.values()}
    assert len(sqnrs) > 3 and all(math.isfinite(v) for v in sqnrs)  # each variant measured, not one copy
