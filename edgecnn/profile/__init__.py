"""``edgecnn profile``: per-layer latency from the runtime's own profiler, mapped to ONNX nodes, on the
machine's measured roofline, with what the runtime really executed and why a model is slow.

Public names are imported on first use (explicit and lazy)."""

from __future__ import annotations

from edgecnn.lazy import lazy_getattr

_LAZY: dict[str, str] = {
    "ProfileReport": "edgecnn.profile.core:ProfileReport",
    "LayerProfile": "edgecnn.profile.core:LayerProfile",
    "profile_model": "edgecnn.profile.core:profile_model",
    "Ceilings": "edgecnn.profile.ceilings:Ceilings",
    "measure_ceilings": "edgecnn.profile.ceilings:measure_ceilings",
    "map_kernels": "edgecnn.profile.mapping:map_kernels",
    "ProfileComparison": "edgecnn.profile.compare:ProfileComparison",
    "compare_profiles": "edgecnn.profile.compare:compare_profiles",
    "explain_slower": "edgecnn.profile.compare:explain_slower",
    "write_roofline_png": "edgecnn.profile.report:write_roofline_png",
}

__all__ = sorted(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)
