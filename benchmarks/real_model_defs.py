"""CNNs shaped like the ones users export: a YOLOv8-style detector and a MobileNetV3-style classifier.

Defined in PyTorch (2.13, CPU) and exported with ``torch.onnx.export`` the way a user would, so the graphs
carry what real exports carry: SiLU as Sigmoid·Mul, C2f blocks with Split and Concat, SPPF with chained
MaxPool, nearest Resize, a two-output detection head; HardSwish/HardSigmoid squeeze-excitation blocks, and
at opset 10 HardSwish written as HardSigmoid·Mul.

The layouts follow the public architectures (Ultralytics YOLOv8 ``C2f``/``SPPF``/``Detect`` at the "n"
widths 16-256, https://github.com/ultralytics/ultralytics/blob/v8.0.0/ultralytics/nn/modules.py; MobileNetV3
-Small, Howard et al. 2019, arXiv:1905.02244, Table 2) but are written here from those descriptions; a
``width`` multiplier and input size make the same code build the small trained test models
(tests/test_quantize_real.py) and the realistic-size benchmark models (benchmarks/real_models.py).
Used by the benchmark and the tests only; torch is not a dependency of the package.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn


def _c(ch: int, width: float) -> int:
    return max(4, round(ch * width / 4) * 4)


class ConvBnSiLU(nn.Module):
    def __init__(self, cin: int, cout: int, k: int = 1, s: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, s, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    def __init__(self, c: int, shortcut: bool) -> None:
        super().__init__()
        self.cv1, self.cv2 = ConvBnSiLU(c, c, 3), ConvBnSiLU(c, c, 3)
        self.add = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nn.Module):
    """1x1 conv, split in two, n bottlenecks on the second half, concat of all, 1x1 conv."""

    def __init__(self, cin: int, cout: int, n: int, shortcut: bool) -> None:
        super().__init__()
        self.c = cout // 2
        self.cv1 = ConvBnSiLU(cin, 2 * self.c, 1)
        self.cv2 = ConvBnSiLU((2 + n) * self.c, cout, 1)
        self.m = nn.ModuleList(Bottleneck(self.c, shortcut) for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = list(self.cv1(x).split((self.c, self.c), 1))
        for m in self.m:
            y.append(m(y[-1]))
        return self.cv2(torch.cat(y, 1))


class SPPF(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        c = cin // 2
        self.cv1, self.cv2 = ConvBnSiLU(cin, c, 1), ConvBnSiLU(4 * c, cout, 1)
        self.m = nn.MaxPool2d(5, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1))


class YoloLike(nn.Module):
    """YOLOv8-style backbone (C2f, SPPF), PAN neck (nearest upsample + concat) and a decoupled head with two
    outputs: ``boxes`` [N, 4*reg, A] (box distribution logits) and ``scores`` [N, classes, A] (sigmoid)."""

    def __init__(self, width: float = 1.0, depth: int = 1, classes: int = 80, reg: int = 16) -> None:
        super().__init__()
        w = [_c(c, width) for c in (16, 32, 64, 128, 256)]
        self.stem = nn.Sequential(ConvBnSiLU(3, w[0], 3, 2), ConvBnSiLU(w[0], w[1], 3, 2), C2f(w[1], w[1], depth, True))
        self.p3 = nn.Sequential(ConvBnSiLU(w[1], w[2], 3, 2), C2f(w[2], w[2], 2 * depth, True))
        self.p4 = nn.Sequential(ConvBnSiLU(w[2], w[3], 3, 2), C2f(w[3], w[3], 2 * depth, True))
        self.p5 = nn.Sequential(ConvBnSiLU(w[3], w[4], 3, 2), C2f(w[4], w[4], depth, True), SPPF(w[4], w[4]))
        self.up = nn.Upsample(scale_factor=2.0, mode="nearest")
        self.h4 = C2f(w[4] + w[3], w[3], depth, False)
        self.h3 = C2f(w[3] + w[2], w[2], depth, False)
        self.d3 = ConvBnSiLU(w[2], w[2], 3, 2)
        self.n4 = C2f(w[2] + w[3], w[3], depth, False)
        self.d4 = ConvBnSiLU(w[3], w[3], 3, 2)
        self.n5 = C2f(w[3] + w[4], w[4], depth, False)
        c2, c3 = max(16, w[2] // 4, 4 * reg), max(w[2], min(classes, 100))
        self.box = nn.ModuleList(
            nn.Sequential(ConvBnSiLU(c, c2, 3), ConvBnSiLU(c2, c2, 3), nn.Conv2d(c2, 4 * reg, 1))
            for c in (w[2], w[3], w[4])
        )
        self.cls = nn.ModuleList(
            nn.Sequential(ConvBnSiLU(c, c3, 3), ConvBnSiLU(c3, c3, 3), nn.Conv2d(c3, classes, 1))
            for c in (w[2], w[3], w[4])
        )
        self.reg, self.classes = reg, classes

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p3 = self.p3(self.stem(x))
        p4 = self.p4(p3)
        p5 = self.p5(p4)
        h4 = self.h4(torch.cat((self.up(p5), p4), 1))
        o3 = self.h3(torch.cat((self.up(h4), p3), 1))
        o4 = self.n4(torch.cat((self.d3(o3), h4), 1))
        o5 = self.n5(torch.cat((self.d4(o4), p5), 1))
        boxes, scores = [], []
        for f, b, c in zip((o3, o4, o5), self.box, self.cls, strict=True):
            boxes.append(b(f).flatten(2))
            scores.append(c(f).flatten(2))
        return torch.cat(boxes, 2), torch.cat(scores, 2).sigmoid()


class SqueezeExcite(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        mid = max(8, _c(c // 4, 1.0))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1, self.fc2 = nn.Conv2d(c, mid, 1), nn.Conv2d(mid, c, 1)
        self.relu, self.gate = nn.ReLU(), nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc2(self.relu(self.fc1(self.pool(x)))))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, k: int, exp: int, cout: int, se: bool, hs: bool, s: int) -> None:
        super().__init__()
        act = nn.Hardswish if hs else nn.ReLU
        layers: list[nn.Module] = []
        if exp != cin:
            layers += [nn.Conv2d(cin, exp, 1, bias=False), nn.BatchNorm2d(exp), act()]
        layers += [nn.Conv2d(exp, exp, k, s, k // 2, groups=exp, bias=False), nn.BatchNorm2d(exp), act()]
        if se:
            layers.append(SqueezeExcite(exp))
        layers += [nn.Conv2d(exp, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.block = nn.Sequential(*layers)
        self.res = s == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.res else y


# MobileNetV3-Small (arXiv:1905.02244, Table 2): kernel, expansion, output, SE, HardSwish, stride.
MBV3_SMALL = (
    (3, 16, 16, True, False, 2),
    (3, 72, 24, False, False, 2),
    (3, 88, 24, False, False, 1),
    (5, 96, 40, True, True, 2),
    (5, 240, 40, True, True, 1),
    (5, 240, 40, True, True, 1),
    (5, 120, 48, True, True, 1),
    (5, 144, 48, True, True, 1),
    (5, 288, 96, True, True, 2),
    (5, 576, 96, True, True, 1),
    (5, 576, 96, True, True, 1),
)


class MobileNetV3Like(nn.Module):
    def __init__(self, width: float = 1.0, classes: int = 1000, blocks: int = len(MBV3_SMALL)) -> None:
        super().__init__()
        c = _c(16, width)
        layers: list[nn.Module] = [nn.Conv2d(3, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c), nn.Hardswish()]
        for k, exp, out, se, hs, s in MBV3_SMALL[:blocks]:
            layers.append(InvertedResidual(c, k, _c(exp, width), _c(out, width), se, hs, s))
            c = _c(out, width)
        last = _c(576, width) if blocks == len(MBV3_SMALL) else 6 * c
        layers += [nn.Conv2d(c, last, 1, bias=False), nn.BatchNorm2d(last), nn.Hardswish()]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        hidden = _c(1024, width) if blocks == len(MBV3_SMALL) else 2 * last
        self.head = nn.Sequential(nn.Linear(last, hidden), nn.Hardswish(), nn.Linear(hidden, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)).flatten(1))


def export(model: nn.Module, path: Path, shape: tuple[int, ...], opset: int, outputs: list[str]) -> Path:
    """``torch.onnx.export`` as a user runs it (TorchScript exporter: it supports opsets below 18)."""
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.zeros(shape),),
            str(path),
            opset_version=opset,
            dynamo=False,
            input_names=["input"],
            output_names=outputs,
            training=torch.onnx.TrainingMode.PRESERVE,  # BatchNorm stays a node, as in an unfolded export
            do_constant_folding=True,
        )
    return path


def settle_bn(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """BatchNorm statistics from data for seeded random weights (one pass in train mode, cumulative
    average), as a trained network has them: every activation then has a realistic scale."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval()


