"""Calibration past one process: the image list is cut into shards, each shard's statistics are collected by a
worker (a local process or a Ray task) and the shards merge exactly (``CalibrationStats.merged``), so the
ranges equal those of a single pass over all images.

What a worker receives: the prepared float model as bytes (through Ray's object store, so workers need no
copy of edgecnn's temporary folder) and its shard as image paths. On a Ray cluster the images must be
readable at the same path on every node (a shared or mounted file system), as with any Ray data job.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import onnx

from edgecnn.errors import BadInputError, MissingRuntimeError
from edgecnn.fsutil import temp_dir
from edgecnn.quantize.dataset import ImageDataset
from edgecnn.runtimes import usable_cores

if TYPE_CHECKING:
    from edgecnn.quantize.api import Calibration

Progress = Callable[[int, int], None]
RAY_INSTALL = "pip install 'edgecnn[ray]'"


class Backend(StrEnum):
    LOCAL = "local"  # this process (workers = 1) or a pool of local processes
    RAY = "ray"  # Ray tasks: a local Ray instance, or the cluster named by RAY_ADDRESS


def parse_backend(value: str) -> Backend:
    try:
        return Backend(value)
    except ValueError:
        raise BadInputError(f"--backend {value!r}; valid backends are {', '.join(b.value for b in Backend)}") from None


def shard_files(files: Sequence[Path], shards: int) -> list[tuple[Path, ...]]:
    """Contiguous, near-equal shards in the dataset's order (order does not change merged statistics)."""
    n = len(files)
    shards = max(1, min(shards, n))
    bounds = [round(i * n / shards) for i in range(shards + 1)]
    return [tuple(files[bounds[i] : bounds[i + 1]]) for i in range(shards) if bounds[i] < bounds[i + 1]]


def _model_bytes(model: onnx.ModelProto, workdir: Path | None) -> bytes:
    """The model with its external weights inlined (workers may not see ``workdir``)."""
    from edgecnn.graph.external import internalize

    full = onnx.ModelProto()
    full.CopyFrom(model)
    if workdir is not None:
        internalize(full, workdir)
    try:
        return full.SerializeToString()
    except ValueError as e:  # protobuf's 2 GiB limit
        raise BadInputError(f"model too large to ship to calibration workers ({e}); use --workers 1") from None


def collect_shard(
    model_bytes: bytes,
    tensors: list[str],
    dataset: ImageDataset,
    input_names: tuple[str, ...],
    batch: int,
    with_hist: bool,
    threads: int,
    channel_axis: dict[str, int] | None = None,
    channels: tuple[str, ...] = (),
) -> Calibration:
    """One worker's job: statistics of ``tensors`` over ``dataset`` (a shard), and the first sample's outputs."""
    from edgecnn.quantize.api import calibrate

    model = onnx.load_from_string(model_bytes)
    with temp_dir("shard") as tmp:
        return calibrate(
            model, tensors, dataset, input_names, batch=batch, with_hist=with_hist, threads=threads,
            workdir=Path(tmp), channel_axis=channel_axis, channels=channels,
        )  # fmt: skip


def merge_calibrations(parts: Sequence[Calibration]) -> Calibration:
    """Shards in dataset order -> one Calibration: statistics merged exactly, the first shard's first outputs,
    and per input the largest within-image spread any shard saw."""
    from edgecnn.quantize.api import Calibration

    stats = parts[0].stats
    spread: dict[str, float] = {}
    for c in parts:
        if c is not parts[0]:
            stats = stats.merged(c.stats)
        for k, v in c.input_spread.items():
            spread[k] = max(spread.get(k, 0.0), v)
    return Calibration(
        stats=stats, first_outputs=parts[0].first_outputs, first_batch=parts[0].first_batch, input_spread=spread
    )


def _ray():
    try:
        import ray
    except ImportError:
        raise MissingRuntimeError("ray (for --backend ray)", RAY_INSTALL) from None
    return ray


def collect_distributed(
    model: onnx.ModelProto,
    tensors: list[str],
    dataset: ImageDataset,
    input_names: str | tuple[str, ...],
    *,
    batch: int,
    with_hist: bool,
    workers: int,
    backend: Backend,
    threads: int = 0,
    workdir: Path | None = None,
    progress: Progress | None = None,
    channel_axis: dict[str, int] | None = None,
    channels: tuple[str, ...] = (),
) -> Calibration:
    """Statistics over ``dataset`` from ``workers`` parallel shard collectors, merged exactly.

    Shards are a few per worker, so progress moves as shards finish and a slow worker does not hold the rest.
    Each worker's runtime gets ``threads`` (default: the usable cores divided among the workers)."""
    if workers < 1:
        raise BadInputError(f"--workers {workers}; expected 1 or more")
    if not isinstance(dataset, ImageDataset):
        raise BadInputError("--workers > 1 shards one folder of images; calibrate a multi-input model with --workers 1")
    names = (input_names,) if isinstance(input_names, str) else tuple(input_names)
    per_worker_threads = threads or max(1, usable_cores() // workers)
    shards = shard_files(dataset.files, workers * 4 if len(dataset) >= workers * 4 * batch else workers)
    parts_ds = [replace(dataset, files=files) for files in shards]
    blob = _model_bytes(model, workdir)
    done = 0
    results: dict[int, Calibration] = {}
    if backend is Backend.RAY:
        ray = _ray()
        if not ray.is_initialized():
            address = os.environ.get("RAY_ADDRESS")
            ray.init(
                address=address or None,
                **({} if address else {"num_cpus": workers}),
                include_dashboard=False,
                log_to_driver=False,
                ignore_reinit_error=True,
                logging_level="ERROR",
            )
        task = ray.remote(num_cpus=1)(collect_shard)
        ref = ray.put(blob)
        pending = {
            task.remote(ref, tensors, ds, names, batch, with_hist, per_worker_threads, channel_axis, channels): i
            for i, ds in enumerate(parts_ds)
        }
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            i = pending.pop(ready[0])
            results[i] = ray.get(ready[0])
            done += len(parts_ds[i])
            if progress:
                progress(done, len(dataset))
    else:
        from concurrent.futures import ProcessPoolExecutor, as_completed
        from multiprocessing import get_context

        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            futs = {
                pool.submit(
                    collect_shard,
                    blob,
                    tensors,
                    ds,
                    names,
                    batch,
                    with_hist,
                    per_worker_threads,
                    channel_axis,
                    channels,
                ): i
                for i, ds in enumerate(parts_ds)
            }
            for fut in as_completed(futs):
                i = futs[fut]
                results[i] = fut.result()
                done += len(parts_ds[i])
                if progress:
                    progress(done, len(dataset))
    return merge_calibrations([results[i] for i in range(len(parts_ds))])
