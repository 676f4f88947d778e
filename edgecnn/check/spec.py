"""Target specs: TOML data (``targets/*.toml``) parsed into frozen dataclasses, every fact with its source.

A target file names the runtime, the precisions the accelerator computes in, the quantization scheme it
requires (read by ``edgecnn quantize``), generic limits that apply to every operator, and the operators it
runs, each with constraints (the keys of ``edgecnn.check.rules.CONSTRAINTS``), the TFLite builtin(s) the
ONNX op becomes when the target's native format is TFLite, and the id of the public source it came from.
``extends`` inherits from another target (by name or path); unknown keys are errors that name the file,
the line and the valid keys.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from edgecnn.check.rules import CONSTRAINTS, VARIANTS
from edgecnn.errors import ConfigError
from edgecnn.quantize.params import QuantScheme

SCHEMA_VERSION = 1

# Repository checkout: <root>/targets; an installed wheel carries them as package data at edgecnn/_targets
# (pyproject.toml: force-include "targets" = "edgecnn/_targets").
_TARGET_DIRS = (Path(__file__).resolve().parents[2] / "targets", Path(__file__).resolve().parents[1] / "_targets")


class Precision(StrEnum):
    FLOAT32 = "float32"
    FLOAT16 = "float16"
    INT8 = "int8"
    UINT8 = "uint8"
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"  # integer arithmetic that is not quantized (index math, int32 Add/Mul)
    INT64 = "int64"


class Format(StrEnum):
    ONNX = "onnx"
    TFLITE = "tflite"
    OPENVINO = "openvino"
    RKNN = "rknn"


FLOAT_PRECISIONS = frozenset({Precision.FLOAT32, Precision.FLOAT16})


@dataclass(frozen=True, kw_only=True)
class Source:
    """A public document a fact came from."""

    id: str
    url: str
    version: str
    title: str = ""


@dataclass(frozen=True, kw_only=True)
class OpSpec:
    """One ONNX operator on one target: constraints (rule key -> limit), mapping and source."""

    op_type: str
    source: str
    cite: str = ""
    supported: bool = True
    passthrough: bool = False
    tflite: tuple[str, ...] = ()
    note: str = ""
    constraints: dict[str, Any] = field(default_factory=dict)
    variants: dict[str, OpSpec] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class TargetSpec:
    schema_version: int
    name: str
    description: str
    runtime: str
    format: Format
    accelerator: str
    fallback: str  # "" = no fallback device: an unsupported node means the model cannot run
    precisions: tuple[Precision, ...]
    source: str
    quant: QuantScheme | None
    limits: dict[str, Any]
    limits_source: str
    ops: dict[str, OpSpec]
    sources: dict[str, Source]
    path: str
    extends: str = ""
    limits_cite: str = ""  # where in limits_source the generic limits are stated
    validation: dict[str, Any] = field(default_factory=dict)  # tool, cases, agreement, test, note

    @property
    def requires_quantization(self) -> bool:
        return not (set(self.precisions) & FLOAT_PRECISIONS)

    @property
    def float_only_ops(self) -> frozenset[str]:
        """Op types whose ``dtypes`` exclude the [quant] activation type but allow float: `quantize --target`
        keeps them in float, and `check` judges a float model's nodes of these types in float."""
        if self.quant is None:
            return frozenset()
        return frozenset(
            op for op, spec in self.ops.items()
            if op not in ("Relu", "Clip")  # fused into the op before them when quantized, not run on their own
            and "dtypes" in spec.constraints and self.quant.activation_dtype not in spec.constraints["dtypes"]
            and set(spec.constraints["dtypes"]) & FLOAT_PRECISIONS
        )  # fmt: skip

    def source_of(self, sid: str) -> Source:
        return self.sources[sid]


