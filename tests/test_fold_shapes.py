"""Static shape subgraphs of a real PyTorch export are folded before placement, and the folded model computes
the same outputs (ONNX Runtime on both)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from edgecnn.check.placement import Prepared, check_target, prepare_for_check
from edgecnn.check.spec import load_target
from edgecnn.graph.load import load_model

ROOT = Path(__file__).resolve().parents[1]
SHAPE_OPS = {"Shape", "Gather", "Unsqueeze", "Range", "ConstantOfShape"}


def _bench_module():  # benchmarks/fold_shapes.py builds the YOLO-style export; reuse it, one place
    spec = importlib.util.spec_from_file_location("fold_shapes", ROOT / "benchmarks" / "fold_shapes.py")
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def test_yolo_style_export_folds_shape_subgraphs(tmp_path: Path) -> None:
    fs = _bench_module()
    src = tmp_path / "yolo.onnx"
    fs.build_yolo_like(src)
    loaded = load_model(src, {"images": fs.FIXED})
    raw = Prepared(path=str(src), model=loaded.model, folded={})
    prepared = prepare_for_check(loaded)
    assert prepared.folded["Shape"] == 13 and prepared.folded["Range"] == 4, prepared.folded
    assert not [n for n in prepared.model.graph.node if n.op_type in SHAPE_OPS]
    onnx.checker.check_model(prepared.model, full_check=True)
    # Same outputs as the unfolded export.
    folded_path = tmp_path / "folded.onnx"
    onnx.save(prepared.model, folded_path)
    x = np.random.default_rng(0).standard_normal(fs.FIXED).astype(np.float32)
    a = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
    b = ort.InferenceSession(str(folded_path), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    # Unfolded, the shape ops are reported off the accelerator; folded, none of them are.
    htp = load_target("qualcomm-htp")
    before, after = check_target(raw, htp), check_target(prepared, htp)
    assert {n.op_type for n in before.nodes if n.placement != "accelerator"} >= {"Shape", "Range"}
    assert after.all_accelerated, [(n.name, [f.reason for f in n.failures]) for n in after.nodes if n.failures]


def test_a_shape_known_only_after_a_first_fold_is_folded_too() -> None:
    """Reshape to a computed shape: its output's shape is unknown until that shape is folded, so the Shape that
    reads it folds on a second pass (PP-OCRv4 rec's attention kept 13 shape nodes, which `check` then reported
    as CPU fallbacks). One call folds to a fixpoint."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgecnn.graph.passes import fold_static_shapes

    c = {"st": [0], "en": [1], "m1": [-1], "st1": [1], "en1": [2], "one": [1]}
    inits = [numpy_helper.from_array(np.array(v, np.int64), k) for k, v in c.items()]
    nodes = [
        helper.make_node("Shape", ["x"], ["s1"]),
        helper.make_node("Slice", ["s1", "st", "en"], ["b"]),
        helper.make_node("Concat", ["b", "m1"], ["shape1"], axis=0),
        helper.make_node("Reshape", ["x", "shape1"], ["r1"]),
        helper.make_node("Shape", ["r1"], ["s2"]),
        helper.make_node("Slice", ["s2", "st1", "en1"], ["w"]),
        helper.make_node("Concat", ["w", "one"], ["shape2"], axis=0),
        helper.make_node("Reshape", ["r1", "shape2"], ["y"]),
    ]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)  # fmt: skip
    m = onnx.shape_inference.infer_shapes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    folded, counts = fold_static_shapes(m)
    assert {n.op_type for n in folded.graph.node} == {"Reshape"} and counts["Shape"] == 2
