"""The edgecnn command line: thin shells over library functions.

Every command is registered with ``command()``, which turns an EdgecnnError into one line on stderr
and the error's exit code (``--debug`` shows the traceback instead), Ctrl-C into exit 130 and SIGTERM into
exit 143 (after the same cleanup), and an OSError or MemoryError nothing else caught into exit 2.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from edgecnn import __version__, interrupts
from edgecnn.errors import EdgecnnError, InterruptedError_
from edgecnn.interrupts import exit_code, handling_signals, received
from edgecnn.report.fmt import plain

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="edgecnn",
    help="Take a trained CNN to an edge device without surprises: inspect, quantize, check, bench, drift, gate.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)
for _name in ("stdout", "stderr"):
    if getattr(sys, _name) is None:  # a closed stream (`edgecnn ... >&-`): write into nothing rather than crash
        setattr(sys, _name, open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the process
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


def out_file(value: str | Path) -> Path:
    """The parser of every file-output option (``-o``, ``--json``, ``--plot``, ...): a value ending in a path
    separator names a folder, and ``Path`` would silently drop the separator and write a file of that name."""
    if isinstance(value, Path):
        return value
    text = str(value)
    if text.endswith(tuple(sep for sep in (os.sep, os.altsep) if sep)):
        raise typer.BadParameter(
            f"'{text}' ends with '{text[-1]}', which names a folder; give a file path (e.g. {text}out)"
        )
    return Path(text)


def fail(exc: BaseException, code: int) -> typer.Exit:
    text = " ".join(plain(exc).split())  # one line, no control characters, markup shown as text
    err_console.print(f"[bold red]error:[/] {escape(text)}", markup=True, highlight=False)
    return typer.Exit(code)


def command(parent: typer.Typer, name: str, **kwargs: Any) -> Callable[[F], F]:
    """Register ``fn`` as a command whose errors become one-line messages with the right exit code."""

    def deco(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kw: Any) -> Any:
            with handling_signals():
                try:
                    result = fn(*args, **kw)
                    interrupts.check()  # a signal whose exception Python swallowed still ends the command as interrupted
                    return result
                except EdgecnnError as e:
                    if _state["debug"]:
                        raise
                    if received() and not isinstance(e, InterruptedError_):  # e.g. an import cut short by Ctrl-C
                        raise _interrupted() from None  # is not a missing package; an InterruptedError_ says more
                    raise fail(e, e.exit_code) from None
                except KeyboardInterrupt:
                    if _state["debug"]:
                        raise
                    raise _interrupted() from None
                except OSError as e:  # a file error no reader turned into a message: still one line, exit 2
                    if _state["debug"]:
                        raise
                    where = e.filename if e.filename is not None else "file system"
                    raise fail(OSError(f"{where}: {e.strerror or e}"), 2) from None
                except MemoryError:
                    if _state["debug"]:
                        raise
                    raise fail(MemoryError("out of memory; the input is too large for this machine"), 2) from None

        parent.command(name, **kwargs)(wrapper)
        return fn

    return deco


def _interrupted() -> typer.Exit:
    sig = received()
    name = "SIGTERM" if sig == signal.SIGTERM else "Ctrl-C"
    return fail(
        KeyboardInterrupt(f"interrupted ({name}); unfinished outputs were not written, temp files removed"),
        exit_code(sig),
    )


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
    "run",
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


class _PipeSafe:
    """``sys.stdout`` for the CLI process: once the reader of a pipe has gone (``edgecnn ... | head -1``), the
    rest of the output is dropped and the command finishes its work (its --json and model files are still
    written), instead of dying half-way on BrokenPipeError with exit 1 and no message."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._gone()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._gone()

    def _gone(self) -> None:
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), self._stream.fileno())  # the interpreter's last flush too
        self._stream = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def main() -> None:
    """Console-script entry point. A usage error (unknown option, a value of the wrong type, a missing
    argument) is one ``error:`` line naming the option, the value and where to look, exit 2; a bare
    ``edgecnn`` or a group without its command shows the help, exit 2 (click's convention matches ours)."""
    # Typer >= 0.25 carries its own copy of click; its exceptions live beside it.
    try:
        from typer._click import exceptions as cx
    except ImportError:  # pragma: no cover - older Typer on upstream click
        from click import exceptions as cx  # type: ignore[no-redef]

    sys.stdout = _PipeSafe(sys.stdout)  # type: ignore[assignment]
    try:
        rv = app(standalone_mode=False)
    except cx.NoArgsIsHelpError as e:
        print(e.ctx.get_help() if e.ctx is not None else "")
        sys.exit(2)
    except cx.UsageError as e:
        where = f"{e.ctx.command_path} --help" if e.ctx is not None else "edgecnn --help"
        err_console.print(f"[red]error:[/] {escape(plain(e.format_message()))} (see `{escape(where)}`)")
        sys.exit(2)
    except cx.ClickException as e:
        err_console.print(f"[red]error:[/] {escape(plain(e.format_message()))}")
        sys.exit(e.exit_code or 2)
    except (typer.Exit, SystemExit) as e:
        code = getattr(e, "exit_code", getattr(e, "code", 0))
        _exit(code if isinstance(code, int) else 0)
    except (typer.Abort, KeyboardInterrupt):
        # A Ctrl-C that reached here escaped its command's handling (it came after the command restored
        # Python's handlers): still the one line and 130, not Python's death by SIGINT (exit -2).
        err_console.print("[red]error:[/] interrupted (Ctrl-C); unfinished outputs were not written")
        _exit(130)
    _exit(rv if isinstance(rv, int) else 0)


def _exit(code: int) -> None:
    """Exit with ``code``. An interrupted command (130/143) has already removed its temp files and printed its
    line: it ends here at once (streams flushed, no interpreter shutdown), so that nothing left over from the
    interrupt -- a KeyboardInterrupt raised during shutdown makes CPython re-kill itself with SIGINT -- can
    turn the exit code the user and CI see into a death by signal (-2; seen about once in 20 runs)."""
    if code in (130, 143):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        from edgecnn.fsutil import remove_owned

        remove_owned()  # folders tied to a session that was still referenced (os._exit runs no finalizers)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(code)
    sys.exit(code)
