"""Accuracy drift between a reference and a candidate model, per-layer SQNR, sensitivity and accuracy budgets.

Public names are imported on first use (explicit and lazy), so importing the package costs nothing.
"""

from __future__ import annotations

from edgecnn.lazy import lazy_getattr

_LAZY: dict[str, str] = {
    "DriftReport": "edgecnn.drift.report:DriftReport",
    "read_report": "edgecnn.drift.report:read_report",
    "write_report": "edgecnn.drift.report:write_report",
    "evaluate_drift": "edgecnn.drift.evaluate:evaluate_drift",
    "run_sensitivity": "edgecnn.drift.sensitivity:run_sensitivity",
    "SensitivityConfig": "edgecnn.drift.sensitivity:SensitivityConfig",
    "quantize_within_budget": "edgecnn.drift.budget:quantize_within_budget",
}

__all__ = sorted(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY)
