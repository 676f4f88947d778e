"""What the benchmark scripts share: paths, the 224x224 PreprocessSpec, an ORT calibration reader, the tiny CNN
of the harness benchmarks and their edgecnn-vs-peer table rows, and for the placement benchmarks: one model
quantized once per placement, and its output SQNR and top-1 agreement against FP32."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SPEC = REPO / "benchmarks" / "preprocess_224.toml"
CALIB = REPO / "calibration_data" / "calib"
EVAL = REPO / "calibration_data" / "eval"
MODELS = REPO / "benchmarks" / "models"


def ort_reader(
    images: Path, n: int, spec_path: Path = SPEC, input_name: str = "input", *, batch: int = 1
):  # -> CalibrationDataReader
    """ONNX Runtime's calibration reader over the first ``n`` images, through the same PreprocessSpec as edgecnn,
    ``batch`` images per call (the model's batch dimension must then be dynamic)."""
    import numpy as np
    from onnxruntime.quantization import CalibrationDataReader

    from edgecnn.preprocess import list_images, load_spec

    spec = load_spec(spec_path)
    files = list_images(images)[:n]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([files[i : i + batch] for i in range(0, len(files), batch)])

        def get_next(self):  # -> dict[str, np.ndarray] | None
            chunk = next(self.it, None)
            return None if chunk is None else {input_name: np.stack([spec.load(p) for p in chunk])}

    return Reader()


def tiny_model(folder: Path) -> Path:
    """The tiny CNN the harness benchmarks time (tests/onnx_builders.small_cnn), written into ``folder``."""
    sys.path.insert(0, str(REPO / "tests"))
    from onnx_builders import save, small_cnn  # tests/onnx_builders.py

    folder.mkdir(parents=True, exist_ok=True)
    return save(small_cnn(), folder / "tiny_cnn.onnx")


def vs_peer_rows(
    payload: dict[str, Any], models: list[str], peer: str, *, peer_digits: int, bold_p50: bool
) -> list[str]:
    """Table rows `| model | metric | edgecnn [spread] | peer [spread] | ratio |` for p50/mean/min/max, medians over
    the rounds; ``peer_digits``: the peer's own resolution."""
    from runner import median, spread

    lines = []
    for m in models:
        for k in ("p50", "mean", "min", "max"):
            e, b = median(payload, f"{m}/edgecnn", f"{k}_ms"), median(payload, f"{m}/{peer}", f"{k}_ms")
            se, sb = spread(payload, f"{m}/edgecnn", f"{k}_ms"), spread(payload, f"{m}/{peer}", f"{k}_ms")
            if e is None or b is None or se is None or sb is None:
                continue
            ratio = f"{e / b:.3f}" if b else "n/a"
            if bold_p50 and k == "p50":
                ratio = f"**{ratio}**"
            d = peer_digits
            lines.append(
                f"| {m} | {k} | {e:.4f} [{se[0]:.4f}-{se[1]:.4f}] | {b:.{d}f} [{sb[0]:.{d}f}-{sb[1]:.{d}f}] | {ratio} |"
            )
    return lines


def timed_p50_ms(call: Any, iters: int, warmup: int) -> float:
    """p50 in ms of ``iters`` timed calls of ``call`` after ``warmup`` untimed ones (runner.timed_ms)."""
    import numpy as np
    from runner import timed_ms

    return float(np.median(timed_ms(call, iters, warmup)))


def openvino_facts(sess: Any) -> dict[str, str]:
    """What an OpenVINO session actually ran: its inference precision and its layers counted by precision."""
    layers = sorted(sess.runtime_precisions().items(), key=lambda kv: -kv[1])
    return {"inference_precision": sess.inference_precision, "layers": " ".join(f"{k} {v}" for k, v in layers)}


def ort_executed_graph(model: str, threads: int) -> Any:
    """The graph ONNX Runtime runs for ``model`` after its optimizations (its optimized model, read back)."""
    import tempfile

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as t:
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.log_severity_level = 3
        so.optimized_model_filepath = str(Path(t) / "opt.onnx")
        ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        return onnx.load(so.optimized_model_filepath).graph


def write_placements(fp32: Path, placements: dict[str, str], samples: int) -> dict[str, Path]:
    """``fp32`` quantized by edgecnn once per placement (variant -> ``QuantizeConfig.runtime``), from the same first
    ``samples`` bundled calibration images through SPEC, each saved beside it as ``<stem>-int8-<variant>.onnx``."""
    import onnx

    from edgecnn.preprocess import load_spec
    from edgecnn.quantize.api import QuantizeConfig, quantize
    from edgecnn.quantize.dataset import ImageDataset

    ds = ImageDataset.open(CALIB, load_spec(SPEC), samples)
    out = {}
    for v, runtime in placements.items():
        q, _ = quantize(fp32, ds, QuantizeConfig(runtime=runtime))
        out[v] = fp32.with_name(f"{fp32.stem}-int8-{v}.onnx")
        onnx.save(q, str(out[v]))
    return out


def output_accuracy(model: str, reference: str, n: int, threads: int, runtime: str = "ort") -> dict[str, float]:
    """Output SQNR and top-1 agreement (axis 1) of ``model`` on ``runtime`` against FP32 ``reference`` on ONNX
    Runtime, on the first ``n`` bundled eval images through SPEC (OpenVINO with the f32 hint, so the number is the
    quantization's, not bf16's)."""
    import numpy as np

    from edgecnn.preprocess import list_images, load_spec
    from edgecnn.runtimes import open_session

    spec = load_spec(SPEC)
    xs = [spec.load(p)[None] for p in list_images(EVAL)[:n]]
    ref_s, got_s = open_session("ort", reference, threads=threads), open_session(runtime, model, threads=threads)
    ref = np.concatenate([ref_s.run({ref_s.inputs()[0].name: x})[0] for x in xs]).astype(np.float64)
    got = np.concatenate([got_s.run({got_s.inputs()[0].name: x})[0] for x in xs]).astype(np.float64)
    return {
        "sqnr_db": float(10 * np.log10(np.sum(ref**2) / max(np.sum((ref - got) ** 2), 1e-30))),
        "agreement_pct": float(100 * np.mean(ref.argmax(1) == got.argmax(1))),
    }
