"""Per-layer quantization sensitivity: quantize one layer at a time (or all but one), score each variant
against the float model on the evaluation data, and rank the layers by the accuracy (or SQNR) they cost.

Results are cached on disk by content hashes of everything read (the model file and its external data, the
calibration and evaluation images, labels and preprocess spec, method, scheme, edgecnn version) and the mode;
an unreadable or malformed entry is a miss, one entry per layer written as it completes, so a repeated or
interrupted run only computes what is missing.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path

import numpy as np
import onnx

from edgecnn import __version__
from edgecnn.drift.evaluate import EvalData, predict, top1_pct
from edgecnn.drift.metrics import TensorDrift, pct
from edgecnn.errors import BadInputError
from edgecnn.fsutil import atomic_write_text, model_files, sha256_file, temp_dir
from edgecnn.graph.external import externalized_copy
from edgecnn.graph.load import load_model
from edgecnn.graph.passes import prepare
from edgecnn.quantize.api import QuantizeConfig, QuantizeReport, quantize
from edgecnn.quantize.dataset import ImageDataset
from edgecnn.quantize.qdq import UNARY_OPS, node_key, op_policy, plan

Progress = Callable[[int, int, str], None]  # done, total, what


class Mode(StrEnum):
    ONE = "one"  # only this layer quantized: the accuracy it costs on its own
    ALL_BUT_ONE = "all-but-one"  # everything else quantized: the accuracy keeping it float wins back


@dataclass(frozen=True, kw_only=True)
class Score:
    """One model variant against the float reference."""

    top1_pct: float | None
    agreement_pct: float
    sqnr_db: float


@dataclass(frozen=True, kw_only=True)
class LayerSensitivity:
    node: str
    op: str
    score: Score
    cost_top1_pts: float | None  # accuracy this layer costs (see Mode); larger = more sensitive
    cost_sqnr_db: float  # output SQNR this layer costs; larger = more sensitive
    quantized_with: tuple[str, ...] = ()  # Mode.ONE: an activation is quantized with the layers next to it


@dataclass(frozen=True, kw_only=True)
class SensitivityReport:
    model: str
    mode: Mode
    rank_by: str  # "top1" or "sqnr"
    images: int
    labeled: bool
    float_top1_pct: float | None
    int8: Score  # every layer quantized
    layers: tuple[LayerSensitivity, ...]  # most sensitive first
    cache_file: str
    cached_layers: int  # layers taken from the cache

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def default_cache_dir() -> Path:
    base = os.environ.get("EDGECNN_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "edgecnn"
    )
    return Path(base)


def score(scores: np.ndarray, ref: np.ndarray, labels: np.ndarray | None) -> Score:
    td = TensorDrift()
    td.update(ref, scores)
    agree = int(np.sum(np.argmax(scores, axis=1) == np.argmax(ref, axis=1)))
    return Score(
        top1_pct=top1_pct(scores, labels) if labels is not None else None,
        agreement_pct=pct(agree, len(ref)),
        sqnr_db=td.sqnr_db,
    )


def quantizable_layers(
    model_path: Path, config: QuantizeConfig, input_shapes: dict[str, tuple[int, ...]] | None = None
) -> list[tuple[str, str]]:
    """(node, op type) of every node the INT8 writer would quantize, in graph order."""
    return [(k, op) for k, op, _, _ in _layers_with_partners(model_path, config, input_shapes)]


def _layers_with_partners(
    model_path: Path, config: QuantizeConfig, input_shapes: dict[str, tuple[int, ...]] | None
) -> list[tuple[str, str, frozenset[str], frozenset[str]]]:
    """(node, op type, the layers quantized with it in Mode.ONE, its quantized neighbours) of every node the
    INT8 writer would quantize. An activation (HardSwish, Sigmoid, ...) alone is nothing to quantize (it gains
    nothing without integer neighbours), so Mode.ONE quantizes it with the quantized layers that write its
    inputs; any other layer that is nothing to quantize on its own (a Mul by a constant) with its neighbours."""
    loaded = load_model(model_path, input_shapes)
    with temp_dir("sens") as tmp:
        prepared = prepare(externalized_copy(loaded.model, Path(tmp), "w.bin"), Path(tmp))
        the_plan = plan(
            prepared,
            config.exclude,
            quantize_outputs=config.scheme.quantize_outputs,
            policy=op_policy(config.runtime),
        )
        nodes = {node_key(n, i): n for i, n in enumerate(prepared.graph.node)}
    quantized = set(the_plan.quantized_nodes)
    writer = {o: k for k, n in nodes.items() if k in quantized for o in n.output}
    readers: dict[str, set[str]] = {}
    for k in quantized:
        for t in nodes[k].input:
            readers.setdefault(t, set()).add(k)
    out = []
    for k in the_plan.quantized_nodes:
        n = nodes[k]
        writers = frozenset(writer[t] for t in n.input if t in writer)
        neighbours = writers | frozenset(r for t in n.output for r in readers.get(t, ()))
        # an activation with its writers, or its readers when a float op writes it
        partners = (writers or neighbours) if n.op_type in UNARY_OPS else frozenset()
        out.append((k, n.op_type, partners, neighbours))
    return out


@dataclass(kw_only=True)
class _Cache:
    path: Path | None
    entries: dict[str, dict[str, object]] = field(default_factory=dict)

    @classmethod
    def open(cls, cache_dir: Path | None, key: str) -> _Cache:
        if cache_dir is None:
            return cls(path=None)
        path = Path(cache_dir) / f"sensitivity-{key[:32]}.json"
        entries: dict[str, dict[str, object]] = {}
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                if data.get("key") == key:
                    entries = data.get("entries", {})
                if not isinstance(entries, dict):
                    entries = {}
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, OSError, RecursionError, ValueError):
                entries = {}  # a damaged or unreadable cache is recomputed, never trusted
        return cls(path=path, entries=entries)

    def get(self, name: str) -> Score | None:
        """The cached score, or None (a miss) when the entry is absent, hand-edited or malformed."""
        e = self.entries.get(name) if isinstance(self.entries, dict) else None
        if not isinstance(e, dict) or set(e) != {"top1_pct", "agreement_pct", "sqnr_db"}:
            return None
        nums = [v for v in e.values() if v is not None]
        if any(isinstance(v, bool) or not isinstance(v, int | float) for v in nums):
            return None
        if e["agreement_pct"] is None or e["sqnr_db"] is None:
            return None
        pcts = [v for v in (e["top1_pct"], e["agreement_pct"]) if v is not None]
        if any(not (math.isfinite(v) and 0 <= v <= 100) for v in pcts) or math.isnan(e["sqnr_db"]):
            return None
        return Score(**e)

    def put(self, name: str, s: Score, key: str) -> None:
        self.entries[name] = asdict(s)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, json.dumps({"key": key, "entries": self.entries}, indent=1))


def cache_key(model_path: Path, calib: ImageDataset, data: EvalData, config: QuantizeConfig, extra: dict) -> str:
    cfg = {
        "edgecnn": __version__,
        # everything read: the model file and its external-data files, by content
        "model": [sha256_file(p) if p.is_file() else str(p) for p in model_files(model_path)],
        "calib": calib.digest(),
        "eval": data.digest,
        "method": config.method.value,
        "batch": config.batch,
        "scheme": config.scheme.to_dict(),
        "exclude": sorted(config.exclude),
        **extra,
    }
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()


class Variants:
    """Quantize-and-score model variants against the float reference, through the cache."""

    def __init__(
        self,
        model_path: Path,
        calib: ImageDataset,
        data: EvalData,
        config: QuantizeConfig,
        *,
        runtime: str = "ort",
        cache_dir: Path | None = None,
        input_shapes: dict[str, tuple[int, ...]] | None = None,
    ) -> None:
        self.model_path, self.calib, self.data, self.config = Path(model_path), calib, data, config
        self.runtime, self.input_shapes = runtime, input_shapes
        self.key = cache_key(self.model_path, calib, data, config, {"runtime": runtime})
        self.cache = _Cache.open(cache_dir, self.key)
        self.labels = data.label_array(data.dataset.files)
        self.hits = 0
        loaded = load_model(self.model_path, input_shapes)
        self.ref = predict(loaded.model, data, runtime)
        del loaded
        self.float_top1 = top1_pct(self.ref, self.labels) if self.labels is not None else None

    def build(self, exclude: frozenset[str]) -> tuple[onnx.ModelProto, QuantizeReport]:
        cfg = replace(self.config, exclude=self.config.exclude | exclude)
        return quantize(self.model_path, self.calib, cfg, input_shapes=self.input_shapes)

    def score_model(self, model: onnx.ModelProto) -> Score:
        return score(predict(model, self.data, self.runtime), self.ref, self.labels)

    def score(self, exclude: frozenset[str]) -> Score:
        name = "exclude:" + json.dumps(sorted(exclude))
        cached = self.cache.get(name)
        if cached is not None:
            self.hits += 1
            return cached
        model, _ = self.build(exclude)
        s = self.score_model(model)
        self.cache.put(name, s, self.key)
        return s


def run_sensitivity(
    model_path: Path,
    calib: ImageDataset,
    data: EvalData,
    config: QuantizeConfig,
    *,
    mode: Mode = Mode.ONE,
    rank_by: str | None = None,
    runtime: str = "ort",
    cache_dir: Path | None = None,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    progress: Progress | None = None,
    variants: Variants | None = None,
) -> SensitivityReport:
    """Rank the quantizable layers of ``model_path`` by what quantizing them costs (see Mode)."""
    labeled = data.labels is not None
    rank_by = rank_by or ("top1" if labeled else "sqnr")
    if rank_by not in ("top1", "sqnr"):
        raise BadInputError(f"--rank-by {rank_by!r}; valid values are top1, sqnr")
    if rank_by == "top1" and not labeled:
        raise BadInputError(f"--rank-by top1 needs labels; {data.dataset.root} has no labels.csv (use --rank-by sqnr)")
    if input_shapes is None and variants is not None:
        input_shapes = variants.input_shapes
    layers = _layers_with_partners(Path(model_path), config, input_shapes)
    v = variants or Variants(
        model_path, calib, data, config, runtime=runtime, cache_dir=cache_dir, input_shapes=input_shapes
    )
    total = len(layers) + 1
    if progress:
        progress(0, total, "all layers INT8")
    full = v.score(frozenset())
    names = frozenset(n for n, _, _, _ in layers)
    rows: list[LayerSensitivity] = []
    for i, (node, op, partners, neighbours) in enumerate(layers, start=1):
        if progress:
            progress(i, total, node)
        exclude = names - {node} - partners if mode is Mode.ONE else frozenset({node})
        try:
            s = v.score(exclude)
        except BadInputError:  # nothing to quantize on its own: with its neighbours
            if mode is not Mode.ONE or partners == neighbours or not neighbours:
                raise
            partners = neighbours
            s = v.score(names - {node} - partners)
        if mode is Mode.ONE:
            cost_top1 = None if s.top1_pct is None or v.float_top1 is None else v.float_top1 - s.top1_pct
            cost_sqnr = -s.sqnr_db  # lower SQNR on its own = more sensitive
        else:
            cost_top1 = None if s.top1_pct is None or full.top1_pct is None else s.top1_pct - full.top1_pct
            cost_sqnr = s.sqnr_db - full.sqnr_db  # SQNR won back by keeping it float
        rows.append(
            LayerSensitivity(
                node=node,
                op=op,
                score=s,
                cost_top1_pts=cost_top1,
                cost_sqnr_db=cost_sqnr,
                quantized_with=tuple(sorted(partners)) if mode is Mode.ONE else (),
            )
        )
    if progress:
        progress(total, total, "done")
    if rank_by == "top1":
        rows.sort(key=lambda r: (-(r.cost_top1_pts or 0.0), -r.cost_sqnr_db))
    else:
        rows.sort(key=lambda r: -r.cost_sqnr_db)
    return SensitivityReport(
        model=str(model_path),
        mode=mode,
        rank_by=rank_by,
        images=len(data.dataset),
        labeled=labeled,
        float_top1_pct=v.float_top1,
        int8=full,
        layers=tuple(rows),
        cache_file=str(v.cache.path) if v.cache.path else "",
        cached_layers=v.hits,
    )
