"""On-device runs over SSH: copy the model to the board (cached by SHA-256), run the same worker there
with the board's python, bring the raw samples back.

Needs on the board: a POSIX shell, python 3.11+, edgecnn and the runtime (``--remote-python`` picks the
interpreter). Key-based login only: ssh runs with ``BatchMode=yes`` and never asks for a password.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

from edgecnn.bench.harness import (
    BenchError,
    BenchResult,
    BenchSettings,
    PreparedModel,
    ProgressFn,
    result_from_worker,
    run_worker_process,
    worker_config,
    write_feeds,
)
from edgecnn.bench.worker import WORKER_SCHEMA_VERSION
from edgecnn.errors import BadInputError, EdgecnnError, MissingRuntimeError
from edgecnn.fsutil import sha256_file, temp_dir

_PROBE_MARK = "@@edgecnn-bench-probe@@ "
_PROBE = f"""
import importlib, importlib.util, json, os, sys
out = {{"python": sys.version.split()[0], "executable": sys.executable}}
try:
    import edgecnn
    out["edgecnn"] = getattr(edgecnn, "__version__", "?")
    from edgecnn.runtimes import RUNTIMES
    def _imports(m):  # imported for real: a package that is there but cannot load (a broken wheel) is missing
        try:
            return importlib.util.find_spec(m) is not None and importlib.import_module(m) is not None
        except Exception:
            return False
    out["runtimes"] = {{n: _imports(m) for n, (_, m, _) in RUNTIMES.items()}}
    out["install"] = {{n: i for n, (_, _, i) in RUNTIMES.items()}}
    from edgecnn.bench.worker import WORKER_SCHEMA_VERSION
    out["worker_schema_version"] = WORKER_SCHEMA_VERSION
except ImportError as e:
    out["import_error"] = str(e)
