"""edgecnn gate: policy and baseline validation, rule arithmetic, JUnit/Markdown, and the example CI
workflow's steps (quantize -> drift -> bench -> gate) on the bundled model, where a damaged model fails
for the right reasons."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest

from edgecnn.drift.report import read_report
from edgecnn.errors import ConfigError
from edgecnn.gate.decide import Status, decide
from edgecnn.gate.policy import RULES, load_policy, policy_from_dict
from tests.cli_helpers import ROOT, assert_one_line_error, invoke
from tests.conftest import CALIB_DIR, EVAL_DIR, SAMPLE_MODEL
from tests.test_drift import dark_calib

WORKFLOW = ROOT / "examples" / "ci" / "edgecnn-gate.yml"
POLICY = ROOT / "examples" / "gate-policy.toml"
EVAL_N = "300"


def _step(args: list[object], code: int = 0):  # type: ignore[no-untyped-def]
    res = invoke(*map(str, args))
    assert res.exit_code == code, res.output
    return res


@pytest.fixture(scope="module")
def ci(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The workflow's steps for a good candidate, then for one calibrated on 2 dark images."""
    out = tmp_path_factory.mktemp("ci")
    dark = dark_calib(out)
    # the example's policy as it is: latency is judged on recorded reports, so the verdicts are deterministic
    (out / "policy.toml").write_text(POLICY.read_text())
    for name, calib in (("int8", CALIB_DIR), ("bad", dark)):
        _step(["quantize", SAMPLE_MODEL, "--calib", calib, "--samples", 64 if name == "int8" else 2,
               "-o", out / f"{name}.onnx"])  # fmt: skip
        _step(["drift", SAMPLE_MODEL, out / f"{name}.onnx", "--data", EVAL_DIR, "--samples", EVAL_N,
               "--require-labels", "--json", out / f"{name}_drift.json"])  # fmt: skip
        _step(["bench", out / f"{name}.onnx", "--threads", 1, "-n", 60, "--warmup", 5,
               "--json", out / f"{name}_bench.json"])  # fmt: skip
    ci = {"dir": out, "policy": out / "policy.toml"}
    _gate(ci, "int8", "--update-baseline", code=0)
    return ci


def _gate(ci: dict[str, Path], name: str, *extra: object, code: int, baseline: str = "baseline.json"):  # type: ignore[no-untyped-def]
    d = ci["dir"]
    return _step(
        ["gate", "--policy", ci["policy"], "--drift", d / f"{name}_drift.json", "--bench", d / f"{name}_bench.json",
         "--baseline", d / baseline, *extra],
        code,
    )  # fmt: skip


def test_workflow_steps_match_this_test() -> None:
    """The example workflow runs the steps the `ci` fixture runs, in this order, with the example policy."""
    text = WORKFLOW.read_text()
    steps = re.findall(r"^\s+(?:run: )?edgecnn (\w+)", text, flags=re.M)
    assert steps == ["quantize", "drift", "bench", "gate"]
    assert "examples/gate-policy.toml" in text and "--junit" in text and "--markdown" in text
    assert "--update-baseline" in text and "GITHUB_STEP_SUMMARY" in text
    load_policy(POLICY)


def test_good_model_passes_and_writes_baseline_then_bad_model_fails(ci: dict[str, Path]) -> None:
    d = ci["dir"]
    wf = {"baseline": "wf_baseline.json"}
    res = _gate(ci, "int8", "--update-baseline", "--junit", d / "j1.xml", code=0, **wf)
    assert "PASSED" in res.output and "no baseline" in res.output
    base = json.loads((d / "wf_baseline.json").read_text())
    assert base["kind"] == "gate-baseline" and base["schema_version"] == 1 and base["model"] == "sample_cnn"
    assert base["latency"]["ort"]["p99_ms"] > 0 and base["top1_pct"] > 95
    junit = ET.parse(d / "j1.xml").getroot()
    assert junit.get("failures") == "0" and junit.get("skipped") == "2"  # baseline rules: no baseline yet
    # the same candidate against its own baseline: every rule judged, all pass
    res = _gate(ci, "int8", "--junit", d / "j2.xml", "--markdown", d / "g.md", code=0, **wf)
    assert ET.parse(d / "j2.xml").getroot().get("skipped") == "0"
    md = (d / "g.md").read_text()
    assert md.startswith("## edgecnn gate: PASSED") and "| ✅ pass | `max_top1_drop` |" in md

    before = (d / "wf_baseline.json").read_bytes()
    res = _gate(ci, "bad", "--update-baseline", "--junit", d / "j3.xml", "--markdown", d / "bad.md", code=1, **wf)
    err = res.stderr if hasattr(res, "stderr") else res.output
    assert "gate failed" in err and "max_top1_drop" in err and "min_agreement" in err
    assert (d / "wf_baseline.json").read_bytes() == before  # a failing gate never moves the baseline
    cases = {c.get("name"): c for c in ET.parse(d / "j3.xml").getroot().iter("testcase")}
    for rule in ("max_top1_drop", "min_agreement", "max_class_recall_drop", "min_output_sqnr_db",
                 "max_top1_drop_vs_baseline"):  # fmt: skip
        assert cases[rule].find("failure") is not None, rule
        assert "measured" in cases[rule].find("failure").get("message")
    # the latency rule is judged on the two recorded bench reports: its verdict follows from their numbers
    p99 = {n: json.loads((d / f"{n}_bench.json").read_text())["results"][0]["stats"]["p99_ms"] for n in ("int8", "bad")}
    regression = 100 * (p99["bad"] - p99["int8"]) / p99["int8"]
    latency_failed = cases["max_p99_regression[ort]"].find("failure") is not None
    assert latency_failed == (regression > load_policy(ci["policy"]).rules["max_p99_regression"]), regression
    assert "❌ fail" in (d / "bad.md").read_text()


