"""Run the CLI the two ways users do: in-process (Typer's CliRunner) and as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from edgecnn.cli import app

ROOT = Path(__file__).resolve().parents[1]


def invoke(*args: str):
    """In-process run; returns click's Result (exit_code, stdout, stderr)."""
    return CliRunner().invoke(app, [str(a) for a in args])


def run_cli(*args: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "edgecnn", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
        **kw,
    )


def assert_one_line_error(result, code: int, *needles: str) -> str:
    """Exit ``code``, a single 'error:' line on stderr naming every needle, no traceback."""
    err = result.stderr if isinstance(result, subprocess.CompletedProcess) else result.output
    assert result.returncode == code if isinstance(result, subprocess.CompletedProcess) else result.exit_code == code, (
        err
    )
    assert "Traceback" not in err, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]
