"""edgecnn quantize end to end: graph passes, QDQ output on both runtimes, accuracy, metadata, bad input."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper
from PIL import Image

from edgecnn.graph.passes import fold_batchnorm, prepare
from edgecnn.preprocess import find_spec, load_spec
from edgecnn.quantize.api import Precision, QuantizeConfig, quantize
from edgecnn.quantize.dataset import ImageDataset
from edgecnn.quantize.estimators import Method, estimate
from edgecnn.runtimes import available_runtimes, open_session, random_feeds
from tests.cli_helpers import ROOT, assert_one_line_error, invoke
from tests.conftest import CALIB_DIR, EVAL_DIR
from tests.onnx_builders import conv_model, make_model, rng_w, save, small_cnn

RUNTIMES = available_runtimes()


def run(path: Path, runtime: str, x: np.ndarray) -> np.ndarray:
    sess = open_session(runtime, path)
    return sess.run({sess.inputs()[0].name: x})[0]


def test_fold_batchnorm_is_exact_and_removes_bn(tmp_path: Path) -> None:
    m = small_cnn()
    folded = fold_batchnorm(m)
    assert "BatchNormalization" not in {n.op_type for n in folded.graph.node}
    assert "BatchNormalization" in {n.op_type for n in m.graph.node}  # pure: input untouched
    onnx.checker.check_model(prepare(m), full_check=True)
    x = random_feeds(open_session("ort", save(m, tmp_path / "a.onnx")).inputs(), 4)["x"]
    np.testing.assert_allclose(
        run(save(folded, tmp_path / "b.onnx"), "ort", x), run(tmp_path / "a.onnx", "ort", x), rtol=1e-5, atol=1e-5
    )


def _image_dir(tmp_path: Path, n: int, size: tuple[int, int] = (16, 16), mode: str = "RGB", seed: int = 0) -> Path:
    d = tmp_path / f"imgs_{mode}_{n}_{size[0]}x{size[1]}"
    d.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(d / f"img_{i:03d}.png")
    (d / "preprocess.toml").write_text('schema_version = 1\ncolor_order = "RGB"\nlayout = "NCHW"\nresize = [16, 16]\n')
    return d


def test_small_cnn_int8_runs_on_every_runtime(tmp_path: Path) -> None:
    src = save(small_cnn(), tmp_path / "small.onnx")
    d = _image_dir(tmp_path, 24)
    ds = ImageDataset.open(d, find_spec(d))
    for method in Method:
        out, report = quantize(src, ds, QuantizeConfig(method=method, batch=5))
        dst = tmp_path / f"q_{method}.onnx"
        onnx.save(out, str(dst))
        onnx.checker.check_model(str(dst), full_check=True)
        ops = [n.op_type for n in out.graph.node]
        assert ops.count("QuantizeLinear") == report.tensors_quantized > 0
        assert "BatchNormalization" not in ops and report.activations_fused >= 2
        assert report.samples == 24 and report.weights_quantized == 4
        x = ds.spec.load(ds.files[0])[None]
        ref = run(src, "ort", x)
        for rt in RUNTIMES:
            y = run(dst, rt, x)
            assert y.shape == ref.shape
            assert np.max(np.abs(y - ref)) < 0.1 * np.max(np.abs(ref)) + 0.05, (method, rt)
    meta = {p.key: p.value for p in out.metadata_props}
    assert meta["edgecnn.precision"] == "int8" and meta["edgecnn.calibration_sha256"] == ds.digest()
    assert json.loads(meta["edgecnn.preprocess"])["resize"] == [16, 16]
    assert json.loads(meta["edgecnn.scheme"])["activation_dtype"] == "uint8"


def test_weights_are_int8_per_channel_and_bias_int32(tmp_path: Path) -> None:
    src = save(conv_model(cin=3, cout=8), tmp_path / "c.onnx")
    d = _image_dir(tmp_path, 8)
    out, _ = quantize(src, ImageDataset.open(d, find_spec(d)), QuantizeConfig())
    inits = {t.name: t for t in out.graph.initializer}
    w = next(t for n, t in inits.items() if n.endswith("_quantized") and t.data_type == onnx.TensorProto.INT8)
    assert list(w.dims) == [8, 3, 3, 3]
    assert any(t.data_type == onnx.TensorProto.INT32 for t in inits.values())
    dq = next(n for n in out.graph.node if n.op_type == "DequantizeLinear" and n.input[0] == w.name)
    assert list(inits[dq.input[1]].dims) == [8]  # one scale per output channel


def test_stats_merge_across_shards_matches_one_pass(tmp_path: Path) -> None:
    from edgecnn.quantize.api import calibrate
    from edgecnn.quantize.qdq import plan

    d = _image_dir(tmp_path, 20)
    spec = find_spec(d)
    model = prepare(small_cnn())
    tensors = list(plan(model).activations)
    full = ImageDataset.open(d, spec)
    a = ImageDataset(root=d, files=full.files[:7], spec=spec)
    b = ImageDataset(root=d, files=full.files[7:], spec=spec)
    one = calibrate(model, tensors, full, "x", batch=4, with_hist=True).stats
    merged = calibrate(model, tensors, a, "x", batch=3, with_hist=True).stats.merged(
        calibrate(model, tensors, b, "x", batch=5, with_hist=True).stats
    )
    assert merged.samples == one.samples == 20
    assert tensors and set(tensors) <= set(one.tensors)  # the loops below compare something
    for name in tensors:
        x, y = one.tensors[name], merged.tensors[name]
        assert (x.min, x.max, x.radius, x.count, x.zeros) == (y.min, y.max, y.radius, y.count, y.zeros)
        np.testing.assert_array_equal(x.hist, y.hist)
        for method in Method:
            assert estimate(x, method) == estimate(y, method), (name, method)
    # min/max reduced inside the runtime give the same ranges as the values themselves
    mm = calibrate(model, tensors, full, "x", batch=4, with_hist=False).stats
    for name in tensors:
        assert (mm.tensors[name].min, mm.tensors[name].max) == (one.tensors[name].min, one.tensors[name].max)


def test_decoded_images_kept_and_histograms_counted_in_threads_change_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """quantize reads its calibration images many times (calibration, bias shifts, every check): each is decoded
    once and kept in the work folder (ImageDataset.cached), and one batch's histograms are counted in threads.
    Both give the statistics of a plain pass, bit for bit."""
    from concurrent.futures import ThreadPoolExecutor

    from edgecnn.preprocess import PreprocessSpec
    from edgecnn.quantize.api import calibrate
    from edgecnn.quantize.collectors import CalibrationStats
    from edgecnn.quantize.dataset import DecodeCache
    from edgecnn.quantize.qdq import plan

    d = _image_dir(tmp_path, 12)
    model = prepare(small_cnn())
    tensors = list(plan(model).activations)
    plain = ImageDataset.open(d, find_spec(d))
    decoded: list[Path] = []
    real_load = PreprocessSpec.load
    monkeypatch.setattr(PreprocessSpec, "load", lambda self, p: decoded.append(p) or real_load(self, p))
    cached = plain.cached(tmp_path / "cache")
    first = [x.copy() for x in cached.batches(5, prefetch=True)]
    assert len(decoded) == 12 and len(list((tmp_path / "cache").glob("*/*.npy"))) == 12
    again = list(cached.batches(4))  # another batch size, the same files
    assert len(decoded) == 12  # nothing decoded twice
    np.testing.assert_array_equal(np.concatenate(first), np.concatenate(again))
    np.testing.assert_array_equal(np.concatenate(again), np.concatenate(list(plain.batches(4))))
    # another spec over the same files and folder: its own tensors, not the first spec's
    other = replace(plain, spec=replace(plain.spec, scale=2.0 / 255.0)).cached(tmp_path / "cache")
    np.testing.assert_allclose(np.concatenate(list(other.batches(4))), 2 * np.concatenate(again), rtol=1e-6)
    assert len(decoded) == 36  # 12 cached, 12 plain, 12 with the other spec
    decoded.clear()
    ref = calibrate(model, tensors, plain, "x", batch=4, with_hist=True, threads=1).stats
    got = calibrate(model, tensors, cached, "x", batch=4, with_hist=True, threads=3).stats
    assert tensors and set(ref.tensors) == set(got.tensors)
    for name in tensors:
        x, y = ref.tensors[name], got.tensors[name]
        assert (x.min, x.max, x.radius, x.count, x.zeros) == (y.min, y.max, y.radius, y.count, y.zeros)
        np.testing.assert_array_equal(x.hist, y.hist)
    # the same batch folded in by 4 threads and by one: the same counts (each tensor updated by one thread)
    rng = np.random.default_rng(1)
    batch = {f"t{i}": rng.standard_normal((2, 8, 16, 16)).astype(np.float32) * (i + 1) for i in range(6)}
    one, many = CalibrationStats(), CalibrationStats()
    one.update(batch, 2)
    with ThreadPoolExecutor(4) as pool:
        many.update(batch, 2, pool)
    assert list(one.tensors) == list(many.tensors) == list(batch)  # the same order, whatever finished first
    for name in batch:
        np.testing.assert_array_equal(one.tensors[name].hist, many.tensors[name].hist)
    # over the budget: not kept (decoded again next time); a folder that cannot be written: not kept either
    small = replace(plain, cache=DecodeCache(root=tmp_path / "cache2", budget=3 * first[0][0].nbytes))
    (tmp_path / "cache2").mkdir()
    list(small.batches(4))
    assert len(list((tmp_path / "cache2").glob("*.npy"))) == 3
    gone = replace(plain, cache=DecodeCache(root=tmp_path / "missing"))
    np.testing.assert_array_equal(np.concatenate(list(gone.batches(4))), np.concatenate(again))
    assert not (tmp_path / "missing").exists()


def _eval_set() -> tuple[np.ndarray, np.ndarray]:
    spec = load_spec(ROOT / "calibration_data" / "preprocess.toml")
    rows = list(csv.DictReader((EVAL_DIR / "labels.csv").open()))
    x = np.stack([spec.load(EVAL_DIR / r["file"]) for r in rows])
    return x, np.array([int(r["label"]) for r in rows])


def _predict(path: Path, runtime: str, x: np.ndarray) -> np.ndarray:
    sess = open_session(runtime, path)
    return np.array([int(np.argmax(sess.run({"input": x[i : i + 1]})[0])) for i in range(len(x))])


@pytest.mark.parametrize("method", ["minmax", "mse", "auto"])
def test_bundled_model_int8_accuracy(sample_model: Path, tmp_path: Path, method: str) -> None:
    """Issue 4's bar: top-1 within 0.3 points of float and >= 99% agreement, on both runtimes."""
    dst = tmp_path / "q.onnx"
    r = invoke(
        "quantize", sample_model, "--calib", CALIB_DIR, "-o", dst, "--method", method, "--json", tmp_path / "q.json"
    )
    assert r.exit_code == 0, r.output
    x, y = _eval_set()
    for rt in RUNTIMES:
        p_float, p_int8 = _predict(sample_model, rt, x), _predict(dst, rt, x)
        top1_f, top1_q = 100 * np.mean(p_float == y), 100 * np.mean(p_int8 == y)
        assert top1_f - top1_q <= 0.3, (rt, top1_f, top1_q)
        assert np.mean(p_float == p_int8) >= 0.99, rt
    rep = json.loads((tmp_path / "q.json").read_text())
    assert rep["schema_version"] == 1 and rep["kind"] == "quantize" and rep["samples"] == 512
    if rep["range_check"]:  # auto: the summary says which candidate shipped, with every candidate's error
        flat = " ".join(r.output.replace("\u2502", " ").split())  # the table's column rules out
        shipped = {0.0: "per-tensor choice", 1.0: "MSE ranges on every tensor"}.get(
            rep["mse_depth"], f"MSE ranges on the first {rep['mse_depth']:.0%} of the graph"
        )
        assert f"auto ranges {shipped}" in flat, flat
        assert all(f"{k} {v:.3g}" in flat for k, v in rep["range_check"].items())
    else:
        assert method != "auto" or rep["mse_depth"] == 0


