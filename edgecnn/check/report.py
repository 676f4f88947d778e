"""Markdown rendering of a SupportReport (for CI job summaries and PR comments)."""

from __future__ import annotations

from edgecnn.check.no_builtin import RULE as NO_BUILTIN
from edgecnn.check.placement import NodeVerdict, Placement, SupportReport, TargetReport
from edgecnn.report.fmt import human_count


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def summary_rows(report: SupportReport) -> list[tuple[str, list[str]]]:
    """(row label, one cell per target): shared by the console table and the Markdown report.

    The MAC share sits between the node count and the count of tensor-copy ops (Transpose, Reshape, Concat,
    ...): those have no MACs, so "100% of MACs" alone can hide half of the nodes running on the CPU.
    """
    ts = report.targets
    return [
        ("accelerator", [t.accelerator for t in ts]),
        ("checked as", [_checked_as(t) for t in ts]),
        ("nodes on accelerator", [f"{t.n_accelerated}/{t.n_nodes} ({_pct(t.node_share)})" for t in ts]),
        ("MACs on accelerator", [f"{human_count(t.macs_accelerated)}/{human_count(t.macs_total)} ({_pct(t.mac_share)})" for t in ts]),
        ("tensor-copy ops on accelerator", [f"{t.n_data_movement_accelerated}/{t.n_data_movement}" for t in ts]),
        ("accelerator partitions", [str(t.partitions) for t in ts]),
        ("copies across the boundary", [str(t.copies) for t in ts]),
        ("model runs", [_runs(t) for t in ts]),
        ("verdict", [_verdict(t) for t in ts]),
    ]  # fmt: skip


def _checked_as(t: TargetReport) -> str:
    return f"{t.checked_as} (float model, as quantized for it)" if t.checked_as else "as given"


def folded_line(report: SupportReport) -> str:
    """One sentence on what was folded at the fixed input shapes before placing nodes ('' when nothing)."""
    if not report.folded:
        return ""
    parts = ", ".join(f"{op} x{n}" for op, n in report.folded.items())
    total = sum(report.folded.values())
    return f"Folded {total} shape-computation node(s) at the fixed input shapes, as a converter would: {parts}."


def _unlisted_only(t: TargetReport) -> int:
    """Nodes off the accelerator only because their op is not in the published list (0 if any other reason)."""
    off = [n for n in t.nodes if n.placement == Placement.UNSUPPORTED]
    if off and all(f.rule == "op_not_listed" for n in off for f in n.failures):
        return len(off)
    return 0


def no_builtin(n: NodeVerdict) -> bool:
    """The node cannot run because no TFLite builtin computes it (check.no_builtin), not for want of a fallback."""
    return n.placement == Placement.UNSUPPORTED and any(f.rule == NO_BUILTIN for f in n.failures)


def placement_label(n: NodeVerdict) -> str:
    """The placement column: 'cannot run: no TFLite builtin' says why an unsupported node is unsupported."""
    return "cannot run: no TFLite builtin" if no_builtin(n) else str(n.placement)


def _no_builtin_count(t: TargetReport) -> int:
    return sum(1 for n in t.nodes if no_builtin(n))


def _runs(t: TargetReport) -> str:
    if t.runnable:
        return "yes"
    if _unlisted_only(t):
        return "unknown: no fallback device"
    n_nb = _no_builtin_count(t)
    why = [f"no TFLite builtin for {n_nb} node(s)"] if n_nb else []
    if not why or any(n.placement == Placement.UNSUPPORTED and not no_builtin(n) for n in t.nodes):
        why.append("no fallback device")
    return "NO: " + "; ".join(why)


def _verdict(t: TargetReport) -> str:
    if t.all_accelerated:
        return "all on accelerator"
    if not t.runnable and _unlisted_only(t):
        return f"{_unlisted_only(t)} node(s) not in the published list: confirm with the vendor's compiler"
    if not t.runnable:
        n_nb = _no_builtin_count(t)
        return f"cannot run: no TFLite builtin for {n_nb} node(s)" if n_nb else "cannot run"
    return f"{t.n_nodes - t.n_accelerated} node(s) fall back"


def render_markdown(report: SupportReport) -> str:
    """Every string from the model or the spec goes through ``report.markdown`` (``code``/``md_text``/``table``)."""
    from edgecnn.report.markdown import Md, code, md_text, table

    ts = report.targets
    out = [f"# edgecnn check: {code(report.model)}", ""]
    out.append(table(["", *(code(t.target) for t in ts)], [[label, *cells] for label, cells in summary_rows(report)]))
    if folded_line(report):
        out += ["", md_text(folded_line(report))]
    for t in ts:
        out += ["", f"## {code(t.target)}: {md_text(t.description)}", ""]
        off = [n for n in t.nodes if n.placement != Placement.ACCELERATOR]
        if not off:
            out.append("Every node runs on the accelerator.")
            continue
        rows = [
            [code(n.name), code(n.op_type), n.precision, human_count(n.macs), placement_label(n),
             Md("<br>".join(md_text(f.reason) for f in n.failures))]
            for n in off
        ]  # fmt: skip
        out.append(table(["node", "op", "precision", "MACs", "placement", "reasons"], rows, right=(3,)))
        if t.advice:
            out += ["", "What to change:", ""]
            out += [f"- **{md_text(a.fix_kind)}** ({a.nodes} node(s)): {md_text(a.example)}" for a in t.advice]
        srcs = sorted({f.source for n in off for f in n.failures if f.source})
        if srcs:
            out += ["", "Sources: " + "; ".join(md_text(s) for s in srcs)]
    return "\n".join(out) + "\n"
