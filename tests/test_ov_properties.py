"""`--ov-property NAME=VALUE` (bench, profile): OpenVINO compiles with the deployment's own config, and the report
says what the compiled model reports back; runs without it are the negative control."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgecnn.runtimes import OV_PROPERTY, open_session, ov_property_options
from tests.onnx_builders import save, small_cnn

runner = CliRunner()
DENORMALS = "CPU_DENORMALS_OPTIMIZATION"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save(small_cnn(), tmp_path_factory.mktemp("ovp") / "m.onnx")


def test_the_property_reaches_the_compiled_model(model: Path) -> None:
    flushed = open_session(
        "openvino", model, threads=1, options=ov_property_options([f"{DENORMALS}=YES"], ["openvino"])
    )
    plain = open_session("openvino", model, threads=1)
    assert flushed._compiled.get_property(DENORMALS) is True  # type: ignore[attr-defined]
    assert plain._compiled.get_property(DENORMALS) is False  # type: ignore[attr-defined]
    assert flushed.properties == {DENORMALS: "YES"}  # type: ignore[attr-defined]
    assert plain.properties == {}  # type: ignore[attr-defined]


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
    from edgecnn.cli import app

    out = tmp_path / "p.json"
    res = runner.invoke(
        app,
        ["profile", str(model), "-r", "openvino", "-n", "3", "--ov-property", f"{DENORMALS}=YES", "--json", str(out)],
    )
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["profile"]["runtime_properties"] == {DENORMALS: "YES"}