def test_fp16_keeps_float32_io_and_runs(sample_model: Path, tmp_path: Path) -> None:
    dst = tmp_path / "h.onnx"
    r = invoke("quantize", sample_model, "--precision", "fp16", "-o", dst)
    assert r.exit_code == 0, r.output
    m = onnx.load(str(dst))
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert m.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in m.graph.initializer)
    x, _ = _eval_set()
    for rt in RUNTIMES:
        # LiteRT's FP16 form is a TFLite file with FP16 weights, written from the float model by `export`
        # (an FP16 ONNX graph's Cast nodes have no TFLite form); it must keep float32 I/O and run too.
        fp16 = dst
        if rt == "litert":
            fp16 = tmp_path / "h.tflite"
            r = invoke("export", sample_model, "--precision", "float16", "-o", fp16, "--no-parity")
            assert r.exit_code == 0, r.output
        xin = x[:1].transpose(0, 2, 3, 1) if fp16.suffix == ".tflite" else x[:1]  # the .tflite input is NHWC
        ref, got = run(sample_model, rt, x[:1]), run(fp16, rt, xin)
        np.testing.assert_allclose(got, ref, rtol=2e-2, atol=2e-2)


def test_fp16_block_list_keeps_op_in_float32(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Gemm", ["x", "w"], ["g"], name="fc", transB=1),
        helper.make_node("Softmax", ["g"], ["y"], name="softmax", axis=1),
    ]
    src = save(make_model(nodes, [("x", [1, 8])], [("y", None)], {"w": rng_w(4, 8)}), tmp_path / "s.onnx")
    out, report = quantize(src, None, QuantizeConfig(precision=Precision.FP16))
    assert "softmax" in report.kept_float
    sm = next(n for n in out.graph.node if n.op_type == "Softmax")
    types = {vi.name: vi.type.tensor_type.elem_type for vi in [*out.graph.value_info, *out.graph.output]}
    assert types[sm.input[0]] == onnx.TensorProto.FLOAT


