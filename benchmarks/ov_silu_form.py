#!/usr/bin/env python3
"""SiLU as exported (Sigmoid·Mul) or with Tanh in edgecnn's OpenVINO INT8 files, on CPUs with and without AMX.

    python benchmarks/ov_silu_form.py [--models nudenet-320n,yolo320] [--rounds 5]

On this AMX CPU, OpenVINO fuses a SiLU after an int8 convolution as a Swish post-op, and that convolution
(oneDNN's `brgconv_avx512_amx_i8`) ran 2-3x slower than the same convolution without it (per layer, `edgecnn
profile -r openvino`: nudenet-320n model.5 167 us; without the SiLU 32-55 us), a penalty that
CPU_DENORMALS_OPTIMIZATION removes (docs/design-notes.md, "Session 23"). Written as x·(0.5 + 0.5·tanh(x/2)), the
same function, the convolution runs the `jit_avx512_amx_i8` kernel (59 us) and the activation with the next
FakeQuantize one eltwise kernel after it (30 us). `edgecnn quantize --runtime openvino --silu-form auto` writes
that form on a CPU with AMX int8 and the exported one elsewhere; this measures both sides of that rule:

  fp32         the float model (OpenVINO's default precision: bf16 on this CPU, f32 on the ISA-limited rows)
  sigmoid      `edgecnn quantize --runtime openvino --silu-form sigmoid`
  tanh         `edgecnn quantize --runtime openvino --silu-form tanh` (the same calibration; only the form differs)

on three CPUs: this one as it is (`amx`: AMX int8 and bf16, OpenVINO's default precision), and the same CPU
limited by oneDNN's ONEDNN_MAX_CPU_ISA to `AVX512_CORE_VNNI` (`avx512-vnni`, a Cascade Lake-class CPU) and to
`AVX2_VNNI` (`avx2-vnni`, an Alder Lake-class core), each with f32 float layers (those CPUs have no bf16; the
ISA-limited rows set the f32 hint). Every (model, file, CPU) p50 runs in a fresh process, alternating rounds.
Accuracy: output SQNR against the float model on ONNX Runtime, `--eval` held-out images, each file on OpenVINO
as deployed here (default precision) and with the f32 hint (the quantization's own error).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ov_denormals
from common import MODELS
from runner import (
    REPO,
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

NAME = "ov_silu_form"
FILES = ("fp32", "sigmoid", "tanh")
# CPU -> (ONEDNN_MAX_CPU_ISA, OpenVINO inference precision)
CPUS: dict[str, tuple[str, str]] = {
    "amx": ("", "default"),
    "avx512-vnni": ("AVX512_CORE_VNNI", "f32"),
    "avx2-vnni": ("AVX2_VNNI", "f32"),
}
WORK = MODELS / "silu_form"
MODELS_WITH_SILU = ("nudenet-320n", "yolo320")


def model_files(name: str) -> tuple[Path, Path, Path, Path, str, list[int]]:
    """(float model, calibration images, PreprocessSpec, evaluation images, input name, input shape) of ``name``:
    ov_denormals' table, with the calibration images beside the evaluation ones."""
    fp32, _, spec, data, input_name, shape = ov_denormals.MODEL_FILES[name]
    return fp32, data.parent / "calib", spec, data, input_name, shape


def measure(
    *, model: str, cpu: str, spec: str, data: str, input_name: str, shape: list[int], iterations: int,
    threads: int, batch: int, **_: Any,
) -> dict[str, Any]:  # fmt: skip
    """p50 of ``iterations`` timed calls of ``model`` on OpenVINO as ``cpu`` (CPUS) runs it: the ISA limit is set
    before OpenVINO loads (this is a fresh process), and the kernels it then picked are counted by their ISA."""
    import os

    isa, precision = CPUS[cpu]
    if isa:
        os.environ["ONEDNN_MAX_CPU_ISA"] = isa
    p50, sess = ov_denormals.ov_p50(
        model, spec, data, input_name, shape, iterations, threads, {"inference_precision": precision}
    )
    info = [n.get_rt_info() for n in sess._compiled.get_runtime_model().get_ops()]  # type: ignore[attr-defined]
    kernels = {i["primitiveType"].astype(str) for i in info if i["layerType"].astype(str) == "Convolution"}
    amx = any("amx" in k for k in kernels)
    return {"p50_ms": p50, "inference_precision": sess.inference_precision, "amx_kernels": str(amx)}  # type: ignore[attr-defined]


def quantize_files(name: str, force: bool) -> dict[str, Path]:
    """The two INT8 files of ``name`` (written once by `edgecnn quantize`, kept under WORK)."""
    fp32, calib, spec, _, input_name, shape = model_files(name)
    out: dict[str, Path] = {"fp32": fp32}
    for form in FILES[1:]:
        dst = WORK / name / f"{form}.onnx"
        out[form] = dst
        if dst.exists() and not force:
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "edgecnn", "quantize", str(fp32), "-o", str(dst), "--calib", str(calib)]
        cmd += ["--preprocess", str(spec), "--input-shape", f"{input_name}={'x'.join(map(str, shape))}"]
        cmd += [
            "--samples",
            "64",
            "--runtime",
            "openvino",
            "--silu-form",
            form,
            "--json",
            str(dst.with_suffix(".json")),
        ]
        print(f"quantizing {name} ({form}) ...", flush=True)
        subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    return out


