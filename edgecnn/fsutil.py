"""Every file edgecnn writes goes through here: atomic outputs, output-vs-input guards, temp folders.

- ``guard_outputs``: no output may resolve (symlinks, hard links, ``..``) to an input or to another output of
  the same command; checked before any work starts.
- ``atomic_path`` / ``atomic_write_*``: write to ``.NAME.edgecnn-PID-RAND.tmp`` beside the output, then rename.
  A new file gets the umask's mode, an overwritten file keeps its mode, a symlink's target is written (the link
  stays), and a special file (``/dev/null``, ``/dev/stdout``, a FIFO) is written in place, never replaced.
  Any OSError (read-only folder, disk full, RLIMIT_FSIZE) is a one-line BadInputError naming the path and the
  errno text, and the previous file is left as it was.
- ``temp_dir``: ``$TMPDIR/edgecnn-KIND-PID-RAND``; ``owned_temp_dir`` ties one to an object's lifetime. Temp files and folders of edgecnn's own naming whose owner
  process is gone (killed with SIGKILL, or a crashed machine) are removed at the next run (``sweep_stale``).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import stat
import tempfile
import time
import tomllib
import weakref
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from edgecnn.errors import BadInputError, ConfigError
from edgecnn.interrupts import deferred

TEMP_PREFIX = "edgecnn-"
# Temp names carry the owner's pid: ``edgecnn-quantize-1234-abcd`` / ``.out.onnx.edgecnn-1234-abcd.tmp``.
_TEMP_DIR_RE = re.compile(r"^edgecnn-[a-z]+-(?P<pid>\d+)-[A-Za-z0-9_]+$")
_LEGACY_DIR_RE = re.compile(r"^edgecnn-(quantize|calib|bench|drift|predict|budget|sens)-[A-Za-z0-9_]{8}$")
_TEMP_FILE_RE = re.compile(r"^\..+\.edgecnn-(?P<pid>\d+)-[A-Za-z0-9_]+\.tmp$")
STALE_AGE_S = 24 * 3600  # a legacy temp folder (no pid in its name) is stale after a day
# Files a data folder holds that commands read (besides images).
_DATA_FILES = ("labels.csv", "classes.txt", "preprocess.toml")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".ppm", ".pgm")


# -- errors -------------------------------------------------------------------------------------------
def os_error(path: Path | str, e: OSError, doing: str = "cannot write") -> BadInputError:
    """One line for an OSError on ``path``: the path, the errno text and its symbol (exit 2)."""
    name = errno.errorcode.get(e.errno or 0, "")
    text = e.strerror or str(e)
    return BadInputError(f"{path}: {doing}: {text}{f' ({name})' if name else ''}")


# -- output checks ------------------------------------------------------------------------------------
def is_special(path: Path) -> bool:
    """Written in place, never replaced: a device, FIFO or socket, or anything under /dev or /proc (e.g.
    ``/dev/stdout`` redirected to a file: renaming over it would swap the shell's file for another)."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        return True
    return stat.S_ISREG(st.st_mode) and os.path.abspath(path).startswith(("/dev/", "/proc/"))


def check_output_path(path: Path) -> Path:
    """Reject an output path whose folder does not exist or is a folder itself, before any work starts."""
    path = Path(path)
    if is_special(path):
        return path
    try:
        os.fsencode(path).decode("utf-8")
    except UnicodeDecodeError:
        raise BadInputError(
            f"{path}: the output path is not valid UTF-8, which ONNX and the runtimes cannot write; rename it"
        ) from None
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise BadInputError(f"{path}: output folder '{parent}' does not exist; create it or choose another path")
    if path.is_dir():
        raise BadInputError(f"{path}: is a directory; give a file path for the output")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BadInputError(f"{path}: output folder '{parent}' is not writable; choose another path")
    return path


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)  # symlinks and hard links (same device and inode)
    except OSError:
        return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))


