"""The baseline decision at the domain level (``edgecnn.gate.baseline.plan_baseline``): compare, create,
refuse or (forced) replace, on a real drift report of a real model; the CLI only prints and writes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgecnn.drift.report import DriftReport, read_report
from edgecnn.errors import BadInputError
from edgecnn.gate.baseline import Baseline, baseline_from, plan_baseline, read_baseline, write_baseline
from tests.cli_helpers import invoke
from tests.onnx_builders import save, small_cnn

SPEC = 'schema_version = 1\ncolor_order = "RGB"\nlayout = "NCHW"\ndtype = "float32"\nresize = [16, 16]\n'


@pytest.fixture(scope="module")
def drift(tmp_path_factory: pytest.TempPathFactory) -> DriftReport:
    d = tmp_path_factory.mktemp("base")
    save(small_cnn(), d / "m.onnx")
    save(small_cnn(), d / "cand.onnx")
    (d / "data").mkdir()
    for i in range(4):
        rng = np.random.default_rng(i)
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(d / "data" / f"img{i}.png")
    (d / "data" / "preprocess.toml").write_text(SPEC)
    (d / "data" / "labels.csv").write_text("file,label\n" + "".join(f"img{i}.png,{i}\n" for i in range(4)))
    res = invoke("drift", d / "m.onnx", d / "cand.onnx", "--data", d / "data", "--json", d / "drift.json")
    assert res.exit_code == 0, res.output
    return read_report(d / "drift.json")


def _saved(tmp_path: Path, base: Baseline) -> Path:
    return write_baseline(tmp_path / "baseline.json", base)


def test_no_baseline_option_compares_nothing_and_writes_nothing(drift: DriftReport) -> None:
    plan = plan_baseline(None, drift, update=False, force=False)
    assert plan.compare is None and not plan.update and not plan.writes_first and plan.notes == ()
    assert plan.after(True) == (False, None)


@pytest.mark.parametrize(
    ("update", "force", "words"),
    [(True, False, "--update-baseline needs --baseline"), (False, True, "--force-baseline goes with")],
)
def test_option_combinations_without_meaning_are_refused(
    drift: DriftReport, update: bool, force: bool, words: str
) -> None:
    with pytest.raises(BadInputError, match=words):
        plan_baseline(None, drift, update=update, force=force)


def test_missing_file_is_an_error_unless_update_creates_it(drift: DriftReport, tmp_path: Path) -> None:
    missing = tmp_path / "none.json"
    with pytest.raises(BadInputError, match="no such baseline"):
        plan_baseline(missing, drift, update=False, force=False)
    plan = plan_baseline(missing, drift, update=True, force=False)
    assert plan.compare is None and plan.writes_first and "yet" in plan.notes[0]
    assert plan.after(True) == (True, f"baseline written to {missing}")
    write, note = plan.after(False)
    assert not write and note is not None and "left unchanged" in note


def test_a_baseline_of_this_model_and_data_is_compared(drift: DriftReport, tmp_path: Path) -> None:
    path = _saved(tmp_path, baseline_from(drift, []))
    plan = plan_baseline(path, drift, update=False, force=False)
    assert plan.compare == read_baseline(path) and not plan.update and plan.notes == ()
    assert plan.after(True) == (False, None)  # compared, never written without --update-baseline
    updating = plan_baseline(path, drift, update=True, force=False)
    assert updating.compare is not None and not updating.writes_first and updating.after(True)[0]
    assert not updating.after(False)[0]  # a failing gate never touches the baseline


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"model": "other"}, "for model 'other'"),
        ({"model_sha256": "0" * 64}, "another version"),
        ({"data_digest": "f" * 64}, "other evaluation data"),
    ],
)
def test_a_baseline_of_something_else_is_refused_unless_forced(
    drift: DriftReport, tmp_path: Path, change: dict[str, str], words: str
) -> None:
    path = _saved(tmp_path, replace(baseline_from(drift, []), **change))
    with pytest.raises(BadInputError, match=words) as compared:
        plan_baseline(path, drift, update=False, force=False)
    assert "--force-baseline" not in str(compared.value)  # comparing: forcing would not help
    with pytest.raises(BadInputError, match="replace it with --force-baseline"):
        plan_baseline(path, drift, update=True, force=False)
    plan = plan_baseline(path, drift, update=True, force=True)
    assert plan.compare is None and plan.writes_first and "replaced (--force-baseline)" in plan.notes[0]
    assert words in plan.notes[0] and plan.after(True)[0]


def test_an_old_baseline_without_the_model_hash_is_still_compared(drift: DriftReport, tmp_path: Path) -> None:
    path = _saved(tmp_path, replace(baseline_from(drift, []), model_sha256=""))
    assert plan_baseline(path, drift, update=False, force=False).compare is not None
