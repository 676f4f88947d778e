"""The pipeline file (`edgecnn run pipeline.toml`): one TOML naming the model, data, targets, quantization,
export, runtimes and gate policy. Parsed strictly: an unknown key, a missing required key or a value of the
wrong type is one error naming the file, the key and what is valid. Paths resolve beside the pipeline file.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgecnn.errors import ConfigError
from edgecnn.fsutil import read_toml

SCHEMA_VERSION = 1

# table -> {key: (type, required)}; the one description of the file's schema (docs and errors read it).
_STR, _INT, _FLOAT, _BOOL, _LIST = str, int, float, bool, list
SCHEMA: dict[str, dict[str, tuple[type, bool]]] = {
    "": {"schema_version": (_INT, True), "name": (_STR, False)},
    "model": {"path": (_STR, True), "input_shape": (_LIST, False)},
    "data": {"calibration": (_STR, True), "evaluation": (_STR, False), "preprocess": (_STR, False)},
    "check": {"targets": (_LIST, False), "strict": (_BOOL, False)},
    "quantize": {
        "precisions": (_LIST, False),
        "method": (_STR, False),
        "samples": (_INT, False),
        "target": (_STR, False),
        "workers": (_INT, False),
        "backend": (_STR, False),
    },
    "export": {"formats": (_LIST, False), "tflite_targets": (_LIST, False)},
    "bench": {
        "runtimes": (_LIST, False),
        "threads": (_INT, False),
        "iterations": (_INT, False),
        "rounds": (_INT, False),
    },
    "drift": {"runtime": (_STR, False), "samples": (_INT, False)},
    "gate": {"policy": (_STR, True), "baseline": (_STR, False)},
}
REQUIRED_TABLES = ("model", "data", "gate")
PRECISIONS = ("int8", "fp16")
FORMATS = ("onnx", "openvino", "tflite")
BACKENDS = ("local", "ray")
RUNTIMES = ("ort", "openvino", "litert")


@dataclass(frozen=True, kw_only=True)
class PipelineConfig:
    """The resolved pipeline: every path absolute, every default filled in (what the manifest records)."""

    source: Path
    name: str
    model: Path
    input_shape: tuple[str, ...] = ()
    calibration: Path
    evaluation: Path | None = None
    preprocess: Path | None = None
    targets: tuple[str, ...] = ()
    strict: bool = False
    precisions: tuple[str, ...] = ("int8",)
    method: str = "auto"
    samples: int | None = None
    quant_target: str | None = None
    workers: int = 1
    backend: str = "local"
    formats: tuple[str, ...] = ()
    tflite_targets: tuple[str, ...] = ()
    bench_runtimes: tuple[str, ...] = ("ort",)
    threads: int = 2
    iterations: int = 200
    # alternating rounds of the INT8-vs-float comparison (None: bench's default, bench.defaults.COMPARE_ROUNDS)
    bench_rounds: int | None = None
    drift_runtime: str = "ort"
    drift_samples: int | None = None
    policy: Path
    baseline: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}

    def digest(self) -> str:
        """SHA-256 of the resolved configuration (paths as given, not file contents: those are hashed per step)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True, default=str).encode()).hexdigest()


def _err(path: Path, key: str, msg: str) -> ConfigError:
    return ConfigError(f"{path}: {key}: {msg}")


def _typed(path: Path, key: str, value: Any, want: type) -> Any:
    ok = isinstance(value, want) and not (want is int and isinstance(value, bool))
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        ok, value = True, float(value)
    if not ok:
        raise _err(path, key, f"{value!r} is a {type(value).__name__}; expected a {want.__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise _err(path, key, f"{value!r}; expected a finite number")
    if want is list and not all(isinstance(v, str) for v in value):
        raise _err(path, key, f"{value!r}; expected a list of strings")
    return value


def _choices(path: Path, key: str, values: list[str], valid: tuple[str, ...]) -> tuple[str, ...]:
    for v in values:
        if v not in valid:
            raise _err(path, key, f"{v!r}; valid values are {', '.join(valid)}")
    if len(set(values)) != len(values):
        raise _err(path, key, f"{values!r} lists a value twice")
    return tuple(values)


def _positive(path: Path, key: str, value: int | None, upper: int) -> int | None:
    if value is not None and not 1 <= value <= upper:
        raise _err(path, key, f"{value}; expected an integer from 1 to {upper}")
    return value


_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,63}$")


def _run_name(path: Path, name: str | None) -> str:
    """The run's name, which becomes the folder ``runs/NAME``: one plain path component (no ``/``, ``..``,
    control characters or markup), so that it cannot point the run folder elsewhere."""
    given = name is not None
    name = str(name) if given else path.stem
    if not _NAME.match(name) or ".." in name:
        where = "name" if given else "name (from the file name; set name = ... in the file)"
        raise _err(path, where, f"{name!r}; expected 1-64 of A-Z a-z 0-9 _ . + - (it names the folder runs/NAME)")
    return name