# ---- bad input: one line, exit 2, nothing written ------------------------------------------------------------


@pytest.fixture
def small(tmp_path: Path) -> Path:
    return save(small_cnn(), tmp_path / "small.onnx")


def _bad(tmp_path: Path, *args: object, needles: tuple[str, ...], code: int = 2) -> None:
    out = tmp_path / "out.onnx"
    r = invoke("quantize", *args, "-o", out)
    assert_one_line_error(r, code, *needles)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.onnx")]


def test_empty_calibration_dir(small: Path, tmp_path: Path) -> None:
    d = tmp_path / "empty"
    d.mkdir()
    (d / "preprocess.toml").write_text("schema_version = 1\nresize = [16, 16]\n")
    _bad(tmp_path, small, "--calib", d, needles=(str(d), "no image files"))
    shutil.rmtree(d)
    d.mkdir()
    _bad(tmp_path, small, "--calib", d, needles=(str(d), "preprocess"))


def test_non_image_files(small: Path, tmp_path: Path) -> None:
    d = _image_dir(tmp_path, 3)
    (d / "notes.txt").write_text("hello")
    (d / "broken.png").write_bytes(b"not a png at all")
    _bad(tmp_path, small, "--calib", d, needles=("broken.png", "not a readable image"))


def test_grayscale_images_for_rgb_model(small: Path, tmp_path: Path) -> None:
    d = _image_dir(tmp_path, 3, mode="L")
    _bad(tmp_path, small, "--calib", d, needles=("grayscale", "color_order=RGB"))


