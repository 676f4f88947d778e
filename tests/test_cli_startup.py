"""`edgecnn --help` starts fast because the CLI imports no heavy library until a command runs.

Measured deterministically: which modules a fresh interpreter has loaded after importing the CLI and building
every command's options, rather than a wall-clock time (that is machine- and load-dependent).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_helpers import ROOT

HEAVY = ("onnx", "numpy", "onnxruntime", "openvino", "PIL", "ai_edge_litert", "matplotlib", "psutil")

_PROBE = """
import json, sys
from typer.main import get_command
from edgecnn.cli import app
cmd = get_command(app)
for name, sub in cmd.commands.items():      # every command's options and help text are built
    sub.get_help(__import__("click").Context(sub, info_name=name))
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)))
"""


def _loaded_after(code: str) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-c", f"HEAVY = {HEAVY!r}\n{code}"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_cli_and_every_command_help_import_no_heavy_library() -> None:
    assert _loaded_after(_PROBE) == []


def test_the_probe_can_fail() -> None:
    """Negative control: a command that does import onnx is seen by the same probe."""
    loaded = _loaded_after("import edgecnn.graph.load\n" + _PROBE)
    assert "onnx" in loaded and "numpy" in loaded


def test_help_runs_in_a_subprocess() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "edgecnn", "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert proc.returncode == 0 and "quantize" in proc.stdout and "gate" in proc.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["quantize", "--bogus", "x"], "No such option: --bogus"),
        (["bench", "m.onnx", "--threads", "abc"], "Invalid value for '--threads'"),
        (["quantize"], "Missing argument"),
        (["check", "m.onnx", "--target"], "requires an argument"),
        (["nosuchcommand"], "No such command"),
    ],
)
def test_usage_errors_are_one_line_exit_2(args: list[str], words: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "edgecnn", *args], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and words in lines[0] and "--help" in lines[0], lines
    assert "Traceback" not in proc.stderr and "╭" not in proc.stderr + proc.stdout


def test_bare_command_prints_help_exit_2() -> None:
    proc = subprocess.run([sys.executable, "-m", "edgecnn"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2 and "quantize" in proc.stdout and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["inspect", "M", "--json"],
        ["check", "M", "-t", "ort-cpu", "--markdown"],
        ["quantize", "M", "--calib", "calibration_data", "-o"],
        ["quantize", "M", "--calib", "calibration_data", "-o", "OUT/q.onnx", "--json"],
        ["export", "M", "--to", "onnx", "-o"],
        ["bench", "M", "--json"],
        ["drift", "M", "M", "--data", "calibration_data", "--plot"],
        ["gate", "--policy", "p.toml", "--drift", "d.json", "--junit"],
        ["sensitivity", "M", "--calib", "calibration_data", "--data", "calibration_data", "--json"],
        ["profile", "M", "--plot"],
    ],
    ids=lambda a: " ".join(x for x in a if x.startswith("-") or x.isalpha()),
)
def test_a_file_output_ending_in_a_slash_is_refused(args: list[str], tmp_path: Path) -> None:
    """`-o new/` names a folder; Path drops the slash, so without the check a file named `new` was written."""
    argv = [str(ROOT / "models" / "sample_cnn.onnx") if a == "M" else a.replace("OUT", str(tmp_path)) for a in args]
    argv.append(f"{tmp_path}/new/")
    proc = subprocess.run(
        [sys.executable, "-m", "edgecnn", *argv], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert f"{tmp_path}/new/" in lines[0] and "names a folder" in lines[0], lines
    assert list(tmp_path.iterdir()) == []  # neither a file `new` nor anything else


def test_a_file_output_without_the_slash_is_accepted(tmp_path: Path) -> None:
    """Negative control: the same option with a file path writes the file."""
    out = tmp_path / "new"
    proc = subprocess.run(
        [sys.executable, "-m", "edgecnn", "inspect", str(ROOT / "models" / "sample_cnn.onnx"), "--json", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert out.is_file()