def accuracy(name: str, files: dict[str, Path], n: int, threads: int) -> dict[str, dict[str, list[float]]]:
    """file -> precision ("default", "f32") -> SQNR dB per output against the float model on ONNX Runtime."""
    import numpy as np

    from edgecnn.preprocess import list_images, load_spec
    from edgecnn.runtimes import open_session

    _, _, spec, data, input_name, shape = model_files(name)
    ps = load_spec(spec)
    xs = [ps.load(p)[None] for p in list_images(data)[:n]]
    ref_sess = open_session("ort", files["fp32"], threads=threads, input_shapes={input_name: tuple(shape)})
    refs = [ref_sess.run({input_name: x}) for x in xs]
    out: dict[str, dict[str, list[float]]] = {}
    for f in FILES[1:]:
        for precision in ("default", "f32"):
            s = open_session(
                "openvino", files[f], threads=threads, input_shapes={input_name: tuple(shape)},
                options={"inference_precision": precision},
            )  # fmt: skip
            got = [s.run({s.inputs()[0].name: x}) for x in xs]
            dbs = []
            for k in range(len(refs[0])):
                r = np.concatenate([o[k] for o in refs]).astype(np.float64)
                c = np.concatenate([o[k] for o in got]).astype(np.float64)
                dbs.append(float(10 * np.log10(np.sum(r * r) / max(np.sum((r - c) ** 2), 1e-30))))
            out.setdefault(f, {})[precision] = dbs
    return out


def readme_table(payload: dict[str, Any]) -> str:
    lines = [
        f"{timing_header(payload)}. `amx`: this CPU, OpenVINO's default precision (bf16 float layers); "
        "`avx512-vnni` / `avx2-vnni`: the same CPU limited by ONEDNN_MAX_CPU_ISA, float layers in f32. Ratios of the "
        f"medians: `tanh / sigmoid` of the two INT8 files, `/ fp32` to the float model on the same CPU. {load_note(payload)}",
        "",
        "| model | CPU | fp32 ms | sigmoid ms | / fp32 | tanh ms | / fp32 | tanh / sigmoid |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in model_names(payload):
        for cpu in CPUS:
            v = {f: f"{m}/{f}/{cpu}" for f in FILES}
            lines.append(
                f"| {m} | {cpu} | {fmt_spread(payload, v['fp32'], 'p50_ms')} | "
                f"{fmt_spread(payload, v['sigmoid'], 'p50_ms')} | {fmt_ratio(payload, v['fp32'], v['sigmoid'])} | "
                f"{fmt_spread(payload, v['tanh'], 'p50_ms')} | {fmt_ratio(payload, v['fp32'], v['tanh'])} | "
                f"{fmt_ratio(payload, v['sigmoid'], v['tanh'])} |"
            )
    acc = payload.get("accuracy", {})
    if acc:
        lines += [
            "",
            f"Output SQNR (dB, per output) against the float model on ONNX Runtime, {payload['eval_images']} held-out "
            "images; each INT8 file on OpenVINO as deployed here (default: bf16 float layers) and with the f32 hint:",
            "",
            "| model | file | SQNR default | SQNR f32 |",
            "|---|---|---|---|",
        ]
        for m, files in acc.items():
            for f, by in files.items():
                fmt = lambda dbs: " / ".join(f"{d:.2f}" for d in dbs)  # noqa: E731
                lines.append(f"| {m} | {f} | {fmt(by['default'])} | {fmt(by['f32'])} |")
    return "\n".join(lines)


def readme_verdict(payload: dict[str, Any]) -> str:
    """Per CPU: where tanh is faster or slower than sigmoid beyond noise (the rounds' ranges do not overlap)."""
    out = []
    for cpu in CPUS:
        said: dict[str, list[str]] = {"faster": [], "slower": [], "same": []}
        for m in model_names(payload):
            a, b = f"{m}/sigmoid/{cpu}", f"{m}/tanh/{cpu}"
            verdict = compare(payload, b, a)
            if verdict is not None:
                said.get(verdict, said["same"]).append(f"{m} {fmt_ratio(payload, a, b)}")
        out.append(
            f"**{cpu}**: tanh faster than sigmoid beyond noise: {', '.join(said['faster']) or 'none'}; slower: "
            f"{', '.join(said['slower']) or 'none'}; within noise: {', '.join(said['same']) or 'none'}."
        )
    return " ".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS_WITH_SILU))
    ap.add_argument("--iterations", type=int, default=200, help="timed runs per measurement")
    ap.add_argument("--eval", type=int, default=64, help="held-out images for the SQNR")
    ap.add_argument("--requantize", action="store_true", help="write the INT8 files again")
    common_args(ap)
    a = ap.parse_args()
    settings = settings_from(a)
    variants: list[Variant] = []
    acc: dict[str, Any] = {}
    for name in a.models.split(","):
        if name not in MODELS_WITH_SILU:
            print(f"error: --models {name}: valid names are {', '.join(MODELS_WITH_SILU)}", file=sys.stderr)
            return 2
        for p in model_files(name)[:4]:
            if not p.exists():
                print(
                    f"error: {p} not found; run benchmarks/pretrained.py and benchmarks/real_models.py first",
                    file=sys.stderr,
                )
                return 2
        files = quantize_files(name, a.requantize)
        acc[name] = accuracy(name, files, a.eval, settings.threads)
        _, _, spec, data, input_name, shape = model_files(name)
        for f in FILES:
            for cpu in CPUS:
                params = {
                    "model": str(files[f]), "cpu": cpu, "spec": str(spec), "data": str(data),
                    "input_name": input_name, "shape": shape, "iterations": a.iterations, "model_name": name,
                }  # fmt: skip
                variants.append(Variant(name=f"{name}/{f}/{cpu}", fn=f"{NAME}:measure", params=params))
    extra = {"iterations": a.iterations, "eval_images": a.eval, "accuracy": acc}
    payload = run_benchmark(NAME, variants, settings, extra=extra, results=a.results)
    print(readme_table(payload))
    print(readme_verdict(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
