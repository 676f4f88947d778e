"""Arm Vela (``ethos-u-vela``) on an INT8 TFLite file: the NPU-optimised file and Vela's own verdicts.

Vela is run as a child process (``python -m ethosu.vela``, the same interpreter), with the accelerator
configuration, system configuration and memory mode of the target, from the ``Arm/vela.ini`` file that ships
with Vela. What edgecnn reports comes from Vela itself, never from edgecnn's own rules:

- per operator NPU or CPU: an operator of the input file that is still present (not folded into an
  ``ethos-u`` CUSTOM operator) in the optimised file runs on the CPU; Vela's ``Warning (supported operators)``
  blocks give the reasons, keyed by the operator's output tensor;
- SRAM and flash use, cycles and the estimated inference time: Vela's summary CSV
  (``<name>_summary_<system config>.csv``; memory in KiB, time in seconds).

Vela 5.2.0 (ethos-u-vela on PyPI); options as printed by ``vela --help`` of that version.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from edgecnn.errors import BadInputError, MissingRuntimeError, ModelError
from edgecnn.export.tflite_writer import read_tflite
from edgecnn.fsutil import temp_dir

VELA_INSTALL = "pip install 'edgecnn[vela]'"
VELA_TIMEOUT_S = 600


@dataclass(frozen=True, kw_only=True)
class VelaConfig:
    accelerator: str  # --accelerator-config
    system: str  # --system-config in Arm/vela.ini
    memory_mode: str  # --memory-mode in Arm/vela.ini


# Per target: a common configuration of each NPU (Arm/vela.ini ships these system configs). The U55 with 128
# MACs/cycle on a high-end Cortex-M55 system with shared SRAM, the U65 with 256 MACs/cycle and dedicated SRAM.
CONFIGS: dict[str, VelaConfig] = {
    "ethos-u55": VelaConfig(
        accelerator="ethos-u55-128", system="Ethos_U55_High_End_Embedded", memory_mode="Shared_Sram"
    ),
    "ethos-u65": VelaConfig(accelerator="ethos-u65-256", system="Ethos_U65_High_End", memory_mode="Dedicated_Sram"),
}
ACCELERATORS = {
    "ethos-u55": ("ethos-u55-32", "ethos-u55-64", "ethos-u55-128", "ethos-u55-256"),
    "ethos-u65": ("ethos-u65-256", "ethos-u65-512"),
}


class Placement(StrEnum):
    NPU = "npu"
    CPU = "cpu"


@dataclass(frozen=True, kw_only=True)
class VelaOp:
    index: int
    op: str  # TFLite builtin of the input file
    output: str  # name of its first output tensor
    placement: Placement
    reasons: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class VelaReport:
    vela_version: str
    accelerator: str
    system_config: str
    memory_mode: str
    input: str
    output: str  # the optimised .tflite
    ops: tuple[VelaOp, ...]
    npu_ops: int
    cpu_ops: int
    sram_used_kib: float
    flash_used_kib: float
    dram_used_kib: float
    inference_time_ms: float | None
    inferences_per_second: float | None
    cycles_total: int | None
    macs: int | None


def config_for(target: str, accelerator: str | None = None) -> VelaConfig:
    if target not in CONFIGS:
        raise BadInputError(f"--target {target!r}: Vela compiles for {', '.join(CONFIGS)} only")
    cfg = CONFIGS[target]
    if accelerator is not None:
        if accelerator not in ACCELERATORS[target]:
            raise BadInputError(
                f"--vela-accelerator {accelerator!r} is not a {target} configuration; valid: {', '.join(ACCELERATORS[target])}"
            )
        cfg = VelaConfig(accelerator=accelerator, system=cfg.system, memory_mode=cfg.memory_mode)
    return cfg


def vela_version() -> str:
    """Vela's version; exit 3 with the install command when its package cannot be imported."""
    import importlib.util
    from importlib.metadata import PackageNotFoundError, version

    try:
        if importlib.util.find_spec("ethosu.vela") is None:
            raise ModuleNotFoundError("ethosu.vela")
        return version("ethos-u-vela")
    except (ImportError, PackageNotFoundError):
        raise MissingRuntimeError("Arm Vela (python package ethos-u-vela)", VELA_INSTALL) from None


_WARN_RE = re.compile(r"^Warning \(supported operators\) operator: (?P<op>\S+), ofm: '(?P<ofm>.*)'$")


