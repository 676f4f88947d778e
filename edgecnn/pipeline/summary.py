"""The run summary: one self-contained HTML page (tables, plots embedded as data URIs, nothing loaded from
elsewhere, readable without edgecnn) and the same as Markdown for a CI job summary. One inline line of script
marks the page with how many plots the browser actually decoded (``data-plots-rendered``), which is what the
headless-browser test reads.

Everything shown comes from the run folder's reports and manifest; every string from a file is escaped.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from edgecnn.fsutil import atomic_write_text
from edgecnn.report.plots import OVERLAY_PLOT

HTML_NAME = "summary.html"
MD_NAME = "summary.md"
PLOTS = ((f"bench/{OVERLAY_PLOT}", "Latency histograms"), ("drift_layers.png", "Per-layer SQNR (drift)"))


def _load(run_dir: Path, name: str) -> dict[str, Any] | None:
    p = run_dir / name
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _f(v: Any, digits: int = 2, unit: str = "") -> str:
    if isinstance(v, bool) or v is None:
        return "-" if v is None else str(v)
    if isinstance(v, int | float):
        return f"{v:.{digits}f}{unit}"
    return str(v)


def _verdict(gate: dict[str, Any] | None, manifest: dict[str, Any] | None) -> str:
    if gate is not None and "passed" in gate:
        return "PASSED" if gate["passed"] else "FAILED"
    status = (manifest or {}).get("status", "not run")
    return {"failed": "RUN FAILED", "interrupted": "INTERRUPTED"}.get(status, "GATE NOT RUN")


def collect(run_dir: Path, manifest: dict[str, Any] | None) -> dict[str, Any]:
    """The sections of the summary as plain rows (shared by the HTML and the Markdown views)."""
    m = manifest or {}
    gate = _load(run_dir, "gate.json")
    sections: list[tuple[str, list[str], list[list[str]]]] = []
    steps = [
        [s.get("name", "?"), "skipped" if s.get("skipped") else s.get("status", "?"), _f(s.get("seconds"), 1, " s"),
         s.get("command", "")]
        for s in m.get("steps", [])
    ]  # fmt: skip
    sections.append(("Steps", ["step", "status", "time", "command"], steps))
    if gate is not None:
        rows = [
            [
                r.get("rule", ""),
                r.get("status", ""),
                _f(r.get("measured"), 3),
                _f(r.get("limit"), 3),
                r.get("detail", ""),
            ]
            for r in gate.get("results", [])
        ]
        sections.append(("Gate", ["rule", "status", "measured", "limit", "detail"], rows))
    check = _load(run_dir, "check.json")
    if check is not None:
        rows = [
            [t.get("target", ""), t.get("accelerator", ""), f"{t.get('n_accelerated', 0)}/{t.get('n_nodes', 0)}",
             _f(100 * float(t.get("mac_share", 0) or 0), 1, "%"), str(t.get("partitions", "")), str(t.get("copies", "")),
             "yes" if t.get("runnable") else "no"]
            for t in check.get("targets", [])
        ]  # fmt: skip
        sections.append(
            ("Targets", ["target", "accelerator", "nodes on it", "MACs on it", "partitions", "copies", "runs"], rows)
        )
    rows = []
    for name in sorted(p.name for p in run_dir.glob("quantize-*.json")):
        q = _load(run_dir, name) or {}
        rows.append(
            [q.get("precision", ""), q.get("method", ""), str(q.get("samples", "")),
             f"{q.get('tensors_quantized', 0)} act / {q.get('weights_quantized', 0)} weights",
             str(len(q.get("kept_float", {}) or {})), f"{q.get('size_before', 0):,} -> {q.get('size_after', 0):,} B"]
        )  # fmt: skip
    if rows:
        sections.append(("Quantization", ["precision", "method", "images", "quantized", "kept float", "size"], rows))
    rows = []
    vela_rows = []
    for name in sorted(p.name for p in run_dir.glob("export-*.json")):
        e = _load(run_dir, name) or {}
        parity = e.get("parity") if isinstance(e.get("parity"), dict) else {}
        label = name.removeprefix("export-").removesuffix(".json")
        rows.append(
            [label, Path(str(e.get("output", ""))).name, str(parity.get("runtime", "-")),
             _f(parity.get("top1_agreement"), 2, "%"), _f(parity.get("sqnr_db"), 1, " dB"),
             _f(parity.get("max_abs_error"), 4)]
        )  # fmt: skip
        v = e.get("vela") if isinstance(e.get("vela"), dict) else None
        if v:
            n_npu, n_cpu = int(v.get("npu_ops") or 0), int(v.get("cpu_ops") or 0)
            vela_rows.append(
                [label, str(v.get("accelerator", "")), f"{n_npu}/{n_npu + n_cpu}", _f(v.get("sram_used_kib"), 1),
                 _f(v.get("flash_used_kib"), 1), _f(v.get("inference_time_ms"), 3)]
            )  # fmt: skip
    if rows:
        header = ["export", "file", "runs on", "top-1 agreement", "SQNR", "max err"]
        sections.append(("Exports (parity against the source)", header, rows))
    if vela_rows:
        header = ["export", "accelerator", "ops on the NPU", "SRAM KiB", "flash KiB", "est. ms"]
        sections.append(("Ethos-U (Vela)", header, vela_rows))
    rows = []
    for name in ("bench.json", "bench-fp16.json", "bench-litert.json"):
        b = _load(run_dir, name) or {}
        for r in b.get("results", []):
            s = r.get("stats", {})
            rows.append(
                [r.get("model_name", ""), r.get("runtime", ""), str(r.get("threads", "")), _f(s.get("p50_ms"), 3),
                 _f(s.get("p90_ms"), 3), _f(s.get("p99_ms"), 3), _f(s.get("throughput"), 1),
                 _f((r.get("memory", {}).get("peak_rss") or 0) / 2**20, 1)]
            )  # fmt: skip
    if rows:
        sections.append(
            ("Latency (ms)", ["model", "runtime", "threads", "p50", "p90", "p99", "items/s", "peak RSS MiB"], rows)
        )
    verdicts = [c.get("verdict", "") for n in ("bench.json", "bench-fp16.json") for c in (_load(run_dir, n) or {}).get(
        "comparisons", [])]  # fmt: skip
    drift = _load(run_dir, "drift.json")
    if drift is not None:
        rows = [
            ["top-1", _f(drift.get("reference_top1_pct"), 2, "%"), _f(drift.get("candidate_top1_pct"), 2, "%")],
            ["agreement", "", _f(drift.get("agreement_pct"), 2, "%")],
            *[
                [f"output {o.get('name', '')} SQNR", "", _f(o.get("sqnr_db"), 1, " dB")]
                for o in drift.get("outputs", [])
            ],
            ["worst layers", "", ", ".join(map(str, drift.get("worst_layers", [])[:3]))],
        ]
        sections.append(("Accuracy drift", ["metric", "reference", "candidate"], rows))
    artifacts = [[a, d] for a, d in m.get("artifacts", {}).items()]
    if artifacts:
        sections.append(("Artefacts (sha256)", ["file", "sha256"], artifacts))
    plots = [(cap, run_dir / rel) for rel, cap in PLOTS if (run_dir / rel).is_file()]
    return {
        "name": m.get("name", run_dir.name),
        "status": m.get("status", "unknown"),
        "verdict": _verdict(gate, manifest),
        "model": m.get("pipeline", {}).get("config", {}).get("model", ""),
        "versions": m.get("versions", {}),
        "machine": m.get("machine", {}),
        "started": m.get("started", ""),
        "sections": sections,
        "verdicts": verdicts,
        "plots": plots,
    }


_CSS = """body{font:14px/1.4 system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f3f3f3}code{font-size:12px}.verdict{font-size:20px;font-weight:bold;padding:4px 10px}
.PASSED{background:#d8f5d8;color:#135213}.FAILED,.RUN.FAILED,.INTERRUPTED{background:#fadada;color:#7a1010}
img{max-width:100%;border:1px solid #ddd}"""


def render_html(s: dict[str, Any]) -> str:
    e = html.escape
    out = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>edgecnn run {e(str(s['name']))}: {e(s['verdict'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>edgecnn run: {e(str(s['name']))}</h1>",
        f"<p id='verdict' class='verdict {e(s['verdict'])}'>Gate: {e(s['verdict'])}</p>",
        f"<p>model <code>{e(str(s['model']))}</code> · run {e(str(s['status']))} · started {e(str(s['started']))}</p>",
        "<p>" + " · ".join(f"{e(str(k))} {e(str(v))}" for k, v in s["versions"].items()) + "</p>",
        f"<p>machine: {e(str(s['machine'].get('cpu_model', '')))}, {e(str(s['machine'].get('cores_usable', '')))} usable "
        f"cores, {e(str(s['machine'].get('os', '')))}</p>",
    ]
    for title, header, rows in s["sections"]:
        out.append(f"<h2>{e(title)}</h2><table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
        for row in rows:
            out.append("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>")
        out.append("</table>")
    if s["verdicts"]:
        out.append("<h2>Speed verdicts</h2><ul>" + "".join(f"<li>{e(v)}</li>" for v in s["verdicts"]) + "</ul>")
    for caption, path in s["plots"]:
        data = base64.b64encode(path.read_bytes()).decode()
        out.append(f"<h2>{e(caption)}</h2><img class='plot' alt='{e(caption)}' src='data:image/png;base64,{data}'>")
    out.append(
        "<script>addEventListener('load',()=>{document.body.dataset.plotsRendered="
        "[...document.images].filter(i=>i.classList.contains('plot')&&i.naturalWidth>0).length})</script>"
    )
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def render_markdown(s: dict[str, Any]) -> str:
    from edgecnn.report.markdown import code, md_text, table

    lines = [f"# edgecnn run {code(s['name'])}: gate {s['verdict']}", "",
             f"model {code(s['model'])}, run {md_text(s['status'])}, started {md_text(s['started'])}", ""]  # fmt: skip
    for title, header, rows in s["sections"]:
        lines += [f"## {title}", "", table(header, rows)]
        lines.append("")
    if s["verdicts"]:
        lines += ["## Speed verdicts", "", *[f"- {md_text(v)}" for v in s["verdicts"]], ""]
    if s["plots"]:
        lines += [
            "Plots: " + ", ".join(f"{code(p.name)} ({c})" for c, p in s["plots"]) + " (embedded in summary.html)",
            "",
        ]
    return "\n".join(lines)


def write_summaries(run_dir: Path, manifest: dict[str, Any] | None) -> tuple[Path, Path]:
    s = collect(Path(run_dir), manifest)
    html_path, md_path = Path(run_dir) / HTML_NAME, Path(run_dir) / MD_NAME
    atomic_write_text(html_path, render_html(s))
    atomic_write_text(md_path, render_markdown(s))
    return html_path, md_path
