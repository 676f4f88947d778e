"""The edgecnn command line: thin shells over library functions.

Every command is registered with ``command()``, which turns an EdgecnnError into one line on stderr
and the error's exit code (``--debug`` shows the traceback instead), and Ctrl-C into exit 130.
"""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from edgecnn import __version__
from edgecnn.errors import EdgecnnError

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="edgecnn",
    help="Take a trained CNN to an edge device without surprises: inspect, quantize, check, bench, drift, gate.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, soft_wrap=True)
_state = {"debug": False}


def progress_bar(label: str = "{task.description}", *, disable: bool = False) -> Progress:
    """The progress bar every long command shows (hidden when output is not a terminal)."""
    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=disable or not console.is_terminal,
    )


def fail(exc: BaseException, code: int) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True, highlight=False)
    return typer.Exit(code)


def command(parent: typer.Typer, name: str, **kwargs: Any) -> Callable[[F], F]:
    """Register ``fn`` as a command whose errors become one-line messages with the right exit code."""

    def deco(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kw: Any) -> Any:
            try:
                return fn(*args, **kw)
            except EdgecnnError as e:
                if _state["debug"]:
                    raise
                raise fail(e, e.exit_code) from None
            except KeyboardInterrupt:
                if _state["debug"]:
                    raise
                raise fail(KeyboardInterrupt("interrupted; no output was written"), 130) from None

        parent.command(name, **kwargs)(wrapper)
        return fn

    return deco


def _version(value: bool) -> None:
    if value:
        console.print(f"edgecnn {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    _state["debug"] = debug


# Command modules register themselves on `app` when imported; the list is explicit and ordered as
# the help shows it.
COMMAND_MODULES = (
    "inspect",
    "quantize",
    "export",
    "check",
    "targets",
    "bench",
    "profile",
    "drift",
    "sensitivity",
    "gate",
)
for _mod in COMMAND_MODULES:
    importlib.import_module(f"edgecnn.cli.{_mod}")


def main() -> None:
    """Console-script entry point. Usage errors exit 2 (click's convention matches ours)."""
    sys.exit(app(standalone_mode=True) or 0)
