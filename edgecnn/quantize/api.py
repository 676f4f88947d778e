"""quantize(): prepare the graph, calibrate in a stream, choose ranges, write INT8 QDQ or FP16.

Calibration runs the prepared float model on ONNX Runtime (through edgecnn.runtimes) with every
tensor that needs a range exposed as an output, one batch at a time; statistics are folded into
mergeable collectors and the batch is dropped, so memory stays flat however many samples are used.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np
import onnx

from edgecnn import __version__
from edgecnn.errors import BadInputError, ModelError
from edgecnn.graph.load import LoadedModel, graph_inputs
from edgecnn.graph.passes import prepare, set_batch
from edgecnn.graph.summary import dtype_name
from edgecnn.quantize.collectors import CalibrationStats
from edgecnn.quantize.dataset import ImageDataset
from edgecnn.quantize.estimators import Method, estimate
from edgecnn.quantize.fp16 import DEFAULT_BLOCK, convert_fp16
from edgecnn.quantize.params import QuantScheme
from edgecnn.quantize.qdq import plan, write_qdq
from edgecnn.runtimes import open_session

SCHEMA_VERSION = 1
Progress = Callable[[int, int], None]


class Precision(StrEnum):
    INT8 = "int8"
    FP16 = "fp16"


@dataclass(frozen=True, kw_only=True)
class QuantizeConfig:
    precision: Precision = Precision.INT8
    method: Method = Method.MINMAX
    batch: int = 8
    scheme: QuantScheme = field(default_factory=QuantScheme)
    exclude: frozenset[str] = frozenset()
    threads: int = 0


@dataclass(frozen=True, kw_only=True)
class QuantizeReport:
    precision: str
    method: str
    scheme: dict[str, object]
    samples: int
    calibration_sha256: str
    preprocess: dict[str, object]
    tensors_quantized: int
    weights_quantized: int
    activations_fused: int
    kept_float: dict[str, str]
    size_before: int
    size_after: int
    seconds_prepare: float
    seconds_calibrate: float
    seconds_write: float
    prep_max_abs_diff: float
    stats_bytes: int

    def to_dict(self) -> dict[str, object]:
        from dataclasses import asdict

        return asdict(self)


def _check_inputs(loaded: LoadedModel, dataset: ImageDataset) -> str:
    inputs = graph_inputs(loaded.model)
    if len(inputs) != 1:
        raise BadInputError(f"{loaded.path}: has {len(inputs)} inputs; image calibration needs a single image input")
    vi = inputs[0]
    dataset.check_model_input(
        vi.name, loaded.input_shapes[vi.name], dtype_name(vi.type.tensor_type.elem_type), str(loaded.path)
    )
    return vi.name


def _with_outputs(model: onnx.ModelProto, tensors: list[str]) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for t in tensors:
        if t not in have:
            m.graph.output.append(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None))
    return m


def _open_batched(model: onnx.ModelProto, tmp: Path, batch: int, input_name: str, sample: np.ndarray, threads: int):
    """A session over ``model`` with a symbolic batch; batch 1 when the graph pins its batch size."""
    path = tmp / "calib.onnx"
    if batch > 1:
        onnx.save(set_batch(model, "N"), str(path))
        try:
            sess = open_session("ort", path, threads=threads)
            probe = np.concatenate([sample, sample])
            sess.run({input_name: probe})
            return sess, batch
        except Exception:  # the graph hard-codes batch 1 (e.g. a Reshape to [1, -1])
            pass
    onnx.save(model, str(path))
    return open_session("ort", path, threads=threads), 1


def calibrate(
    model: onnx.ModelProto,
    tensors: list[str],
    dataset: ImageDataset,
    input_name: str,
    *,
    batch: int,
    with_hist: bool,
    threads: int = 0,
    progress: Progress | None = None,
) -> CalibrationStats:
    """Stream ``dataset`` through ``model`` and collect statistics of ``tensors``."""
    stats = CalibrationStats(with_hist=with_hist)
    aug = _with_outputs(model, tensors)
    with tempfile.TemporaryDirectory(prefix="edgecnn-calib-") as tmp:
        first = next(dataset.batches(1))
        sess, eff_batch = _open_batched(aug, Path(tmp), batch, input_name, first, threads)
        names = [o.name for o in sess.outputs()]
        wanted = set(tensors)
        done = 0
        for x in dataset.batches(eff_batch):
            outs = sess.run({input_name: x})
            stats.update({n: v for n, v in zip(names, outs, strict=True) if n in wanted}, len(x))
            if input_name in wanted:
                stats.update({input_name: x}, 0)
            done += len(x)
            if progress:
                progress(done, len(dataset))
    return stats


def _prep_diff(original: onnx.ModelProto, prepared: onnx.ModelProto, input_name: str, x: np.ndarray) -> float:
    with tempfile.TemporaryDirectory(prefix="edgecnn-prep-") as tmp:
        a, b = Path(tmp) / "a.onnx", Path(tmp) / "b.onnx"
        onnx.save(original, str(a))
        onnx.save(prepared, str(b))
        ya = open_session("ort", a, options={"graph_optimization_level": "disable"}).run({input_name: x})
        yb = open_session("ort", b, options={"graph_optimization_level": "disable"}).run({input_name: x})
    return float(max(np.max(np.abs(p - q)) / max(1.0, float(np.max(np.abs(p)))) for p, q in zip(ya, yb, strict=True)))


def quantize(
    loaded: LoadedModel,
    dataset: ImageDataset | None,
    config: QuantizeConfig,
    progress: Progress | None = None,
) -> tuple[onnx.ModelProto, QuantizeReport]:
    """Quantize ``loaded`` per ``config``. INT8 needs ``dataset``; FP16 uses it only for the metadata."""
    t0 = time.perf_counter()
    input_name = _check_inputs(loaded, dataset) if dataset is not None else graph_inputs(loaded.model)[0].name
    try:
        prepared = prepare(loaded.model)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ModelError(f"{loaded.path}: graph preparation failed: {str(e).splitlines()[0]}") from None
    diff = 0.0
    if dataset is not None:
        diff = _prep_diff(loaded.model, prepared, input_name, next(dataset.batches(1)))
        if diff > 1e-3:
            raise ModelError(
                f"{loaded.path}: BN folding changed the outputs by {diff:.2e} (relative); refusing to go on"
            )
    t_prep = time.perf_counter() - t0

    size_before = loaded.path.stat().st_size
    if config.precision is Precision.FP16:
        t1 = time.perf_counter()
        out, kept = convert_fp16(prepared, DEFAULT_BLOCK | config.exclude)
        report = QuantizeReport(
            precision="fp16",
            method="none",
            scheme={},
            samples=0,
            calibration_sha256="",
            preprocess=dataset.spec.to_dict() if dataset else {},
            tensors_quantized=0,
            weights_quantized=sum(1 for t in out.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16),
            activations_fused=0,
            kept_float={k: "in the FP16 block list" for k in kept},
            size_before=size_before,
            size_after=out.ByteSize(),
            seconds_prepare=t_prep,
            seconds_calibrate=0.0,
            seconds_write=time.perf_counter() - t1,
            prep_max_abs_diff=diff,
            stats_bytes=0,
        )
        _stamp(out, report, loaded)
        return out, report

    assert dataset is not None
    the_plan = plan(prepared, config.exclude)
    if not the_plan.quantized_nodes:
        raise BadInputError(
            f"{loaded.path}: nothing to quantize: no float Conv/Gemm/MatMul/Add/pooling node "
            f"({len(the_plan.kept_float)} node(s) kept float, e.g. {next(iter(the_plan.kept_float.items()), ('-', '-'))})"
        )
    t1 = time.perf_counter()
    stats = calibrate(
        prepared,
        list(the_plan.activations),
        dataset,
        input_name,
        batch=config.batch,
        with_hist=config.method is not Method.MINMAX,
        threads=config.threads,
        progress=progress,
    )
    t_cal = time.perf_counter() - t1
    t2 = time.perf_counter()
    ranges = {name: estimate(st, config.method) for name, st in stats.tensors.items()}
    res = write_qdq(prepared, the_plan, ranges, config.scheme)
    report = QuantizeReport(
        precision="int8",
        method=config.method.value,
        scheme=config.scheme.to_dict(),
        samples=stats.samples,
        calibration_sha256=dataset.digest(),
        preprocess=dataset.spec.to_dict(),
        tensors_quantized=res.quantized_tensors,
        weights_quantized=res.quantized_weights,
        activations_fused=res.fused_activations,
        kept_float=res.kept_float,
        size_before=size_before,
        size_after=res.model.ByteSize(),
        seconds_prepare=t_prep,
        seconds_calibrate=t_cal,
        seconds_write=time.perf_counter() - t2,
        prep_max_abs_diff=diff,
        stats_bytes=stats.nbytes(),
    )
    _stamp(res.model, report, loaded)
    return res.model, report


def _stamp(model: onnx.ModelProto, report: QuantizeReport, loaded: LoadedModel) -> None:
    from edgecnn.fsutil import sha256_file

    meta = {
        "edgecnn.version": __version__,
        "edgecnn.precision": report.precision,
        "edgecnn.method": report.method,
        "edgecnn.scheme": json.dumps(report.scheme, sort_keys=True),
        "edgecnn.calibration_sha256": report.calibration_sha256,
        "edgecnn.calibration_samples": str(report.samples),
        "edgecnn.preprocess": json.dumps(report.preprocess, sort_keys=True),
        "edgecnn.source_sha256": sha256_file(loaded.path),
    }
    keep = [p for p in model.metadata_props if p.key not in meta]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=v)
    model.producer_name = "edgecnn"
    model.producer_version = __version__