_TOP_KEYS = {
    "schema_version": "int", "name": "str", "description": "str", "runtime": "str", "format": "str",
    "accelerator": "str", "fallback": "str", "precisions": "list", "source": "str", "extends": "str",
    "quant": "table", "limits": "table", "ops": "table", "sources": "table", "validation": "table",
}  # fmt: skip
# How a target's verdicts were checked against a real tool: rendered by docs.py into docs/targets.md.
_VALIDATION_KEYS = {"tool": str, "cases": int, "agreement": str, "test": str, "note": str}
_REQUIRED_TOP = ("schema_version", "name", "description", "runtime", "format", "accelerator", "precisions", "source")
_QUANT_KEYS = {
    "weights_per_channel": bool, "weights_symmetric": bool, "weight_dtype": str, "activation_dtype": str,
    "activations_symmetric": bool, "source": str, "note": str,
}  # fmt: skip
_SOURCE_KEYS = {"url": str, "version": str, "title": str}
_OP_META = {"source", "cite", "supported", "passthrough", "tflite", "note"}
_QDTYPES = ("int8", "uint8", "int16", "uint16")


def available_targets() -> list[str]:
    """Names of the bundled targets (the stems of ``targets/*.toml``)."""
    names: set[str] = set()
    for d in _TARGET_DIRS:
        if d.is_dir():
            names |= {p.stem for p in d.glob("*.toml")}
    return sorted(names)


def _bundled_path(name: str) -> Path | None:
    for d in _TARGET_DIRS:
        p = d / f"{name}.toml"
        if p.is_file():
            return p
    return None


def resolve_target_path(name_or_path: str | Path, *, relative_to: Path | None = None) -> Path:
    """A bundled target name or a path to a TOML file; an unknown name lists the valid ones."""
    s = str(name_or_path)
    looks_like_path = s.endswith(".toml") or "/" in s or "\\" in s
    if looks_like_path:
        p = Path(s)
        if not p.is_absolute() and relative_to is not None and not p.exists():
            p = relative_to / p
        if p.exists() and not p.is_file():
            what = "a directory" if p.is_dir() else "not a regular file"
            raise ConfigError(f"{s}: {what}; give a target spec TOML file")
        if not p.is_file():
            raise ConfigError(f"{s}: no such target file; give a TOML path or one of: {', '.join(available_targets())}")
        return p
    p = _bundled_path(s)
    if p is None:
        raise ConfigError(
            f"unknown target '{s}'; valid targets are: {', '.join(available_targets())} (or a path to a .toml)"
        )
    return p


def _line_of(text: str, key: str, table: str = "") -> int:
    """Best-effort 1-based line of ``key`` (inside ``[table]`` when given); 0 when not found."""
    lines = text.splitlines()
    start = 0
    if table:
        hdr = re.compile(r"^\s*\[\s*" + re.escape(table).replace(r"\.", r"\s*\.\s*") + r"\s*\]\s*$")
        for i, line in enumerate(lines):
            if hdr.match(line):
                start = i + 1
                break
    pat = re.compile(r"^\s*" + re.escape(key) + r"\s*=")
    for i in range(start, len(lines)):
        if pat.match(lines[i]):
            return i + 1
    for i, line in enumerate(lines):  # dotted keys or inline tables
        if re.search(r"(^|[\s.{,])" + re.escape(key) + r"\s*=", line):
            return i + 1
    return 0


@dataclass(frozen=True, kw_only=True)
class _Raw:
    path: Path
    text: str
    data: dict[str, Any]


def _read_raw(path: Path) -> _Raw:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {e.start}); expected a TOML target spec") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read target spec ({e.strerror or e})") from None
    from edgecnn.fsutil import parse_toml

    data = parse_toml(text, path)
    return _Raw(path=path, text=text, data=data)


def _err(raw: _Raw, key: str, table: str, msg: str) -> ConfigError:
    line = _line_of(raw.text, key.split(".")[-1], table)
    where = f"{raw.path}:{line}" if line else str(raw.path)
    full = f"{table}.{key}" if table else key
    return ConfigError(f"{where}: key '{full}': {msg}")


