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
import threading
from collections.abc import Iterator
from types import FrameType

_received: list[int] = []


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (exit 143)."""


def received() -> int | None:
    """The signal that interrupted this command, if any."""
    return _received[-1] if _received else None


def exit_code(signum: int | None) -> int:
    return 128 + (signum or signal.SIGINT)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
    if signum == signal.SIGTERM:
        raise Terminated()
    raise KeyboardInterrupt()


@contextlib.contextmanager
def handling_signals() -> Iterator[None]:
    """Install the handlers for the duration of one command (main thread only; restored afterwards)."""
    _received.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    wanted = {signal.SIGINT: _on_signal, signal.SIGTERM: _on_signal, signal.SIGXFSZ: signal.SIG_IGN}
    old = {s: signal.signal(s, h) for s, h in wanted.items()}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
