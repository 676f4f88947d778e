"""Calibration past one process: shards collected by local processes or by Ray tasks (a real local Ray
instance) merge to exactly the single-process statistics, and so to the same quantized model."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgecnn.graph.load import graph_inputs, load_model
from edgecnn.graph.passes import prepare
from edgecnn.preprocess import find_spec
from edgecnn.quantize.api import QuantizeConfig, calibrate, quantize
from edgecnn.quantize.collectors import CalibrationStats
from edgecnn.quantize.dataset import ImageDataset
from edgecnn.quantize.distributed import Backend, collect_distributed, shard_files
from edgecnn.quantize.estimators import Method
from edgecnn.quantize.qdq import plan
from tests.cli_helpers import ROOT, assert_one_line_error, run_cli

MODEL = ROOT / "models" / "sample_cnn.onnx"
CALIB = ROOT / "calibration_data" / "calib"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[onnx.ModelProto, list[str], str, ImageDataset]:
    work = tmp_path_factory.mktemp("prep")
    loaded = load_model(MODEL)
    model = prepare(loaded.model, work)
    tensors = list(plan(model, frozenset(), quantize_outputs=False).activations)
    ds = ImageDataset.open(CALIB, find_spec(CALIB, None), 96)
    return model, tensors, graph_inputs(model)[0].name, ds


def assert_same_stats(a: CalibrationStats, b: CalibrationStats) -> None:
    assert a.samples == b.samples
    assert sorted(a.tensors) == sorted(b.tensors)
    for name, s in a.tensors.items():
        t = b.tensors[name]
        assert (s.min, s.max, s.count, s.zeros, s.radius) == (t.min, t.max, t.count, t.zeros, t.radius), name
        assert np.array_equal(s.hist, t.hist), name


def test_shards_cover_every_file_once_in_order() -> None:
    files = [Path(f"{i}.png") for i in range(10)]
    for k in (1, 3, 4, 10, 25):
        shards = shard_files(files, k)
        assert [f for s in shards for f in s] == files
        assert len(shards) == min(k, 10) and all(shards)
        assert max(map(len, shards)) - min(map(len, shards)) <= 1


@pytest.mark.parametrize("with_hist", [False, True], ids=["minmax", "histogram"])
def test_local_process_shards_merge_exactly(prepared, with_hist: bool) -> None:
    model, tensors, inp, ds = prepared
    single = calibrate(model, tensors, ds, inp, batch=8, with_hist=with_hist).stats
    cal = collect_distributed(model, tensors, ds, inp, batch=8, with_hist=with_hist, workers=2, backend=Backend.LOCAL)
    merged, first = cal.stats, cal.first_outputs
    assert_same_stats(single, merged)
    # Negative control: one image fewer changes the statistics, so the comparison above can fail.
    fewer = calibrate(model, tensors, replace(ds, files=ds.files[:-1]), inp, batch=8, with_hist=with_hist).stats
    with pytest.raises(AssertionError):
        assert_same_stats(single, fewer)
    assert set(first) == {o.name for o in model.graph.output}


def test_ray_tasks_merge_exactly_and_quantize_identically(prepared) -> None:
    import ray  # the dev extra installs it: this test runs, it does not skip

    model, tensors, inp, ds = prepared
    try:
        single = calibrate(model, tensors, ds, inp, batch=8, with_hist=True).stats
        merged = collect_distributed(model, tensors, ds, inp, batch=8, with_hist=True, workers=2, backend=Backend.RAY)
        assert_same_stats(single, merged.stats)
        # End to end through quantize(): the same initializers (weights, scales, zero points) either way.
        cfg = QuantizeConfig(method=Method.ENTROPY, batch=8)
        a, _ = quantize(MODEL, ds, cfg)
        b, _ = quantize(MODEL, ds, replace(cfg, workers=2, backend="ray"))
        inits = {t.name: numpy_helper.to_array(t) for t in a.graph.initializer}
        other = {t.name: numpy_helper.to_array(t) for t in b.graph.initializer}
        assert inits.keys() == other.keys() and all(np.array_equal(inits[k], other[k]) for k in inits)
    finally:
        ray.shutdown()


def test_bad_worker_and_backend_options(tmp_path: Path) -> None:
    out = tmp_path / "q.onnx"
    r = run_cli("quantize", MODEL, "--calib", CALIB, "-o", out, "--workers", "0")
    assert_one_line_error(r, 2, "--workers 0", "from 1 to 1024")
    r = run_cli("quantize", MODEL, "--calib", CALIB, "-o", out, "--backend", "dask")
    assert_one_line_error(r, 2, "--backend 'dask'", "local, ray")
    assert not out.exists()
