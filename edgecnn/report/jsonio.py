"""The one JSON serializer: every report carries ``schema_version``; readers reject other versions."""

from __future__ import annotations

import dataclasses
import enum
import json
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.errors import BadInputError
from edgecnn.fsutil import atomic_write_text


def _default(o: Any) -> Any:
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return dataclasses.asdict(o)
    if isinstance(o, enum.Enum):
        return o.value
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, set | frozenset | tuple):
        return list(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def dumps(payload: dict[str, Any]) -> str:
    return json.dumps(payload, indent=2, default=_default, sort_keys=False) + "\n"


def write_json(path: Path, payload: dict[str, Any], *, kind: str, schema_version: int) -> None:
    """Write ``payload`` atomically, stamped with ``kind`` and ``schema_version``."""
    body = {
        "schema_version": schema_version,
        "kind": kind,
        **{k: v for k, v in payload.items() if k != "schema_version"},
    }
    atomic_write_text(Path(path), dumps(body))


MAX_REPORT_BYTES = 256 << 20  # reports hold raw latency samples; a million of them is ~20 MiB


def read_json(path: Path, *, kind: str, schema_version: int) -> dict[str, Any]:
    """Read a report written by ``write_json``; wrong kind or version is a clear error (exit 2)."""
    path = Path(path)
    if not path.is_file():
        if path.exists():
            what = "a directory" if path.is_dir() else "not a regular file"
            raise BadInputError(f"{path}: {what}; expected a {kind} JSON report file")
        raise BadInputError(f"{path}: no such file; expected a {kind} JSON report")
    size = path.stat().st_size
    if size > MAX_REPORT_BYTES:
        raise BadInputError(
            f"{path}: {size / (1 << 20):.0f} MiB; a {kind} report is at most {MAX_REPORT_BYTES >> 20} MiB "
            "(is it another file?)"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadInputError(f"{path}: not valid JSON ({e}); expected a {kind} report") from None
    except RecursionError:
        raise BadInputError(f"{path}: not valid JSON (nested too deeply); expected a {kind} report") from None
    except ValueError as e:  # an integer of more than 4300 digits (Python's int-from-string limit)
        raise BadInputError(
            f"{path}: not valid JSON ({' '.join(str(e).split())[:120]}); expected a {kind} report"
        ) from None
    from edgecnn.fsutil import huge_number

    huge = huge_number(data)
    if huge is not None:
        raise BadInputError(
            f"{path}: {huge}: a number beyond any valid value (at most 1e300); expected a {kind} report"
        )
    if not isinstance(data, dict):
        raise BadInputError(f"{path}: top level is {type(data).__name__}; expected a {kind} report object")
    if data.get("kind") != kind:
        raise BadInputError(f"{path}: kind is {data.get('kind')!r}; expected a '{kind}' report")
    if data.get("schema_version") != schema_version:
        raise BadInputError(
            f"{path}: schema_version {data.get('schema_version')!r} is not supported for {kind}; expected {schema_version} "
            "(regenerate it with this edgecnn version)"
        )
    return data
