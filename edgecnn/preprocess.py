"""PreprocessSpec: the one place that turns an image file into a model input tensor.

Calibration, drift and bench all read images through this spec, and the spec is checked against the
model's input (layout, channels, spatial size, dtype) before any work starts: a preprocessing mismatch
is the most common production failure, so it is an error here, never a silent conversion.

File format (``preprocess.toml``, flat keys, unknown keys are errors)::

    schema_version = 1
    color_order = "RGB"        # RGB | BGR | GRAY: channel order the model expects
    layout = "NCHW"            # NCHW | NHWC
    dtype = "float32"          # float32 | float16 | uint8 | int8
    resize = [32, 32]          # optional: [H, W], or one int = shorter side (aspect kept)
    resize_mode = "bilinear"   # nearest | bilinear | bicubic
    center_crop = [32, 32]     # optional: [H, W] taken from the centre after resize
    scale = 0.00392156862745098  # x * scale, before mean/std
    mean = [0.485, 0.456, 0.406] # per channel, in color_order
    std = [0.229, 0.224, 0.225]

Order of operations: decode -> check mode -> resize -> center crop -> float -> scale -> (x - mean) / std
-> channel order -> layout -> dtype.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from edgecnn.errors import ConfigError, DataError
from edgecnn.fsutil import read_toml

SCHEMA_VERSION = 1
# Numbers a spec may hold: anything outside turns pixels into inf/NaN or into values no float16/int8 input keeps.
MIN_STD = 1e-6
MAX_VALUE = 1e6
MAX_SIDE = 16384  # resize / center_crop side, pixels
MAX_PIXELS = 64_000_000  # decoded image size; larger files are refused before decoding (decompression bombs)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".ppm", ".pgm")


class ColorOrder(StrEnum):
    RGB = "RGB"
    BGR = "BGR"
    GRAY = "GRAY"


class Layout(StrEnum):
    NCHW = "NCHW"
    NHWC = "NHWC"


_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}
_DTYPES = ("float32", "float16", "uint8", "int8")


@dataclass(frozen=True, kw_only=True)
class PreprocessSpec:
    color_order: ColorOrder = ColorOrder.RGB
    layout: Layout = Layout.NCHW
    dtype: str = "float32"
    resize: tuple[int, ...] | None = None
    resize_mode: str = "bilinear"
    center_crop: tuple[int, int] | None = None
    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = field(default=(0.0, 0.0, 0.0))
    std: tuple[float, ...] = field(default=(1.0, 1.0, 1.0))
    source: str = ""

    @property
    def channels(self) -> int:
        return 1 if self.color_order is ColorOrder.GRAY else 3

    def output_hw(self) -> tuple[int, int] | None:
        """Spatial size every image ends up with, or None when it depends on the image."""
        if self.center_crop:
            return self.center_crop
        if self.resize and len(self.resize) == 2:
            return (self.resize[0], self.resize[1])
        return None

    def input_shape(self, batch: int = 1) -> tuple[int, ...] | None:
        hw = self.output_hw()
        if hw is None:
            return None
        if self.layout is Layout.NCHW:
            return (batch, self.channels, *hw)
        return (batch, *hw, self.channels)

    def value_range(self) -> tuple[float, float]:
        """The exact range of the tensors this spec produces from 8-bit images (pixel 0..255)."""
        lows = [(0.0 * self.scale - m) / sd for m, sd in zip(self.mean, self.std, strict=True)]
        highs = [(255.0 * self.scale - m) / sd for m, sd in zip(self.mean, self.std, strict=True)]
        return float(min(lows)), float(max(highs))

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d.pop("source")
        d["schema_version"] = SCHEMA_VERSION
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items() if v is not None}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def digest(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    # -- image -> tensor -------------------------------------------------------------------------
    def load(self, path: Path) -> np.ndarray:
        """Read one image file and return its tensor without the batch dimension."""
        return self.apply(self.decode(path), name=str(path))

    @staticmethod
    def decode(path: Path) -> Image.Image:
        """Decode one image file, refusing decompression bombs and unreadable files (DataError naming it)."""
        try:
            with Image.open(path) as im:
                w, h = im.size
                if w * h > MAX_PIXELS:
                    raise DataError(
                        f"{path}: {w}x{h} pixels; edgecnn decodes images of at most {MAX_PIXELS:,} pixels "
                        "(a larger one may be a decompression bomb)"
                    )
                im.load()
                img = im
        except Image.DecompressionBombError:
            raise DataError(
                f"{path}: too many pixels; edgecnn decodes images of at most {MAX_PIXELS:,} pixels "
                "(a larger one may be a decompression bomb)"
            ) from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
            raise DataError(
                f"{path}: not a readable image ({e.__class__.__name__}); expected one of {', '.join(IMAGE_SUFFIXES)}"
            ) from None
        return img

    def apply(self, img: Image.Image, name: str = "<image>") -> np.ndarray:
        want = "L" if self.color_order is ColorOrder.GRAY else "RGB"
        mode = img.mode
        if want == "RGB" and mode in ("RGBA", "P"):
            img = img.convert("RGB")
            mode = "RGB"
        if mode != want:
            kind = "grayscale" if mode in ("L", "1", "LA", "I", "I;16", "F") else f"mode {mode}"
            raise DataError(
                f"{name}: {kind} image, but the spec{self._src()} expects color_order={self.color_order.value} "
                f"({'1' if want == 'L' else '3'} channel(s)); convert the images or fix color_order"
            )
        if self.resize:
            img = img.resize(self._resize_to(img.size), _RESAMPLE[self.resize_mode])
        if self.center_crop:
            ch, cw = self.center_crop
            w, h = img.size
            if ch > h or cw > w:
                raise DataError(f"{name}: center_crop {ch}x{cw} is larger than the image ({h}x{w}) after resize")
            top, left = (h - ch) // 2, (w - cw) // 2
            img = img.crop((left, top, left + cw, top + ch))
        x = np.asarray(img, dtype=np.float32)
        if x.ndim == 2:
            x = x[:, :, None]
        x = (x * np.float32(self.scale) - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        if self.color_order is ColorOrder.BGR:
            x = x[:, :, ::-1]
        if self.layout is Layout.NCHW:
            x = x.transpose(2, 0, 1)
        return np.ascontiguousarray(x.astype(self.dtype))

    def _resize_to(self, size: tuple[int, int]) -> tuple[int, int]:
        assert self.resize
        if len(self.resize) == 2:
            return (self.resize[1], self.resize[0])
        w, h = size
        s = self.resize[0]
        return (s, max(1, round(h * s / w))) if w <= h else (max(1, round(w * s / h)), s)

    def _src(self) -> str:
        return f" ({self.source})" if self.source else ""

    # -- model check ------------------------------------------------------------------------------
    def check_against(
        self, input_name: str, shape: tuple[int, ...], elem_dtype: str, model_name: str = "model"
    ) -> None:
        """Raise DataError when this spec cannot feed an input of ``shape``/``elem_dtype``; say both sides."""
        if len(shape) != 4:
            raise DataError(
                f"{model_name}: input '{input_name}' has shape {list(shape)}; image preprocessing needs a 4-D input"
            )
        problems: list[str] = []
        if self.layout is Layout.NCHW:
            c, h, w = shape[1], shape[2], shape[3]
        else:
            h, w, c = shape[1], shape[2], shape[3]
        other = Layout.NHWC if self.layout is Layout.NCHW else Layout.NCHW
        if c != self.channels:
            alt_c = shape[3] if self.layout is Layout.NCHW else shape[1]
            hint = f" (the model looks {other.value})" if alt_c == self.channels else ""
            problems.append(f"channels: spec {self.channels} in {self.layout.value}, model {c}{hint}")
        hw = self.output_hw()
        if hw is None:
            problems.append(
                f"spatial size: spec gives no fixed size (set resize=[{h}, {w}] or center_crop), model {h}x{w}"
            )
        elif hw != (h, w):
            problems.append(f"spatial size: spec {hw[0]}x{hw[1]}, model {h}x{w}")
        if elem_dtype != self.dtype:
            problems.append(f"dtype: spec {self.dtype}, model {elem_dtype}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            problems.append(f"mean/std: need {self.channels} values each, spec has {len(self.mean)}/{len(self.std)}")
        if problems:
            raise DataError(
                f"preprocess spec{self._src()} does not match {model_name} input '{input_name}' {list(shape)}: "
                + "; ".join(problems)
            )


_KEYS = {
    "schema_version",
    "color_order",
    "layout",
    "dtype",
    "resize",
    "resize_mode",
    "center_crop",
    "scale",
    "mean",
    "std",
}


def _int_list(path: Path, key: str, v: object, n: tuple[int, ...]) -> tuple[int, ...]:
    if isinstance(v, int) and not isinstance(v, bool):
        v = [v]
    if (
        not isinstance(v, list)
        or len(v) not in n
        or not all(isinstance(x, int) and not isinstance(x, bool) and 0 < x <= MAX_SIDE for x in v)
    ):
        raise ConfigError(
            f"{path}: {key} = {v!r}; expected {' or '.join(str(k) for k in n)} integer(s) in 1..{MAX_SIDE}"
        )
    return tuple(v)


def spec_from_dict(d: dict[str, object], path: Path) -> PreprocessSpec:
    unknown = sorted(set(d) - _KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; valid keys are {sorted(_KEYS)}")
    ver = d.get("schema_version", SCHEMA_VERSION)
    if ver != SCHEMA_VERSION:
        raise ConfigError(f"{path}: schema_version {ver!r} is not supported; expected {SCHEMA_VERSION}")

    def choice(key: str, valid: tuple[str, ...], default: str) -> str:
        v = d.get(key, default)
        if v not in valid:
            raise ConfigError(f"{path}: {key} = {v!r}; valid values are {', '.join(valid)}")
        return str(v)

    color = ColorOrder(choice("color_order", tuple(c.value for c in ColorOrder), "RGB"))
    n = 1 if color is ColorOrder.GRAY else 3

    def floats(key: str, default: float) -> tuple[float, ...]:
        v = d.get(key, [default] * n)
        if isinstance(v, int | float) and not isinstance(v, bool):
            v = [v] * n
        if (
            not isinstance(v, list)
            or len(v) != n
            or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in v)
        ):
            raise ConfigError(f"{path}: {key} = {v!r}; expected {n} number(s) for color_order={color.value}")
        if not all(math.isfinite(x) and abs(x) <= MAX_VALUE for x in v):
            raise ConfigError(f"{path}: {key} = {v!r}; expected finite numbers of magnitude at most {MAX_VALUE:g}")
        if key == "std" and any(x < MIN_STD for x in v):
            raise ConfigError(
                f"{path}: std = {v!r}; every value must be > 0 (at least {MIN_STD:g}: it divides the pixels)"
            )
        return tuple(float(x) for x in v)

    scale = d.get("scale", 1.0 / 255.0)
    if (
        not isinstance(scale, int | float)
        or isinstance(scale, bool)
        or not math.isfinite(scale)
        or not MIN_STD <= scale <= MAX_VALUE
    ):
        raise ConfigError(
            f"{path}: scale = {scale!r}; expected a number in [{MIN_STD:g}, {MAX_VALUE:g}], e.g. 0.00392156862745098 (1/255)"
        )
    return PreprocessSpec(
        color_order=color,
        layout=Layout(choice("layout", ("NCHW", "NHWC"), "NCHW")),
        dtype=choice("dtype", _DTYPES, "float32"),
        resize=_int_list(path, "resize", d["resize"], (1, 2)) if "resize" in d else None,
        resize_mode=choice("resize_mode", tuple(_RESAMPLE), "bilinear"),
        center_crop=_int_list(path, "center_crop", d["center_crop"], (2,)) if "center_crop" in d else None,  # type: ignore[arg-type]
        scale=float(scale),
        mean=floats("mean", 0.0),
        std=floats("std", 1.0),
        source=str(path),
    )


def load_spec(path: str | Path) -> PreprocessSpec:
    path = Path(path)
    d = read_toml(path, "preprocess spec", "write a preprocess.toml (see README) or pass --preprocess")
    return spec_from_dict(d, path)


def find_spec(data_dir: Path, explicit: Path | None = None) -> PreprocessSpec:
    """The spec passed with --preprocess, else ``preprocess.toml`` in the data folder or its parent."""
    if explicit is not None:
        return load_spec(explicit)
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: not a directory; give a folder of images")
    for cand in (data_dir / "preprocess.toml", data_dir.parent / "preprocess.toml"):
        if cand.is_file():
            return load_spec(cand)
    raise ConfigError(
        f"{data_dir}: no preprocess.toml here or in its parent; pass --preprocess FILE to say how images become tensors"
    )


def list_images(data_dir: Path) -> list[Path]:
    """Image files directly in ``data_dir`` (sorted), or a clear error when there are none."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: not a directory; give a folder of images")
    files = sorted(p for p in data_dir.iterdir() if p.is_file() and not p.name.startswith("."))
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    if not images:
        what = "is empty" if not files else f"has no image files ({len(files)} other file(s), e.g. {files[0].name})"
        raise DataError(f"{data_dir}: {what}; expected {', '.join(IMAGE_SUFFIXES)} files")
    return images
