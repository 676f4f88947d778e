#!/usr/bin/env python3
"""Measure the top-1 accuracy of models/sample_cnn.onnx on calibration_data/eval with onnxruntime.

Needs onnxruntime, numpy and Pillow (the project's .venv has them; torch is not needed)::

    .venv/bin/python scripts/eval_sample_model.py

Images are read through edgecnn.preprocess with calibration_data/preprocess.toml, i.e. the same path the
toolchain uses. Unless ``--no-card-check`` is given, the model's SHA-256 and the measured top-1 are compared
with models/sample_cnn.json and the exit status is 1 on a mismatch. ``--json`` prints the result (including
every per-image prediction) as JSON instead of text; scripts/train_sample_model.py uses that.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edgecnn.preprocess import load_spec  # noqa: E402  (needs the repository on sys.path)


def read_labels(path: Path) -> dict[str, int]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != ["file", "label"]:
            raise SystemExit(f"{path}: header {reader.fieldnames}, expected file,label")
        return {row["file"]: int(row["label"]) for row in reader}


def evaluate(model: Path, data: Path, threads: int) -> dict[str, object]:
    spec = load_spec(data / "preprocess.toml")
    labels = read_labels(data / "eval" / "labels.csv")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    (inp,) = sess.get_inputs()
    spec.check_against(inp.name, tuple(inp.shape), "float32", model.name)
    predictions: dict[str, int] = {}
    for name in sorted(labels):
        x = spec.load(data / "eval" / name)[None]
        (logits,) = sess.run(None, {inp.name: x})
        if not np.all(np.isfinite(logits)):
            raise SystemExit(f"{name}: non-finite logits {logits}")
        predictions[name] = int(np.argmax(logits[0]))
    correct = sum(predictions[n] == labels[n] for n in labels)
    return {
        "model": str(model),
        "sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
        "images": len(labels),
        "correct": correct,
        "top1": round(100.0 * correct / len(labels), 2),
        "onnxruntime_version": ort.__version__,
        "predictions": predictions,
    }


def check_card(card_path: Path, result: dict[str, object]) -> list[str]:
    card = json.loads(card_path.read_text(encoding="utf-8"))
    problems = []
    if card.get("sha256") != result["sha256"]:
        problems.append(f"sha256 {result['sha256']} differs from {card_path.name} ({card.get('sha256')})")
    if card.get("eval_top1") != result["top1"]:
        problems.append(f"top-1 {result['top1']}% differs from {card_path.name} ({card.get('eval_top1')}%)")
    if card.get("eval_images") != result["images"]:
        problems.append(f"{result['images']} eval images, {card_path.name} says {card.get('eval_images')}")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=REPO / "models" / "sample_cnn.onnx")
    ap.add_argument(
        "--data", type=Path, default=REPO / "calibration_data", help="folder with eval/ and preprocess.toml"
    )
    ap.add_argument("--card", type=Path, default=REPO / "models" / "sample_cnn.json")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    ap.add_argument("--no-card-check", action="store_true", help="do not compare with the model card")
    args = ap.parse_args(argv)

    result = evaluate(args.model, args.data, args.threads)
    problems = [] if args.no_card_check else check_card(args.card, result)
    if args.json:
        print(json.dumps({**result, "problems": problems}, indent=2))
    else:
        print(
            f"{args.model.name}: top-1 {result['top1']:.2f}% ({result['correct']}/{result['images']}) with onnxruntime"
        )
        for p in problems:
            print(f"MISMATCH: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
