"""Bench report files: JSON (``kind = "bench"``, schema_version, raw samples inline) and, with an output
folder, one ``.npy`` of raw nanosecond samples per result beside it."""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn import __version__
from edgecnn.bench.compare import Comparison
from edgecnn.bench.harness import BenchResult
from edgecnn.errors import BadInputError
from edgecnn.fsutil import atomic_path
from edgecnn.report.jsonio import read_json, write_json

KIND = "bench"
SCHEMA_VERSION = 1


def report_payload(results: Sequence[BenchResult], comparisons: Sequence[Comparison] = ()) -> dict[str, Any]:
    return {
        "edgecnn_version": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "percentile_method": "linear interpolation (numpy.percentile default) over raw samples",
        "results": [r.to_dict() for r in results],
        "comparisons": [c.to_dict() for c in comparisons],
    }


def write_report(path: Path, results: Sequence[BenchResult], comparisons: Sequence[Comparison] = ()) -> Path:
    write_json(Path(path), report_payload(results, comparisons), kind=KIND, schema_version=SCHEMA_VERSION)
    return Path(path)


def read_report(path: Path) -> list[BenchResult]:
    """Results of a bench JSON report, statistics recomputed from its raw samples."""
    data = read_json(Path(path), kind=KIND, schema_version=SCHEMA_VERSION)
    try:
        results = [BenchResult.from_dict(d) for d in data["results"]]
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        raise BadInputError(f"{path}: malformed bench report ({e.__class__.__name__}: {e})") from None
    for r in results:  # a latency of 0 or less would pass any latency rule
        if not r.samples_ns or min(r.samples_ns) <= 0 or r.batch <= 0:
            raise BadInputError(
                f"{path}: {r.label}: samples_ns must be a non-empty list of positive nanoseconds and batch > 0 "
                f"(got {len(r.samples_ns)} samples, min {min(r.samples_ns, default=None)}, batch {r.batch})"
            )
    return results


def _slug(model_name: str, runtime: str, host: str) -> str:
    host = "" if host == "local" else "-" + host
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{model_name}-{runtime}{host}")


def slug(r: BenchResult) -> str:
    return _slug(r.model_name, r.runtime, r.machine.host)


def _unique(names: Sequence[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return out


def planned_outputs(folder: Path, models: Sequence[Path], runtimes: Sequence[str], host: str) -> list[Path]:
    """Every file ``--out FOLDER`` will hold, known before the run (so it can be checked against the inputs):
    bench.json, a ``.samples.npy`` and a ``.png`` per (model, runtime), and the overlay plot."""
    stems = _unique([_slug(Path(m).stem, rt, host) for m in models for rt in runtimes])
    from edgecnn.report.plots import OVERLAY_PLOT

    return [folder / "bench.json", folder / OVERLAY_PLOT, *(folder / f"{s}.samples.npy" for s in stems),
            *(folder / f"{s}.png" for s in stems)]  # fmt: skip


def write_samples(folder: Path, results: Sequence[BenchResult]) -> list[Path]:
    """One ``<model>-<runtime>[-<host>].samples.npy`` (int64 nanoseconds) per result, written atomically."""
    paths: list[Path] = []
    for r, name in zip(results, _unique([slug(r) for r in results]), strict=True):
        path = folder / f"{name}.samples.npy"
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, np.asarray(r.samples_ns, dtype=np.int64))
        paths.append(path)
    return paths