# ------------------------------------------------------------------------ synthetic tinted RGB images -----
# Four classes of shapes (square, disc, triangle, cross) in random colours on a textured background, with a
# per-image colour cast that keeps every channel inside a band narrower than 0..255 (as camera data often
# is: no pure black, no clipped white). Written as real PNG files; the label and box come back as arrays.
CLASSES = ("square", "disc", "triangle", "cross")
TINT_LO = np.array([40, 60, 25])  # per channel (R, G, B): the data spans about 40..200, 60..190, 25..140
TINT_HI = np.array([200, 190, 140])


def shape_images(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` HxWx3 uint8 images, their class (0..3) and box (x0, y0, x1, y1) in pixels."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    imgs = np.zeros((n, size, size, 3), np.uint8)
    labels = rng.integers(0, len(CLASSES), n)
    boxes = np.zeros((n, 4), np.float32)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        bg = 0.35 + 0.15 * np.sin(2 * np.pi * (xx * rng.uniform(1, 3) + yy * rng.uniform(1, 3)))[..., None]
        bg = bg + rng.normal(0, 0.05, (size, size, 1))
        im = Image.fromarray((np.clip(bg, 0, 1) * 255).astype(np.uint8)[..., 0]).convert("RGB")
        d = ImageDraw.Draw(im)
        r = rng.uniform(0.18, 0.35) * size
        cx, cy = rng.uniform(r, size - r, 2)
        box = (cx - r, cy - r, cx + r, cy + r)
        color = tuple(int(v) for v in rng.integers(120, 256, 3))
        kind = CLASSES[labels[i]]
        if kind == "square":
            d.rectangle(box, fill=color)
        elif kind == "disc":
            d.ellipse(box, fill=color)
        elif kind == "triangle":
            d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=color)
        else:
            t = r / 3
            d.rectangle((cx - r, cy - t, cx + r, cy + t), fill=color)
            d.rectangle((cx - t, cy - r, cx + t, cy + r), fill=color)
        a = np.asarray(im, np.float32) / 255.0
        cast = rng.uniform(0.85, 1.0, 3)
        imgs[i] = np.clip(TINT_LO + a * cast * (TINT_HI - TINT_LO), 0, 255).astype(np.uint8)
        boxes[i] = box
    return imgs, labels, boxes


def write_pngs(imgs: np.ndarray, folder: Path, spec_toml: str) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, a in enumerate(imgs):
        Image.fromarray(a, "RGB").save(folder / f"img_{i:04d}.png")
    (folder / "preprocess.toml").write_text(spec_toml)
    return folder


def spec_toml(size: int, normalize: bool = False) -> str:
    """A PreprocessSpec: RGB, NCHW, float32, pixels / 255 (and ImageNet mean/std when ``normalize``)."""
    extra = "mean = [0.485, 0.456, 0.406]\nstd = [0.229, 0.224, 0.225]\n" if normalize else ""
    return (
        f'schema_version = 1\ncolor_order = "RGB"\nlayout = "NCHW"\ndtype = "float32"\nresize = [{size}, {size}]\n'
        f"scale = 0.00392156862745098\n{extra}"
    )


def to_tensor(imgs: np.ndarray, normalize: bool = False) -> torch.Tensor:
    x = imgs.astype(np.float32) / 255.0
    if normalize:
        x = (x - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
