"""Labels for evaluation images: ``labels.csv`` (header ``file,label``) beside the images, and optional
``classes.txt`` (line i = the name of class i) in the data folder or its parent.

A label is a class index or, when ``classes.txt`` exists, a class name. Every image must have exactly one
label and every label must name a known class; anything else is a DataError before any work starts.
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from edgecnn.errors import DataError

LABELS_FILE = "labels.csv"
MAX_FIELD = 1024  # characters in a file name, label or class name
_INDEX = re.compile(r"^-?[0-9]{1,18}$")
CLASSES_FILE = "classes.txt"


@dataclass(frozen=True, kw_only=True)
class Labels:
    """Class index per image file name, and the class names (index -> name; may be empty)."""

    by_file: dict[str, int]
    class_names: tuple[str, ...]
    source: str
    digest: str

    def name(self, index: int) -> str:
        return self.class_names[index] if 0 <= index < len(self.class_names) else str(index)


def find_classes(data_dir: Path) -> tuple[Path | None, tuple[str, ...]]:
    """``classes.txt`` in ``data_dir`` or its parent (blank lines ignored at the end), else (None, ())."""
    for cand in (data_dir / CLASSES_FILE, data_dir.parent / CLASSES_FILE):
        if cand.is_file():
            try:
                names = cand.read_text(encoding="utf-8").splitlines()
            except UnicodeDecodeError:
                raise DataError(f"{cand}: not a UTF-8 text file; expected one class name per line") from None
            if any(len(n) > MAX_FIELD for n in names):
                raise DataError(f"{cand}: a class name is longer than {MAX_FIELD} characters; one short name per line")
            while names and not names[-1].strip():
                names.pop()
            names = [n.strip() for n in names]
            if any(not n for n in names):
                raise DataError(f"{cand}: blank class name on line {names.index('') + 1}; one name per line")
            if len(set(names)) != len(names):
                dup = next(n for n in names if names.count(n) > 1)
                raise DataError(f"{cand}: class name {dup!r} appears more than once")
            return cand, tuple(names)
    return None, ()


MAX_LABELS_BYTES = 256 << 20  # ~5 million rows of 'file,label'


def labels_path(data_dir: Path, explicit: Path | None = None) -> Path | None:
    if explicit is not None:
        if not Path(explicit).is_file():
            raise DataError(f"--labels {explicit}: no such file; expected a CSV with header 'file,label'")
        return Path(explicit)
    p = Path(data_dir) / LABELS_FILE
    if p.exists() and not p.is_file():  # a FIFO or folder named labels.csv is not "no labels"
        raise DataError(f"{p}: not a regular file; expected a CSV with header 'file,label'")
    return p if p.is_file() else None


def load_labels(
    data_dir: Path, files: list[Path] | tuple[Path, ...], num_classes: int | None, explicit: Path | None = None
) -> Labels | None:
    """Labels for ``files`` (images of ``data_dir``), or None when the folder has no ``labels.csv``.

    ``num_classes``: the width of the model's class output, when known; labels must be below it.
    """
    path = labels_path(data_dir, explicit)
    if path is None:
        return None
    classes_path, names = find_classes(Path(data_dir))
    if names and num_classes is not None and len(names) != num_classes:
        raise DataError(
            f"{classes_path}: lists {len(names)} classes but the model's output has {num_classes}; "
            "they must match (line i = class i)"
        )
    index_of = {n: i for i, n in enumerate(names)}
    limit = num_classes if num_classes is not None else (len(names) or None)
    size = path.stat().st_size
    if size > MAX_LABELS_BYTES:
        raise DataError(
            f"{path}: {size / (1 << 20):.0f} MiB; a labels.csv is at most {MAX_LABELS_BYTES >> 20} MiB "
            "(one short 'file,label' row per image)"
        )
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text file; expected a CSV with header 'file,label'") from None
    try:
        rows = list(csv.reader(text.splitlines()))
    except csv.Error as e:
        raise DataError(f"{path}: not a readable CSV ({e}); expected 'file,label' rows") from None
    if not rows or [c.strip().lower() for c in rows[0][:2]] != ["file", "label"]:
        raise DataError(
            f"{path}: first line must be the header 'file,label' (got {','.join(rows[0]) if rows else ''!r})"
        )
    by_file: dict[str, int] = {}
    for lineno, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 2:
            raise DataError(f"{path}:{lineno}: expected 'file,label', got {','.join(row)!r}")
        fname, lab = row[0].strip(), row[1].strip()
        if len(fname) > MAX_FIELD or len(lab) > MAX_FIELD:
            raise DataError(f"{path}:{lineno}: a field is longer than {MAX_FIELD} characters; expected 'file,label'")
        if fname in by_file:
            raise DataError(f"{path}:{lineno}: {fname} is labeled twice")
        if _INDEX.match(lab):  # ASCII digits only: int() would also read '١٢' (Arabic-Indic digits)
            idx = int(lab)
            if idx < 0 or (limit is not None and idx >= limit):
                raise DataError(
                    f"{path}:{lineno}: label {idx} for {fname} names an unknown class; "
                    f"valid class indices are 0..{(limit or 1) - 1}"
                )
        elif lab in index_of:
            idx = index_of[lab]
        else:
            hint = (
                f"known classes are {', '.join(names[:10])}{', …' if len(names) > 10 else ''} ({classes_path})"
                if names
                else f"no {CLASSES_FILE} in {data_dir} or its parent, so labels must be class indices"
            )
            raise DataError(f"{path}:{lineno}: label {lab!r} for {fname} names an unknown class; {hint}")
        by_file[fname] = idx
    if not by_file:
        raise DataError(f"{path}: no labels (only a header); expected one 'file,label' row per image")
    missing = [p.name for p in files if p.name not in by_file]
    if missing:
        raise DataError(
            f"{path}: {len(missing)} image(s) in {data_dir} have no label, e.g. {missing[0]}; label every image"
        )
    h = hashlib.sha256(raw)
    if classes_path is not None:
        h.update(classes_path.read_bytes())
    return Labels(
        by_file={p.name: by_file[p.name] for p in files},
        class_names=names,
        source=str(path),
        digest=h.hexdigest(),
    )
