"""Markdown rendering of a SupportReport (for CI job summaries and PR comments)."""

from __future__ import annotations

from edgecnn.check.placement import Placement, SupportReport, TargetReport
from edgecnn.report.fmt import human_count


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def summary_rows(report: SupportReport) -> list[tuple[str, list[str]]]:
    """(row label, one cell per target): shared by the console table and the Markdown report."""
    ts = report.targets
    return [
        ("accelerator", [t.accelerator for t in ts]),
        ("nodes on accelerator", [f"{t.n_accelerated}/{t.n_nodes} ({_pct(t.node_share)})" for t in ts]),
        ("MACs on accelerator", [f"{human_count(t.macs_accelerated)}/{human_count(t.macs_total)} ({_pct(t.mac_share)})" for t in ts]),
        ("accelerator partitions", [str(t.partitions) for t in ts]),
        ("copies across the boundary", [str(t.copies) for t in ts]),
        ("model runs", [("yes" if t.runnable else "NO: no fallback device") for t in ts]),
        ("verdict", [_verdict(t) for t in ts]),
    ]  # fmt: skip


def _verdict(t: TargetReport) -> str:
    if t.all_accelerated:
        return "all on accelerator"
    if not t.runnable:
        return "cannot run"
    return f"{t.n_nodes - t.n_accelerated} node(s) fall back"


def render_markdown(report: SupportReport) -> str:
    ts = report.targets
    from edgecnn.report.fmt import plain
    from edgecnn.report.markdown import code

    def cell(v: object) -> str:  # a name from a file: a code span, pipes escaped for the table
        return code(v).replace("|", "\\|")

    out = [f"# edgecnn check: {code(report.model)}", ""]
    out.append("| | " + " | ".join(cell(t.target) for t in ts) + " |")
    out.append("|---|" + "---|" * len(ts))
    for label, cells in summary_rows(report):
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    for t in ts:
        out += ["", f"## {code(t.target)}: {plain(t.description)}", ""]
        off = [n for n in t.nodes if n.placement != Placement.ACCELERATOR]
        if not off:
            out.append("Every node runs on the accelerator.")
            continue
        out += ["| node | op | precision | MACs | placement | reasons |", "|---|---|---|---:|---|---|"]
        for n in off:
            reasons = "<br>".join(plain(f.reason).replace("|", "\\|") for f in n.failures)
            out.append(
                f"| {cell(n.name)} | {cell(n.op_type)} | {n.precision} | {human_count(n.macs)} | {n.placement} | {reasons} |"
            )
        if t.advice:
            out += ["", "What to change:", ""]
            out += [f"- **{a.fix_kind}** ({a.nodes} node(s)): {plain(a.example)}" for a in t.advice]
        srcs = sorted({f.source for n in off for f in n.failures if f.source})
        if srcs:
            out += ["", "Sources: " + "; ".join(srcs)]
    return "\n".join(out) + "\n"