def model_files(path: Path | None) -> list[Path]:
    """``path`` and the external-data files it names (what reading the model reads)."""
    if path is None:
        return []
    path = Path(path)
    out = [path]
    if path.suffix.lower() == ".tflite":  # a flatbuffer: no external data
        return out
    if not path.is_file() or path.stat().st_size >= 2**31 - 1:  # the loader refuses these with a reason
        return out
    with contextlib.suppress(Exception):  # an unreadable model gets the loader's precise error later
        import onnx

        m = onnx.load(str(path), load_external_data=False)
        locs = {
            e.value
            for t in m.graph.initializer
            if t.data_location == onnx.TensorProto.EXTERNAL
            for e in t.external_data
            if e.key == "location"
        }
        for n in m.graph.node:
            for a in n.attribute:
                if a.t.data_location == onnx.TensorProto.EXTERNAL:
                    locs.update(e.value for e in a.t.external_data if e.key == "location")
        out += [path.parent / loc for loc in sorted(locs) if "\0" not in loc]  # a NUL: the loader says why
    return out


def _folder_inputs(folder: Path) -> list[Path]:
    """What a command reads from a data folder: its images and labels/classes/preprocess files."""
    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    return [p for p in entries if p.suffix.lower() in _IMAGE_SUFFIXES or p.name in _DATA_FILES]


def guard_outputs(inputs: Iterable[Path | None], outputs: Mapping[str, Path | None]) -> None:
    """Refuse (exit 2) any output equal to an input or to another output, before any work starts.

    ``inputs``: files and folders the command reads (a folder stands for its images and data files);
    ``outputs``: option name -> path. Special files (``/dev/null``, ``/dev/stdout``) are exempt.
    """
    files: list[Path] = []
    for p in inputs:
        if p is None:
            continue
        p = Path(p)
        if p.is_dir():
            files += _folder_inputs(p)
            files += [p.parent / n for n in _DATA_FILES[1:]]
        else:
            files.append(p)
    seen: list[tuple[str, Path]] = []
    for opt, out in outputs.items():
        if out is None:
            continue
        out = check_output_path(Path(out))
        if is_special(out):
            continue
        for f in files:
            if _same(out, f):
                raise BadInputError(
                    f"{opt} {out}: is the input {f}; writing it would destroy what is being read; "
                    "choose another output path"
                )
        for other_opt, other in seen:
            if _same(out, other):
                raise BadInputError(f"{opt} {out}: is also the {other_opt} output; give each output its own path")
        seen.append((opt, out))


# -- temp files and folders ---------------------------------------------------------------------------
def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError, ValueError):  # gone, or no pid at all
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _stale(entry: os.DirEntry[str] | Path, pid: int | None, now: float) -> bool:
    try:
        st = entry.stat(follow_symlinks=False) if isinstance(entry, os.DirEntry) else entry.lstat()
    except OSError:
        return False
    if st.st_uid != os.getuid():  # only our own leftovers
        return False
    if pid is None:  # a legacy name without a pid: only by age
        return now - st.st_mtime > STALE_AGE_S
    return not _alive(pid)  # a live owner keeps its files however long it runs


def _remove(p: str | Path) -> None:
    with contextlib.suppress(OSError):
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p, ignore_errors=True)
        else:
            os.unlink(p)


def sweep_stale(folder: Path | str | None = None) -> int:
    """Remove edgecnn temp folders (and staging files) in ``folder`` (default ``$TMPDIR``) whose owner is gone."""
    folder = Path(folder or tempfile.gettempdir())
    removed, now = 0, time.time()
    with contextlib.suppress(OSError), os.scandir(folder) as it:
        for e in it:
            f = _TEMP_FILE_RE.match(e.name)  # the staging file of a write to a special file (/dev/stdout)
            if f is not None and _stale(e, int(f["pid"]), now):
                _remove(e.path)
                removed += 1
                continue
            if not e.name.startswith(TEMP_PREFIX):
                continue
            m = _TEMP_DIR_RE.match(e.name)
            if (m is not None and _stale(e, int(m["pid"]), now)) or (
                m is None and _LEGACY_DIR_RE.match(e.name) and _stale(e, None, now)
            ):
                _remove(e.path)
                removed += 1
    return removed


