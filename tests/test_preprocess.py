"""PreprocessSpec: exact tensors from synthetic colour images, and every malformed spec as a clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgecnn.errors import ConfigError, DataError
from edgecnn.preprocess import ColorOrder, Layout, PreprocessSpec, load_spec


def colour_image(h: int = 4, w: int = 6) -> Image.Image:
    """Red increases along x, green along y, blue constant: every channel distinguishable."""
    a = np.zeros((h, w, 3), np.uint8)
    a[..., 0] = np.arange(w)[None, :] * 40
    a[..., 1] = np.arange(h)[:, None] * 60
    a[..., 2] = 200
    return Image.fromarray(a, "RGB")


def test_rgb_nchw_scale_mean_std() -> None:
    spec = PreprocessSpec(scale=1 / 255, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5))
    x = spec.apply(colour_image())
    raw = np.asarray(colour_image(), np.float32) / 255
    expect = ((raw - np.array([0.5, 0.4, 0.3], np.float32)) / np.array([0.2, 0.25, 0.5], np.float32)).transpose(2, 0, 1)
    assert x.shape == (3, 4, 6) and x.dtype == np.float32
    np.testing.assert_allclose(x, expect, rtol=1e-5, atol=1e-6)


def test_bgr_swaps_channels_and_nhwc_keeps_them_last() -> None:
    rgb = PreprocessSpec(scale=1.0).apply(colour_image())
    bgr = PreprocessSpec(scale=1.0, color_order=ColorOrder.BGR).apply(colour_image())
    np.testing.assert_array_equal(bgr, rgb[::-1])
    assert bgr[0, 0, 0] == 200  # blue first
    nhwc = PreprocessSpec(scale=1.0, layout=Layout.NHWC).apply(colour_image())
    assert nhwc.shape == (4, 6, 3)
    np.testing.assert_array_equal(nhwc, rgb.transpose(1, 2, 0))


def test_resize_shorter_side_then_center_crop() -> None:
    spec = PreprocessSpec(resize=(8,), center_crop=(8, 8), resize_mode="nearest", scale=1.0)
    x = spec.apply(colour_image(4, 6))  # 4x6 -> shorter side 8 -> 8x12 -> centre 8x8
    assert x.shape == (3, 8, 8)
    assert spec.input_shape() == (1, 3, 8, 8)
    with pytest.raises(DataError, match="larger than the image"):
        PreprocessSpec(center_crop=(10, 10)).apply(colour_image())


def test_value_range_is_exact() -> None:
    spec = PreprocessSpec(scale=1 / 255, mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 0.5))
    lo, hi = spec.value_range()
    assert lo == pytest.approx(-2.0) and hi == pytest.approx(2.0)


def test_grayscale_spec_and_image() -> None:
    gray = Image.fromarray(np.full((4, 4), 128, np.uint8), "L")
    x = PreprocessSpec(color_order=ColorOrder.GRAY, mean=(0.0,), std=(1.0,), scale=1.0).apply(gray)
    assert x.shape == (1, 4, 4) and float(x[0, 0, 0]) == 128.0
    with pytest.raises(DataError, match="grayscale image"):
        PreprocessSpec().apply(gray)
    with pytest.raises(DataError, match="mode RGB"):
        PreprocessSpec(color_order=ColorOrder.GRAY, mean=(0.0,), std=(1.0,)).apply(colour_image())


def test_check_against_names_both_sides() -> None:
    spec = PreprocessSpec(resize=(32, 32))
    spec.check_against("input", (1, 3, 32, 32), "float32")
    with pytest.raises(DataError, match="dtype: spec float32, model float16"):
        spec.check_against("input", (1, 3, 32, 32), "float16")
    with pytest.raises(DataError, match="the model looks NHWC"):
        spec.check_against("input", (1, 32, 32, 3), "float32")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("schema_version = 1\ncolour = 'RGB'\n", "unknown key(s) ['colour']"),
        ("schema_version = 2\n", "schema_version 2"),
        ("layout = 'CHW'\n", "layout = 'CHW'; valid values are NCHW, NHWC"),
        ("std = [0.5, 0.0, 0.5]\n", "every value must be > 0"),
        ("mean = [0.5, 0.5]\n", "expected 3 number(s)"),
        ("resize = [0, 32]\n", "resize = [0, 32]"),
        ("scale = -1\n", "scale = -1"),
        ("resize = [32, 32\n", "malformed TOML"),
    ],
)
def test_bad_spec_files(tmp_path: Path, text: str, needle: str) -> None:
    p = tmp_path / "preprocess.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_spec(p)
    assert needle in str(e.value) and str(p) in str(e.value)


def test_bundled_spec_loads() -> None:
    spec = load_spec(Path(__file__).resolve().parents[1] / "calibration_data" / "preprocess.toml")
    assert spec.input_shape() == (1, 3, 32, 32) and spec.color_order is ColorOrder.RGB
