"""Per-target operator support: TOML specs (``spec``), rules (``rules``), placement and partitions (``check``).

Runtime-independent: nothing here imports a runtime. ``edgecnn.runtimes.query`` holds the OpenVINO and
ONNX Runtime look-ups that the agreement tests compare these verdicts with.
"""

from edgecnn.check.spec import QuantScheme, TargetSpec, available_targets, load_target

__all__ = ["QuantScheme", "TargetSpec", "available_targets", "load_target"]