def parse_warnings(text: str) -> dict[str, list[str]]:
    """Vela's 'Warning (supported operators)' blocks: output tensor name -> reason lines (all of them)."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for raw in text.splitlines():
        line = raw.rstrip()
        m = _WARN_RE.match(line)
        if m:
            current = out.setdefault(m["ofm"], [])
            continue
        if current is None:
            continue
        if not line.strip():
            current = None
            continue
        text_line = line.strip()
        if text_line.startswith("Reason: "):
            current.append(text_line[len("Reason: ") :])
        elif current:
            current[-1] = f"{current[-1]} ({text_line})"
        else:
            current.append(text_line)
    return out


def run_vela(tflite: Path, output: Path, *, target: str, accelerator: str | None = None) -> VelaReport:
    """Compile ``tflite`` (INT8) with Vela for ``target``; write the optimised file to ``output`` atomically."""
    version = vela_version()
    cfg = config_for(target, accelerator)
    tflite = Path(tflite)
    with temp_dir("vela") as tmp:
        work = Path(tmp)
        src = work / "model.tflite"
        shutil.copyfile(tflite, src)
        cmd = [
            sys.executable,
            "-m",
            "ethosu.vela",
            str(src),
            "--output-dir",
            str(work / "out"),
            "--accelerator-config",
            cfg.accelerator,
            "--config",
            "Arm/vela.ini",
            "--system-config",
            cfg.system,
            "--memory-mode",
            cfg.memory_mode,
            "--show-cpu-operations",
        ]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=VELA_TIMEOUT_S, cwd=work)
        except subprocess.TimeoutExpired:
            raise ModelError(f"{tflite}: Vela did not finish within {VELA_TIMEOUT_S} s") from None
        if r.returncode != 0:
            if "No module named ethosu" in r.stderr:
                raise MissingRuntimeError("Arm Vela (python package ethos-u-vela)", VELA_INSTALL)
            tail = [ln for ln in (r.stderr or r.stdout).strip().splitlines() if ln.strip()][-1:] or ["no output"]
            raise ModelError(f"{tflite}: Vela failed (exit {r.returncode}): {tail[0]}")
        optimised = work / "out" / "model_vela.tflite"
        summaries = sorted((work / "out").glob("model_summary_*.csv"))
        if not optimised.is_file() or not summaries:
            raise ModelError(f"{tflite}: Vela wrote no optimised file or summary; its output: {r.stdout[-300:]}")
        reasons = parse_warnings(r.stdout + "\n" + r.stderr)
        ops = _placements(tflite.read_bytes(), optimised.read_bytes(), reasons)
        with open(summaries[0], newline="") as f:
            row = next(csv.DictReader(f))
        tmp_out = output.with_name(f".{output.name}.tmp")
        shutil.copyfile(optimised, tmp_out)
        os.replace(tmp_out, output)

    def num(key: str) -> float | None:
        try:
            v = float(row.get(key, "nan"))
        except ValueError:
            return None
        return None if v != v else v  # NaN -> None

    t = num("inference_time")
    return VelaReport(
        vela_version=version,
        accelerator=cfg.accelerator,
        system_config=cfg.system,
        memory_mode=cfg.memory_mode,
        input=str(tflite),
        output=str(output),
        ops=ops,
        npu_ops=sum(o.placement is Placement.NPU for o in ops),
        cpu_ops=sum(o.placement is Placement.CPU for o in ops),
        sram_used_kib=num("sram_memory_used") or 0.0,
        flash_used_kib=(num("off_chip_flash_memory_used") or 0.0) + (num("on_chip_flash_memory_used") or 0.0),
        dram_used_kib=num("dram_memory_used") or 0.0,
        inference_time_ms=t * 1e3 if t else None,
        inferences_per_second=num("inferences_per_second"),
        cycles_total=int(num("cycles_total") or 0) or None,
        macs=int(num("nn_macs") or 0) or None,
    )


def _placements(source: bytes, optimised: bytes, reasons: dict[str, list[str]]) -> tuple[VelaOp, ...]:
    """Each operator of the source file: CPU when the optimised file still computes its output with a
    non-NPU operator (Vela leaves CPU operators as they were), NPU otherwise."""
    src = read_tflite(source)
    opt = read_tflite(optimised)
    cpu_outputs = {opt.tensors[o].name for op in opt.ops if op.builtin != "CUSTOM" for o in op.outputs if o >= 0}
    out = []
    for op in src.ops:
        name = src.tensors[op.outputs[0]].name if op.outputs else ""
        on_cpu = name in cpu_outputs or name in reasons
        out.append(
            VelaOp(
                index=op.index,
                op=op.builtin,
                output=name,
                placement=Placement.CPU if on_cpu else Placement.NPU,
                reasons=tuple(reasons.get(name, ())) if on_cpu else (),
            )
        )
    return tuple(out)
