#!/usr/bin/env python3
"""Does bias correction help? edgecnn INT8 with and without it, SQNR and agreement vs FP32.

    python benchmarks/bias_correction.py [--models sample_cnn,mbv3-block,det-block,mobilenetv2] [--calib 64] [--eval 256]

Bias correction (``edgecnn/quantize/bias_correction.py``) measures every integer Conv's mean shift, then keeps no
correction, depthwise convs only or every conv, whichever is closest to float on the calibration images (the
``scope`` column). Models: the bundled ``models/sample_cnn.onnx`` (trained, 4 depthwise convs), the fitted MobileNetV3 block and
YOLO-style detector block of ``benchmarks/real_models.py`` (built there once), and MobileNetV2 from
``benchmarks/build_models.py`` (17 depthwise convs). Each (model, setting) is quantized and evaluated in a fresh
process through `benchmarks/runner.py` (one round: quantization and ORT inference are deterministic). Held-out
images only: the calibration and evaluation sets are disjoint. SQNR is of every output against the FP32 model on
ONNX Runtime; agreement is top-1 (classifiers) or per anchor (detector: confident and same class). "Noise": the
evaluation set is split in two halves (even/odd images); a change counts as a gain or a loss only when both
halves move the same way.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CALIB, EVAL, MODELS, REPO, SPEC
from runner import Variant, common_args, median, model_names, pick_names, run_benchmark, settings_from

NAME = "bias_correction"
MODEL_NAMES = ("sample_cnn", "mbv3-block", "det-block", "mobilenetv2")
SETTINGS = ("off", "on")


def sources(name: str, calib_n: int, eval_n: int) -> dict[str, Any]:
    """Model file, calibration folder, evaluation folder, PreprocessSpec and kind of one benchmark model."""
    if name == "sample_cnn":
        data = REPO / "calibration_data"
        spec = data / "preprocess.toml"
        return {"model": REPO / "models" / "sample_cnn.onnx", "calib": data / "calib", "eval": data / "eval",
                "spec": spec, "kind": "classifier"}  # fmt: skip
    if name == "mobilenetv2":
        return {"model": MODELS / "mobilenetv2.onnx", "calib": CALIB, "eval": EVAL, "spec": SPEC, "kind": "classifier"}
    import real_models

    meta = real_models.build(name, calib_n, eval_n)
    d = real_models.WORK / name
    return {"model": d / "model.onnx", "calib": d / "calib", "eval": d / "eval",
            "spec": d / "calib" / "preprocess.toml", "kind": meta["kind"]}  # fmt: skip


def measure(
    *, model: str, calib: str, eval: str, spec: str, kind: str, setting: str, calib_n: int, eval_n: int,
    threads: int, batch: int, **_: Any,
) -> dict[str, Any]:  # fmt: skip
    """In the child: quantize with bias correction ``setting`` ("on"/"off"), then SQNR/agreement on held-out images."""
    import tempfile

    import numpy as np
    import onnx

    from edgecnn.preprocess import list_images, load_spec
    from edgecnn.quantize.api import QuantizeConfig, quantize
    from edgecnn.quantize.dataset import ImageDataset
    from edgecnn.runtimes import open_session

    sp = load_spec(Path(spec))
    q, rep = quantize(
        Path(model),
        ImageDataset.open(Path(calib), sp, calib_n),
        QuantizeConfig(bias_correction=setting == "on", threads=threads),
    )
    xs = [sp.load(p)[None] for p in list_images(Path(eval))[:eval_n]]
    with tempfile.TemporaryDirectory(prefix="edgecnn-bc-") as t:
        path = Path(t) / "q.onnx"
        onnx.save(q, str(path))
        ref, cand = open_session("ort", Path(model), threads=threads), open_session("ort", path, threads=threads)
        name = ref.inputs()[0].name
        refs = [ref.run({name: x}) for x in xs]
        outs = [cand.run({name: x}) for x in xs]

    def sqnr(idx: list[int]) -> float:
        num = den = 0.0
        for k in range(len(refs[0])):
            r = np.concatenate([refs[i][k] for i in idx]).astype(np.float64)
            c = np.concatenate([outs[i][k] for i in idx]).astype(np.float64)
            num, den = num + float(np.sum(r**2)), den + float(np.sum((r - c) ** 2))
        return float(10 * np.log10(num / max(den, 1e-30)))

    def agree(i: int) -> float:
        if kind == "classifier":
            return float(np.argmax(refs[i][0]) == np.argmax(outs[i][0]))
        r, c = refs[i][1], outs[i][1]  # scores [1, C, A]
        rk = np.where(r.max(1) > 0.25, r.argmax(1), -1)
        ck = np.where(c.max(1) > 0.25, c.argmax(1), -1)
        return float(np.mean(rk == ck))

    every = list(range(len(xs)))
    return {
        "sqnr_db": sqnr(every),
        "sqnr_even_db": sqnr(every[0::2]),
        "sqnr_odd_db": sqnr(every[1::2]),
        "agreement_pct": 100 * float(np.mean([agree(i) for i in every])),
        "convs_corrected": len(rep.bias_corrected),
        "largest_relative_shift": max(rep.bias_corrected.values(), default=0.0),
        "scope": rep.bias_correction_scope,
        "eval_images": len(xs),
    }


# ------------------------------------------------------------------ README rendering -----------------------------
def deltas(payload: dict[str, Any]) -> dict[str, dict[str, float | str]]:
    """Per model: SQNR gain (on - off) overall and on each half, agreement change, and the verdict."""
    out: dict[str, dict[str, float | str]] = {}
    for m in model_names(payload):

        def d(metric: str, m: str = m) -> float | None:
            a, b = median(payload, f"{m}/on", metric), median(payload, f"{m}/off", metric)
            return None if a is None or b is None else a - b

        vals = {k: d(k) for k in ("sqnr_db", "sqnr_even_db", "sqnr_odd_db", "agreement_pct")}
        if any(v is None for v in vals.values()):
            out[m] = {"verdict": "not measured"}
            continue
        halves = (vals["sqnr_even_db"], vals["sqnr_odd_db"])
        verdict = "helps" if min(halves) > 0 else "hurts" if max(halves) < 0 else "within noise"  # type: ignore[type-var]
        if not median(payload, f"{m}/on", "convs_corrected"):
            verdict = "no-op (no correction kept)"
        out[m] = {**vals, "verdict": verdict}  # type: ignore[dict-item]
    return out


def _scope(payload: dict[str, Any], m: str) -> str:
    """Which convs the correction kept for model ``m`` (chosen on the calibration images; "-" in older runs)."""
    v = next((x for x in payload["variants"] if x["name"] == f"{m}/on"), {})
    return next((str(r["scope"]) for r in v.get("rounds", []) if r.get("scope")), "-")


def readme_table(payload: dict[str, Any]) -> str:
    s = payload["settings"]
    lines = [
        f"edgecnn INT8 (`--method auto`, `--runtime ort`), calibration {payload['calibration_samples']} images, "
        f"evaluation on up to {payload['eval_samples']} held-out images (per model: the `eval` column), ONNX Runtime "
        f"{payload['machine']['versions']['onnxruntime']}, {s['threads']} threads; each cell one fresh process "
        "(deterministic). Halves: SQNR gain on the even / odd evaluation images.",
        "",
        "| model | eval | convs corrected (scope) | SQNR off dB | SQNR on dB | gain dB (halves) | agreement off % | "
        "agreement on % | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    dl = deltas(payload)
    for m in model_names(payload):
        g = dl[m]
        if g["verdict"] == "not measured":
            lines.append(f"| {m} | - | - | - | - | - | - | - | not measured |")
            continue
        conv = median(payload, f"{m}/on", "convs_corrected")
        scope = _scope(payload, m)
        lines.append(
            f"| {m} | {int(median(payload, f'{m}/on', 'eval_images') or 0)} | {int(conv or 0)} ({scope}) | {median(payload, f'{m}/off', 'sqnr_db'):.2f} | "
            f"{median(payload, f'{m}/on', 'sqnr_db'):.2f} | {g['sqnr_db']:+.2f} ({g['sqnr_even_db']:+.2f} / "
            f"{g['sqnr_odd_db']:+.2f}) | {median(payload, f'{m}/off', 'agreement_pct'):.1f} | "
            f"{median(payload, f'{m}/on', 'agreement_pct'):.1f} | {g['verdict']} |"
        )
    return "\n".join(lines)


def default_on(payload: dict[str, Any]) -> bool:
    """The rule for the default: it helps somewhere, hurts nowhere beyond noise, and never lowers agreement
    by more than one evaluation image's worth (of that model's own evaluation set: mbv3-block has 64 images,
    not the 256 asked for)."""
    dl = {m: g for m, g in deltas(payload).items() if g["verdict"] != "not measured"}
    if not dl:
        return False

    def one_image(m: str) -> float:
        n = median(payload, f"{m}/on", "eval_images") or float(payload.get("eval_samples", 1))
        return 100.0 / max(n, 1.0)

    return (
        any(g["verdict"] == "helps" for g in dl.values())
        and not any(g["verdict"] == "hurts" for g in dl.values())
        and all(float(g["agreement_pct"]) >= -one_image(m) - 1e-9 for m, g in dl.items())
    )


def readme_verdict(payload: dict[str, Any]) -> str:
    dl = deltas(payload)
    by = {v: [m for m, g in dl.items() if g["verdict"] == v] for v in ("helps", "within noise", "hurts")}
    noop = [m for m, g in dl.items() if str(g["verdict"]).startswith("no-op")]
    text = (
        f"Bias correction helps on {', '.join(by['helps']) or 'no model'}; within noise on "
        f"{', '.join(by['within noise']) or 'no model'}; hurts on {', '.join(by['hurts']) or 'no model'}"
        f"{'; changes nothing on ' + ', '.join(noop) + ' (no correction kept)' if noop else ''}. "
    )
    if default_on(payload):
        text += "By the rule (helps somewhere, hurts nowhere beyond noise), it is on by default."
    else:
        text += "By the rule (helps somewhere, hurts nowhere beyond noise), it stays an option (`--bias-correction`)."
    return text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODEL_NAMES))
    ap.add_argument("--calib", type=int, default=64, help="calibration images")
    ap.add_argument("--eval", type=int, default=256, help="held-out evaluation images (at most)")
    common_args(ap)
    a = ap.parse_args()
    names = pick_names("--models", a.models, MODEL_NAMES)
    if names is None:
        return 2
    variants = []
    for name in names:
        src = sources(name, a.calib, 64)
        if not Path(src["model"]).exists():
            print(f"error: {src['model']} not found; run: python benchmarks/build_models.py", file=sys.stderr)
            return 2
        for setting in SETTINGS:
            params = {k: str(v) for k, v in src.items()} | {"setting": setting, "model_name": name}
            params |= {"calib_n": a.calib, "eval_n": a.eval}
            variants.append(Variant(name=f"{name}/{setting}", fn=f"{NAME}:measure", params=params, rounds=1))
    payload = run_benchmark(
        NAME,
        variants,
        settings_from(a),
        extra={"calibration_samples": a.calib, "eval_samples": a.eval},
        results=a.results,
    )
    print(readme_table(payload))
    print("\n" + readme_verdict(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