def test_mixed_sizes_without_resize(small: Path, tmp_path: Path) -> None:
    d = _image_dir(tmp_path, 2, size=(16, 16))
    Image.fromarray(np.zeros((20, 16, 3), np.uint8)).save(d / "zz_big.png")
    (d / "preprocess.toml").write_text("schema_version = 1\n")
    _bad(tmp_path, small, "--calib", d, needles=("mixed sizes", "resize"))


def test_spec_mismatch_names_both_sides(small: Path, tmp_path: Path) -> None:
    d = _image_dir(tmp_path, 2)
    (d / "preprocess.toml").write_text('schema_version = 1\nlayout = "NHWC"\nresize = [32, 32]\n')
    _bad(
        tmp_path,
        small,
        "--calib",
        d,
        needles=("channels: spec 3 in NHWC, model 16", "the model looks NCHW", "spec 32x32"),
    )


def test_fewer_images_than_samples(small: Path, tmp_path: Path) -> None:
    d = _image_dir(tmp_path, 3)
    _bad(tmp_path, small, "--calib", d, "--samples", "10", needles=("--samples 10", "only 3"))


def test_unknown_method(small: Path, tmp_path: Path) -> None:
    d = _image_dir(tmp_path, 3)
    _bad(tmp_path, small, "--calib", d, "--method", "kl", needles=("'kl'", "minmax, percentile, entropy, mse"))


def test_nothing_to_quantize(tmp_path: Path) -> None:
    nodes = [helper.make_node("Sigmoid", ["x"], ["y"], name="sig")]
    src = save(make_model(nodes, [("x", [1, 3, 16, 16])], [("y", None)]), tmp_path / "sig.onnx")
    d = _image_dir(tmp_path, 3)
    _bad(tmp_path, src, "--calib", d, needles=("nothing to quantize",))


def test_output_in_missing_directory(small: Path, tmp_path: Path) -> None:
    d = _image_dir(tmp_path, 3)
    r = invoke("quantize", small, "--calib", d, "-o", tmp_path / "nope" / "q.onnx")
    assert_one_line_error(r, 2, "does not exist")


