"""The runtime Protocol every adapter implements."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

import numpy as np


@dataclass(frozen=True, kw_only=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str  # numpy dtype name
    quant: tuple[float, int] | None = None  # (scale, zero point) of an integer tensor that stands for reals


@dataclass(frozen=True, kw_only=True)
class RuntimeClock:
    """The runtime's own clock around its inference call, read after each call (``bind``'s call): what a
    C++ benchmark tool measures, without the Python->C++ call and GIL hand-over that ``perf_counter_ns``
    around the call also sees. ``read_last()`` returns the last call's duration in units of ``unit_ns``."""

    name: str  # e.g. "OpenVINO InferRequest.latency (C++ std::chrono::high_resolution_clock)"
    resolution_ns: float  # the clock's declared tick
    unit_ns: float  # read_last() * unit_ns = nanoseconds
    read_last: Callable[[], float]


class RuntimeSession(Protocol):
    """A model loaded on one runtime and device, ready to run batches."""

    name: ClassVar[str]
    device: str
    threads: int

    def __init__(
        self, path: Path, *, threads: int, input_shapes: dict[str, tuple[int, ...]], options: dict[str, str]
    ) -> None: ...

    @staticmethod
    def runtime_version() -> str: ...

    @property
    def version(self) -> str: ...

    def inputs(self) -> list[TensorSpec]: ...

    def outputs(self) -> list[TensorSpec]: ...

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run one batch; outputs in the order of ``outputs()``."""
        ...


def random_feeds(specs: list[TensorSpec], seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic random inputs for ``specs`` (normal for floats, full range for ints)."""
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for s in specs:
        dt = np.dtype(s.dtype)
        if dt.kind == "f":
            feeds[s.name] = rng.standard_normal(s.shape).astype(dt)
        elif dt.kind in "iu":
            info = np.iinfo(dt)
            feeds[s.name] = rng.integers(max(info.min, -128), min(info.max, 255), size=s.shape, dtype=dt)
        else:
            feeds[s.name] = np.zeros(s.shape, dt)
    return feeds
