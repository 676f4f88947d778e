"""JUnit XML for CI test reporting: one test case per gate rule (failure = rule failed, skipped = not judged)."""

from __future__ import annotations

import datetime as _dt
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING

from edgecnn.fsutil import atomic_write_bytes
from edgecnn.report.fmt import plain

if TYPE_CHECKING:
    from edgecnn.gate.decide import Decision


def _fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "n/a"
    return f"{v:.6g}{'' if not unit else ' ' + unit}"


def gate_junit(d: Decision, *, seconds: float = 0.0, suite: str = "edgecnn gate") -> bytes:
    failures = sum(r.status.value == "fail" for r in d.results)
    skipped = sum(r.status.value == "skip" for r in d.results)
    model = plain(d.model)  # names from files: no control characters (invalid in XML 1.0), no lone surrogates
    root = ET.Element(
        "testsuites", name=suite, tests=str(len(d.results)), failures=str(failures), errors="0", skipped=str(skipped)
    )
    ts = ET.SubElement(
        root,
        "testsuite",
        name=f"{suite}: {model}",
        tests=str(len(d.results)),
        failures=str(failures),
        errors="0",
        skipped=str(skipped),
        time=f"{seconds:.3f}",
        timestamp=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    )
    for r in d.results:
        case = ET.SubElement(ts, "testcase", classname=f"edgecnn.gate.{model}", name=plain(r.rule), time="0")
        op = "<=" if r.bound == "max" else ">="
        text = plain(f"{r.rule}: measured {_fmt(r.measured, r.unit)}, limit {op} {_fmt(r.limit, r.unit)}; {r.detail}")
        if r.status.value == "fail":
            f = ET.SubElement(case, "failure", message=text, type="GateRuleFailed")
            f.text = text
        elif r.status.value == "skip":
            ET.SubElement(case, "skipped", message=plain(r.detail))
        ET.SubElement(case, "system-out").text = text
    ET.indent(root)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n").encode()


def write_gate_junit(path: Path, d: Decision, *, seconds: float = 0.0) -> Path:
    atomic_write_bytes(Path(path), gate_junit(d, seconds=seconds))
    return Path(path)