def test_rules_arithmetic(ci: dict[str, Path]) -> None:
    drift = read_report(ci["dir"] / "int8_drift.json")
    pol = policy_from_dict({"schema_version": 1, "rules": {"max_top1_drop": 0.0, "min_agreement": 100.0}}, "t")
    at_limit = replace(drift, top1_drop_pts=0.0, agreement_pct=100.0)
    assert decide(pol, at_limit, [], None).passed  # the limit itself passes
    over = replace(drift, top1_drop_pts=0.1 + 0.2 - 0.3 + 0.01, agreement_pct=99.9)
    d = decide(pol, over, [], None)
    assert not d.passed and [r.status for r in d.results] == [Status.FAIL, Status.FAIL]
    assert d.results[0].measured == pytest.approx(0.01) and d.results[0].limit == 0.0


def test_every_rule_has_an_evaluator(ci: dict[str, Path]) -> None:
    from edgecnn.bench.report import read_report as read_bench
    from edgecnn.gate.baseline import baseline_from

    drift = read_report(ci["dir"] / "int8_drift.json")
    bench = read_bench(ci["dir"] / "int8_bench.json")
    pol = policy_from_dict({"schema_version": 1, "rules": {r: 100.0 if "min" not in r else 0.0 for r in RULES}}, "t")
    d = decide(pol, drift, bench, baseline_from(drift, bench))
    assert d.passed and {r.rule.split("[")[0] for r in d.results} == set(RULES)


def test_rule_registry_is_one_function_per_rule_with_its_user_text() -> None:
    import edgecnn.gate.policy as policy

    for name, rule in RULES.items():
        assert rule.evaluate is getattr(policy, name) and rule.evaluate.__name__ == name
        assert rule.bound == name.split("_")[0] in ("max", "min")
        assert rule.doc and rule.doc.endswith("."), name  # one sentence
    assert len({r.doc for r in RULES.values()}) == len(RULES)


def test_p99_regression_rule_on_both_sides_of_its_limit(ci: dict[str, Path]) -> None:
    """Real bench samples, scaled: +5% passes a 10% limit, +20% fails it, with the regression measured."""
    from edgecnn.bench.report import read_report as read_bench
    from edgecnn.bench.stats import latency_stats
    from edgecnn.gate.baseline import baseline_from

    drift = read_report(ci["dir"] / "int8_drift.json")
    (bench,) = read_bench(ci["dir"] / "int8_bench.json")
    base = baseline_from(drift, [bench])
    pol = policy_from_dict({"schema_version": 1, "rules": {"max_p99_regression": 10.0}}, "t")

    def scaled(f: float):  # type: ignore[no-untyped-def]
        samples = tuple(round(s * f) for s in bench.samples_ns)
        return replace(bench, samples_ns=samples, stats=latency_stats(samples, batch=bench.batch))

    under = decide(pol, drift, [scaled(1.05)], base)
    assert under.passed and under.results[0].measured == pytest.approx(5.0, abs=0.01)
    over = decide(pol, drift, [scaled(1.20)], base)
    assert not over.passed and over.results[0].status is Status.FAIL
    assert (
        over.results[0].measured == pytest.approx(20.0, abs=0.01) and over.results[0].rule == "max_p99_regression[ort]"
    )


