"""PyTorch -> ONNX: ``FILE.py:factory`` is imported by path, called, and the module it returns is exported.

The exporter is torch's TorchScript-based one (``dynamo=False``): it needs no extra packages beyond torch,
keeps the graph close to the module structure and supports ``dynamic_axes`` for a symbolic batch. The
result is checked by the full ONNX checker and compared with the PyTorch module on the same input
(parity), before anything is written.
"""

from __future__ import annotations

import importlib.util
import io
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnx

from edgecnn.errors import BadInputError, MissingRuntimeError, ModelError

TORCH_INSTALL = "pip install torch==2.13.0"
DEFAULT_OPSET = 17
MIN_OPSET, MAX_OPSET = 11, 21
_SPEC_RE = re.compile(r"^(?P<file>.+\.py):(?P<factory>[A-Za-z_][A-Za-z0-9_.]*)$")
_SHAPE_RE = re.compile(r"^\d+(x\d+)*$")


@dataclass(frozen=True, kw_only=True)
class TorchExport:
    model: onnx.ModelProto
    source: str  # FILE.py:factory
    input_shape: tuple[int, ...]
    opset: int
    dynamic_batch: bool
    torch_version: str
    module: Any  # the exported torch.nn.Module (eval mode), the parity reference


def require_torch() -> ModuleType:
    try:
        import torch
    except ImportError:
        raise MissingRuntimeError("PyTorch (needed by --from-torch)", TORCH_INSTALL) from None
    return torch


def parse_factory(spec: str) -> tuple[Path, str]:
    m = _SPEC_RE.match(spec)
    if not m:
        raise BadInputError(
            f"--from-torch {spec!r}: expected FILE.py:factory, e.g. scripts/train_sample_model.py:build_model"
        )
    path = Path(m["file"])
    if not path.is_file():
        raise BadInputError(f"--from-torch {spec!r}: {path}: no such Python file")
    return path, m["factory"]


def parse_shape(text: str) -> tuple[int, ...]:
    if not _SHAPE_RE.match(text or "") or any(int(d) == 0 for d in text.split("x")):
        raise BadInputError(f"--input-shape {text!r}: expected DIMxDIMx... with positive integers, e.g. 1x3x224x224")
    return tuple(int(d) for d in text.split("x"))


def load_factory_module(path: Path, factory: str) -> Any:
    """Import ``path`` as a module (its folder on sys.path while importing) and call ``factory``."""
    torch = require_torch()
    name = f"edgecnn_user_{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise BadInputError(f"{path}: cannot be imported as a Python module")
    mod = importlib.util.module_from_spec(spec)
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(mod)
    except ImportError as e:
        raise MissingRuntimeError(
            f"{path}: module {e.name or e}", f"pip install {e.name}" if e.name else "pip"
        ) from None
    except Exception as e:  # any error in the user's file: say which, in one line
        raise BadInputError(f"{path}: importing the file failed: {type(e).__name__}: {e}") from None
    except SystemExit as e:  # sys.exit() at import: not the exit code of this command
        raise BadInputError(f"{path}: importing the file called sys.exit({e.code!r}); guard it with __main__") from None
    finally:
        if sys.path and sys.path[0] == folder:
            sys.path.pop(0)
    obj: Any = mod
    for part in factory.split("."):
        if not hasattr(obj, part):
            callables = sorted(k for k, v in vars(mod).items() if callable(v) and not k.startswith("_"))
            raise BadInputError(f"{path}: has no attribute {factory!r}; callables defined there: {callables[:12]}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise BadInputError(f"{path}:{factory} is a {type(obj).__name__}, not a callable that returns a model")
    try:
        model = obj()
    except Exception as e:
        raise BadInputError(f"{path}:{factory}() raised {type(e).__name__}: {e}") from None
    except SystemExit as e:
        raise BadInputError(f"{path}:{factory}() called sys.exit({e.code!r}) instead of returning a model") from None
    if not isinstance(model, torch.nn.Module):
        raise BadInputError(
            f"{path}:{factory}() returned a {type(model).__name__}, not a torch.nn.Module; "
            "the factory must build and return the model"
        )
    return model


def torch_to_onnx(
    spec: str, input_shape: str, *, opset: int = DEFAULT_OPSET, dynamic_batch: bool = False
) -> TorchExport:
    """Build the model from ``spec`` (FILE.py:factory) and export it at ``input_shape`` to ONNX (in memory)."""
    path, factory = parse_factory(spec)
    shape = parse_shape(input_shape)
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise BadInputError(f"--opset {opset}; valid opsets for the PyTorch exporter are {MIN_OPSET}..{MAX_OPSET}")
    torch = require_torch()
    model = load_factory_module(path, factory)
    model.eval()
    x = torch.from_numpy(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (x,),
                buf,
                dynamo=False,
                opset_version=opset,
                input_names=["input"],
                output_names=["output"],
                dynamic_axes={"input": {0: "N"}, "output": {0: "N"}} if dynamic_batch else None,
                training=torch.onnx.TrainingMode.EVAL,
            )
    except Exception as e:  # the exporter raises many types; the first line says what failed
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"{spec}: torch.onnx.export failed at input shape {list(shape)}: {first}") from None
    m = onnx.load_from_string(buf.getvalue())
    m.producer_name = "edgecnn (torch.onnx.export)"
    onnx.helper.set_model_props(m, {"edgecnn.source": spec, "edgecnn.torch_version": torch.__version__})
    try:
        onnx.checker.check_model(m, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ModelError(f"{spec}: exported ONNX fails the checker: {str(e).splitlines()[0]}") from None
    return TorchExport(
        model=m,
        source=spec,
        input_shape=shape,
        opset=opset,
        dynamic_batch=dynamic_batch,
        torch_version=torch.__version__,
        module=model,
    )


def torch_runner(module: Any) -> Any:
    """A function batch -> outputs over the very module that was exported (parity's reference)."""
    torch = require_torch()
    # One intra-op thread: parity runs one image at a time, and torch's thread pool spinning on a busy
    # machine made a 32x32 CNN take 0.7 s per image with 2 threads (11 ms with 1).
    torch.set_num_threads(1)

    def run(batch: np.ndarray) -> list[np.ndarray]:
        with torch.no_grad():
            y = module(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)))
        ys = y if isinstance(y, list | tuple) else [y]
        return [t.detach().numpy() for t in ys]

    return run
