"""Facts about the machine and process that ran a benchmark: CPU, cores, memory (measured, not assumed).

Imported by the worker, so it stays light: stdlib, psutil when present.
"""

from __future__ import annotations

import os
import platform
import socket
import sys
from pathlib import Path
from typing import Any

from edgecnn.runtimes import usable_cores


def cpu_model() -> str:
    """The CPU's marketing name, from /proc/cpuinfo, sysctl or platform; '' when nothing says."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        try:
            text = cpuinfo.read_text(errors="replace")
        except OSError:
            text = ""
        for key in ("model name", "Hardware", "Processor", "cpu model"):
            for line in text.splitlines():
                if line.lower().startswith(key.lower()) and ":" in line:
                    value = line.split(":", 1)[1].strip()
                    if value:
                        return value
    if sys.platform == "darwin":
        import subprocess

        try:
            return subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine()


def machine_facts() -> dict[str, Any]:
    """CPU model, logical/physical cores, cores this process may use, OS, python, total memory."""
    physical: int | None = None
    total_mem: int | None = None
    try:
        import psutil

        physical = psutil.cpu_count(logical=False)
        total_mem = int(psutil.virtual_memory().total)
    except Exception:  # psutil missing or unsupported on the board
        pass
    usable = usable_cores()
    return {
        "hostname": socket.gethostname(),
        "cpu_model": cpu_model(),
        "arch": platform.machine(),
        "cores_logical": os.cpu_count() or 0,
        "cores_physical": physical,
        "cores_usable": usable,
        "memory_bytes": total_mem,
        "os": platform.platform(terse=True),
        "python": platform.python_version(),
    }


def current_rss() -> int:
    """Resident set size of this process now, in bytes."""
    status = _proc_status()
    if "VmRSS" in status:
        return status["VmRSS"]
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:
        return 0


def peak_rss() -> int:
    """Peak resident set size of this process, in bytes.

    On Linux this is VmHWM of the current address space. ``getrusage().ru_maxrss`` is not used there:
    across ``execve`` the kernel carries over the high-water mark of the parent's address space, so a
    small worker started by a large parent would report the parent's size.
    """
    status = _proc_status()
    if "VmHWM" in status:
        return status["VmHWM"]
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if sys.platform == "darwin" else peak * 1024)
    except ImportError:  # Windows
        try:
            import psutil

            return int(getattr(psutil.Process().memory_info(), "peak_wset", 0))
        except Exception:
            return 0


def _proc_status() -> dict[str, int]:
    path = Path("/proc/self/status")
    out: dict[str, int] = {}
    try:
        text = path.read_text()
    except OSError:
        return out
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            parts = rest.split()
            if parts and parts[0].isdigit():
                out[key] = int(parts[0]) * (1024 if len(parts) > 1 and parts[1].lower() == "kb" else 1)
    return out
