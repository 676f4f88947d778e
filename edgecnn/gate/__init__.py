"""The CI gate: policy rules over drift and bench reports and a baseline -> a pass/fail Decision.

Public names are imported on first use (explicit and lazy).
"""

from __future__ import annotations

from edgecnn.lazy import lazy_getattr

_LAZY: dict[str, str] = {
    "Policy": "edgecnn.gate.policy:Policy",
    "RULES": "edgecnn.gate.policy:RULES",
    "load_policy": "edgecnn.gate.policy:load_policy",
    "Baseline": "edgecnn.gate.baseline:Baseline",
    "baseline_from": "edgecnn.gate.baseline:baseline_from",
    "read_baseline": "edgecnn.gate.baseline:read_baseline",
    "write_baseline": "edgecnn.gate.baseline:write_baseline",
    "Decision": "edgecnn.gate.decide:Decision",
    "RuleResult": "edgecnn.gate.decide:RuleResult",
    "Status": "edgecnn.gate.decide:Status",
    "check_inputs": "edgecnn.gate.decide:check_inputs",
    "decide": "edgecnn.gate.decide:decide",
}

__all__ = sorted(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY)
