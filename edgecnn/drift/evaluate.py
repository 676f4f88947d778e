"""Run a reference and a candidate model over the same evaluation images and measure how far apart they are.

Everything streams: one batch of images and of each model's tensors is in memory at a time, folded into
the accumulators of drift.metrics. Per-layer comparison runs a second, instrumented copy of each model
(matching tensors exposed as extra outputs) so the outputs used for accuracy come from the untouched
graphs, exactly as deployed. The runtime is reached only through edgecnn.runtimes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from edgecnn.drift.labels import Labels, load_labels
from edgecnn.drift.metrics import (
    SQNR_EXACT_DB,
    ClassificationStats,
    OutputDriftStats,
    TensorDrift,
    added_noise,
    blame,
    pct,
    score_width,
)
from edgecnn.drift.report import ClassRecall, DriftReport, Flip, LayerDrift, ModelInfo, OutputDrift
from edgecnn.errors import DataError, ModelError
from edgecnn.fsutil import sha256_file, temp_dir
from edgecnn.graph.load import LoadedModel, dims_of, graph_inputs, load_model
from edgecnn.graph.passes import save_with_outputs
from edgecnn.graph.summary import dtype_name
from edgecnn.preprocess import find_spec
from edgecnn.quantize.dataset import ImageDataset
from edgecnn.runtimes import TAKING_TURNS, open_session, runtime_version

Progress = Callable[[int, int], None]
MAX_FLIPS = 1000  # flips kept in the report (all are counted)
WORST_LAYERS = 5
LAYER_BATCH_BYTES = 64 << 20  # exposed activations of one batch, both models together
_QDQ = ("QuantizeLinear", "DequantizeLinear")
# Activations that flatten part of their input's range: a quantizer may clip a tensor read only by these to
# the range where they are not flat (HardSigmoid's [-3, 3]), so its own SQNR says nothing about the model
_CLAMPS = frozenset({"Relu", "Clip", "HardSigmoid", "HardSwish", "Sigmoid", "Tanh"})


# -- models ---------------------------------------------------------------------------------------
def model_info(loaded: LoadedModel) -> ModelInfo:
    def sig(vis: list[onnx.ValueInfoProto]) -> tuple[tuple[str, tuple[int, ...], str], ...]:
        out = []
        for vi in vis:
            dims = tuple(d if isinstance(d, int) else -1 for d in dims_of(vi))
            out.append((vi.name, loaded.input_shapes.get(vi.name, dims), dtype_name(vi.type.tensor_type.elem_type)))
        return tuple(out)

    return ModelInfo(
        path=str(loaded.path),
        name=loaded.path.stem,
        sha256=sha256_file(loaded.path),
        inputs=sig(graph_inputs(loaded.model)),
        outputs=sig(list(loaded.model.graph.output)),
    )


def _same_signature(x: tuple[str, tuple[int, ...], str], y: tuple[str, tuple[int, ...], str]) -> bool:
    """Same dtype and rank; a free dimension (-1: an exporter's symbolic batch on an output, which edgecnn's own
    quantized model declares fixed) matches any size."""
    (_, xs, xt), (_, ys, yt) = x, y
    return xt == yt and len(xs) == len(ys) and all(p == q or -1 in (p, q) for p, q in zip(xs, ys, strict=True))


def check_signatures(ref: ModelInfo, cand: ModelInfo) -> list[str]:
    """ModelError when the two models cannot be fed the same tensors or give different outputs; notes
    (e.g. renamed outputs) otherwise."""
    notes: list[str] = []
    for what in ("inputs", "outputs"):
        a, b = getattr(ref, what), getattr(cand, what)

        def fmt(sig: tuple[tuple[str, tuple[int, ...], str], ...]) -> str:
            return ", ".join(f"{n}{list(s)} {t}" for n, s, t in sig)

        if len(a) != len(b) or not all(_same_signature(x, y) for x, y in zip(a, b, strict=False)):
            raise ModelError(
                f"{cand.path}: {what} differ from the reference {ref.path}: reference {fmt(a)}; candidate {fmt(b)}; "
                "drift compares models with the same signature"
            )
        renamed = [f"{x[0]} -> {y[0]}" for x, y in zip(a, b, strict=True) if x[0] != y[0]]
        if renamed:
            notes.append(f"{what} matched by position (renamed: {', '.join(renamed)})")
    return notes


def class_count(info: ModelInfo) -> int | None:
    """Width of the first output when it is a per-image score vector ([N, C] or [N, C, 1, 1]), else None."""
    return score_width(info.outputs[0][1])


class BatchSession:
    """A model on a runtime that takes a batch of images and returns named outputs (extra ones included)."""

    def __init__(
        self, model: onnx.ModelProto, path: Path, runtime: str, *, extra: list[str], batch: int | str, threads: int
    ) -> None:
        save_with_outputs(model, extra, path, batch)
        self.sess = open_session(runtime, path, threads=threads, options=TAKING_TURNS)
        self.input_name = self.sess.inputs()[0].name
        self.names = [o.name for o in self.sess.outputs()]

    def run(self, x: np.ndarray, feeds_name: str | None = None) -> dict[str, np.ndarray]:
        outs = dict(zip(self.names, self.sess.run({self.input_name: x}), strict=True))
        outs[feeds_name or self.input_name] = x
        return outs


def open_sessions(
    specs: list[tuple[onnx.ModelProto, list[str]]],
    workdir: Path,
    runtime: str,
    *,
    batch: int,
    sample: np.ndarray,
    threads: int = 0,
) -> tuple[list[BatchSession], int]:
    """One BatchSession per (model, extra outputs), all with a symbolic batch when every model accepts
    one (checked by running one image alone and twice: ``quantize.api.batch_consistent``), else batch 1 (a graph
    that hard-codes its batch size or mixes its samples)."""
    if batch > 1:
        try:
            sessions = [
                BatchSession(m, workdir / f"s{i}.onnx", runtime, extra=ex, batch="N", threads=threads)
                for i, (m, ex) in enumerate(specs)
            ]
            from edgecnn.quantize.api import batch_consistent

            def consistent(sess: BatchSession, names: list[str]) -> bool:
                one, two = sess.run(sample), sess.run(np.concatenate([sample, sample]))
                return batch_consistent([one[n] for n in names], [two[n] for n in names])

            if all(consistent(s, [o.name for o in m.graph.output]) for s, (m, _) in zip(sessions, specs, strict=True)):
                return sessions, batch
        except Exception:  # e.g. a Reshape to [1, -1]; batch 1 is always valid
            pass
    sessions = [
        BatchSession(m, workdir / f"s{i}.onnx", runtime, extra=ex, batch=1, threads=threads)
        for i, (m, ex) in enumerate(specs)
    ]
    return sessions, 1


# -- evaluation data ------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class EvalData:
    dataset: ImageDataset
    labels: Labels | None
    digest: str

    def label_array(self, files: tuple[Path, ...]) -> np.ndarray | None:
        if self.labels is None:
            return None
        return np.asarray([self.labels.by_file[p.name] for p in files], dtype=np.int64)


def open_eval_data(
    data_dir: Path,
    loaded: LoadedModel,
    *,
    preprocess: Path | None = None,
    labels_file: Path | None = None,
    samples: int | None = None,
    require_labels: str | None = None,
) -> EvalData:
    """Images of ``data_dir`` through their PreprocessSpec (checked against ``loaded``'s input) and their
    labels. ``require_labels``: why labels are needed; without labels that is a DataError."""
    import hashlib

    data_dir = Path(data_dir)
    dataset = ImageDataset.open(data_dir, find_spec(data_dir, preprocess), samples)
    dataset.check_model(loaded)
    labels = load_labels(data_dir, dataset.files, class_count(model_info(loaded)), labels_file)
    if labels is None and require_labels:
        raise DataError(
            f"{data_dir}: no labels.csv (header 'file,label', one row per image); {require_labels} needs labels"
        )
    h = hashlib.sha256(dataset.digest().encode())
    if labels is not None:
        h.update(labels.digest.encode())
    return EvalData(dataset=dataset, labels=labels, digest=h.hexdigest())


def batches(data: EvalData, batch: int) -> Iterator[tuple[tuple[Path, ...], np.ndarray]]:
    files = data.dataset.files
    for i, x in enumerate(data.dataset.batches(batch)):
        yield files[i * batch : i * batch + len(x)], x


# -- per-layer matching -----------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class LayerPair:
    tensor: str
    node: str
    op: str
    ref_view: str  # tensor read in the reference (its DQ output if it has a Q/DQ pair)
    cand_view: str
    feeds: tuple[str, ...]  # nearest compared tensors upstream
    clamped_by: str = ""  # the activation op that reads it, when only activations of _CLAMPS read it


def _activations(model: onnx.ModelProto) -> tuple[dict[str, str], dict[str, onnx.NodeProto]]:
    """Float activation -> the tensor its consumers read (the DQ output when a Q/DQ pair follows it), and
    activation -> producing node. Graph inputs count as activations (a quantized model quantizes them too)."""
    g = model.graph
    inits = {t.name for t in g.initializer}
    floats = {
        vi.name
        for vi in [*g.input, *g.value_info, *g.output]
        if vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    }
    q_of = {n.input[0]: n.output[0] for n in g.node if n.op_type == "QuantizeLinear"}
    q_params = {n.output[0]: tuple(n.input[1:]) for n in g.node if n.op_type == "QuantizeLinear"}
    # the DQ that reads a Q back at the Q's own scale: an integer form may add a second DQ of the same codes at
    # another scale (a HardSigmoid read as alpha * x), which holds alpha times the tensor
    dq_of = {
        n.input[0]: n.output[0]
        for n in g.node
        if n.op_type == "DequantizeLinear" and tuple(n.input[1:]) == q_params.get(n.input[0], tuple(n.input[1:]))
    }
    producer: dict[str, onnx.NodeProto] = {}
    view: dict[str, str] = {}
    for vi in graph_inputs(model):
        if vi.name in floats:
            view[vi.name] = vi.name
    for n in g.node:
        if n.op_type in _QDQ or n.op_type == "Constant":
            continue
        for o in n.output:
            if o and o in floats and o not in inits:
                producer[o] = n
                view[o] = o
    for t in view:
        if t in q_of and q_of[t] in dq_of:
            view[t] = dq_of[q_of[t]]
    # a DQ that reads a Q's codes on another grid and writes a tensor of the float graph: edgecnn's ONNX Runtime
    # writer absorbs a scalar affine so (y = s*h + b: h's codes read on y's grid, the DQ named y)
    for n in g.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in q_params:
            view.setdefault(n.output[0], n.output[0])
    return view, producer


def match_layers(ref: onnx.ModelProto, cand: onnx.ModelProto) -> list[LayerPair]:
    """Tensors present (by name) in both graphs, in the reference's order, with the nearest compared
    tensors that feed each (through uncompared ones, e.g. a Conv output folded away with its BatchNorm)."""
    ref_view, ref_prod = _activations(ref)
    cand_view, cand_prod = _activations(cand)
    common = [t for t in ref_view if t in cand_view]
    common_set = set(common)
    inits = {t.name for t in ref.graph.initializer}
    readers: dict[str, set[str]] = {}
    for n in ref.graph.node:
        for i in n.input:
            readers.setdefault(i, set()).add(n.op_type)
    outputs = {o.name for o in ref.graph.output}
    pairs: list[LayerPair] = []
    for t in common:
        feeds: set[str] = set()
        node = ref_prod.get(t)
        stack = [i for i in (node.input if node is not None else []) if i and i not in inits]
        seen: set[str] = set()
        while stack:
            i = stack.pop()
            if i in seen:
                continue
            seen.add(i)
            if i in common_set:
                feeds.add(i)
            elif i in ref_prod:
                stack.extend(x for x in ref_prod[i].input if x and x not in inits)
        cn = cand_prod.get(t)
        op = node.op_type if node is not None else "input"
        if cn is not None and node is not None and cn.op_type != node.op_type:
            op = f"{node.op_type} (in {cn.op_type})"
        pairs.append(
            LayerPair(
                tensor=t,
                node=(node.name or t) if node is not None else t,  # an unnamed node: its output names it
                op=op,
                ref_view=ref_view[t],
                cand_view=cand_view[t],
                feeds=tuple(sorted(feeds)),
                clamped_by=(
                    "/".join(sorted(readers[t]))
                    if t not in outputs and readers.get(t) and readers[t] <= _CLAMPS
                    else ""
                ),
            )
        )
    return pairs


def _layer_batch(model: onnx.ModelProto, tensors: list[str], batch: int) -> int:
    shapes = {vi.name: vi for vi in [*model.graph.value_info, *model.graph.input, *model.graph.output]}
    per_sample = 0
    for t in tensors:
        vi = shapes.get(t)
        if vi is not None:
            dims = [d for d in dims_of(vi) if isinstance(d, int)]
            per_sample += int(np.prod(dims[1:] or [1])) * 4 * 2
    return max(1, min(batch, LAYER_BATCH_BYTES // max(per_sample, 1)))


# -- drift ------------------------------------------------------------------------------------------
def evaluate_drift(
    reference: Path,
    candidate: Path,
    data_dir: Path,
    *,
    runtime: str = "ort",
    preprocess: Path | None = None,
    labels_file: Path | None = None,
    samples: int | None = None,
    require_labels: bool = False,
    layers: bool = True,
    batch: int = 16,
    threads: int = 0,
    topk: int = 5,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    progress: Progress | None = None,
) -> DriftReport:
    """Compare ``candidate`` with ``reference`` over the images of ``data_dir`` on ``runtime``."""
    t0 = time.perf_counter()
    if batch <= 0:
        raise DataError(f"--batch {batch}; expected a positive integer")
    from edgecnn.graph.artifact import ModelFormat, format_of

    if format_of(reference) is ModelFormat.TFLITE:
        raise ModelError(
            f"{reference}: the reference must be the ONNX source; give the .tflite as the candidate (second model)"
        )
    ref_loaded = load_model(reference, input_shapes)
    ref_info = model_info(ref_loaded)
    tfl = None
    if format_of(candidate) is ModelFormat.TFLITE:
        # The .tflite runs as it ships, on LiteRT: its own layout (NHWC) and I/O types, from the same images.
        tfl, cand_info = _tflite_candidate(Path(candidate), ref_info, threads)
        cand_loaded = ref_loaded  # no ONNX graph: per-layer comparison is off
        notes = [
            f"candidate is TFLite: runs on LiteRT (XNNPACK) with its own input layout ({tfl.layout}) and I/O types, "
            f"fed from the same images; the reference runs on {runtime}"
        ]
        if layers:
            notes.append("no per-layer comparison: it needs two ONNX graphs")
        layers = False
    else:
        cand_loaded = load_model(candidate, input_shapes)
        cand_info = model_info(cand_loaded)
        notes = check_signatures(ref_info, cand_info)
        if runtime == "litert" and layers:
            # LiteRT runs what edgecnn's converter writes: fused layers have no tensor of their own to read back
            notes.append("no per-layer comparison on litert (the converted graph fuses layers); -r ort gives one")
            layers = False
    data = open_eval_data(
        data_dir,
        ref_loaded,
        preprocess=preprocess,
        labels_file=labels_file,
        samples=samples,
        require_labels="--require-labels" if require_labels else None,
    )
    num_classes = class_count(ref_info)
    if num_classes is None:
        notes.append(
            f"first output {ref_info.outputs[0][0]}{list(ref_info.outputs[0][1])} is not a class-score vector: "
            "accuracy and agreement are not computed, SQNR only"
        )
    elif data.labels is None:
        notes.append(f"{data_dir} has no labels.csv: agreement and SQNR only, no accuracy or per-class recall")
    pairs = match_layers(ref_loaded.model, cand_loaded.model) if layers else []
    if layers and not pairs:
        notes.append("no tensor names in common between the two graphs: no per-layer comparison")

    ref_outs = [o[0] for o in ref_info.outputs]
    cand_outs = [o[0] for o in cand_info.outputs]
    out_stats = [OutputDriftStats() for _ in ref_outs]
    cls = ClassificationStats(num_classes=num_classes, k=topk) if num_classes else None
    layer_stats = {p.tensor: TensorDrift() for p in pairs}
    flips: list[Flip] = []
    flips_total = 0
    dropped_layers: dict[str, str] = {}

    with temp_dir("drift") as tmp:
        specs: list[tuple[onnx.ModelProto, list[str]]] = [(ref_loaded.model, [])]
        if tfl is None:
            specs.append((cand_loaded.model, []))
        if pairs:
            specs += [
                (ref_loaded.model, [p.ref_view for p in pairs]),
                (cand_loaded.model, [p.cand_view for p in pairs]),
            ]
            batch = _layer_batch(ref_loaded.model, [p.tensor for p in pairs], batch)
        first = next(data.dataset.batches(1))
        sessions, eff = open_sessions(specs, Path(tmp), runtime, batch=batch, sample=first, threads=threads)
        done = 0
        for files, x in batches(data, eff):
            outs = [s.run(x) for s in sessions]
            if tfl is not None:
                outs.insert(1, tfl.run(x))
            r, c = outs[0], outs[1]
            for st, rn, cn in zip(out_stats, ref_outs, cand_outs, strict=True):
                st.update(r[rn], c[cn])
            if cls is not None:
                y = data.label_array(files)
                rp, cp = cls.update(r[ref_outs[0]].reshape(len(x), -1), c[cand_outs[0]].reshape(len(x), -1), y)
                for j in np.flatnonzero(rp != cp):
                    flips_total += 1
                    if len(flips) < MAX_FLIPS:
                        lab = None if y is None else int(y[j])
                        if lab is None:
                            change = "unlabeled"
                        elif rp[j] == lab:
                            change = "broke"
                        elif cp[j] == lab:
                            change = "fixed"
                        else:
                            change = "both wrong"
                        flips.append(
                            Flip(
                                file=str(files[j]),
                                label=lab,
                                reference_pred=int(rp[j]),
                                candidate_pred=int(cp[j]),
                                change=change,
                            )
                        )
            if pairs:
                lr, lc = outs[2], outs[3]
                for p in pairs:
                    if p.tensor in dropped_layers:
                        continue
                    a, b = lr[p.ref_view], lc[p.cand_view]
                    if a.shape != b.shape:
                        dropped_layers[p.tensor] = f"shapes differ ({list(a.shape)} vs {list(b.shape)})"
                        continue
                    layer_stats[p.tensor].update(a, b)
            del outs
            done += len(x)
            if progress:
                progress(done, len(data.dataset))
        del sessions

    for t, why in dropped_layers.items():
        notes.append(f"tensor {t} not compared: {why}")
    layer_rows = _layer_rows([p for p in pairs if p.tensor not in dropped_layers], layer_stats)
    judged = [row for row in layer_rows if not row.clamped_by]
    worst = tuple(row.tensor for row in sorted(judged, key=lambda r: (r.sqnr_db, -r.local_drop_db))[:WORST_LAYERS])
    order = {"broke": 0, "fixed": 1, "both wrong": 2, "unlabeled": 3}
    flips.sort(key=lambda f: order[f.change])
    acc = _accuracy_fields(cls, data.labels)
    return DriftReport(
        reference=ref_info,
        candidate=cand_info,
        runtime=runtime,
        runtime_version=runtime_version(runtime),
        data_dir=str(data_dir),
        data_digest=data.digest,
        images=len(data.dataset),
        preprocess=data.dataset.spec.to_dict(),
        labeled=data.labels is not None,
        labels_source=data.labels.source if data.labels else None,
        num_classes=num_classes,
        topk=min(topk, num_classes or topk),
        agreement_pct=pct(cls.agree, cls.images) if cls else None,
        outputs=tuple(
            OutputDrift(
                name=n,
                sqnr_db=s.tensor.sqnr_db,
                cosine_mean=s.cosine_mean,
                cosine_min=s.cos_min,
                max_abs_err=s.tensor.max_abs_err,
                sqnr_ac_db=s.tensor.sqnr_ac_db,
            )
            for n, s in zip(ref_outs, out_stats, strict=True)
        ),
        layers=tuple(layer_rows),
        worst_layers=worst,
        flips=tuple(flips),
        flips_total=flips_total,
        notes=tuple(notes),
        seconds=time.perf_counter() - t0,
        lossiest_layer=max(judged, key=lambda r: blame(r.input_sqnr_db, r.sqnr_db)).tensor if judged else "",
        **acc,
    )


class _TfliteCandidate:
    """A .tflite file on LiteRT behind the BatchSession interface: NCHW float batches in (the reference's
    input), outputs by name in the ONNX layout, dequantized; one sample per invoke (TFLite shapes are fixed)."""

    def __init__(self, path: Path, out_names: list[str], out_shapes: list[tuple[int, ...]], threads: int) -> None:
        from edgecnn.export.api import litert_runner, tflite_input_layout

        self.layout = tflite_input_layout(path)
        self.names = out_names
        self._run = litert_runner(path, threads, [(1, *s[1:]) for s in out_shapes])

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        rows = [self._run(x[i : i + 1]) for i in range(len(x))]
        return {n: np.concatenate([r[k] for r in rows]) for k, n in enumerate(self.names)}


def _tflite_candidate(path: Path, ref: ModelInfo, threads: int) -> tuple[_TfliteCandidate, ModelInfo]:
    from edgecnn.graph.artifact import open_artifact

    art = open_artifact(path)
    info = ModelInfo(
        path=str(path),
        name=path.stem,
        sha256=art.sha256,
        inputs=tuple((t.name, t.shape, t.dtype) for t in art.inputs),
        outputs=tuple((t.name, t.shape, t.dtype) for t in art.outputs),
    )
    if len(art.outputs) != len(ref.outputs) or any(
        int(np.prod(t.shape[1:])) != int(np.prod([d for d in o[1][1:] if d > 0]))
        for t, o in zip(art.outputs, ref.outputs, strict=False)
    ):
        raise ModelError(
            f"{path}: outputs {[list(t.shape) for t in art.outputs]} do not correspond to the reference {ref.path} "
            f"outputs {[list(o[1]) for o in ref.outputs]}; drift compares a model with its own export"
        )
    sess = _TfliteCandidate(path, [t.name for t in art.outputs], [o[1] for o in ref.outputs], threads)
    return sess, info


def _layer_rows(pairs: list[LayerPair], stats: dict[str, TensorDrift]) -> list[LayerDrift]:
    """One row per compared tensor, in reference order. A clamped tensor (read only by activations that
    flatten part of its range) passes its feeds' SQNR on to its readers: the clamp is judged after it."""
    effective: dict[str, float] = {}  # what a reader of the tensor sees as its input SQNR
    rows = []
    for p in pairs:
        st = stats[p.tensor]
        ins = [effective[f] for f in p.feeds if f in effective]
        in_sqnr = min(ins) if ins else SQNR_EXACT_DB
        effective[p.tensor] = in_sqnr if p.clamped_by else st.sqnr_db
        rows.append(
            LayerDrift(
                tensor=p.tensor,
                node=p.node,
                op=p.op,
                candidate_tensor=p.cand_view,
                sqnr_db=st.sqnr_db,
                cosine=st.cosine,
                max_abs_err=st.max_abs_err,
                input_sqnr_db=in_sqnr,
                local_drop_db=max(0.0, in_sqnr - st.sqnr_db),
                added_noise=0.0 if p.clamped_by else added_noise(in_sqnr, st.sqnr_db),
                clamped_by=p.clamped_by,
            )
        )
    return rows


def _accuracy_fields(cls: ClassificationStats | None, labels: Labels | None) -> dict[str, object]:
    none: dict[str, object] = {
        "reference_top1_pct": None,
        "candidate_top1_pct": None,
        "top1_drop_pts": None,
        "reference_topk_pct": None,
        "candidate_topk_pct": None,
        "topk_drop_pts": None,
        "per_class": (),
    }
    if cls is None or labels is None or cls.labeled == 0:
        return none
    r1, c1 = pct(cls.ref_top1, cls.labeled), pct(cls.cand_top1, cls.labeled)
    rk, ck = pct(cls.ref_topk, cls.labeled), pct(cls.cand_topk, cls.labeled)
    per_class = [
        ClassRecall(
            index=i,
            name=labels.name(i),
            support=int(cls.support[i]),
            reference_pct=pct(int(cls.ref_correct[i]), int(cls.support[i])),
            candidate_pct=pct(int(cls.cand_correct[i]), int(cls.support[i])),
            drop_pts=pct(int(cls.ref_correct[i]) - int(cls.cand_correct[i]), int(cls.support[i])),
        )
        for i in range(cls.num_classes)
        if cls.support[i] > 0
    ]
    per_class.sort(key=lambda c: (-c.drop_pts, c.index))
    return {
        "reference_top1_pct": r1,
        "candidate_top1_pct": c1,
        "top1_drop_pts": pct(cls.ref_top1 - cls.cand_top1, cls.labeled),
        "reference_topk_pct": rk,
        "candidate_topk_pct": ck,
        "topk_drop_pts": pct(cls.ref_topk - cls.cand_topk, cls.labeled),
        "per_class": tuple(per_class),
    }


# -- plain scoring (sensitivity, accuracy budget) ----------------------------------------------------
def predict(
    model: onnx.ModelProto, data: EvalData, runtime: str = "ort", *, batch: int = 16, threads: int = 0
) -> np.ndarray:
    """The first output of ``model`` for every image, as [N, -1] float32 (N x classes for a classifier)."""
    out_name = model.graph.output[0].name
    rows: list[np.ndarray] = []
    with temp_dir("predict") as tmp:
        first = next(data.dataset.batches(1))
        (sess,), eff = open_sessions([(model, [])], Path(tmp), runtime, batch=batch, sample=first, threads=threads)
        for _files, x in batches(data, eff):
            rows.append(sess.run(x)[out_name].reshape(len(x), -1).astype(np.float32))
        del sess
    return np.concatenate(rows)


def top1_pct(scores: np.ndarray, labels: np.ndarray) -> float:
    return pct(int(np.sum(np.argmax(scores, axis=1) == labels)), len(labels))