def _check_keys(raw: _Raw, table: str, got: dict[str, Any], valid: set[str] | dict[str, Any]) -> None:
    for k in got:
        if k not in valid:
            raise _err(raw, k, table, f"unknown key; valid keys are: {', '.join(sorted(valid))}")


def _validate_constraint(raw: _Raw, table: str, key: str, value: Any) -> None:
    kind = CONSTRAINTS[key].kind
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool) and value >= 0,
        "bool": isinstance(value, bool),
        "ints": isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value),
        "strs": isinstance(value, list) and all(isinstance(v, str) for v in value),
        "range": isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in value)
        and value[0] < value[1],
    }[kind]
    if not ok:
        want = {"int": "a non-negative integer", "bool": "true or false", "ints": "a list of integers",
                "strs": "a list of strings", "range": "[low, high] with 0 < low < high, finite"}[kind]  # fmt: skip
        raise _err(raw, key, table, f"value {value!r} is not {want}")
    if kind == "ints" and (not value or (key in _POSITIVE_INTS and min(value) < 1)):
        raise _err(raw, key, table, f"value {value!r}: expected a non-empty list" + (
            " of integers >= 1" if key in _POSITIVE_INTS else ""))  # fmt: skip
    if key in ("dtypes",):
        bad = [v for v in value if v not in Precision.__members__.values()]
        if bad:
            raise _err(raw, key, table, f"unknown precision(s) {bad}; valid: {', '.join(Precision)}")


# "ints" constraints whose values are sizes, factors or ranks (softmax_axis may be negative)
_POSITIVE_INTS = frozenset({"strides_allowed", "resize_scales", "resize_factors", "half_pixel_factors", "spatial_dims",
                            "input_rank"})  # fmt: skip
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _tflite_builtins() -> frozenset[str]:
    from edgecnn.export.tflite_writer import _BUILTIN_CODES

    return frozenset(_BUILTIN_CODES)


def _known_op(op: str) -> bool:
    """An ONNX operator (any domain onnx knows) or a TFLite builtin (TFLite-format specs list those too)."""
    import onnx.defs

    return bool(op) and (onnx.defs.has(op) or op in _tflite_builtins())


def _check_op_table(raw: _Raw, table: str, body: dict[str, Any], *, allow_variants: bool) -> None:
    valid = _OP_META | set(CONSTRAINTS) | (set(VARIANTS) if allow_variants else set())
    _check_keys(raw, table, body, valid)
    for k, v in body.items():
        if k in CONSTRAINTS:
            _validate_constraint(raw, table, k, v)
        elif k in VARIANTS:
            if not isinstance(v, dict):
                raise _err(raw, k, table, f"variant '{k}' must be a table ([{table}.{k}])")
            _check_op_table(raw, f"{table}.{k}", v, allow_variants=False)
        elif k in ("supported", "passthrough") and not isinstance(v, bool):
            raise _err(raw, k, table, f"value {v!r} is not true or false")
        elif k in ("source", "cite", "note") and not isinstance(v, str):
            raise _err(raw, k, table, f"value {v!r} is not a string")
        elif k == "tflite" and not (isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))):
            raise _err(raw, k, table, f"value {v!r} is not a TFLite builtin name or a list of them")
        elif k == "tflite" and (bad := [x for x in ([v] if isinstance(v, str) else v) if x not in _tflite_builtins()]):
            raise _err(raw, k, table, f"{bad[0]!r} is not a TFLite builtin operator (e.g. CONV_2D, ADD)")


