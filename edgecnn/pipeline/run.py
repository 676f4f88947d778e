"""Run a pipeline into one folder: each step in a fresh process, skipped when its command and the content of
everything it reads are unchanged, and a manifest written atomically after every step (so Ctrl-C, a failing
step or a killed machine leave a consistent folder that the next run resumes from).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from edgecnn import __version__
from edgecnn.errors import BadInputError, CheckFailedError, ConfigError, EdgecnnError, InterruptedError_
from edgecnn.fsutil import temp_dir
from edgecnn.pipeline.config import PipelineConfig, config_from_dict
from edgecnn.pipeline.steps import Step, build_steps
from edgecnn.report.jsonio import read_json, write_json

MANIFEST = "manifest.json"
MANIFEST_KIND = "run-manifest"
MANIFEST_SCHEMA = 1
RUN_PLACEHOLDER = "<run>"
PACKAGES = ("edgecnn", "onnx", "onnxruntime", "openvino", "ai-edge-litert", "ethos-u-vela", "numpy", "Pillow")

Echo = Callable[[str], None]


class StepFailedError(EdgecnnError):
    """A pipeline step exited with an error; carries the step's own exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# ---------------------------------------------------------------------------------------------- hashing
def hash_path(path: Path, cache: dict[Path, str] | None = None) -> str:
    """SHA-256 of a file, or of a folder's relative names and file contents (sorted); 'missing' if absent."""
    path = Path(path)
    if cache is not None and path in cache:
        return cache[path]
    if path.is_file():
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
        digest = h.hexdigest()
    elif path.is_dir():
        h = hashlib.sha256(b"dir\0")
        for p in sorted(q for q in path.rglob("*") if q.is_file()):
            h.update(str(p.relative_to(path)).encode("utf-8", "surrogateescape") + b"\0")
            h.update(bytes.fromhex(hash_path(p)))
        digest = h.hexdigest()
    else:
        digest = "missing"
    if cache is not None:
        cache[path] = digest
    return digest


def _portable(arg: str, run_dir: Path) -> str:
    """An argument with the run folder replaced by a placeholder, so keys compare across folders."""
    prefix = str(run_dir)
    return RUN_PLACEHOLDER + arg[len(prefix) :] if arg.startswith(prefix) else arg


def _input_label(p: Path, run_dir: Path) -> str:
    return _portable(str(p), run_dir)


