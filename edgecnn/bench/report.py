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


def slug(r: BenchResult) -> str:
    host = "" if r.machine.host == "local" else "-" + r.machine.host
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{r.model_name}-{r.runtime}{host}")


def write_samples(folder: Path, results: Sequence[BenchResult]) -> list[Path]:
    """One ``<model>-<runtime>[-<host>].samples.npy`` (int64 nanoseconds) per result, written atomically."""
    paths: list[Path] = []
    seen: dict[str, int] = {}
    for r in results:
        name = slug(r)
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            name = f"{name}-{seen[name]}"
        path = folder / f"{name}.samples.npy"
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, np.asarray(r.samples_ns, dtype=np.int64))
        paths.append(path)
    return paths