def _validate_raw(raw: _Raw) -> None:
    d = raw.data
    _check_keys(raw, "", d, _TOP_KEYS)
    for k, v in d.items():
        kind = _TOP_KEYS[k]
        ok = {"int": isinstance(v, int) and not isinstance(v, bool), "str": isinstance(v, str),
              "list": isinstance(v, list), "table": isinstance(v, dict)}[kind]  # fmt: skip
        if not ok:
            raise _err(raw, k, "", f"value {v!r} has the wrong type; expected a {kind}")
    if "schema_version" in d and d["schema_version"] != SCHEMA_VERSION:
        raise _err(raw, "schema_version", "", f"{d['schema_version']} is not supported; expected {SCHEMA_VERSION}")
    if "format" in d and d["format"] not in Format.__members__.values():
        raise _err(raw, "format", "", f"'{d['format']}' is not valid; expected one of {', '.join(Format)}")
    for p in d.get("precisions", []):
        if p not in Precision.__members__.values():
            raise _err(raw, "precisions", "", f"'{p}' is not a precision; valid: {', '.join(Precision)}")
    for sid, body in d.get("sources", {}).items():
        if not isinstance(body, dict):
            raise _err(raw, sid, "sources", "each source must be a table with url and version")
        _check_keys(raw, f"sources.{sid}", body, _SOURCE_KEYS)
        for req in ("url", "version"):
            if not isinstance(body.get(req), str) or not body.get(req):
                raise _err(raw, req, f"sources.{sid}", f"missing; every source needs {req} (where and which edition)")
        if not any(c.isdigit() for c in body["version"]):
            raise _err(
                raw, "version", f"sources.{sid}",
                f"'{body['version']}' names no version; give the release, tag, commit or date you read "
                "(e.g. 'v2.3.2', 'commit 00cd7c6', '2025-11-01')",
            )  # fmt: skip
    if "quant" in d:
        _check_keys(raw, "quant", d["quant"], _QUANT_KEYS)
        for k, v in d["quant"].items():
            if not isinstance(v, _QUANT_KEYS[k]):
                raise _err(raw, k, "quant", f"value {v!r} should be a {_QUANT_KEYS[k].__name__}")
        for k in ("activation_dtype", "weight_dtype"):
            if k in d["quant"] and d["quant"][k] not in _QDTYPES:
                raise _err(raw, k, "quant", f"'{d['quant'][k]}' is not valid; expected one of {', '.join(_QDTYPES)}")
    if "validation" in d:
        _check_keys(raw, "validation", d["validation"], _VALIDATION_KEYS)
        for k, v in d["validation"].items():
            if not isinstance(v, _VALIDATION_KEYS[k]) or isinstance(v, bool):
                raise _err(raw, k, "validation", f"value {v!r} should be a {_VALIDATION_KEYS[k].__name__}")
    if "limits" in d:
        _check_keys(raw, "limits", d["limits"], set(CONSTRAINTS) | {"source", "cite"})
        for k, v in d["limits"].items():
            if k in CONSTRAINTS:
                _validate_constraint(raw, "limits", k, v)
    if "name" in d and not _NAME.match(d["name"]):
        raise _err(
            raw, "name", "", f"{d['name']!r}: letters, digits, '.', '_' and '-' only (it names files and tables)"
        )
    for op, body in d.get("ops", {}).items():
        if not isinstance(body, dict):
            raise _err(raw, op, "ops", "each op must be a table ([ops.OpType])")
        if not _known_op(op):
            raise _err(raw, op, "ops", f"{op!r} is neither an ONNX operator nor a TFLite builtin")
        _check_op_table(raw, f"ops.{op}", body, allow_variants=True)


