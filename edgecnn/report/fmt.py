"""Number formatting shared by console tables and Markdown, and ``safe``: the one way text read from a
file (node, input and producer names, paths, labels) reaches the terminal.
"""

from __future__ import annotations

import re


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def human_count(n: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return f"{n:.0f}"


# C0/C1 control characters (ESC starts ANSI sequences, OSC 8 hyperlinks, BEL, backspace...) except tab/newline,
# and the Unicode bidi overrides that reorder what a terminal shows.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")


def plain(text: object) -> str:
    """``text`` with ANSI escape sequences removed and other control characters shown as ``\\xNN``;
    surrogates (from non-UTF-8 file names) shown as ``\\xNN`` too. For everything that comes from a file."""
    s = str(text)
    s = _ANSI.sub("", s)
    s = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256 else f"\\u{ord(m.group()):04x}", s)
    return s.encode("utf-8", "backslashreplace").decode("utf-8")


def safe(text: object) -> str:
    """``plain(text)`` with Rich markup escaped: a name from a model, a path or a CSV printed as itself."""
    from rich.markup import escape

    return escape(plain(text))
