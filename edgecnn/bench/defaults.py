"""Defaults of a benchmark run, importable without numpy (the CLI reads them when it builds its options)."""

from __future__ import annotations

RANDOM = "random"  # input source: deterministic random tensors
DEFAULT_WARMUP = 10
DEFAULT_ITERATIONS = 200
COMPARE_ROUNDS = 3  # bench --compare: alternating rounds, each a fresh process per model
