"""Gate policy: a TOML file of rules, each a limit on one measured value.

```toml
schema_version = 1
[rules]
max_top1_drop = 0.5          # points, candidate vs reference (drift report)
min_agreement = 99.0         # percent of images where both models predict the same class
max_class_recall_drop = 3.0  # points, the worst class
max_p99_regression = 10.0    # percent, candidate p99 latency vs the baseline's (bench report)
```
Unknown keys and rules are errors, limits must be non-negative numbers, percentages at most 100.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from edgecnn.errors import ConfigError
from edgecnn.fsutil import read_toml

SCHEMA_VERSION = 1


class Needs(StrEnum):
    DRIFT = "drift"
    LABELS = "labels"  # a drift report computed with labels
    BENCH = "bench"
    BASELINE = "baseline"


@dataclass(frozen=True, kw_only=True)
class RuleDef:
    name: str
    bound: str  # "max" (measured must be <= limit) or "min" (>=)
    unit: str
    needs: frozenset[Needs]
    doc: str  # what a user reads: what is measured against what
    pct_limit: bool = False  # the limit is a percentage (<= 100)


def _r(name: str, unit: str, needs: set[Needs], doc: str, pct_limit: bool = False) -> RuleDef:
    return RuleDef(name=name, bound=name.split("_")[0], unit=unit, needs=frozenset(needs), doc=doc, pct_limit=pct_limit)


RULES: dict[str, RuleDef] = {
    r.name: r
    for r in (
        _r(
            "max_top1_drop", "pts", {Needs.DRIFT, Needs.LABELS}, "top-1 accuracy lost by the candidate vs the reference"
        ),
        _r(
            "max_top5_drop", "pts", {Needs.DRIFT, Needs.LABELS}, "top-5 accuracy lost by the candidate vs the reference"
        ),
        _r("min_top1", "%", {Needs.DRIFT, Needs.LABELS}, "top-1 accuracy of the candidate", pct_limit=True),
        _r("min_agreement", "%", {Needs.DRIFT}, "images where candidate and reference predict the same class", True),
        _r(
            "max_class_recall_drop",
            "pts",
            {Needs.DRIFT, Needs.LABELS},
            "recall lost by the worst class, candidate vs reference",
        ),
        _r("min_output_sqnr_db", "dB", {Needs.DRIFT}, "SQNR of the candidate's outputs against the reference's"),
        _r("min_output_cosine", "", {Needs.DRIFT}, "mean per-image cosine similarity of the outputs"),
        _r(
            "max_top1_drop_vs_baseline",
            "pts",
            {Needs.DRIFT, Needs.LABELS, Needs.BASELINE},
            "top-1 accuracy lost vs the baseline's accepted candidate",
        ),
        _r(
            "max_class_recall_drop_vs_baseline",
            "pts",
            {Needs.DRIFT, Needs.LABELS, Needs.BASELINE},
            "recall lost by the worst class vs the baseline",
        ),
        _r(
            "max_p99_regression",
            "%",
            {Needs.BENCH, Needs.BASELINE},
            "p99 latency increase vs the baseline's, per runtime",
        ),
        _r("max_p99_ms", "ms", {Needs.BENCH}, "p99 latency of the candidate, per runtime"),
    )
}
_TOP_KEYS = {"schema_version", "rules"}


@dataclass(frozen=True, kw_only=True)
class Policy:
    rules: dict[str, float]  # rule name -> limit, in file order
    source: str

    def needs(self) -> set[Needs]:
        return {n for r in self.rules for n in RULES[r].needs}


def policy_from_dict(d: dict[str, object], source: str) -> Policy:
    unknown = sorted(set(d) - _TOP_KEYS)
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {unknown}; a policy has schema_version and a [rules] table")
    ver = d.get("schema_version")
    if ver != SCHEMA_VERSION:
        raise ConfigError(f"{source}: schema_version {ver!r} is not supported; expected {SCHEMA_VERSION}")
    rules = d.get("rules")
    if not isinstance(rules, dict) or not rules:
        raise ConfigError(f"{source}: no [rules] table; add at least one rule, e.g. max_top1_drop = 0.5")
    out: dict[str, float] = {}
    for name, limit in rules.items():
        if name not in RULES:
            raise ConfigError(f"{source}: unknown rule {name!r}; valid rules are {', '.join(RULES)}")
        if isinstance(limit, bool) or not isinstance(limit, int | float):
            raise ConfigError(f"{source}: {name} = {limit!r}; expected a number")
        if not math.isfinite(limit) or limit < 0:
            raise ConfigError(f"{source}: {name} = {limit}; limits must be finite numbers, 0 or more")
        if RULES[name].pct_limit and limit > 100:
            raise ConfigError(f"{source}: {name} = {limit}; a percentage must be at most 100")
        if name == "min_output_cosine" and limit > 1:
            raise ConfigError(f"{source}: {name} = {limit}; a cosine similarity is at most 1")
        out[name] = float(limit)
    return Policy(rules=out, source=source)


def load_policy(path: Path) -> Policy:
    path = Path(path)
    d = read_toml(path, "policy", "expected a TOML file with a [rules] table")
    return policy_from_dict(d, str(path))
