"""The same cases over every installed runtime: outputs agree with each other and with numpy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgecnn.errors import BadInputError
from edgecnn.runtimes import available_runtimes, open_session, random_feeds
from tests.onnx_builders import conv_model, save, small_cnn

RUNTIMES = available_runtimes()


def conv_ref(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, pad: int, group: int) -> np.ndarray:
    """Direct numpy convolution (NCHW), the reference the runtimes must match."""
    n, _c, h, wd = x.shape
    co, cig, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho, wo = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    y = np.zeros((n, co, ho, wo), np.float64)
    per = co // group
    for g in range(group):
        xs = xp[:, g * cig : (g + 1) * cig]
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i : i + stride * ho : stride, j : j + stride * wo : stride]
                y[:, g * per : (g + 1) * per] += np.einsum("nchw,oc->nohw", patch, w[g * per : (g + 1) * per, :, i, j])
    return (y + b.reshape(1, -1, 1, 1)).astype(np.float32)


def test_at_least_two_runtimes() -> None:
    assert {"ort", "openvino"} <= set(RUNTIMES)


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize(("group", "stride"), [(1, 1), (1, 2), (8, 1)])
def test_conv_matches_numpy(runtime: str, group: int, stride: int, tmp_path: Path) -> None:
    m = conv_model(cin=8, cout=8, k=3, hw=12, stride=stride, group=group)
    from onnx import numpy_helper

    w = numpy_helper.to_array(m.graph.initializer[0])
    b = numpy_helper.to_array(m.graph.initializer[1])
    sess = open_session(runtime, save(m, tmp_path / "c.onnx"), threads=1)
    (spec,) = sess.inputs()
    assert spec.shape == (1, 8, 12, 12) and spec.dtype == "float32"
    x = random_feeds(sess.inputs(), seed=3)
    (y,) = sess.run(x)
    np.testing.assert_allclose(y, conv_ref(x["x"], w, b, stride, 1, group), rtol=1e-4, atol=1e-4)
    assert sess.version and sess.device == "CPU" and sess.threads >= 1


def test_runtimes_agree_on_small_cnn(tmp_path: Path) -> None:
    p = save(small_cnn(), tmp_path / "s.onnx")
    outs = {}
    for rt in RUNTIMES:
        sess = open_session(rt, p, threads=2)
        outs[rt] = sess.run(random_feeds(sess.inputs(), seed=1))[0]
        assert outs[rt].shape == (1, 4)
    assert len(outs) >= 2, "onnxruntime and openvino are both dependencies: the comparison needs two runtimes"
    ref = outs[RUNTIMES[0]]
    for rt, y in outs.items():
        np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4, err_msg=rt)


def test_runtimes_agree_on_bundled_model(sample_model: Path) -> None:
    outs = [
        open_session(rt, sample_model).run(random_feeds(open_session(rt, sample_model).inputs(), 5))[0]
        for rt in RUNTIMES
    ]
    assert len(outs) >= 2  # a loop over one runtime would compare nothing
    for y in outs[1:]:
        np.testing.assert_allclose(y, outs[0], rtol=1e-3, atol=1e-3)


def test_unknown_runtime_lists_valid() -> None:
    with pytest.raises(BadInputError, match="valid runtimes are ort, openvino, litert"):
        open_session("tensorrt", "x.onnx")


def test_litert_is_one_of_the_contract_runtimes() -> None:
    """LiteRT is installed for the tests (the `litert` extra is in `dev`), so every case above runs on it."""
    assert "litert" in RUNTIMES


def test_missing_runtime_exit_3_with_install_command(tmp_path: Path) -> None:
    from tests.absent import env_without

    code = (
        "from edgecnn.runtimes import open_session\n"
        "from edgecnn.errors import MissingRuntimeError\n"
        "try:\n"
        "    open_session('litert', 'x.tflite')\n"
        "except MissingRuntimeError as e:\n"
        "    print(e.exit_code, e)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=env_without("ai_edge_litert", tmp_path),
    )
    assert proc.stdout.startswith("3 ") and "pip install 'edgecnn[litert]'" in proc.stdout, proc.stdout + proc.stderr


def test_openvino_output_names_are_the_onnx_outputs(tmp_path: Path) -> None:
    """OpenVINO merges the names of tensors it removes (a no-op Flatten after a classifier's Add), and
    get_any_name() then named the output '_v_1' where the ONNX graph says 'lin' (drift --runtime openvino on
    PP-OCR cls raised KeyError). The session names each output as the ONNX graph does."""
    import numpy as np
    from onnx import helper

    from edgecnn.runtimes import open_session
    from tests.onnx_builders import make_model, save

    nodes = [
        helper.make_node("Flatten", ["x"], ["f"], name="flat"),
        helper.make_node("MatMul", ["f", "w"], ["mm"], name="mm"),
        helper.make_node("Add", ["mm", "b"], ["lin"], name="add"),
        helper.make_node("Flatten", ["lin"], ["_v_1"], name="noop"),
        helper.make_node("Softmax", ["_v_1"], ["y"], name="sm"),
    ]
    inits = {"w": np.ones((48, 5), np.float32), "b": np.ones(5, np.float32)}
    path = save(make_model(nodes, [("x", [1, 3, 4, 4])], [("lin", None), ("y", None)], inits), tmp_path / "m.onnx")
    assert [o.name for o in open_session("openvino", path).outputs()] == ["lin", "y"]


def test_an_onnxruntime_failure_at_run_time_is_one_line_naming_the_file(tmp_path: Path) -> None:
    """A model ORT loads but cannot execute for these inputs (here a Gather index out of range): a ModelError
    naming the file, which the CLI prints in one line, not ORT's own exception type (a traceback)."""
    from onnx import TensorProto, helper

    from edgecnn.errors import ModelError

    g = helper.make_graph(
        [helper.make_node("Gather", ["x", "i"], ["y"], axis=1)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]),
         helper.make_tensor_value_info("i", TensorProto.INT64, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])],
    )  # fmt: skip
    path = tmp_path / "gather.onnx"
    import onnx

    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    sess = open_session("ort", path, threads=1)
    x = np.ones((1, 4), np.float32)
    assert sess.run({"x": x, "i": np.array([3], np.int64)})[0].shape == (1, 1)  # in range: runs
    with pytest.raises(ModelError, match=r"gather\.onnx: onnxruntime failed running the model"):
        sess.run({"x": x, "i": np.array([9], np.int64)})


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_sessions_taking_turns_do_not_spin_and_compute_the_same(runtime: str, tmp_path: Path) -> None:
    """quantize's checks and drift run several sessions in turn: ORT's threads must not spin between runs
    (runtimes.TAKING_TURNS). The option reaches ONNX Runtime, the others ignore it, and the outputs are the same."""
    from edgecnn.runtimes import TAKING_TURNS

    path = save(small_cnn(), tmp_path / "m.onnx")
    plain, turns = open_session(runtime, path), open_session(runtime, path, options=TAKING_TURNS)
    feeds = random_feeds(plain.inputs(), 2)
    np.testing.assert_array_equal(plain.run(feeds)[0], turns.run(feeds)[0])
    if runtime == "ort":
        entry = "session.intra_op.allow_spinning"
        assert turns._sess.get_session_options().get_session_config_entry(entry) == "0"  # type: ignore[attr-defined]
        with pytest.raises(Exception, match="does not have configuration"):  # ORT's default (spinning) elsewhere
            plain._sess.get_session_options().get_session_config_entry(entry)  # type: ignore[attr-defined]
