"""Hostile input, table-driven: every row runs one real command on real files and checks the contract.

A row is (id, command line built from a fresh copy of the assets, expected exit code, words the message must
contain). After every row: no traceback, a failure is one ``error:`` line, every file that existed before is
byte-for-byte unchanged with the same mode (unless the row says it may change), no ``.*.tmp`` beside the outputs
and no ``edgecnn-*`` folder left in ``$TMPDIR``. Signal tests send real SIGTERM/SIGINT/SIGKILL to a real
``python -m edgecnn`` and wait for a marker (the command's own temp folder appearing), never a fixed sleep.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from edgecnn.fsutil import sweep_stale
from tests.cli_helpers import ROOT, assert_one_line_error, invoke
from tests.onnx_builders import make_model, save, small_cnn

SPEC = 'schema_version = 1\ncolor_order = "RGB"\nlayout = "NCHW"\ndtype = "float32"\nresize = [16, 16]\n'
N_IMAGES = 4


# -- assets -------------------------------------------------------------------------------------------
def _png(path: Path, seed: int, size: int = 16) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)


def _png_header(path: Path, w: int, h: int) -> None:
    """A PNG whose header claims w x h pixels (a decompression bomb's signature), without the pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def _named_model(names: dict[str, str]) -> onnx.ModelProto:
    """small_cnn with its input, a node and the output renamed (hostile names)."""
    m = small_cnn()
    x, n, y = names.get("input", "x"), names.get("node", "stem"), names.get("output", "logits")
    for node in m.graph.node:
        node.input[:] = [x if i == "x" else i for i in node.input]
        node.output[:] = [y if o == "logits" else o for o in node.output]
        if node.name == "stem":
            node.name = n
    m.graph.input[0].name = x
    m.graph.output[0].name = y
    m.producer_name = names.get("producer", m.producer_name)
    return m


def _no_outputs() -> onnx.ModelProto:
    m = small_cnn()
    del m.graph.output[:]
    return m


def _string_input() -> onnx.ModelProto:
    node = helper.make_node("Identity", ["s"], ["t"], name="id")
    g = helper.make_graph(
        [node], "s", [helper.make_tensor_value_info("s", TensorProto.STRING, [1])],
        [helper.make_tensor_value_info("t", TensorProto.STRING, [1])],
    )  # fmt: skip
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _huge_input() -> onnx.ModelProto:
    node = helper.make_node("Relu", ["x"], ["y"], name="relu")
    dims = [1, 64, 65536, 65536]
    g = helper.make_graph(
        [node], "h", [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)],
    )  # fmt: skip
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _exploding() -> onnx.ModelProto:
    """A constant subgraph (ConstantOfShape) that would materialise 4 GB, added to a Conv's output."""
    shape = np.array([4000000, 1, 16, 16], np.int64)
    nodes = [
        helper.make_node("ConstantOfShape", ["shape"], ["big"], name="explode"),
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[1, 1]),
        helper.make_node("Add", ["c", "big"], ["y"], name="add"),
    ]
    w = np.ones((8, 3, 1, 1), np.float32)
    return make_model(nodes, [("x", [1, 3, 16, 16])], [("y", [4000000, 8, 16, 16])], {"shape": shape, "w": w})