def test_interrupt_mid_calibration_leaves_nothing(tmp_path: Path) -> None:
    """Ctrl-C while calibrating: a clear message, non-zero exit, no output and no temp file left behind."""
    big = save(conv_model(cin=3, cout=64, k=7, hw=224), tmp_path / "big.onnx")
    d = tmp_path / "calib"
    d.mkdir()
    for p in sorted(CALIB_DIR.glob("*.png")):
        shutil.copy(p, d / p.name)
    (d / "preprocess.toml").write_text('schema_version = 1\ncolor_order = "RGB"\nresize = [224, 224]\n')
    work = tmp_path / "tmpdir"  # the child's TMPDIR: its calibration workspace appears here
    work.mkdir()
    out = tmp_path / "q.onnx"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgecnn", "quantize", str(big), "--calib", str(d), "-o", str(out), "--batch", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(work)},
    )
    deadline = time.monotonic() + 120
    while not list(work.glob("**/calib.onnx")):  # calibration has started
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # Stop the child, check it is still calibrating (alive, workspace present), queue Ctrl-C, continue it:
    # the interrupt lands during calibration by construction, not by a timing window.
    proc.send_signal(signal.SIGSTOP)
    try:
        still = proc.poll() is None and bool(list(work.glob("**/calib.onnx")))
        assert still, "calibration finished before the interrupt; make the test data larger"
        proc.send_signal(signal.SIGINT)
    finally:
        proc.send_signal(signal.SIGCONT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.onnx", "calib", "tmpdir"]
    assert [p.name for p in work.iterdir() if p.name.startswith("edgecnn")] == []  # (ORT leaves a .ses file here)


def test_target_scheme_puts_whole_model_on_int8_npu(sample_model: Path, tmp_path: Path) -> None:
    """--target reads the spec's [quant] scheme; the result then passes that target's check entirely."""
    dst = tmp_path / "npu.onnx"
    r = invoke("quantize", sample_model, "--calib", CALIB_DIR, "-o", dst, "--target", "ethos-u55", "--samples", "64")
    assert r.exit_code == 0, r.output
    m = onnx.load(str(dst))
    zps = [t for t in m.graph.initializer if t.name.endswith("_zero_point") and not t.name.endswith("_quantized")]
    assert zps and all(t.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.INT32) for t in zps)
    producer = {o: n for n in m.graph.node for o in n.output}
    assert producer["logits"].op_type == "DequantizeLinear"  # the output is integer too
    r = invoke("check", dst, "--target", "ethos-u55", "--target", "edgetpu", "--strict")
    assert r.exit_code == 0, r.output
    x, _ = _eval_set()
    agree = np.mean(_predict(dst, "ort", x[:300]) == _predict(sample_model, "ort", x[:300]))
    assert agree >= 0.98, agree


def test_float_only_target_refuses_int8(small: Path, tmp_path: Path) -> None:
    d = _image_dir(tmp_path, 3)
    _bad(tmp_path, small, "--calib", d, "--target", "mobile-gpu", needles=("mobile-gpu", "[quant]", "--precision fp16"))


def test_constant_subgraphs_are_folded(tmp_path: Path) -> None:
    """A weight computed at run time (Reshape of a constant, Mul by a Constant) is folded before quantizing."""
    from onnx import numpy_helper as nh

    from edgecnn.graph.passes import fold_constants

    w = rng_w(8 * 3 * 9)
    nodes = [
        helper.make_node("Constant", [], ["two"], value=nh.from_array(np.array(2.0, np.float32))),
        helper.make_node("Reshape", ["w_flat", "w_shape"], ["w4"], name="reshape_w"),
        helper.make_node("Mul", ["w4", "two"], ["w"], name="scale_w"),
        helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
    ]
    inits = {"w_flat": w, "w_shape": np.array([8, 3, 3, 3], np.int64)}
    m = make_model(nodes, [("x", [1, 3, 16, 16])], [("y", None)], inits)
    folded = fold_constants(m)
    assert [n.op_type for n in folded.graph.node] == ["Conv"]
    got = next(t for t in folded.graph.initializer if t.name == "w")
    np.testing.assert_array_equal(nh.to_array(got), w.reshape(8, 3, 3, 3) * 2)
    src = save(m, tmp_path / "c.onnx")
    d = _image_dir(tmp_path, 4)
    _, report = quantize(src, ImageDataset.open(d, find_spec(d)), QuantizeConfig())
    assert report.weights_quantized == 1  # the folded weight is constant, so the Conv runs in integer


