"""edgecnn drift: metrics against numpy references, the bundled INT8 model end to end, per-layer SQNR,
unlabeled data, and every bad input as a one-line error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from edgecnn.drift.evaluate import evaluate_drift
from edgecnn.drift.metrics import ClassificationStats, TensorDrift, added_noise, blame, cosine_rows, sqnr_db, topk
from edgecnn.drift.report import read_report, write_report
from edgecnn.preprocess import find_spec
from edgecnn.quantize.api import QuantizeConfig, quantize
from edgecnn.quantize.dataset import ImageDataset
from tests.cli_helpers import assert_one_line_error, invoke
from tests.conftest import CALIB_DIR, EVAL_DIR, SAMPLE_MODEL
from tests.onnx_builders import conv_model, save

EVAL_N = 300


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One good INT8 model (64 calibration images) and one damaged by a calibration of 2 dark images."""
    d = tmp_path_factory.mktemp("drift_models")
    ds = ImageDataset.open(CALIB_DIR, find_spec(CALIB_DIR), 64)
    good, _ = quantize(SAMPLE_MODEL, ds, QuantizeConfig())
    onnx.save(good, str(d / "int8.onnx"))
    dark = dark_calib(d)
    bad, _ = quantize(SAMPLE_MODEL, ImageDataset.open(dark, find_spec(dark)), QuantizeConfig())
    onnx.save(bad, str(d / "bad.onnx"))
    return {"good": d / "int8.onnx", "bad": d / "bad.onnx"}


def dark_calib(d: Path) -> Path:
    """2 nearly black images: calibrated ranges far too small, so real digits clip badly."""
    dark = d / "dark"
    dark.mkdir()
    for i in range(2):
        a = np.zeros((28, 28, 3), np.uint8)
        a[10:18, 12:16] = 60 + 10 * i
        Image.fromarray(a).save(dark / f"d{i}.png")
    shutil.copy(CALIB_DIR.parent / "preprocess.toml", dark / "preprocess.toml")
    return dark


def eval_subset(tmp_path: Path, n: int, labels: bool = True) -> Path:
    d = tmp_path / f"eval{n}{'' if labels else '_nolabels'}"
    d.mkdir()
    files = sorted(EVAL_DIR.glob("*.png"))[:n]
    for f in files:
        shutil.copy(f, d / f.name)
    shutil.copy(EVAL_DIR.parent / "preprocess.toml", d / "preprocess.toml")
    if labels:
        rows = (EVAL_DIR / "labels.csv").read_text().splitlines()
        keep = {f.name for f in files}
        (d / "labels.csv").write_text("\n".join([rows[0], *[r for r in rows[1:] if r.split(",")[0] in keep]]) + "\n")
    return d


