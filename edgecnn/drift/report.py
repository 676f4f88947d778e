"""DriftReport: what ``edgecnn drift`` measured, as frozen dataclasses; JSON ``kind = "drift"`` with
``schema_version`` (written and read through report.jsonio; other versions are rejected)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from edgecnn.errors import BadInputError
from edgecnn.report.jsonio import read_json, write_json

KIND = "drift"
SCHEMA_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class ModelInfo:
    path: str
    name: str  # file stem: the model's identity for baselines
    sha256: str
    inputs: tuple[tuple[str, tuple[int, ...], str], ...]  # (name, shape, dtype)
    outputs: tuple[tuple[str, tuple[int, ...], str], ...]


@dataclass(frozen=True, kw_only=True)
class ClassRecall:
    index: int
    name: str
    support: int
    reference_pct: float
    candidate_pct: float
    drop_pts: float  # reference - candidate; positive = the candidate is worse


@dataclass(frozen=True, kw_only=True)
class Flip:
    file: str
    label: int | None
    reference_pred: int
    candidate_pred: int
    change: str  # "broke" (was right, now wrong), "fixed", "both wrong", "unlabeled"


@dataclass(frozen=True, kw_only=True)
class OutputDrift:
    name: str
    sqnr_db: float
    cosine_mean: float
    cosine_min: float
    max_abs_err: float
    sqnr_ac_db: float | None = None  # about the output's variation (mean removed); None in reports before it

    @property
    def mostly_constant(self) -> bool:
        """The output's mean holds most of its power (10 dB more SQNR counted than its variation earns)."""
        return self.sqnr_ac_db is not None and self.sqnr_db - self.sqnr_ac_db > 10.0


@dataclass(frozen=True, kw_only=True)
class LayerDrift:
    tensor: str  # name in both graphs (the float model's activation)
    node: str  # producing node in the reference
    op: str
    candidate_tensor: str  # what was read in the candidate (after its Q/DQ pair, when it has one)
    sqnr_db: float
    cosine: float
    max_abs_err: float
    input_sqnr_db: float  # lowest SQNR among the nearest compared tensors feeding it
    local_drop_db: float  # input_sqnr_db - sqnr_db
    added_noise: float = 0.0  # noise-to-signal power this layer adds (metrics.added_noise)
    clamped_by: str = ""  # read only by these activations (HardSigmoid, Relu...): judged after the clamp


@dataclass(frozen=True, kw_only=True)
class DriftReport:
    reference: ModelInfo
    candidate: ModelInfo
    runtime: str
    runtime_version: str
    data_dir: str
    data_digest: str  # images + preprocess spec (+ labels): the evaluation set's identity
    images: int
    preprocess: dict[str, Any]
    labeled: bool
    labels_source: str | None
    num_classes: int | None  # None: the first output is not a class-score vector
    topk: int
    reference_top1_pct: float | None
    candidate_top1_pct: float | None
    top1_drop_pts: float | None
    reference_topk_pct: float | None
    candidate_topk_pct: float | None
    topk_drop_pts: float | None
    agreement_pct: float | None
    per_class: tuple[ClassRecall, ...]  # largest drop first
    outputs: tuple[OutputDrift, ...]
    layers: tuple[LayerDrift, ...]  # reference graph order
    worst_layers: tuple[str, ...]  # lowest SQNR first
    flips: tuple[Flip, ...]
    flips_total: int
    notes: tuple[str, ...]
    seconds: float
    lossiest_layer: str = ""  # the tensor whose layer puts in the most error (metrics.blame): where to look

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def worst_class(self) -> ClassRecall | None:
        return self.per_class[0] if self.per_class else None

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "drift report") -> DriftReport:
        bad = _bad_number(d)
        if bad is not None:
            raise BadInputError(f"{source}: {bad[0]} = {bad[1]!r}; {bad[2]} (regenerate it with edgecnn drift --json)")
        try:
            kw = {f.name: d[f.name] for f in fields(cls) if f.name != "lossiest_layer"}
            kw["lossiest_layer"] = str(d.get("lossiest_layer", ""))
            kw["reference"] = _model_info(d["reference"])
            kw["candidate"] = _model_info(d["candidate"])
            kw["per_class"] = tuple(ClassRecall(**c) for c in d["per_class"])
            kw["outputs"] = tuple(OutputDrift(**o) for o in d["outputs"])
            kw["layers"] = tuple(LayerDrift(**layer) for layer in d["layers"])
            kw["flips"] = tuple(Flip(**f) for f in d["flips"])
            kw["worst_layers"] = tuple(d["worst_layers"])
            kw["notes"] = tuple(d["notes"])
            return cls(**kw)
        except (KeyError, TypeError, ValueError) as e:
            raise BadInputError(f"{source}: malformed drift report ({e.__class__.__name__}: {e})") from None


def _bad_number(d: Any, where: str = "") -> tuple[str, object, str] | None:
    """The first number a gate must not trust: NaN or infinite anywhere, a ``*_pct`` outside 0..100, a
    negative count. NaN compares false with every limit, so it would pass any rule."""
    if isinstance(d, dict):
        items: list[tuple[str, Any]] = [(f"{where}.{k}" if where else str(k), v) for k, v in d.items()]
    elif isinstance(d, list):
        items = [(f"{where}[{i}]", v) for i, v in enumerate(d)]
    else:
        if isinstance(d, float) and not math.isfinite(d):
            return where, d, "expected a finite number"
        key = where.rsplit(".", 1)[-1]
        if isinstance(d, int | float) and not isinstance(d, bool):
            if key.endswith("_pct") and not 0 <= d <= 100:
                return where, d, "expected a percentage 0..100"
            if key in ("images", "support", "flips_total", "topk") and d < 0:
                return where, d, "expected a count, 0 or more"
        return None
    for k, v in items:
        bad = _bad_number(v, k)
        if bad is not None:
            return bad
    return None


def _model_info(d: dict[str, Any]) -> ModelInfo:
    def sig(items: list[Any]) -> tuple[tuple[str, tuple[int, ...], str], ...]:
        return tuple((str(n), tuple(int(x) for x in s), str(t)) for n, s, t in items)

    return ModelInfo(
        path=d["path"], name=d["name"], sha256=d["sha256"], inputs=sig(d["inputs"]), outputs=sig(d["outputs"])
    )


def write_report(path: Path, report: DriftReport) -> Path:
    from edgecnn import __version__

    write_json(
        Path(path), {"edgecnn_version": __version__, **report.to_dict()}, kind=KIND, schema_version=SCHEMA_VERSION
    )
    return Path(path)


def read_report(path: Path) -> DriftReport:
    return DriftReport.from_dict(read_json(Path(path), kind=KIND, schema_version=SCHEMA_VERSION), str(path))
