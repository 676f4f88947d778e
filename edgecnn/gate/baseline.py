"""The gate baseline: the last accepted candidate's accuracy and latency, JSON ``kind = "gate-baseline"``.

It names the model (the reference file stem and its SHA-256) and the evaluation set (its digest), so reports
for another model or other data are rejected instead of compared, and ``--update-baseline`` does not replace
it with another model's numbers unless ``--force-baseline`` says so. Every number is checked when read: a
p99 of 0, a negative latency or a NaN would make a rule pass that should fail.
"""

from __future__ import annotations

import datetime as _dt
import math
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
    model_sha256: str = ""  # the reference model's content (empty in baselines written before it was recorded)
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
            base = cls(
                model=str(d["model"]),
                data_digest=str(d["data_digest"]),
                model_sha256=str(d.get("model_sha256", "")),
                candidate=str(d["candidate"]),
                candidate_sha256=str(d["candidate_sha256"]),
                top1_pct=None if d["top1_pct"] is None else float(d["top1_pct"]),
                agreement_pct=None if d["agreement_pct"] is None else float(d["agreement_pct"]),
                class_recall_pct={str(k): float(v) for k, v in d["class_recall_pct"].items()},
                latency={k: Latency(**v) for k, v in d["latency"].items()},
                created=str(d.get("created", "")),
            )
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as e:
            raise BadInputError(f"{source}: malformed gate baseline ({e.__class__.__name__}: {e})") from None
        base.validate(source)
        return base

    def validate(self, source: str) -> None:
        """Every number finite and in range: latencies > 0 ms, percentages 0..100."""
        pcts = {"top1_pct": self.top1_pct, "agreement_pct": self.agreement_pct}
        pcts.update({f"class_recall_pct[{k}]": v for k, v in self.class_recall_pct.items()})
        for key, v in pcts.items():
            if v is not None and not (math.isfinite(v) and 0 <= v <= 100):
                raise BadInputError(f"{source}: {key} = {v}; expected a percentage 0..100 (regenerate the baseline)")
        for rt, lat in self.latency.items():
            for key in ("p50_ms", "p99_ms"):
                v = getattr(lat, key)
                if isinstance(v, bool) or not isinstance(v, int | float) or not (math.isfinite(v) and v > 0):
                    raise BadInputError(
                        f"{source}: latency.{rt}.{key} = {v!r}; expected a positive number of milliseconds "
                        "(regenerate the baseline with --update-baseline)"
                    )


def baseline_from(drift: DriftReport, bench: Sequence[BenchResult]) -> Baseline:
    return Baseline(
        model=drift.reference.name,
        data_digest=drift.data_digest,
        model_sha256=drift.reference.sha256,
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


def mismatch(base: Baseline, drift: DriftReport) -> str | None:
    """Why ``base`` is not a baseline of the model and data ``drift`` measured, or None when it is."""
    if base.model != drift.reference.name:
        return f"it is for model {base.model!r}, the reports are for {drift.reference.name!r}"
    if base.model_sha256 and base.model_sha256 != drift.reference.sha256:
        return (
            f"it is for another version of {base.model!r} (sha256 {base.model_sha256[:12]}…, "
            f"now {drift.reference.sha256[:12]}…)"
        )
    if base.data_digest != drift.data_digest:
        return f"it was measured on other evaluation data ({base.data_digest[:12]}…, now {drift.data_digest[:12]}…)"
    return None


def read_baseline(path: Path) -> Baseline:
    return Baseline.from_dict(read_json(Path(path), kind=KIND, schema_version=SCHEMA_VERSION), str(path))


def write_baseline(path: Path, baseline: Baseline) -> Path:
    from edgecnn import __version__

    write_json(
        Path(path), {"edgecnn_version": __version__, **baseline.to_dict()}, kind=KIND, schema_version=SCHEMA_VERSION
    )
    return Path(path)


@dataclass(frozen=True, kw_only=True)
class BaselinePlan:
    """What the gate does with ``--baseline`` (decided before any rule is judged).

    ``compare``: the baseline the vs-baseline rules compare against (None: those rules are skipped or, without
    ``update``, the policy needs none); ``update``: write the new baseline when the gate passes; ``notes``:
    what the user is told (a replaced baseline of another model, a first baseline)."""

    path: Path | None
    compare: Baseline | None
    update: bool
    notes: tuple[str, ...] = ()

    @property
    def writes_first(self) -> bool:
        """The gate will create (or, forced, replace) the baseline rather than compare against one."""
        return self.update and self.compare is None

    def after(self, passed: bool) -> tuple[bool, str | None]:
        """(write the baseline now?, the note to print) once the gate has decided."""
        if not self.update or self.path is None:
            return False, None
        if passed:
            return True, f"baseline written to {self.path}"
        return False, f"gate failed: baseline {self.path} left unchanged"


def plan_baseline(path: Path | None, drift: DriftReport, *, update: bool, force: bool) -> BaselinePlan:
    """Read the baseline at ``path`` (if any) and decide whether it may be compared against or replaced.

    A baseline of another model, another version of it (SHA-256) or other evaluation data is refused (it would
    compare unrelated numbers, or ``--update-baseline`` would silently replace it) unless ``force`` (with
    ``update``) says to replace it; then the vs-baseline rules are skipped for this run. A missing file is an
    error unless ``update`` creates it."""
    if update and path is None:
        raise BadInputError("--update-baseline needs --baseline FILE: where to write it")
    if force and not update:
        raise BadInputError(
            "--force-baseline goes with --update-baseline (it allows replacing another model's baseline)"
        )
    if path is None:
        return BaselinePlan(path=None, compare=None, update=False)
    path = Path(path)
    if path.exists() and not path.is_file():
        what = "a directory" if path.is_dir() else "not a regular file"
        raise BadInputError(f"--baseline {path}: {what}; expected a gate-baseline JSON file")
    if not path.is_file():
        if not update:
            raise BadInputError(f"{path}: no such baseline; create it with --update-baseline")
        return BaselinePlan(
            path=path, compare=None, update=True, notes=(f"no baseline at {path} yet: baseline rules skipped",)
        )
    base = read_baseline(path)
    why = mismatch(base, drift)
    if why is None:
        return BaselinePlan(path=path, compare=base, update=update)
    if not force:
        raise BadInputError(
            f"--baseline {path}: {why}; use that model's baseline"
            + (", or replace it with --force-baseline" if update else "")
        )
    note = f"baseline {path}: {why}: replaced (--force-baseline), baseline rules skipped"
    return BaselinePlan(path=path, compare=None, update=True, notes=(note,))
