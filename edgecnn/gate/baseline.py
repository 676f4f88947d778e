"""The gate baseline: the last accepted candidate's accuracy and latency, JSON ``kind = "gate-baseline"``.

It names the model (the reference file stem) and the evaluation set (its digest), so reports for another
model or other data are rejected instead of compared.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgecnn.bench.harness import BenchResult
from edgecnn.drift.report import DriftReport
from edgecnn.errors import BadInputError
from edgecnn.report.jsonio import read_json, write_json

KIND = "gate-baseline"
SCHEMA_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class Latency:
    runtime: str
    p50_ms: float
    p99_ms: float
    cpu_model: str
    threads: int
    batch: int


@dataclass(frozen=True, kw_only=True)
class Baseline:
    model: str  # the reference model's name
    data_digest: str
    candidate: str  # file name of the accepted candidate
    candidate_sha256: str
    top1_pct: float | None
    agreement_pct: float | None
    class_recall_pct: dict[str, float] = field(default_factory=dict)  # class index -> recall
    latency: dict[str, Latency] = field(default_factory=dict)  # runtime -> numbers
    created: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str) -> Baseline:
        try:
            return cls(
                model=str(d["model"]),
                data_digest=str(d["data_digest"]),
                candidate=str(d["candidate"]),
                candidate_sha256=str(d["candidate_sha256"]),
                top1_pct=None if d["top1_pct"] is None else float(d["top1_pct"]),
                agreement_pct=None if d["agreement_pct"] is None else float(d["agreement_pct"]),
                class_recall_pct={str(k): float(v) for k, v in d["class_recall_pct"].items()},
                latency={k: Latency(**v) for k, v in d["latency"].items()},
                created=str(d.get("created", "")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise BadInputError(f"{source}: malformed gate baseline ({e.__class__.__name__}: {e})") from None


def baseline_from(drift: DriftReport, bench: Sequence[BenchResult]) -> Baseline:
    return Baseline(
        model=drift.reference.name,
        data_digest=drift.data_digest,
        candidate=Path(drift.candidate.path).name,
        candidate_sha256=drift.candidate.sha256,
        top1_pct=drift.candidate_top1_pct,
        agreement_pct=drift.agreement_pct,
        class_recall_pct={str(c.index): c.candidate_pct for c in drift.per_class},
        latency={
            r.runtime: Latency(
                runtime=r.runtime,
                p50_ms=r.stats.p50_ms,
                p99_ms=r.stats.p99_ms,
                cpu_model=r.machine.cpu_model,
                threads=r.threads,
                batch=r.batch,
            )
            for r in bench
        },
        created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    )


def read_baseline(path: Path) -> Baseline:
    return Baseline.from_dict(read_json(Path(path), kind=KIND, schema_version=SCHEMA_VERSION), str(path))


def write_baseline(path: Path, baseline: Baseline) -> Path:
    from edgecnn import __version__

    write_json(
        Path(path), {"edgecnn_version": __version__, **baseline.to_dict()}, kind=KIND, schema_version=SCHEMA_VERSION
    )
    return Path(path)
