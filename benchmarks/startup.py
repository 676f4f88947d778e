#!/usr/bin/env python3
"""How long `edgecnn --help` takes to start (goal: under 0.3 s), against the bare interpreter.

    python benchmarks/startup.py [--rounds 5] [--runs 10]

Through `benchmarks/runner.py`: each variant in a fresh process, >= 5 alternating rounds; in each round the
child starts the command --runs times as a new interpreter and reports the median wall time. Variants:
  python          `python -c pass`: the interpreter's own floor
  import onnx, numpy   what a CLI that imports them eagerly pays on top of the interpreter
  edgecnn --help  `python -m edgecnn --help`: the CLI with every command's options (no onnx/numpy import;
                  tests/test_cli_startup.py checks that deterministically)
Reported: wall time and CPU time (user + sys of the started process). On a loaded machine the wall time is
mostly waiting for a core; the CPU time is what the start-up itself costs.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO
from runner import Variant, common_args, median, run_benchmark, settings_from, spread

NAME = "startup"
COMMANDS = {
    "python": ["-c", "pass"],
    "python -c 'import onnx, numpy'": ["-c", "import onnx, numpy"],
    "edgecnn --help": ["-m", "edgecnn", "--help"],
}


def measure(*, command: str, runs: int, threads: int, batch: int, **_: Any) -> dict[str, Any]:
    import resource

    ts, cpu = [], []
    for _i in range(runs):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, *COMMANDS[command]], cwd=REPO, check=True, capture_output=True)
        ts.append(time.perf_counter() - t0)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
    return {"start_s": statistics.median(ts), "cpu_s": statistics.median(cpu)}


def readme_table(payload: dict[str, Any]) -> str:
    s, mach = payload["settings"], payload["machine"]
    lines = [
        f"Median over {s['rounds']} alternating rounds (each the median of {payload['runs']} starts) "
        f"[min-max over the rounds]; {mach['cpu_model']}, python {mach['python']}.",
        "",
        "| command | CPU s | wall s | 0.3 s goal (CPU / wall) |",
        "|---|---|---|---|",
    ]
    for c in COMMANDS:
        cells, goal = [], []
        for k in ("cpu_s", "start_s"):
            m, sp = median(payload, c, k), spread(payload, c, k)
            cells.append("-" if m is None or sp is None else f"{m:.3f} [{sp[0]:.3f}-{sp[1]:.3f}]")
            goal.append("-" if m is None else "met" if m < 0.3 else "NOT met")
        lines.append(f"| `{c}` | {cells[0]} | {cells[1]} | {' / '.join(goal) if c == 'edgecnn --help' else '-'} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    common_args(ap, threads=1)
    a = ap.parse_args()
    variants = [Variant(name=c, fn=f"{NAME}:measure", params={"command": c, "runs": a.runs}) for c in COMMANDS]
    payload = run_benchmark(NAME, variants, settings_from(a), extra={"runs": a.runs}, results=a.results)
    print(readme_table(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
