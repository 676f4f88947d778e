"""Single-operator TFLite models, each on one side of one vendor limit, for the ground-truth tests.

Every case is built with edgecnn's own ``TFLiteBuilder`` (the writer ``export --to tflite`` uses) and is
judged twice: by the vendor's tool (Vela 5.2.0 for Ethos-U, the LiteRT interpreter's XNNPACK delegate for
Arm CPUs) and by ``edgecnn check`` on the same file. The tests compare the two; nothing here states an
expected answer. Cases come in int8 and float32 (``dt``), and cover the classes the vendors' code checks:
kernel/stride/padding/dilation geometry, ranks and sizes, quantization equality, modes and axes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from edgecnn.export.tflite_writer import TFLiteBuilder

ACT_SCALE = 0.05
W_SCALE = 0.01


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[], bytes]


def _q(dt: str, scale: float = ACT_SCALE, zp: int = 0) -> dict[str, object]:
    if dt in ("int8", "uint8", "int16"):
        return {"scale": [scale], "zero_point": [zp + (128 if dt == "uint8" else 0)]}
    return {}


def _act(b: TFLiteBuilder, name: str, shape: Sequence[int], dt: str, scale: float = ACT_SCALE, zp: int = 0) -> int:
    return b.add_tensor(name, shape, dt, **_q(dt, scale, zp))


def _const(b: TFLiteBuilder, name: str, arr: np.ndarray, dt: str | None = None) -> int:
    dt = dt or arr.dtype.name
    q = {"scale": [W_SCALE], "zero_point": [0]} if dt in ("int8", "uint8", "int16") else {}
    return b.add_tensor(name, arr.shape, dt, data=arr.astype(dt), **q)


def _bias(b: TFLiteBuilder, n: int, dt: str) -> int:
    """A bias as the TFLite quantization spec wants it: int32 (int64 for 16x8) with scale = input x weight scale."""
    if dt in ("int8", "int16"):
        bdt = "int32" if dt == "int8" else "int64"
        return b.add_tensor("bias", [n], bdt, data=np.zeros(n, bdt), scale=[ACT_SCALE * W_SCALE], zero_point=[0])
    return b.add_tensor("bias", [n], "float32", data=np.zeros(n, np.float32))


def _ints(v: Sequence[int]) -> np.ndarray:
    return np.asarray(list(v), np.int32)


def _w(shape: Sequence[int], dt: str, seed: int = 0) -> np.ndarray:
    r = np.random.default_rng(seed).integers(-20, 20, size=list(shape))
    return r.astype(np.int8) if dt in ("int8", "uint8", "int16") else (r * 0.01).astype(np.float32)


def _finish(b: TFLiteBuilder, ins: Sequence[int], outs: Sequence[int]) -> bytes:
    b.set_io(list(ins), list(outs))
    return b.to_bytes()


def _same_out(n: int, s: int) -> int:
    return -(-n // s)


def _valid_out(n: int, k: int, s: int, d: int = 1) -> int:
    return (n - ((k - 1) * d + 1)) // s + 1


# ---- builders ------------------------------------------------------------------------------------------


def unary(op: str, dt: str = "int8", shape: Sequence[int] = (1, 8, 8, 16), options: dict | None = None) -> bytes:
    b = TFLiteBuilder()
    x = _act(b, "x", shape, dt)
    y = _act(b, "y", shape, dt, scale=1 / 128 if op in ("LOGISTIC", "TANH") else ACT_SCALE)
    b.add_op(op, [x], [y], options, version=1 if op == "HARD_SWISH" else None)
    return _finish(b, [x], [y])


def binary(
    op: str,
    dt: str = "int8",
    a: Sequence[int] = (1, 8, 8, 16),
    c: Sequence[int] | None = None,
    *,
    const_b: bool = False,
    b_scale: float = ACT_SCALE,
    out_scale: float = ACT_SCALE,
) -> bytes:
    c = a if c is None else c
    b = TFLiteBuilder()
    x = _act(b, "x", a, dt)
    if const_b:
        arr = _w(c, dt, 3) if dt != "int32" else np.ones(c, np.int32)
        z = b.add_tensor("b", c, dt, data=arr.astype(dt), **_q(dt, b_scale))
    else:
        z = _act(b, "b", c, dt, scale=b_scale)
    out = np.broadcast_shapes(tuple(a), tuple(c))
    y = _act(b, "y", out, dt, scale=out_scale)
    b.add_op(op, [x, z], [y])
    return _finish(b, [x] if const_b else [x, z], [y])


def conv(
    dt: str = "int8",
    *,
    hw: int = 16,
    cin: int = 8,
    cout: int = 8,
    k: int = 3,
    kw: int | None = None,
    stride: int = 1,
    dilation: int = 1,
    padding: str = "SAME",
    depthwise: bool = False,
    mult: int = 1,
    batch: int = 1,
    const_w: bool = True,
    groups: int = 1,
) -> bytes:
    kw = k if kw is None else kw
    b = TFLiteBuilder()
    x = _act(b, "x", [batch, hw, hw, cin], dt)
    if depthwise:
        cout = cin * mult
        wshape = [1, k, kw, cout]
    else:
        wshape = [cout, k, kw, cin // groups]
    wdt = "int8" if dt in ("int8", "int16") else dt
    w = _const(b, "w", _w(wshape, wdt), wdt) if const_w else _act(b, "w", wshape, wdt)
    bias = _bias(b, cout, dt)
    if padding == "SAME":
        oh, ow = _same_out(hw, stride), _same_out(hw, stride)
    else:
        oh, ow = _valid_out(hw, k, stride, dilation), _valid_out(hw, kw, stride, dilation)
    y = _act(b, "y", [batch, oh, ow, cout], dt, scale=1.0)
    opts = {"padding": padding, "stride_h": stride, "stride_w": stride}
    opts |= {"dilation_h_factor": dilation, "dilation_w_factor": dilation}
    if depthwise:
        opts["depth_multiplier"] = mult
    b.add_op("DEPTHWISE_CONV_2D" if depthwise else "CONV_2D", [x, w, bias], [y], opts)
    return _finish(b, [x] if const_w else [x, w], [y])


def conv3d(dt: str = "int8", *, d: int = 4, hw: int = 8, c: int = 8, k: int = 3) -> bytes:
    b = TFLiteBuilder()
    x = _act(b, "x", [1, d, hw, hw, c], dt)
    wdt = "int8" if dt == "int8" else dt
    w = _const(b, "w", _w([k, k, k, c, c], wdt), wdt)
    y = _act(b, "y", [1, d, hw, hw, c], dt, scale=1.0)
    opts = {"padding": "SAME", "stride_d": 1, "stride_h": 1, "stride_w": 1}
    b.add_op("CONV_3D", [x, w, -1], [y], opts)
    return _finish(b, [x], [y])


def conv_u8() -> bytes:
    """CONV_2D in the older asymmetric uint8 scheme (uint8 weights with a zero point of 128)."""
    b = TFLiteBuilder()
    x = _act(b, "x", [1, 16, 16, 8], "uint8")
    w = b.add_tensor("w", [8, 3, 3, 8], "uint8", data=(_w([8, 3, 3, 8], "int8").astype(np.int16) + 128).astype(np.uint8),
                     scale=[W_SCALE], zero_point=[128])  # fmt: skip
    bias = b.add_tensor("bias", [8], "int32", data=np.zeros(8, np.int32), scale=[ACT_SCALE * W_SCALE], zero_point=[0])
    y = _act(b, "y", [1, 16, 16, 8], "uint8", scale=1.0)
    b.add_op("CONV_2D", [x, w, bias], [y], {"padding": "SAME", "stride_h": 1, "stride_w": 1})
    return _finish(b, [x], [y])


def transpose_conv(dt: str = "int8", *, stride: int = 2, k: int = 2, hw: int = 8, c: int = 8) -> bytes:
    b = TFLiteBuilder()
    o = hw * stride
    shp = _const(b, "shape", _ints([1, o, o, c]), "int32")
    w = _const(b, "w", _w([c, k, k, c], dt), dt)
    x = _act(b, "x", [1, hw, hw, c], dt)
    y = _act(b, "y", [1, o, o, c], dt, scale=1.0)
    b.add_op("TRANSPOSE_CONV", [shp, w, x], [y], {"padding": "SAME", "stride_h": stride, "stride_w": stride})
    return _finish(b, [x], [y])


def transpose_conv_hw(dt: str, *, sh: int, sw: int, h: int, w: int = 8, kh: int = 2, kw: int = 2, c: int = 8) -> bytes:
    """TRANSPOSE_CONV with its own stride, input size and kernel size per axis (SAME: output = input x stride)."""
    b = TFLiteBuilder()
    shp = _const(b, "shape", _ints([1, h * sh, w * sw, c]), "int32")
    wt = _const(b, "w", _w([c, kh, kw, c], dt), dt)
    x = _act(b, "x", [1, h, w, c], dt)
    y = _act(b, "y", [1, h * sh, w * sw, c], dt, scale=1.0)
    b.add_op("TRANSPOSE_CONV", [shp, wt, x], [y], {"padding": "SAME", "stride_h": sh, "stride_w": sw})
    return _finish(b, [x], [y])


def pool(
    op: str = "MAX_POOL_2D", dt: str = "int8", *, hw: int = 16, c: int = 8, k: int = 2, kw: int | None = None,
    stride: int = 2, padding: str = "VALID", w: int | None = None,
) -> bytes:  # fmt: skip
    kw = k if kw is None else kw
    w = hw if w is None else w
    b = TFLiteBuilder()
    x = _act(b, "x", [1, hw, w, c], dt)
    if padding == "SAME":
        oh, ow = _same_out(hw, stride), _same_out(w, stride)
    else:
        oh, ow = _valid_out(hw, k, stride), _valid_out(w, kw, stride)
    y = _act(b, "y", [1, oh, ow, c], dt)
    opts = {"padding": padding, "stride_h": stride, "stride_w": stride, "filter_height": k, "filter_width": kw}
    b.add_op(op, [x], [y], opts)
    return _finish(b, [x], [y])


def fully_connected(dt: str = "int8", *, n_in: int = 64, n_out: int = 16, const_w: bool = True) -> bytes:
    b = TFLiteBuilder()
    x = _act(b, "x", [1, n_in], dt)
    w = _const(b, "w", _w([n_out, n_in], dt), dt) if const_w else _act(b, "w", [n_out, n_in], dt)
    bias = _bias(b, n_out, dt)
    y = _act(b, "y", [1, n_out], dt, scale=1.0)
    b.add_op("FULLY_CONNECTED", [x, w, bias], [y])
    return _finish(b, [x] if const_w else [x, w], [y])


def batch_matmul(dt: str = "int8", *, m: int = 8, k: int = 16, n: int = 8) -> bytes:
    b = TFLiteBuilder()
    x = _act(b, "x", [1, m, k], dt)
    z = _act(b, "b", [1, k, n], dt)
    y = _act(b, "y", [1, m, n], dt, scale=1.0)
    b.add_op("BATCH_MATMUL", [x, z], [y])
    return _finish(b, [x, z], [y])


def reduce(
    op: str = "MEAN", dt: str = "int8", *, shape: Sequence[int] = (1, 8, 8, 16), axes: Sequence[int] = (1, 2),
    keep: bool = True,
) -> bytes:  # fmt: skip
    b = TFLiteBuilder()
    x = _act(b, "x", shape, dt)
    ax = _const(b, "axes", _ints(axes), "int32")
    rank = len(shape)
    norm = {a % rank for a in axes}
    out = (
        [1 if i in norm else d for i, d in enumerate(shape)]
        if keep
        else [d for i, d in enumerate(shape) if i not in norm]
    )
    y = _act(b, "y", out, dt)
    b.add_op(op, [x, ax], [y], {"keep_dims": keep})
    return _finish(b, [x], [y])


def resize(
    op: str = "RESIZE_NEAREST_NEIGHBOR", dt: str = "int8", *, hw: int = 8, out: int = 16, out_w: int | None = None,
    align_corners: bool = False, half_pixel: bool = False, c: int = 8, in_w: int | None = None,
) -> bytes:  # fmt: skip
    b = TFLiteBuilder()
    ow = out if out_w is None else out_w
    x = _act(b, "x", [1, hw, hw if in_w is None else in_w, c], dt)
    size = _const(b, "size", _ints([out, ow]), "int32")
    y = _act(b, "y", [1, out, ow, c], dt)
    b.add_op(op, [x, size], [y], {"align_corners": align_corners, "half_pixel_centers": half_pixel})
    return _finish(b, [x], [y])


def softmax(dt: str = "int8", *, shape: Sequence[int] = (1, 8, 8, 16)) -> bytes:
    b = TFLiteBuilder()
    x = _act(b, "x", shape, dt)
    y = _act(b, "y", shape, dt, scale=1 / 256, zp=-128)
    b.add_op("SOFTMAX", [x], [y], {"beta": 1.0})
    return _finish(b, [x], [y])


def transpose(dt: str = "int8", *, shape: Sequence[int] = (1, 8, 8, 16), perm: Sequence[int] = (0, 3, 1, 2)) -> bytes:
    b = TFLiteBuilder()
    x = _act(b, "x", shape, dt)
    p = _const(b, "perm", _ints(perm), "int32")
    y = _act(b, "y", [shape[i] for i in perm], dt)
    b.add_op("TRANSPOSE", [x, p], [y])
    return _finish(b, [x], [y])


def pad(
    op: str = "PAD", dt: str = "int8", *, shape: Sequence[int] = (1, 8, 8, 16),
    pads: Sequence[Sequence[int]] = ((0, 0), (1, 1), (1, 1), (0, 0)), mode: str = "REFLECT",
) -> bytes:  # fmt: skip
    b = TFLiteBuilder()
    x = _act(b, "x", shape, dt)
    p = _const(b, "pads", np.asarray(pads, np.int32), "int32")
    out = [d + lo + hi for d, (lo, hi) in zip(shape, pads, strict=True)]
    y = _act(b, "y", out, dt)
    b.add_op(op, [x, p], [y], {"mode": mode} if op == "MIRROR_PAD" else None)
    return _finish(b, [x], [y])


def strided_slice(
    dt: str = "int8", *, shape: Sequence[int] = (1, 8, 8, 16), begin: Sequence[int] = (0, 0, 0, 0),
    end: Sequence[int] = (1, 8, 8, 8), strides: Sequence[int] = (1, 1, 1, 1),
) -> bytes:  # fmt: skip
    b = TFLiteBuilder()
    x = _act(b, "x", shape, dt)
    ins = [x, _const(b, "begin", _ints(begin), "int32"), _const(b, "end", _ints(end), "int32")]
    ins.append(_const(b, "strides", _ints(strides), "int32"))
    out = [len(range(bb, e, s)) for bb, e, s in zip(begin, end, strides, strict=True)]
    y = _act(b, "y", out, dt)
    b.add_op("STRIDED_SLICE", ins, [y], {})
    return _finish(b, [x], [y])


def slice_(dt: str = "int8", *, shape: Sequence[int] = (1, 8, 8, 16), begin=(0, 0, 0, 0), size=(1, 8, 8, 8)) -> bytes:
    b = TFLiteBuilder()
    x = _act(b, "x", shape, dt)
    ins = [x, _const(b, "begin", _ints(begin), "int32"), _const(b, "size", _ints(size), "int32")]
    y = _act(b, "y", size, dt)
    b.add_op("SLICE", ins, [y])
    return _finish(b, [x], [y])


def concat(dt: str = "int8", *, n: int = 2, shape: Sequence[int] = (1, 8, 8, 8), axis: int = 3) -> bytes:
    b = TFLiteBuilder()
    xs = [_act(b, f"x{i}", shape, dt) for i in range(n)]
    out = list(shape)
    out[axis] *= n
    y = _act(b, "y", out, dt)
    b.add_op("CONCATENATION", xs, [y], {"axis": axis})
    return _finish(b, xs, [y])


def split(dt: str = "int8", *, shape: Sequence[int] = (1, 8, 8, 16), n: int = 2, axis: int = 3) -> bytes:
    b = TFLiteBuilder()
    ax = _const(b, "axis", _ints([axis]).reshape([]) if False else np.asarray(axis, np.int32), "int32")
    x = _act(b, "x", shape, dt)
    out = list(shape)
    out[axis] //= n
    ys = [_act(b, f"y{i}", out, dt) for i in range(n)]
    b.add_op("SPLIT", [ax, x], ys, {"num_splits": n})
    return _finish(b, [x], ys)


def reshape(dt: str = "int8", *, shape: Sequence[int] = (1, 8, 8, 16), new: Sequence[int] = (1, 64, 16)) -> bytes:
    b = TFLiteBuilder()
    x = _act(b, "x", shape, dt)
    s = _const(b, "shape", _ints(new), "int32")
    y = _act(b, "y", new, dt)
    b.add_op("RESHAPE", [x, s], [y], {"new_shape": list(new)})
    return _finish(b, [x], [y])


def depth_space(op: str = "DEPTH_TO_SPACE", dt: str = "int8", *, block: int = 2) -> bytes:
    b = TFLiteBuilder()
    shape = [1, 8, 8, 16]
    x = _act(b, "x", shape, dt)
    if op == "DEPTH_TO_SPACE":
        out = [1, 8 * block, 8 * block, 16 // (block * block)]
    else:
        out = [1, 8 // block, 8 // block, 16 * block * block]
    y = _act(b, "y", out, dt)
    b.add_op(op, [x], [y], {"block_size": block})
    return _finish(b, [x], [y])


def argmax(dt: str = "int8", *, c: int = 16, axis: int = 3) -> bytes:
    b = TFLiteBuilder()
    x = _act(b, "x", [1, 8, 8, c], dt)
    a = _const(b, "axis", _ints([axis]), "int32")
    shape = [1, 8, 8, c]
    del shape[axis]
    y = b.add_tensor("y", shape, "int32")
    b.add_op("ARG_MAX", [x, a], [y], {"output_type": "INT32"})
    return _finish(b, [x], [y])


def conv_weight_sum(cin: int, k: int = 8, value: int = 127) -> bytes:
    """A VALID int8 CONV_2D whose every weight is ``value``: per-output |weight| sum = cin * k * k * value."""
    b = TFLiteBuilder()
    x = _act(b, "x", [1, k, k, cin], "int8")
    w = b.add_tensor("w", [4, k, k, cin], "int8", data=np.full([4, k, k, cin], value, np.int8), scale=[W_SCALE],
                     zero_point=[0])  # fmt: skip
    y = _act(b, "y", [1, 1, 1, 4], "int8", scale=1.0)
    b.add_op("CONV_2D", [x, w, _bias(b, 4, "int8")], [y], {"padding": "VALID", "stride_h": 1, "stride_w": 1})
    return _finish(b, [x], [y])


def leaky_relu(dt: str = "int8") -> bytes:
    return unary("LEAKY_RELU", dt, options={"alpha": 0.1})


def leaky_relu_scaled(dt: str, alpha: float, ratio: float) -> bytes:
    """LEAKY_RELU whose input scale / output scale is ``ratio`` (XNNPACK bounds it and alpha x it)."""
    b = TFLiteBuilder()
    x = _act(b, "x", [1, 8, 8, 16], dt)
    y = _act(b, "y", [1, 8, 8, 16], dt, scale=ACT_SCALE / ratio)
    b.add_op("LEAKY_RELU", [x], [y], {"alpha": alpha})
    return _finish(b, [x], [y])


def prelu(dt: str = "int8") -> bytes:
    b = TFLiteBuilder()
    x = _act(b, "x", [1, 8, 8, 16], dt)
    a = b.add_tensor("alpha", [1, 1, 16], dt, data=np.full([1, 1, 16], 10 if dt == "int8" else 0.1, dt), **_q(dt, 0.01))
    y = _act(b, "y", [1, 8, 8, 16], dt)
    b.add_op("PRELU", [x, a], [y], version=1)
    return _finish(b, [x], [y])


def quantize_op(src: str = "float32", dst: str = "int8") -> bytes:
    b = TFLiteBuilder()
    x = _act(b, "x", [1, 8, 8, 16], src)
    y = _act(b, "y", [1, 8, 8, 16], dst, scale=0.1)
    b.add_op("QUANTIZE", [x], [y])
    return _finish(b, [x], [y])


def dequantize_op(src: str = "int8") -> bytes:
    b = TFLiteBuilder()
    x = _act(b, "x", [1, 8, 8, 16], src)
    y = _act(b, "y", [1, 8, 8, 16], "float32")
    b.add_op("DEQUANTIZE", [x], [y])
    return _finish(b, [x], [y])


# ---- the case table ------------------------------------------------------------------------------------


def _cases() -> list[Case]:
    c: list[Case] = []

    def add(name: str, fn: Callable[[], bytes]) -> None:
        c.append(Case(name, fn))

    for dt in ("int8", "float32"):
        add(f"conv-{dt}", lambda dt=dt: conv(dt))
        add(f"conv-s2-{dt}", lambda dt=dt: conv(dt, stride=2))
        add(f"conv-s4-valid-{dt}", lambda dt=dt: conv(dt, stride=4, k=4, padding="VALID"))
        add(f"conv-s4-samepad-{dt}", lambda dt=dt: conv(dt, stride=4, k=5))
        add(f"conv-s4-same-nopad-{dt}", lambda dt=dt: conv(dt, stride=4, k=3))
        add(f"conv-dil2-{dt}", lambda dt=dt: conv(dt, dilation=2))
        add(f"conv-1x1-{dt}", lambda dt=dt: conv(dt, k=1))
        add(f"conv-runtime-w-{dt}", lambda dt=dt: conv(dt, const_w=False))
        add(f"conv-batch2-{dt}", lambda dt=dt: conv(dt, batch=2))
        add(f"dw-{dt}", lambda dt=dt: conv(dt, depthwise=True))
        add(f"dw-s3-{dt}", lambda dt=dt: conv(dt, depthwise=True, stride=3, k=3, hw=18))
        add(f"dw-s4-valid-{dt}", lambda dt=dt: conv(dt, depthwise=True, stride=4, k=4, padding="VALID"))
        add(f"dw-mult2-{dt}", lambda dt=dt: conv(dt, depthwise=True, mult=2))
        add(f"tconv-s2-{dt}", lambda dt=dt: transpose_conv(dt))
        add(f"tconv-s1-{dt}", lambda dt=dt: transpose_conv(dt, stride=1, k=3))
        add(f"tconv-s3-{dt}", lambda dt=dt: transpose_conv(dt, stride=3, k=3))
        for op in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
            o = op[:3].lower()
            add(f"{o}pool-2x2-{dt}", lambda dt=dt, op=op: pool(op, dt))
            add(f"{o}pool-1x1-s2-{dt}", lambda dt=dt, op=op: pool(op, dt, k=1, stride=2))
            add(f"{o}pool-1x1-s1-{dt}", lambda dt=dt, op=op: pool(op, dt, k=1, stride=1))
            add(f"{o}pool-s4-valid-{dt}", lambda dt=dt, op=op: pool(op, dt, k=4, stride=4))
            add(f"{o}pool-s4-samepad-{dt}", lambda dt=dt, op=op: pool(op, dt, k=5, stride=4, padding="SAME"))
            add(f"{o}pool-k8-same-{dt}", lambda dt=dt, op=op: pool(op, dt, k=8, stride=1, padding="SAME"))
            add(f"{o}pool-k9-same-{dt}", lambda dt=dt, op=op: pool(op, dt, k=9, stride=1, padding="SAME"))
            add(f"{o}pool-k16-valid-{dt}", lambda dt=dt, op=op: pool(op, dt, k=16, stride=1))
        add(f"fc-{dt}", lambda dt=dt: fully_connected(dt))
        add(f"fc-runtime-w-{dt}", lambda dt=dt: fully_connected(dt, const_w=False))
        add(f"bmm-{dt}", lambda dt=dt: batch_matmul(dt))
        for op in ("ADD", "SUB", "MUL", "DIV", "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE"):
            add(f"{op.lower()}-{dt}", lambda dt=dt, op=op: binary(op, dt))
            add(f"{op.lower()}-bcast-{dt}", lambda dt=dt, op=op: binary(op, dt, c=(1, 1, 1, 16), const_b=True))
        add(f"add-5d-{dt}", lambda dt=dt: binary("ADD", dt, a=(1, 2, 4, 4, 8)))
        add(f"add-6d-{dt}", lambda dt=dt: binary("ADD", dt, a=(1, 2, 2, 4, 4, 8)))
        add(f"add-bigdim-{dt}", lambda dt=dt: binary("ADD", dt, a=(1, 1, 70000, 1)))
        add(f"add-batch2-{dt}", lambda dt=dt: binary("ADD", dt, a=(2, 8, 8, 16)))
        add(f"max-diffquant-{dt}", lambda dt=dt: binary("MAXIMUM", dt, b_scale=0.1))
        add(f"min-diffquant-{dt}", lambda dt=dt: binary("MINIMUM", dt, out_scale=0.1))
        add(f"add-diffquant-{dt}", lambda dt=dt: binary("ADD", dt, b_scale=0.1, out_scale=0.2))
        add(f"mul-diffquant-{dt}", lambda dt=dt: binary("MUL", dt, b_scale=0.1, out_scale=0.2))
        for op in ("RELU", "RELU6", "RELU_N1_TO_1", "LOGISTIC", "TANH", "HARD_SWISH", "ELU", "ABS", "NEG", "EXP",
                   "LOG", "RSQRT", "SQRT", "GELU", "FLOOR", "SQUARE", "CEIL", "ROUND"):  # fmt: skip
            add(f"{op.lower()}-{dt}", lambda dt=dt, op=op: unary(op, dt))
        add(f"tanh-5d-{dt}", lambda dt=dt: unary("TANH", dt, shape=(1, 2, 4, 4, 8)))
        add(f"leaky_relu-{dt}", lambda dt=dt: leaky_relu(dt))
        add(f"prelu-{dt}", lambda dt=dt: prelu(dt))
        add(f"mean-hw-{dt}", lambda dt=dt: reduce("MEAN", dt))
        add(f"mean-hw-nokeep-{dt}", lambda dt=dt: reduce("MEAN", dt, keep=False))
        add(f"mean-c-{dt}", lambda dt=dt: reduce("MEAN", dt, axes=(3,)))
        add(f"mean-w-{dt}", lambda dt=dt: reduce("MEAN", dt, axes=(2,)))
        add(f"mean-c-h1-{dt}", lambda dt=dt: reduce("MEAN", dt, shape=(1, 1, 8, 16), axes=(3,)))
        add(f"mean-big-{dt}", lambda dt=dt: reduce("MEAN", dt, shape=(1, 64, 80, 4)))
        add(f"mean-3d-{dt}", lambda dt=dt: reduce("MEAN", dt, shape=(1, 64, 16), axes=(1,)))
        add(f"sum-hw-{dt}", lambda dt=dt: reduce("SUM", dt))
        add(f"reducemax-hw-{dt}", lambda dt=dt: reduce("REDUCE_MAX", dt))
        add(f"reducemax-c-{dt}", lambda dt=dt: reduce("REDUCE_MAX", dt, axes=(3,)))
        for op in ("RESIZE_NEAREST_NEIGHBOR", "RESIZE_BILINEAR"):
            o = "nn" if "NEAREST" in op else "bl"
            add(f"resize-{o}-2x-{dt}", lambda dt=dt, op=op: resize(op, dt))
            add(f"resize-{o}-2x-half-{dt}", lambda dt=dt, op=op: resize(op, dt, half_pixel=True))
            add(f"resize-{o}-4x-half-{dt}", lambda dt=dt, op=op: resize(op, dt, out=32, half_pixel=True))
            add(f"resize-{o}-4x-{dt}", lambda dt=dt, op=op: resize(op, dt, out=32))
            add(f"resize-{o}-3x-{dt}", lambda dt=dt, op=op: resize(op, dt, out=24))
            add(f"resize-{o}-1.5x-{dt}", lambda dt=dt, op=op: resize(op, dt, out=12))
            add(f"resize-{o}-align-{dt}", lambda dt=dt, op=op: resize(op, dt, hw=9, out=17, align_corners=True))
            add(f"resize-{o}-2x1-{dt}", lambda dt=dt, op=op: resize(op, dt, out=16, out_w=8))
            add(f"resize-{o}-16x-{dt}", lambda dt=dt, op=op: resize(op, dt, hw=2, out=32))
        add(f"softmax-{dt}", lambda dt=dt: softmax(dt))
        add(f"softmax-2d-{dt}", lambda dt=dt: softmax(dt, shape=(1, 100)))
        add(f"softmax-bighw-{dt}", lambda dt=dt: softmax(dt, shape=(1, 256, 256, 2)))
        add(f"transpose-nchw-{dt}", lambda dt=dt: transpose(dt))
        add(f"transpose-3d-{dt}", lambda dt=dt: transpose(dt, shape=(1, 64, 16), perm=(0, 2, 1)))
        add(f"transpose-5d-{dt}", lambda dt=dt: transpose(dt, shape=(1, 2, 4, 4, 8), perm=(0, 1, 3, 2, 4)))
        add(f"transpose-big-{dt}", lambda dt=dt: transpose(dt, shape=(2, 300, 300, 2), perm=(3, 1, 2, 0)))
        add(f"pad-hw-{dt}", lambda dt=dt: pad("PAD", dt))
        add(f"pad-c-{dt}", lambda dt=dt: pad("PAD", dt, pads=((0, 0), (0, 0), (0, 0), (2, 2))))
        add(f"pad-n-{dt}", lambda dt=dt: pad("PAD", dt, pads=((1, 0), (0, 0), (0, 0), (0, 0))))
        add(f"pad-5d-{dt}", lambda dt=dt: pad("PAD", dt, shape=(1, 2, 4, 4, 8), pads=((0, 0),) * 3 + ((1, 1),) * 2))
        add(f"mirrorpad-{dt}", lambda dt=dt: pad("MIRROR_PAD", dt))
        add(f"mirrorpad-sym-{dt}", lambda dt=dt: pad("MIRROR_PAD", dt, mode="SYMMETRIC"))
        add(f"sslice-c-{dt}", lambda dt=dt: strided_slice(dt))
        add(f"sslice-hw-s2-{dt}", lambda dt=dt: strided_slice(dt, end=(1, 8, 8, 16), strides=(1, 2, 2, 1)))
        add(f"sslice-c-s2-{dt}", lambda dt=dt: strided_slice(dt, end=(1, 8, 8, 16), strides=(1, 1, 1, 2)))
        add(f"slice-{dt}", lambda dt=dt: slice_(dt))
        add(f"concat2-{dt}", lambda dt=dt: concat(dt))
        add(f"concat5-{dt}", lambda dt=dt: concat(dt, n=5))
        add(f"concat6-{dt}", lambda dt=dt: concat(dt, n=6))
        add(f"concat-hw-{dt}", lambda dt=dt: concat(dt, axis=1))
        add(f"split-{dt}", lambda dt=dt: split(dt))
        add(f"split5-{dt}", lambda dt=dt: split(dt, shape=(1, 8, 8, 20), n=5))
        add(f"reshape-{dt}", lambda dt=dt: reshape(dt))
        add(f"d2s-{dt}", lambda dt=dt: depth_space("DEPTH_TO_SPACE", dt))
        add(f"s2d-{dt}", lambda dt=dt: depth_space("SPACE_TO_DEPTH", dt))
    for dt in ("int8", "float32"):
        add(f"conv-grouped-{dt}", lambda dt=dt: conv(dt, groups=2))
        add(f"conv-s4-dil2-valid-{dt}", lambda dt=dt: conv(dt, stride=4, k=3, dilation=2, padding="VALID", hw=19))
        add(f"dw-dil2-{dt}", lambda dt=dt: conv(dt, depthwise=True, dilation=2))
        add(f"split3-{dt}", lambda dt=dt: split(dt, shape=(1, 8, 8, 12), n=3))
        add(f"split4-{dt}", lambda dt=dt: split(dt, n=4))
        add(f"maxpool-kh257-{dt}", lambda dt=dt: pool("MAX_POOL_2D", dt, hw=260, w=4, k=257, kw=1, stride=1))
        add(f"maxpool-kh256-{dt}", lambda dt=dt: pool("MAX_POOL_2D", dt, hw=260, w=4, k=256, kw=1, stride=1))
        add(f"resize-nn-from1x1-{dt}", lambda dt=dt: resize("RESIZE_NEAREST_NEIGHBOR", dt, hw=1, out=16))
        add(f"resize-nn-same-{dt}", lambda dt=dt: resize("RESIZE_NEAREST_NEIGHBOR", dt, out=8))
        add(f"resize-nn-h-only-{dt}", lambda dt=dt: resize("RESIZE_NEAREST_NEIGHBOR", dt, out=16, out_w=1, in_w=1))
        add(f"resize-bl-8x-{dt}", lambda dt=dt: resize("RESIZE_BILINEAR", dt, hw=4, out=32))
        add(f"transpose-3d-big-{dt}", lambda dt=dt: transpose(dt, shape=(1, 300, 300, 2), perm=(0, 2, 1, 3)))
        add(f"mean-batch2-{dt}", lambda dt=dt: reduce("MEAN", dt, shape=(2, 8, 8, 16)))
        add(f"softmax-3d-{dt}", lambda dt=dt: softmax(dt, shape=(1, 64, 10)))
        add(f"argmax-c16-{dt}", lambda dt=dt: argmax(dt))
        add(f"argmax-c127-{dt}", lambda dt=dt: argmax(dt, c=127))
        add(f"argmax-c128-{dt}", lambda dt=dt: argmax(dt, c=128))
        add(f"argmax-w-{dt}", lambda dt=dt: argmax(dt, axis=2))
    for dt in ("uint8", "int16"):
        add(f"bmm-{dt}", lambda dt=dt: batch_matmul(dt))
        add(f"conv-{dt}", lambda dt=dt: conv(dt) if dt == "int16" else conv_u8())
        add(f"add-{dt}", lambda dt=dt: binary("ADD", dt))
        add(f"maxpool-2x2-{dt}", lambda dt=dt: pool("MAX_POOL_2D", dt))
        add(f"mean-hw-{dt}", lambda dt=dt: reduce("MEAN", dt))
        add(f"logistic-{dt}", lambda dt=dt: unary("LOGISTIC", dt))
    # Requantization limits of quantized ADD/SUB (each input / output scale in [1/1024, 256)), MUL (product /
    # output in [1/65536, 256)) and LEAKY_RELU: a case just inside and just outside each bound.
    a = ACT_SCALE
    for dt in ("int8", "uint8"):
        for op in ("ADD", "SUB"):
            o = op.lower()
            add(f"{o}-ratio255-{dt}", lambda dt=dt, op=op: binary(op, dt, out_scale=a / 255))
            add(f"{o}-ratio257-{dt}", lambda dt=dt, op=op: binary(op, dt, out_scale=a / 257))
            add(f"{o}-ratio1-1020-{dt}", lambda dt=dt, op=op: binary(op, dt, out_scale=a * 1020))
            add(f"{o}-ratio1-1030-{dt}", lambda dt=dt, op=op: binary(op, dt, out_scale=a * 1030))
            add(f"{o}-b-ratio-small-{dt}", lambda dt=dt, op=op: binary(op, dt, b_scale=1e-4, out_scale=1.0))
        add(f"mul-ratio255-{dt}", lambda dt=dt: binary("MUL", dt, out_scale=a * a / 255))
        add(f"mul-ratio257-{dt}", lambda dt=dt: binary("MUL", dt, out_scale=a * a / 257))
        add(f"mul-ratio-2e-5-{dt}", lambda dt=dt: binary("MUL", dt, b_scale=4e-4, out_scale=1.0))
        add(f"mul-ratio-1e-5-{dt}", lambda dt=dt: binary("MUL", dt, b_scale=2e-4, out_scale=1.0))
        add(
            f"mul-const-ratio-small-{dt}",
            lambda dt=dt: binary("MUL", dt, c=(1, 1, 1, 16), const_b=True, b_scale=1e-4, out_scale=1.0),
        )
        add(f"leaky-ratio127-{dt}", lambda dt=dt: leaky_relu_scaled(dt, 0.1, 127))
        add(f"leaky-ratio129-{dt}", lambda dt=dt: leaky_relu_scaled(dt, 0.1, 129))
        add(f"leaky-alpha0.004-{dt}", lambda dt=dt: leaky_relu_scaled(dt, 0.004, 1))
        add(f"leaky-alpha0.003-{dt}", lambda dt=dt: leaky_relu_scaled(dt, 0.003, 1))
        add(f"leaky-alpha100-{dt}", lambda dt=dt: leaky_relu_scaled(dt, 100.0, 1))
        add(f"leaky-alpha300-{dt}", lambda dt=dt: leaky_relu_scaled(dt, 300.0, 1))
        add(f"leaky-alpha-neg-{dt}", lambda dt=dt: leaky_relu_scaled(dt, -0.1, 1))
        add(f"leaky-ratio1-250-{dt}", lambda dt=dt: leaky_relu_scaled(dt, 0.1, 1 / 250))
    # Vela's TRANSPOSE_CONV strides: 1x1, 2x2, W=2 H=1 when input and kernel are 1 high, W=1 H=2 when 1 wide.
    for dt in ("int8", "float32"):
        add(f"tconv-s1x2-h1-k1-{dt}", lambda dt=dt: transpose_conv_hw(dt, sh=1, sw=2, h=1, kh=1))
        add(f"tconv-s1x2-h1-k2-{dt}", lambda dt=dt: transpose_conv_hw(dt, sh=1, sw=2, h=1, kh=2))
        add(f"tconv-s1x2-h8-k1-{dt}", lambda dt=dt: transpose_conv_hw(dt, sh=1, sw=2, h=8, kh=1))
        add(f"tconv-s2x1-w1-k1-{dt}", lambda dt=dt: transpose_conv_hw(dt, sh=2, sw=1, h=8, w=1, kw=1))
        add(f"tconv-s2x1-w8-k1-{dt}", lambda dt=dt: transpose_conv_hw(dt, sh=2, sw=1, h=8, w=8, kw=1))
        add(f"tconv-s2x1-w1-k2-{dt}", lambda dt=dt: transpose_conv_hw(dt, sh=2, sw=1, h=8, w=1, kw=2))
        add(f"tconv-s2x2-k3-{dt}", lambda dt=dt: transpose_conv_hw(dt, sh=2, sw=2, h=8, kh=3, kw=3))
    add("fc-runtime-w-int16", lambda: fully_connected("int16", const_w=False))
    add("conv-wsum-at-limit-int8", lambda: conv_weight_sum(1024))
    add("conv-wsum-over-limit-int8", lambda: conv_weight_sum(1032))
    for dt in ("int8", "float32"):
        add(f"mean-h4096-{dt}", lambda dt=dt: reduce("MEAN", dt, shape=(1, 4096, 1, 8), axes=(1,)))
        add(f"mean-h4097-{dt}", lambda dt=dt: reduce("MEAN", dt, shape=(1, 4097, 1, 8), axes=(1,)))
        add(f"mean-c5000-h1-{dt}", lambda dt=dt: reduce("MEAN", dt, shape=(1, 1, 2, 5000), axes=(3,)))
        add(f"softmax-257x256-{dt}", lambda dt=dt: softmax(dt, shape=(1, 257, 256, 2)))
        add(f"softmax-2d-70000-{dt}", lambda dt=dt: softmax(dt, shape=(70000, 2)))
    add("quantize-f32-int8", lambda: quantize_op("float32", "int8"))
    add("quantize-int8-int8", lambda: quantize_op("int8", "int8"))
    add("dequantize-int8", lambda: dequantize_op("int8"))
    add("add-int32", lambda: binary("ADD", "int32"))
    add("mul-int32", lambda: binary("MUL", "int32"))
    add("sub-int32", lambda: binary("SUB", "int32"))
    return c


CASES: list[Case] = _cases()
