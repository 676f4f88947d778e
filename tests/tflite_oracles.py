"""The vendors' own tools as oracles for single-model placement (tests only; never used by edgecnn itself).

- ``xnnpack_claimed``: the LiteRT interpreter (ai-edge-litert) applies the XNNPACK delegate by default; a
  delegate kernel replaces the ops it claims. The interpreter lists the original ops followed by one
  ``DELEGATE`` node per partition, whose inputs and outputs are the partition's boundary tensors, so an
  op is claimed when it lies between a delegate node's outputs and its inputs.
- ``vela_on_npu``: Arm's Vela compiler (ethos-u-vela) rewrites the TFLite file; ops it places on the NPU
  become ``ethos-u`` custom ops and every op left for the CPU stays as it was, with its output tensor name.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile

from edgecnn.export.tflite_writer import read_tflite


def xnnpack_claimed(data: bytes) -> list[bool]:
    """For every op of ``data``, whether the XNNPACK delegate claims it (LiteRT's default CPU delegate)."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=data, num_threads=1)
    it.allocate_tensors()
    ops = it._get_ops_details()
    originals = [o for o in ops if o["op_name"] != "DELEGATE"]
    n = len(read_tflite(data).ops)
    assert len(originals) == n, (len(originals), n)
    producer = {int(t): o["index"] for o in originals for t in o["outputs"]}
    claimed = [False] * n
    for d in (o for o in ops if o["op_name"] == "DELEGATE"):
        stop = {int(t) for t in d["inputs"]}
        todo = [int(t) for t in d["outputs"]]
        seen: set[int] = set()
        while todo:
            t = todo.pop()
            if t in stop or t in seen or t not in producer:
                continue
            seen.add(t)
            idx = producer[t]
            claimed[idx] = True
            todo += [int(i) for i in ops[idx]["inputs"] if int(i) >= 0]
    return claimed


class VelaError(RuntimeError):
    """Vela itself failed on the file (a crash in the compiler, not a placement)."""


def vela_on_npu(data: bytes, accelerator: str = "ethos-u55-128") -> list[bool]:
    """For every op of ``data``, whether Vela 5.x places it on the NPU (ops it leaves keep their outputs)."""
    g = read_tflite(data)
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "m.tflite")
        with open(src, "wb") as f:
            f.write(data)
        from ethosu.vela.vela import main as vela_main

        log = io.StringIO()
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            try:
                rc = vela_main(["--accelerator-config", accelerator, "--output-dir", d, src])
            except BaseException as e:  # Vela raises on inputs its own checks let through
                raise VelaError(f"vela failed: {type(e).__name__}: {e}; {log.getvalue()[-400:]}") from None
        if rc != 0:
            raise VelaError(f"vela exited {rc}: {log.getvalue()[-800:]}")
        with open(os.path.join(d, "m_vela.tflite"), "rb") as f:
            out = read_tflite(f.read())
    cpu_outputs = {out.tensors[t].name for op in out.ops if op.builtin != "CUSTOM" for t in op.outputs}
    return [not any(g.tensors[t].name in cpu_outputs for t in op.outputs) for op in g.ops]