def test_time_major_output_passes_the_preparation_check(tmp_path: Path) -> None:
    """A recognizer writes [time, batch, classes] (an LSTM/GRU head, ddddocr's OCR model): the check that
    graph preparation did not change the outputs compares the first sample along the batch axis, wherever it
    is; it used to slice axis 0 of a batch-8 calibration run and refused the model ("changed the outputs by
    7e-01"). Control: a preparation that does change the outputs is still refused."""
    nodes = [
        helper.make_node("Conv", ["input", "w", "b"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("ReduceMean", ["r", "ax"], ["m"], name="pool_h", keepdims=0),  # [N, C, W]
        helper.make_node("Transpose", ["m"], ["y"], name="time_major", perm=[2, 0, 1]),  # [W, N, C]
    ]
    inits = {"w": rng_w(6, 3, 3, 3), "b": rng_w(6, seed=1), "ax": np.array([2], np.int64)}
    src = tmp_path / "tm.onnx"
    onnx.save(make_model(nodes, [("input", [1, 3, 32, 32])], [("y", None)], inits, opset=18), str(src))
    ds = ImageDataset.open(CALIB_DIR, load_spec(CALIB_DIR.parent / "preprocess.toml"), 16)
    q, rep = quantize(src, ds, QuantizeConfig(batch=8))
    assert rep.prep_max_abs_diff < 1e-5 and any(n.op_type == "QuantizeLinear" for n in q.graph.node)
    from edgecnn.quantize.api import _rel_diff

    ref = [np.ones((32, 1, 6), np.float32)]
    batch = np.ones((32, 8, 6), np.float32)
    assert _rel_diff(ref, [batch], 8) == 0.0
    batch[:, 0, 2] = 5.0  # the first sample changed: refused
    assert _rel_diff(ref, [batch], 8) > 1e-3


def test_fp16_converts_a_constant_of_shape(tmp_path: Path) -> None:
    """An LSTM's zero initial state is a ConstantOfShape of float32 value: FP16 makes it float16 too (it made an
    invalid graph, a traceback, on ddddocr's OCR model)."""
    import onnx
    from onnx import TensorProto, helper

    from edgecnn.runtimes import open_session
    from tests.onnx_builders import make_model, save

    nodes = [
        helper.make_node("Shape", ["x"], ["s"], name="shape"),
        helper.make_node(
            "ConstantOfShape", ["s"], ["c"], name="zeros", value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.5])
        ),
        helper.make_node("Add", ["x", "c"], ["a"], name="add"),
        helper.make_node("Conv", ["a", "w"], ["y"], name="conv", kernel_shape=[1, 1]),
    ]
    src = save(make_model(nodes, [("x", [1, 2, 4, 4])], [("y", None)], {"w": np.ones((3, 2, 1, 1), np.float32)}), tmp_path / "c.onnx")  # fmt: skip
    dst = tmp_path / "c16.onnx"
    r = invoke("quantize", src, "--precision", "fp16", "-o", dst)
    assert r.exit_code == 0, r.output
    x = np.random.default_rng(0).random((1, 2, 4, 4)).astype(np.float32)
    got = open_session("ort", dst).run({"x": x})[0]
    np.testing.assert_allclose(got, np.broadcast_to((x + 0.5).sum(1, keepdims=True), (1, 3, 4, 4)), rtol=2e-3)
    assert onnx.load(str(dst)).graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT


def test_a_constant_computed_from_the_input_shape_stays_float() -> None:
    """YOLOv8's anchor grid (Shape -> Range -> Add): with every op in integer (a --target), Q/DQ on it stopped the
    TFLite converter folding it ("all inputs are constant"). Nodes reading no value of the input stay float; the
    Conv that reads the input's values is quantized (the other side)."""
    from onnx import TensorProto, helper

    from edgecnn.quantize.qdq import INTEGER_POLICY, SHAPE_CONSTANT_REASON, plan
    from tests.onnx_builders import make_model

    nodes = [
        helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[1, 1]),
        helper.make_node("Mul", ["y", "k"], ["out"], name="scale"),
        helper.make_node("Shape", ["x"], ["s"], name="shape"),
        helper.make_node("Cast", ["s"], ["sf"], name="cast", to=TensorProto.FLOAT),
        helper.make_node("Mul", ["sf", "k4"], ["g"], name="grid_mul"),
        helper.make_node("Add", ["g", "k4"], ["grid"], name="grid_add"),
    ]
    inits = {"w": np.ones((2, 3, 1, 1), np.float32), "k": np.array(0.5, np.float32), "k4": np.arange(4, dtype=np.float32)}  # fmt: skip
    m = make_model(nodes, [("x", [1, 3, 8, 8])], [("out", None), ("grid", [4])], inits)
    p = plan(m, quantize_outputs=True, policy=INTEGER_POLICY)
    assert p.kept_float["grid_mul"] == SHAPE_CONSTANT_REASON and p.kept_float["grid_add"] == SHAPE_CONSTANT_REASON
    assert "conv" in p.quantized_nodes and p.kept_float.get("scale") != SHAPE_CONSTANT_REASON


