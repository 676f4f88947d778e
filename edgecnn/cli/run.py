"""`edgecnn run PIPELINE.toml`: inspect -> check -> quantize -> export -> bench -> drift -> gate into one run
folder with a manifest; `edgecnn run --verify DIR` reproduces its artefacts and compares their hashes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from edgecnn.cli import app, command, console, err_console
from edgecnn.errors import BadInputError, CheckFailedError


@command(app, "run")
def run_cmd(
    pipeline: Annotated[Path | None, typer.Argument(help="Pipeline TOML (see examples/pipeline.toml).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Run folder (default: runs/NAME).")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Re-run every step; replace a folder that holds another run.")
    ] = False,
    verify: Annotated[
        Path | None, typer.Option("--verify", help="Re-run DIR's artefact steps from its manifest and compare hashes.")
    ] = None,
) -> None:
    """Run the whole pipeline into one folder: artefacts, every report, manifest.json, summary.html and
    summary.md. Steps whose command and inputs are unchanged are skipped; Ctrl-C leaves a consistent folder."""
    from edgecnn.pipeline.config import load_pipeline
    from edgecnn.pipeline.run import run_pipeline, verify_run

    def echo(line: str) -> None:
        console.print(escape(line), highlight=False)

    def echo_err(line: str) -> None:
        err_console.print(line, markup=False, highlight=False)

    if verify is not None:
        if pipeline is not None or out is not None:
            raise BadInputError("--verify DIR takes no PIPELINE or --out: it re-runs what DIR's manifest recorded")
        checks = verify_run(verify, echo=echo)
        tab = Table(title=f"reproduced artefacts of {escape(str(verify))}")
        for c in ("artefact", "recorded sha256", "reproduced sha256", "same"):
            tab.add_column(c)
        for c in checks:
            tab.add_row(
                escape(c.name), c.recorded[:16], c.reproduced[:16], "[green]yes[/]" if c.match else "[red]NO[/]"
            )
        console.print(tab)
        bad = [c.name for c in checks if not c.match]
        if bad:
            raise CheckFailedError(f"{verify}: {len(bad)} of {len(checks)} artefact(s) differ: {', '.join(bad)}")
        console.print(f"all {len(checks)} artefact(s) reproduced bit for bit")
        return
    if pipeline is None:
        raise BadInputError("give a PIPELINE.toml to run, or --verify DIR")
    cfg = load_pipeline(pipeline)
    run_dir = out or Path("runs") / cfg.name
    result = run_pipeline(cfg, run_dir, force=force, echo=echo, echo_err=echo_err)
    ran = sum(1 for s in result.steps if not s.get("skipped"))
    console.print(
        f"run {escape(cfg.name)}: {result.status} ({ran} step(s) ran, {len(result.steps) - ran} skipped); "
        f"{escape(str(result.run_dir))}/summary.html, manifest.json",
        highlight=False,
    )
    if result.exit_code:
        raise CheckFailedError(f"run {cfg.name}: a verdict failed (see the gate or check above); {result.run_dir}")