# -- metrics ----------------------------------------------------------------------------------------
def test_sqnr_and_cosine_match_numpy() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 10)).astype(np.float32)
    y = x + 0.01 * rng.standard_normal((8, 10)).astype(np.float32)
    td = TensorDrift()
    td.update(x, y)
    want = 10 * np.log10(np.sum(x.astype(np.float64) ** 2) / np.sum((x.astype(np.float64) - y) ** 2))
    assert td.sqnr_db == pytest.approx(want, rel=1e-6)
    assert td.cosine == pytest.approx(
        float(np.dot(x.ravel(), y.ravel()) / np.linalg.norm(x) / np.linalg.norm(y)), rel=1e-6
    )
    same = TensorDrift()
    same.update(x, x)
    assert same.sqnr_db == sqnr_db(1.0, 0.0) == 200.0
    np.testing.assert_allclose(cosine_rows(x, 2 * x), np.ones(8), rtol=1e-6)
    assert topk(np.array([[0.1, 0.5, 0.2, 0.9]]), 2).tolist() == [[3, 1]]


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 40), st.integers(0, 2**31 - 1))
def test_tensor_drift_shards_merge_to_one_pass(n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((n, 6)), rng.standard_normal((n, 6))
    one = TensorDrift()
    one.update(x, y)
    k = n // 2
    a, b = TensorDrift(), TensorDrift()
    a.update(x[:k], y[:k])
    b.update(x[k:], y[k:])
    m = a.merged(b)
    assert m.count == one.count and m.max_abs_err == one.max_abs_err
    assert m.sqnr_db == pytest.approx(one.sqnr_db, rel=1e-9, abs=1e-9)
    assert m.cosine == pytest.approx(one.cosine, rel=1e-9, abs=1e-12)


def test_blame_ranks_where_error_enters() -> None:
    # the input quantized (exact -> 44 dB): the largest drop in dB, almost no noise
    assert added_noise(200.0, 44.0) == pytest.approx(10**-4.4) and blame(200.0, 44.0) < 1e-4
    # a damaged layer (34 -> 17 dB) against a later one that amplifies what it was handed (15 -> 13 dB): they
    # add about as much noise, but the first one's output noise is nearly all new
    assert added_noise(15.3, 13.1) == pytest.approx(added_noise(34.2, 17.2), rel=0.1)
    assert blame(34.2, 17.2) > 2 * blame(15.3, 13.1)
    # once the signal is lost (below 0 dB) nothing more can be lost; a layer that recovers SQNR adds nothing
    assert added_noise(-3.0, -6.0) == blame(-3.0, -6.0) == 0.0 and added_noise(10.0, 20.0) == 0.0


def test_classification_counts() -> None:
    c = ClassificationStats(num_classes=3, k=2)
    ref = np.array([[3, 1, 0], [0, 2, 1], [0, 1, 2.0]])
    cand = np.array([[3, 1, 0], [2, 1, 0], [0, 2, 1.0]])
    rp, cp = c.update(ref, cand, np.array([0, 1, 2]))
    assert rp.tolist() == [0, 1, 2] and cp.tolist() == [0, 0, 1]
    assert (c.agree, c.ref_top1, c.cand_top1, c.ref_topk, c.cand_topk) == (1, 3, 1, 3, 3)
    assert c.support.tolist() == [1, 1, 1] and c.cand_correct.tolist() == [1, 0, 0]


# -- the bundled model --------------------------------------------------------------------------------
def test_bundled_int8_drift_report(models: dict[str, Path], tmp_path: Path) -> None:
    r = evaluate_drift(SAMPLE_MODEL, models["good"], EVAL_DIR, samples=EVAL_N)
    assert r.labeled and r.images == EVAL_N and r.num_classes == 10 and r.topk == 5
    assert r.reference_top1_pct is not None and r.reference_top1_pct > 95
    assert abs(r.top1_drop_pts) <= 1.0 and r.agreement_pct >= 98.0
    assert r.outputs[0].name == "logits" and r.outputs[0].sqnr_db > 20 and r.outputs[0].cosine_mean > 0.99
    assert len(r.per_class) == 10 and r.per_class[0].drop_pts == max(c.drop_pts for c in r.per_class)
    # per layer: matching tensors by name, read after the candidate's Q/DQ pair, the worst ones named
    tensors = {la.tensor: la for la in r.layers}
    assert "input" in tensors and "logits" in tensors and "/0/0.2/Relu_output_0" in tensors
    assert tensors["/0/0.2/Relu_output_0"].candidate_tensor == "/0/0.2/Relu_output_0_dq"
    assert tensors["/0/0.2/Relu_output_0"].op == "Relu (in Conv)"  # fused into the Conv by the QDQ writer
    assert len(r.worst_layers) == 5 and all(15 < la.sqnr_db < 200 for la in r.layers)
    assert min(r.layers, key=lambda la: la.sqnr_db).tensor == r.worst_layers[0]
    assert r.flips_total == len(r.flips) == round(EVAL_N * (100 - r.agreement_pct) / 100)
    path = write_report(tmp_path / "d.json", r)
    assert json.loads(path.read_text())["schema_version"] == 1
    assert read_report(path) == r


def test_damaged_model_drifts_and_says_where(models: dict[str, Path]) -> None:
    r = evaluate_drift(SAMPLE_MODEL, models["bad"], EVAL_DIR, samples=EVAL_N, layers=False)
    assert r.top1_drop_pts > 2.0 and r.agreement_pct < 97.0 and r.outputs[0].sqnr_db < 15
    broke = [f for f in r.flips if f.change == "broke"]
    assert broke and Path(broke[0].file).is_file() and r.flips[0].change == "broke"
    assert r.per_class[0].drop_pts >= r.top1_drop_pts and not r.layers


def _damage_one_conv(src: Path, dst: Path, k: int) -> str:
    """The INT8 model with noise added to the int8 weights of its k-th Conv; returns the Conv's output tensor."""
    m = onnx.load(str(src))
    inits = {t.name: t for t in m.graph.initializer}
    dq = {n.output[0]: n for n in m.graph.node if n.op_type == "DequantizeLinear"}
    conv = [n for n in m.graph.node if n.op_type == "Conv"][k]
    w = inits[dq[conv.input[1]].input[0]]
    q = onnx.numpy_helper.to_array(w).astype(np.int32)
    noisy = np.clip(q + np.random.default_rng(k).integers(-12, 13, q.shape), -127, 127)
    w.CopyFrom(onnx.numpy_helper.from_array(noisy.astype(np.int8), w.name))
    onnx.save(m, str(dst))
    return conv.output[0]


@pytest.mark.parametrize("k", [1, 4])
def test_the_lossiest_layer_is_the_damaged_one(models: dict[str, Path], tmp_path: Path, k: int) -> None:
    """Noise in one Conv's weights of a good INT8 model: drift names that layer as where error enters, not
    the input (its 200 -> 40 dB is the largest drop in dB but adds almost no noise)."""
    out = _damage_one_conv(models["good"], tmp_path / "damaged.onnx", k)
    r = evaluate_drift(SAMPLE_MODEL, tmp_path / "damaged.onnx", EVAL_DIR, samples=32)
    by = {la.tensor: la for la in r.layers}
    lossiest = by[r.lossiest_layer]
    assert lossiest.candidate_tensor.removesuffix("_dq") == out or lossiest.tensor == out, (out, lossiest)
    blames = sorted(blame(la.input_sqnr_db, la.sqnr_db) for la in r.layers)
    assert blame(lossiest.input_sqnr_db, lossiest.sqnr_db) == blames[-1] > 2 * blames[-2]  # not a near-tie
    assert by["input"].local_drop_db > lossiest.local_drop_db  # what the old ranking (dB drop) would have named
    good = evaluate_drift(SAMPLE_MODEL, models["good"], EVAL_DIR, samples=32)
    assert {la.tensor: la for la in good.layers}[lossiest.tensor].added_noise < lossiest.added_noise / 10


def _gate_models(d: Path, also_add: bool) -> tuple[Path, Path]:
    """input -> Conv -> t -> HardSigmoid -> y (and, with ``also_add``, t + t -> z): the float model and the same
    graph with t quantized to [-3, 3] (where the HardSigmoid is not flat), as a quantizer may write it."""
    from onnx import helper

    from tests.onnx_builders import make_model, rng_w

    w = rng_w(8, 3, 3, 3) * 8  # t spans about +-20
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["t"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("HardSigmoid", ["t"], ["y"], name="gate", alpha=1 / 6, beta=0.5),
    ]
    outs: list[tuple[str, list[int | str] | None]] = [("y", None)]
    if also_add:
        nodes.append(helper.make_node("Add", ["t", "t"], ["z"], name="twice"))
        outs.append(("z", None))
    ref = make_model(nodes, [("input", [1, 3, 32, 32])], outs, {"w": w})
    cand = onnx.ModelProto.FromString(ref.SerializeToString())
    for n in cand.graph.node[1:]:
        n.input[:] = ["t_dq" if i == "t" else i for i in n.input]
    qdq = [
        helper.make_node("QuantizeLinear", ["t", "s", "zp"], ["t_q"], name="t_q"),
        helper.make_node("DequantizeLinear", ["t_q", "s", "zp"], ["t_dq"], name="t_dq"),
    ]
    cand.graph.node.insert(1, qdq[1])
    cand.graph.node.insert(1, qdq[0])
    cand.graph.initializer.extend(
        [
            onnx.numpy_helper.from_array(np.array(3 / 127, np.float32), "s"),
            onnx.numpy_helper.from_array(np.array(0, np.int8), "zp"),
        ]
    )
    return save(ref, d / f"ref{also_add}.onnx"), save(cand, d / f"cand{also_add}.onnx")


def test_a_tensor_only_a_clamp_reads_is_judged_after_the_clamp(tmp_path: Path) -> None:
    ref, cand = _gate_models(tmp_path, also_add=False)
    r = evaluate_drift(ref, cand, EVAL_DIR, samples=16)
    by = {la.tensor: la for la in r.layers}
    assert by["t"].sqnr_db < 10 and by["t"].clamped_by == "HardSigmoid"  # clipped hard, on purpose
    assert r.outputs[0].sqnr_db > 25  # ...where the gate is flat: the model barely moved
    assert r.lossiest_layer != "t" and "t" not in r.worst_layers and by["t"].added_noise == 0.0
    assert by["y"].input_sqnr_db > 100  # the gate's input is judged by what feeds t (the exact input)
    # negative control: t also read by an Add, so the clipping is real error, and drift says so
    ref2, cand2 = _gate_models(tmp_path, also_add=True)
    r2 = evaluate_drift(ref2, cand2, EVAL_DIR, samples=16)
    by2 = {la.tensor: la for la in r2.layers}
    assert by2["t"].clamped_by == "" and r2.lossiest_layer == "t" and r2.worst_layers[0] in ("t", "z")


def test_cli_json_plot_markdown(models: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    res = invoke(
        "drift", SAMPLE_MODEL, models["good"], "--data", EVAL_DIR, "--samples", 100,
        "--json", out / "d.json", "--plot", out / "sqnr.png", "--markdown", out / "d.md",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "top-1" in res.output and "per-layer SQNR" in res.output and "agreement" in res.output
    d = json.loads((out / "d.json").read_text())
    assert d["kind"] == "drift" and d["schema_version"] == 1 and d["images"] == 100
    assert (out / "sqnr.png").read_bytes()[:4] == b"\x89PNG"
    md = (out / "d.md").read_text()
    assert md.startswith("### Drift") and "| top-1 |" in md and "Worst layers" in md


def test_without_labels_agreement_and_sqnr_only(models: dict[str, Path], tmp_path: Path) -> None:
    d = eval_subset(tmp_path, 40, labels=False)
    r = evaluate_drift(SAMPLE_MODEL, models["good"], d)
    assert not r.labeled and r.reference_top1_pct is None and r.per_class == ()
    assert r.agreement_pct is not None and r.outputs[0].sqnr_db > 20 and r.layers
    assert any("no labels" in n for n in r.notes)
    res = invoke("drift", SAMPLE_MODEL, models["good"], "--data", d, "--no-layers")
    assert res.exit_code == 0 and "no labels" in res.output
    res = invoke("drift", SAMPLE_MODEL, models["good"], "--data", d, "--require-labels")
    assert_one_line_error(res, 2, "no labels.csv", "--require-labels")


# -- bad input -------------------------------------------------------------------------------------------
def _one_image(tmp_path: Path) -> Path:
    """A data folder with one black 16x16 image and its spec: enough to feed two models and compare signatures."""
    d = tmp_path / "imgs"
    d.mkdir()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(d / "x.png")
    (d / "preprocess.toml").write_text("schema_version = 1\nresize = [16, 16]\n")
    return d


def test_different_signatures_are_rejected(tmp_path: Path) -> None:
    a = save(conv_model(cin=3, cout=8, hw=16), tmp_path / "a.onnx")
    b = save(conv_model(cin=3, cout=8, hw=20), tmp_path / "b.onnx")
    c = save(conv_model(cin=3, cout=4, hw=16), tmp_path / "c.onnx")
    d = _one_image(tmp_path)
    assert_one_line_error(invoke("drift", a, b, "--data", d), 2, "inputs differ", "b.onnx")
    assert_one_line_error(invoke("drift", a, c, "--data", d), 2, "outputs differ", "c.onnx")


def test_a_free_output_dim_matches_the_quantized_models_fixed_one(tmp_path: Path) -> None:
    """Exporters declare the output batch symbolic; edgecnn's own INT8 declares it fixed: the same signature.
    A different class count is still refused (negative control)."""
    a = conv_model(cin=3, cout=8, hw=16)
    a.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    a_path = save(a, tmp_path / "a.onnx")
    b_path = save(conv_model(cin=3, cout=8, hw=16), tmp_path / "b.onnx")
    c_path = save(conv_model(cin=3, cout=4, hw=16), tmp_path / "c.onnx")
    d = _one_image(tmp_path)
    res = invoke("drift", a_path, b_path, "--data", d)
    assert res.exit_code == 0, res.output
    assert_one_line_error(invoke("drift", a_path, c_path, "--data", d), 2, "outputs differ", "c.onnx")


def test_two_onnx_models_on_litert_compare_outputs_and_say_why_no_layers(models: dict[str, Path]) -> None:
    """On LiteRT each ONNX model runs as edgecnn's converter writes it, with fused layers: no tensor of their
    own to read back. The outputs are compared; the note says where a per-layer comparison is (it failed with a
    checker error on an internal temp file)."""
    res = invoke("drift", SAMPLE_MODEL, models["good"], "--data", EVAL_DIR, "--samples", "16", "-r", "litert")
    assert res.exit_code == 0, res.output
    assert "no per-layer comparison on litert" in " ".join(res.output.split())


def test_a_mostly_constant_output_also_gets_its_sqnr_about_its_variation() -> None:
    """A sigmoid mask near 0.5 everywhere: the constant holds most of the power, so the plain SQNR says 60 dB
    where the mask's variation is at 30 dB. Both are reported; an output centred on zero is not flagged."""
    rng = np.random.default_rng(0)
    ref = 0.5 + 0.01 * rng.standard_normal((4, 1, 16, 16))
    cand = ref + 0.0003 * rng.standard_normal(ref.shape)
    t = TensorDrift()
    t.update(ref, cand)
    assert t.sqnr_db > 60 and 29 < t.sqnr_ac_db < 32
    from edgecnn.drift.report import OutputDrift

    o = OutputDrift(name="mask", sqnr_db=t.sqnr_db, cosine_mean=1, cosine_min=1, max_abs_err=0, sqnr_ac_db=t.sqnr_ac_db)
    assert o.mostly_constant
    centred = TensorDrift()
    centred.update(ref - 0.5, cand - 0.5)
    assert abs(centred.sqnr_db - centred.sqnr_ac_db) < 0.5  # negative control: no constant to discount


def test_labels_that_name_unknown_classes(models: dict[str, Path], tmp_path: Path) -> None:
    d = eval_subset(tmp_path, 5)
    rows = (d / "labels.csv").read_text().splitlines()
    (d / "labels.csv").write_text("\n".join([*rows[:-1], rows[-1].split(",")[0] + ",12"]) + "\n")
    assert_one_line_error(invoke("drift", SAMPLE_MODEL, models["good"], "--data", d), 2, "label 12", "unknown class")
    (d / "labels.csv").write_text("\n".join([*rows[:-1], rows[-1].split(",")[0] + ",giraffe"]) + "\n")
    assert_one_line_error(
        invoke("drift", SAMPLE_MODEL, models["good"], "--data", d), 2, "'giraffe'", "unknown class", "classes.txt"
    )
    # class names from classes.txt are accepted as labels
    (d / "labels.csv").write_text("\n".join([*rows[:-1], rows[-1].split(",")[0] + ",7"]) + "\n")
    assert invoke("drift", SAMPLE_MODEL, models["good"], "--data", d, "--no-layers").exit_code == 0


def test_unlabeled_image_and_bad_header(models: dict[str, Path], tmp_path: Path) -> None:
    d = eval_subset(tmp_path, 5)
    rows = (d / "labels.csv").read_text().splitlines()
    (d / "labels.csv").write_text("\n".join(rows[:-1]) + "\n")
    assert_one_line_error(invoke("drift", SAMPLE_MODEL, models["good"], "--data", d), 2, "have no label")
    (d / "labels.csv").write_text("image;class\n")
    assert_one_line_error(invoke("drift", SAMPLE_MODEL, models["good"], "--data", d), 2, "file,label")
