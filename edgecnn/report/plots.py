"""Latency plots: a histogram and a per-iteration trace per run (PNG, matplotlib optional), and a terminal
histogram for when matplotlib is not installed or no output folder was asked for."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecnn.fsutil import atomic_path

INSTALL_HINT = "pip install 'edgecnn[plot]'"


@dataclass(frozen=True, kw_only=True)
class LatencySeries:
    label: str  # shown in titles and legends
    stem: str  # file name stem
    samples_ms: np.ndarray


def plots_available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


OVERLAY_PLOT = "latency_hist.png"  # several series overlaid in one histogram


def write_latency_plots(series: Sequence[LatencySeries], folder: Path) -> list[Path]:
    """``<stem>.png`` per series (histogram with p50/p99 marks + per-iteration trace) and, for several
    series, ``latency_hist.png`` overlaying them. Returns the written paths; [] without matplotlib."""
    if not plots_available() or not series:
        return []
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    paths: list[Path] = []
    for s in series:
        x = np.asarray(s.samples_ms, dtype=np.float64)
        p50, p99 = np.percentile(x, [50, 99])
        fig, (ax_h, ax_t) = plt.subplots(1, 2, figsize=(11, 3.8), constrained_layout=True)
        top = float(np.percentile(x, 99.5)) if x.size >= 200 else float(x.max())
        beyond = int((x > top).sum())
        ax_h.hist(x[x <= top], bins=min(60, max(10, x.size // 10)), color="#4477aa")
        for v, name, style in ((p50, "p50", "-"), (p99, "p99", "--")):
            ax_h.axvline(v, color="#cc3311", linestyle=style, label=f"{name} {v:.3f} ms")
        ax_h.set_xlabel("latency per batch (ms)")
        ax_h.set_ylabel("iterations")
        ax_h.legend()
        tail = f"\n({beyond} slower runs beyond p99.5 not shown, max {x.max():.3f} ms)" if beyond else ""
        ax_h.set_title(f"{s.label}: latency histogram{tail}", fontsize="medium")
        ax_t.plot(np.arange(1, x.size + 1), x, linewidth=0.7, color="#4477aa")
        ax_t.axhline(p50, color="#cc3311", linewidth=0.8)
        ax_t.set_xlabel("iteration (after warm-up)")
        ax_t.set_ylabel("latency (ms)")
        ax_t.set_title("per iteration")
        paths.append(_save(fig, folder / f"{s.stem}.png"))
        plt.close(fig)
    if len(series) > 1:
        fig, ax = plt.subplots(figsize=(8, 4), constrained_layout=True)
        hi = max(float(np.percentile(s.samples_ms, 99.5)) for s in series)
        lo = min(float(np.min(s.samples_ms)) for s in series)
        bins = np.linspace(lo, hi, 60)
        for s in series:
            ax.hist(np.clip(s.samples_ms, lo, hi), bins=bins, alpha=0.5, label=s.label)
        ax.set_xlabel("latency per batch (ms), clipped at the largest p99.5")
        ax.set_ylabel("iterations")
        ax.legend(fontsize="small")
        paths.append(_save(fig, folder / OVERLAY_PLOT))
        plt.close(fig)
    return paths


def _save(fig: object, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)  # type: ignore[attr-defined]
    return path


def text_histogram(samples_ms: np.ndarray, *, bins: int = 8, width: int = 40) -> list[str]:
    """A few lines of ``lo-hi ms | ##### count`` over p0..p99 (the slowest 1% in a last '>' row)."""
    x = np.asarray(samples_ms, dtype=np.float64)
    if x.size == 0:
        return []
    hi = float(np.percentile(x, 99)) if x.size >= 100 else float(x.max())
    lo = float(x.min())
    if hi <= lo:
        return [f"{lo:9.3f} ms | {'#' * width} {x.size}"]
    counts, edges = np.histogram(x[x <= hi], bins=bins, range=(lo, hi))
    tail = int((x > hi).sum())
    top = max(int(counts.max()), tail, 1)
    lines = [
        f"{edges[i]:9.3f}-{edges[i + 1]:<9.3f} ms | {'#' * round(width * c / top):<{width}} {c}"
        for i, c in enumerate(counts)
    ]
    if tail:
        lines.append(f"{'>' + format(hi, '.3f'):>19} ms | {'#' * round(width * tail / top):<{width}} {tail}")
    return lines


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _short(name: str, width: int = 38) -> str:
    return name if len(name) <= width else "…" + name[-(width - 1) :]


def write_layer_sqnr_plot(
    names: Sequence[str], sqnr_db: Sequence[float], path: Path, *, title: str, worst: Sequence[str] = ()
) -> Path | None:
    """Per-layer SQNR (dB) in graph order as a bar chart, the ``worst`` layers in red. None without matplotlib."""
    if not plots_available() or not names:
        return None
    plt = _pyplot()
    y = np.asarray(sqnr_db, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(max(7.0, 0.38 * len(names) + 2), 4.6), constrained_layout=True)
    bad = set(worst)
    ax.bar(np.arange(len(names)), y, color=["#cc3311" if n in bad else "#4477aa" for n in names])
    ax.set_xticks(np.arange(len(names)), [_short(n) for n in names], rotation=75, ha="right", fontsize="x-small")
    ax.set_ylabel("SQNR (dB), higher is closer to the reference")
    ax.set_title(title, fontsize="medium")
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)
    plt.close(fig)
    return path


def write_sensitivity_plot(
    names: Sequence[str], cost: Sequence[float], path: Path, *, xlabel: str, title: str
) -> Path | None:
    """Horizontal bars of each layer's cost (most sensitive on top). None without matplotlib."""
    if not plots_available() or not names:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, max(3.0, 0.3 * len(names) + 1.2)), constrained_layout=True)
    pos = np.arange(len(names))[::-1]
    ax.barh(pos, np.asarray(cost, dtype=np.float64), color="#4477aa")
    ax.set_yticks(pos, [_short(n, 48) for n in names], fontsize="x-small")
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize="medium")
    ax.grid(axis="x", alpha=0.3)
    _save(fig, path)
    plt.close(fig)
    return path