# -- bad input ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "needles"),
    [
        ("schema_version = 1\n[rules]\nmax_top1_dorp = 0.5\n", ["unknown rule 'max_top1_dorp'", "max_top1_drop"]),
        ("schema_version = 1\n[rules]\nmax_top1_drop = -0.5\n", ["max_top1_drop = -0.5", "0 or more"]),
        ("schema_version = 1\n[rules]\nmin_agreement = 120\n", ["at most 100"]),
        ("schema_version = 1\n[rules]\nmin_agreement = 'high'\n", ["expected a number"]),
        ("schema_version = 2\n[rules]\nmin_agreement = 99\n", ["schema_version 2"]),
        ("schema_version = 1\n", ["no [rules]"]),
        ("schema_version = 1\nrule = 3\n[rules]\nmin_agreement = 99\n", ["unknown key"]),
        ("schema_version = 1\n[rules\n", ["malformed TOML"]),
    ],
)
def test_bad_policy(ci: dict[str, Path], tmp_path: Path, body: str, needles: list[str]) -> None:
    p = tmp_path / "policy.toml"
    p.write_text(body)
    with pytest.raises(ConfigError):
        load_policy(p)
    res = invoke("gate", "--policy", p, "--drift", ci["dir"] / "int8_drift.json")
    assert_one_line_error(res, 2, str(p), *needles)


def test_baseline_from_another_schema_version(ci: dict[str, Path], tmp_path: Path) -> None:
    b = tmp_path / "b.json"
    data = json.loads((ci["dir"] / "baseline.json").read_text()) if (ci["dir"] / "baseline.json").exists() else {}
    b.write_text(json.dumps({**data, "kind": "gate-baseline", "schema_version": 99}))
    res = invoke("gate", "--policy", ci["policy"], "--drift", ci["dir"] / "int8_drift.json",
                 "--bench", ci["dir"] / "int8_bench.json", "--baseline", b)  # fmt: skip
    assert_one_line_error(res, 2, "schema_version 99", "gate-baseline")


def test_reports_for_another_model_than_the_baseline(ci: dict[str, Path], tmp_path: Path) -> None:
    _gate(ci, "int8", "--update-baseline", code=0)
    b = tmp_path / "other.json"
    data = json.loads((ci["dir"] / "baseline.json").read_text())
    b.write_text(json.dumps({**data, "model": "resnet50"}))
    res = invoke("gate", "--policy", ci["policy"], "--drift", ci["dir"] / "int8_drift.json",
                 "--bench", ci["dir"] / "int8_bench.json", "--baseline", b)  # fmt: skip
    assert_one_line_error(res, 2, "'sample_cnn'", "'resnet50'")
    b.write_text(json.dumps({**data, "data_digest": "0" * 64}))
    res = invoke("gate", "--policy", ci["policy"], "--drift", ci["dir"] / "int8_drift.json",
                 "--bench", ci["dir"] / "int8_bench.json", "--baseline", b)  # fmt: skip
    assert_one_line_error(res, 2, "other evaluation data")
    # a bench report of a different model than the drift report's candidate
    res = invoke("gate", "--policy", ci["policy"], "--drift", ci["dir"] / "int8_drift.json",
                 "--bench", ci["dir"] / "bad_bench.json", "--baseline", ci["dir"] / "baseline.json")  # fmt: skip
    assert_one_line_error(res, 2, "bad_bench.json", "benchmarks bad", "candidate is int8")


def test_missing_inputs_for_rules(ci: dict[str, Path], tmp_path: Path) -> None:
    d = ci["dir"]
    res = invoke("gate", "--policy", ci["policy"], "--drift", d / "int8_drift.json", "--baseline", d / "baseline.json")
    assert_one_line_error(res, 2, "max_p99_regression", "--bench")
    res = invoke("gate", "--policy", ci["policy"], "--drift", d / "int8_drift.json", "--bench", d / "int8_bench.json",
                 "--baseline", tmp_path / "nope.json")  # fmt: skip
    assert_one_line_error(res, 2, "nope.json", "--update-baseline")
    res = invoke("gate", "--policy", ci["policy"], "--drift", d / "int8_bench.json")
    assert_one_line_error(res, 2, "kind is 'bench'", "'drift'")
    unlabeled = json.loads((d / "int8_drift.json").read_text())
    unlabeled.update(labeled=False)
    (tmp_path / "u.json").write_text(json.dumps(unlabeled))
    res = invoke("gate", "--policy", ci["policy"], "--drift", tmp_path / "u.json")
    assert_one_line_error(res, 2, "without labels")
