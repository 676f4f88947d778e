"""Views of a profile: the rich console tables, the JSON report (``schema_version``), the roofline PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.fsutil import atomic_path
from edgecnn.profile.core import SCHEMA_VERSION, Bound, ProfileReport
from edgecnn.report.jsonio import write_json

KIND = "profile"


def write_profile_json(path: Path, rep: ProfileReport, comparison: Any = None) -> None:
    payload: dict[str, Any] = {"profile": rep.to_dict()}
    if comparison is not None:
        payload["compare"] = comparison.to_dict()
    write_json(path, payload, kind=KIND, schema_version=SCHEMA_VERSION)


def write_roofline_png(path: Path, rep: ProfileReport, other: ProfileReport | None = None) -> Path | None:
    """Achieved GMAC/s against arithmetic intensity per layer, under the measured ceilings (log-log).
    None without matplotlib."""
    from edgecnn.report.plots import _pyplot, plots_available

    if not plots_available():
        return None
    plt = _pyplot()
    c = rep.ceilings
    fig, ax = plt.subplots(figsize=(8, 5.2), constrained_layout=True)
    pts = [(r, rep) for r in rep.layers] + ([(r, other) for r in other.layers] if other else [])
    xs = [r.intensity for r, _ in pts if r.macs and r.p50_us > 0 and r.intensity > 0]
    lo = min([*xs, 0.1]) / 2
    hi = max([*xs, 2 * max(c.gmacs.values()) / c.bandwidth_gbs]) * 2
    x = np.geomspace(lo, hi, 200)
    colors = {"fp32": "#4477aa", "bf16": "#228833", "int8": "#cc3311", "fp16": "#aa3377"}
    for prec, peak in sorted(c.gmacs.items()):
        ax.plot(x, np.minimum(peak, x * c.bandwidth_gbs), color=colors.get(prec, "#777777"), linewidth=1.2,
                label=f"{prec} ceiling {peak:.0f} GMAC/s")  # fmt: skip
    ax.plot(x, x * c.bandwidth_gbs, color="#999999", linestyle=":", linewidth=0.8,
            label=f"memory {c.bandwidth_gbs:.1f} GB/s (numpy copy)")  # fmt: skip
    for i, (r, src) in enumerate(pts):
        if not (r.macs and r.p50_us > 0 and r.intensity > 0):
            continue
        marker = "o" if src is rep else "^"
        ax.scatter(r.intensity, r.gmacs, s=12 + 300 * r.share, color=colors.get(r.precision, "#777777"),
                   marker=marker, alpha=0.75, edgecolors="black", linewidths=0.3)  # fmt: skip
        if r.share >= 0.08:
            ax.annotate(
                r.primary[-24:], (r.intensity, r.gmacs), fontsize="x-small", xytext=(3, 3), textcoords="offset points"
            )
        del i
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (MAC / byte moved)")
    ax.set_ylabel("achieved GMAC/s")
    title = f"{Path(rep.model).name} on {rep.runtime} {rep.runtime_version}, {rep.threads or 'auto'} thread(s)"
    if other is not None:
        title += f"\n(circles) vs {Path(other.model).name} (triangles)"
    ax.set_title(title + "\nmarker area = share of the time", fontsize="medium")
    ax.legend(fontsize="x-small", loc="lower right")
    ax.grid(alpha=0.3, which="both")
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return Path(path)


def _us(v: float) -> str:
    return f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def print_profile(rep: ProfileReport, console: Any, *, top: int = 0) -> None:
    from rich.table import Table

    from edgecnn.report.fmt import human_bytes, human_count, safe

    c = rep.ceilings
    console.print(
        f"[bold]{safe(rep.model)}[/] on {rep.runtime} {rep.runtime_version} ({rep.device}), {rep.threads or 'auto'} thread(s), "
        f"{rep.runs} profiled runs; float layers computed in {rep.precision_used}"
        + "".join(f"; {k}={v}" for k, v in sorted(rep.runtime_properties.items())),
        highlight=False,
    )
    layers = list(rep.layers)
    if top:
        layers = sorted(layers, key=lambda r: -r.p50_us)[:top]
    tab = Table(title="Per layer (kernel as the runtime ran it; times scaled to the measured end-to-end latency)")
    for col, just in (
        ("kernel", "left"), ("ONNX nodes", "left"), ("runtime kernel", "left"), ("prec", "left"), ("p50 us", "right"),
        ("p90", "right"), ("p99", "right"), ("%", "right"), ("MACs", "right"), ("bytes", "right"), ("GMAC/s", "right"),
        ("GB/s", "right"), ("bound", "left"), ("of roof", "right"),
    ):  # fmt: skip
        tab.add_column(col, justify=just)  # type: ignore[arg-type]
    for r in layers:
        if not r.executed and not r.members:
            continue
        members = r.members
        label = safe(", ".join(members[:3]) + (f" +{len(members) - 3}" if len(members) > 3 else ""))
        if r.origin.value != "model":
            label = f"[italic]{r.origin.value}[/]"
        tab.add_row(
            safe(r.kernel if len(r.kernel) <= 40 else "…" + r.kernel[-39:]),
            label,
            safe(r.kernel_type),
            r.precision,
            _us(r.p50_us) if r.executed else "not run",
            _us(r.p90_us) if r.executed else "",
            _us(r.p99_us) if r.executed else "",
            f"{100 * r.share:.1f}" if r.executed else "",
            human_count(r.macs) if r.macs else "",
            human_bytes(r.bytes) if r.bytes else "",
            f"{r.gmacs:.1f}" if r.macs and r.p50_us else "",
            f"{r.gbs:.2f}" if r.bytes and r.p50_us else "",
            r.bound.value if r.bound is not Bound.NONE else "",
            f"{100 * r.efficiency:.0f}%" if r.bound is not Bound.NONE else "",
        )
    console.print(tab)
    tot = Table(title="Where the time goes (us per inference)", show_header=False)
    tot.add_column("what")
    tot.add_column("value", justify="right")
    tot.add_row("end to end, p50 (plain session, bound I/O: what bench measures)", _us(rep.e2e_p50_us))
    tot.add_row("  kernels (sum of the layers' p50)", _us(rep.kernel_sum_us))
    tot.add_row("  runtime cost per call outside kernels (one-op model)", _us(c.fixed_call_us))
    tot.add_row("raw profiler kernel sum / scale applied", f"{_us(rep.raw_kernel_sum_us)} / {rep.scale:.2f}")
    tot.add_row(
        "end to end, 1st / 2nd half of the run", f"{_us(rep.e2e_p50_first_half_us)} / {_us(rep.e2e_p50_second_half_us)}"
    )
    tot.add_row("end-to-end clock (as bench)", rep.clock)
    tot.add_row("timer resolution (perf_counter_ns, back-to-back reads)", f"{rep.timer_resolution_ns:.0f} ns")
    if rep.preprocess is not None:
        p = rep.preprocess
        tot.add_row(
            f"preprocessing per batch ({p.images} images via {Path(p.spec).name})",
            f"{_us(p.per_batch_us)} (decode {_us(p.decode_us)} + resize/normalise {_us(p.transform_us)} per image; "
            f"{100 * p.share:.0f}% of preprocess+inference)",
        )
    console.print(tot)
    ceil = ", ".join(f"{k} {v:.1f} GMAC/s" for k, v in sorted(c.gmacs.items()))
    console.print(
        f"ceilings ({'cached' if c.cached else 'measured now'}, {c.cpu_model}, {c.threads or 'auto'} thread(s)): memory "
        f"{c.bandwidth_gbs:.1f} GB/s (numpy copy, one thread); {ceil} (3x3 conv through {c.runtime})",
        highlight=False,
    )
    if rep.cpu_flags:
        console.print(f"CPU features: {', '.join(rep.cpu_flags)}", highlight=False)
    for n in rep.notes:
        console.print(f"[yellow]note:[/] {safe(n)}", highlight=False)
    for f in rep.findings:
        console.print(f"[bold]→[/] {safe(f)}", highlight=False)


def print_comparison(cmp: Any, console: Any) -> None:
    from rich.table import Table

    from edgecnn.report.fmt import safe

    b, o = safe(Path(cmp.base.model).stem), safe(Path(cmp.other.model).stem)
    tab = Table(title=f"{b} vs {o} on {cmp.base.runtime}, layer by layer (us, p50)")
    for col in ("layer", "op", b, o, "delta", "precision", "kernels"):
        tab.add_column(col, justify="right" if col in (b, o, "delta") else "left")
    for r in cmp.rows:
        style = "red" if r.delta_us > 0.1 * max(r.base_us, 1e-9) else ("green" if r.delta_us < -0.1 * r.base_us else "")
        tab.add_row(
            safe(r.layer), safe(r.op), _us(r.base_us), _us(r.other_us),
            f"[{style}]{r.delta_us:+.2f}[/]" if style else f"{r.delta_us:+.2f}",
            f"{r.base_precision} -> {r.other_precision}", safe(f"{r.base_kernel} -> {r.other_kernel}"),
        )  # fmt: skip
    for r in cmp.categories:
        tab.add_row(f"[italic]{r.layer}[/]", r.op, _us(r.base_us), _us(r.other_us), f"{r.delta_us:+.2f}", "", "")
    tab.add_row("[bold]end to end[/]", "", _us(cmp.base.e2e_p50_us), _us(cmp.other.e2e_p50_us),
                f"{cmp.other.e2e_p50_us - cmp.base.e2e_p50_us:+.2f}", "", "")  # fmt: skip
    console.print(tab)
    for s in cmp.sentences:
        console.print(f"[bold]→[/] {safe(s)}", highlight=False)