def _external(d: Path, name: str, length: int, constant: bool = False) -> Path:
    """conv_model with its weight as external data; ``length`` may declare more than the file holds."""
    w = np.random.default_rng(0).standard_normal((8, 3, 3, 3)).astype(np.float32)
    t = numpy_helper.from_array(w, "w")
    (d / f"{name}.bin").write_bytes(t.raw_data)
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", f"{name}.bin"), ("offset", "0"), ("length", str(length))):
        t.external_data.add(key=k, value=v)
    conv = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    nodes = [helper.make_node("Constant", [], ["w"], name="wconst", value=t), conv] if constant else [conv]
    g = helper.make_graph(
        nodes, "e", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])],
        initializer=[] if constant else [t],
    )  # fmt: skip
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return save(m, d / f"{name}.onnx")


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny model, 4 labelled 16x16 images, a policy, and real drift/bench reports of the model."""
    a = tmp_path_factory.mktemp("assets")
    save(small_cnn(), a / "m.onnx")
    save(small_cnn(), a / "cand.onnx")
    for sub in ("data", "calib"):
        (a / sub).mkdir()
        for i in range(N_IMAGES):
            _png(a / sub / f"img{i}.png", i)
        (a / sub / "preprocess.toml").write_text(SPEC)
    (a / "data" / "labels.csv").write_text("file,label\n" + "".join(f"img{i}.png,{i % 4}\n" for i in range(N_IMAGES)))
    (a / "policy.toml").write_text("schema_version = 1\n[rules]\nmin_agreement = 0.0\nmax_p99_ms = 10000.0\n")
    res = invoke("drift", a / "m.onnx", a / "cand.onnx", "--data", a / "data", "--json", a / "drift.json")
    assert res.exit_code == 0, res.output
    res = invoke("bench", a / "m.onnx", "-n", "5", "--warmup", "1", "--threads", "1", "--json", a / "bench.json")
    assert res.exit_code == 0, res.output
    res = invoke("gate", "--policy", a / "policy.toml", "--drift", a / "drift.json", "--bench", a / "bench.json",
                 "--baseline", a / "baseline.json", "--update-baseline")  # fmt: skip
    assert res.exit_code == 0, res.output
    return a


# -- the table ----------------------------------------------------------------------------------------
Build = Callable[[Path], list[object]]


@dataclass(frozen=True)
class Case:
    id: str
    build: Build  # d (a fresh copy of the assets) -> argv
    code: int
    words: tuple[str, ...] = ()
    may_change: tuple[str, ...] = ()  # files (relative to d) the command may write
    check: Callable[[Path, str], None] | None = None  # extra assertion on (d, output)
    absent: tuple[str, ...] = field(default=())  # files that must not exist afterwards


CASES: list[Case] = []


def case(id: str, code: int, *words: str, **kw: object) -> Callable[[Build], Build]:
    def deco(fn: Build) -> Build:
        CASES.append(Case(id, fn, code, words, **kw))  # type: ignore[arg-type]
        return fn

    return deco


def row(id: str, build: Build, code: int, *words: str, **kw: object) -> None:
    CASES.append(Case(id, build, code, words, **kw))  # type: ignore[arg-type]


Q = ["quantize"]


def _q(d: Path, *extra: object) -> list[object]:
    return ["quantize", d / "m.onnx", "--calib", d / "calib", *extra]


def _drift(d: Path, *extra: object) -> list[object]:
    return ["drift", d / "m.onnx", d / "cand.onnx", "--data", d / "data", "--no-layers", *extra]


def _gate(d: Path, *extra: object) -> list[object]:
    return ["gate", "--policy", d / "policy.toml", "--drift", d / "drift.json", "--bench", d / "bench.json", *extra]


def _bench(d: Path, *extra: object) -> list[object]:
    return ["bench", d / "m.onnx", "-n", "3", "--warmup", "0", *extra]


def _sens(d: Path, *extra: object) -> list[object]:
    return ["sensitivity", d / "m.onnx", "--calib", d / "calib", "--data", d / "data", "--no-cache", *extra]


# 1. An output equal to an input, or to another output: refused, input intact. Each through the same path,
#    a symlink, a hard link and a path with '..'.
def _alias(d: Path, target: str, how: str) -> Path | str:
    t = d / target
    if how == "same":
        return t
    if how == "dotdot":
        return t.parent / ".." / t.parent.name / t.name
    if how == "dotslash":  # a str: Path would normalise './' away
        return os.path.join(str(t.parent), ".", ".", t.name)
    if how == "slashes":
        return f"{t.parent}//{t.name}"
    link = d / f"alias-{how}{t.suffix}"
    if how == "symlink":
        link.symlink_to(t)
    else:
        os.link(t, link)
    return link


OUTPUT_IS_INPUT: list[tuple[str, Callable[[Path, Path], list[object]], str]] = [
    ("inspect --json model", lambda d, o: ["inspect", d / "m.onnx", "--json", o], "m.onnx"),
    ("check --markdown model", lambda d, o: ["check", d / "m.onnx", "-t", "ort-cpu", "--markdown", o], "m.onnx"),
    ("check --json model", lambda d, o: ["check", d / "m.onnx", "-t", "ort-cpu", "--json", o], "m.onnx"),
    ("quantize -o model", lambda d, o: _q(d, "-o", o), "m.onnx"),
    ("quantize --json model", lambda d, o: _q(d, "-o", d / "q.onnx", "--json", o), "m.onnx"),
    ("quantize -o calib image", lambda d, o: _q(d, "-o", o), "calib/img0.png"),
    ("quantize -o preprocess.toml", lambda d, o: _q(d, "-o", o), "calib/preprocess.toml"),
    ("drift --json candidate", lambda d, o: _drift(d, "--json", o), "cand.onnx"),
    ("drift --markdown reference", lambda d, o: _drift(d, "--markdown", o), "m.onnx"),
    ("drift --plot labels.csv", lambda d, o: _drift(d, "--plot", o), "data/labels.csv"),
    ("gate --junit baseline", lambda d, o: _gate(d, "--baseline", d / "baseline.json", "--junit", o), "baseline.json"),
    ("gate --markdown policy", lambda d, o: _gate(d, "--markdown", o), "policy.toml"),
    ("gate --json drift report", lambda d, o: _gate(d, "--json", o), "drift.json"),
    ("gate --update-baseline over bench", lambda d, o: _gate(d, "--baseline", o, "--update-baseline"), "bench.json"),
    ("bench --json model", lambda d, o: _bench(d, "--json", o), "m.onnx"),
    ("sensitivity --json model", lambda d, o: _sens(d, "--json", o), "m.onnx"),
    ("sensitivity --plot eval image", lambda d, o: _sens(d, "--plot", o), "data/img1.png"),
    ("export -o model", lambda d, o: ["export", d / "m.onnx", "--to", "onnx", "-o", o], "m.onnx"),
    ("export --json model", lambda d, o: ["export", d / "m.onnx", "-o", d / "e.onnx", "--json", o], "m.onnx"),
    ("export -o calib image", lambda d, o: ["export", d / "m.onnx", "--calib", d / "calib", "-o", o], "calib/img2.png"),
    ("profile --json model", lambda d, o: ["profile", d / "m.onnx", "--json", o], "m.onnx"),
    ("profile --plot model", lambda d, o: ["profile", d / "m.onnx", "--plot", o], "m.onnx"),
    ("profile --json compared model", lambda d, o: ["profile", d / "m.onnx", "--compare", d / "cand.onnx", "--json",
     o], "cand.onnx"),
]  # fmt: skip
for _name, _argv, _target in OUTPUT_IS_INPUT:
    for _how in ("same", "symlink", "hardlink", "dotdot", "dotslash", "slashes"):
        row(
            f"{_name} ({_how})",
            lambda d, a=_argv, t=_target, h=_how: a(d, _alias(d, t, h)),
            2,
            "destroy",
        )

OUTPUT_IS_OUTPUT: list[tuple[str, Callable[[Path], list[object]]]] = [
    ("check --json = --markdown", lambda d: ["check", d / "m.onnx", "-t", "ort-cpu", "--json", d / "o", "--markdown", d / "o"]),
    ("quantize -o = --json", lambda d: _q(d, "-o", d / "o", "--json", d / "o")),
    ("drift --json = --markdown", lambda d: _drift(d, "--json", d / "o", "--markdown", d / "o")),
    ("drift --plot = --json (symlink)", lambda d: (Path(d / "l").symlink_to(d / "o"), _drift(d, "--json", d / "o", "--plot", d / "l"))[1]),
    ("gate --junit = --json", lambda d: _gate(d, "--junit", d / "o", "--json", d / "o")),
    ("gate --markdown = --baseline", lambda d: _gate(d, "--markdown", d / "b.json", "--baseline", d / "b.json", "--update-baseline")),
    ("sensitivity --json = --plot", lambda d: _sens(d, "--json", d / "o", "--plot", d / "o")),
]  # fmt: skip
for _name, _argv in OUTPUT_IS_OUTPUT:
    row(_name, _argv, 2, "also the", absent=("o",))

row("quantize -o external weights", lambda d: ["quantize", _external(d, "ext", 864), "--calib", d / "calib",
    "-o", d / "ext.bin"], 2, "ext.bin", "destroy")  # fmt: skip

# 2. Numbers: NaN, inf, negative, zero, near zero, beyond int64, everywhere numbers are read.
for _key, _val, _words in [
    ("scale", "nan", ("scale",)), ("scale", "inf", ("scale",)), ("scale", "-1.0", ("scale",)),
    ("scale", "0", ("scale",)), ("scale", "1e300", ("scale",)),
    ("mean", "[nan, 0, 0]", ("mean", "finite")), ("mean", "[inf, 0, 0]", ("mean",)), ("mean", "-inf", ("mean",)),
    ("mean", "[1e300, 0, 0]", ("mean",)), ("mean", "[0, 0]", ("mean",)),
    ("std", "[nan, 1, 1]", ("std",)), ("std", "[inf, 1, 1]", ("std",)), ("std", "[1e-30, 1, 1]", ("std", "at least 1e-06")),
    ("std", "0", ("std",)), ("std", "-1", ("std",)), ("std", "[1, 1, 0.0]", ("std",)),
    ("resize", "[100000, 100000]", ("resize", "16384")), ("resize", "[0, 16]", ("resize",)),
    ("resize", "[-16, 16]", ("resize",)), ("resize", "[16, 16, 16]", ("resize",)), ("resize", '"big"', ("resize",)),
    ("center_crop", "[99999999, 16]", ("center_crop",)), ("resize", "[9223372036854775807, 16]", ("resize",)),
]:  # fmt: skip

    def _spec_build(d: Path, k: str = _key, v: str = _val) -> list[object]:
        body = SPEC.replace("resize = [16, 16]\n", "") if k == "resize" else SPEC
        (d / "bad.toml").write_text(body + f"{k} = {v}\n")
        return _q(d, "-o", d / "q.onnx", "--preprocess", d / "bad.toml")

    row(f"preprocess {_key} = {_val}", _spec_build, 2, "bad.toml", *_words, absent=("q.onnx",))

for _rule, _val in [("min_agreement", "nan"), ("min_agreement", "inf"), ("max_p99_ms", "-inf"), ("max_p99_ms", "nan"),
                    ("max_top1_drop", "-1"), ("min_agreement", "101"), ("min_output_cosine", "2"),
                    ("max_p99_ms", '"10"'), ("max_p99_ms", "true")]:  # fmt: skip

    def _pol(d: Path, r: str = _rule, v: str = _val) -> list[object]:
        (d / "p.toml").write_text(f"schema_version = 1\n[rules]\n{r} = {v}\n")
        return ["gate", "--policy", d / "p.toml", "--drift", d / "drift.json", "--json", d / "g.json"]

    row(f"policy {_rule} = {_val}", _pol, 2, "p.toml", _rule, absent=("g.json",))


def _edit_baseline(d: Path, edit: Callable[[dict], None]) -> None:
    data = json.loads((d / "baseline.json").read_text())
    edit(data)
    text = json.dumps(data).replace('"__nan__"', "NaN").replace('"__inf__"', "Infinity")
    (d / "baseline.json").write_text(text)


for _key, _val in [("p99_ms", 0), ("p99_ms", -1.0), ("p99_ms", "__nan__"), ("p99_ms", "__inf__"), ("p50_ms", 0),
                   ("p99_ms", "fast"), ("p99_ms", True)]:  # fmt: skip

    def _base(d: Path, k: str = _key, v: object = _val) -> list[object]:
        _edit_baseline(d, lambda b: next(iter(b["latency"].values())).__setitem__(k, v))
        (d / "p.toml").write_text("schema_version = 1\n[rules]\nmax_p99_regression = 10.0\n")
        return ["gate", "--policy", d / "p.toml", "--drift", d / "drift.json", "--bench", d / "bench.json",
                "--baseline", d / "baseline.json"]  # fmt: skip

    row(f"baseline {_key} = {_val}", _base, 2, "baseline.json", _key)

for _key, _val in [("top1_pct", "__nan__"), ("agreement_pct", 250.0), ("agreement_pct", -3.0), ("top1_pct", "x")]:
    row(f"baseline {_key} = {_val}", lambda d, k=_key, v=_val: (_edit_baseline(d, lambda b: b.__setitem__(k, v)),
        _gate(d, "--baseline", d / "baseline.json"))[1], 2, "baseline.json")  # fmt: skip

for _val in ("nan", "inf", "-1", "0", "1e9"):
    row(f"bench --connect-timeout {_val}", lambda d, v=_val: _bench(d, "--host", "pi@board", "--connect-timeout", v),
        2, "--connect-timeout")  # fmt: skip
for _val in ("nan", "-1", "101", "inf", "-inf"):
    row(f"quantize --max-drop {_val}", lambda d, v=_val: _q(d, "-o", d / "q.onnx", "--max-drop", v, "--data",
        d / "data"), 2, "--max-drop", absent=("q.onnx",))  # fmt: skip
for _shape in ("x=1x3x16x99999999999999999999", "x=1x3x16x9223372036854775808", "x=0x3x16x16", "x=-1x3x16x16",
               "x=1x3x16x2147483648", "x=", "=1x3", "x=1x3x16x16x"):  # fmt: skip
    row(f"inspect --input-shape {_shape}", lambda d, s=_shape: ["inspect", d / "m.onnx", "--input-shape", s], 2,
        "--input-shape")  # fmt: skip
for _cmd, _build in (
    ("bench", lambda d, t: _bench(d, "--threads", t)),
    ("drift", lambda d, t: _drift(d, "--threads", t)),
):
    for _t in ("100000", "-1", "99999999999"):
        row(f"{_cmd} --threads {_t}", lambda d, b=_build, t=_t: b(d, t), 2, "--threads", "..")
for _opt, _val in [("--duration", "nan"), ("--duration", "inf"), ("--duration", "-1"), ("--duration", "1e9"),
                   ("-n", "1000000000000"), ("-n", "0"), ("--warmup", "-1"), ("--warmup", "99999999999")]:  # fmt: skip
    row(f"bench {_opt} {_val}", lambda d, o=_opt, v=_val: ["bench", d / "m.onnx", o, v], 2,
        "--iterations" if _opt == "-n" else _opt)  # fmt: skip
row("bench --threads 0", lambda d: _bench(d, "--threads", "0"), 2, "--threads", "1..")
# --ov-property: the plugin's own list of settable properties and its verdict on a value, before any run
for _prop, _needles in [("NOPE=1", ("NOPE", "settable:", "CPU_DENORMALS_OPTIMIZATION")),
                        ("CPU_DENORMALS_OPTIMIZATION=maybe", ("maybe", "true/false")),
                        ("INFERENCE_NUM_THREADS=4", ("--threads",)), ("PERF_COUNT", ("NAME=VALUE",))]:  # fmt: skip
    row(f"bench --ov-property {_prop}", lambda d, p=_prop: _bench(d, "-r", "openvino", "--ov-property", p,
        "--json", d / "o.json"), 2, *_needles, absent=("o.json",))  # fmt: skip
    row(f"profile --ov-property {_prop}", lambda d, p=_prop: ["profile", d / "m.onnx", "-r", "openvino", "-n", "2",
        "--ov-property", p, "--json", d / "o.json"], 2, *_needles, absent=("o.json",))  # fmt: skip
row("bench --ov-property without openvino", lambda d: _bench(d, "--ov-property", "CPU_DENORMALS_OPTIMIZATION=YES"),
    2, "--runtime openvino")  # fmt: skip
# --silu-form: a choice of how OpenVINO's placement writes SiLU; refused elsewhere rather than ignored
row("quantize --silu-form typo", lambda d: _q(d, "-o", d / "q.onnx", "--runtime", "openvino", "--silu-form",
    "tan"), 2, "--silu-form 'tan'", "auto, sigmoid, tanh", absent=("q.onnx",))  # fmt: skip
row("quantize --silu-form without openvino", lambda d: _q(d, "-o", d / "q.onnx", "--silu-form", "tanh"), 2,
    "--silu-form tanh", "--runtime openvino", "--runtime ort", absent=("q.onnx",))  # fmt: skip
row("quantize --silu-form with --target", lambda d: _q(d, "-o", d / "q.onnx", "--runtime", "openvino", "--target",
    "intel-cpu", "--silu-form", "sigmoid"), 2, "--target intel-cpu", absent=("q.onnx",))  # fmt: skip
row("quantize --batch 0", lambda d: _q(d, "-o", d / "q.onnx", "--batch", "0"), 2, "--batch")
row("quantize --samples -1", lambda d: _q(d, "-o", d / "q.onnx", "--samples", "-1"), 2, "--samples")
# a typo in --exclude would quantize the layer the user meant to keep float: refused, with the nearest names
row("quantize --exclude typo", lambda d: _q(d, "-o", d / "q.onnx", "--exclude", "conv"), 2, "--exclude 'conv'",
    "no node or op type", "did you mean Conv")  # fmt: skip
row("quantize --exclude unknown", lambda d: _q(d, "-o", d / "q.onnx", "--exclude", "NoSuch"), 2, "--exclude",
    "op types here")  # fmt: skip
row("quantize --exclude op type", lambda d: _q(d, "-o", d / "q.onnx", "--exclude", "Conv"), 0)  # the other side
row("drift --data missing folder", lambda d: [*_drift(d)[:3], "--data", d / "nope"], 2, "not a directory")


def _edit_json(d: Path, name: str, edit: Callable[[dict], None]) -> None:
    data = json.loads((d / name).read_text())
    edit(data)
    text = (
        json.dumps(data).replace('"__nan__"', "NaN").replace('"__inf__"', "Infinity").replace('"__-inf__"', "-Infinity")
    )
    (d / name).write_text(text)


for _key, _val in [("agreement_pct", "__nan__"), ("agreement_pct", 100.5), ("candidate_top1_pct", "__inf__"),
                   ("reference_top1_pct", -1.0), ("images", -4)]:  # fmt: skip
    row(f"drift report {_key} = {_val}", lambda d, k=_key, v=_val: (_edit_json(d, "drift.json",
        lambda r: r.__setitem__(k, v)), _gate(d, "--json", d / "g.json"))[1], 2, "drift.json", _key,
        absent=("g.json",))  # fmt: skip
row("drift report: NaN output cosine", lambda d: (_edit_json(d, "drift.json", lambda r: r["outputs"][0].__setitem__(
    "cosine_mean", "__nan__")), _gate(d))[1], 2, "drift.json", "cosine_mean")  # fmt: skip
for _name, _samples in [("zero", [0, 0, 0]), ("negative", [-5, 1000, 2000]), ("empty", []), ("NaN", ["__nan__"]),
                        ("text", ["fast"]), ("list", [[1, 2]])]:  # fmt: skip
    row(f"bench report samples {_name}", lambda d, v=_samples: (_edit_json(d, "bench.json",
        lambda r: r["results"][0].__setitem__("samples_ns", v)), _gate(d, "--json", d / "g.json"))[1], 2,
        "bench.json", absent=("g.json",))  # fmt: skip
for _name, _build in [
    ("drift --json /dev/full", lambda d: _drift(d, "--json", "/dev/full")),
    ("gate --junit /dev/full", lambda d: _gate(d, "--junit", "/dev/full")),
    ("quantize --json /dev/full", lambda d: _q(d, "-o", d / "q.onnx", "--json", "/dev/full")),
    ("bench --json /dev/full", lambda d: _bench(d, "--json", "/dev/full")),
]:
    row(_name, _build, 2, "/dev/full", "No space left", may_change=("q.onnx",))


def _raw_model_name(d: Path) -> list[object]:
    raw = os.path.join(os.fsencode(d), b"m\xff\xfe.onnx")
    shutil.copy(d / "m.onnx", raw)
    return ["inspect", os.fsdecode(raw), "--json", d / "o.json"]


row("inspect: model file name not UTF-8", _raw_model_name, 2, "not valid UTF-8", "rename", absent=("o.json",))
row("inspect: missing model, name not UTF-8", lambda d: ["inspect", os.fsdecode(os.path.join(os.fsencode(d),
    b"\xff.onnx"))], 2, "UTF-8")  # fmt: skip


# 3. Models nobody should feed: each command says so in one line, exit 2.
def _sparse(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)  # no blocks on disk
    return path


def _bytes(d: Path, data: bytes) -> Path:
    (d / "bad.onnx").write_bytes(data)
    return d / "bad.onnx"


def _m(model: Callable[[], onnx.ModelProto]) -> Callable[[Path], Path]:
    return lambda d: save(model(), d / "bad.onnx")


BAD_MODELS: list[tuple[str, Callable[[Path], Path], tuple[str, ...]]] = [
    ("no outputs", _m(_no_outputs), ("no outputs",)),
    ("empty file", lambda d: _bytes(d, b""), ("empty",)),
    ("garbage", lambda d: _bytes(d, bytes(range(256)) * 2), ("bad.onnx",)),
    ("truncated", lambda d: _bytes(d, (d / "m.onnx").read_bytes()[:200]), ("bad.onnx",)),
    ("external data over 2 GiB", lambda d: _external(d, "bad", 3 << 30), ("2 GiB",)),
    ("missing external data", lambda d: (_external(d, "bad", 864), (d / "bad.bin").unlink())[0], ("bad.onnx",)),
    ("a folder", lambda d: (d / "bad.onnx").mkdir() or d / "bad.onnx", ("directory",)),
    ("a FIFO", lambda d: os.mkfifo(d / "bad.onnx") or d / "bad.onnx", ("not a regular file",)),
    ("/dev/zero", lambda d: Path("/dev/zero"), ("not a regular file",)),
    ("a 2.5 GiB file", lambda d: _sparse(d / "bad.onnx", 5 << 29), ("2 GiB",)),
    ("no such file", lambda d: d / "nope.onnx", ("no such file",)),
]  # fmt: skip
MODEL_CMDS: list[tuple[str, Callable[[Path, Path], list[object]]]] = [
    ("inspect", lambda d, m: ["inspect", m]),
    ("check", lambda d, m: ["check", m, "-t", "ort-cpu", "--json", d / "o.json"]),
    ("quantize", lambda d, m: ["quantize", m, "--calib", d / "calib", "-o", d / "o.onnx"]),
    ("drift", lambda d, m: ["drift", d / "m.onnx", m, "--data", d / "data", "--json", d / "o.json"]),
    ("bench", lambda d, m: ["bench", m, "-n", "2", "--json", d / "o.json"]),
]
for _mname, _mk, _words in BAD_MODELS:
    for _cname, _cmd in MODEL_CMDS:
        row(f"{_cname}: model {_mname}", lambda d, mk=_mk, c=_cmd: c(d, mk(d)), 2, *_words,
            absent=("o.json", "o.onnx"))  # fmt: skip


def _quantized(d: Path) -> Path:
    res = invoke(*map(str, _q(d, "-o", d / "q.onnx")))
    assert res.exit_code == 0, res.output
    return d / "q.onnx"


def _fp16(d: Path) -> Path:
    res = invoke("quantize", d / "m.onnx", "--precision", "fp16", "-o", d / "h.onnx")
    assert res.exit_code == 0, res.output
    return d / "h.onnx"


row("quantize an INT8 model", lambda d: ["quantize", _quantized(d), "--calib", d / "calib", "-o", d / "q2.onnx"], 2,
    "already quantized", may_change=("q.onnx",), absent=("q2.onnx",))  # fmt: skip
row("quantize an INT8 model to fp16", lambda d: ["quantize", _quantized(d), "--precision", "fp16", "-o",
    d / "q2.onnx"], 2, "already quantized", may_change=("q.onnx",))  # fmt: skip
row("quantize an FP16 model", lambda d: ["quantize", _fp16(d), "--calib", d / "calib", "-o", d / "q2.onnx"], 2,
    "already FP16", may_change=("h.onnx",))  # fmt: skip
row("quantize: exploding constant folding", lambda d: ["quantize", save(_exploding(), d / "x.onnx"), "--calib",
    d / "calib", "-o", d / "q.onnx"], 2, "x.onnx", "explode", "GiB", absent=("q.onnx",))  # fmt: skip
row("quantize: Constant stored as external data", lambda d: ["quantize", _external(d, "ce", 864, constant=True),
    "--calib", d / "calib", "-o", d / "q.onnx"], 0, may_change=("q.onnx",))  # fmt: skip
row("bench: string input", lambda d: ["bench", save(_string_input(), d / "s.onnx"), "-n", "2"], 2, "s.onnx", "string")
row("bench: input of 1 TiB", lambda d: ["bench", save(_huge_input(), d / "h.onnx"), "-n", "2"], 2, "h.onnx", "GiB")


# 4. Images and labels.
def _img_case(kind: str) -> Callable[[Path], None]:
    def put(d: Path) -> None:
        for sub in ("calib", "data"):
            p = d / sub / "img0.png"
            if kind == "corrupt":
                p.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
            elif kind == "bomb":
                _png_header(p, 60000, 60000)
            elif kind == "text":
                p.write_text("hello")
            elif kind == "truncated":
                p.write_bytes(p.read_bytes()[:60])

    return put


for _kind in ("corrupt", "bomb", "text", "truncated"):
    _words = ("img0.png", "pixels") if _kind == "bomb" else ("img0.png",)
    row(f"quantize: {_kind} image", lambda d, k=_kind: (_img_case(k)(d), _q(d, "-o", d / "q.onnx"))[1], 2, *_words,
        absent=("q.onnx",))  # fmt: skip
    row(f"drift: {_kind} image", lambda d, k=_kind: (_img_case(k)(d), _drift(d))[1], 2, *_words)
    row(f"bench: {_kind} image", lambda d, k=_kind: (_img_case(k)(d), _bench(d, "--input", d / "data"))[1], 2,
        *_words)  # fmt: skip


def _raw_name(d: Path) -> list[object]:
    """An image whose file name is not valid UTF-8 (bytes 0xff 0xfe), unlabelled: the error names it."""
    src = d / "data" / "img0.png"
    os.rename(src, os.path.join(os.fsencode(d / "data"), b"\xff\xfe.png"))
    return _drift(d)


row("drift: non-UTF-8 image file name", _raw_name, 2, "no label")
row("quantize: non-UTF-8 image file name", lambda d: (os.rename(d / "calib" / "img0.png", os.path.join(
    os.fsencode(d / "calib"), b"\xff.png")), _q(d, "-o", d / "q.onnx"))[1], 0, may_change=("q.onnx",))  # fmt: skip


def _labels(body: bytes | str, classes: bytes | None = None) -> Build:
    def build(d: Path) -> list[object]:
        raw = body.encode() if isinstance(body, str) else body
        (d / "data" / "labels.csv").write_bytes(raw)
        if classes is not None:
            (d / "data" / "classes.txt").write_bytes(classes)
        return _drift(d, "--json", d / "o.json")

    return build


_ROWS = "".join(f"img{i}.png,{i % 4}\n" for i in range(1, N_IMAGES))
for _name, _body, _classes, _words in [
    ("huge field", "file,label\nimg0.png," + "7" * 200_000 + "\n" + _ROWS, None, ("labels.csv",)),
    ("huge integer", "file,label\nimg0.png," + "9" * 5000 + "\n" + _ROWS, None, ("labels.csv",)),
    ("20-digit integer", "file,label\nimg0.png,99999999999999999999\n" + _ROWS, None, ("labels.csv",)),
    ("arabic-indic digits", "file,label\nimg0.png,\u0661\n" + _ROWS, None, ("labels.csv", "unknown class")),
    ("fullwidth digits", "file,label\nimg0.png,\uff11\n" + _ROWS, None, ("labels.csv", "unknown class")),
    ("superscript digit", "file,label\nimg0.png,\u00b2\n" + _ROWS, None, ("labels.csv",)),
    ("not UTF-8", b"file,label\nimg0.png,\xff\xfe\n" + _ROWS.encode(), None, ("labels.csv", "UTF-8")),
    ("NUL byte", "file,label\nimg0.png,0\x00\n" + _ROWS, None, ("labels.csv",)),
    ("negative label", "file,label\nimg0.png,-1\n" + _ROWS, None, ("labels.csv", "unknown class")),
    ("label too large", "file,label\nimg0.png,4\n" + _ROWS, None, ("labels.csv", "0..3")),
    ("no header", "img0.png,0\n" + _ROWS, None, ("labels.csv", "header")),
    ("only a header", "file,label\n", None, ("labels.csv", "no labels")),
    ("labelled twice", "file,label\nimg0.png,0\nimg0.png,1\n" + _ROWS, None, ("labels.csv", "twice")),
    ("classes.txt not UTF-8", "file,label\nimg0.png,a\n" + _ROWS, b"a\n\xff\nc\nd\n", ("classes.txt", "UTF-8")),
    ("classes.txt huge name", "file,label\nimg0.png,a\n" + _ROWS, b"a\n" + b"b" * 5000 + b"\nc\nd\n", ("classes.txt",)),
    ("classes.txt wrong count", "file,label\nimg0.png,a\n" + _ROWS, b"a\nb\n", ("classes.txt", "4")),
    ("markup in label", "file,label\nimg0.png,[/b][link=file:///etc/passwd]x[/link]\n" + _ROWS, None,
     ("[/b]", "[link=file:///etc/passwd]")),
    ("ANSI in label", "file,label\nimg0.png,\x1b[31mred\n" + _ROWS, None, ("labels.csv", "red")),
]:  # fmt: skip
    row(f"labels.csv: {_name}", _labels(_body, _classes), 2, *_words, absent=("o.json",))


# 5. Names from files that carry markup or terminal escapes: printed as text, never interpreted.
HOSTILE_NAMES = {
    "markup close": "[/b]",
    "hyperlink": "[link=file:///etc/passwd]click[/link]",
    "ANSI colour": "\x1b[31mred\x1b[0m",
    "OSC 8 hyperlink": "\x1b]8;;file:///etc/passwd\x07x\x1b]8;;\x07",
    "bidi override": "abc\u202edcba",
    "backspaces": "ok\x08\x08\x08evil",
}


def _no_escape_chars(_d: Path, out: str) -> None:
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out and "\x08" not in out, repr(out)


for _label, _name in HOSTILE_NAMES.items():
    for _part in ("node", "input", "output", "producer"):
        row(f"inspect: {_label} in {_part} name", lambda d, n=_name, p=_part: ["inspect", save(_named_model({p: n}),
            d / "n.onnx")], 0, check=_no_escape_chars)  # fmt: skip
    row(f"check: {_label} in node name", lambda d, n=_name: ["check", save(_named_model({"node": n}), d / "n.onnx"),
        "-t", "ethos-u55", "--all-nodes"], 0, check=_no_escape_chars)  # fmt: skip
    row(f"drift: {_label} in output name", lambda d, n=_name: ["drift", save(_named_model({"output": n}),
        d / "n.onnx"), save(_named_model({"output": n}), d / "n2.onnx"), "--data", d / "data"], 0,
        check=_no_escape_chars)  # fmt: skip


def _markup_dir(d: Path) -> list[object]:
    sub = d / "a[" / "b][bold]x"  # the printed path reads a[/b][bold]x
    sub.mkdir(parents=True)
    shutil.copy(d / "m.onnx", sub / "[link=file:x]m.onnx")
    return ["inspect", sub / "[link=file:x]m.onnx", "--json", sub / "[red]o.json"]


row(
    "inspect: markup in the path",
    _markup_dir,
    0,
    may_change=("a[/b][bold]x/[red]o.json",),
    check=lambda d, out: (_shows(out, "a[/b][bold]x/"), _shows(out, "[link=file:x]m.onnx")),
)
row("inspect: markup in a missing path", lambda d: ["inspect", d / "[/b]\x1b[2J.onnx"], 2, "[/b]")


def _spec(d: Path, folder: str = "") -> Path:
    """The bundled ort-cpu spec with a hostile description, saved under a hostile folder name."""
    text = (ROOT / "targets" / "ort-cpu.toml").read_text()
    text = text.replace('description = "', 'description = "[/b][link=file:///etc/passwd]x[/link]\\u001b[31m', 1)
    where = d / folder if folder else d
    where.mkdir(parents=True, exist_ok=True)
    (where / "hostile.toml").write_text(text)
    return where / "hostile.toml"


row("targets show: markup and ANSI in the description", lambda d: ["targets", "show", _spec(d)], 0,
    check=lambda d, out: (_no_escape_chars(d, out), _shows(out, "[/b][link=file:///etc/passwd]x[/link]")))  # fmt: skip
row("targets lint: markup in the path", lambda d: ["targets", "lint", _spec(d, "x[red]y")], 0,
    check=lambda d, out: _shows(out, "x[red]y/hostile.toml"))  # fmt: skip
row("check: markup in the target description", lambda d: ["check", d / "m.onnx", "-t", _spec(d)], 0,
    check=_no_escape_chars)  # fmt: skip
row("check --json over the target spec", lambda d: ["check", d / "m.onnx", "-t", _spec(d), "--json", d / "hostile.toml"],
    2, "destroy")  # fmt: skip


def _hostile_report_names(d: Path) -> list[object]:
    def edit(r: dict) -> None:
        r["reference"]["name"] = "m`x\x01\x1b[31m|[/b]"
        r["candidate"]["path"] = str(d / "c``\x07.onnx")

    _edit_json(d, "drift.json", edit)
    return _gate(d, "--junit", d / "j.xml", "--markdown", d / "g.md")


def _junit_and_markdown_hold(d: Path, out: str) -> None:
    import xml.etree.ElementTree as ET

    _no_escape_chars(d, out)
    root = ET.parse(d / "j.xml").getroot()  # still well-formed XML 1.0
    assert "m`x\\x01" in root.find("testsuite").get("name")
    md = (d / "g.md").read_text()
    assert "``m`x\\x01|[/b]``" in md and "\x1b" not in md and "\x07" not in md, md


row("gate: control characters and backticks in model names", _hostile_report_names, 0,
    may_change=("drift.json",), check=_junit_and_markdown_hold)  # fmt: skip


def _md_table_intact(d: Path, out: str) -> None:
    import re

    md = (d / "c.md").read_text()
    assert "\x1b" not in md and "\x07" not in md, md
    rows = [ln for ln in md.splitlines() if "stem" in ln and ln.startswith("|")]
    assert rows, md
    for ln in rows:  # 6 cells: 7 unescaped pipes, whatever the node name holds
        assert len(re.findall(r"(?<!\\)\|", ln)) == 7, ln


# A board whose NPU lists only Relu: the hostile-named Conv falls back, so its row is in the Markdown table.
_RELU_BOARD = """schema_version = 1
name = "relu-board"
description = "a board whose NPU runs Relu only"
runtime = "vela"
format = "tflite"
accelerator = "Board NPU"
fallback = "CPU"
precisions = ["int8", "float32"]
source = "doc"

