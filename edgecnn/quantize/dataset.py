"""Calibration data: image files read through the PreprocessSpec, checked against the model first."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from edgecnn.errors import DataError
from edgecnn.fsutil import sha256_file
from edgecnn.preprocess import PreprocessSpec, list_images


@dataclass(frozen=True, kw_only=True)
class ImageDataset:
    """The first ``n`` images of a folder (sorted by name) and the spec that turns them into tensors."""

    root: Path
    files: tuple[Path, ...]
    spec: PreprocessSpec

    @classmethod
    def open(cls, root: Path, spec: PreprocessSpec, samples: int | None = None) -> ImageDataset:
        files = list_images(root)
        if samples is not None:
            if samples <= 0:
                raise DataError(f"--samples {samples}; expected a positive number of images")
            if samples > len(files):
                raise DataError(f"{root}: --samples {samples} but the folder has only {len(files)} image(s)")
            files = files[:samples]
        if spec.output_hw() is None:
            sizes = {_size(p) for p in files[:64]}
            if len(sizes) > 1:
                raise DataError(
                    f"{root}: images have mixed sizes ({', '.join(f'{w}x{h}' for w, h in sorted(sizes)[:3])}) and the "
                    f"preprocess spec{f' ({spec.source})' if spec.source else ''} has no resize rule; add resize = [H, W]"
                )
        return cls(root=root, files=tuple(files), spec=spec)

    def __len__(self) -> int:
        return len(self.files)

    def check_model_input(self, name: str, shape: tuple[int, ...], dtype: str, model_name: str) -> None:
        self.spec.check_against(name, shape, dtype, model_name)

    def batches(self, batch: int) -> Iterator[np.ndarray]:
        for i in range(0, len(self.files), batch):
            yield np.stack([self.spec.load(p) for p in self.files[i : i + batch]])

    def digest(self) -> str:
        """SHA-256 over the files' names and contents and the preprocess spec: the calibration set's identity."""
        h = hashlib.sha256(self.spec.to_json().encode())
        for p in self.files:
            h.update(p.name.encode())
            h.update(bytes.fromhex(sha256_file(p)))
        return h.hexdigest()


def _size(p: Path) -> tuple[int, int]:
    try:
        with Image.open(p) as im:
            return im.size
    except OSError:
        raise DataError(f"{p}: not a readable image") from None
