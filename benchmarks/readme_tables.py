#!/usr/bin/env python3
"""Render the README's benchmark tables from the committed results in `benchmarks/results/`.

    python benchmarks/readme_tables.py            # rewrite the marked blocks in README.md
    python benchmarks/readme_tables.py --check    # exit 1 when README.md is stale (what the test runs)

A block in README.md looks like

    <!-- bench:int8_speed -->
    ...generated, do not edit...
    <!-- /bench:int8_speed -->

and `BLOCKS` says which renderer ("module:function" in benchmarks/) and which result files make it: the
first file is the payload, the others are attached to it under the given keys. Sentences that state a
verdict ("fastest or within noise of the fastest", "goal met") are blocks too, computed from the same
numbers as the table beside them, so a README sentence cannot disagree with its table.
A benchmark script adds a block by writing `benchmarks/results/NAME.json` through `runner.run_benchmark`,
a `readme_*` function here, and the markers in README.md.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
README = REPO / "README.md"
RESULTS = BENCH_DIR / "results"
for _p in (str(REPO), str(BENCH_DIR)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

_CALIB = ("calibration", {"latency": "calibration_latency", "accuracy": "calibration_accuracy"})
# block name -> (renderer, (result file stem, {key: attached result file stem}))
BLOCKS: dict[str, tuple[str, tuple[str, dict[str, str]]]] = {
    "int8_speed": ("int8_speed:readme_table", ("int8_speed", {})),
    "int8_speed_verdict": ("int8_speed:readme_verdict", ("int8_speed", {})),
    "fp16_speed": ("fp16_speed:readme_table", ("fp16_speed", {})),
    "fp16_speed_verdict": ("fp16_speed:readme_verdict", ("fp16_speed", {})),
    "ov_denormals": ("ov_denormals:readme_table", ("ov_denormals", {})),
    "ov_denormals_verdict": ("ov_denormals:readme_verdict", ("ov_denormals", {})),
    "ov_silu_form": ("ov_silu_form:readme_table", ("ov_silu_form", {})),
    "ov_silu_form_verdict": ("ov_silu_form:readme_verdict", ("ov_silu_form", {})),
    "calibration": ("calibration:readme_table", _CALIB),
    "calibration_ratios": ("calibration:readme_ratios", _CALIB),
    "calibration_goals": ("calibration:readme_goals", _CALIB),
    "calibration_accuracy": ("calibration:readme_accuracy", _CALIB),
    "harness": ("harness_vs_benchmark_app:readme_table", ("harness_vs_benchmark_app", {})),
    "harness_litert": ("harness_litert_variants:readme_table", ("harness_litert_variants", {})),
    "harness_litert_verdict": ("harness_litert_variants:readme_verdict", ("harness_litert_variants", {})),
    "profile_accuracy": ("profile_accuracy:readme_table", ("profile_accuracy", {})),
    "profile_accuracy_verdict": ("profile_accuracy:readme_verdict", ("profile_accuracy", {})),
    "profile_cases": ("profile_cases:readme_table", ("profile_cases", {})),
    "profile_cases_said": ("profile_cases:readme_sentences", ("profile_cases", {})),
    "ray_calibration": ("ray_calibration:readme_table", ("ray_calibration", {})),
    "startup": ("startup:readme_table", ("startup", {})),
    "real_models": ("real_models:readme_table", ("real_models", {})),
    "real_models_verdict": ("real_models:readme_verdict", ("real_models", {})),
    "pretrained": ("pretrained:readme_table", ("pretrained", {})),
    "pretrained_verdict": ("pretrained:readme_verdict", ("pretrained", {})),
    "bias_correction": ("bias_correction:readme_table", ("bias_correction", {})),
    "bias_correction_verdict": ("bias_correction:readme_verdict", ("bias_correction", {})),
    "int8_placement": ("int8_placement:readme_table", ("int8_placement", {})),
    "int8_placement_verdict": ("int8_placement:verdict", ("int8_placement", {})),
    "stem_placement": ("stem_placement:readme_table", ("stem_placement", {})),
    "stem_placement_verdict": ("stem_placement:verdict", ("stem_placement", {})),
    "gelu_placement": ("gelu_placement:readme_table", ("gelu_placement", {})),
    "gelu_placement_verdict": ("gelu_placement:verdict", ("gelu_placement", {})),
    "prelu_placement": ("prelu_placement:readme_table", ("prelu_placement", {})),
    "prelu_placement_verdict": ("prelu_placement:verdict", ("prelu_placement", {})),
    "export": ("export:readme_table", ("export", {})),
    "export_verdict": ("export:readme_verdict", ("export", {})),
    "tflite_int8": ("export:readme_table", ("tflite_int8", {})),
    "tflite_int8_verdict": ("export:readme_verdict", ("tflite_int8", {})),
    "fold_shapes": ("fold_shapes:readme_table", ("fold_shapes", {})),
    "fold_shapes_verdict": ("fold_shapes:readme_verdict", ("fold_shapes", {})),
}
_BLOCK = re.compile(r"(<!-- bench:([\w-]+) -->\n)(.*?)(<!-- /bench:\2 -->)", re.S)


class StaleError(Exception):
    """A block names no renderer, or its result file is missing."""


def load(stem: str, results: Path) -> dict[str, Any]:
    from runner import read_result

    path = results / f"{stem}.json"
    if not path.is_file():
        raise StaleError(f"{path}: no such result; run the benchmark that writes it (see benchmarks/runner.py)")
    return read_result(path)


def render_block(name: str, results: Path = RESULTS) -> str:
    if name not in BLOCKS:
        raise StaleError(f"README block bench:{name} has no renderer; known blocks: {', '.join(BLOCKS)}")
    fn_ref, (stem, attached) = BLOCKS[name]
    payload = {**load(stem, results), **{k: load(v, results) for k, v in attached.items()}}
    mod, attr = fn_ref.split(":")
    text: str = getattr(importlib.import_module(mod), attr)(payload)
    return text.rstrip("\n") + "\n"


def render(readme: str, results: Path = RESULTS) -> str:
    """``readme`` with every marked block regenerated."""
    return _BLOCK.sub(lambda m: m.group(1) + render_block(m.group(2), results) + m.group(4), readme)


def blocks_in(readme: str) -> list[str]:
    return [m.group(2) for m in _BLOCK.finditer(readme)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if README.md differs from the rendered one")
    ap.add_argument("--readme", type=Path, default=README)
    ap.add_argument("--results", type=Path, default=RESULTS)
    a = ap.parse_args()
    old = a.readme.read_text(encoding="utf-8")
    try:
        new = render(old, a.results)
    except StaleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.check:
        if new != old:
            print(f"{a.readme} is stale: run python benchmarks/readme_tables.py", file=sys.stderr)
            return 1
        return 0
    if new != old:
        from edgecnn.fsutil import atomic_write_text

        atomic_write_text(a.readme, new)
        print(f"updated {a.readme}: {', '.join(blocks_in(new))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
