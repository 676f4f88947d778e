"""Target specs: every bundled file loads, and every kind of bad spec is a one-line error naming file, line, key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgecnn.check.spec import QuantScheme, available_targets, load_target
from edgecnn.cli import app
from edgecnn.errors import ConfigError

REQUIRED = {"arm-cpu-xnnpack", "ethos-u55", "ethos-u65", "qualcomm-htp", "edgetpu", "mobile-gpu", "intel-cpu",
            "rknpu2-rk3588", "ort-cpu", "intel-npu"}  # fmt: skip

MINIMAL = """schema_version = 1
name = "board"
description = "my board"
runtime = "vela"
format = "tflite"
accelerator = "Board NPU"
fallback = "CPU"
precisions = ["int8"]
source = "doc"
{extra}
[sources.doc]
url = "https://example.com/ops"
version = "1.0"

[quant]
weights_per_channel = true
weights_symmetric = true
weight_dtype = "int8"
activation_dtype = "int8"
activations_symmetric = false
source = "doc"

[ops.Conv]
source = "doc"
stride_max = 2
"""


def _write(tmp_path: Path, text: str, name: str = "board.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_every_bundled_target_loads_with_sources() -> None:
    assert set(available_targets()) >= REQUIRED
    for name in available_targets():
        t = load_target(name)
        assert t.sources, name
        for op in t.ops.values():
            assert op.source in t.sources, (name, op.op_type)
            assert t.sources[op.source].url.startswith("https://"), name
            assert t.sources[op.source].version, name


def test_tflite_targets_map_onnx_ops_to_builtins() -> None:
    for name in ("ethos-u55", "edgetpu", "arm-cpu-xnnpack", "mobile-gpu"):
        t = load_target(name)
        assert t.format == "tflite"
        assert t.ops["Conv"].tflite == ("CONV_2D",)
        assert t.ops["Conv"].variants["depthwise"].tflite == ("DEPTHWISE_CONV_2D",)


def test_quant_scheme_for_the_quantize_command() -> None:
    q = load_target("ethos-u55").quant
    assert isinstance(q, QuantScheme)
    assert (q.weights_per_channel, q.weights_symmetric, q.activation_dtype, q.activations_symmetric) == (
        True, True, "int8", False,
    )  # fmt: skip
    assert load_target("qualcomm-htp").quant.activation_dtype == "uint8"  # type: ignore[union-attr]
    assert load_target("mobile-gpu").quant is None
    assert load_target("ethos-u55").requires_quantization and not load_target("mobile-gpu").requires_quantization


def test_a_target_that_lists_an_integer_precision_has_a_quantization_scheme() -> None:
    """`quantize --target T` takes T's [quant] scheme: a target listing int8/uint8 without one was refused as
    "runs float only (precisions: float32, float16, int8, uint8)" (intel-npu). mobile-gpu is the float-only side."""
    from edgecnn.errors import BadInputError
    from edgecnn.quantize.params import resolve_scheme

    for name in available_targets():
        t = load_target(name)
        integer = bool({"int8", "uint8"} & {str(p) for p in t.precisions})
        assert (t.quant is not None) == integer, (name, t.precisions)
    assert resolve_scheme("intel-npu", "ort").activation_dtype == "uint8"
    with pytest.raises(BadInputError, match="runs float only"):
        resolve_scheme("mobile-gpu", "ort")


def test_extends_inherits_and_overrides() -> None:
    u65 = load_target("ethos-u65")
    assert u65.accelerator == "Ethos-U65 NPU" and u65.extends == "ethos-u55"
    assert u65.ops["Conv"].constraints == load_target("ethos-u55").ops["Conv"].constraints


def test_user_file_by_path(tmp_path: Path) -> None:
    t = load_target(_write(tmp_path, MINIMAL.format(extra="")))
    assert t.name == "board" and t.ops["Conv"].constraints == {"stride_max": 2}


def test_unknown_target_lists_valid_names() -> None:
    with pytest.raises(ConfigError, match=r"unknown target 'ethos-u99'; valid targets are: .*ethos-u55.*intel-cpu"):
        load_target("ethos-u99")


def test_malformed_toml_names_file_and_line(tmp_path: Path) -> None:
    p = _write(tmp_path, MINIMAL.format(extra="").replace('runtime = "vela"', "runtime = vela"))
    with pytest.raises(ConfigError, match=rf"{p}: malformed TOML: .*line 4"):
        load_target(p)


def test_unknown_top_key_names_line_and_valid_keys(tmp_path: Path) -> None:
    p = _write(tmp_path, MINIMAL.format(extra='vendor = "acme"\n'))
    with pytest.raises(ConfigError, match=rf"{p}:10: key 'vendor': unknown key; valid keys are: .*accelerator"):
        load_target(p)


def test_unknown_constraint_key_in_op(tmp_path: Path) -> None:
    p = _write(tmp_path, MINIMAL.format(extra="") + "strid_max = 3\n")
    with pytest.raises(ConfigError, match=r"key 'ops.Conv.strid_max': unknown key; valid keys are: .*stride_max"):
        load_target(p)


def test_bad_constraint_value(tmp_path: Path) -> None:
    p = _write(tmp_path, MINIMAL.format(extra="").replace("stride_max = 2", 'stride_max = "two"'))
    with pytest.raises(ConfigError, match=r"key 'ops.Conv.stride_max': value 'two' is not a non-negative integer"):
        load_target(p)


@pytest.mark.parametrize(
    "value", ["[256.0, 0.001]", "[0.0, 1.0]", "[-1.0, 2.0]", "[1.0]", '[1.0, "x"]', "[1.0, inf]", "[nan, 2.0]"]
)
def test_bad_range_value(tmp_path: Path, value: str) -> None:
    p = _write(tmp_path, MINIMAL.format(extra="").replace("stride_max = 2", f"scale_ratio_range = {value}"))
    with pytest.raises(
        ConfigError, match=r"key 'ops.Conv.scale_ratio_range': value .* is not \[low, high\] with 0 < low < high"
    ):
        load_target(p)


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (
            ("stride_max = 2", "strides_allowed = [-1, 0]"),
            "strides_allowed': value [-1, 0]: expected a non-empty list of integers >= 1",
        ),
        (("stride_max = 2", "spatial_dims = []"), "spatial_dims': value []: expected a non-empty list"),
        (("stride_max = 2", 'tflite = "NOT_AN_OP"'), "'NOT_AN_OP' is not a TFLite builtin"),
        (("[ops.Conv]", "[ops.NotAnOnnxOp]"), "'NotAnOnnxOp' is neither an ONNX operator nor a TFLite builtin"),
        (('name = "board"', 'name = "../../x"'), "'../../x': letters, digits"),
        (("stride_max = 2", "stride_max = 1" + "0" * 400), "a number beyond any valid setting"),
    ],
    ids=["negative-strides", "empty-dims", "tflite-name", "op-name", "name-path", "huge-int"],
)
def test_specs_that_lint_used_to_pass(tmp_path: Path, edit: tuple[str, str], words: str) -> None:
    """`targets lint` said ok to these; each now names the key and what would be valid."""
    text = MINIMAL.format(extra="")
    assert edit[0] in text
    p = _write(tmp_path, text.replace(edit[0], edit[1]))
    with pytest.raises(ConfigError, match=re.escape(words)):
        load_target(p)


def test_good_range_value_loads(tmp_path: Path) -> None:
    p = _write(tmp_path, MINIMAL.format(extra="").replace("stride_max = 2", "scale_ratio_range = [0.001, 256]"))
    assert load_target(p).ops["Conv"].constraints["scale_ratio_range"] == [0.001, 256]


def test_undefined_source_id(tmp_path: Path) -> None:
    p = _write(tmp_path, MINIMAL.format(extra="").replace('[ops.Conv]\nsource = "doc"', '[ops.Conv]\nsource = "nope"'))
    with pytest.raises(ConfigError, match=r"'nope' is not defined under \[sources\]"):
        load_target(p)


def test_extends_missing_parent(tmp_path: Path) -> None:
    p = _write(tmp_path, MINIMAL.format(extra='extends = "no-such-board"\n'))
    with pytest.raises(
        ConfigError, match=r"key 'extends': parent 'no-such-board' not found; valid targets are: .*edgetpu"
    ):
        load_target(p)


def test_extends_cycle(tmp_path: Path) -> None:
    _write(tmp_path, MINIMAL.format(extra='extends = "b.toml"\n'), "a.toml")
    _write(tmp_path, MINIMAL.format(extra='extends = "a.toml"\n'), "b.toml")
    with pytest.raises(ConfigError, match=r"cyclic extends \(a -> b -> a\)"):
        load_target(tmp_path / "a.toml")


def test_targets_cli_list_show_lint(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["targets", "list"])
    assert r.exit_code == 0 and "ethos-u55" in r.output and "rknpu2-rk3588" in r.output
    r = CliRunner().invoke(app, ["targets", "show", "ethos-u55"])
    assert r.exit_code == 0 and "DEPTHWISE_CONV_2D" in r.output and "SUPPORTED_OPS.md" in r.output
    r = CliRunner().invoke(app, ["targets", "lint"])
    assert r.exit_code == 0 and r.output.count("ok ") == len(available_targets())
    bad = _write(tmp_path, MINIMAL.format(extra='vendor = "acme"\n'))
    r = CliRunner().invoke(app, ["targets", "lint", str(bad)])
    assert r.exit_code == 2 and "unknown key" in r.output
    r = CliRunner().invoke(app, ["targets", "show", "nope"])
    assert r.exit_code == 2 and "valid targets are" in r.output


def test_intel_npu_spec_loads_and_lints() -> None:
    t = load_target("intel-npu")
    assert t.fallback == "" and t.limits == {"static_shapes": True}  # no HETERO fallback; static shapes only
    assert {"float32", "float16", "int8", "uint8"} == set(t.precisions) and not t.requires_quantization
    assert "MaxPool" not in t.ops  # the conformance report marks MaxPool-8 "not implemented in NPU plugin"
    assert 'query_model(model, "NPU")' in t.description
    assert t.sources["npu-device"].url.startswith("https://docs.openvino.ai/2026/")
    r = CliRunner().invoke(app, ["targets", "lint", "targets/intel-npu.toml"])
    assert r.exit_code == 0 and "ok " in r.output, r.output


def test_a_source_without_a_version_is_a_lint_error(tmp_path: Path) -> None:
    p = _write(tmp_path, MINIMAL.format(extra="").replace('version = "1.0"', 'version = "latest"'))
    with pytest.raises(ConfigError, match=r"key 'sources.doc.version': 'latest' names no version; give the release"):
        load_target(p)
    r = CliRunner().invoke(app, ["targets", "lint", str(p)])
    assert r.exit_code == 2 and "names no version" in r.output and "Traceback" not in r.output


def test_a_limit_with_an_unknown_fact_key_is_a_lint_error(tmp_path: Path) -> None:
    p = _write(tmp_path, MINIMAL.format(extra='\n[limits]\nsource = "doc"\nrank_maxx = 4\n'))
    with pytest.raises(ConfigError, match=r"key 'limits.rank_maxx': unknown key; valid keys are: .*rank_max"):
        load_target(p)
    variant = MINIMAL.format(extra="") + "[ops.Conv.depthwise]\nstrid_max = 1\n"
    with pytest.raises(ConfigError, match=r"key 'ops.Conv.depthwise.strid_max': unknown key"):
        load_target(_write(tmp_path, variant, "v.toml"))


def test_validation_table_is_checked_and_matches_the_agreement_tests(tmp_path: Path) -> None:
    p = _write(tmp_path, MINIMAL.format(extra='\n[validation]\ntool = "x"\ncases = "many"\n'))
    with pytest.raises(ConfigError, match=r"key 'validation.cases': value 'many' should be a int"):
        load_target(p)
    # The counts docs/targets.md shows are the agreement tests' own corpora (a stale number fails here).
    from tests.test_target_agreement import ORT_CASES, ORT_REJECTS, OV_CASES, OV_REJECTS

    ort, ov = load_target("ort-cpu").validation, load_target("intel-cpu").validation
    assert ort["cases"] == len(ORT_CASES) + len(ORT_REJECTS) and ort["agreement"] == f"{ort['cases']}/{ort['cases']}"
    assert ov["cases"] == len(OV_CASES) + len(OV_REJECTS) and ov["agreement"] == f"{ov['cases']}/{ov['cases']}"
    for name in ("qualcomm-htp", "rknpu2-rk3588", "intel-npu"):
        assert load_target(name).validation["tool"], name  # says how (or that it was not) validated


def test_the_readme_agreement_table_quotes_the_target_files() -> None:
    """The README's validation table (cases, agreement) is the targets' own [validation] numbers, which the
    agreement tests assert; a corpus that grew without the README following fails here."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([a-z0-9.-]+)` \|.*\| (\d+) \| (\d+/\d+)[^|]*\|$", readme, flags=re.M)
    assert len(rows) >= 4, rows
    for name, cases, agreement in rows:
        v = load_target(name).validation
        assert (int(cases), agreement) == (v["cases"], v["agreement"].split()[0]), name  # rknpu2 says more after