def test_first_sample_of_a_batch_folded_into_one_axis() -> None:
    """ddddocr's YOLOX head reshapes to [1, batch x anchors, 6]: calibrated 8 at a time, the first image's
    anchors are the first 3549 rows (the preparation check raised a broadcast ValueError). Batch on axis 0 and
    an LSTM's [time, batch, features] are still sliced as before."""
    from edgecnn.quantize.api import _first_sample

    got = np.arange(8 * 3549 * 6, dtype=np.float32).reshape(1, 8 * 3549, 6)
    np.testing.assert_array_equal(_first_sample(got, (1, 3549, 6), 8), got[:, :3549])
    np.testing.assert_array_equal(_first_sample(np.ones((8, 10)), (1, 10), 8), np.ones((1, 10)))
    lstm = np.arange(20 * 8 * 5).reshape(20, 8, 5)
    np.testing.assert_array_equal(_first_sample(lstm, (20, 1, 5), 8), lstm[:, :1])


def test_batch_consistent_rejects_a_graph_that_mixes_its_samples() -> None:
    """A head that adds a batch-1 grid after folding the batch into its anchors runs at batch 2 but gives the
    first sample other values: calibration and evaluation then run one sample at a time."""
    from edgecnn.quantize.api import batch_consistent

    one = np.arange(12, dtype=np.float32).reshape(1, 6, 2)
    assert batch_consistent([one], [np.concatenate([one, one], axis=1)])  # folded, each sample intact
    assert batch_consistent([one], [np.concatenate([one, one])])  # batch on axis 0
    mixed = np.concatenate([one, one], axis=1) + np.tile(np.arange(12, dtype=np.float32).reshape(1, 12, 1), 2)
    assert not batch_consistent([one], [mixed])
    assert not batch_consistent([one], [one])  # no room for a second sample


def test_a_fixed_batch_above_one_and_two_inputs_from_one_folder_are_one_line_errors(tmp_path: Path) -> None:
    """A 4-D input pinned at batch 2: calibration runs one image at a time, so the error says what to re-export
    (it was ONNX Runtime's own message, cut at the line that named the index). Two inputs and one plain --calib:
    the error shows the NAME=DIR form with the model's input names."""
    conv = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv", pads=[1, 1, 1, 1])]
    b2 = save(make_model(conv, [("x", [2, 3, 32, 32])], [("y", [2, 4, 32, 32])], {"w": rng_w(4, 3, 3, 3)}),
              tmp_path / "b2.onnx")  # fmt: skip
    res = invoke("quantize", b2, "-o", tmp_path / "o.onnx", "--calib", CALIB_DIR)
    assert_one_line_error(res, 2, "b2.onnx", "input 'x' has a fixed batch of 2", "batch 1 or a dynamic batch")
    two = [helper.make_node("Concat", ["l", "r"], ["x"], name="cat", axis=1), *[
        helper.make_node("Conv", ["x", "w"], ["y"], name="conv")]]  # fmt: skip
    m2 = save(make_model(two, [("l", [1, 3, 32, 32]), ("r", [1, 3, 32, 32])], [("y", None)], {"w": rng_w(4, 6, 1, 1)}),
              tmp_path / "two.onnx")  # fmt: skip
    res = invoke("quantize", m2, "-o", tmp_path / "o.onnx", "--calib", CALIB_DIR)
    assert_one_line_error(res, 2, "two.onnx", "has 2 inputs", "--calib l=DIR1 --calib r=DIR2")
    assert not (tmp_path / "o.onnx").exists()


