"""Calibration data: image files read through the PreprocessSpec, checked against the model first."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

from edgecnn.errors import DataError
from edgecnn.fsutil import sha256_file
from edgecnn.graph.load import LoadedModel, graph_inputs
from edgecnn.graph.summary import dtype_name
from edgecnn.preprocess import PreprocessSpec, list_images

# Decoded tensors a quantize run keeps on disk (ImageDataset.cached): its checks read the same images many times.
CACHE_BYTES = 1 << 30


@dataclass(kw_only=True)
class DecodeCache:
    """Where decoded tensors are kept (``.npy`` files, one per image file) and how many bytes they may take.
    Shared by the copies of one dataset (shards too); a file that cannot be written is simply not kept."""

    root: Path
    budget: int = CACHE_BYTES
    used: int = 0

    def path(self, image: Path) -> Path:
        return self.root / f"{hashlib.sha256(os.fsencode(image.resolve())).hexdigest()[:32]}.npy"

    def get(self, image: Path) -> np.ndarray | None:
        try:
            return np.load(self.path(image), allow_pickle=False)
        except (OSError, ValueError):  # not kept (or not on this machine)
            return None

    def put(self, image: Path, x: np.ndarray) -> None:
        if self.used + x.nbytes > self.budget:
            return
        target = self.path(image)
        tmp = target.with_name(f"{target.stem}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            with open(tmp, "wb") as f:
                np.save(f, x, allow_pickle=False)
            os.replace(tmp, target)  # a reader sees the whole file or none
            self.used += x.nbytes
        except OSError:
            tmp.unlink(missing_ok=True)


@dataclass(frozen=True, kw_only=True)
class ImageDataset:
    """The first ``n`` images of a folder (sorted by name) and the spec that turns them into tensors."""

    root: Path
    files: tuple[Path, ...]
    spec: PreprocessSpec
    cache: DecodeCache | None = field(default=None, compare=False)

    def cached(self, root: Path) -> ImageDataset:
        """This dataset, keeping each decoded tensor in ``root`` (up to CACHE_BYTES) the first time it is read:
        the passes after the first read a file instead of decoding and preprocessing again. The same tensors
        (np.save / np.load round-trip exactly). Keyed by file and, through the folder, by the spec."""
        root = root / hashlib.sha256(self.spec.to_json().encode()).hexdigest()[:16]
        root.mkdir(parents=True, exist_ok=True)
        return replace(self, cache=DecodeCache(root=root))

    @classmethod
    def open(
        cls, root: Path, spec: PreprocessSpec, samples: int | None = None, *, option: str = "--samples"
    ) -> ImageDataset:
        """``option``: the command-line option ``samples`` came from, named in the errors."""
        files = list_images(root)
        if samples is not None:
            if samples <= 0:
                raise DataError(f"{option} {samples}; expected a positive number of images")
            if samples > len(files):
                raise DataError(f"{root}: {option} {samples} but the folder has only {len(files)} image(s)")
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

    def check_model(self, loaded: LoadedModel) -> str:
        """Check that the spec can feed ``loaded``'s single image input (before any work); return its name."""
        inputs = graph_inputs(loaded.model)
        if len(inputs) != 1:
            raise DataError(
                f"{loaded.path}: has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); one image folder "
                f"feeds a single input: give one per input, --calib {inputs[0].name}=DIR1 --calib {inputs[1].name}=DIR2"
            )
        vi = inputs[0]
        dtype = dtype_name(vi.type.tensor_type.elem_type)
        self.spec.check_against(vi.name, loaded.input_shapes[vi.name], dtype, str(loaded.path))
        return vi.name

    def batches(self, batch: int, prefetch: bool = False) -> Iterator[np.ndarray]:
        """Stacked tensors, ``batch`` images at a time. ``prefetch`` decodes the next batch in a thread
        while the caller works on this one (PIL and numpy release the GIL): one extra batch in memory."""
        chunks = (self.files[i : i + batch] for i in range(0, len(self.files), batch))
        if not prefetch:
            for files in chunks:
                yield self._stack(files)
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="edgecnn-decode") as pool:
            pending = None
            for files in chunks:
                nxt = pool.submit(self._stack, files)
                if pending is not None:
                    yield pending.result()
                pending = nxt
            if pending is not None:
                yield pending.result()

    def _stack(self, files: tuple[Path, ...]) -> np.ndarray:
        return np.stack([self._load(p) for p in files])

    def _load(self, p: Path) -> np.ndarray:
        if self.cache is None:
            return self.spec.load(p)
        x = self.cache.get(p)
        if x is None:
            x = self.spec.load(p)
            self.cache.put(p, x)
        return x

    def digest(self) -> str:
        """SHA-256 over the files' names and contents and the preprocess spec: the calibration set's identity."""
        h = hashlib.sha256(self.spec.to_json().encode())
        for p in self.files:
            h.update(os.fsencode(p.name))  # a name that is not UTF-8 still has bytes
            h.update(bytes.fromhex(sha256_file(p)))
        return h.hexdigest()