[sources.doc]
url = "https://example.com/ops"
version = "1.0"

[ops.Relu]
source = "doc"
"""


def _relu_board(d: Path) -> Path:
    (d / "relu-board.toml").write_text(_RELU_BOARD)
    return d / "relu-board.toml"


row("check --markdown: pipes, backticks and ANSI in a node name", lambda d: ["check", save(_named_model(
    {"node": "stem|`x`|\x1b[31m|"}), d / "n.onnx"), "-t", _relu_board(d), "--markdown", d / "c.md"], 0,
    check=_md_table_intact)  # fmt: skip


# 6. ssh arguments that must not reach ssh as options, and a --remote-python no shell could split.
for _host in ("-Fpwn.conf", "-oProxyCommand=touch /tmp/x", "pi@-oProxyCommand=x", "-", "a b", "pi@host;id"):
    row(f"bench --host {_host!r}", lambda d, h=_host: _bench(d, "--host", h), 2, "--host")
for _py in ('python3 "', "python3 'unterminated", "-c", "   "):
    row(f"bench --remote-python {_py!r}", lambda d, p=_py: _bench(d, "--host", "pi@board", "--remote-python", p), 2,
        "--remote-python")  # fmt: skip
row("bench --ssh-option -F", lambda d: _bench(d, "--host", "pi@board", "--ssh-option", "-Fx"), 2, "--ssh-option")

# 7. Special files: written in place, never replaced.
for _dev in ("/dev/null", "/dev/stdout"):
    row(f"inspect --json {_dev}", lambda d, p=_dev: ["inspect", d / "m.onnx", "--json", _remember(p)], 0,
        check=lambda d, out, p=_dev: _not_replaced(p))  # fmt: skip
    row(f"gate --junit --markdown {_dev}", lambda d, p=_dev: _gate(d, "--junit", _remember(p), "--markdown", p), 0,
        check=lambda d, out, p=_dev: _not_replaced(p))  # fmt: skip
row("inspect --json /dev/full (disk full)", lambda d: ["inspect", d / "m.onnx", "--json", "/dev/full"], 2,
    "/dev/full", "No space left")  # fmt: skip
row("check --markdown /dev/full", lambda d: ["check", d / "m.onnx", "-t", "ort-cpu", "--markdown", "/dev/full"], 2,
    "/dev/full", "No space left")  # fmt: skip


_STATS: dict[str, os.stat_result] = {}


def _remember(p: str) -> str:
    _STATS[p] = os.stat(p)
    return p


def _not_replaced(p: str) -> None:
    """Still the same file (device and inode) and still a character device if it was one."""
    now, was = os.stat(p), _STATS[p]
    assert (now.st_dev, now.st_ino) == (was.st_dev, was.st_ino), f"{p} was replaced"
    assert stat.S_ISCHR(now.st_mode) == stat.S_ISCHR(was.st_mode), f"{p} changed type"


def _shows(out: str, text: str) -> None:
    assert text in " ".join(out.split()).replace("│ ", "").replace(" │", ""), out


# 8. Unwritable places: one line with the path and the errno text, nothing left behind.
row("inspect --json into /sys", lambda d: ["inspect", d / "m.onnx", "--json", "/sys/edgecnn-test.json"], 2,
    "/sys/edgecnn-test.json")  # fmt: skip
row("inspect --json into a missing folder", lambda d: ["inspect", d / "m.onnx", "--json", d / "no" / "o.json"], 2,
    "does not exist")  # fmt: skip
row("inspect --json onto a folder", lambda d: ["inspect", d / "m.onnx", "--json", d / "calib"], 2, "directory")
row("bench --out onto a file", lambda d: _bench(d, "--out", d / "m.onnx"), 2, "--out")

# 9. Baselines: what they are a baseline of.
row("gate --update-baseline for another model", lambda d: (_edit_baseline(d, lambda b: b.__setitem__("model", "other")),
    _gate(d, "--baseline", d / "baseline.json", "--update-baseline"))[1], 2, "other", "--force-baseline")  # fmt: skip
row("gate --update-baseline for another model version", lambda d: (_edit_baseline(d, lambda b: b.__setitem__(
    "model_sha256", "0" * 64)), _gate(d, "--baseline", d / "baseline.json", "--update-baseline"))[1], 2,
    "another version", "--force-baseline")  # fmt: skip
row("gate --update-baseline for other data", lambda d: (_edit_baseline(d, lambda b: b.__setitem__(
    "data_digest", "f" * 64)), _gate(d, "--baseline", d / "baseline.json", "--update-baseline"))[1], 2,
    "other evaluation data")  # fmt: skip
row("gate --update-baseline --force-baseline", lambda d: (_edit_baseline(d, lambda b: b.__setitem__("model", "other")),
    _gate(d, "--baseline", d / "baseline.json", "--update-baseline", "--force-baseline"))[1], 0,
    may_change=("baseline.json",), check=lambda d, out: _baseline_model(d, "m"))  # fmt: skip
row("gate --force-baseline alone", lambda d: _gate(d, "--baseline", d / "baseline.json", "--force-baseline"), 2,
    "--update-baseline")  # fmt: skip
row("gate: baseline of another model version, compared", lambda d: (_edit_baseline(d, lambda b: b.__setitem__(
    "model_sha256", "0" * 64)), _gate(d, "--baseline", d / "baseline.json"))[1], 2, "another version")  # fmt: skip


def _baseline_model(d: Path, name: str) -> None:
    b = json.loads((d / "baseline.json").read_text())
    assert b["model"] == name and len(b["model_sha256"]) == 64


# 10. Positive controls: the same commands on good input succeed and write what they should.
row("inspect ok", lambda d: ["inspect", d / "m.onnx", "--json", d / "o.json"], 0, may_change=("o.json",))
row("check ok", lambda d: ["check", d / "m.onnx", "-t", "ort-cpu", "--json", d / "o.json", "--markdown",
    d / "o.md"], 0, may_change=("o.json", "o.md"))  # fmt: skip
row("quantize ok", lambda d: _q(d, "-o", d / "q.onnx", "--json", d / "q.json"), 0, may_change=("q.onnx", "q.json"))
row("quantize over its previous output", lambda d: (shutil.copy(d / "m.onnx", d / "q.onnx"), _q(d, "-o",
    d / "q.onnx"))[1], 0, may_change=("q.onnx",))  # fmt: skip
row("drift ok", lambda d: _drift(d, "--json", d / "o.json", "--markdown", d / "o.md"), 0,
    may_change=("o.json", "o.md"))  # fmt: skip
row("gate ok", lambda d: _gate(d, "--baseline", d / "baseline.json", "--update-baseline", "--junit", d / "j.xml"), 0,
    may_change=("baseline.json", "j.xml"))  # fmt: skip


# 11. TFLite files nobody should feed: one line naming the file, for every command that reads .tflite.
def _tflite_bytes(d: Path) -> bytes:
    """A real .tflite of the tiny model (the exporter's own flatbuffer), cached per asset copy."""
    good = d / "good.tflite"
    if not good.exists():
        res = invoke("export", d / "m.onnx", "--to", "tflite", "-o", good, "--no-parity")
        assert res.exit_code == 0, res.output
    return good.read_bytes()


def _bad_tflite(kind: str) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        p = d / "bad.tflite"
        if kind == "a FIFO":
            os.mkfifo(p)
        elif kind == "a folder":
            p.mkdir()
        elif kind == "3 GiB (sparse)":
            _sparse(p, 3 << 30)
        else:
            good = _tflite_bytes(d)
            data = {
                "empty": b"",
                "wrong magic": good[:4] + b"TFL2" + good[8:],
                "truncated to 100 bytes": good[:100],
                "cut in half": good[: len(good) // 2],
                "garbage after the identifier": good[:8] + bytes(range(256)) * 4,
            }[kind]
            p.write_bytes(data)
        return p

    return make


TFLITE_CMDS: list[tuple[str, Callable[[Path, Path], list[object]]]] = [
    ("inspect", lambda d, m: ["inspect", m, "--json", d / "o.json"]),
    ("check", lambda d, m: ["check", m, "-t", "arm-cpu-xnnpack", "--json", d / "o.json"]),
    ("bench", lambda d, m: ["bench", m, "-r", "litert", "-n", "2", "--json", d / "o.json"]),
    ("drift", lambda d, m: ["drift", d / "m.onnx", m, "--data", d / "data", "-r", "litert", "--json", d / "o.json"]),
    ("profile", lambda d, m: ["profile", m, "-r", "litert", "-n", "2", "--json", d / "o.json"]),
]
for _kind in ("empty", "wrong magic", "truncated to 100 bytes", "cut in half", "garbage after the identifier",
              "a FIFO", "a folder", "3 GiB (sparse)"):  # fmt: skip
    for _cname, _cmd in TFLITE_CMDS:
        row(f"{_cname}: .tflite {_kind}", lambda d, k=_kind, c=_cmd: c(d, _bad_tflite(k)(d)), 2, "bad.tflite",
            absent=("o.json",), may_change=("good.tflite",))  # fmt: skip
row("export: a .tflite as the source", lambda d: ["export", _bad_tflite("cut in half")(d), "-o", d / "o.onnx"], 2,
    "bad.tflite", "ONNX", absent=("o.onnx",), may_change=("good.tflite",))  # fmt: skip


def _tflite_named(name: bytes) -> Build:
    """The real .tflite with every tensor renamed to a hostile name, checked and inspected."""

    def build(d: Path) -> list[object]:
        import flatbuffers
        from ai_edge_litert import schema_py_generated as schema

        m = schema.ModelT.InitFromPackedBuf(bytearray(_tflite_bytes(d)), 0)
        for i, t in enumerate(m.subgraphs[0].tensors):
            t.name = name + str(i).encode()
        b = flatbuffers.Builder(0)
        b.Finish(m.Pack(b), file_identifier=b"TFL3")
        (d / "h.tflite").write_bytes(bytes(b.Output()))
        return ["inspect", d / "h.tflite"]

    return build


for _label, _tname in [("markup", b"[/b][link=file:///etc/passwd]x[/link]"), ("ANSI", b"\x1b[31mred\x1b]8;;x\x07"),
                       ("not UTF-8", b"\xff\xfe\x9b31m")]:  # fmt: skip
    row(f"inspect: .tflite tensor names with {_label}", _tflite_named(_tname), 0, may_change=("good.tflite",),
        check=_no_escape_chars)  # fmt: skip


# 12. Markdown (GitHub renders job summaries and PR comments as HTML): a hostile name stays text.
MD_NAMES = {
    "img onerror": "<img src=x onerror=alert(1)>",
    "closing tags and script": "</td></table></details><script>alert(1)</script>",
    "link": "[click me](https://evil.example/x)",
    "tracking image": "![t](https://evil.example/t.png)",
    "pipes": "a|b||c\\\\|d",
    "entity and emphasis": "&lt;b&gt; **bold** _x_ ~~s~~",
}


def _rendered(md: str) -> tuple[str, str]:
    """(HTML, visible text) of ``md`` as a CommonMark + GFM-tables renderer shows it (raw HTML enabled)."""
    import html as _html
    import re

    from markdown_it import MarkdownIt

    page = MarkdownIt("commonmark").enable("table").render(md)
    return page, _html.unescape(re.sub(r"<[^>]+>", "\x00", page))


def _md_shows(file: str, name: str) -> Callable[[Path, str], None]:
    def check(d: Path, _out: str) -> None:
        page, text = _rendered((d / file).read_text())
        for tag in ("<img", "<script", "</details", "<a "):
            assert tag not in page, (tag, page)
        assert page.count("</table>") == page.count("<table>"), page
        assert name in text, (name, page)  # in one piece: no cell split, no markup eaten

    return check


def _hostile_desc_spec(d: Path, desc: str) -> Path:
    text = _RELU_BOARD.replace('description = "a board whose NPU runs Relu only"', f"description = {json.dumps(desc)}")
    (d / "hb.toml").write_text(text)
    return d / "hb.toml"


for _label, _mdname in MD_NAMES.items():
    row(f"check --markdown: {_label} in a node name", lambda d, n=_mdname: ["check", save(_named_model({"node": n}),
        d / "n.onnx"), "-t", _relu_board(d), "--markdown", d / "c.md"], 0, check=_md_shows("c.md", _mdname))  # fmt: skip
    row(f"check --markdown: {_label} in the target description", lambda d, n=_mdname: ["check", d / "m.onnx", "-t",
        _hostile_desc_spec(d, n), "--markdown", d / "c.md"], 0, check=_md_shows("c.md", _mdname))  # fmt: skip
    row(f"drift --markdown: {_label} in the output name", lambda d, n=_mdname: ["drift", save(_named_model(
        {"output": n}), d / "n.onnx"), save(_named_model({"output": n}), d / "n2.onnx"), "--data", d / "data",
        "--markdown", d / "d.md"], 0, check=_md_shows("d.md", _mdname))  # fmt: skip
    row(f"gate --markdown: {_label} in the model name", lambda d, n=_mdname: (_edit_json(d, "drift.json",
        lambda r: r["reference"].__setitem__("name", n)), _gate(d, "--markdown", d / "g.md"))[1], 0,
        may_change=("drift.json",), check=_md_shows("g.md", _mdname))  # fmt: skip
    row(f"gate --markdown: {_label} in the bench machine", lambda d, n=_mdname: (_edit_json(d, "bench.json",
        lambda r: r["results"][0]["machine"].__setitem__("cpu_model", n)), _gate(d, "--markdown", d / "g.md"))[1],
        0, may_change=("bench.json",), check=_md_shows("g.md", _mdname))  # fmt: skip


def test_the_markdown_check_can_fail() -> None:
    """Negative controls for ``_md_shows``: unescaped names do become HTML, links and split cells."""
    for md, name in [("x <img src=x onerror=alert(1)> y", MD_NAMES["img onerror"]),
                     ("[click me](https://evil.example/x)", MD_NAMES["link"]),
                     ("| a |\n|---|\n| a|b||c\\\\|d |\n", MD_NAMES["pipes"])]:  # fmt: skip
        page, text = _rendered(md)
        assert any(t in page for t in ("<img", "<a ")) or name not in text, page


# 13. Numbers in export and profile options.
for _opt, _val, _extra in [("--min-agreement", "nan", ()), ("--min-agreement", "101", ()),
                           ("--min-agreement", "-1", ()), ("--min-sqnr", "nan", ()), ("--min-sqnr", "inf", ()),
                           ("--min-sqnr", "-inf", ()), ("--parity-samples", "0", ()), ("--parity-samples", "-5", ()),
                           ("--threads", "100000", ()), ("--threads", "-1", ()), ("--samples", "-1", ("--calib",)),
                           ("--input-shape", "x=1x3x99999999999x16", ())]:  # fmt: skip

    def _exp(d: Path, o: str = _opt, v: str = _val, e: tuple[str, ...] = _extra) -> list[object]:
        extra = [d / "calib"] if e else []
        return ["export", d / "m.onnx", "-o", d / "o.onnx", *e, *extra, o, v]

    row(f"export {_opt} {_val}", _exp, 2, _opt.lstrip("-").split("-")[0], absent=("o.onnx",))
for _opt, _val in [("-n", "0"), ("-n", "1000000000000"), ("--warmup", "-1"), ("--threads", "100000"),
                   ("--threads", "-1"), ("--input-shape", "x=0x3x16x16"), ("--input-shape", "x=1x3x16x9223372036854775808"),
                   ("-r", "[/b]tensorrt"), ("--ov-precision", "f8")]:  # fmt: skip
    row(f"profile {_opt} {_val}", lambda d, o=_opt, v=_val: ["profile", d / "m.onnx", o, v, "--json", d / "o.json"], 2,
        absent=("o.json",))  # fmt: skip
row("profile: string input", lambda d: ["profile", save(_string_input(), d / "s.onnx"), "-n", "2"], 2, "s.onnx",
    "string")  # fmt: skip
row("profile: input of 1 TiB", lambda d: ["profile", save(_huge_input(), d / "h.onnx"), "-n", "2"], 2, "h.onnx", "GiB")
row("profile: model with no outputs", lambda d: ["profile", save(_no_outputs(), d / "n.onnx"), "-n", "2"], 2,
    "no outputs")  # fmt: skip
row("profile: decompression bomb in --input", lambda d: (_png_header(d / "data" / "img0.png", 60000, 60000),
    ["profile", d / "m.onnx", "-n", "2", "--input", d / "data"])[1], 2, "img0.png", "pixels")  # fmt: skip
row("profile: corrupt image in --input", lambda d: ((d / "data" / "img0.png").write_bytes(b"\x89PNGnope"),
    ["profile", d / "m.onnx", "-n", "2", "--input", d / "data"])[1], 2, "img0.png")  # fmt: skip
row("export: model with no outputs", lambda d: ["export", save(_no_outputs(), d / "n.onnx"), "-o", d / "o.tflite"], 2,
    "no outputs", absent=("o.tflite",))  # fmt: skip
row("export: an INT8 model with --calib", lambda d: ["export", _quantized(d), "--calib", d / "calib", "-o",
    d / "o.onnx"], 2, "already", may_change=("q.onnx",), absent=("o.onnx",))  # fmt: skip


# 14. `edgecnn run`: a hostile pipeline file is one line before any step runs.
_PIPE = """schema_version = 1
name = "x"
[model]
path = "m.onnx"
[data]
calibration = "calib"
evaluation = "data"
preprocess = "calib/preprocess.toml"
[gate]
policy = "policy.toml"
"""


def _pipe(text: str | bytes) -> Build:
    def build(d: Path) -> list[object]:
        p = d / "p.toml"
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
        return ["run", p, "--out", d / "run"]

    return build


for _label, _text, _words in [
    ("not TOML", "[[[", ("p.toml", "malformed TOML")),
    ("not UTF-8", b'name = "\xff"\n', ("p.toml", "UTF-8")),
    ("nested 5000 deep", "a = " + "[" * 5000 + "]" * 5000, ("p.toml", "nested too deeply")),
    ("unknown table", _PIPE + "[bogus]\nx = 1\n", ("p.toml", "bogus")),
    ("schema_version 99", _PIPE.replace("schema_version = 1", "schema_version = 99"), ("schema_version",)),
    ("schema_version nan", _PIPE.replace("schema_version = 1", "schema_version = nan"), ("schema_version",)),
    ("iterations nan", _PIPE + "[bench]\niterations = nan\n", ("bench.iterations",)),
    ("iterations -1", _PIPE + "[bench]\niterations = -1\n", ("bench.iterations",)),
    ("threads 1e6", _PIPE + "[bench]\nthreads = 1000000\n", ("bench.threads",)),
    ("threads inf", _PIPE + "[bench]\nthreads = inf\n", ("bench.threads",)),
    ("workers beyond int64", _PIPE + "[quantize]\nworkers = 9223372036854775807\n", ("quantize.workers",)),
    ("precisions int4", _PIPE + "[quantize]\nprecisions = ['int4']\n", ("quantize.precisions", "int8")),
    ("precisions a string", _PIPE + "[quantize]\nprecisions = 'int8'\n", ("quantize.precisions", "list")),
    ("runtime tensorrt", _PIPE + "[bench]\nruntimes = ['tensorrt']\n", ("bench.runtimes", "ort")),
    ("export format coreml", _PIPE + "[quantize]\nprecisions = ['int8']\n[export]\nformats = ['coreml']\n",
     ("export.formats",)),
    ("name '../../etc'", _PIPE.replace('name = "x"', 'name = "../../etc"'), ("name", "runs/NAME")),
    ("name ''", _PIPE.replace('name = "x"', 'name = ""'), ("name",)),
    ("name with a slash", _PIPE.replace('name = "x"', 'name = "a/b"'), ("name",)),
    ("name '..'", _PIPE.replace('name = "x"', 'name = ".."'), ("name",)),
    ("name with markup and HTML", _PIPE.replace('name = "x"', 'name = "[/b]<img src=x>"'), ("[/b]<img src=x>",)),
    ("name with ANSI", _PIPE.replace('name = "x"', 'name = "\\u001b[2J"'), ("name",)),
    ("name a list", _PIPE.replace('name = "x"', 'name = ["x"]'), ("name",)),
]:  # fmt: skip
    row(f"run: pipeline {_label}", _pipe(_text), 2, *_words, absent=("run",))
row("run: pipeline file is a FIFO", lambda d: (os.mkfifo(d / "f.toml"), ["run", d / "f.toml"])[1], 2, "f.toml",
    "not a regular file")  # fmt: skip
row("run: pipeline file is a folder", lambda d: ["run", d / "calib"], 2, "calib", "directory")
row("run: --out onto the model", lambda d: (Path(d / "p.toml").write_text(_PIPE), ["run", d / "p.toml", "--out",
    d / "m.onnx"])[1], 2, "--out", "not a folder")  # fmt: skip
row("run: --out onto the data folder", lambda d: (Path(d / "p.toml").write_text(_PIPE), ["run", d / "p.toml",
    "--out", d / "calib"])[1], 2, "--out")  # fmt: skip
row("run: --verify a model file", lambda d: ["run", "--verify", d / "m.onnx"], 2, "manifest.json")


# 15. Target specs: deep and hostile extends, wrong types, NaN and negative limits.
def _chain(d: Path, depth: int) -> Path:
    for i in range(depth):
        parent = "ort-cpu" if i == 0 else f"c{i - 1}.toml"
        (d / f"c{i}.toml").write_text(f'schema_version = 1\nname = "c{i}"\nextends = "{parent}"\n')
    return d / f"c{depth - 1}.toml"


row("targets show: extends chain 200 deep", lambda d: ["targets", "show", _chain(d, 200)], 2, "extends",
    "deeper than 16")  # fmt: skip
row("check: extends chain 200 deep", lambda d: ["check", d / "m.onnx", "-t", _chain(d, 200)], 2, "deeper than 16")
row("targets show: extends chain 10 deep (fine)", lambda d: ["targets", "show", _chain(d, 10)], 0)
row("targets lint: extends itself", lambda d: ((d / "s.toml").write_text(
    'schema_version = 1\nname = "s"\nextends = "s.toml"\n'), ["targets", "lint", d / "s.toml"])[1], 2,
    "cyclic")  # fmt: skip
for _label, _edit, _words in [
    ("description a list", lambda t: t.replace('description = "', 'description = ["x"]\nx_ = "', 1), ("description",)),
    ("nested 5000 deep", lambda t: t + "\nz = " + "[" * 5000 + "]" * 5000 + "\n", ("nested too deeply",)),
    ("not UTF-8", lambda t: t.replace("ONNX Runtime CPU EP", "\udcff"), ("UTF-8",)),
    ("schema_version nan", lambda t: t.replace("schema_version = 1", "schema_version = nan"), ("schema_version",)),
]:  # fmt: skip

    def _tspec(d: Path, e: Callable[[str], str] = _edit) -> list[object]:
        text = e((ROOT / "targets" / "ort-cpu.toml").read_text())
        (d / "t.toml").write_bytes(text.encode("utf-8", "surrogateescape"))
        return ["targets", "lint", d / "t.toml"]

    row(f"targets lint: spec {_label}", _tspec, 2, "t.toml", *_words)
for _key, _val in [("stride_max", "-3"), ("stride_max", "nan"), ("stride_max", "inf"), ("stride_max", "1e400"),
                   ("stride_max", '"3"'), ("large_stride_valid_only", "-1")]:  # fmt: skip

    def _u55(d: Path, k: str = _key, v: str = _val) -> list[object]:
        text = (ROOT / "targets" / "ethos-u55.toml").read_text()
        text = text.replace(f"\n{k} = 3\n", f"\n{k} = {v}\n", 1)
        assert f"{k} = {v}" in text
        (d / "u.toml").write_text(text)
        return ["targets", "lint", d / "u.toml"]

    row(f"targets lint: {_key} = {_val}", _u55, 2, "u.toml", _key)


# 16. Outputs that cannot be written: a read-only (root: immutable) folder or file; the old file stays.
_LOCKED: list[Path] = []


def _lock(p: Path) -> Path:
    """Make ``p`` unwritable for this user: ``chattr +i`` as root (root ignores modes), mode 0555 otherwise."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(p)], check=True, capture_output=True)
    else:
        os.chmod(p, 0o555)
    _LOCKED.append(p)
    return p


def _unlock_all() -> None:
    while _LOCKED:
        p = _LOCKED.pop()
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(p)], capture_output=True)
        else:
            os.chmod(p, 0o755)


def _ro_dir(d: Path) -> Path:
    (d / "ro").mkdir()
    (d / "ro" / "old.json").write_text("previous\n")
    return _lock(d / "ro")


for _cname, _cmd in [
    ("inspect --json", lambda d, o: ["inspect", d / "m.onnx", "--json", o]),
    ("check --markdown", lambda d, o: ["check", d / "m.onnx", "-t", "ort-cpu", "--markdown", o]),
    ("quantize -o", lambda d, o: _q(d, "-o", o)),
    ("drift --json", lambda d, o: _drift(d, "--json", o)),
    ("gate --junit", lambda d, o: _gate(d, "--junit", o)),
    ("export -o", lambda d, o: ["export", d / "m.onnx", "--to", "onnx", "--no-parity", "-o", o]),
]:
    row(f"{_cname} into a read-only folder", lambda d, c=_cmd: c(d, _ro_dir(d) / "new.json"), 2, "ro/new.json",
        absent=("ro/new.json",))  # fmt: skip
    row(f"{_cname} over a read-only file", lambda d, c=_cmd: c(d, _ro_dir(d) / "old.json"), 2, "ro/old.json")


# 17. Case variants are other files on a case-sensitive file system (written, the input untouched); the same
#     file on a case-insensitive one (refused, by inode). Either way the input survives.
def _case_variant(d: Path, name: str) -> Path:
    return d / name.upper()


def _case_sensitive() -> bool:
    with tempfile.TemporaryDirectory() as t:
        Path(t, "a").touch()
        return not Path(t, "A").exists()


_CASE_SENSITIVE = _case_sensitive()
for _cname, _cmd in [
    ("inspect --json", lambda d, o: ["inspect", d / "m.onnx", "--json", o]),
    ("quantize -o", lambda d, o: _q(d, "-o", o)),
    ("export -o", lambda d, o: ["export", d / "m.onnx", "--to", "onnx", "--no-parity", "-o", o]),
]:
    row(f"{_cname} a case variant of the model", lambda d, c=_cmd: c(d, _case_variant(d, "m.onnx")),
        0 if _CASE_SENSITIVE else 2, may_change=("M.ONNX",))  # fmt: skip


# 18. External data that points outside the model's folder is never read (the file it names holds valid weights,
#     so reading it would succeed: only a refusal gives exit 2).
def _ext_pointing(loc: str) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        md = d / "mdir"
        md.mkdir()
        w = np.random.default_rng(0).standard_normal((8, 3, 3, 3)).astype(np.float32)
        (d / "secret.bin").write_bytes(w.tobytes())
        where = loc.replace("ABS", str(d / "secret.bin"))
        if loc == "symlink":
            where = "w.bin"
            (md / "w.bin").symlink_to(d / "secret.bin")
        elif loc == "inside":
            where = "w.bin"
            (md / "w.bin").write_bytes(w.tobytes())
        t = numpy_helper.from_array(w, "w")
        t.ClearField("raw_data")
        t.data_location = TensorProto.EXTERNAL
        for k, v in (("location", where), ("offset", "0"), ("length", "864")):
            t.external_data.add(key=k, value=v)
        conv = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
        g = helper.make_graph(
            [conv], "e", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])], initializer=[t],
        )  # fmt: skip
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        m.ir_version = 8
        return save(m, md / "e.onnx")

    return make


EXT_CMDS: list[tuple[str, Callable[[Path, Path], list[object]]]] = [
    ("inspect", lambda d, m: ["inspect", m]),
    ("check", lambda d, m: ["check", m, "-t", "ort-cpu"]),
    ("quantize", lambda d, m: ["quantize", m, "--calib", d / "calib", "-o", d / "q.onnx"]),
    ("drift", lambda d, m: ["drift", m, m, "--data", d / "data"]),
    ("bench", lambda d, m: ["bench", m, "-n", "2"]),
    ("export", lambda d, m: ["export", m, "-o", d / "o.tflite"]),
    ("profile", lambda d, m: ["profile", m, "-n", "2"]),
    ("sensitivity", lambda d, m: ["sensitivity", m, "--calib", d / "calib", "--data", d / "data", "--no-cache"]),
]
for _loc, _words in [("../secret.bin", ("outside",)), ("sub/../../secret.bin", ("outside",)),
                     ("ABS", ("absolute",)), ("symlink", ("symbolic link",))]:  # fmt: skip
    for _cname, _cmd in EXT_CMDS:
        row(f"{_cname}: external data at {_loc}", lambda d, c=_cmd, loc=_loc: c(d, _ext_pointing(loc)(d)), 2,
            "e.onnx", *_words, absent=("q.onnx", "o.tflite"))  # fmt: skip
row("inspect: external data inside the folder (control)", lambda d: ["inspect", _ext_pointing("inside")(d)], 0)


# 19. Hostile names printed by profile, sensitivity, bench and export: text, never terminal control.
for _label, _name in HOSTILE_NAMES.items():
    row(f"profile: {_label} in a node name", lambda d, n=_name: ["profile", save(_named_model({"node": n}),
        d / "n.onnx"), "-n", "2", "--top", "0"], 0, check=_no_escape_chars)  # fmt: skip
for _label in ("markup close", "ANSI colour"):
    row(f"sensitivity: {_label} in a node name", lambda d, n=HOSTILE_NAMES[_label]: ["sensitivity", save(_named_model(
        {"node": n}), d / "n.onnx"), "--calib", d / "calib", "--data", d / "data", "--no-cache"], 0,
        check=_no_escape_chars)  # fmt: skip
    row(f"export: {_label} in a node name", lambda d, n=HOSTILE_NAMES[_label]: ["export", save(_named_model(
        {"node": n}), d / "n.onnx"), "-o", d / "o.tflite"], 0, may_change=("o.tflite",),
        check=_no_escape_chars)  # fmt: skip
    row(f"bench: {_label} in the model's file name", lambda d, n=HOSTILE_NAMES[_label]: ["bench", save(small_cnn(),
        d / f"{n.replace('/', '_')}.onnx"), "-n", "2"], 0, check=_no_escape_chars)  # fmt: skip


# 20. Counts of images and rows: zero, negative, beyond int64 (an error naming the option), or harmlessly capped.
for _opt, _val, _code, _words in [
    ("--calib-samples", "0", 2, ("--calib-samples",)), ("--calib-samples", "-1", 2, ("--calib-samples",)),
    ("--calib-samples", "99999999999999999999", 2, ("--calib-samples", "only 4")),
    ("--samples", "0", 2, ("--samples",)), ("--samples", "99999999999999999999", 2, ("--samples", "only 4")),
    ("--show", "0", 0, ()), ("--show", "-1", 0, ()),
]:  # fmt: skip
    row(f"sensitivity {_opt} {_val}", lambda d, o=_opt, v=_val: _sens(d, o, v), _code, *_words)
for _opt, _val, _code, _words in [
    ("--samples", "0", 2, ("--samples",)), ("--samples", "-1", 2, ("--samples",)),
    ("--samples", "99999999999999999999", 2, ("--samples", "only 4")), ("--batch", "0", 2, ("--batch",)),
    ("--batch", "-1", 2, ("--batch",)), ("--batch", "99999999999999999999", 0, ()), ("--show", "0", 0, ()),
    ("--show", "-1", 0, ()),
]:  # fmt: skip
    row(f"drift {_opt} {_val}", lambda d, o=_opt, v=_val: _drift(d, o, v), _code, *_words)
for _opt, _val, _code, _words in [
    ("--workers", "0", 2, ("--workers", "1 to 1024")), ("--workers", "100000", 2, ("--workers", "1 to 1024")),
    ("--workers", "99999999999999999999", 2, ("--workers",)), ("--batch", "-1", 2, ("--batch",)),
    ("--batch", "99999999999999999999", 0, ()), ("--samples", "0", 2, ("--samples",)),
    ("--samples", "99999999999999999999", 2, ("--samples", "only 4")),
]:  # fmt: skip
    row(f"quantize {_opt} {_val}", lambda d, o=_opt, v=_val: _q(d, "-o", d / "q.onnx", o, v), _code, *_words,
        may_change=("q.onnx",))  # fmt: skip


# 21. Special, huge and deeply nested files where a command reads a config, report, label file or writes a path
#     that is not UTF-8.
def _raw_out(d: Path, name: bytes) -> str:
    return os.fsdecode(os.path.join(os.fsencode(d), name))


def _raw_model(d: Path) -> str:
    raw = _raw_out(d, b"m\xff\xfe.onnx")
    shutil.copy(d / "m.onnx", raw)
    return raw


for _cname, _cmd in [
    ("check", lambda d: ["check", _raw_model(d), "-t", "ort-cpu"]),
    ("quantize", lambda d: ["quantize", _raw_model(d), "--calib", d / "calib", "-o", d / "q.onnx"]),
    ("drift", lambda d: ["drift", d / "m.onnx", _raw_model(d), "--data", d / "data"]),
    ("bench", lambda d: ["bench", _raw_model(d), "-n", "2"]),
    ("profile", lambda d: ["profile", _raw_model(d), "-n", "2"]),
    ("export", lambda d: ["export", _raw_model(d), "-o", d / "o.tflite"]),
    ("sensitivity", lambda d: ["sensitivity", _raw_model(d), "--calib", d / "calib", "--data", d / "data", "--no-cache"]),
    ("quantize -o", lambda d: _q(d, "-o", _raw_out(d, b"q\xff.onnx"))),
    ("inspect --json", lambda d: ["inspect", d / "m.onnx", "--json", _raw_out(d, b"o\xff.json")]),
    ("drift --markdown", lambda d: _drift(d, "--markdown", _raw_out(d, b"d\xff.md"))),
]:  # fmt: skip
    row(f"{_cname}: path not valid UTF-8", _cmd, 2, "UTF-8", absent=("q.onnx", "o.tflite"))


def _fifo(p: Path) -> Path:
    if p.exists():
        p.unlink()
    os.mkfifo(p)
    return p


for _label, _build, _words in [
    ("gate --policy FIFO", lambda d: ["gate", "--policy", _fifo(d / "f.toml"), "--drift", d / "drift.json"],
     ("f.toml", "not a regular file")),
    ("gate --drift FIFO", lambda d: ["gate", "--policy", d / "policy.toml", "--drift", _fifo(d / "f.json")],
     ("f.json", "not a regular file")),
    ("gate --baseline FIFO", lambda d: _gate(d, "--baseline", _fifo(d / "b.json")), ("b.json", "not a regular file")),
    ("gate --drift 3 GiB (sparse)", lambda d: ["gate", "--policy", d / "policy.toml", "--drift",
     _sparse(d / "f.json", 3 << 30)], ("f.json", "MiB")),
    ("gate --drift JSON nested 100000 deep", lambda d: ((d / "f.json").write_text("[" * 100000 + "]" * 100000),
     ["gate", "--policy", d / "policy.toml", "--drift", d / "f.json"])[1], ("f.json", "nested too deeply")),
    ("gate --bench JSON nested 50000 deep", lambda d: ((d / "f.json").write_text('{"a":' * 50000 + "1" + "}" * 50000),
     _gate(d, "--bench", d / "f.json"))[1], ("f.json", "nested too deeply")),
    ("gate --baseline JSON nested deep", lambda d: ((d / "baseline.json").write_text("[" * 100000 + "]" * 100000),
     _gate(d, "--baseline", d / "baseline.json"))[1], ("baseline.json", "nested too deeply")),
    ("gate policy TOML nested deep", lambda d: ((d / "p.toml").write_text("a = " + "[" * 5000 + "]" * 5000),
     ["gate", "--policy", d / "p.toml", "--drift", d / "drift.json"])[1], ("p.toml", "nested too deeply")),
    ("quantize --preprocess FIFO", lambda d: _q(d, "-o", d / "q.onnx", "--preprocess", _fifo(d / "f.toml")),
     ("f.toml", "not a regular file")),
    ("quantize preprocess.toml nested deep", lambda d: ((d / "calib" / "preprocess.toml").write_text(
     SPEC + "z = " + "[" * 5000 + "]" * 5000), _q(d, "-o", d / "q.onnx"))[1], ("preprocess.toml", "nested")),
    ("drift labels.csv FIFO", lambda d: (_fifo(d / "data" / "labels.csv"), _drift(d))[1],
     ("labels.csv", "not a regular file")),
    ("drift labels.csv 3 GiB (sparse)", lambda d: (_sparse(d / "data" / "labels.csv", 3 << 30), _drift(d))[1],
     ("labels.csv", "MiB")),
    ("check -t FIFO", lambda d: ["check", d / "m.onnx", "-t", _fifo(d / "f.toml")], ("f.toml", "not a regular file")),
    ("targets lint FIFO", lambda d: ["targets", "lint", _fifo(d / "f.toml")], ("f.toml", "not a regular file")),
    ("targets show a missing name with markup", lambda d: ["targets", "show", "[/b]nope\x1b[2J"], ("[/b]nope",)),
    ("targets lint a folder", lambda d: ["targets", "lint", d / "calib"], ("calib",)),
    ("check --input-shape 0", lambda d: ["check", d / "m.onnx", "-t", "ort-cpu", "--input-shape", "x=1x3x0x16"],
     ("--input-shape",)),
]:  # fmt: skip
    row(_label, _build, 2, *_words, absent=("q.onnx",))


# 8. Session 10: files written beside an output, malformed graphs and numbers past any setting.
def _one_op(nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto],
            inits: list[onnx.TensorProto] | None = None) -> onnx.ModelProto:  # fmt: skip
    m = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, inits or []),
                          opset_imports=[helper.make_opsetid("", 17)])  # fmt: skip
    m.ir_version = 8
    return m


_X16 = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])
_W = numpy_helper.from_array(np.random.default_rng(0).standard_normal((8, 3, 3, 3)).astype(np.float32), "w")


def _input_is_output() -> onnx.ModelProto:
    conv = helper.make_node("Conv", ["x", "w"], ["y"], name="c", pads=[1, 1, 1, 1])
    return _one_op([conv], [_X16], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16]), _X16], [_W])


def _input_shadowed() -> onnx.ModelProto:
    x = numpy_helper.from_array(np.zeros((1, 3, 16, 16), np.float32), "x")
    conv = helper.make_node("Conv", ["x", "w"], ["y"], name="c", pads=[1, 1, 1, 1])
    return _one_op([conv], [_X16], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])], [_W, x])


def _scalar_input() -> onnx.ModelProto:
    mul = helper.make_node("Mul", ["x", "k"], ["y"], name="m")
    return _one_op([mul], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
                   [numpy_helper.from_array(np.array(2.0, np.float32), "k")])  # fmt: skip


def _huge_stride() -> onnx.ModelProto:
    conv = helper.make_node("Conv", ["x", "w"], ["y"], name="c", strides=[2**62, 2**62])
    return _one_op([conv], [_X16], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 1, 1])], [_W])


def _nan_weights() -> onnx.ModelProto:
    m = small_cnn()
    t = m.graph.initializer[0]
    t.CopyFrom(numpy_helper.from_array(np.full(numpy_helper.to_array(t).shape, np.nan, np.float32), t.name))
    return m


def _empty_external(d: Path) -> Path:
    """External data with no declared length (the loader reads what is there) in a file that was emptied."""
    p = _external(d, "ext", 864)
    m = onnx.load(str(p), load_external_data=False)
    ext = m.graph.initializer[0].external_data
    keep = [(e.key, e.value) for e in ext if e.key != "length"]
    del ext[:]
    for k, v in keep:
        ext.add(key=k, value=v)
    (d / "ext.bin").write_bytes(b"")
    return save(m, p)


_BIG = "1" + "0" * 400
for _label, _build, _words in [
    ("export -o X.xml beside the model's own X.bin", lambda d: (shutil.copy(d / "m.onnx", d / "model.bin"),
     ["export", d / "model.bin", "-o", d / "model.xml"])[1], ("OpenVINO weights beside -o", "is the input")),
    ("export --json onto the IR's .bin", lambda d: ["export", d / "m.onnx", "-o", d / "ir.xml", "--json", d / "ir.bin"],
     ("OpenVINO weights beside -o", "is also the --json output")),
    ("export --json onto Vela's file", lambda d: ["export", d / "m.onnx", "--calib", d / "calib", "--target",
     "ethos-u55", "-o", d / "u.tflite", "--json", d / "u_vela.tflite"], ("Vela's compiled file", "--json")),
    ("bench --out into the image folder it reads", lambda d: (shutil.copy(d / "data" / "img0.png", d / "data" / "m-ort.png"),
     ["bench", d / "m.onnx", "--input", d / "data", "-n", "3", "--warmup", "0", "--out", d / "data"])[1],
     ("m-ort.png", "is the input")),
    ("bench --json onto a plot of --out", lambda d: ((d / "bo").mkdir(), ["bench", d / "m.onnx", "-n", "3", "--warmup",
     "0", "--out", d / "bo", "--json", d / "bo" / "m-ort.png"])[1], ("m-ort.png", "is also the --json output")),
    ("inspect: external data file emptied", lambda d: ["inspect", _empty_external(d)], ("holds 0 bytes", "ext.bin")),
    ("quantize: a graph input that is also an output", lambda d: ["quantize", save(_input_is_output(), d / "bad.onnx"),
     "--calib", d / "calib", "-o", d / "q.onnx"], ("also a graph output",)),
    ("inspect: every input shadowed by an initializer", lambda d: ["inspect", save(_input_shadowed(), d / "bad.onnx")],
     ("no inputs",)),
    ("export: a scalar input", lambda d: ["export", save(_scalar_input(), d / "bad.onnx"), "-o", d / "o.tflite"],
     ("scalar",)),
    ("export: a stride past int32", lambda d: ["export", save(_huge_stride(), d / "bad.onnx"), "-o", d / "o.tflite",
     "--no-parity"], ("bad.onnx", "32-bit")),
    ("quantize: NaN weights", lambda d: ["quantize", save(_nan_weights(), d / "bad.onnx"), "--calib", d / "calib",
     "-o", d / "q.onnx"], ("NaN/inf",)),
    ("gate policy with a 401-digit limit", lambda d: ((d / "p.toml").write_text(
     f"schema_version = 1\n[rules]\nmax_p99_ms = {_BIG}\n"), ["gate", "--policy", d / "p.toml", "--drift",
     d / "drift.json"])[1], ("p.toml", "rules.max_p99_ms", "beyond any valid")),
    ("preprocess spec with a 5000-digit integer", lambda d: ((d / "calib" / "preprocess.toml").write_text(
     "schema_version = 1\nscale = 1" + "0" * 5000 + "\n"), _q(d, "-o", d / "q.onnx"))[1], ("preprocess.toml",)),
    ("drift report with a 5000-digit number", lambda d: ((d / "f.json").write_text('{"a": 1' + "0" * 5000 + "}"),
     ["gate", "--policy", d / "policy.toml", "--drift", d / "f.json"])[1], ("f.json", "not valid JSON")),
    ("export --parity-samples past the bound", lambda d: ["export", d / "m.onnx", "-o", d / "o.tflite",
     "--parity-samples", "99999999999"], ("--parity-samples 99999999999", "1..100000")),
    ("export --from-torch factory calls sys.exit(0)", lambda d: ((d / "se.py").write_text(
     "def f():\n    raise SystemExit(0)\n"), ["export", "--from-torch", f"{d / 'se.py'}:f", "--input-shape",
     "1x3x16x16", "-o", d / "t.onnx"])[1], ("se.py", "sys.exit(0)")),
]:  # fmt: skip
    row(_label, _build, 2, *_words, absent=("q.onnx", "o.tflite", "t.onnx", "model.xml", "ir.xml"))


# -- running the table --------------------------------------------------------------------------------
def _snapshot(d: Path) -> dict[str, tuple[object, int]]:
    """Content (size, mtime and inode for the sparse multi-GiB files) and mode of every regular file."""
    out: dict[str, tuple[object, int]] = {}
    for p in d.rglob("*"):
        if p.is_file() and not p.is_symlink():
            st = p.stat()
            content = p.read_bytes() if st.st_size < 1 << 26 else (st.st_size, st.st_mtime_ns, st.st_ino)
            out[str(p.relative_to(d))] = (content, stat.S_IMODE(st.st_mode))
    return out


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """$TMPDIR for this test only, so leftovers are ours to count."""
    t = tmp_path / "tmpdir"
    t.mkdir()
    monkeypatch.setenv("TMPDIR", str(t))
    monkeypatch.setattr(tempfile, "tempdir", str(t))
    return t


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_hostile(c: Case, assets: Path, tmp_path: Path, private_tmp: Path) -> None:
    d = tmp_path / "w"
    shutil.copytree(assets, d)
    try:
        argv = [str(a) if not isinstance(a, Path) else os.fsdecode(a) for a in c.build(d)]
        before = _snapshot(d)
        res = invoke(*argv)
    finally:
        _unlock_all()
    out = res.output
    assert "Traceback" not in out, out
    assert res.exit_code == c.code, f"exit {res.exit_code}, want {c.code}: {out}"
    if c.code != 0:
        err = res.stderr
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), err
        assert "\x1b" not in err, repr(err)
        for w in c.words:
            assert w in lines[0], (w, lines[0])
    if c.check is not None:
        c.check(d, out)
    after = _snapshot(d)
    for name, (data, mode) in before.items():
        if name in c.may_change:
            continue
        assert name in after, f"{name} was removed"
        assert after[name] == (data, mode), f"{name} was modified"
    for name in c.absent:
        assert not (d / name).exists(), f"{name} was written"
    left = [p for p in d.rglob("*.tmp")] + _ours(private_tmp)
    assert not left, left


def test_the_table_is_large() -> None:
    """The issue asks for 450+ rows covering every class, over every command."""
    assert len(CASES) >= 450, len(CASES)

    covered = {"inspect", "check", "targets", "quantize", "sensitivity", "bench", "drift", "gate", "export",
               "profile", "run"}  # fmt: skip
    seen = {c.id.split(":")[0].split(" ")[0] for c in CASES}
    assert covered <= seen, covered - seen


def test_the_readme_states_the_table_size() -> None:
    """The README's "one table of about N hostile cases" stays within 5% of the table."""
    import re

    m = re.search(r"one table of about (\d+) hostile cases", (ROOT / "README.md").read_text())
    assert m is not None
    assert abs(int(m[1]) - len(CASES)) <= len(CASES) * 0.05, (int(m[1]), len(CASES))


# -- file modes ---------------------------------------------------------------------------------------
def test_new_output_honours_umask_and_overwrite_keeps_mode(assets: Path, tmp_path: Path, private_tmp: Path) -> None:
    old = os.umask(0o027)
    try:
        res = invoke("inspect", assets / "m.onnx", "--json", tmp_path / "new.json")
        assert res.exit_code == 0, res.output
        assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o640
        (tmp_path / "old.json").write_text("{}")
        os.chmod(tmp_path / "old.json", 0o604)
        res = invoke("inspect", assets / "m.onnx", "--json", tmp_path / "old.json")
        assert res.exit_code == 0, res.output
        assert stat.S_IMODE((tmp_path / "old.json").stat().st_mode) == 0o604
        assert json.loads((tmp_path / "old.json").read_text())["kind"] == "inspect"
    finally:
        os.umask(old)


def test_symlinked_output_writes_the_target_and_keeps_the_link(assets: Path, tmp_path: Path, private_tmp: Path) -> None:
    (tmp_path / "real.json").write_text("{}")
    (tmp_path / "link.json").symlink_to(tmp_path / "real.json")
    res = invoke("inspect", assets / "m.onnx", "--json", tmp_path / "link.json")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "link.json").is_symlink()
    assert json.loads((tmp_path / "real.json").read_text())["kind"] == "inspect"


# -- subprocesses: RLIMIT_FSIZE, stale temps, signals ---------------------------------------------------
def _ours(tmpdir: Path) -> list[Path]:
    """edgecnn's temp files and folders in ``tmpdir`` (runtimes may leave their own, e.g. ``.ses``)."""
    return [p for p in tmpdir.iterdir() if p.name.startswith(("edgecnn-", ".edgecnn"))]


def _env(tmpdir: Path) -> dict[str, str]:
    return {**os.environ, "TMPDIR": str(tmpdir), "PYTHONPATH": str(ROOT), "COLUMNS": "200"}


FSIZE_CMDS: list[tuple[str, Callable[[Path, Path], list[object]]]] = [
    ("inspect --json", lambda a, o: ["inspect", a / "m.onnx", "--json", o]),
    ("check --markdown", lambda a, o: ["check", a / "m.onnx", "-t", "ethos-u55", "-t", "edgetpu", "-t", "intel-npu", "--markdown", o]),
    ("quantize -o", lambda a, o: ["quantize", a / "m.onnx", "--calib", a / "calib", "-o", o]),
    ("drift --json", lambda a, o: ["drift", a / "m.onnx", a / "cand.onnx", "--data", a / "data", "--json", o]),
    ("gate --junit", lambda a, o: ["gate", "--policy", a / "policy.toml", "--drift", a / "drift.json", "--bench",
                                   a / "bench.json", "--junit", o]),
    ("export -o", lambda a, o: ["export", a / "m.onnx", "--to", "onnx", "--no-parity", "-o", o]),
]  # fmt: skip


@pytest.mark.parametrize(("name", "argv"), FSIZE_CMDS, ids=[c[0] for c in FSIZE_CMDS])
def test_file_size_limit_is_one_line_and_keeps_the_previous_file(
    name: str, argv: Callable[[Path, Path], list[object]], assets: Path, tmp_path: Path
) -> None:
    import resource

    out = tmp_path / "o.onnx"
    out.write_text("previous\n")

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (600, 600))

    proc = subprocess.run(
        [sys.executable, "-m", "edgecnn", *map(str, argv(assets, out))],
        capture_output=True, text=True, env=_env(tmp_path), preexec_fn=limit, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    line = proc.stderr.strip()
    # the file that hit the limit: the output, or a temporary file of the command's own (TMPDIR is tmp_path)
    assert line.startswith(f"error: {tmp_path}/") and "File too large" in line, line
    assert len(line.splitlines()) == 1, line
    assert out.read_text() == "previous\n"
    assert not list(tmp_path.glob(".*.tmp")) and _ours(tmp_path) == []


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_temps_of_dead_processes_are_removed_live_ones_kept(assets: Path, tmp_path: Path) -> None:
    tmpdir = tmp_path / "t"
    tmpdir.mkdir()
    dead, live = _dead_pid(), os.getpid()
    stale_dir = tmpdir / f"edgecnn-quantize-{dead}-abcd1234"
    live_dir = tmpdir / f"edgecnn-quantize-{live}-abcd1234"
    other = tmpdir / "edgecnn-notours"
    for p in (stale_dir, live_dir, other):
        p.mkdir()
        (p / "weights.bin").write_bytes(b"x")
    no_pid = tmpdir / "edgecnn-quantize-99999999999999999999-abcd1234"  # not a pid any kernel has
    no_pid.mkdir()
    staged = tmpdir / f".stdout.edgecnn-{dead}-abc.tmp"  # a write to /dev/stdout killed half-way
    staged.write_bytes(b"half")
    out = tmp_path / "q.onnx"
    stale_file = tmp_path / f".q.onnx.edgecnn-{dead}-xyz.tmp"
    live_file = tmp_path / f".q.onnx.edgecnn-{live}-xyz.tmp"
    stale_file.write_bytes(b"half")
    live_file.write_bytes(b"half")
    proc = subprocess.run(
        [sys.executable, "-m", "edgecnn", "quantize", str(assets / "m.onnx"), "--calib", str(assets / "calib"),
         "-o", str(out)], capture_output=True, text=True, env=_env(tmpdir), timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert not stale_dir.exists() and not stale_file.exists() and not staged.exists() and not no_pid.exists()
    assert live_dir.exists() and live_file.exists() and other.exists()
    live_file.unlink()
    assert sweep_stale(tmpdir) == 0  # nothing else is stale


def _wait_for(pred: Callable[[], object], proc: subprocess.Popen, what: str, timeout: float = 120) -> object:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = pred()
        if got:
            return got
        if proc.poll() is not None:
            pytest.fail(f"the command ended (exit {proc.returncode}) before {what}: {proc.stderr.read()}")
        time.sleep(0.005)
    proc.kill()
    pytest.fail(f"no {what} within {timeout} s")


@pytest.fixture(scope="module")
def many_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Enough calibration images (histograms, batch 1) that calibration is still running when the signal comes."""
    d = tmp_path_factory.mktemp("many")
    for i in range(400):
        _png(d / f"i{i:03d}.png", i, size=16)
    (d / "preprocess.toml").write_text(SPEC)
    return d


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_during_calibration_cleans_up(
    sig: int, code: int, assets: Path, many_images: Path, tmp_path: Path
) -> None:
    tmpdir = tmp_path / "t"
    tmpdir.mkdir()
    out = tmp_path / "q.onnx"
    out.write_bytes(b"previous")
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgecnn", "quantize", str(assets / "m.onnx"), "--calib", str(many_images),
         "--method", "entropy", "--batch", "1", "-o", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(tmpdir),
    )  # fmt: skip
    # marker: the calibration graph exists in the command's own temp folder
    _wait_for(lambda: list(tmpdir.glob("edgecnn-quantize-*/calib.onnx")), proc, "calibration")
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "Traceback" not in err and err.strip().startswith("error: interrupted"), err
    assert _ours(tmpdir) == []
    assert out.read_bytes() == b"previous"
    assert not list(tmp_path.glob(".*.tmp"))


def test_sigkill_leftovers_are_removed_by_the_next_run(assets: Path, many_images: Path, tmp_path: Path) -> None:
    tmpdir = tmp_path / "t"
    tmpdir.mkdir()
    argv = [sys.executable, "-m", "edgecnn", "quantize", str(assets / "m.onnx"), "--calib", str(many_images),
            "--method", "entropy", "--batch", "1", "-o", str(tmp_path / "q.onnx")]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(tmpdir))
    _wait_for(lambda: list(tmpdir.glob("edgecnn-quantize-*/calib.onnx")), proc, "calibration")
    proc.kill()
    proc.wait()
    assert list(tmpdir.glob("edgecnn-quantize-*"))  # SIGKILL cannot be handled: the folder is left ...
    res = subprocess.run(
        [sys.executable, "-m", "edgecnn", "quantize", str(assets / "m.onnx"), "--calib", str(assets / "calib"),
         "-o", str(tmp_path / "q2.onnx")], capture_output=True, text=True, env=_env(tmpdir), timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert _ours(tmpdir) == []  # ... and the next run removes it


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def test_sigterm_to_bench_stops_its_worker_and_removes_its_temp_dir(assets: Path, tmp_path: Path) -> None:
    tmpdir = tmp_path / "t"
    tmpdir.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgecnn", "bench", str(assets / "m.onnx"), "--duration", "120", "--threads", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(tmpdir),
    )  # fmt: skip
    _wait_for(lambda: list(tmpdir.glob("edgecnn-bench-*/config.json")), proc, "the worker's config")
    workers = _wait_for(lambda: _children(proc.pid), proc, "the worker process")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    for w in workers:  # type: ignore[union-attr]
        assert not Path(f"/proc/{w}").exists() or "zombie" in Path(f"/proc/{w}/status").read_text().lower()
    assert _ours(tmpdir) == []


def test_interrupted_import_is_not_a_missing_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    """A runtime import cut short by Ctrl-C is an interrupt (exit 130), not 'not installed' (exit 3)."""
    import importlib

    from edgecnn import interrupts, runtimes
    from edgecnn.errors import MissingRuntimeError

    def broken_import(name: str, *a: object) -> object:
        raise ImportError(f"partially initialized module {name!r}")

    monkeypatch.setattr(importlib, "import_module", broken_import)
    with interrupts.handling_signals():
        interrupts._received.append(signal.SIGINT)  # the handler ran while the import was under way
        with pytest.raises(KeyboardInterrupt):
            runtimes._require("ort")
    with pytest.raises(MissingRuntimeError):  # negative control: without an interrupt it is a missing runtime
        runtimes._require("ort")


# -- the sensitivity cache: keyed by everything read, a bad entry is a miss -----------------------------
def _sensitivity(assets: Path, model: Path, d: Path, cache: Path) -> dict:
    res = invoke("sensitivity", model, "--calib", assets / "calib", "--data", d, "--cache-dir", cache,
                 "--json", d.parent / "s.json")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output
    return json.loads((d.parent / "s.json").read_text())


def test_sensitivity_cache_follows_external_weights_and_distrusts_bad_entries(
    assets: Path, tmp_path: Path, private_tmp: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for i in range(N_IMAGES):
        shutil.copy(assets / "calib" / f"img{i}.png", data)
    (data / "preprocess.toml").write_text(SPEC)
    model, cache = _external(tmp_path, "ext", 864), tmp_path / "cache"
    first = _sensitivity(assets, model, data, cache)
    fresh = first["cached_layers"]  # reuse within one run (one layer INT8 = all INT8 for a one-layer model)
    full = _sensitivity(assets, model, data, cache)["cached_layers"]
    assert full > fresh  # a hit
    # the external weights change, the .onnx file does not: a miss, and a different score
    w = np.frombuffer((tmp_path / "ext.bin").read_bytes(), np.float32) * np.float32(-3.0)
    (tmp_path / "ext.bin").write_bytes(w.tobytes())
    changed = _sensitivity(assets, model, data, cache)
    assert changed["cached_layers"] == fresh
    # hand-edited or malformed entries under the right key are misses, never trusted, never a crash
    entry = max(cache.glob("sensitivity-*.json"), key=lambda p: p.stat().st_mtime)
    good = json.loads(entry.read_text())
    for bad in ({"top1_pct": None, "agreement_pct": "x", "sqnr_db": 1.0}, [1, 2],
                {"top1_pct": None, "agreement_pct": 500.0, "sqnr_db": 1.0}, {"agreement_pct": 99.0}):  # fmt: skip
        entry.write_text(json.dumps({"key": good["key"], "entries": {k: bad for k in good["entries"]}}))
        assert _sensitivity(assets, model, data, cache)["cached_layers"] == fresh
    for text in ("{not json", json.dumps({"key": good["key"], "entries": "everything"}), "\xff"):
        entry.write_text(text, encoding="latin-1")
        assert _sensitivity(assets, model, data, cache)["cached_layers"] == fresh


def test_ctrl_c_while_a_temp_is_created_is_held_until_it_is_recorded() -> None:
    """The window between creating a temp file and registering it for cleanup: an interrupt waits until it closes."""
    from edgecnn.interrupts import deferred, handling_signals

    reached = False
    with handling_signals(), pytest.raises(KeyboardInterrupt):
        with deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            reached = True  # the interrupt did not land inside the block ...
        pytest.fail("the deferred interrupt was lost")
    assert reached  # ... but right after it


def test_a_session_s_temp_folder_goes_with_its_owner_on_release_and_on_interrupt(tmp_path: Path) -> None:
    """A profiling session's folder outlives any ``with`` block: it is removed when the session is collected,
    when it is released, and -- the interrupted command's case, whose ``os._exit`` runs no finalizers -- by
    ``remove_owned`` while the session is still referenced. A real ORT profiling session on each path."""
    import gc

    from edgecnn.fsutil import remove_owned
    from edgecnn.runtimes import open_session

    model = save(small_cnn(), tmp_path / "m.onnx")
    sessions = [open_session("ort", model, threads=1, input_shapes={}, options={"profile": "1"}) for _ in range(3)]
    dirs = [s._profile_dir for s in sessions]
    assert all(d is not None and d.is_dir() and d.name.startswith(f"edgecnn-ortprof-{os.getpid()}-") for d in dirs)
    feeds = {t.name: np.zeros(t.shape, np.float32) for t in sessions[0].inputs()}
    assert sessions[0].kernel_runs(sessions[0].bind(feeds), 2)  # read the profile: its folder is not needed now
    assert not dirs[0].exists()
    del sessions[1]
    gc.collect()
    assert not dirs[1].exists()
    assert dirs[2].is_dir()  # its session is alive ...
    remove_owned()
    assert not dirs[2].exists()  # ... and the interrupt path removed it anyway


def test_a_temp_folder_whose_block_was_cut_short_goes_on_the_interrupt_exit(tmp_path: Path) -> None:
    """An interrupt raised in contextlib's frames after ``temp_dir``'s ``__enter__`` made the folder, before the
    ``with`` body, leaves its generator suspended; the interrupted command's ``os._exit`` (exit 143) never
    resumes it, so the folder must be removed by the exit path itself. `sensitivity` under a real SIGTERM left
    one behind this way. The process stops exactly there; a block that ended is not touched twice."""
    code = (
        "from edgecnn.fsutil import temp_dir\n"
        "from edgecnn.cli import _exit\n"
        "with temp_dir('done'):\n    pass\n"
        "cm = temp_dir('cut')\n"
        "cm.__enter__()\n"
        "_exit(143)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert r.returncode == 143, r.stderr
    assert _ours(tmp_path) == []
    # control: a bare os._exit (what the exit path does after its cleanup) leaves the cut-short folder
    ctl = code.replace("_exit(143)", "import os; os._exit(143)")
    r = subprocess.run([sys.executable, "-c", ctl], env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert r.returncode == 143, r.stderr
    assert [p.name.split("-")[1] for p in _ours(tmp_path)] == ["cut"]


# -- interrupts for every command that writes: a real SIGTERM/SIGINT mid-work, then nothing left behind ----
def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        kids = _children(todo.pop())
        out += kids
        todo += kids
    return out


def _pipeline_over(assets: Path, many: Path, where: Path) -> Path:
    (where / "p.toml").write_text(
        f'schema_version = 1\nname = "sig"\n[model]\npath = "{assets / "m.onnx"}"\n[data]\n'
        f'calibration = "{many}"\nevaluation = "{assets / "data"}"\npreprocess = "{many / "preprocess.toml"}"\n'
        f'[quantize]\nprecisions = ["int8"]\nmethod = "entropy"\n[gate]\npolicy = "{assets / "policy.toml"}"\n'
    )
    return where / "p.toml"


# command, argv (assets, many images, output, work folder), the temp folder that shows it is mid-work
SIGNAL_CMDS: list[tuple[str, Callable[[Path, Path, Path, Path], list[object]], str]] = [
    ("drift", lambda a, m, o, w: ["drift", a / "m.onnx", a / "cand.onnx", "--data", m, "--json", o], "edgecnn-drift-*"),
    ("sensitivity", lambda a, m, o, w: ["sensitivity", a / "m.onnx", "--calib", m, "--data", m, "--no-cache",
                                        "--json", o], "edgecnn-*"),
    ("export", lambda a, m, o, w: ["export", a / "m.onnx", "--to", "tflite", "--calib", m, "--method", "entropy",
                                   "-o", o], "edgecnn-export-*"),
    ("run", lambda a, m, o, w: ["run", _pipeline_over(a, m, w), "--out", o], "edgecnn-quantize-*"),
    ("profile", lambda a, m, o, w: ["profile", a / "m.onnx", "-n", "100000", "--refresh-ceilings", "--cache-dir", w,
                                    "--json", o], "edgecnn-*"),
]  # fmt: skip


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["TERM", "INT"])
@pytest.mark.parametrize(("name", "argv", "marker"), SIGNAL_CMDS, ids=[c[0] for c in SIGNAL_CMDS])
def test_signal_mid_work_leaves_nothing_behind(
    name: str, argv: Callable[..., list[object]], marker: str, sig: int, code: int, assets: Path, many_images: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    tmpdir = tmp_path / "t"
    tmpdir.mkdir()
    out = tmp_path / {"run": "run", "export": "out.tflite"}.get(name, "out.bin")
    if name != "run":
        out.write_bytes(b"previous")
    cmd = [sys.executable, "-m", "edgecnn", *map(str, argv(assets, many_images, out, tmp_path))]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(tmpdir))
    _wait_for(lambda: list(tmpdir.glob(marker)), proc, f"{marker} (mid-work)")
    family = _descendants(proc.pid)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "Traceback" not in err, err
    last = [ln for ln in err.splitlines() if ln.startswith("error:")][-1]
    assert last.startswith(("error: interrupted", "error: terminated")), err
    assert _ours(tmpdir) == [], _ours(tmpdir)
    for pid in family:  # no orphan: every process it started is gone (or a zombie being reaped)
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    if name == "run":  # the run folder says it was interrupted; nothing half-written in it
        assert json.loads((out / "manifest.json").read_text())["status"] == "interrupted"
        assert not list(out.rglob("*.tmp"))
    else:
        assert out.read_bytes() == b"previous"
        assert not list(tmp_path.glob(".*.tmp"))


def _blocked_on_fifo(pid: int) -> bool:
    """The process sleeps in the kernel's FIFO open (``wait_for_partner``), i.e. inside the write."""
    try:
        return Path(f"/proc/{pid}/wchan").read_text().strip() == "wait_for_partner"
    except OSError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
@pytest.mark.parametrize(
    ("name", "argv"),
    [
        ("inspect --json", lambda a, f: ["inspect", a / "m.onnx", "--json", f]),
        (
            "gate --junit",
            lambda a, f: [
                "gate",
                "--policy",
                a / "policy.toml",
                "--drift",
                a / "drift.json",
                "--bench",
                a / "bench.json",
                "--junit",
                f,
            ],
        ),
        ("quantize -o", lambda a, f: ["quantize", a / "m.onnx", "--calib", a / "calib", "-o", f]),
    ],
    ids=["inspect", "gate", "quantize"],
)
def test_signal_during_the_write_removes_the_staged_file(
    name: str, argv: Callable[[Path, Path], list[object]], sig: int, assets: Path, tmp_path: Path
) -> None:
    """An output that is a FIFO nobody reads blocks the write itself (special files are written in place from a
    staged temp file): the signal lands mid-write, deterministically, and the staged file is removed."""
    tmpdir = tmp_path / "t"
    tmpdir.mkdir()
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    cmd = [sys.executable, "-m", "edgecnn", *map(str, argv(assets, fifo))]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(tmpdir))
    _wait_for(lambda: list(tmpdir.glob(".out.fifo.edgecnn-*.tmp")), proc, "the staged output")
    _wait_for(lambda: _blocked_on_fifo(proc.pid), proc, "the blocking open of the FIFO")
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("error: interrupted"), err
    assert _ours(tmpdir) == [] and not list(tmpdir.glob(".*.tmp")), list(tmpdir.iterdir())
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # still the FIFO, never replaced


def test_closed_stdout_and_a_reader_that_goes_away(assets: Path, tmp_path: Path) -> None:
    """`edgecnn ... >&-` crashed at import (sys.stdout is None); `edgecnn ... --json F | head -1` died on
    BrokenPipeError with exit 1, no message and no F. Both now finish the work: exit 0, the file written."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "edgecnn", "inspect", str(assets / "m.onnx")]
    r = subprocess.run([*cmd, "--json", str(tmp_path / "i.json")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       text=True, env=env, close_fds=True, pass_fds=(), timeout=120,
                       preexec_fn=lambda: os.close(1))  # fmt: skip
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert json.loads((tmp_path / "i.json").read_text())["kind"] == "inspect"
    js = tmp_path / "d.json"
    drift = [sys.executable, "-m", "edgecnn", "drift", str(assets / "m.onnx"), str(assets / "cand.onnx"), "--data",
             str(assets / "data"), "--json", str(js)]  # fmt: skip
    p = subprocess.Popen(drift, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert p.stdout is not None
    p.stdout.readline()
    p.stdout.close()  # the reader goes away after one line, like `| head -1`
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0 and b"Traceback" not in err, err
    assert json.loads(js.read_text())["kind"] == "drift"


def test_run_refuses_to_write_into_its_own_calibration_folder(assets: Path, tmp_path: Path) -> None:
    """A run writes plots and models into --out; into the calibration folder, the next run calibrated on them."""
    d = tmp_path / "w"
    shutil.copytree(assets, d)
    pipe = _pipeline_over(d, d / "calib", d)
    before = sorted(p.name for p in (d / "calib").iterdir())
    res = invoke("run", pipe, "--out", d / "calib", "--force")
    assert_one_line_error(res, 2, "calibration image folder")
    assert sorted(p.name for p in (d / "calib").iterdir()) == before
