"""Runtime adapters behind one Protocol; the only modules in edgecnn that import a runtime.

The registry maps a name to "module:attr" and imports on use, so a missing runtime costs nothing until
it is asked for, and then fails with exit 3 and the pip command that installs it.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from edgecnn.errors import BadInputError, MissingRuntimeError
from edgecnn.runtimes.base import RuntimeSession, TensorSpec, random_feeds

__all__ = [
    "RUNTIMES",
    "RuntimeSession",
    "TensorSpec",
    "available_runtimes",
    "open_session",
    "random_feeds",
    "runtime_version",
]

# name -> (module:class, python module that must import, pip command)
RUNTIMES: dict[str, tuple[str, str, str]] = {
    "ort": ("edgecnn.runtimes.ort:OrtSession", "onnxruntime", "pip install onnxruntime"),
    "openvino": ("edgecnn.runtimes.openvino:OpenVinoSession", "openvino", "pip install openvino"),
    "litert": ("edgecnn.runtimes.litert:LiteRtSession", "ai_edge_litert", "pip install 'edgecnn[litert]'"),
}


def _check_name(name: str) -> None:
    if name not in RUNTIMES:
        raise BadInputError(f"unknown runtime '{name}'; valid runtimes are {', '.join(RUNTIMES)}")


def _require(name: str) -> None:
    _check_name(name)
    _, module, install = RUNTIMES[name]
    try:
        importlib.import_module(module)
    except ImportError:
        raise MissingRuntimeError(f"runtime '{name}' (python module {module})", install) from None


def available_runtimes() -> list[str]:
    """Names of the runtimes whose python package imports here."""
    out = []
    for name in RUNTIMES:
        try:
            _require(name)
        except MissingRuntimeError:
            continue
        out.append(name)
    return out


def runtime_version(name: str) -> str:
    _require(name)
    return _session_class(name).runtime_version()


def _session_class(name: str) -> type[RuntimeSession]:
    target, _, _ = RUNTIMES[name]
    mod, attr = target.split(":")
    try:
        return getattr(importlib.import_module(mod), attr)
    except ModuleNotFoundError as e:
        if e.name != mod:
            raise
        # The runtime's package is installed but this edgecnn has no adapter module for it.
        raise MissingRuntimeError(
            f"edgecnn's adapter for runtime '{name}'", "a later edgecnn release; use --runtime ort or openvino"
        ) from None


def open_session(
    name: str,
    model_path: str | Path,
    *,
    threads: int = 0,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    options: dict[str, str] | None = None,
) -> RuntimeSession:
    """Load ``model_path`` on runtime ``name`` (CPU). ``threads=0`` lets the runtime choose."""
    _require(name)
    if threads < 0:
        raise BadInputError(f"threads = {threads}; expected 0 (runtime default) or a positive number")
    return _session_class(name)(
        Path(model_path), threads=threads, input_shapes=input_shapes or {}, options=options or {}
    )
