"""Benchmark harness: raw latency samples from a child process, percentiles derived from them.

The public names are imported on first use (explicit and lazy), so that ``python -m edgecnn.bench.worker``
-- the process whose memory is measured -- does not pay for onnx or the report code.
"""

from __future__ import annotations

from edgecnn.lazy import lazy_getattr

_LAZY: dict[str, str] = {
    "BenchResult": "edgecnn.bench.harness:BenchResult",
    "BenchSettings": "edgecnn.bench.harness:BenchSettings",
    "MachineInfo": "edgecnn.bench.harness:MachineInfo",
    "MemoryStats": "edgecnn.bench.harness:MemoryStats",
    "PreparedModel": "edgecnn.bench.harness:PreparedModel",
    "prepare_model": "edgecnn.bench.harness:prepare_model",
    "run_prepared": "edgecnn.bench.harness:run_prepared",
    "run_bench": "edgecnn.bench.harness:run_bench",
    "LatencyStats": "edgecnn.bench.stats:LatencyStats",
    "latency_stats": "edgecnn.bench.stats:latency_stats",
    "Comparison": "edgecnn.bench.compare:Comparison",
    "compare_results": "edgecnn.bench.compare:compare_results",
    "SshHost": "edgecnn.bench.remote:SshHost",
    "write_report": "edgecnn.bench.report:write_report",
    "read_report": "edgecnn.bench.report:read_report",
}

__all__ = sorted(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY)
