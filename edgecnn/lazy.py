"""Explicit, lazy registries: a table of name -> "module:attr", imported on first use."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_getattr(package: str, table: dict[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` for ``package`` that imports ``table``'s entries when first asked for."""

    def __getattr__(name: str) -> Any:
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        mod, attr = table[name].split(":")
        return getattr(importlib.import_module(mod), attr)

    return __getattr__
