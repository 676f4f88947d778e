"""ONNX -> OpenVINO IR (``.xml`` + ``.bin``) through OpenVINO's own converter.

``openvino.convert_model`` reads the ONNX graph (QDQ included: OpenVINO turns QuantizeLinear/DequantizeLinear
pairs into its FakeQuantize form and runs them as INT8), ``openvino.save_model`` writes the IR with FP32 or
FP16-compressed weights. This module is the one place outside ``edgecnn/runtimes/`` that imports openvino:
it is openvino's converter, not its runtime.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import onnx

from edgecnn.errors import BadInputError, ModelError
from edgecnn.fsutil import check_output_path, save_onnx

PRECISIONS = ("float32", "float16", "int8")


@dataclass(frozen=True, kw_only=True)
class OpenVinoExport:
    xml: Path
    bin: Path
    precision: str  # float32 | float16 | int8 (from a QDQ model; weights stay int8 in the IR)
    compressed_to_fp16: bool
    openvino_version: str


def has_qdq(model: onnx.ModelProto) -> bool:
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)


def onnx_to_openvino(model: onnx.ModelProto, output: Path, *, precision: str = "auto") -> OpenVinoExport:
    """Convert ``model`` and write ``output`` (``.xml``; the ``.bin`` beside it) atomically: both files are
    written to a temporary folder beside the output and renamed only when the converter succeeded."""
    import openvino as ov

    output = check_output_path(Path(output))
    if output.suffix.lower() != ".xml":
        raise BadInputError(f"{output}: an OpenVINO IR is written as NAME.xml (+ NAME.bin); give a .xml path")
    qdq = has_qdq(model)
    if precision == "auto":
        precision = "int8" if qdq else "float32"
    if precision not in PRECISIONS:
        raise BadInputError(
            f"--precision {precision!r} for OpenVINO IR; valid values are auto, {', '.join(PRECISIONS)}"
        )
    if precision == "int8" and not qdq:
        raise BadInputError(
            "--precision int8 for OpenVINO IR needs a quantized (QDQ) model: run `edgecnn quantize` first or pass --calib DIR"
        )
    compress = precision == "float16"
    from edgecnn.fsutil import sweep_stale, temp_dir

    sweep_stale(output.parent)  # a folder a SIGKILLed export left beside its output (its pid is gone)
    with temp_dir("ovexport", dir=output.parent) as tmpdir:  # beside the output: the renames stay on one disk
        src = tmpdir / "source.onnx"
        save_onnx(model, src)
        try:
            ov_model = ov.convert_model(str(src))
        except Exception as e:  # openvino raises its own exception types for conversion failures
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelError(f"OpenVINO cannot convert the model: {first}") from None
        tmp_xml = tmpdir / output.name
        ov.save_model(ov_model, str(tmp_xml), compress_to_fp16=compress)
        bin_path = output.with_suffix(".bin")
        os.replace(tmp_xml.with_suffix(".bin"), bin_path)
        os.replace(tmp_xml, output)
    return OpenVinoExport(
        xml=output,
        bin=output.with_suffix(".bin"),
        precision=precision,
        compressed_to_fp16=compress,
        openvino_version=ov.get_version().split("-")[0],
    )