def sweep_stale_siblings(path: Path) -> int:
    """Remove ``.NAME.edgecnn-PID-*.tmp`` beside ``path`` left by a killed writer."""
    parent = path.parent if str(path.parent) else Path(".")
    removed, now = 0, time.time()
    with contextlib.suppress(OSError):
        for p in parent.glob(f".{glob_escape(path.name)}.edgecnn-*.tmp"):
            m = _TEMP_FILE_RE.match(p.name)
            if m is not None and _stale(p, int(m["pid"]), now):
                _remove(p)
                removed += 1
    return removed


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


_open_dirs: dict[str, int] = {}  # temp_dir folders whose block has not ended -> the pid that made them


@contextlib.contextmanager
def temp_dir(kind: str, dir: Path | str | None = None) -> Iterator[Path]:
    """A private temp folder ``edgecnn-KIND-PID-RAND``, removed on exit, on Ctrl-C and on SIGTERM. It is also
    recorded until its block ends, for ``remove_owned()``: an interrupt raised in contextlib's own frames (after
    ``__enter__`` got the folder, before the ``with`` body starts) leaves this generator suspended, and the
    ``os._exit`` of an interrupted command never resumes it (a SIGTERM test left one behind that way)."""
    if dir is None:
        sweep_stale()
    path: str | None = None
    try:
        with deferred():
            path = tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{kind}-{os.getpid()}-", dir=dir)
            _open_dirs[path] = os.getpid()
        yield Path(path)
    finally:
        if path is not None:
            with deferred():  # a second Ctrl-C must not cut the cleanup short
                shutil.rmtree(path, ignore_errors=True)
                _open_dirs.pop(path, None)


_owned: list[weakref.finalize] = []  # folders tied to an object's lifetime, removed at the latest by remove_owned()


def owned_temp_dir(kind: str, owner: object) -> Path:
    """A private temp folder like ``temp_dir``'s for a resource that outlives one ``with`` block (a profiling
    session): removed when ``owner`` is collected, when ``release`` is called with it, or by ``remove_owned()``,
    which an interrupted command calls before it exits (``os._exit`` runs no finalizers). The folder is created
    and its removal recorded with signals held, so a Ctrl-C between the two cannot leak it."""
    sweep_stale()
    with deferred():
        path = tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{kind}-{os.getpid()}-")
        _owned[:] = [f for f in _owned if f.alive]
        _owned.append(weakref.finalize(owner, shutil.rmtree, path, ignore_errors=True))
    return Path(path)


def release(path: Path) -> None:
    """Remove a folder from ``owned_temp_dir`` now (it is no longer needed)."""
    with deferred():
        for f in _owned:
            info = f.peek()
            if info is not None and Path(info[2][0]) == path:
                f()
        shutil.rmtree(path, ignore_errors=True)


def remove_owned() -> None:
    """Remove every folder from ``owned_temp_dir`` whose owner is still alive, and every ``temp_dir`` folder of
    this process whose block has not ended (an interrupted command calls this before ``os._exit``)."""
    with deferred():
        for f in _owned:
            f()
        _owned.clear()
        for path, pid in list(_open_dirs.items()):
            if pid == os.getpid():
                shutil.rmtree(path, ignore_errors=True)
            _open_dirs.pop(path, None)


# -- atomic outputs -----------------------------------------------------------------------------------
def _umask() -> int:
    m = os.umask(0o022)
    os.umask(m)
    return m


