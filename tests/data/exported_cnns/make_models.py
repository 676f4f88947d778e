"""Small CNNs in the shapes real exporters write (torch.onnx.export, TorchScript exporter, opset 17), saved next to
this file for tests/test_export_tflite_ops.py: MobileNetV3 blocks (HardSwish, SE with HardSigmoid), a YOLOv8-style
detector (SiLU, C2f Split/Concat, SPPF MaxPool, nearest Upsample, DFL Softmax head, box decoding Sub/Add/Div/Mul),
EfficientNet-lite (ReLU6), a CRNN-style OCR model (MaxPool (2, 1), Permute/Reshape, Linear on 3-D, LogSoftmax) and
a ResNet stem + basic block. Weights are random (seed 0) with non-trivial BatchNorm statistics.

Regenerate (needs torch; the .onnx files are committed so the tests do not):
    PYTHONPATH=. python tests/data/exported_cnns/make_models.py
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


def cbn(ci: int, co: int, k: int = 3, s: int = 1, g: int = 1, act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(ci, co, k, s, k // 2, groups=g, bias=False), nn.BatchNorm2d(co), act())


class SE(nn.Module):
    def __init__(self, c: int, r: int = 4) -> None:
        super().__init__()
        self.f1, self.f2 = nn.Conv2d(c, c // r, 1), nn.Conv2d(c // r, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = F.hardsigmoid(self.f2(F.relu(self.f1(F.adaptive_avg_pool2d(x, 1)))))
        return x * w


class MobileNetV3Blocks(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        hs = nn.Hardswish
        self.stem = cbn(3, 16, 3, 2, act=hs)
        self.b1 = nn.Sequential(cbn(16, 16, 3, 2, g=16), SE(16), nn.Conv2d(16, 24, 1, bias=False), nn.BatchNorm2d(24))
        self.b2 = nn.Sequential(cbn(24, 72, 1, act=hs), cbn(72, 72, 5, 1, g=72, act=hs), SE(72),
                                nn.Conv2d(72, 24, 1, bias=False), nn.BatchNorm2d(24))  # fmt: skip
        self.last = cbn(24, 96, 1, act=hs)
        self.cls = nn.Sequential(nn.Linear(96, 64), nn.Hardswish(), nn.Dropout(0.2), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.b1(self.stem(x))
        x = self.last(x + self.b2(x))
        return self.cls(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class C2f(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.cv1 = cbn(c, c, 1, act=nn.SiLU)
        self.m = cbn(c // 2, c // 2, 3, act=nn.SiLU)
        self.cv2 = cbn(c * 3 // 2, c, 1, act=nn.SiLU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.cv1(x).chunk(2, 1)
        return self.cv2(torch.cat([a, b, self.m(b)], 1))


class YoloV8Style(nn.Module):
    def __init__(self, nc: int = 4, reg: int = 4) -> None:
        super().__init__()
        silu = nn.SiLU
        self.stem, self.d1, self.c1 = cbn(3, 8, 3, 2, act=silu), cbn(8, 16, 3, 2, act=silu), C2f(16)
        self.d2, self.c2, self.sppf = cbn(16, 32, 3, 2, act=silu), C2f(32), cbn(32, 32, 1, act=silu)
        self.up, self.c3 = nn.Upsample(scale_factor=2, mode="nearest"), C2f(48)
        self.nc, self.reg = nc, reg
        self.h1, self.h2 = nn.Conv2d(48, 4 * reg + nc, 1), nn.Conv2d(32, 4 * reg + nc, 1)
        self.dfl = nn.Conv2d(reg, 1, 1, bias=False)
        self.dfl.weight.data[:] = torch.arange(reg, dtype=torch.float).view(1, reg, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p3 = self.c1(self.d1(self.stem(x)))
        y = self.sppf(self.c2(self.d2(p3)))
        m1 = F.max_pool2d(y, 5, 1, 2)
        p4 = y + m1 + F.max_pool2d(m1, 5, 1, 2)
        f3 = self.c3(torch.cat([self.up(p4), p3], 1))
        o = torch.cat([h(f).view(f.shape[0], 4 * self.reg + self.nc, -1) for f, h in ((f3, self.h1), (p4, self.h2))], 2)
        box, cls = o.split((4 * self.reg, self.nc), 1)
        b, _, a = box.shape
        d = self.dfl(box.view(b, 4, self.reg, a).transpose(2, 1).softmax(1)).view(b, 4, a)
        anchors = torch.arange(a, dtype=torch.float).view(1, 1, a) * 0.5
        lt, rb = d.chunk(2, 1)
        x1y1, x2y2 = anchors - lt, anchors + rb
        return torch.cat([torch.cat([(x1y1 + x2y2) / 2, x2y2 - x1y1], 1) * 8.0, cls.sigmoid()], 1)


class EfficientNetLiteBlocks(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        r6 = nn.ReLU6
        self.f = nn.Sequential(
            cbn(3, 32, 3, 2, act=r6), cbn(32, 32, 3, 1, g=32, act=r6), nn.Conv2d(32, 16, 1), nn.BatchNorm2d(16),
            cbn(16, 96, 1, act=r6), cbn(96, 96, 3, 2, g=96, act=r6), nn.Conv2d(96, 24, 1), cbn(24, 128, 1, act=r6),
        )  # fmt: skip
        self.fc = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.f(x).mean((2, 3)))


class CRNNStyle(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.f = nn.Sequential(cbn(1, 16, 3), nn.MaxPool2d(2, 2), cbn(16, 32, 3), nn.MaxPool2d((2, 1), (2, 1)),
                               cbn(32, 48, 3), nn.MaxPool2d((2, 1), (2, 1)))  # fmt: skip
        self.fc = nn.Linear(48 * 4, 37)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.f(x)
        b, c, h, w = f.shape
        return self.fc(f.permute(0, 3, 1, 2).reshape(b, w, c * h)).log_softmax(-1)


class ResNetStem(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(cbn(3, 32, 7, 2), nn.MaxPool2d(3, 2, 1))
        self.a = cbn(32, 32)
        self.b = nn.Sequential(nn.Conv2d(32, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32))
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = F.relu(x + self.b(self.a(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1))


MODELS = {
    "mobilenetv3": (MobileNetV3Blocks, (1, 3, 96, 96)),
    "yolov8": (YoloV8Style, (1, 3, 64, 64)),
    "efficientnet_lite": (EfficientNetLiteBlocks, (1, 3, 64, 64)),
    "crnn": (CRNNStyle, (1, 1, 32, 64)),
    "resnet": (ResNetStem, (1, 3, 64, 64)),
}


def main() -> None:
    here = Path(__file__).parent
    for name, (cls, shape) in MODELS.items():
        torch.manual_seed(0)
        m = cls().eval()
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
        torch.onnx.export(m, (torch.randn(shape),), str(here / f"{name}.onnx"), opset_version=17, dynamo=False,
                          input_names=["x"], output_names=["y"])  # fmt: skip


if __name__ == "__main__":
    main()