cache = os.path.join(os.path.expanduser("~"), ".cache", "edgecnn", "bench")
os.makedirs(cache, exist_ok=True)
out["cache"] = cache
out["have"] = [h for h in sys.argv[1:] if os.path.isfile(os.path.join(cache, h))]
print({_PROBE_MARK!r} + json.dumps(out))
"""
# user@host: neither part may start with '-' (ssh would read it as an option, e.g. -Fconfig).
_HOST_RE = re.compile(r"^(?:[A-Za-z0-9_][A-Za-z0-9._-]*@)?[A-Za-z0-9\[][A-Za-z0-9._:\[\]-]*$")


class HostError(EdgecnnError):
    """The board cannot be reached or cannot run the harness (exit 3: environment)."""

    exit_code = 3


class SshHost:
    """A board reached with the system ``ssh`` client. ``ssh_options`` are ``-o`` values
    (``Port=2222``, ``IdentityFile=~/.ssh/board``)."""

    def __init__(
        self,
        target: str,
        *,
        ssh_options: tuple[str, ...] | list[str] = (),
        remote_python: str = "python3",
        connect_timeout: float = 10.0,
    ) -> None:
        if not _HOST_RE.match(target):
            raise BadInputError(
                f"--host '{target}': expected user@hostname or hostname (no spaces, not starting with -)"
            )
        if not (isinstance(connect_timeout, int | float) and 0 < connect_timeout <= 3600):
            raise BadInputError(f"--connect-timeout {connect_timeout}: expected seconds in (0, 3600], e.g. 10")
        for opt in ssh_options:
            if "=" not in opt or opt.startswith("-"):
                raise BadInputError(f"--ssh-option '{opt}': expected KEY=VALUE as for ssh -o, e.g. Port=2222")
        try:
            words = shlex.split(remote_python)
        except ValueError as e:
            raise BadInputError(
                f"--remote-python {remote_python!r}: cannot be split like a shell command ({e}); "
                "give the interpreter and its flags, e.g. 'python3 -I'"
            ) from None
        if not words:
            raise BadInputError("--remote-python is empty; give the board's interpreter, e.g. python3")
        if words[0].startswith("-"):
            raise BadInputError(f"--remote-python {remote_python!r}: must start with the interpreter, e.g. python3")
        self.target = target
        self.ssh_options = tuple(ssh_options)
        self.remote_python = remote_python
        self.connect_timeout = connect_timeout
        self._probe: dict[str, Any] | None = None

    @property
    def python_argv(self) -> list[str]:
        """``--remote-python`` split like a shell would: a path, optionally with flags (``python3 -I``)."""
        return shlex.split(self.remote_python)

    def __repr__(self) -> str:
        return f"SshHost({self.target!r})"

    # -- ssh plumbing -------------------------------------------------------------------------------
    def ssh_argv(self, remote_command: str) -> list[str]:
        argv = ["ssh", "-T", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={max(1, round(self.connect_timeout))}"]
        argv += ["-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4", "-o", "LogLevel=ERROR"]
        for opt in self.ssh_options:
            argv += ["-o", opt]
        return [*argv, self.target, remote_command]

    def _connect_error(self, rc: int, stderr: str) -> EdgecnnError | None:
        last = next((ln.strip() for ln in reversed(stderr.splitlines()) if ln.strip()), "")
        if rc == 255:
            low = stderr.lower()
            if "timed out" in low or "timeout" in low:
                return HostError(
                    f"host {self.target}: no answer within {self.connect_timeout:g} s ({last}); check the address "
                    "and network, or raise --connect-timeout"
                )
            return HostError(
                f"host {self.target}: cannot connect over SSH ({last or 'ssh exit 255'}); check the address, that "
                f"sshd runs there and that key-based login works: ssh {self.target} true"
            )
        if rc == 127:
            return HostError(
                f"host {self.target}: '{self.remote_python}' was not found on the board; install python 3.11+ there "
                "or point --remote-python at its interpreter"
            )
        return None

    def _ssh(
        self, remote_command: str, *, stdin: Any = None, timeout: float, what: str
    ) -> subprocess.CompletedProcess[bytes]:
        try:
            proc = subprocess.run(
                self.ssh_argv(remote_command),
                stdin=stdin if stdin is not None else subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise HostError(
                f"host {self.target}: no answer within {timeout:g} s while {what}; check the address and network, "
                "or raise --connect-timeout"
            ) from None
        except FileNotFoundError:
            raise MissingRuntimeError("the ssh client (needed for --host)", "apt-get install openssh-client") from None
        if proc.returncode != 0:
            err = self._connect_error(proc.returncode, proc.stderr.decode(errors="replace"))
            if err is not None:
                raise err
        return proc

    # -- board facts ---------------------------------------------------------------------------------
    def probe(self, want: list[str] | None = None) -> dict[str, Any]:
        """Check the board: python, edgecnn, runtimes, cache folder; which of ``want`` are cached."""
        cmd = shlex.join([*self.python_argv, "-c", _PROBE, *(want or [])])
        proc = self._ssh(cmd, timeout=self.connect_timeout + 30, what="checking the board")
        out = proc.stdout.decode(errors="replace")
        line = next((ln for ln in out.splitlines() if ln.startswith(_PROBE_MARK)), None)
        if line is None:
            tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise HostError(f"host {self.target}: '{self.remote_python}' could not run the edgecnn probe ({tail[0]})")
        facts: dict[str, Any] = json.loads(line[len(_PROBE_MARK) :])
        install = f"{self.remote_python} -m pip install edgecnn"
        if facts.get("edgecnn") is None or "import_error" in facts:
            what = (
                f"edgecnn on host {self.target} (for {self.remote_python}, python {facts.get('python')})"
                if facts.get("edgecnn") is None
                else f"edgecnn's bench harness on host {self.target} (edgecnn {facts.get('edgecnn')} is too old)"
            )
            raise MissingRuntimeError(what, install)
        if facts.get("worker_schema_version") != WORKER_SCHEMA_VERSION:
            raise MissingRuntimeError(
                f"a matching edgecnn on host {self.target} (it has {facts.get('edgecnn')})", f"{install}=={_version()}"
            )
        self._probe = facts
        return facts

    def require_runtime(self, runtime: str, facts: dict[str, Any]) -> None:
        if not facts.get("runtimes", {}).get(runtime, False):
            pip = facts.get("install", {}).get(runtime, f"pip install {runtime}")
            pip = pip.replace("pip install", f"{self.remote_python} -m pip install", 1)
            raise MissingRuntimeError(f"runtime '{runtime}' on host {self.target}", pip)

    def upload(self, local: Path, name: str, cache: str) -> None:
        """Copy ``local`` to ``cache/name`` on the board through ssh's stdin, atomically (temp + rename)."""
        dest = f"{cache}/{name}"
        tmp = f"{cache}/.{name}.part"
        cmd = f"cat > {shlex.quote(tmp)} && mv -f {shlex.quote(tmp)} {shlex.quote(dest)}"
        size_mb = local.stat().st_size / 1e6
        with open(local, "rb") as f:
            proc = self._ssh(
                cmd, stdin=f, timeout=self.connect_timeout + 60 + size_mb * 2, what=f"copying {local.name}"
            )
        if proc.returncode != 0:
            raise HostError(
                f"host {self.target}: copying {local} to {dest} failed: {proc.stderr.decode(errors='replace').strip()}"
            )

    # -- the run ------------------------------------------------------------------------------------------
    def run(
        self, prepared: PreparedModel, runtime: str, settings: BenchSettings, *, progress: ProgressFn | None = None
    ) -> BenchResult:
        if any(True for _ in _external_data(prepared.path)):
            raise BadInputError(f"{prepared.path}: models with external data files cannot be sent to a board yet")
        with temp_dir("bench") as d:
            npz = write_feeds(prepared, Path(d))
            files = {f"{prepared.sha256}.onnx": prepared.path}
            if npz is not None:
                files[f"feeds-{sha256_file(npz)}.npz"] = npz
            facts = self.probe(list(files))
            self.require_runtime(runtime, facts)
            cache = facts["cache"]
            for name, local in files.items():
                if name not in facts["have"]:
                    self.upload(local, name, cache)
            names = list(files)
            cfg = worker_config(
                prepared,
                runtime,
                settings,
                model_path=f"{cache}/{names[0]}",
                feeds_npz=f"{cache}/{names[1]}" if npz is not None else None,
            )
            cfg["progress"] = progress is not None
            data = run_worker_process(
                self.ssh_argv(shlex.join([*self.python_argv, "-m", "edgecnn.bench.worker", "-"])),
                stdin_text=json.dumps(cfg),
                what=f"{prepared.path} on {runtime} at {self.target}",
                progress=progress,
                timeout_s=settings.timeout_s,
                on_failure=self._connect_error,
            )
        return result_from_worker(prepared, data, host=self.target)


def _external_data(path: Path) -> list[str]:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    return [t.name for t in m.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]


def _version() -> str:
    from edgecnn import __version__

    return __version__


__all__ = ["BenchError", "HostError", "SshHost"]