def _size(p: Path) -> tuple[int, int]:
    try:
        with Image.open(p) as im:
            return im.size
    except Image.DecompressionBombError:
        raise DataError(f"{p}: too many pixels (a decompression bomb?); resize the image") from None
    except (OSError, ValueError, SyntaxError):
        raise DataError(f"{p}: not a readable image") from None


@dataclass(frozen=True, kw_only=True)
class MultiInputDataset:
    """One image folder per model input (stereo pairs, image + mask, ...): every input is calibrated from
    its own data. Folders are paired by sorted position, so they must hold the same number of images."""

    inputs: dict[str, ImageDataset]

    @property
    def spec(self) -> PreprocessSpec:
        return next(iter(self.inputs.values())).spec

    def __len__(self) -> int:
        return min(len(d) for d in self.inputs.values())

    def check_model(self, loaded: LoadedModel) -> tuple[str, ...]:
        """Check every input's spec against the model input of that name; return the names in graph order."""
        model_inputs = graph_inputs(loaded.model)
        names = [vi.name for vi in model_inputs]
        missing = sorted(set(names) - set(self.inputs))
        extra = sorted(set(self.inputs) - set(names))
        if missing or extra:
            raise DataError(
                f"{loaded.path}: inputs are {', '.join(names)}; calibration data given for "
                f"{', '.join(self.inputs) or 'none'}"
                + (f" (missing {', '.join(missing)})" if missing else "")
                + (f" (unknown {', '.join(extra)})" if extra else "")
            )
        sizes = {n: len(d) for n, d in self.inputs.items()}
        if len(set(sizes.values())) > 1:
            raise DataError(
                "calibration folders must pair up image by image; counts: "
                + ", ".join(f"{n}={k} ({self.inputs[n].root})" for n, k in sizes.items())
            )
        for vi in model_inputs:
            dtype = dtype_name(vi.type.tensor_type.elem_type)
            self.inputs[vi.name].spec.check_against(vi.name, loaded.input_shapes[vi.name], dtype, str(loaded.path))
        return tuple(names)

    def batches(self, batch: int, prefetch: bool = False) -> Iterator[dict[str, np.ndarray]]:
        its = {n: d.batches(batch, prefetch) for n, d in self.inputs.items()}
        for parts in zip(*its.values(), strict=False):
            yield dict(zip(its, parts, strict=True))

    def specs(self) -> dict[str, PreprocessSpec]:
        return {n: d.spec for n, d in self.inputs.items()}

    def cached(self, root: Path) -> MultiInputDataset:
        """Every input's images kept decoded (ImageDataset.cached), each input in its own folder of ``root``."""
        return replace(self, inputs={n: d.cached(root / f"input{i}") for i, (n, d) in enumerate(self.inputs.items())})

    def digest(self) -> str:
        h = hashlib.sha256()
        for n, d in sorted(self.inputs.items()):
            h.update(n.encode())
            h.update(bytes.fromhex(d.digest()))
        return h.hexdigest()


CalibrationData = ImageDataset | MultiInputDataset


def feeds_of(x: np.ndarray | dict[str, np.ndarray], input_name: str) -> dict[str, np.ndarray]:
    """A batch from either dataset kind as runtime feeds."""
    return x if isinstance(x, dict) else {input_name: x}
