"""Accuracy drift between a reference and a candidate model, per-layer SQNR, sensitivity and accuracy budgets.

Public names are imported on first use (explicit and lazy), so importing the package costs nothing.
"""

from __future__ import annotations

import importlib
from typing import Any

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


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'edgecnn.drift' has no attribute {name!r}")
    mod, attr = _LAZY[name].split(":")
    return getattr(importlib.import_module(mod), attr)
