"""INT8 (QDQ) and FP16 quantization with streaming, mergeable calibration statistics."""
