"""Signals while a command runs: SIGTERM is handled like Ctrl-C (SIGINT), so cleanup runs either way.

``handling_signals()`` wraps every CLI command: SIGINT raises KeyboardInterrupt (exit 130), SIGTERM raises
``Terminated`` (a KeyboardInterrupt, so every ``except KeyboardInterrupt`` cleanup also runs; exit 143),
SIGXFSZ is ignored so that a write past RLIMIT_FSIZE fails with EFBIG (a one-line error) instead of killing
the process. ``received()`` tells an error handler that an error was caused by an interrupt (e.g. an import
cut short by Ctrl-C is not a missing package).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

_received: list[int] = []
_deferring = [0]
_active = [False]  # handlers installed (a command is running)


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (exit 143)."""


def received() -> int | None:
    """The signal that interrupted the running command, if any."""
    return _received[-1] if _received and _active[0] else None


def check() -> None:
    """Raise now if a signal arrived whose exception was swallowed (a handler that runs inside an at-fork hook
    or a ``__del__`` is ignored by Python): long waits call this between slices."""
    sig = received()
    if sig is not None:
        raise Terminated() if sig == signal.SIGTERM else KeyboardInterrupt()


def acknowledge() -> None:
    """The running command has turned the interrupt into its own outcome (e.g. `run` records it in its
    manifest): later ``check()`` calls no longer raise it again, so that record can be written. A new
    signal still interrupts."""
    _received.clear()


def exit_code(signum: int | None) -> int:
    return 128 + (signum or signal.SIGINT)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
    if _deferring[0]:
        return  # raised by check() when the deferred block ends
    if signum == signal.SIGTERM:
        raise Terminated()
    raise KeyboardInterrupt()


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold Ctrl-C/SIGTERM while a temp file is created and recorded for cleanup, or while a child is forked
    (a handler must not raise inside fork's at-fork hooks); the interrupt is raised when the block ends.
    Works whichever thread the kernel hands the signal to."""
    _deferring[0] += 1
    try:
        yield
    finally:
        _deferring[0] -= 1
    if not _deferring[0]:
        check()


@contextlib.contextmanager
def handling_signals() -> Iterator[None]:
    """Install the handlers for the duration of one command (main thread only; restored afterwards)."""
    _received.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _active[0] = True
    wanted = {signal.SIGINT: _on_signal, signal.SIGTERM: _on_signal, signal.SIGXFSZ: signal.SIG_IGN}
    old = {s: signal.signal(s, h) for s, h in wanted.items()}
    old_hook = sys.unraisablehook
    sys.unraisablehook = _quiet_interrupts
    try:
        yield
    finally:
        _active[0] = False
        _received.clear()
        sys.unraisablehook = old_hook
        for s, h in old.items():
            signal.signal(s, h)


def _quiet_interrupts(args: sys.UnraisableHookArgs) -> None:
    """Python ignores an exception raised where it cannot propagate (an at-fork hook, ``__del__``) and prints
    it; ours are recorded by ``received()`` and raised again by ``check()``, so they are not printed."""
    if isinstance(args.exc_value, KeyboardInterrupt):
        return
    sys.__unraisablehook__(args)