def _write_in_place(tmp: Path, dest: Path) -> None:
    """Copy ``tmp`` into the special file ``dest`` (a device or FIFO), which must stay what it is."""
    with open(tmp, "rb") as src, open(dest, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; move it over ``path`` only if the block succeeds."""
    path = check_output_path(Path(path))
    special = is_special(path)
    dest = Path(os.path.realpath(path)) if path.is_symlink() and not special else path
    folder = Path(tempfile.gettempdir()) if special else (dest.parent if str(dest.parent) else Path("."))
    if not special:
        sweep_stale_siblings(dest)
    tmp: Path | None = None
    try:
        try:
            with deferred():
                fd, name = tempfile.mkstemp(
                    prefix=f".{dest.name}.{TEMP_PREFIX}{os.getpid()}-", suffix=".tmp", dir=folder
                )
                tmp = Path(name)
            os.close(fd)
            yield tmp
            if special:
                _write_in_place(tmp, path)
            else:
                try:
                    mode = stat.S_IMODE(os.stat(dest).st_mode)
                except FileNotFoundError:
                    mode = 0o666 & ~_umask()
                os.chmod(tmp, mode)
                os.replace(tmp, dest)
        except OSError as e:
            raise os_error(path, e) from None
    finally:
        if tmp is not None:
            with deferred(), contextlib.suppress(OSError):  # a second Ctrl-C must not cut the cleanup short
                tmp.unlink(missing_ok=True)


def save_onnx(model: object, path: Path | str) -> None:
    """``onnx.save`` whose OSError (disk full, ``ulimit -f``, a read-only folder) names the file (exit 2): onnx
    opens the file itself, so the error it raises carries no file name."""
    import onnx

    try:
        onnx.save(model, str(path))  # type: ignore[arg-type]
    except OSError as e:
        raise os_error(path, e) from None


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


# -- reading ------------------------------------------------------------------------------------------
def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def parse_toml(text: str, source: Path | str) -> dict[str, object]:
    """The one TOML parse: a syntax error, and nesting so deep that the parser recurses past Python's limit
    (``a = [[[[...]]]]``), are one-line ConfigErrors naming ``source``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: malformed TOML: {e}; fix the syntax at that line") from None
    except RecursionError:
        raise ConfigError(f"{source}: malformed TOML: arrays or tables nested too deeply") from None
    except ValueError as e:  # an integer of more than 4300 digits (Python's int-from-string limit)
        raise ConfigError(f"{source}: malformed TOML: {' '.join(str(e).split())[:120]}") from None
    huge = huge_number(data)
    if huge is not None:
        raise ConfigError(f"{source}: {huge}: a number beyond any valid setting (at most 1e300)")
    return data


HUGE = 1e300  # no setting edgecnn reads is near this; larger ints overflow float() where values are converted


def huge_number(data: object, where: str = "") -> str | None:
    """The dotted key of the first integer in ``data`` too large to convert to a float (TOML/JSON allow any), or
    None."""
    if isinstance(data, dict):
        for k, v in data.items():
            found = huge_number(v, f"{where}.{k}" if where else str(k))
            if found:
                return found
    elif isinstance(data, list):
        for i, v in enumerate(data):
            found = huge_number(v, f"{where}[{i}]")
            if found:
                return found
    elif isinstance(data, int) and not isinstance(data, bool) and abs(data) > HUGE:
        return where or "value"
    return None


def read_toml(path: Path, what: str, hint: str) -> dict[str, object]:
    """Parse the TOML file ``path`` (a ``what``); a missing, malformed or non-UTF-8 file is a ConfigError."""
    path = Path(path)
    if not path.is_file():
        if path.exists():
            kind = "a directory" if path.is_dir() else "not a regular file"
            raise ConfigError(f"{path}: {kind}; expected a TOML {what}")
        raise ConfigError(f"{path}: no such {what}; {hint}")
    try:
        return parse_toml(path.read_text(encoding="utf-8"), path)
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file; expected a TOML {what}") from None
    except OSError as e:
        raise os_error(path, e, "cannot read") from None
