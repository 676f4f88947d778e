#!/usr/bin/env python3
"""INT8 on OpenVINO's CPU plugin with and without CPU_DENORMALS_OPTIMIZATION, against its bf16 default.

    python benchmarks/ov_denormals.py [--models nudenet-320n,yolo320,ppocrv4-det] [--rounds 7]

On this AMX CPU the INT8 files of YOLO-style detectors (edgecnn's and NNCF's alike) ran no faster than the float
model in OpenVINO's default bf16. `edgecnn profile -r openvino` found where: the 3x3 int8 convolutions in
oneDNN's `brgconv_avx512_amx_i8` kernels took about twice as long as with the plugin's
CPU_DENORMALS_OPTIMIZATION (flush denormal floats to zero), while the 1x1 and `jit_*` kernels took the same
either way (docs/design-notes.md, "Session 23"). This measures what that property does end to end, for the float
model and for every INT8 file, all compiled with OpenVINO's default precision (bf16 for float layers here):

  fp32        the float model (OpenVINO runs it in bf16 on this CPU by default)
  edgecnn-ov  `edgecnn quantize --runtime openvino`
  nncf-onnx   `nncf.quantize` on the ONNX model (the faster of NNCF's two files on OpenVINO here)

each as OpenVINO compiles it by default (`default`) and with `CPU_DENORMALS_OPTIMIZATION=YES` (`flush`), which a
deployment sets in its compile_model config and `edgecnn bench --ov-property` measures. The INT8 files come from
`benchmarks/pretrained.py` (nudenet-320n, ppocrv4-det) and `benchmarks/real_models.py` (yolo320); the input is a
real image of each model's evaluation set, preprocessed by its PreprocessSpec. Every (model, file, setting) p50
runs in a fresh process, alternating rounds (7 for the README table; benchmarks/runner.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import MODELS, timed_p50_ms
from runner import (
    BENCH_DIR,
    Variant,
    common_args,
    compare,
    fmt_ratio,
    fmt_spread,
    load_note,
    model_names,
    run_benchmark,
    settings_from,
    timing_header,
)

NAME = "ov_denormals"
FILES = ("fp32", "edgecnn-ov", "nncf-onnx")
SETTINGS = ("default", "flush")
PRETRAINED = MODELS / "pretrained"
# name -> (float model, folder of INT8 files, PreprocessSpec, evaluation images, input name, input shape)
MODEL_FILES: dict[str, tuple[Path, Path, Path, Path, str, list[int]]] = {
    "nudenet-320n": (
        PRETRAINED / "nudenet-3.4.2" / "nudenet" / "320n.onnx",
        PRETRAINED / "int8" / "nudenet-320n",
        BENCH_DIR / "pretrained" / "nudenet.toml",
        PRETRAINED / "img" / "nat" / "eval",
        "images",
        [1, 3, 320, 320],
    ),
    "ppocrv4-det": (
        PRETRAINED / "rapidocr-onnxruntime-1.4.4" / "rapidocr_onnxruntime" / "models" / "ch_PP-OCRv4_det_infer.onnx",
        PRETRAINED / "int8" / "ppocrv4-det",
        BENCH_DIR / "pretrained" / "ppocr_det.toml",
        PRETRAINED / "img" / "page" / "eval",
        "x",
        [1, 3, 640, 640],
    ),
    "yolo320": (
        MODELS / "real" / "yolo320" / "model.onnx",
        MODELS / "real" / "yolo320" / "int8",
        MODELS / "real" / "yolo320" / "eval" / "preprocess.toml",
        MODELS / "real" / "yolo320" / "eval",
        "input",
        [1, 3, 320, 320],
    ),
}


def ov_p50(
    model: str, spec: str, data: str, input_name: str, shape: list[int], iterations: int, threads: int,
    options: dict[str, str],
) -> tuple[float, Any]:  # fmt: skip
    """(p50 in ms, the session): ``iterations`` timed calls (inputs bound once, GC paused) of ``model`` on OpenVINO
    with session ``options``, on the first image of ``data`` preprocessed by ``spec``."""
    from edgecnn.preprocess import list_images, load_spec
    from edgecnn.runtimes import open_session

    x = load_spec(Path(spec)).load(list_images(Path(data))[0])[None]
    sess = open_session("openvino", model, threads=threads, input_shapes={input_name: tuple(shape)}, options=options)
    call = sess.bind({sess.inputs()[0].name: x})  # type: ignore[attr-defined]
    return timed_p50_ms(call, iterations, warmup=max(3, iterations // 5)), sess


def measure(
    *, model: str, setting: str, spec: str, data: str, input_name: str, shape: list[int], iterations: int,
    threads: int, batch: int, **_: Any,
) -> dict[str, Any]:  # fmt: skip
    """p50 of ``iterations`` timed calls (inputs bound once, GC paused) of ``model`` on OpenVINO with its default
    precision, ``setting`` flush: CPU_DENORMALS_OPTIMIZATION=YES; the property as the compiled model reports it."""
    from edgecnn.runtimes import OV_PROPERTY

    options = {"inference_precision": "default"}
    if setting == "flush":
        options[OV_PROPERTY + "CPU_DENORMALS_OPTIMIZATION"] = "YES"
    p50, sess = ov_p50(model, spec, data, input_name, shape, iterations, threads, options)
    denormals = sess._compiled.get_property("CPU_DENORMALS_OPTIMIZATION")  # type: ignore[attr-defined]
    return {"p50_ms": p50, "inference_precision": sess.inference_precision, "denormals_flushed": str(bool(denormals))}  # type: ignore[attr-defined]


def readme_table(payload: dict[str, Any]) -> str:
    lines = [
        f"{timing_header(payload)}, every file compiled with OpenVINO's default precision (float layers in "
        "bf16 here). `flush`: CPU_DENORMALS_OPTIMIZATION=YES. Ratios are of the medians: `/ fp32` to the float "
        f"model with the same setting, `flush / default` of the same file. {load_note(payload)}",
        "",
        "| model | file | p50 default ms | / fp32 | p50 flush ms | / fp32 | flush / default |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in model_names(payload):
        for f in FILES:
            d, fl = f"{m}/{f}/default", f"{m}/{f}/flush"
            lines.append(
                f"| {m} | {f} | {fmt_spread(payload, d, 'p50_ms')} | {fmt_ratio(payload, f'{m}/fp32/default', d)} | "
                f"{fmt_spread(payload, fl, 'p50_ms')} | {fmt_ratio(payload, f'{m}/fp32/flush', fl)} | {fmt_ratio(payload, d, fl)} |"
            )
    return "\n".join(lines)


def readme_verdict(payload: dict[str, Any]) -> str:
    """Per INT8 file: faster than the bf16 default float model beyond noise (the [min, max] ranges over the rounds
    do not overlap), with and without the flush."""
    out = []
    for setting in SETTINGS:
        faster, same, slower = [], [], []
        for m in model_names(payload):
            for f in FILES[1:]:
                a, b = f"{m}/fp32/{setting}", f"{m}/{f}/{setting}"
                verdict = compare(payload, b, a)
                if verdict is not None:
                    {"faster": faster, "slower": slower}.get(verdict, same).append(
                        f"{m} {f} ({fmt_ratio(payload, a, b)})"
                    )
        out.append(
            f"**{setting}**: INT8 faster than the float model beyond noise: {', '.join(faster) or 'none'}; within "
            f"noise: {', '.join(same) or 'none'}; slower: {', '.join(slower) or 'none'}."
        )
    return " ".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODEL_FILES))
    ap.add_argument("--iterations", type=int, default=200, help="timed runs per measurement")
    common_args(ap)
    a = ap.parse_args()
    settings = settings_from(a)
    variants: list[Variant] = []
    for name in a.models.split(","):
        if name not in MODEL_FILES:
            print(f"error: --models {name}: valid names are {', '.join(MODEL_FILES)}", file=sys.stderr)
            return 2
        fp32, int8, spec, data, input_name, shape = MODEL_FILES[name]
        paths = {"fp32": fp32, **{f: int8 / f"{f}.onnx" for f in FILES[1:]}}
        for p in [*paths.values(), spec, data]:
            if not p.exists():
                print(
                    f"error: {p} not found; run benchmarks/pretrained.py and benchmarks/real_models.py first",
                    file=sys.stderr,
                )
                return 2
        for f in FILES:
            for setting in SETTINGS:
                params = {
                    "model": str(paths[f]), "setting": setting, "spec": str(spec), "data": str(data),
                    "input_name": input_name, "shape": shape, "iterations": a.iterations, "model_name": name,
                }  # fmt: skip
                variants.append(Variant(name=f"{name}/{f}/{setting}", fn=f"{NAME}:measure", params=params))
    payload = run_benchmark(NAME, variants, settings, extra={"iterations": a.iterations}, results=a.results)
    print(readme_table(payload))
    print(readme_verdict(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
