"""`--ov-property NAME=VALUE` (bench, profile): OpenVINO compiles with the deployment's own config, and the report
says what the compiled model reports back; runs without it are the negative control.

CPU_DENORMALS_OPTIMIZATION=YES sets the flush-to-zero flags of the thread that compiles the model, for good: a
session with it is opened in a child process here, never in the test process (hypothesis refuses to run with
subnormals flushed, and other tests' float math would change)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgecnn.runtimes import OV_PROPERTY, open_session
from tests.onnx_builders import save, small_cnn

runner = CliRunner()
DENORMALS = "CPU_DENORMALS_OPTIMIZATION"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save(small_cnn(), tmp_path_factory.mktemp("ovp") / "m.onnx")


_CHILD = """
import json, sys
import numpy as np
from edgecnn.runtimes import open_session, ov_property_options
model = sys.argv[1]
plain = open_session("openvino", model, threads=1)
before = bool(np.float32(1e-39) * np.float32(1) != 0)
flushed = open_session("openvino", model, threads=1, options=ov_property_options([sys.argv[2]], ["openvino"]))
after = bool(np.float32(1e-39) * np.float32(1) != 0)
print(json.dumps({
    "plain": [plain._compiled.get_property("CPU_DENORMALS_OPTIMIZATION"), plain.properties],
    "flushed": [flushed._compiled.get_property("CPU_DENORMALS_OPTIMIZATION"), flushed.properties],
    "subnormals_before": before, "subnormals_after": after,
}))
"""


def test_the_property_reaches_the_compiled_model(model: Path) -> None:
    """In a child: the compiled model reports the property only when asked for, and compiling with it flushes
    the calling thread's subnormals (what README says a deployment gets with it)."""
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(model), f"{DENORMALS}=YES"], capture_output=True, text=True, check=True
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["plain"] == [False, {}]
    assert got["flushed"] == [True, {DENORMALS: "YES"}]
    assert got["subnormals_before"] is True and got["subnormals_after"] is False


def test_a_property_overrides_the_adapters_precision_default(model: Path) -> None:
    """edgecnn's adapter compiles with the f32 hint; a deployment that asks for bf16 gets bf16."""
    bf16 = open_session("openvino", model, threads=1, options={OV_PROPERTY + "INFERENCE_PRECISION_HINT": "bf16"})
    assert bf16.inference_precision == "bf16"  # type: ignore[attr-defined]
    assert open_session("openvino", model, threads=1).inference_precision == "f32"  # type: ignore[attr-defined]


def test_bench_reports_what_ran(model: Path, tmp_path: Path) -> None:
    from edgecnn.cli import app

    got = {}
    for name, extra in (("flush", ["--ov-property", f"{DENORMALS}=YES"]), ("plain", [])):
        out = tmp_path / f"{name}.json"
        res = runner.invoke(app, ["bench", str(model), "-r", "openvino", "-n", "5", "--json", str(out), *extra])
        assert res.exit_code == 0, res.output
        got[name] = json.loads(out.read_text())["results"][0]
        if extra:
            assert f"{DENORMALS}=YES" in " ".join(res.output.split()).replace(" ", "")
    assert got["flush"]["runtime_properties"] == {DENORMALS: "YES"}
    assert got["plain"]["runtime_properties"] == {}


def test_profile_reports_what_ran(model: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    cmd = [sys.executable, "-m", "edgecnn", "profile", str(model), "-r", "openvino", "-n", "3", "--ov-property",
           f"{DENORMALS}=YES", "--json", str(out)]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert json.loads(out.read_text())["profile"]["runtime_properties"] == {DENORMALS: "YES"}


def _qdq_conv(path: Path, silu: bool = False) -> Path:
    """x -> QuantizeLinear -> DequantizeLinear -> Conv 3x3: an INT8 (QDQ) model OpenVINO runs in int8; ``silu``:
    with a SiLU (Sigmoid·Mul) on the Conv's output."""
    import numpy as np
    from onnx import helper, numpy_helper

    inits = [
        numpy_helper.from_array(np.array(0.02, np.float32), "s"),
        numpy_helper.from_array(np.array(0, np.uint8), "z"),
        numpy_helper.from_array(np.random.default_rng(0).standard_normal((8, 3, 3, 3)).astype(np.float32), "w"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]),
        helper.make_node("Conv", ["d", "w"], ["c" if silu else "y"], pads=[1, 1, 1, 1]),
    ]
    if silu:
        nodes += [helper.make_node("Sigmoid", ["c"], ["sg"]), helper.make_node("Mul", ["c", "sg"], ["y"])]
    g = helper.make_graph(
        nodes, "qdq", [helper.make_tensor_value_info("x", 1, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", 1, [1, 8, 16, 16])], inits,
    )  # fmt: skip
    return save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)


def test_bench_points_an_int8_model_on_an_amx_cpu_to_the_property(model: Path, tmp_path: Path) -> None:
    """The hint appears for an INT8 model with a SiLU on a Conv output on OpenVINO exactly when this CPU has AMX
    int8 (where the cost was measured) and the property was not given; never for the float model, an INT8 model
    without a Sigmoid on a Conv, or the same SiLU written with Tanh (quantize --silu-form tanh)."""
    import onnx

    from edgecnn.cli import app
    from edgecnn.profile.core import cpu_flags
    from edgecnn.quantize.qdq import silu_as_tanh

    int8 = _qdq_conv(tmp_path / "int8.onnx", silu=True)
    plain = _qdq_conv(tmp_path / "plain.onnx")
    tanh = onnx.load(str(int8))
    assert silu_as_tanh(tanh) == 1
    hint = "without CPU_DENORMALS_OPTIMIZATION=YES"

    def said(*args: str) -> bool:
        res = runner.invoke(app, ["bench", *args, "-r", "openvino", "-n", "3"])
        assert res.exit_code == 0, res.output
        return hint in " ".join(res.output.split())

    assert said(str(int8)) is ("amx_int8" in cpu_flags())
    assert not said(str(model)) and not said(str(plain))
    assert not said(str(save(tanh, tmp_path / "tanh.onnx")))
    assert not said(str(int8), "--ov-property", f"{DENORMALS}=YES")
