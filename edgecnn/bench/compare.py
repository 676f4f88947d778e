"""``--compare``: several models (FP32, FP16, INT8...) against the first, per runtime and machine, with a
sentence whenever a model expected to be faster is not."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edgecnn.bench.harness import BenchResult
from edgecnn.bench.stats import NOISE, round_ratios, rounds_spread, rounds_verdict
from edgecnn.errors import EdgecnnError


@dataclass(frozen=True, kw_only=True)
class Comparison:
    """``result`` against ``baseline`` (same runtime and host). Ratios > 1 mean ``result`` is faster or
    larger: speedup = baseline p50 / p50; size and memory ratios = result / baseline."""

    baseline: str  # label of the baseline result
    model_name: str
    runtime: str
    host: str
    speedup_p50: float
    speedup_p99: float
    throughput_ratio: float
    size_ratio: float
    peak_rss_ratio: float
    verdict: str  # one sentence
    reasons: tuple[str, ...] = ()  # why it is not faster, from `edgecnn profile` (what the runtime executed)
    # --rounds: baseline p50 / p50 per alternating round (each a fresh process per model); empty for one round
    round_speedups: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _verdict(base: BenchResult, r: BenchResult, speedup: float, rs: tuple[float, ...]) -> str:
    where = f"on {r.runtime}" + ("" if r.machine.host == "local" else f" on {r.machine.host}")
    p = f"p50 {r.stats.p50_ms:.3f} ms vs {base.stats.p50_ms:.3f} ms{rounds_spread(rs)}"
    said = rounds_verdict(speedup, rs)
    if said == "faster":
        return f"{r.model_name} is {speedup:.2f}x faster than {base.model_name} {where} ({p})."
    if said == "same":
        return (
            f"{r.model_name} is NOT meaningfully faster than {base.model_name} {where}: {speedup:.2f}x, "
            f"within {NOISE:.0%} ({p})."
        )
    if said == "slower":
        return f"{r.model_name} is SLOWER than {base.model_name} {where}: {1 / speedup:.2f}x the latency ({p})."
    return (
        f"{r.model_name} is NOT measurably faster or slower than {base.model_name} {where}: {speedup:.2f}x at the "
        f"median, but the rounds disagree ({p}): the machine's noise is larger than the gap; more --rounds or a "
        "quieter machine decide it."
    )


# (baseline, result) -> reasons the result is not faster, in words.
Explainer = Callable[[BenchResult, BenchResult], list[str]]


def profile_explainer(base: BenchResult, r: BenchResult) -> list[str]:
    """What the runtime executed for ``r`` (float kernels in an INT8 model and why, the bf16 baseline,
    per-call overhead), from ``edgecnn profile``; local runs of ONNX models on ONNX Runtime, OpenVINO and LiteRT."""
    if r.machine.host != "local" or r.runtime not in ("ort", "openvino", "litert"):
        return []
    if not (str(base.model).lower().endswith(".onnx") and str(r.model).lower().endswith(".onnx")):
        return []
    from edgecnn.profile.compare import explain_slower

    try:
        return explain_slower(
            base.model, r.model, r.runtime, threads=r.threads_requested, input_shapes=dict(r.input_shapes)
        )
    except EdgecnnError:
        return []


def compare_results(
    results: Sequence[BenchResult], *, explain: Explainer | None = profile_explainer
) -> list[Comparison]:
    """Compare every model against the first model benchmarked, per (runtime, host). When a model is not
    faster, ``explain`` adds the reasons to its verdict."""
    out: list[Comparison] = []
    groups: dict[tuple[str, str], list[BenchResult]] = {}
    for r in results:
        groups.setdefault((r.runtime, r.machine.host), []).append(r)
    for (runtime, host), rs in groups.items():
        base = rs[0]
        for r in rs[1:]:
            speedup = base.stats.p50_ms / r.stats.p50_ms
            rs = round_ratios(base.round_p50_ms, r.round_p50_ms)
            faster = rounds_verdict(speedup, rs) == "faster"
            reasons = tuple(explain(base, r)) if explain is not None and not faster else ()
            verdict = _verdict(base, r, speedup, rs)
            if reasons:
                verdict += " Why: " + "; ".join(reasons) + "."
            out.append(
                Comparison(
                    baseline=base.label,
                    model_name=r.model_name,
                    runtime=runtime,
                    host=host,
                    speedup_p50=speedup,
                    speedup_p99=base.stats.p99_ms / r.stats.p99_ms,
                    throughput_ratio=r.stats.throughput / base.stats.throughput,
                    size_ratio=r.model_bytes / base.model_bytes,
                    peak_rss_ratio=r.memory.peak_rss / base.memory.peak_rss if base.memory.peak_rss else float("nan"),
                    verdict=verdict,
                    reasons=reasons,
                    round_speedups=rs,
                )
            )
    return out
