"""`edgecnn export`: the deployable artefact from an ONNX model (TFLite, OpenVINO IR, ONNX) and ONNX from PyTorch.

One module per destination, each a thin adapter over a pure function:

- ``tflite_writer``: a TFLite flatbuffer builder over the schema that ships with ``ai-edge-litert``.
- ``to_tflite``: ONNX (float or QDQ INT8) -> TFLite, NCHW -> NHWC inside, scales copied from the QDQ model.
- ``to_openvino``: ONNX -> OpenVINO IR through openvino's own converter.
- ``from_torch``: PyTorch factory -> ONNX.
- ``vela``: Arm's Ethos-U compiler on an INT8 TFLite file.
"""