def _relu_model(tail: bool) -> onnx.ModelProto:
    """Conv -> Relu -> Conv(bias -0.5) -> Relu, the last Relu's output a graph output (``tail`` False) or read
    only by a Concat with a Sigmoid of the first Relu (``tail`` True: after the last Conv, so it stays float)."""
    N = helper.make_node
    nodes = [
        N("Conv", ["x", "w0"], ["c0"], name="c0", pads=[1] * 4),
        N("Relu", ["c0"], ["r0"], name="r0"),
        N("Conv", ["r0", "w1", "b1"], ["c1"], name="c1"),
        N("Relu", ["c1"], ["r1" if tail else "y"], name="r1"),
    ]
    if tail:
        nodes += [N("Sigmoid", ["r0"], ["s"], name="sg"), N("Concat", ["r1", "s"], ["y"], name="cat", axis=1)]
    inits = {"w0": rng_w(8, 3, 3, 3), "w1": rng_w(4, 8, 1, 1, seed=1), "b1": np.full(4, -0.5, np.float32)}
    return make_model(nodes, [("x", [1, 3, 32, 32])], [("y", [1, 12 if tail else 4, 32, 32])], inits)


@pytest.mark.parametrize("tail", [False, True], ids=["graph-output", "float-tail"])
@pytest.mark.parametrize("runtime", ["ort", "openvino"])
def test_a_relu_with_no_q_after_it_stays_a_node(tmp_path: Path, tail: bool, runtime: str) -> None:
    """A Relu folds into the Q after its Conv (the Q saturates at 0). Where no Q follows (the model's output;
    on OpenVINO, a last conv read only by the float tail) the Relu must stay, or negative values come out:
    both were dropped before (outputs down to -3.2 where the float model gives 0). Controls: the Relu between
    the two convs, which has a Q after it, is still folded; so is the last one on ONNX Runtime's float tail,
    where the last conv keeps its output Q (QLinearConv needs it)."""
    src = save(_relu_model(tail), tmp_path / "relu.onnx")
    ds = ImageDataset.open(CALIB_DIR, find_spec(CALIB_DIR), 16)
    q, _ = quantize(src, ds, QuantizeConfig(runtime=runtime))
    relus = [n.name for n in q.graph.node if n.op_type == "Relu"]
    assert relus == ([] if tail and runtime == "ort" else ["r1"]), relus
    x = next(ds.batches(1))
    ref = open_session("ort", src).run({"x": x})[0]
    got = open_session("ort", save(q, tmp_path / "q.onnx")).run({"x": x})[0]
    assert ref[:, :4].min() == 0.0 and got[:, :4].min() >= 0.0
    assert np.abs(got - ref).max() < 0.1 * np.abs(ref).max()


@pytest.mark.parametrize("runtime", ["ort", "openvino", "litert"])
def test_a_relu6_on_a_concat_grid_wider_than_6_stays_a_node(tmp_path: Path, runtime: str) -> None:
    """Conv -> Clip(0, 6) and Conv -> Relu with a much larger range, concatenated: the Concat's one grid (the
    union of the ranges) reaches far above 6, so a Q there cannot stand in for the Clip; the Clip stays and the
    values stay <= 6 (they came out up to 40 before). Control: the Relu on the same grid is still folded."""
    N = helper.make_node
    nodes = [
        N("Conv", ["x", "w0"], ["c0"], name="c0", pads=[1] * 4),
        N("Clip", ["c0", "lo", "hi"], ["r0"], name="r0"),
        N("Conv", ["x", "w2"], ["c2"], name="c2", pads=[1] * 4),
        N("Relu", ["c2"], ["r2"], name="r2"),
        N("Concat", ["r0", "r2"], ["cat"], name="cat", axis=1),
        N("Conv", ["cat", "w1"], ["y"], name="c1"),
    ]
    inits = {"w0": rng_w(8, 3, 3, 3) * 3, "w2": rng_w(8, 3, 3, 3, seed=2) * 6, "w1": rng_w(4, 16, 1, 1, seed=1),
             "lo": np.array(0.0, np.float32), "hi": np.array(6.0, np.float32)}  # fmt: skip
    src = save(make_model(nodes, [("x", [1, 3, 32, 32])], [("y", [1, 4, 32, 32])], inits), tmp_path / "r6.onnx")
    ds = ImageDataset.open(CALIB_DIR, find_spec(CALIB_DIR), 16)
    q, _ = quantize(src, ds, QuantizeConfig(runtime=runtime))
    acts = [n.name for n in q.graph.node if n.op_type in ("Relu", "Clip")]
    assert acts == ["r0"], acts
    c1 = next(n for n in q.graph.node if n.name == "c1")
    q.graph.output.append(helper.make_tensor_value_info(c1.input[0], onnx.TensorProto.FLOAT, None))
    x = next(ds.batches(1))
    cat = open_session("ort", save(q, tmp_path / "q.onnx")).run({"x": x})[1]
    assert 5.0 < cat[:, :8].max() <= 6.05 and cat[:, 8:].max() > 12.0
