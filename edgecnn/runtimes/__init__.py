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
    "TAKING_TURNS",
    "RuntimeSession",
    "TensorSpec",
    "available_runtimes",
    "open_session",
    "random_feeds",
    "runtime_version",
    "usable_cores",
]

# name -> (module:class, python module that must import, pip command)
RUNTIMES: dict[str, tuple[str, str, str]] = {
    "ort": ("edgecnn.runtimes.ort:OrtSession", "onnxruntime", "pip install onnxruntime"),
    "openvino": ("edgecnn.runtimes.openvino:OpenVinoSession", "openvino", "pip install openvino"),
    "litert": ("edgecnn.runtimes.litert:LiteRtSession", "ai_edge_litert", "pip install 'edgecnn[litert]'"),
}


# Options for a session that takes turns with other sessions or with Python's numpy work (quantize's
# calibration and checks, drift): ONNX Runtime's intra-op threads spin after each run, waiting for the next
# one, and take the cores from whatever runs next. Measured with 2 threads on 2 cores (ORT 1.32), three
# sessions run in turn: 5.8 ms a run with spinning against 2.4 ms without it (one session alone: 2.4 ms;
# PP-LCNet at 224x224), 70-86 against 37-51 ms (PP-PicoDet at 800x608). Other runtimes ignore the key.
TAKING_TURNS: dict[str, str] = {"session.intra_op.allow_spinning": "0"}


# Session options "property:NAME" = VALUE reach OpenVINO's compile_model config as NAME: VALUE (the adapter's
# properties_of); other runtimes ignore them.
OV_PROPERTY = "property:"


def ov_property_options(items: list[str] | None, runtimes: list[str], *, local: bool = True) -> dict[str, str]:
    """``--ov-property NAME=VALUE`` items (repeatable) as session options (``property:NAME``) that OpenVINO's
    adapter passes to compile_model: the config a deployment compiles with, so that a measurement is of it. A
    one-line error (exit 2) for an item without ``=``, for a property the CPU plugin does not have or cannot set,
    or with no ``--runtime openvino`` to apply to; OpenVINO missing: exit 3. ``local=False`` (a board's runtime):
    the syntax only; the board's plugin judges the rest when it compiles."""
    if not items:
        return {}
    props: dict[str, str] = {}
    for item in items:
        name, eq, value = item.partition("=")
        if not eq or not name.strip() or not value.strip():
            raise BadInputError(f"--ov-property '{item}': expected NAME=VALUE, e.g. CPU_DENORMALS_OPTIMIZATION=YES")
        props[name.strip()] = value.strip()
    if "openvino" not in runtimes:
        raise BadInputError(f"--ov-property {items[0]}: applies to --runtime openvino, which this run does not use")
    if local:
        _require("openvino")
        from edgecnn.runtimes.openvino import check_properties

        check_properties(props)
    return {OV_PROPERTY + k: v for k, v in props.items()}


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, as a container or taskset limits it), at least 1."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity on this OS
        return max(1, os.cpu_count() or 1)


def max_threads() -> int:
    """The most intra-op threads edgecnn asks a runtime for: 4 per logical core here, at least 64."""
    import os

    return max(64, 4 * (os.cpu_count() or 1))


def check_threads(value: int, option: str = "--threads", *, zero_ok: bool = True) -> None:
    """Reject a thread count a runtime cannot use (a huge one makes it allocate until memory runs out)."""
    low = 0 if zero_ok else 1
    if not low <= value <= max_threads():
        raise BadInputError(
            f"{option} {value}: expected {low}..{max_threads()}"
            + (" (0 = the runtime's choice)" if zero_ok else " (omit it for the runtime's choice)")
        )


def _check_name(name: str) -> None:
    if name not in RUNTIMES:
        raise BadInputError(f"unknown runtime '{name}'; valid runtimes are {', '.join(RUNTIMES)}")


def _require(name: str) -> None:
    _check_name(name)
    _, module, install = RUNTIMES[name]
    try:
        importlib.import_module(module)
    except ImportError:
        from edgecnn.interrupts import received

        if received():  # Ctrl-C or SIGTERM cut the import short: the package is there
            raise KeyboardInterrupt from None
        raise MissingRuntimeError(f"runtime '{name}' (python module {module})", install) from None


def available_runtimes() -> list[str]:
    """Names of the runtimes whose python package imports here and whose edgecnn adapter exists."""
    out = []
    for name in RUNTIMES:
        try:
            _require(name)
            _session_class(name)
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
    check_threads(threads, "threads")
    return _session_class(name)(
        Path(model_path), threads=threads, input_shapes=input_shapes or {}, options=options or {}
    )