def step_key(step: Step, run_dir: Path, inputs: dict[str, str]) -> str:
    payload = {
        "argv": [_portable(a, run_dir) for a in step.argv],
        "inputs": inputs,
        "edgecnn": __version__,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


# --------------------------------------------------------------------------------------------- manifest
def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _machine() -> dict[str, Any]:
    from edgecnn.bench.machine import machine_facts

    return machine_facts()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(kw_only=True)
class RunState:
    """The manifest being built; written after every step."""

    run_dir: Path
    cfg: PipelineConfig
    steps: list[dict[str, Any]] = field(default_factory=list)
    status: str = "running"
    started: str = field(default_factory=_now)

    def write(self) -> None:
        write_json(
            self.run_dir / MANIFEST,
            {
                "name": self.cfg.name,
                "status": self.status,
                "started": self.started,
                "updated": _now(),
                "pipeline": {
                    "source": str(self.cfg.source),
                    "sha256": hash_path(self.cfg.source),
                    "config_sha256": self.cfg.digest(),
                    "config": self.cfg.to_dict(),
                },
                "versions": versions(),
                "machine": _machine(),
                "steps": self.steps,
                "artifacts": {
                    a: s.get("outputs", {}).get(a, "missing") for s in self.steps for a in s.get("artifacts", [])
                },
            },
            kind=MANIFEST_KIND,
            schema_version=MANIFEST_SCHEMA,
        )


def read_manifest(run_dir: Path) -> dict[str, Any]:
    return read_json(Path(run_dir) / MANIFEST, kind=MANIFEST_KIND, schema_version=MANIFEST_SCHEMA)


# ---------------------------------------------------------------------------------------- run folder
def _claim_run_dir(cfg: PipelineConfig, run_dir: Path, force: bool) -> dict[str, dict[str, Any]]:
    """Previous steps by name (empty when starting afresh); refuses a folder that holds something else."""
    if run_dir.exists() and not run_dir.is_dir():
        raise BadInputError(f"--out {run_dir}: exists and is not a folder")
    for what, folder in (("calibration", cfg.calibration), ("evaluation", cfg.evaluation)):
        if folder is not None and run_dir.resolve() == Path(folder).resolve():
            raise BadInputError(
                f"--out {run_dir}: is the pipeline's {what} image folder; a run writes plots there that the next "
                "run would read as images; choose another folder"
            )
    run_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = run_dir / MANIFEST
    if not manifest_path.exists():
        foreign = [p.name for p in run_dir.iterdir()]
        if foreign and not force:
            raise BadInputError(
                f"--out {run_dir}: not empty and holds no {MANIFEST} ({', '.join(sorted(foreign)[:3])}…); "
                "choose an empty folder or pass --force"
            )
        return {}
    try:
        old = read_manifest(run_dir)
    except BadInputError as e:
        if not force:
            raise BadInputError(f"{e}; pass --force to start this run folder afresh") from None
        return {}
    old_model = old.get("pipeline", {}).get("config", {}).get("model")
    if (old.get("name") != cfg.name or old_model != str(cfg.model)) and not force:
        raise BadInputError(
            f"--out {run_dir}: holds run '{old.get('name')}' of {old_model}, not '{cfg.name}' of {cfg.model}; "
            "choose another folder or pass --force to replace it"
        )
    if force:
        for s in old.get("steps", []):
            for rel in s.get("outputs", {}):
                p = run_dir / rel
                if p.is_file():
                    p.unlink()
        return {}
    return {s["name"]: s for s in old.get("steps", []) if isinstance(s, dict) and "name" in s}


def _why_run(step: Step, prev: dict[str, Any] | None, key: str, inputs: dict[str, str], run_dir: Path) -> str | None:
    """None when the step can be skipped, else the reason it runs."""
    if prev is None:
        return "no earlier run of this step"
    if prev.get("status") not in ("ok", "verdict-failed"):
        return f"the earlier run {prev.get('status', 'did not finish')}"
    if prev.get("key") != key:
        changed = [k for k, v in inputs.items() if prev.get("inputs", {}).get(k) != v]
        if changed:
            return "changed: " + ", ".join(Path(c).name or c for c in changed[:3]) + (" …" if len(changed) > 3 else "")
        return "the command or edgecnn version changed"
    for rel, digest in prev.get("outputs", {}).items():
        now = hash_path(run_dir / rel)
        if now != digest:
            return f"output {rel} {'is missing' if now == 'missing' else 'was modified'}"
    return None


def _run_child(argv: Sequence[str], echo_err: Echo) -> tuple[int, str]:
    """Run `edgecnn ARGV` in a fresh process; stdout goes straight through, stderr is echoed and kept."""
    from edgecnn import interrupts

    proc: subprocess.Popen[str] | None = None
    last: list[str] = []
    try:
        # No interrupt inside fork; one that arrived meanwhile is raised as the block ends, inside this try, so
        # the child is known and gets the signal too (raised before the try, it left the step running).
        with interrupts.deferred():
            proc = subprocess.Popen(
                [sys.executable, "-m", "edgecnn", *argv],
                stderr=subprocess.PIPE,
                text=True,
                errors="replace",
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        assert proc.stderr is not None
        for line in proc.stderr:
            line = line.rstrip("\n")
            if not line.startswith("error:"):  # the step's error line becomes the run's own one-line error
                echo_err(line)
            last = [*last[-19:], line]
        return proc.wait(), "\n".join(last)
    except BaseException as e:
        # Ctrl-C or SIGTERM: the child may not have seen it (a signal sent to this process only); pass the same
        # signal on and give the child time to clean up its own temporary files before it is killed.
        if proc is not None and proc.poll() is None:
            from edgecnn.interrupts import Terminated

            proc.send_signal(signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        raise


def _error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    errs = [ln for ln in lines if ln.startswith("error:")]
    return (errs or lines or ["(no message)"])[-1].removeprefix("error:").strip()


@dataclass(frozen=True, kw_only=True)
class RunResult:
    run_dir: Path
    status: str  # passed | verdict-failed | failed | interrupted
    steps: list[dict[str, Any]]
    exit_code: int


def run_pipeline(
    cfg: PipelineConfig,
    run_dir: Path,
    *,
    force: bool = False,
    only_artifacts: bool = False,
    echo: Echo = print,
    echo_err: Echo | None = None,
    summary: bool = True,
) -> RunResult:
    """Run (or resume) ``cfg`` into ``run_dir``. ``only_artifacts``: just the steps that make models."""
    run_dir = Path(run_dir).resolve()
    previous = _claim_run_dir(cfg, run_dir, force)
    steps = build_steps(cfg, run_dir)
    if only_artifacts:
        steps = [s for s in steps if s.artifacts]
    state = RunState(run_dir=run_dir, cfg=cfg)
    cache: dict[Path, str] = {}
    err = echo_err or (lambda line: print(line, file=sys.stderr))
    exit_code = 0
    current = "(between steps)"
    try:
        for i, step in enumerate(steps, 1):
            current = step.name
            inputs = {_input_label(p, run_dir): hash_path(p, cache if run_dir not in p.parents else None)
                      for p in step.inputs}  # fmt: skip
            key = step_key(step, run_dir, inputs)
            prev = previous.get(step.name)
            reason = _why_run(step, prev, key, inputs, run_dir)
            record: dict[str, Any] = {
                "name": step.name,
                "command": "edgecnn " + shlex.join(step.argv),
                "argv": list(step.argv),
                "key": key,
                "inputs": inputs,
                "artifacts": list(step.artifacts),
            }
            head = f"[{i}/{len(steps)}] {step.name}"
            if reason is None and prev is not None:
                echo(f"{head}: skipped (command and inputs unchanged since {prev.get('finished', 'the last run')})")
                state.steps.append({**prev, **record, "status": prev["status"], "skipped": True, "seconds": 0.0})
                if prev["status"] == "verdict-failed":
                    exit_code = 1
                state.write()
                continue
            echo(f"{head}: running ({reason})\n  $ {record['command']}")
            state.steps.append({**record, "status": "running", "started": _now()})
            state.write()
            t0 = time.perf_counter()
            try:
                code, stderr = _run_child(step.argv, err)
            except BaseException:
                state.steps[-1].update(status="interrupted", seconds=round(time.perf_counter() - t0, 3))
                raise
            seconds = round(time.perf_counter() - t0, 3)
            for p in step.updates:  # inputs the step rewrote: keyed by what the next run will read
                cache.pop(p, None)
                inputs[_input_label(p, run_dir)] = hash_path(p)
            outputs = {rel: hash_path(run_dir / rel) for rel in step.outputs}
            status = "ok" if code == 0 else ("verdict-failed" if code == 1 and step.failing_verdict else "failed")
            state.steps[-1].update(
                status=status,
                exit_code=code,
                seconds=seconds,
                finished=_now(),
                inputs=inputs,
                key=step_key(step, run_dir, inputs),
                outputs={k: v for k, v in outputs.items() if v != "missing"},
                skipped=False,
                **({"error": _error_line(stderr)} if code else {}),
            )
            if status == "failed":
                state.status = "failed"
                state.write()
                raise StepFailedError(
                    f"step '{step.name}' failed (exit {code}): {_error_line(stderr)}; earlier steps' outputs are kept "
                    f"in {run_dir}",
                    exit_code=code if code in (1, 2, 3) else 2,
                )
            if status == "verdict-failed":
                exit_code = 1
            state.write()
        state.status = "passed" if exit_code == 0 else "verdict-failed"
        state.write()
    except KeyboardInterrupt as e:
        from edgecnn.interrupts import Terminated, acknowledge

        acknowledge()  # handled here: the manifest and summary below must still be written
        for s in state.steps:  # the signal may land before or after the child ran: no step stays "running"
            if s.get("status") == "running":
                s["status"] = "interrupted"
        state.status = "interrupted"
        state.write()
        err = InterruptedError_(
            f"{'terminated' if isinstance(e, Terminated) else 'interrupted'} during step '{current}'; {run_dir} is "
            "consistent: run the same command again to resume"
        )
        err.exit_code = 143 if isinstance(e, Terminated) else 130
        raise err from None
    finally:
        if summary:
            from edgecnn.pipeline.summary import write_summaries

            write_summaries(run_dir, read_manifest(run_dir) if (run_dir / MANIFEST).exists() else None)
    return RunResult(run_dir=run_dir, status=state.status, steps=state.steps, exit_code=exit_code)


# ----------------------------------------------------------------------------------------------- verify
@dataclass(frozen=True, kw_only=True)
class ArtifactCheck:
    name: str
    recorded: str
    reproduced: str

    @property
    def match(self) -> bool:
        return self.recorded == self.reproduced


def verify_run(run_dir: Path, *, echo: Echo = print, keep: Path | None = None) -> list[ArtifactCheck]:
    """Re-run the artefact steps of ``run_dir``'s manifest in a fresh folder and compare artefact hashes.

    Raises CheckFailedError (exit 1) when an input changed since the run or an artefact differs."""
    run_dir = Path(run_dir).resolve()
    manifest = read_manifest(run_dir)
    try:
        cfg = config_from_dict(manifest["pipeline"]["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"{run_dir / MANIFEST}: no usable pipeline config ({e}); re-run the pipeline") from None
    recorded_inputs: dict[str, str] = {}
    for s in manifest.get("steps", []):
        for k, v in s.get("inputs", {}).items():
            if not k.startswith(RUN_PLACEHOLDER):
                recorded_inputs.setdefault(k, v)
    changed = [k for k, v in recorded_inputs.items() if hash_path(Path(k)) != v]
    baseline = str(cfg.baseline) if cfg.baseline else None
    changed = [c for c in changed if c != baseline]  # the gate's baseline moves on by design
    if changed:
        raise CheckFailedError(
            f"{run_dir}: cannot reproduce: input(s) changed since the run: {', '.join(changed[:3])}"
            + (" …" if len(changed) > 3 else "")
        )
    recorded = dict(manifest.get("artifacts", {}))
    if not recorded:
        raise BadInputError(f"{run_dir / MANIFEST}: records no artefacts (no quantize or export step ran)")
    with temp_dir("verify") if keep is None else contextlib.nullcontext(Path(keep)) as tmp:
        echo(f"re-running the artefact steps of {run_dir} in {tmp}")
        result = run_pipeline(cfg, tmp, force=True, only_artifacts=True, echo=echo, summary=False)
        got = {a: s.get("outputs", {}).get(a, "missing") for s in result.steps for a in s.get("artifacts", [])}
    checks = [ArtifactCheck(name=a, recorded=d, reproduced=got.get(a, "missing")) for a, d in recorded.items()]
    return checks