def load_pipeline(path: Path) -> PipelineConfig:
    """Parse and validate ``path``; relative paths in it resolve against its folder."""
    path = Path(path)
    raw = read_toml(path, "pipeline file", "see examples/pipeline.toml")
    base = path.resolve().parent
    tables: dict[str, dict[str, Any]] = {"": {}}
    for key, value in raw.items():
        if isinstance(value, dict):
            if key not in SCHEMA or key == "":
                raise _err(path, f"[{key}]", f"unknown table; valid tables are {', '.join(k for k in SCHEMA if k)}")
            tables[key] = value
        else:
            tables[""][key] = value
    for table, values in tables.items():
        schema = SCHEMA[table]
        for key, value in values.items():
            full = f"{table}.{key}" if table else key
            if key not in schema:
                raise _err(path, full, f"unknown key; valid keys in {f'[{table}]' if table else 'the top level'} are "
                           + ", ".join(schema))  # fmt: skip
            tables[table][key] = _typed(path, full, value, schema[key][0])
        for key, (_t, required) in schema.items():
            if required and key not in values and (table == "" or table in tables):
                raise _err(path, f"{table}.{key}" if table else key, "missing; it is required")
    for t in REQUIRED_TABLES:
        if t not in tables:
            raise _err(path, f"[{t}]", f"missing table; a pipeline needs [{'], ['.join(REQUIRED_TABLES)}]")
    if tables[""]["schema_version"] != SCHEMA_VERSION:
        raise _err(
            path, "schema_version", f"{tables['']['schema_version']}; this edgecnn reads version {SCHEMA_VERSION}"
        )

    def p(value: str | None) -> Path | None:
        return None if value is None else (base / value).resolve()

    def get(table: str, key: str, default: Any = None) -> Any:
        return tables.get(table, {}).get(key, default)

    q_prec = _choices(path, "quantize.precisions", get("quantize", "precisions", ["int8"]), PRECISIONS)
    method = get("quantize", "method", "auto")
    backend = get("quantize", "backend", "local")
    if backend not in BACKENDS:
        raise _err(path, "quantize.backend", f"{backend!r}; valid values are {', '.join(BACKENDS)}")
    formats = _choices(path, "export.formats", get("export", "formats", []), FORMATS)
    tfl_targets = tuple(get("export", "tflite_targets", []))
    if tfl_targets and "tflite" not in formats:
        raise _err(path, "export.tflite_targets", "given, but 'tflite' is not in export.formats")
    if tfl_targets and "int8" not in q_prec:
        raise _err(path, "export.tflite_targets", "TFLite for a target is INT8: add int8 to quantize.precisions")
    if formats and "int8" not in q_prec and "fp16" not in q_prec:
        raise _err(path, "export.formats", "exports need a quantized model; add int8 or fp16 to quantize.precisions")
    runtimes = _choices(path, "bench.runtimes", get("bench", "runtimes", ["ort"]), RUNTIMES)
    drift_rt = get("drift", "runtime", "ort")
    if drift_rt not in RUNTIMES:
        raise _err(path, "drift.runtime", f"{drift_rt!r}; valid values are {', '.join(RUNTIMES)}")
    evaluation = p(get("data", "evaluation"))
    if evaluation is None:
        raise _err(path, "data.evaluation", "missing; drift and the gate need labelled evaluation images")
    # every file the steps read exists before the first step runs (a typo found by the last step cost a whole run)
    for key, want_dir in (("model.path", False), ("data.calibration", True), ("data.evaluation", True),
                          ("data.preprocess", False), ("gate.policy", False)):  # fmt: skip
        table, k = key.split(".")
        given = get(table, k)
        f = p(given)
        if f is not None and not (f.is_dir() if want_dir else f.is_file()):
            what = "folder" if want_dir else "file"
            raise _err(path, key, f"{given!r}: no such {what} ({f})")
    from edgecnn.check.spec import resolve_target_path

    for key in ("check.targets", "export.tflite_targets", "quantize.target"):
        table, k = key.split(".")
        names = get(table, k, [])
        for t in [names] if isinstance(names, str) else names:
            try:
                resolve_target_path(t, relative_to=base)
            except ConfigError as e:
                raise _err(path, key, str(e)) from None
    iterations = _positive(path, "bench.iterations", get("bench", "iterations", 200), 10**7) or 200
    rounds = _positive(path, "bench.rounds", get("bench", "rounds"), 1000)
    if rounds is not None and rounds > iterations:
        raise _err(
            path, "bench.rounds", f"{rounds}; expected at most bench.iterations ({iterations}): one timed run per round"
        )
    return PipelineConfig(
        source=path.resolve(),
        name=_run_name(path, get("", "name", None)),
        model=p(get("model", "path")),  # type: ignore[arg-type]
        input_shape=tuple(get("model", "input_shape", [])),
        calibration=p(get("data", "calibration")),  # type: ignore[arg-type]
        evaluation=evaluation,
        preprocess=p(get("data", "preprocess")),
        targets=tuple(get("check", "targets", [])),
        strict=bool(get("check", "strict", False)),
        precisions=q_prec,
        method=method,
        samples=_positive(path, "quantize.samples", get("quantize", "samples"), 10**9),
        quant_target=get("quantize", "target"),
        workers=_positive(path, "quantize.workers", get("quantize", "workers", 1), 1024) or 1,
        backend=backend,
        formats=formats,
        tflite_targets=tfl_targets,
        bench_runtimes=runtimes,
        threads=_positive(path, "bench.threads", get("bench", "threads", 2), 1024) or 2,
        iterations=iterations,
        bench_rounds=rounds,
        drift_runtime=drift_rt,
        drift_samples=_positive(path, "drift.samples", get("drift", "samples"), 10**9),
        policy=p(get("gate", "policy")),  # type: ignore[arg-type]
        baseline=p(get("gate", "baseline")),
    )


_PATH_FIELDS = ("source", "model", "calibration", "evaluation", "preprocess", "policy", "baseline")


def config_from_dict(d: dict[str, Any]) -> PipelineConfig:
    """The PipelineConfig a manifest recorded (``to_dict``'s inverse), for `run --verify`."""
    from dataclasses import fields

    kw: dict[str, Any] = {}
    for f in fields(PipelineConfig):
        if f.name not in d:
            continue
        v = d[f.name]
        if f.name in _PATH_FIELDS:
            v = None if v is None else Path(v)
        elif isinstance(v, list):
            v = tuple(v)
        kw[f.name] = v
    return PipelineConfig(**kw)