def _merge(parent: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    out = dict(parent)
    for k, v in child.items():
        if k in ("extends",):
            continue
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


MAX_EXTENDS = 16  # a spec inherits through at most this many files (a longer chain is a mistake or hostile)


def _resolve(path: Path, stack: tuple[Path, ...]) -> tuple[dict[str, Any], _Raw]:
    raw = _read_raw(path)
    _validate_raw(raw)
    data = raw.data
    parent_ref = data.get("extends")
    if not parent_ref:
        return data, raw
    try:
        ppath = resolve_target_path(parent_ref, relative_to=path.parent).resolve()
    except ConfigError:
        raise _err(
            raw, "extends", "", f"parent '{parent_ref}' not found; valid targets are: {', '.join(available_targets())}"
        ) from None
    chain = [*stack, path.resolve()]
    if len(chain) >= MAX_EXTENDS:
        raise _err(
            raw, "extends", "", f"extends chain deeper than {MAX_EXTENDS} specs ({chain[0].stem} -> ... -> {path.stem})"
        )
    if ppath in chain:
        cycle = " -> ".join(p.stem for p in [*chain, ppath])
        raise _err(raw, "extends", "", f"cyclic extends ({cycle}); a target cannot inherit from itself")
    pdata, _ = _resolve(ppath, tuple(chain))
    return _merge(pdata, data), raw


def _op_from(op: str, body: dict[str, Any], default_source: str) -> OpSpec:
    tfl = body.get("tflite", ())
    variants = {k: _op_from(op, {"source": body.get("source", default_source), **v}, default_source)
                for k, v in body.items() if k in VARIANTS}  # fmt: skip
    return OpSpec(
        op_type=op,
        source=body.get("source", default_source),
        cite=body.get("cite", ""),
        supported=body.get("supported", True),
        passthrough=body.get("passthrough", False),
        tflite=(tfl,) if isinstance(tfl, str) else tuple(tfl),
        note=body.get("note", ""),
        constraints={k: v for k, v in body.items() if k in CONSTRAINTS},
        variants=variants,
    )


def load_target(name_or_path: str | Path) -> TargetSpec:
    """Load a bundled target by name (``ethos-u55``) or a user's TOML file, with ``extends`` resolved.

    Raises ConfigError (exit 2) naming the file, line and key for every schema problem.
    """
    path = resolve_target_path(name_or_path)
    data, raw = _resolve(path, ())
    for k in _REQUIRED_TOP:
        if k not in data:
            raise ConfigError(f"{path}: missing required key '{k}'; a target needs {', '.join(_REQUIRED_TOP)}")
    sources = {sid: Source(id=sid, **body) for sid, body in data.get("sources", {}).items()}
    top_source = data["source"]

    def check_src(sid: str, where: str) -> None:
        if sid not in sources:
            raise _err(raw, "source", where, f"'{sid}' is not defined under [sources]; defined: {', '.join(sources)}")

    check_src(top_source, "")
    quant = None
    if "quant" in data:
        q = data["quant"]
        missing = [k for k in _QUANT_KEYS if k not in q and k != "note"]
        if missing:
            raise ConfigError(f"{path}: [quant] is missing {', '.join(missing)}")
        check_src(q["source"], "quant")
        quant = QuantScheme(name=str(data.get("name", path.stem)), **q)
    limits = dict(data.get("limits", {}))
    limits_source = limits.pop("source", top_source)
    limits_cite = str(limits.pop("cite", ""))
    check_src(limits_source, "limits")
    ops: dict[str, OpSpec] = {}
    for op, body in data.get("ops", {}).items():
        if "source" not in body:
            raise _err(raw, op, "ops", "every op needs a source id (a key of [sources])")
        check_src(body["source"], f"ops.{op}")
        ops[op] = _op_from(op, body, top_source)
    precisions = tuple(Precision(p) for p in data["precisions"])
    if not precisions:
        raise _err(raw, "precisions", "", f"empty; list at least one of {', '.join(Precision)}")
    if quant is None and not (set(precisions) & FLOAT_PRECISIONS):
        raise ConfigError(f"{path}: target computes only {list(map(str, precisions))} but has no [quant] scheme")
    return TargetSpec(
        schema_version=data["schema_version"],
        name=data["name"],
        description=data["description"],
        runtime=data["runtime"],
        format=Format(data["format"]),
        accelerator=data["accelerator"],
        fallback=data.get("fallback", ""),
        precisions=precisions,
        source=top_source,
        quant=quant,
        limits=limits,
        limits_source=limits_source,
        ops=ops,
        sources=sources,
        path=str(path),
        extends=raw.data.get("extends", ""),
        limits_cite=limits_cite,
        validation=dict(raw.data.get("validation", {})),
    )
