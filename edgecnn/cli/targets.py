"""`edgecnn targets list | show NAME | lint [FILE]`: the target specs and their sources."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from edgecnn.cli import app, command, console
from edgecnn.errors import ConfigError
from edgecnn.report.fmt import safe

if TYPE_CHECKING:
    pass

targets_app = typer.Typer(help="List, show and lint target specs (targets/*.toml).", no_args_is_help=True)
app.add_typer(targets_app, name="targets")


@command(targets_app, "list")
def list_cmd() -> None:
    """List the bundled targets."""
    from edgecnn.check.spec import available_targets, load_target

    tab = Table(title="Targets")
    for col in ("name", "accelerator", "runtime", "precisions", "ops", "fallback"):
        tab.add_column(col)
    for name in available_targets():
        t = load_target(name)
        tab.add_row(*(safe(v) for v in (t.name, t.accelerator, t.runtime, ", ".join(t.precisions))), str(len(t.ops)),
                    safe(t.fallback or "none"))  # fmt: skip
    console.print(tab)


@command(targets_app, "show")
def show_cmd(name: Annotated[str, typer.Argument(help="Target name or .toml path.")]) -> None:
    """Show a target: precisions, quantization scheme, limits, operators with constraints, and sources."""
    from edgecnn.check.spec import load_target

    t = load_target(name)
    console.print(f"[bold]{safe(t.name)}[/]: {safe(t.description)}", highlight=False)
    console.print(
        safe(f"runtime {t.runtime}; format {t.format}; accelerator {t.accelerator}; fallback {t.fallback or 'none'}")
    )
    console.print(safe(f"precisions: {', '.join(t.precisions)}" + (f"  (extends {t.extends})" if t.extends else "")))
    if t.quant:
        q = t.quant
        console.print(
            safe(f"quantization: {q.describe()} [{q.source}]"),
            highlight=False,
        )
    if t.limits:
        console.print(safe("limits (every op): " + ", ".join(f"{k}={v}" for k, v in t.limits.items())), highlight=False)
    tab = Table(title="Operators")
    for col in ("ONNX op", "maps to", "constraints", "source"):
        tab.add_column(col)
    for op in t.ops.values():
        cons = ", ".join(f"{k}={v}" for k, v in op.constraints.items())
        for vname, var in op.variants.items():
            vc = ", ".join(f"{k}={v}" for k, v in var.constraints.items())
            runs = "+".join(var.tflite)
            cons += f"\n[{vname}] " + ("unsupported" if not var.supported else f"{runs} {vc}".strip() or "ok")
        status = "passthrough" if op.passthrough else ("" if op.supported else "unsupported ")
        tab.add_row(
            safe(op.op_type),
            safe(status + "+".join(op.tflite)),
            safe(cons),
            safe(op.source + (f": {op.cite}" if op.cite else "")),
        )
    console.print(tab)
    for s in t.sources.values():
        console.print(safe(f"[{s.id}] {s.title} {s.url} ({s.version})"), highlight=False)


@command(targets_app, "lint")
def lint_cmd(
    files: Annotated[
        list[Path] | None, typer.Argument(help="Target TOML files (default: every bundled target).")
    ] = None,
) -> None:
    """Validate target specs: schema, known keys, sources for every fact, extends chain."""
    from edgecnn.check.spec import available_targets, load_target

    items: list[str] = [str(f) for f in files] if files else available_targets()
    for item in items:
        if files and not str(item).endswith(".toml"):
            raise ConfigError(f"{item}: lint takes .toml files; give a target spec path")
        t = load_target(item)
        console.print(safe(f"ok  {t.path}  ({len(t.ops)} ops, {len(t.sources)} source(s))"), highlight=False)
